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
from .errors import ErrorCode, ProtocolError
from .limits import (
    FETCH_LIMIT,
    FETCH_REPLY_BYTES,
    FLOOD_BURST,
    FLOOD_PER_SECOND,
    HEARTBEAT_INTERVAL_MS,
    HEARTBEAT_LIVENESS,
    MAX_ACK_IDS,
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
    REPLY_BURST_BYTES,
    REPLY_BYTES_PER_SECOND,
    SIGNATURE,
    STREAM_READY,
)
from .nicks import nick_key, nick_scripts, nick_skeleton, normalize_nick
from .ratelimit import TokenBucket

__all__ = [
    "FETCH_LIMIT",
    "FETCH_REPLY_BYTES",
    "FLOOD_BURST",
    "FLOOD_PER_SECOND",
    "HEARTBEAT_INTERVAL_MS",
    "HEARTBEAT_LIVENESS",
    "MAX_ACK_IDS",
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
    "REPLY_BURST_BYTES",
    "REPLY_BYTES_PER_SECOND",
    "SIGNATURE",
    "STREAM_READY",
    "ErrorCode",
    "ProtocolError",
    "TokenBucket",
    "command_verbs",
    "commands",
    "decode_command",
    "decode_event",
    "encode",
    "events",
    "message_ref",
    "nick_key",
    "nick_scripts",
    "nick_skeleton",
    "normalize_nick",
    "pack_events",
    "truncate_utf8",
    "unpack_events",
]
