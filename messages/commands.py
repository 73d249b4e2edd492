"""What a client sends to the broker: one frozen dataclass per command.

`VERB` is frame 1 on the wire; the fields follow in declaration order, one frame each.
"""

from dataclasses import dataclass
from typing import ClassVar

from .identity import PublicKey, Signature


@dataclass(frozen=True, slots=True)
class Hello:
    """Register under `nick`, or resume the session named `session`.

    `session` is a random token the client chooses once per run and repeats on every
    HELLO: a HELLO for a nick held by the same token resumes that session. With `stream`
    set, the client reads broadcasts from the broker's stream (the XPUB socket whose port
    WELCOME names) and the broker does not send them on this connection.
    """

    VERB: ClassVar[bytes] = b"HELLO"
    nick: str
    session: str
    stream: bool = False


@dataclass(frozen=True, slots=True)
class Say:
    """Send `text` to everyone; `msg_id` is the client's unique id for this message."""

    VERB: ClassVar[bytes] = b"SAY"
    msg_id: str
    text: str


@dataclass(frozen=True, slots=True)
class Tell:
    """Send `text` privately to `recipient`; `msg_id` as for SAY."""

    VERB: ClassVar[bytes] = b"TELL"
    msg_id: str
    recipient: str
    text: str


@dataclass(frozen=True, slots=True)
class ListUsers:
    """Ask for a page of the user list: the nicks sorted after `after` (by uniqueness key),
    or from the first if it is empty."""

    VERB: ClassVar[bytes] = b"USERS"
    after: str = ""


@dataclass(frozen=True, slots=True)
class Ping:
    """Heartbeat; the broker answers PONG."""

    VERB: ClassVar[bytes] = b"PING"


@dataclass(frozen=True, slots=True)
class Quit:
    """Leave the chat; `reason` is shown to the others."""

    VERB: ClassVar[bytes] = b"QUIT"
    reason: str


@dataclass(frozen=True, slots=True)
class Admin:
    """Become an operator by presenting the broker's operator token."""

    VERB: ClassVar[bytes] = b"ADMIN"
    token: str


@dataclass(frozen=True, slots=True)
class Kick:
    """Operator: disconnect `nick`, telling everyone `reason`; its session ends, and the
    nick stays barred for `seconds` (0: not at all)."""

    VERB: ClassVar[bytes] = b"KICK"
    nick: str
    seconds: int
    reason: str


@dataclass(frozen=True, slots=True)
class Ban:
    """Operator: bar `nick` for `seconds`, present or not (kicking it if present)."""

    VERB: ClassVar[bytes] = b"BAN"
    nick: str
    seconds: int
    reason: str


@dataclass(frozen=True, slots=True)
class Unban:
    """Operator: let `nick` register again before its bar ends."""

    VERB: ClassVar[bytes] = b"UNBAN"
    nick: str


@dataclass(frozen=True, slots=True)
class Wall:
    """Operator: a notice to everyone."""

    VERB: ClassVar[bytes] = b"WALL"
    text: str


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Operator: stop the broker, telling everyone `reason` first."""

    VERB: ClassVar[bytes] = b"SHUTDOWN"
    reason: str


@dataclass(frozen=True, slots=True)
class Received:
    """The client has shown the PRIVATE message `msg_id` from `sender`: confirms delivery.

    Message ids are unique per sender only, so the sender names which message is meant.
    """

    VERB: ClassVar[bytes] = b"RECEIVED"
    msg_id: str
    sender: str


@dataclass(frozen=True, slots=True)
class Fetch:
    """Send again every broadcast event numbered `from_seq` or later (to fill a gap)."""

    VERB: ClassVar[bytes] = b"FETCH"
    from_seq: int


@dataclass(frozen=True, slots=True)
class History:
    """Ask for a page of stored history: at most `limit` entries numbered below `before`
    (0: the latest), oldest first. `target` "" asks for the room's broadcasts; a nick for
    the private messages between the asking client and that nick. The answer is LOG events
    and a PAGE, each carrying the client-chosen `ref`."""

    VERB: ClassVar[bytes] = b"HISTORY"
    ref: str
    target: str
    before: int
    limit: int


@dataclass(frozen=True, slots=True)
class Search:
    """Search stored history for `words`: the broadcasts and the asking client's own private
    messages. The newest `limit` hits come as LOG events, oldest first, then a PAGE."""

    VERB: ClassVar[bytes] = b"SEARCH"
    ref: str
    words: str
    limit: int


@dataclass(frozen=True, slots=True)
class Register:
    """Own the session's nick from now on: only the holder of the Ed25519 key `public_key`
    may take it (HELLO is then challenged). `signature` signs `register_payload`: the
    nick's key and the session token, with that key."""

    VERB: ClassVar[bytes] = b"REGISTER"
    public_key: PublicKey
    signature: Signature


@dataclass(frozen=True, slots=True)
class Unregister:
    """Give up the ownership of the session's nick (it must be ours)."""

    VERB: ClassVar[bytes] = b"UNREGISTER"


@dataclass(frozen=True, slots=True)
class Prove:
    """The answer to CHALLENGE: `signature` signs `prove_payload` (the nonce, the nick's key
    and the session token of the HELLO challenged) with the key `public_key`."""

    VERB: ClassVar[bytes] = b"PROVE"
    public_key: PublicKey
    signature: Signature


@dataclass(frozen=True, slots=True)
class ListNicks:
    """Ask for a page of the registered nicks (present or not): those sorted after `after`
    (by uniqueness key), or from the first if it is empty."""

    VERB: ClassVar[bytes] = b"NICKS"
    after: str = ""


@dataclass(frozen=True, slots=True)
class Enter:
    """Join `room` (a room name, see `messages.rooms`), creating it if nobody is in it. The
    broker answers with the room's state (ROOM); entering a room one is in again only does
    that."""

    VERB: ClassVar[bytes] = b"ENTER"
    room: str


@dataclass(frozen=True, slots=True)
class Part:
    """Leave `room`, for `reason` (may be empty)."""

    VERB: ClassVar[bytes] = b"PART"
    room: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Post:
    """Send `text` to the members of `room`; `msg_id` as for SAY."""

    VERB: ClassVar[bytes] = b"POST"
    room: str
    msg_id: str
    text: str


@dataclass(frozen=True, slots=True)
class SetTopic:
    """Set the topic of `room` (empty: none); for its operators."""

    VERB: ClassVar[bytes] = b"TOPIC"
    room: str
    topic: str


@dataclass(frozen=True, slots=True)
class ListRooms:
    """Ask for a page of the rooms: those sorted after `after`, or from the first."""

    VERB: ClassVar[bytes] = b"ROOMS"
    after: str = ""


@dataclass(frozen=True, slots=True)
class ListMembers:
    """Ask for a page of the members of `room`, sorted after `after` (like USERS)."""

    VERB: ClassVar[bytes] = b"MEMBERS"
    room: str
    after: str = ""


@dataclass(frozen=True, slots=True)
class FetchRoom:
    """Ask for `room`'s events again, from number `from_seq` on (like FETCH)."""

    VERB: ClassVar[bytes] = b"ROOMFETCH"
    room: str
    from_seq: int


@dataclass(frozen=True, slots=True)
class SetMode:
    """Make `room` invite-only (`mode` "+i") or open to all again ("-i"); for its
    operators."""

    VERB: ClassVar[bytes] = b"MODE"
    room: str
    mode: str


@dataclass(frozen=True, slots=True)
class Invite:
    """Let `nick` (who is present) enter `room`, invite-only or not; they are told."""

    VERB: ClassVar[bytes] = b"INVITE"
    room: str
    nick: str


@dataclass(frozen=True, slots=True)
class Evict:
    """Take `nick` out of `room`, for `reason`; for its operators."""

    VERB: ClassVar[bytes] = b"EVICT"
    room: str
    nick: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Away:
    """Mark the session away with `away`, the message shown to others; empty: back."""

    VERB: ClassVar[bytes] = b"AWAY"
    away: str


@dataclass(frozen=True, slots=True)
class Nick:
    """Take the nick `nick` instead of the session's current one (the session goes on)."""

    VERB: ClassVar[bytes] = b"NICK"
    nick: str


ClientCommand = (
    Hello
    | Say
    | Tell
    | ListUsers
    | Ping
    | Quit
    | Admin
    | Kick
    | Ban
    | Unban
    | Wall
    | Shutdown
    | Received
    | Fetch
    | History
    | Search
    | Register
    | Unregister
    | Prove
    | ListNicks
    | Enter
    | Part
    | Post
    | SetTopic
    | ListRooms
    | ListMembers
    | FetchRoom
    | SetMode
    | Invite
    | Evict
    | Away
    | Nick
)

#: Every command, in the order docs/PROTOCOL.md lists them.
CLIENT_COMMANDS: tuple[type[ClientCommand], ...] = (
    Hello,
    Say,
    Tell,
    ListUsers,
    Ping,
    Quit,
    Admin,
    Kick,
    Ban,
    Unban,
    Wall,
    Shutdown,
    Received,
    Fetch,
    History,
    Search,
    Register,
    Unregister,
    Prove,
    ListNicks,
    Enter,
    Part,
    Post,
    SetTopic,
    ListRooms,
    ListMembers,
    FetchRoom,
    SetMode,
    Invite,
    Evict,
    Away,
    Nick,
)
