"""The nicks present, kept sorted case-insensitively as users come and go."""

from bisect import bisect_left

from messages import nick_key


class Roster:
    """Nicks in `nick_key` order; adding or removing one costs a search and a memmove."""

    def __init__(self) -> None:
        self._keys: list[str] = []
        self._nicks: list[str] = []

    def add(self, nick: str) -> None:
        key = nick_key(nick)
        index = bisect_left(self._keys, key)
        self._keys.insert(index, key)
        self._nicks.insert(index, nick)

    def remove(self, nick: str) -> None:
        index = bisect_left(self._keys, nick_key(nick))
        del self._keys[index]
        del self._nicks[index]

    def clear(self) -> None:
        self._keys.clear()
        self._nicks.clear()

    def values(self) -> list[str]:
        """The nicks, sorted."""
        return self._nicks
