"""The nicks present, kept sorted case-insensitively as users come and go."""

from bisect import bisect_left, bisect_right

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

    def page(self, after: str, max_bytes: int) -> tuple[list[str], bool]:
        """The nicks sorted after `after` (from the first if it is empty) that fit in
        `max_bytes` as UTF-8 joined by spaces (one at least), and whether more follow."""
        return page_of(self._keys, self._nicks, after, max_bytes)


def page_of(
    keys: list[str], nicks: list[str], after: str, max_bytes: int
) -> tuple[list[str], bool]:
    """Of `nicks` (sorted by their `keys`, nick keys), those after `after` (from the first
    if it is empty) that fit in `max_bytes` as UTF-8 joined by spaces (one at least), and
    whether more follow."""
    start = bisect_right(keys, nick_key(after)) if after else 0
    page: list[str] = []
    size = 0
    for index in range(start, len(nicks)):
        nick = nicks[index]
        cost = len(nick.encode()) + (1 if page else 0)
        if size + cost > max_bytes and page:
            return page, True
        size += cost
        page.append(nick)
    return page, False
