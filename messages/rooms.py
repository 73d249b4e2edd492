"""Room names: what a valid one is, and when two are the same or look alike.

A room name is `#` and then 1 to MAX_ROOM_NAME_CHARS ASCII letters, digits, `_` or `-`.
Names are compared case-insensitively (`#Dev` is `#dev`), and a new room may not look like
an existing one (`#dev1` and `#devl`): the same skeleton as nicks (UTS #39), which maps the
ASCII look-alikes (`l`, `1`, `I`; `0`, `O`; `rn`, `m`) to one another.
"""

import re
from typing import Final

from .errors import ErrorCode, ProtocolError
from .nicks import nick_skeleton

#: What every room name starts with.
ROOM_PREFIX: Final = "#"
#: Longest room name after the `#`, in characters (all ASCII: bytes too).
MAX_ROOM_NAME_CHARS: Final = 32
#: The room everyone is in, which nobody can leave: the broadcasts of the protocol's
#: first version (JOIN, LEAVE, MESSAGE, NOTICE) are its traffic.
GENERAL_ROOM: Final = "#general"

_ROOM_NAME: Final = re.compile(rf"#[A-Za-z0-9_-]{{1,{MAX_ROOM_NAME_CHARS}}}")


def is_room_name(name: str) -> bool:
    """Whether `name` is a well-formed room name."""
    return _ROOM_NAME.fullmatch(name) is not None


def check_room_name(name: str) -> str:
    """`name` if it is a well-formed room name, else ERROR 422 saying why."""
    if not is_room_name(name):
        raise ProtocolError(
            ErrorCode.INVALID_NICK,
            f"not a room name: {name[: MAX_ROOM_NAME_CHARS + 8]!r}; a room is '#' and 1 to "
            f"{MAX_ROOM_NAME_CHARS} letters, digits, '_' or '-'",
        )
    return name


def room_key(name: str) -> str:
    """The identity of a room name: `#Dev` and `#dev` are one room."""
    return name.casefold()


def room_skeleton(name: str) -> str:
    """What a room name looks like: names with equal skeletons are confusable."""
    return nick_skeleton(name)


def stream_topic(room: str) -> bytes:
    """The topic a room's events carry on the broadcast stream: its name, as the broker
    spells it, and a space (no room name is a prefix of another's topic)."""
    return room.encode() + b" "


def split_topic(frame: bytes) -> tuple[str, bytes]:
    """A stream frame's room and the packed events after its topic; ERROR 400 if it has no
    well-formed topic."""
    topic, space, packed = frame.partition(b" ")
    name = topic.decode("ascii", "replace")
    if not space or not is_room_name(name):
        raise ProtocolError(ErrorCode.MALFORMED, "a stream frame without a room topic")
    return name, packed
