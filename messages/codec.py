"""Encoding and decoding of multipart messages: no sockets, no I/O.

A message is a list of frames: the signature, the verb, then one frame per field of the
command or event dataclass. A field is one of three kinds on the wire:

- `str`: UTF-8 text;
- `int`: ASCII decimal digits;
- `tuple[str, ...]`: the items joined by single spaces (items never contain spaces).
"""

import dataclasses
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from .commands import CLIENT_COMMANDS, ClientCommand
from .errors import ErrorCode, ProtocolError
from .events import BROKER_EVENTS, BrokerEvent
from .limits import (
    MAX_FRAME_BYTES,
    MAX_FRAMES,
    MAX_ID_BYTES,
    MAX_LIST_BYTES,
    MAX_NICK_CHARS,
    MAX_REASON_BYTES,
    MAX_TEXT_BYTES,
    MAX_TOKEN_BYTES,
    SIGNATURE,
    SIGNATURE_PREFIX,
)

#: Byte limit of each field, by field name; others get MAX_FRAME_BYTES.
FIELD_LIMITS: Final[Mapping[str, int]] = {
    "text": MAX_TEXT_BYTES,
    "reason": MAX_REASON_BYTES,
    "token": MAX_TOKEN_BYTES,
    # A nick is at most MAX_NICK_CHARS code points of at most 4 UTF-8 bytes each.
    "nick": 4 * MAX_NICK_CHARS,
    "recipient": 4 * MAX_NICK_CHARS,
    "sender": 4 * MAX_NICK_CHARS,
    "by": 4 * MAX_NICK_CHARS,
    "msg_id": MAX_ID_BYTES,
    "session": MAX_ID_BYTES,
    "ref": MAX_ID_BYTES,
    "epoch": MAX_ID_BYTES,
    "users": MAX_LIST_BYTES,
    "commands": MAX_LIST_BYTES,
}
#: Fields that may not be empty.
NON_EMPTY_FIELDS: Final = frozenset(
    {"text", "nick", "recipient", "sender", "msg_id", "session", "epoch"}
)
#: Fields that are identifiers: ASCII letters, digits, `-`, `_` and `.` only.
ID_FIELDS: Final = frozenset({"msg_id", "session", "ref", "epoch"})
_ID_CHARS: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
#: Longest integer field, in digits (milliseconds since 1970 fit in 13 for a long while).
MAX_INT_DIGITS: Final = 18

Field = str | int | tuple[str, ...]
Decoder = Callable[[str, bytes], Field]


def _decode_text(name: str, frame: bytes) -> str:
    limit = FIELD_LIMITS.get(name, MAX_FRAME_BYTES)
    if len(frame) > limit:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"{name} is {len(frame)} bytes long; the limit is {limit}"
        )
    if not frame and name in NON_EMPTY_FIELDS:
        raise ProtocolError(ErrorCode.MALFORMED, f"{name} is empty")
    if name in ID_FIELDS and not _ID_CHARS.issuperset(frame):
        raise ProtocolError(
            ErrorCode.MALFORMED, f"{name} may hold only ASCII letters, digits, '-', '_', '.'"
        )
    try:
        return frame.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            ErrorCode.MALFORMED, f"{name} is not valid UTF-8 (byte {exc.start})"
        ) from None


def _decode_int(name: str, frame: bytes) -> int:
    if not frame or len(frame) > MAX_INT_DIGITS or not frame.isdigit():
        raise ProtocolError(ErrorCode.MALFORMED, f"{name} is not a decimal number")
    return int(frame)


def _decode_words(name: str, frame: bytes) -> tuple[str, ...]:
    text = _decode_text(name, frame)
    words = tuple(text.split(" ")) if text else ()
    if "" in words:
        raise ProtocolError(ErrorCode.MALFORMED, f"{name} has an empty item")
    return words


def _encode_field(value: Field) -> bytes:
    if isinstance(value, tuple):
        return " ".join(value).encode("utf-8")
    if isinstance(value, int):
        return str(int(value)).encode("ascii")
    return value.encode("utf-8")


_DECODERS: Final[Mapping[Any, Decoder]] = {
    str: _decode_text,
    int: _decode_int,
    tuple[str, ...]: _decode_words,
}


@dataclasses.dataclass(frozen=True)
class _Layout:
    """How one verb's frames map onto its dataclass."""

    cls: Callable[..., Any]
    fields: tuple[tuple[str, Decoder], ...]


def _layouts(classes: Sequence[type[Any]]) -> dict[bytes, _Layout]:
    table = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        fields = tuple((f.name, _DECODERS[hints[f.name]]) for f in dataclasses.fields(cls))
        table[cls.VERB] = _Layout(cls, fields)
    return table


_COMMAND_LAYOUTS: Final = _layouts(CLIENT_COMMANDS)
_EVENT_LAYOUTS: Final = _layouts(BROKER_EVENTS)


def encode(message: ClientCommand | BrokerEvent) -> list[bytes]:
    """The frames of `message`, signature first."""
    fields = (getattr(message, f.name) for f in dataclasses.fields(message))
    return [SIGNATURE, message.VERB, *(_encode_field(value) for value in fields)]


def _decode(frames: Sequence[bytes], layouts: Mapping[bytes, _Layout], what: str) -> Any:
    if len(frames) < 2:
        raise ProtocolError(
            ErrorCode.MALFORMED, f"a message needs at least 2 frames, got {len(frames)}"
        )
    if len(frames) > MAX_FRAMES:
        raise ProtocolError(
            ErrorCode.MALFORMED, f"a message has at most {MAX_FRAMES} frames, got {len(frames)}"
        )
    signature, verb, *body = frames
    if signature != SIGNATURE:
        if signature.startswith(SIGNATURE_PREFIX):
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"unsupported protocol version; this peer speaks {SIGNATURE.decode()}",
            )
        raise ProtocolError(
            ErrorCode.MALFORMED, f"frame 0 is not the {SIGNATURE.decode()} signature"
        )
    layout = layouts.get(verb)
    if layout is None:
        shown = verb[:32].decode("ascii", "backslashreplace")
        raise ProtocolError(ErrorCode.UNKNOWN_COMMAND, f"unknown {what} {shown!r}")
    if len(body) != len(layout.fields):
        raise ProtocolError(
            ErrorCode.MALFORMED,
            f"{verb.decode()} takes {len(layout.fields)} field frames, got {len(body)}",
        )
    values = {
        name: decode(name, frame) for (name, decode), frame in zip(layout.fields, body, strict=True)
    }
    return layout.cls(**values)


def decode_command(frames: Sequence[bytes]) -> ClientCommand:
    """Decode what a client sent (without the ROUTER's identity frame).

    Raises ProtocolError with the code and reason to send back in an ERROR event.
    """
    command: ClientCommand = _decode(frames, _COMMAND_LAYOUTS, "command")
    return command


def decode_event(frames: Sequence[bytes]) -> BrokerEvent:
    """Decode what the broker sent. Raises ProtocolError if it is not a valid event."""
    event: BrokerEvent = _decode(frames, _EVENT_LAYOUTS, "event")
    return event


def command_verbs() -> tuple[str, ...]:
    """The verbs of every client command, as WELCOME lists them."""
    return tuple(cls.VERB.decode("ascii") for cls in CLIENT_COMMANDS)


def truncate_utf8(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` UTF-8 bytes, never inside a character."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", "ignore")


def message_ref(frames: Sequence[bytes]) -> str:
    """The msg_id of a SAY or TELL that failed to decode, if it can be read; else ""."""
    if len(frames) < 3 or frames[0] != SIGNATURE or frames[1] not in (b"SAY", b"TELL"):
        return ""
    candidate = frames[2]
    if 0 < len(candidate) <= MAX_ID_BYTES and _ID_CHARS.issuperset(candidate):
        return candidate.decode("ascii")
    return ""
