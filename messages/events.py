"""What the broker sends to a client: one frozen dataclass per event.

`VERB` is frame 1 on the wire; the fields follow in declaration order, one frame each.
Times are milliseconds since the Unix epoch, stamped by the broker.
"""

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class Welcome:
    """Registration succeeded: your nick as stored, the heartbeat interval the broker
    expects, the command verbs it accepts and everyone present (you included)."""

    VERB: ClassVar[bytes] = b"WELCOME"
    nick: str
    heartbeat_ms: int
    commands: tuple[str, ...]
    users: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Joined:
    """`nick` joined the chat."""

    VERB: ClassVar[bytes] = b"JOIN"
    nick: str


@dataclass(frozen=True, slots=True)
class Left:
    """`nick` left the chat, for `reason`."""

    VERB: ClassVar[bytes] = b"LEAVE"
    nick: str
    reason: str


@dataclass(frozen=True, slots=True)
class Message:
    """`sender` said `text` to everyone (the sender receives it too)."""

    VERB: ClassVar[bytes] = b"MESSAGE"
    sender: str
    text: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class PrivateMessage:
    """`sender` said `text` to `recipient` alone; both of them receive this."""

    VERB: ClassVar[bytes] = b"PRIVATE"
    sender: str
    recipient: str
    text: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class UserList:
    """Everyone present, in answer to USERS."""

    VERB: ClassVar[bytes] = b"USERS"
    users: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Notice:
    """A notice from the broker or its operators, to everyone."""

    VERB: ClassVar[bytes] = b"NOTICE"
    text: str


@dataclass(frozen=True, slots=True)
class Error:
    """The last command failed and nothing was delivered; `code` is an ErrorCode value
    (clients must accept codes they do not know)."""

    VERB: ClassVar[bytes] = b"ERROR"
    code: int
    reason: str


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
    """You were disconnected by operator `by`, for `reason`."""

    VERB: ClassVar[bytes] = b"KICKED"
    by: str
    reason: str


@dataclass(frozen=True, slots=True)
class ServerShutdown:
    """The broker is stopping, for `reason`; no further event follows."""

    VERB: ClassVar[bytes] = b"SHUTDOWN"
    reason: str


BrokerEvent = (
    Welcome
    | Joined
    | Left
    | Message
    | PrivateMessage
    | UserList
    | Notice
    | Error
    | Pong
    | Operator
    | Kicked
    | ServerShutdown
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
    Pong,
    Operator,
    Kicked,
    ServerShutdown,
)
