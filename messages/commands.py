"""What a client sends to the broker: one frozen dataclass per command.

`VERB` is frame 1 on the wire; the fields follow in declaration order, one frame each.
"""

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class Hello:
    """Register under `nick`; the first command of every session."""

    VERB: ClassVar[bytes] = b"HELLO"
    nick: str


@dataclass(frozen=True, slots=True)
class Say:
    """Send `text` to everyone."""

    VERB: ClassVar[bytes] = b"SAY"
    text: str


@dataclass(frozen=True, slots=True)
class Tell:
    """Send `text` privately to `recipient`."""

    VERB: ClassVar[bytes] = b"TELL"
    recipient: str
    text: str


@dataclass(frozen=True, slots=True)
class ListUsers:
    """Ask for the current user list."""

    VERB: ClassVar[bytes] = b"USERS"


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
    """Operator: disconnect `nick`, telling everyone `reason`."""

    VERB: ClassVar[bytes] = b"KICK"
    nick: str
    reason: str


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


ClientCommand = Hello | Say | Tell | ListUsers | Ping | Quit | Admin | Kick | Wall | Shutdown

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
    Wall,
    Shutdown,
)
