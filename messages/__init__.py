"""The zmq-chat wire protocol: message types, limits and encoding, with no sockets and no I/O.

docs/PROTOCOL.md specifies the same protocol frame by frame.
"""

from . import commands, events
from .codec import command_verbs, decode_command, decode_event, encode, truncate_utf8
from .errors import ErrorCode, ProtocolError
from .limits import (
    HEARTBEAT_INTERVAL_MS,
    HEARTBEAT_LIVENESS,
    MAX_FRAMES,
    MAX_NICK_CHARS,
    MAX_REASON_BYTES,
    MAX_TEXT_BYTES,
    MAX_TOKEN_BYTES,
    MAX_WIRE_FRAME_BYTES,
    SIGNATURE,
)
from .nicks import nick_key, nick_scripts, nick_skeleton, normalize_nick

__all__ = [
    "HEARTBEAT_INTERVAL_MS",
    "HEARTBEAT_LIVENESS",
    "MAX_FRAMES",
    "MAX_NICK_CHARS",
    "MAX_REASON_BYTES",
    "MAX_TEXT_BYTES",
    "MAX_TOKEN_BYTES",
    "MAX_WIRE_FRAME_BYTES",
    "SIGNATURE",
    "ErrorCode",
    "ProtocolError",
    "command_verbs",
    "commands",
    "decode_command",
    "decode_event",
    "encode",
    "events",
    "nick_key",
    "nick_scripts",
    "nick_skeleton",
    "normalize_nick",
    "truncate_utf8",
]
