"""A stand-in for the broker's store, with only what owned nicks need (in memory).

The SQLite store replaces this file whole; its owned-nick API is the same.
"""

from typing import Final

from messages import nick_key

IN_MEMORY: Final = ":memory:"


class StoreError(Exception):
    """A write failed; str(exc) is the reason."""


class Store:
    """Owned nicks by uniqueness key: the public key of each, and its spelling."""

    def __init__(self, path: str = IN_MEMORY) -> None:
        self.path = path
        self._owners: dict[str, tuple[str, bytes]] = {}

    def owner(self, nick: str) -> bytes | None:
        """The public key that owns `nick`, if it is registered."""
        found = self._owners.get(nick_key(nick))
        return found[1] if found is not None else None

    def set_owner(self, nick: str, public_key: bytes) -> None:
        """`nick` belongs to the holder of `public_key` from now on. Raises StoreError."""
        self._owners[nick_key(nick)] = (nick, public_key)

    def drop_owner(self, nick: str) -> bool:
        """Free `nick`; True if it was registered. Raises StoreError."""
        return self._owners.pop(nick_key(nick), None) is not None

    def owners(self, after: str, limit: int) -> list[str]:
        """Registered nicks sorted by their uniqueness key, those after `after`'s."""
        start = nick_key(after) if after else ""
        keys = sorted(key for key in self._owners if key > start)[:limit]
        return [self._owners[key][0] for key in keys]
