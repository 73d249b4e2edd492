"""Limits and timings of the zmq-chat protocol, shared by the broker and every client.

Every number here is part of the wire contract and is quoted in docs/PROTOCOL.md.
"""

from typing import Final

#: Frame 0 of every message: protocol name and two-digit version, ASCII.
SIGNATURE: Final = b"ZCHAT01"
#: Any frame 0 starting with this names our protocol (possibly another version).
SIGNATURE_PREFIX: Final = b"ZCHAT"

#: A nickname is 1 to this many characters (Unicode code points, after NFC).
MAX_NICK_CHARS: Final = 32
#: Longest chat text, in UTF-8 bytes.
MAX_TEXT_BYTES: Final = 4096
#: Longest kick, leave or shutdown reason, in UTF-8 bytes.
MAX_REASON_BYTES: Final = 400
#: Longest operator token, in UTF-8 bytes.
MAX_TOKEN_BYTES: Final = 256
#: Longest frame of any kind not named above (nick lists, for example), in bytes.
MAX_FRAME_BYTES: Final = 65536
#: Longest whole frame the broker's socket accepts (ZMQ_MAXMSGSIZE); a peer that sends a
#: longer one is disconnected by libzmq before the broker sees it. Leaves room above
#: MAX_TEXT_BYTES so that an over-long text still gets a readable error.
MAX_WIRE_FRAME_BYTES: Final = 2 * MAX_FRAME_BYTES
#: Most frames in one message; longer messages are malformed.
MAX_FRAMES: Final = 8

#: Default interval, in milliseconds, between a client's PINGs; the broker announces the
#: interval it wants in WELCOME.
HEARTBEAT_INTERVAL_MS: Final = 2000
#: A peer silent for this many heartbeat intervals is considered gone.
HEARTBEAT_LIVENESS: Final = 3
