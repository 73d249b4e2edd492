"""Buffers, as in weechat and irssi: one scrollback per conversation, numbered, with unread
counts and an activity level each.

Today there is one room, the everyone-chat, shown as `#general` (buffer 1, never closed),
and one buffer per private conversation. A buffer is named by a `BufferKey`: a room's name or
a nick, compared case-insensitively, so that rooms come later as more keys of the ROOM kind.

`Buffers` decides where each entry goes (`route`), counts what arrives in the buffers the
user is not looking at, and says when that deserves a notification (a mention of the user's
nick, a private message). It does no I/O: the full-screen UI draws it, tests drive it with
tables.
"""

import enum
from dataclasses import dataclass
from typing import Final

from messages import nick_key

from .state import Entry, EntryKind

#: The room for everyone, as buffer 1 shows it (rooms on the wire will use this name).
GENERAL_NAME: Final = "#general"


class BufferKind(enum.Enum):
    """What a buffer holds."""

    #: A room: #general (everyone's, buffer 1) or one the user joined (`/join #dev`).
    ROOM = "room"
    #: A private conversation with one nick.
    PRIVATE = "private"


@dataclass(frozen=True, slots=True)
class BufferKey:
    """Names a buffer: its kind and the name's case-insensitive key."""

    kind: BufferKind
    key: str

    @classmethod
    def room(cls, name: str) -> "BufferKey":
        """The buffer of room `name` (`#general`)."""
        return cls(BufferKind.ROOM, nick_key(name))

    @classmethod
    def private(cls, nick: str) -> "BufferKey":
        """The buffer of the private conversation with `nick`."""
        return cls(BufferKind.PRIVATE, nick_key(nick))


GENERAL: Final = BufferKey.room(GENERAL_NAME)


class Level(enum.IntEnum):
    """How much what arrived in a buffer matters, in weechat's order (higher wins)."""

    NONE = 0
    #: Joins, leaves, answers and other system lines.
    LOW = 1
    #: Chat text to everyone.
    MESSAGE = 2
    #: A private message to the user.
    PRIVATE = 3
    #: A message that mentions the user's nick.
    HIGHLIGHT = 4


def level_of(entry: Entry) -> Level:
    """How much `entry` matters as activity: none for own lines and stored history."""
    if entry.own or entry.history or entry.kind is EntryKind.DELIVERY:
        return Level.NONE
    match entry.kind:
        case EntryKind.PRIVATE:
            return Level.PRIVATE
        case EntryKind.MESSAGE:
            return Level.HIGHLIGHT if entry.highlight else Level.MESSAGE
        case EntryKind.NOTICE:
            return Level.MESSAGE
    return Level.LOW


@dataclass(slots=True)
class Buffer:
    """One buffer: its name, and what arrived in it since the user last looked."""

    key: BufferKey
    #: As shown: `#general`, or the nick as the broker spells it.
    name: str
    #: Messages (level MESSAGE and above) not seen yet.
    unread: int = 0
    #: The highest level of what was not seen yet.
    level: Level = Level.NONE
    #: Mentions and private messages not seen yet: each rang the bell once.
    alerts: int = 0
    #: No bell, title count or activity for this buffer.
    muted: bool = False

    @property
    def target(self) -> str | None:
        """Where plain lines typed here go: a nick or a room, or None for everyone."""
        return None if self.key == GENERAL else self.name

    def seen(self) -> None:
        """The user looks at it: nothing in it is unseen any more."""
        self.unread, self.level, self.alerts = 0, Level.NONE, 0


@dataclass(frozen=True, slots=True)
class Arrival:
    """Where an entry was put, and whether that deserves a bell."""

    buffer: Buffer
    alert: bool


class Buffers:
    """The numbered buffers (#general first), the current one, and their activity."""

    def __init__(self) -> None:
        self.buffers: list[Buffer] = [Buffer(GENERAL, GENERAL_NAME)]
        self._current = 0

    # -- queries ---------------------------------------------------------------------

    @property
    def current(self) -> Buffer:
        """The buffer on screen."""
        return self.buffers[self._current]

    @property
    def current_number(self) -> int:
        """The current buffer's number (1 for #general)."""
        return self._current + 1

    def number(self, buffer: Buffer) -> int:
        """`buffer`'s number, from 1."""
        return self.buffers.index(buffer) + 1

    def find(self, key: BufferKey) -> Buffer | None:
        """The open buffer named by `key`, if any."""
        return next((b for b in self.buffers if b.key == key), None)

    def lookup(self, name: str) -> Buffer | None:
        """The buffer `/buffer NAME` means: a number, or a name (`#` optional for rooms),
        ignoring case."""
        if name.isdecimal():
            index = int(name) - 1
            return self.buffers[index] if 0 <= index < len(self.buffers) else None
        key = nick_key(name.removeprefix("#"))
        return next((b for b in self.buffers if nick_key(b.name.removeprefix("#")) == key), None)

    @property
    def alerts(self) -> int:
        """Mentions and private messages not seen yet, in every buffer: the title shows it."""
        return sum(b.alerts for b in self.buffers)

    def activity(self) -> list[tuple[int, Buffer]]:
        """The buffers with something unseen (not muted), with their numbers, in order."""
        return [
            (number, buffer)
            for number, buffer in enumerate(self.buffers, 1)
            if buffer.level > Level.NONE and not buffer.muted
        ]

    # -- changes ---------------------------------------------------------------------

    def open(self, key: BufferKey, name: str) -> Buffer:
        """The buffer named by `key`, opened last if it is not open yet (as `name`)."""
        buffer = self.find(key)
        if buffer is None:
            buffer = Buffer(key, name)
            self.buffers.append(buffer)
        else:
            buffer.name = name  # the latest spelling
        return buffer

    def switch(self, buffer: Buffer) -> Buffer:
        """Make `buffer` (an open one) current; what is in it counts as seen."""
        self._current = self.buffers.index(buffer)
        buffer.seen()
        return buffer

    def step(self, delta: int) -> Buffer:
        """Move `delta` buffers on (negative: back), round the ends."""
        return self.switch(self.buffers[(self._current + delta) % len(self.buffers)])

    def next_active(self) -> Buffer | None:
        """The buffer Alt-A goes to: the highest level first, then the lowest number;
        None if nothing is unseen."""
        active = self.activity()
        if not active:
            return None
        return max(active, key=lambda item: (item[1].level, -item[0]))[1]

    def close(self, buffer: Buffer) -> str | None:
        """Close `buffer`: None if it is closed (the one before it is current if it was),
        else why not."""
        if buffer.key == GENERAL:
            return f"{buffer.name} cannot be closed"
        index = self.buffers.index(buffer)
        current = self.current
        del self.buffers[index]
        if current is buffer:
            self.switch(self.buffers[index - 1])
        else:
            self._current = self.buffers.index(current)
        return None

    def route(self, entry: Entry) -> list[Buffer]:
        """The buffers `entry` goes to, opening a private conversation's buffer if needed:

        - a private message: its conversation's buffer (an own one sent from another
          buffer, `/msg`, shows in the current buffer too);
        - anything that happened in a room (`entry.room`): that room's buffer;
        - a message or notice to everyone: #general;
        - a join or leave: #general, and the private buffer with that nick if it is open;
        - stored history (answers to /history, /search, /query) and everything else
          (system lines, errors, answers to commands): the current buffer.
        """
        current = self.current
        if entry.history:
            return [current]
        if entry.room:
            buffer = self.open(BufferKey.room(entry.room), entry.room)
            return [buffer, current] if entry.own and buffer is not current else [buffer]
        match entry.kind:
            case EntryKind.PRIVATE:
                partner = entry.recipient if entry.own else entry.sender
                buffer = self.open(BufferKey.private(partner), partner)
                if entry.own and buffer is not current:
                    return [buffer, current]
                return [buffer]
            case EntryKind.MESSAGE | EntryKind.NOTICE:
                return [self.buffers[0]]
            case EntryKind.SYSTEM if entry.presence:
                private = self.find(BufferKey.private(entry.sender))
                return [self.buffers[0]] if private is None else [self.buffers[0], private]
        return [current]

    def arrive(self, buffer: Buffer, entry: Entry) -> Arrival:
        """Count `entry` as arrived in `buffer`: unseen if the user is not looking at it.
        The arrival alerts (a bell, the title's count) for a mention or a private message
        in another buffer that is not muted."""
        level = level_of(entry)
        if buffer is self.current or level is Level.NONE:
            return Arrival(buffer, False)
        if level >= Level.MESSAGE:
            buffer.unread += 1
        if buffer.muted:
            return Arrival(buffer, False)
        buffer.level = max(buffer.level, level)
        alert = level >= Level.PRIVATE
        if alert:
            buffer.alerts += 1
        return Arrival(buffer, alert)
