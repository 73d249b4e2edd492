"""The rooms this client is in, each with its own numbering (sans-IO).

Every room but #general numbers its events (ENTERED, PARTED, POSTED, TOPIC) in a sequence
of its own, under an epoch of its own (ROOM names both). Each joined room gets a
`BroadcastStream`, the same ordering, deduplication and gap finding as the broadcasts of
#general: the room's ROOM state plays the part of WELCOME, and ROOMFETCH that of FETCH.

The rooms joined are remembered for the run: after the session registers again (a new
connection, a restarted broker), the client enters each again, and the ROOM answer says
what it missed.
"""

from dataclasses import dataclass, field

from messages import events as ev
from messages import room_key

from .stream import BroadcastStream

RoomEvent = ev.RoomEvent


@dataclass
class JoinedRoom:
    """One room this client is in."""

    name: str
    topic: str = ""
    invite_only: bool = False
    stream: BroadcastStream = field(default_factory=BroadcastStream)


class JoinedRooms:
    """The rooms this client is in, by name key, in the order they were joined."""

    def __init__(self) -> None:
        self._rooms: dict[str, JoinedRoom] = {}

    def __contains__(self, name: str) -> bool:
        return room_key(name) in self._rooms

    def names(self) -> list[str]:
        return [room.name for room in self._rooms.values()]

    def get(self, name: str) -> JoinedRoom | None:
        return self._rooms.get(room_key(name))

    def on_state(self, state: ev.RoomState, now: float) -> int | None:
        """The ROOM state of a room just entered (or entered again): the number to fetch
        from, if some events of it were missed."""
        room = self._rooms.setdefault(room_key(state.room), JoinedRoom(state.room))
        room.name, room.topic = state.room, state.topic
        room.invite_only = state.invite_only
        room.stream.on_welcome(state.epoch, state.seq)
        return room.stream.fetch_due(now)

    def accept(self, event: RoomEvent, now: float) -> tuple[list[RoomEvent], int | None]:
        """Take in one room event: those to apply now, in order, and the number to fetch
        from if a gap showed. Events of rooms not joined (any more) are dropped."""
        room = self._rooms.get(room_key(event.room))
        if room is None or room.stream.epoch is None:
            return [], None
        released = [e for e in room.stream.accept(event).events if isinstance(e, RoomEvent)]
        for applied in released:
            match applied:
                case ev.TopicSet(topic=topic):
                    room.topic = topic
                case ev.ModeSet(mode=mode):
                    room.invite_only = mode == "+i"
        return released, room.stream.fetch_due(now)

    def on_tick(self, name: str, seq: int, now: float) -> int | None:
        """ROOMTICK: room `name` numbered its events up to `seq`; the number to fetch from
        if we missed some."""
        room = self._rooms.get(room_key(name))
        if room is None or room.stream.epoch is None:
            return None
        room.stream.on_tick(seq)
        return room.stream.fetch_due(now)

    def resync(self, now: float) -> list[tuple[str, int]]:
        """The stream (re)connected: for each room read there, the number to fetch from
        (what was published before it did may not have reached us)."""
        return [
            (room.name, room.stream.resync(now))
            for room in self._rooms.values()
            if room.stream.epoch is not None and not room.invite_only
        ]

    def left(self, name: str) -> None:
        """This client left room `name`."""
        self._rooms.pop(room_key(name), None)
