"""Rooms: who is in which, their topics and their numbered events (sans-IO).

#general is everyone's and is not kept here: its traffic is the protocol's broadcasts
(JOIN, LEAVE, MESSAGE, NOTICE), numbered in the broker's broadcast log. Every other room
is a `Room`: made when someone enters it, gone when the last member leaves. A room's events
(ENTERED, PARTED, POSTED, TOPIC) are numbered 1, 2, 3, ... in its own log, under an epoch of
its own, so a client repairs a gap in each room separately (ROOMFETCH).

Members are sessions, keyed by (a hash of) their session token: a session keeps its rooms
when it resumes on a new connection, and whatever its nick. A member may be absent: its
session has not come back since a broker restart, or (in a cluster) it is on another broker.
Who acts on a room is an `Actor`: a session here, or one on another broker of the cluster.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, Protocol

from messages import (
    GENERAL_ROOM,
    MAX_ROOM_MEMBERS,
    MAX_ROOMS,
    MAX_ROOMS_PER_USER,
    ErrorCode,
    ProtocolError,
    check_room_name,
    nick_key,
    room_key,
    room_skeleton,
)
from messages import events as ev

from .history import BroadcastLog
from .session import Session
from .store import RoomEvent, StoredRoom, new_epoch

#: Events of each room kept in memory for ROOMFETCH.
ROOM_LOG_EVENTS: Final = 1000


class Actor(Protocol):
    """Who enters, posts to or runs a room: a `Session`, or (in a cluster) the same facts
    about a session on another broker."""

    @property
    def token_hash(self) -> str: ...
    @property
    def nick(self) -> str: ...
    @property
    def owns_nick(self) -> bool: ...
    @property
    def operator(self) -> bool: ...


@dataclass(eq=False)
class Room:
    """One room: its name as first written, members, topic and event log."""

    name: str
    epoch: str
    #: Who made it, and so runs it (topic, mode, invitations, evictions; operators may
    #: too): the hash of its session's token, and its nick key if it owned its nick then
    #: (another session of the nick's owner runs it too; a guest's later namesake does not).
    creator_token: str
    creator_owned_key: str = ""
    topic: str = ""
    #: Only the invited may enter, and its events never go on the stream.
    invite_only: bool = False
    #: Nick keys invited (see INVITE), until they enter.
    invited: set[str] = field(default_factory=set)
    #: Members by the hash of their session token, in the order they entered.
    members: dict[str, Session] = field(default_factory=dict)
    #: Members kept through a broker restart whose session has not registered again yet:
    #: their nicks, by token hash (see `Rooms.come_back`).
    absent: dict[str, str] = field(default_factory=dict)
    log: BroadcastLog[RoomEvent] = field(default_factory=lambda: BroadcastLog(ROOM_LOG_EVENTS))

    @property
    def last_seq(self) -> int:
        return self.log.last_seq

    def state(self) -> ev.RoomState:
        """The ROOM event that describes it now."""
        return ev.RoomState(
            self.name,
            self.epoch,
            self.log.last_seq,
            len(self.members) + len(self.absent),
            self.topic,
            self.invite_only,
        )

    def member(self, nick: str) -> Session | None:
        """The member holding `nick`, if any."""
        key = nick_key(nick)
        return next((s for s in self.members.values() if nick_key(s.nick) == key), None)

    def holder_of(self, nick: str) -> tuple[str, str] | None:
        """(token hash, nick) of the member holding `nick`, present or absent, if any."""
        key = nick_key(nick)
        everyone = [*((t, s.nick) for t, s in self.members.items()), *self.absent.items()]
        return next(((token, held) for token, held in everyone if nick_key(held) == key), None)

    def has(self, actor: Actor) -> bool:
        """Whether `actor` is a member, present or absent."""
        return self.has_token(actor.token_hash)

    def has_token(self, token: str) -> bool:
        """Whether the session with `token` (a hash) is a member, present or absent."""
        return token in self.members or token in self.absent

    def nicks(self) -> list[str]:
        """Its members' nicks (those not back since a restart too), sorted by nick key (the
        order of MEMBERS pages)."""
        present = [s.nick for s in self.members.values()]
        return sorted([*present, *self.absent.values()], key=nick_key)

    def stored(self) -> StoredRoom:
        """What the store keeps of it (its members and events are written one by one)."""
        return StoredRoom(
            self.name,
            self.epoch,
            self.topic,
            self.invite_only,
            self.creator_token,
            self.creator_owned_key,
        )

    def run_by(self, actor: Actor) -> bool:
        """Whether `actor` runs the room: its maker, or an operator."""
        if actor.operator or actor.token_hash == self.creator_token:
            return True
        owned = self.creator_owned_key
        return bool(owned) and actor.owns_nick and nick_key(actor.nick) == owned

    def require_run_by(self, actor: Actor, what: str) -> None:
        """ERROR 403 unless `actor` runs the room."""
        if not self.run_by(actor):
            raise ProtocolError(
                ErrorCode.FORBIDDEN, f"only whoever made {self.name} (or an operator) {what}"
            )


class Rooms:
    """Every room but #general, by name key, with each session's rooms."""

    def __init__(self) -> None:
        self._rooms: dict[str, Room] = {}
        self._by_skeleton: dict[str, str] = {}
        #: Room keys by the hash of each member session's token.
        self._joined: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._rooms)

    def __iter__(self) -> Iterator[Room]:
        return iter(self._rooms.values())

    def get(self, name: str) -> Room | None:
        return self._rooms.get(room_key(name))

    def require(self, name: str) -> Room:
        """The room `name`, else ERROR 404."""
        room = self.get(check_room_name(name))
        if room is None:
            raise ProtocolError(ErrorCode.NO_SUCH_NICK, f"no such room: {name}")
        return room

    def require_member(self, name: str, actor: Actor) -> Room:
        """The room `name` if `actor` is in it (present, or absent in a cluster's other
        broker), else ERROR 404 or 403."""
        room = self.require(name)
        if not room.has(actor):
            raise ProtocolError(
                ErrorCode.FORBIDDEN, f"you are not in {room.name}: /join {room.name} first"
            )
        return room

    def of(self, actor: Actor) -> list[Room]:
        """The rooms `actor` is in."""
        return [self._rooms[key] for key in self._joined.get(actor.token_hash, ())]

    def enter(
        self, name: str, actor: Actor, session: Session | None, epoch: str = ""
    ) -> tuple[Room, bool, bool]:
        """Put `actor` in room `name`, made if new (numbered under `epoch`, or a new one);
        the room, whether `actor` just entered it (False: it was in already) and whether the
        room was just made. `session` is the actor's session if it is here; else it is an
        absent member (on another broker). ERROR 403, 409 or 429 when it may not."""
        check_room_name(name)
        key = room_key(name)
        if key == room_key(GENERAL_ROOM):
            raise ProtocolError(
                ErrorCode.FORBIDDEN, f"everyone is in {GENERAL_ROOM}: its messages are SAY"
            )
        room = self._rooms.get(key)
        if room is not None and room.has(actor):
            return room, False, False
        mine = self._joined.get(actor.token_hash, set())
        if len(mine) >= MAX_ROOMS_PER_USER:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"you are in {len(mine)} rooms, the most one may be in: /part one first",
            )
        if room is not None and room.invite_only:
            invited = nick_key(actor.nick)
            if invited not in room.invited and not actor.operator:
                raise ProtocolError(
                    ErrorCode.FORBIDDEN,
                    f"{room.name} is invite-only: whoever made it may /invite you",
                )
            room.invited.discard(invited)
        made = room is None
        if room is None:
            room = self._make(name, key, actor, epoch or new_epoch())
        elif len(room.members) + len(room.absent) >= MAX_ROOM_MEMBERS:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED, f"{room.name} is full ({MAX_ROOM_MEMBERS} members)"
            )
        if session is not None:
            room.members[actor.token_hash] = session
        else:
            room.absent[actor.token_hash] = actor.nick
        self._joined.setdefault(actor.token_hash, set()).add(key)
        return room, True, made

    def _make(self, name: str, key: str, creator: Actor, epoch: str) -> Room:
        if len(self._rooms) >= MAX_ROOMS:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"this server has {MAX_ROOMS} rooms, the most it keeps: join one of them",
            )
        skeleton = room_skeleton(name)
        twin = self._by_skeleton.get(skeleton)
        if twin is not None:
            raise ProtocolError(
                ErrorCode.NICK_TAKEN,
                f"{name} looks like the room {self._rooms[twin].name}: join that one, or "
                "choose a name that looks different",
            )
        if skeleton == room_skeleton(GENERAL_ROOM):
            raise ProtocolError(ErrorCode.NICK_TAKEN, f"{name} looks like {GENERAL_ROOM}")
        owned = nick_key(creator.nick) if creator.owns_nick else ""
        room = Room(name, epoch, creator.token_hash, owned)
        self._rooms[key] = room
        self._by_skeleton[skeleton] = key
        return room

    def part(self, room: Room, session: Session) -> bool:
        """Take `session` out of `room`; whether the room went (it was the last one in)."""
        return self.part_token(room, session.token_hash)

    def part_token(self, room: Room, token: str) -> bool:
        """Take the member with `token` (present or absent) out of `room`; whether the room
        went (it was the last one in)."""
        room.members.pop(token, None)
        room.absent.pop(token, None)
        return self._leave(room, token)

    def _leave(self, room: Room, token: str) -> bool:
        key = room_key(room.name)
        mine = self._joined.get(token)
        if mine is not None:
            mine.discard(key)
            if not mine:
                del self._joined[token]
        if room.members or room.absent:
            return False
        del self._rooms[key]
        del self._by_skeleton[room_skeleton(room.name)]
        return True

    def resume(self, stored: list[StoredRoom]) -> None:
        """Start from the rooms a store kept: their members are absent until their sessions
        register again (`come_back`)."""
        for kept in stored:
            key = room_key(kept.name)
            room = Room(kept.name, kept.epoch, kept.creator_token, kept.creator_owned_key)
            room.topic, room.invite_only = kept.topic, kept.invite_only
            room.invited = set(kept.invited)
            room.absent = dict(kept.members)
            room.log.resume([], kept.last_seq)
            self._rooms[key] = room
            self._by_skeleton[room_skeleton(room.name)] = key
            for token in room.absent:
                self._joined.setdefault(token, set()).add(key)

    def come_back(self, session: Session) -> None:
        """A session registered: it is in the rooms it was in before a restart again."""
        for room in self.of(session):
            if room.absent.pop(session.token_hash, None) is not None:
                room.members[session.token_hash] = session

    def went_away(self, session: Session) -> None:
        """`session` goes on on another broker of the cluster: an absent member here."""
        for room in self.of(session):
            if room.members.pop(session.token_hash, None) is not None:
                room.absent[session.token_hash] = session.nick

    def renamed(self, old: str, new: str) -> None:
        """The absent member holding nick `old` holds `new` now."""
        key = nick_key(old)
        for room in self._rooms.values():
            for token, nick in room.absent.items():
                if nick_key(nick) == key:
                    room.absent[token] = new

    def absent_members(self) -> list[tuple[Room, str, str]]:
        """(room, token hash, nick) of each member not back since the restart."""
        return [(room, t, nick) for room in self._rooms.values() for t, nick in room.absent.items()]

    def forget_absent(self, room: Room, token: str) -> bool:
        """An absent member did not come back: out of `room`; whether the room went (it was
        the last one in)."""
        room.absent.pop(token, None)
        return self._leave(room, token)

    def page(self, after: str, limit: int) -> tuple[list[Room], bool]:
        """Up to `limit` rooms sorted by name key after `after`, and whether more follow."""
        start = room_key(after) if after else ""
        keys = sorted(key for key in self._rooms if key > start)
        return [self._rooms[key] for key in keys[:limit]], len(keys) > limit


def numbered(room: Room, event: RoomEvent) -> RoomEvent:
    """Append `event` (numbered `room.log.next_seq()`) to the room's log; `event`."""
    room.log.append(event)
    return event
