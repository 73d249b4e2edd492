"""What brokers of one cluster tell each other: sans-IO, no NATS.

Several brokers serve one chat by sharing three things through NATS (docs/CLUSTER.md):

- **claims**: who holds each nick, in a key-value bucket keyed by what the nick looks like
  (`claim_keys`), so that a create is an atomic, cluster-wide check for a free nick;
- **broadcasts**: #general's events, published to a JetStream stream whose sequence numbers
  them for every broker (`Numbered` comes back to each, in order);
- **privates**: to a subject per recipient (`user_subject`), kept in a stream until the
  recipient confirms them, so that a session resumed on another broker gets them;
- **rooms**: every change of every room (enter, part, post, topic, mode, invitation), as
  `RoomOp`s on one stream that every broker applies in the stream's order: the same changes
  in the same order give every broker the same rooms, numbered alike.

This module holds the names of those subjects and keys, the records that travel, and the
events the backplane (`broker.backplane`) hands the core. The core decides; the backplane
only moves bytes.
"""

import enum
import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Final, Protocol

from messages import decode_event, encode, nick_key, nick_skeleton, pack_events
from messages import events as ev
from messages.codec import unpack_events

from .history import BroadcastEvent
from .session import Outcome
from .store import RoomEvent

#: Every subject, stream and bucket of the chat starts with this (one NATS account may
#: serve other things too).
PREFIX: Final = "zmqchat"
#: The key-value bucket of nick claims.
CLAIMS_BUCKET: Final = f"{PREFIX}-claims"
#: The key-value bucket of owned nicks (REGISTER): keyed like claims, valued with the nick and
#: its owner's public key; every broker mirrors it into its own store.
OWNERS_BUCKET: Final = f"{PREFIX}-owners"
#: The key-value bucket where each broker says it is alive.
BROKERS_BUCKET: Final = f"{PREFIX}-brokers"
#: The key-value bucket of what the cluster was made with (its epoch).
META_BUCKET: Final = f"{PREFIX}-meta"
#: The key of the cluster's epoch in META_BUCKET.
EPOCH_KEY: Final = "epoch"
#: The stream of #general's events (the cluster's history) and its one subject.
GENERAL_STREAM: Final = "ZMQCHAT_GENERAL"
GENERAL_SUBJECT: Final = f"{PREFIX}.general"
#: The stream of every room's changes and its one subject.
ROOMS_STREAM: Final = "ZMQCHAT_ROOMS"
ROOMS_SUBJECT: Final = f"{PREFIX}.rooms"
#: The stream of private messages and receipts, by recipient.
USERS_STREAM: Final = "ZMQCHAT_USERS"
#: Subject kinds under `user_subject`: a private message (kept), a receipt for one (kept),
#: and an outcome for a sender (DELIVERED, ERROR 504: not kept).
PRIVATE: Final = "pm"
RECEIPT: Final = "rcpt"
OUTCOME: Final = "out"
#: Operator actions for the whole cluster (kick, wall, shutdown), and for one broker.
CONSOLE_SUBJECT: Final = f"{PREFIX}.console"
#: The header JetStream deduplicates publishes by (within its duplicate window).
MSG_ID_HEADER: Final = "Nats-Msg-Id"


#: How claims' (and owners') keys by name start; those by look start with BY_LOOK.
BY_NAME: Final = "n-"
BY_LOOK: Final = "s-"


def claim_keys(nick: str) -> tuple[str, str]:
    """The claims bucket's keys for `nick`: by name (`nick_key`: `Alice`, `ALICE`) and by
    look (`nick_skeleton`: `alice`, `aIice`). A nick is held by whoever holds both; each is
    created atomically, so of two sessions racing for nicks alike, one gets it."""
    by_name = hashlib.sha256(nick_key(nick).encode()).hexdigest()[:40]
    by_look = hashlib.sha256(nick_skeleton(nick).encode()).hexdigest()[:40]
    return f"{BY_NAME}{by_name}", f"{BY_LOOK}{by_look}"


def user_subject(nick: str, kind: str) -> str:
    """The subject of `kind` (PRIVATE, RECEIPT, OUTCOME) for the holder of `nick`."""
    return f"{PREFIX}.u.{user_token(nick)}.{kind}"


def every_user_subject(kind: str) -> str:
    """The subjects of `kind` of every user (a stream's subject filter)."""
    return f"{PREFIX}.u.*.{kind}"


def user_token(nick: str) -> str:
    """`nick` as one subject token: its key (case and width folded), hashed."""
    return hashlib.sha256(nick_key(nick).encode()).hexdigest()[:32]


def dedup_id(kind: str, token_hash: str, msg_id: str) -> str:
    """The Nats-Msg-Id of message `msg_id` of the session with `token_hash`: the same
    through whichever broker the client sends it, so JetStream keeps it once."""
    return f"{kind}.{token_hash[:32]}.{msg_id}"


@dataclass(frozen=True)
class Claim:
    """A nick held somewhere in the cluster: by which session (its token's hash) on which
    broker. `revision` is the bucket's, for compare-and-set (0 until read back)."""

    nick: str
    token_hash: str
    broker: str
    revision: int = 0

    def to_bytes(self) -> bytes:
        record = asdict(self)
        del record["revision"]
        return json.dumps(record, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes, revision: int) -> "Claim":
        """Raises ValueError if `data` is not a claim."""
        record = json.loads(data)
        if not isinstance(record, dict):
            raise ValueError("a claim is a JSON object")
        nick, token, broker = record.get("nick"), record.get("token_hash"), record.get("broker")
        if not all(isinstance(value, str) for value in (nick, token, broker)):
            raise ValueError("a claim names a nick, a token hash and a broker")
        return cls(str(nick), str(token), str(broker), revision)


# -- what the backplane hands the core ------------------------------------------------


@dataclass(frozen=True)
class Numbered:
    """A #general event as the cluster's stream numbered it (its `seq` is the stream's)."""

    event: BroadcastEvent


@dataclass(frozen=True)
class RemoteActor:
    """Who changed a room, as every broker needs to know it to apply the change alike (a
    `broker.rooms.Actor`)."""

    token_hash: str
    nick: str
    owns_nick: bool = False
    operator: bool = False


#: What a change of a room carries: a room event (numbered when applied), an invitation, or
#: a LEAVE: the session's end, out of every room it is in then.
RoomChange = RoomEvent | ev.Invited | ev.Left


@dataclass(frozen=True)
class RoomOp:
    """A change of a room, numbered `seq` by the rooms' stream (the room events it holds
    are numbered in their room when applied). `target` is the token hash of the session
    it is about, when that is not the actor (the guest of an invitation, the member
    removed): the nick another broker knows it by may be a moment behind."""

    event: RoomChange
    actor: RemoteActor
    seq: int
    target: str = ""


@dataclass(frozen=True)
class Published:
    """What became of what the core published for session `token_hash` of `nick` (a chat
    message `msg_id`, or a change of a room, with no `msg_id`): `ok`, or why not."""

    token_hash: str
    nick: str
    msg_id: str
    ok: bool
    reason: str = ""
    #: For a private message to an owned nick that is away: that nick (STORED follows).
    stored_for: str = ""


@dataclass(frozen=True)
class PrivateIn:
    """A private message for a session here (maybe again: the client drops repeats)."""

    private: ev.PrivateMessage
    sender_token: str
    recipient_token: str


@dataclass(frozen=True)
class OutcomeIn:
    """What became of a private message, for its sender's session (`sender` with
    `sender_token`)."""

    sender: str
    sender_token: str
    outcome: Outcome


@dataclass(frozen=True)
class ClaimSet:
    """A claim was made or moved (to another broker, on failover)."""

    claim: Claim


@dataclass(frozen=True)
class OwnerSet:
    """`nick` is owned by `public_key` (registered on some broker of the cluster)."""

    nick: str
    public_key: bytes


@dataclass(frozen=True)
class OwnerGone:
    """`nick` is owned no more."""

    nick: str


@dataclass(frozen=True)
class ClaimGone:
    """A claim was released (its session ended)."""

    key: str


@dataclass(frozen=True)
class Reaped:
    """A claim of a broker that stopped beating was removed, by this broker: its session
    is gone for good and everyone is to learn it."""

    claim: Claim


@dataclass(frozen=True)
class LinkChanged:
    """The link to NATS went down or came back."""

    up: bool
    detail: str


@dataclass(frozen=True)
class ConsoleIn:
    """An operator action from another broker's console: a console line, and the broker it
    is for ("" for every broker)."""

    line: str
    broker: str


ClusterEvent = (
    (Numbered | Published | PrivateIn | OutcomeIn | ClaimSet | ClaimGone | Reaped | LinkChanged)
    | ConsoleIn
    | RoomOp
    | OwnerSet
    | OwnerGone
)


class Backplane(Protocol):
    """What the core asks of the cluster's link (`broker.backplane.NatsBackplane`)."""

    broker_id: str
    epoch: str
    #: #general's events from `first_seq` (the last ones that fit the core's memory) to
    #: `last_seq` are in the cluster's stream when the link starts.
    first_seq: int
    last_seq: int
    #: Every claim in the cluster when the link started, by key.
    start_claims: dict[str, "Claim"]
    #: Every owned nick in the cluster when the link started (nick, public key), by key.
    start_owners: dict[str, tuple[str, bytes]]

    def claim(self, nick: str, token_hash: str) -> "ClaimResult": ...
    def redeliver(self, nick: str, token_hash: str, owner: bool = False) -> None: ...
    def follow_general(self, from_seq: int) -> None: ...
    def holds(self, key: str) -> bool: ...
    def registration(self, nick: str) -> tuple[str, bytes] | None: ...
    def own(self, nick: str, public_key: bytes) -> "ClaimResult": ...
    def disown(self, nick: str) -> None: ...
    def publish_broadcast(
        self, event: BroadcastEvent, token_hash: str = "", nick: str = "", msg_id: str = ""
    ) -> None: ...
    def send_private(
        self,
        private: ev.PrivateMessage,
        sender_token: str,
        recipient_token: str,
        stored_for: str = "",
    ) -> None: ...
    def confirmed(self, recipient: str, sender: str, msg_id: str) -> None: ...
    def send_outcome(self, sender: str, sender_token: str, outcome: Outcome) -> None: ...
    def follow(self, nick: str) -> None: ...
    def unfollow(self, nick: str) -> None: ...
    def release(self, nick: str, token_hash: str, keep: str = "") -> None: ...
    def publish_room(
        self, event: RoomChange, actor: RemoteActor, msg_id: str = "", target: str = ""
    ) -> None: ...


class ClaimOutcome(enum.Enum):
    """What came of a claim."""

    #: The nick is the session's now.
    CLAIMED = "claimed"
    #: The session held it already (on another broker, which it left): it moves here.
    RESUMED = "resumed"
    #: Another session holds it, or one that looks like it.
    TAKEN = "taken"
    #: NATS could not be asked: nothing is risked.
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class ClaimResult:
    """A claim's outcome, and for a refusal the reason, for the client."""

    outcome: ClaimOutcome
    reason: str = ""
    #: The revisions of the keys it took (CLAIMED or RESUMED).
    revisions: tuple[int, ...] = ()


# -- payloads -------------------------------------------------------------------------


def pack_event(event: ev.BrokerEvent, *extra: str) -> bytes:
    """`event` in its wire frames, after `extra` strings (nicks, token hashes) as a JSON
    line, in one payload."""
    return json.dumps(extra).encode() + b"\n" + pack_events([encode(event)])


def unpack_event(payload: bytes, extra: int) -> tuple[list[str], ev.BrokerEvent]:
    """The `extra` strings and the event of a `pack_event` payload.

    Raises ProtocolError or ValueError if it is not one."""
    line, newline, packed = payload.partition(b"\n")
    texts = json.loads(line) if newline else None
    if not isinstance(texts, list) or len(texts) != extra:
        raise ValueError(f"a cluster payload starts with {extra} strings")
    if not all(isinstance(text, str) for text in texts):
        raise ValueError(f"a cluster payload starts with {extra} strings")
    events = unpack_events(packed)
    if len(events) != 1:
        raise ValueError("a cluster payload holds one event")
    return texts, decode_event(events[0])


def numbered(payload: bytes, seq: int) -> Numbered:
    """The #general event in a GENERAL_SUBJECT payload, numbered `seq`.

    Raises ValueError (or ProtocolError) for anything else."""
    _, event = unpack_event(payload, 0)
    if not isinstance(event, BroadcastEvent):
        raise ValueError(f"{type(event).__name__} is not a broadcast")
    return Numbered(renumbered(event, seq))


def renumbered(event: BroadcastEvent, seq: int) -> BroadcastEvent:
    """`event` with sequence number `seq`."""
    return replace(event, seq=seq)


#: The events a change of a room carries.
ROOM_CHANGES: Final = (
    ev.Entered,
    ev.Parted,
    ev.Posted,
    ev.TopicSet,
    ev.ModeSet,
    ev.Invited,
    ev.Left,
)


def pack_room_op(event: RoomChange, actor: RemoteActor, target: str = "") -> bytes:
    """The ROOMS_SUBJECT payload of a change of a room by `actor` (about `target`)."""
    flags = ("1" if actor.owns_nick else "0") + ("1" if actor.operator else "0")
    return pack_event(event, actor.token_hash, actor.nick, flags, target)


def room_op(payload: bytes, seq: int) -> RoomOp:
    """The change of a room in a ROOMS_SUBJECT payload, numbered `seq` by the stream.

    Raises ValueError (or ProtocolError) for anything else."""
    (token, nick, flags, target), event = unpack_event(payload, 4)
    if not isinstance(event, ROOM_CHANGES):
        raise ValueError(f"{type(event).__name__} is not a change of a room")
    if len(flags) != 2 or set(flags) - {"0", "1"}:
        raise ValueError(f"bad flags {flags!r}")
    actor = RemoteActor(token, nick, flags[0] == "1", flags[1] == "1")
    return RoomOp(event, actor, seq, target)


def private_in(payload: bytes) -> PrivateIn:
    """The private message in a PRIVATE payload. Raises ValueError or ProtocolError."""
    (sender, recipient), event = unpack_event(payload, 2)
    if not isinstance(event, ev.PrivateMessage):
        raise ValueError(f"{type(event).__name__} is not a private message")
    return PrivateIn(event, sender, recipient)


def outcome_in(payload: bytes) -> OutcomeIn:
    """The outcome in an OUTCOME payload. Raises ValueError or ProtocolError."""
    (sender, sender_token), event = unpack_event(payload, 2)
    if not isinstance(event, ev.Delivered | ev.Stored | ev.Error):
        raise ValueError(f"{type(event).__name__} is not an outcome")
    return OutcomeIn(sender, sender_token, event)


def pack_owner(nick: str, public_key: bytes, since_ms: int) -> bytes:
    """The owners bucket's value for `nick` owned by `public_key` since `since_ms`."""
    return json.dumps({"nick": nick, "key": public_key.hex(), "since": since_ms}).encode()


def owner_record(value: bytes) -> tuple[str, bytes, int]:
    """The nick, public key and time of registration (ms) of an owners bucket's value.
    Raises ValueError."""
    record = json.loads(value)
    if not isinstance(record, dict) or not isinstance(record.get("nick"), str):
        raise ValueError("an owner is a JSON object with a nick")
    key, since = record.get("key"), record.get("since")
    if not isinstance(key, str) or not isinstance(since, int):
        raise ValueError("an owner has a key and a time")
    return record["nick"], bytes.fromhex(key), since


def receipt_of(payload: bytes) -> tuple[str, str]:
    """The (sender's nick key, msg_id) a RECEIPT payload confirms. Raises ValueError."""
    record = json.loads(payload)
    if (
        not isinstance(record, list)
        or len(record) != 2
        or not all(isinstance(part, str) for part in record)
    ):
        raise ValueError("a receipt is [sender, msg_id]")
    return nick_key(record[0]), record[1]


def receipt(sender: str, msg_id: str) -> bytes:
    """The RECEIPT payload confirming `sender`'s private message `msg_id`."""
    return json.dumps([sender, msg_id]).encode()


def unconfirmed(
    privates: list[PrivateIn],
    receipts: set[tuple[str, str]],
    recipient_token: str,
    owned_since_ms: int | None = None,
) -> Iterator[PrivateIn]:
    """The privates of `privates` for the session with `recipient_token` (for the nick's
    owner, `owned_since_ms`: every one sent since it was registered) that no receipt
    confirms, each once. (Those sent before, to whoever held the nick then, are not the
    owner's to read.)"""
    seen: set[tuple[str, str]] = set()
    for private in privates:
        key = (nick_key(private.private.sender), private.private.msg_id)
        mine = private.recipient_token == recipient_token or (
            owned_since_ms is not None and private.private.time_ms >= owned_since_ms
        )
        if not mine or key in receipts or key in seen:
            continue
        seen.add(key)
        yield private
