"""The zmq-chat wire protocol: message types, limits and encoding, with no sockets and no I/O.

docs/PROTOCOL.md specifies the same protocol frame by frame.
"""

from . import commands, events
from .codec import (
    command_verbs,
    decode_command,
    decode_event,
    encode,
    message_ref,
    pack_events,
    truncate_utf8,
    unpack_events,
)
from .display import SanitizingFormatter, sanitize, sanitizing_handler
from .durations import format_duration, parse_duration, split_duration
from .errors import ErrorCode, ProtocolError
from .limits import (
    DEFAULT_BAN_SECONDS,
    DEFAULT_KICK_BAR_SECONDS,
    FETCH_LIMIT,
    FLOOD_BURST,
    FLOOD_PER_SECOND,
    HEARTBEAT_INTERVAL_MS,
    HEARTBEAT_LIVENESS,
    MAX_ACK_IDS,
    MAX_BAR_SECONDS,
    MAX_EVENT_WIRE_FRAME_BYTES,
    MAX_FRAMES,
    MAX_ID_BYTES,
    MAX_NICK_CHARS,
    MAX_PACKED_BYTES,
    MAX_REASON_BYTES,
    MAX_TEXT_BYTES,
    MAX_TOKEN_BYTES,
    MAX_WIRE_FRAME_BYTES,
    MIN_HEARTBEAT_MS,
    MIN_SESSION_TOKEN_BYTES,
    SIGNATURE,
    STREAM_READY,
)
from .nicks import nick_key, nick_scripts, nick_skeleton, normalize_nick
from .ratelimit import TokenBucket

__all__ = [
    "DEFAULT_BAN_SECONDS",
    "DEFAULT_KICK_BAR_SECONDS",
    "FETCH_LIMIT",
    "FLOOD_BURST",
    "FLOOD_PER_SECOND",
    "HEARTBEAT_INTERVAL_MS",
    "HEARTBEAT_LIVENESS",
    "MAX_ACK_IDS",
    "MAX_BAR_SECONDS",
    "MAX_EVENT_WIRE_FRAME_BYTES",
    "MAX_FRAMES",
    "MAX_ID_BYTES",
    "MAX_NICK_CHARS",
    "MAX_PACKED_BYTES",
    "MAX_REASON_BYTES",
    "MAX_TEXT_BYTES",
    "MAX_TOKEN_BYTES",
    "MAX_WIRE_FRAME_BYTES",
    "MIN_HEARTBEAT_MS",
    "MIN_SESSION_TOKEN_BYTES",
    "SIGNATURE",
    "STREAM_READY",
    "ErrorCode",
    "ProtocolError",
    "SanitizingFormatter",
    "TokenBucket",
    "command_verbs",
    "commands",
    "decode_command",
    "decode_event",
    "encode",
    "events",
    "format_duration",
    "message_ref",
    "nick_key",
    "nick_scripts",
    "nick_skeleton",
    "normalize_nick",
    "pack_events",
    "parse_duration",
    "sanitize",
    "sanitizing_handler",
    "split_duration",
    "truncate_utf8",
    "unpack_events",
]
