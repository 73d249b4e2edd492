"""What the broker sends to a client: one frozen dataclass per event.

`VERB` is frame 1 on the wire; the fields follow in declaration order, one frame each.
Times are milliseconds since the Unix epoch, stamped by the broker.

Broadcast events (JOIN, LEAVE, MESSAGE, NOTICE, AWAY, RENAMED) carry `seq`: the broker
numbers them 1, 2, 3, ... within one `epoch` (one run of the broker), so a client can tell
when it missed one and FETCH it again.
"""

from dataclasses import dataclass
from typing import ClassVar

from .identity import Nonce


@dataclass(frozen=True, slots=True)
class Welcome:
    """Registration (or resumption) succeeded: your nick as stored, the heartbeat interval
    the broker expects, the broker's run (`epoch`) and last broadcast `seq`, the command
    verbs it accepts and the TCP port of its broadcast stream. Who is present is not
    listed here (it would make every registration cost as much as the chat is large):
    ask with USERS."""

    VERB: ClassVar[bytes] = b"WELCOME"
    nick: str
    heartbeat_ms: int
    epoch: str
    seq: int
    commands: tuple[str, ...]
    stream_port: int


@dataclass(frozen=True, slots=True)
class Joined:
    """`nick` joined the chat."""

    VERB: ClassVar[bytes] = b"JOIN"
    seq: int
    nick: str


@dataclass(frozen=True, slots=True)
class Left:
    """`nick` left the chat, for `reason`."""

    VERB: ClassVar[bytes] = b"LEAVE"
    seq: int
    nick: str
    reason: str


@dataclass(frozen=True, slots=True)
class Message:
    """`sender` said `text` to everyone (the sender receives it too)."""

    VERB: ClassVar[bytes] = b"MESSAGE"
    seq: int
    msg_id: str
    sender: str
    text: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class PrivateMessage:
    """`sender` said `text` to `recipient` alone; only the recipient receives this. The recipient
    confirms it with RECEIVED `msg_id`; until then the broker sends it again whenever the
    recipient's session resumes."""

    VERB: ClassVar[bytes] = b"PRIVATE"
    msg_id: str
    sender: str
    recipient: str
    text: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class UserList:
    """A page of everyone present as of broadcast `seq`, in answer to USERS: the nicks sorted
    after `after` (all from the first if it is empty), as many as USERS_PAGE_BYTES hold. With
    `more`, others follow the last of `users`: ask for them with USERS naming it."""

    VERB: ClassVar[bytes] = b"USERS"
    seq: int
    users: tuple[str, ...]
    after: str = ""
    more: bool = False


@dataclass(frozen=True, slots=True)
class Notice:
    """A notice from the broker or its operators, to everyone."""

    VERB: ClassVar[bytes] = b"NOTICE"
    seq: int
    text: str


@dataclass(frozen=True, slots=True)
class Error:
    """A command failed and nothing was delivered; `code` is an ErrorCode value (clients
    must accept codes they do not know), `ref` the msg_id of the failed SAY or TELL, or
    empty."""

    VERB: ClassVar[bytes] = b"ERROR"
    code: int
    ref: str
    reason: str


@dataclass(frozen=True, slots=True)
class Ack:
    """The broker accepted the SAYs and TELLs `msg_ids` and passed them on (sent, not yet
    read). The broker acknowledges what one client sent in a burst with one ACK."""

    VERB: ClassVar[bytes] = b"ACK"
    msg_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Delivered:
    """`recipient`'s client confirmed it received your private message `msg_id`."""

    VERB: ClassVar[bytes] = b"DELIVERED"
    msg_id: str
    recipient: str


@dataclass(frozen=True, slots=True)
class Stored:
    """Your private message `msg_id` is kept for `recipient`, an owned nick that is not
    here, and goes to it when it comes back (then DELIVERED follows)."""

    VERB: ClassVar[bytes] = b"STORED"
    msg_id: str
    recipient: str


@dataclass(frozen=True, slots=True)
class Pong:
    """Answer to PING."""

    VERB: ClassVar[bytes] = b"PONG"


@dataclass(frozen=True, slots=True)
class Operator:
    """ADMIN succeeded: this session may now use operator commands."""

    VERB: ClassVar[bytes] = b"OPER"


@dataclass(frozen=True, slots=True)
class Kicked:
    """Operator `by` removed you from the chat, for `reason`: your session has ended (do not
    HELLO again by yourself)."""

    VERB: ClassVar[bytes] = b"KICKED"
    by: str
    reason: str


@dataclass(frozen=True, slots=True)
class Tick:
    """On the broadcast stream only: the last broadcast numbered so far is `seq`. Sent at
    least once per heartbeat interval, so a subscriber learns it missed the last broadcasts
    even when nothing follows them."""

    VERB: ClassVar[bytes] = b"TICK"
    seq: int


@dataclass(frozen=True, slots=True)
class ServerShutdown:
    """The broker is stopping, for `reason`; no further event follows."""

    VERB: ClassVar[bytes] = b"SHUTDOWN"
    reason: str


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One entry of stored history, in answer to HISTORY or SEARCH `ref`: a broadcast
    (`recipient` empty; `id` is its seq) or a private message (`id` numbers it in the store);
    `sender` is empty for a notice. Ids increase with time."""

    VERB: ClassVar[bytes] = b"LOG"
    ref: str
    id: int
    sender: str
    recipient: str
    text: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class Page:
    """Ends the answer to HISTORY or SEARCH `ref`: `count` LOG events came before it; ask
    for older entries with HISTORY `before` = `next_before` (0: nothing older)."""

    VERB: ClassVar[bytes] = b"PAGE"
    ref: str
    count: int
    next_before: int


@dataclass(frozen=True, slots=True)
class Challenge:
    """The nick of your HELLO is registered: prove you hold its key (PROVE, signing
    `nonce`) and the HELLO goes on. The nonce is good for one PROVE, for a while."""

    VERB: ClassVar[bytes] = b"CHALLENGE"
    nonce: Nonce


@dataclass(frozen=True, slots=True)
class Registered:
    """The answer to REGISTER (`state` set) and UNREGISTER (cleared): `nick` is now owned
    by your key, or free."""

    VERB: ClassVar[bytes] = b"REGISTERED"
    nick: str
    state: bool


@dataclass(frozen=True, slots=True)
class NickList:
    """A page of the registered nicks, present or not, in answer to NICKS: those sorted
    after `after`, as many as a page holds; with `more`, ask for the rest with NICKS naming
    the last of `nicks`."""

    VERB: ClassVar[bytes] = b"NICKS"
    nicks: tuple[str, ...]
    after: str = ""
    more: bool = False


@dataclass(frozen=True, slots=True)
class RoomState:
    """What `room` is as of its event `seq`: `members` in it, its `topic`. Sent to a client
    that enters it (after its ENTERED) and in answer to ROOMS. `epoch` names this life of the
    room: a room that was emptied (or forgotten by a broker restart) and made again numbers
    its events anew under a new one. The events of a room that is not invite-only are
    published on the stream, under the room's topic (see `messages.stream_topic`)."""

    VERB: ClassVar[bytes] = b"ROOM"
    room: str
    epoch: str
    seq: int
    members: int
    topic: str
    #: Only those invited may enter, and its events never go on the stream.
    invite_only: bool = False


@dataclass(frozen=True, slots=True)
class Entered:
    """`nick` joined `room`; numbered `seq` in the room's own sequence."""

    VERB: ClassVar[bytes] = b"ENTERED"
    room: str
    seq: int
    nick: str


@dataclass(frozen=True, slots=True)
class Parted:
    """`nick` left `room`, for `reason`."""

    VERB: ClassVar[bytes] = b"PARTED"
    room: str
    seq: int
    nick: str
    reason: str


@dataclass(frozen=True, slots=True)
class Posted:
    """`sender` said `text` in `room` (the sender receives it too)."""

    VERB: ClassVar[bytes] = b"POSTED"
    room: str
    seq: int
    msg_id: str
    sender: str
    text: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class TopicSet:
    """`nick` set the topic of `room` to `topic` (empty: none)."""

    VERB: ClassVar[bytes] = b"TOPIC"
    room: str
    seq: int
    nick: str
    topic: str


@dataclass(frozen=True, slots=True)
class RoomList:
    """The end of a page of rooms (the ROOM events before it), in answer to ROOMS: with
    `more`, others follow `after`, the last room of the page."""

    VERB: ClassVar[bytes] = b"ROOMS"
    after: str
    more: bool


@dataclass(frozen=True, slots=True)
class MemberList:
    """A page of the members of `room` as of its event `seq`, in answer to MEMBERS; like
    USERS."""

    VERB: ClassVar[bytes] = b"MEMBERS"
    room: str
    seq: int
    nicks: tuple[str, ...]
    after: str = ""
    more: bool = False


@dataclass(frozen=True, slots=True)
class RoomTick:
    """On the stream, under `room`'s topic: the room's events are numbered up to `seq` (a
    subscriber that has not applied them all missed some)."""

    VERB: ClassVar[bytes] = b"ROOMTICK"
    room: str
    seq: int


@dataclass(frozen=True, slots=True)
class ModeSet:
    """`nick` made `room` invite-only (`mode` "+i") or open to all ("-i"). Numbered in the
    room's sequence, and sent to every member on its connection (never on the stream)."""

    VERB: ClassVar[bytes] = b"MODE"
    room: str
    seq: int
    nick: str
    mode: str


@dataclass(frozen=True, slots=True)
class Invited:
    """`by` invited `nick` to `room`: sent to both."""

    VERB: ClassVar[bytes] = b"INVITED"
    room: str
    nick: str
    by: str


@dataclass(frozen=True, slots=True)
class AwayChanged:
    """`nick` is away with the message `away` from now on; empty: back."""

    VERB: ClassVar[bytes] = b"AWAY"
    seq: int
    nick: str
    away: str


@dataclass(frozen=True, slots=True)
class Renamed:
    """The user `nick` is now known as `new_nick` (the same session)."""

    VERB: ClassVar[bytes] = b"RENAMED"
    seq: int
    nick: str
    new_nick: str


@dataclass(frozen=True, slots=True)
class IsAway:
    """Part of the answer to USERS: `nick`, on the page that follows, is away with the
    message `away`. Not a broadcast: a snapshot, like the page."""

    VERB: ClassVar[bytes] = b"ISAWAY"
    nick: str
    away: str


@dataclass(frozen=True, slots=True)
class AwayReply:
    """Your private message went to `nick`, who is away with the message `away`: sent once
    per sender while the same away lasts."""

    VERB: ClassVar[bytes] = b"AWAYREPLY"
    nick: str
    away: str


#: The numbered events of a room (see docs/PROTOCOL.md, Rooms).
RoomEvent = Entered | Parted | Posted | TopicSet | ModeSet

BrokerEvent = (
    Welcome
    | Joined
    | Left
    | Message
    | PrivateMessage
    | UserList
    | Notice
    | Error
    | Ack
    | Delivered
    | Stored
    | Pong
    | Operator
    | Kicked
    | Tick
    | ServerShutdown
    | LogEntry
    | Page
    | Challenge
    | Registered
    | NickList
    | RoomState
    | Entered
    | Parted
    | Posted
    | TopicSet
    | RoomList
    | MemberList
    | RoomTick
    | ModeSet
    | Invited
    | AwayChanged
    | Renamed
    | IsAway
    | AwayReply
)

#: Every event, in the order docs/PROTOCOL.md lists them.
BROKER_EVENTS: tuple[type[BrokerEvent], ...] = (
    Welcome,
    Joined,
    Left,
    Message,
    PrivateMessage,
    UserList,
    Notice,
    Error,
    Ack,
    Delivered,
    Stored,
    Pong,
    Operator,
    Kicked,
    Tick,
    ServerShutdown,
    LogEntry,
    Page,
    Challenge,
    Registered,
    NickList,
    RoomState,
    Entered,
    Parted,
    Posted,
    TopicSet,
    RoomList,
    MemberList,
    RoomTick,
    ModeSet,
    Invited,
    AwayChanged,
    Renamed,
    IsAway,
    AwayReply,
)
