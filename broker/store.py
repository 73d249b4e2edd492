"""Stand-in for the broker's store (in memory), with the API the history verbs use.

Temporary: the SQLite store replaces this file whole.
"""

import secrets
from dataclasses import dataclass
from typing import Final

from messages import nick_key

MAIN_ROOM: Final = ""


@dataclass(frozen=True, slots=True)
class Entry:
    """One message of history: a broadcast (recipient "") or a private."""

    id: int
    sender: str
    recipient: str
    text: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class Page:
    entries: list[Entry]
    next_before: int


class StoreError(Exception):
    """A write failed."""


class Store:
    def __init__(self, path: str = ":memory:") -> None:
        self.epoch = secrets.token_hex(4)
        self.last_seq = 0
        self._broadcasts: list[Entry] = []
        self._privates: list[Entry] = []

    def add_broadcast(self, seq: int, sender: str, text: str, time_ms: int) -> None:
        self._broadcasts.append(Entry(seq, sender, "", text, time_ms))
        self.last_seq = seq

    def add_private(self, sender: str, recipient: str, text: str, time_ms: int) -> None:
        self._privates.append(Entry(len(self._privates) + 1, sender, recipient, text, time_ms))

    def history(self, before: int, limit: int, room: str = MAIN_ROOM) -> Page:
        return _page(self._broadcasts, before, limit)

    def conversation(self, me: str, other: str, before: int, limit: int) -> Page:
        pair = {nick_key(me), nick_key(other)}
        between = [e for e in self._privates if {nick_key(e.sender), nick_key(e.recipient)} == pair]
        return _page(between, before, limit)

    def search(self, viewer: str, words: str, limit: int) -> Page:
        wanted = words.casefold().split()
        me = nick_key(viewer)
        hits = [
            e
            for e in sorted(self._broadcasts + self._privates, key=lambda e: e.time_ms)
            if (not e.recipient or me in (nick_key(e.sender), nick_key(e.recipient)))
            and all(w in e.text.casefold() for w in wanted)
        ]
        return Page(hits[-limit:] if wanted else [], 0)


def _page(entries: list[Entry], before: int, limit: int) -> Page:
    older = [e for e in entries if before == 0 or e.id < before]
    page = older[-limit:]
    return Page(page, page[0].id if len(older) > limit else 0)
