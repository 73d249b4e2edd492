"""Encoding and decoding of multipart messages: no sockets, no I/O.

A message is a list of frames: the signature, the verb, then one frame per field of the
command or event dataclass. A field is one of five kinds on the wire:

- `str`: UTF-8 text;
- `int`: ASCII decimal digits;
- `bool`: `1` or `0`;
- `tuple[str, ...]`: the items joined by single spaces (items never contain spaces);
- `Annotated[str, Base64Of(n)]`: `n` raw bytes as base64url text (keys, signatures, nonces).

On the broadcast stream, events travel packed: one frame holds one or more events, each as
its frame count (one byte) and then each frame as its length (4 bytes, big-endian) and
bytes. Packing lets libzmq copy one frame per subscriber instead of seven per event.
"""

import dataclasses
import operator
import typing
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any, Final

from .commands import CLIENT_COMMANDS, ClientCommand
from .errors import ErrorCode, ProtocolError
from .events import BROKER_EVENTS, BrokerEvent
from .identity import Base64Of
from .limits import (
    HISTORY_PAGE_LIMIT,
    MAX_ACK_IDS,
    MAX_AWAY_BYTES,
    MAX_FRAME_BYTES,
    MAX_FRAMES,
    MAX_ID_BYTES,
    MAX_LIST_BYTES,
    MAX_NICK_CHARS,
    MAX_PACKED_BYTES,
    MAX_REASON_BYTES,
    MAX_SEARCH_BYTES,
    MAX_TEXT_BYTES,
    MAX_TOKEN_BYTES,
    MAX_TOPIC_BYTES,
    MIN_SESSION_TOKEN_BYTES,
    SIGNATURE,
    SIGNATURE_PREFIX,
)
from .rooms import MAX_ROOM_NAME_CHARS, ROOM_PREFIX

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
    "new_nick": 4 * MAX_NICK_CHARS,
    "after": 4 * MAX_NICK_CHARS,
    "target": 4 * MAX_NICK_CHARS,
    "words": MAX_SEARCH_BYTES,
    "away": MAX_AWAY_BYTES,
    "msg_id": MAX_ID_BYTES,
    "msg_ids": MAX_ACK_IDS * (MAX_ID_BYTES + 1),
    "session": MAX_ID_BYTES,
    "ref": MAX_ID_BYTES,
    "epoch": MAX_ID_BYTES,
    "users": MAX_LIST_BYTES,
    "commands": MAX_LIST_BYTES,
    "nicks": MAX_LIST_BYTES,
    "room": len(ROOM_PREFIX) + MAX_ROOM_NAME_CHARS,
    "topic": MAX_TOPIC_BYTES,
    "mode": 2,
}
#: Shortest value of each field, in bytes, for fields that have one (besides not empty).
MIN_FIELD_BYTES: Final[Mapping[str, int]] = {"session": MIN_SESSION_TOKEN_BYTES}
#: Fields that may not be empty.
NON_EMPTY_FIELDS: Final = frozenset(
    {
        "text",
        "nick",
        "new_nick",
        "recipient",
        "sender",
        "msg_id",
        "session",
        "epoch",
        "words",
        "room",
    }
)
#: Exceptions to NON_EMPTY_FIELDS, by verb: fields that must not be empty in this verb
#: (though they may be elsewhere), and fields that may be (though they may not elsewhere).
NON_EMPTY_IN: Final[Mapping[bytes, frozenset[str]]] = {
    b"HISTORY": frozenset({"ref"}),
    b"SEARCH": frozenset({"ref"}),
    b"LOG": frozenset({"ref"}),
    b"PAGE": frozenset({"ref"}),
}
MAY_BE_EMPTY_IN: Final[Mapping[bytes, frozenset[str]]] = {
    # A notice has no sender; a broadcast no recipient.
    b"LOG": frozenset({"sender", "recipient"}),
}
#: Integer fields with a range, by name: (lowest, highest) allowed. Below it is malformed
#: (400), above it too large (413).
INT_RANGES: Final[Mapping[str, tuple[int, int]]] = {"limit": (1, HISTORY_PAGE_LIMIT)}
#: Fields that are identifiers: ASCII letters, digits, `-`, `_` and `.` only.
ID_FIELDS: Final = frozenset({"msg_id", "session", "ref", "epoch"})
#: Fields that are lists of identifiers, at least one.
ID_LIST_FIELDS: Final = frozenset({"msg_ids"})
_ID_CHARS: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
#: Longest integer field, in digits (milliseconds since 1970 fit in 13 for a long while).
MAX_INT_DIGITS: Final = 18

Field = str | int | bool | tuple[str, ...]
Decoder = Callable[[str, bytes], Field]


def _decode_text(name: str, frame: bytes, required: bool | None = None) -> str:
    """`frame` as the text field `name`; `required` (not empty) defaults to whether `name`
    is one of NON_EMPTY_FIELDS."""
    limit = FIELD_LIMITS.get(name, MAX_FRAME_BYTES)
    if len(frame) > limit:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"{name} is {len(frame)} bytes long; the limit is {limit}"
        )
    if not frame and (name in NON_EMPTY_FIELDS if required is None else required):
        raise ProtocolError(ErrorCode.MALFORMED, f"{name} is empty")
    shortest = MIN_FIELD_BYTES.get(name, 0)
    if len(frame) < shortest:
        raise ProtocolError(
            ErrorCode.MALFORMED,
            f"{name} is {len(frame)} bytes long; the shortest allowed is {shortest}: "
            "make it of at least 128 random bits",
        )
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


def _int_in_range(lowest: int, highest: int) -> Decoder:
    """A decoder of integers from `lowest` to `highest`."""

    def decode(name: str, frame: bytes) -> int:
        value = _decode_int(name, frame)
        if value < lowest:
            raise ProtocolError(ErrorCode.MALFORMED, f"{name} is {value}; the least is {lowest}")
        if value > highest:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"{name} is {value}; the most is {highest}")
        return value

    return decode


def _text_required(required: bool) -> Decoder:
    """A decoder of text that must not be empty (`required`) or may be, whatever its name."""
    return lambda name, frame: _decode_text(name, frame, required)


def _decode_bool(name: str, frame: bytes) -> bool:
    if frame not in (b"0", b"1"):
        raise ProtocolError(ErrorCode.MALFORMED, f"{name} is neither 0 nor 1")
    return frame == b"1"


def _decode_words(name: str, frame: bytes) -> tuple[str, ...]:
    text = _decode_text(name, frame)
    words = tuple(text.split(" ")) if text else ()
    if "" in words:
        raise ProtocolError(ErrorCode.MALFORMED, f"{name} has an empty item")
    if name in ID_LIST_FIELDS:
        if not words:
            raise ProtocolError(ErrorCode.MALFORMED, f"{name} is empty")
        if len(words) > MAX_ACK_IDS:
            raise ProtocolError(
                ErrorCode.MALFORMED, f"{name} has {len(words)} items; the limit is {MAX_ACK_IDS}"
            )
        if any(
            len(word) > MAX_ID_BYTES or not _ID_CHARS.issuperset(word.encode()) for word in words
        ):
            raise ProtocolError(
                ErrorCode.MALFORMED,
                f"{name} items may hold only ASCII letters, digits, '-', '_', '.'",
            )
    return words


def _encode_text(value: str) -> bytes:
    return value.encode("utf-8")


def _encode_int(value: int) -> bytes:
    return b"%d" % value


def _encode_bool(value: bool) -> bytes:
    return b"1" if value else b"0"


def _encode_words(value: tuple[str, ...]) -> bytes:
    return " ".join(value).encode("utf-8")


#: How each kind of field is read from and written to a frame.
_KINDS: Final[Mapping[Any, tuple[Decoder, Callable[[Any], bytes]]]] = {
    str: (_decode_text, _encode_text),
    int: (_decode_int, _encode_int),
    bool: (_decode_bool, _encode_bool),
    tuple[str, ...]: (_decode_words, _encode_words),
}


@dataclasses.dataclass(frozen=True)
class _Layout:
    """How one verb's frames map onto its dataclass."""

    cls: Callable[..., Any]
    fields: tuple[tuple[str, Decoder], ...]
    #: The field values of an instance, as a tuple (in frame order).
    values: Callable[[Any], tuple[Any, ...]]
    encoders: tuple[Callable[[Any], bytes], ...]


def _base64_kind(
    hint: Any, kind: tuple[Decoder, Callable[[Any], bytes]]
) -> tuple[Decoder, Callable[[Any], bytes]]:
    """`kind`, unless `hint` is `Annotated[str, Base64Of(n)]`: base64url text of `n` bytes
    (keys, signatures, nonces; see `messages.identity`)."""
    for meta in getattr(hint, "__metadata__", ()):
        if isinstance(meta, Base64Of):
            return meta.decode, _encode_text
    return kind


def _layout(cls: type[Any]) -> _Layout:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kinds = [_KINDS[hints[name]] for name in names]
    annotated = typing.get_type_hints(cls, include_extras=True)
    kinds = [_base64_kind(annotated[name], kind) for name, kind in zip(names, kinds, strict=True)]
    return _Layout(
        cls,
        tuple(
            (name, _field_decoder(cls.VERB, name, kind[0]))
            for name, kind in zip(names, kinds, strict=True)
        ),
        _values_getter(names),
        tuple(kind[1] for kind in kinds),
    )


def _field_decoder(verb: bytes, name: str, default: Decoder) -> Decoder:
    """How field `name` of `verb` is decoded: its kind's decoder, unless the verb or the
    field's range says otherwise."""
    if name in NON_EMPTY_IN.get(verb, ()):
        return _text_required(True)
    if name in MAY_BE_EMPTY_IN.get(verb, ()):
        return _text_required(False)
    if default is _decode_int and name in INT_RANGES:
        return _int_in_range(*INT_RANGES[name])
    return default


def _values_getter(names: Sequence[str]) -> Callable[[Any], tuple[Any, ...]]:
    if len(names) > 1:
        getter: Callable[[Any], tuple[Any, ...]] = operator.attrgetter(*names)
        return getter
    if len(names) == 1:
        # attrgetter of one name returns the value itself, not a 1-tuple.
        single = operator.attrgetter(names[0])
        return lambda message: (single(message),)
    return lambda message: ()


_COMMAND_LAYOUTS: Final = {cls.VERB: _layout(cls) for cls in CLIENT_COMMANDS}
_EVENT_LAYOUTS: Final = {cls.VERB: _layout(cls) for cls in BROKER_EVENTS}
# Encoding looks a message's layout up by its class: one dict lookup, no introspection.
_BY_CLASS: Final = {
    layout.cls: layout for layout in (*_COMMAND_LAYOUTS.values(), *_EVENT_LAYOUTS.values())
}


def encode(message: ClientCommand | BrokerEvent) -> list[bytes]:
    """The frames of `message`, signature first."""
    layout = _BY_CLASS[type(message)]
    frames = [SIGNATURE, message.VERB]
    frames.extend(
        encode_value(value)
        for encode_value, value in zip(layout.encoders, layout.values(message), strict=True)
    )
    return frames


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
    # Positional: the fields are in declaration order, and keywords cost a dict.
    return layout.cls(
        *[decode(name, frame) for (name, decode), frame in zip(layout.fields, body, strict=True)]
    )


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


@cache
def command_verbs() -> tuple[str, ...]:
    """The verbs of every client command, as WELCOME lists them."""
    return tuple(cls.VERB.decode("ascii") for cls in CLIENT_COMMANDS)


def truncate_utf8(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` UTF-8 bytes, never inside a character."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", "ignore")


#: Commands whose frame 2 is the reference an ERROR about them carries.
_REFERRED: Final = (b"SAY", b"TELL", b"HISTORY", b"SEARCH")


def message_ref(frames: Sequence[bytes]) -> str:
    """The msg_id of a SAY or TELL, or the ref of a HISTORY or SEARCH, that failed to
    decode, if it can be read; else ""."""
    if len(frames) < 3 or frames[0] != SIGNATURE or frames[1] not in _REFERRED:
        return ""
    candidate = frames[2]
    if 0 < len(candidate) <= MAX_ID_BYTES and _ID_CHARS.issuperset(candidate):
        return candidate.decode("ascii")
    return ""


#: Bytes of a packed frame's length prefix.
_LENGTH_BYTES: Final = 4


def pack_events(events: Sequence[Sequence[bytes]]) -> bytes:
    """One stream frame holding every encoded event of `events`, in order."""
    parts: list[bytes] = []
    for frames in events:
        parts.append(bytes((len(frames),)))
        for frame in frames:
            parts.append(len(frame).to_bytes(_LENGTH_BYTES, "big"))
            parts.append(frame)
    return b"".join(parts)


def unpack_events(packed: bytes) -> list[list[bytes]]:
    """The encoded events in a stream frame, each a list of frames for `decode_event`.

    Raises ProtocolError if `packed` is not a well-formed sequence of packed events."""
    if len(packed) > MAX_PACKED_BYTES:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"a packed frame is {len(packed)} bytes long; the limit is {MAX_PACKED_BYTES}",
        )
    if not packed:
        raise ProtocolError(ErrorCode.MALFORMED, "a packed frame holds at least one event")
    events: list[list[bytes]] = []
    view = memoryview(packed)
    at, end = 0, len(packed)
    while at < end:
        count = packed[at]
        at += 1
        if not 2 <= count <= MAX_FRAMES:
            raise ProtocolError(ErrorCode.MALFORMED, f"a packed event has {count} frames")
        frames = []
        for _ in range(count):
            if at + _LENGTH_BYTES > end:
                raise ProtocolError(ErrorCode.MALFORMED, "a packed event is cut short")
            length = int.from_bytes(view[at : at + _LENGTH_BYTES], "big")
            at += _LENGTH_BYTES
            if at + length > end:
                raise ProtocolError(ErrorCode.MALFORMED, "a packed event is cut short")
            frames.append(bytes(view[at : at + length]))
            at += length
        events.append(frames)
    return events
