"""Limits and timings of the zmq-chat protocol, shared by the broker and every client.

Every number here is part of the wire contract and is quoted in docs/PROTOCOL.md.
"""

from typing import Final

#: Frame 0 of every message: protocol name and two-digit version, ASCII.
SIGNATURE: Final = b"ZCHAT01"
#: The one-frame message a stream subscriber receives first: its connection is attached.
STREAM_READY: Final = SIGNATURE
#: Any frame 0 starting with this names our protocol (possibly another version).
SIGNATURE_PREFIX: Final = b"ZCHAT"

#: A nickname is 1 to this many characters (Unicode code points, after NFC).
MAX_NICK_CHARS: Final = 32
#: Longest chat text, in UTF-8 bytes.
MAX_TEXT_BYTES: Final = 4096
#: Longest kick, leave or shutdown reason, in UTF-8 bytes.
MAX_REASON_BYTES: Final = 400
#: Longest away message (AWAY), in UTF-8 bytes.
MAX_AWAY_BYTES: Final = 200
#: Longest operator token, in UTF-8 bytes.
MAX_TOKEN_BYTES: Final = 256
#: Longest message id or session token, in bytes (ASCII letters, digits, `-`, `_`, `.`).
MAX_ID_BYTES: Final = 64
#: Shortest session token, in bytes: 22 identifier characters hold 128 random bits when each
#: carries 6 (`secrets.token_urlsafe(16)`); a token of hex digits needs 32. A short token is
#: guessed by whoever tries them all, and whoever holds a token holds the session.
MIN_SESSION_TOKEN_BYTES: Final = 22
#: Longest frame of any kind not named here, in bytes.
MAX_FRAME_BYTES: Final = 65536
#: Most message ids one ACK acknowledges.
MAX_ACK_IDS: Final = 64
#: Longest nick list (USERS), in bytes: room for about 30,000 nicks.
MAX_LIST_BYTES: Final = 1024 * 1024
#: Most bytes of nicks (their UTF-8 and the spaces between them) in one page of the user
#: list: a longer list comes in pages (USERS `more`). At least one longest nick fits.
USERS_PAGE_BYTES: Final = 64 * 1024
#: Longest frame the broker's socket accepts (ZMQ_MAXMSGSIZE); a peer that sends a longer
#: one is disconnected by libzmq before the broker sees it. Leaves room above
#: MAX_TEXT_BYTES so that an over-long text still gets a readable error.
MAX_WIRE_FRAME_BYTES: Final = 2 * MAX_FRAME_BYTES
#: Longest frame a client's socket accepts (ZMQ_MAXMSGSIZE): a nick list and then some.
MAX_EVENT_WIRE_FRAME_BYTES: Final = 2 * MAX_LIST_BYTES
#: Longest stream frame of packed events, in bytes (ZMQ_MAXMSGSIZE of a subscriber).
MAX_PACKED_BYTES: Final = 4 * MAX_LIST_BYTES
#: Most frames in one message; longer messages are malformed.
MAX_FRAMES: Final = 8

#: Default interval, in milliseconds, between a client's PINGs; the broker announces the
#: interval it wants in WELCOME.
HEARTBEAT_INTERVAL_MS: Final = 2000
#: The shortest heartbeat interval a broker may ask for, in milliseconds; a client treats
#: a shorter one in WELCOME as this.
MIN_HEARTBEAT_MS: Final = 100
#: A peer silent for this many heartbeat intervals is considered gone.
HEARTBEAT_LIVENESS: Final = 3

#: Most broadcast events the broker sends in answer to one FETCH; a longer gap takes
#: several FETCHes.
FETCH_LIMIT: Final = 1000
#: Most bytes of events in one answer to FETCH (each event counted as its frames, signature
#: and verb included): the answer stops before the event that would pass it.
FETCH_REPLY_BYTES: Final = 256 * 1024
#: What the answers to one session's FETCHes and USERS may add up to, in bytes: a burst of
#: REPLY_BURST_BYTES, then REPLY_BYTES_PER_SECOND. A request whose answer would pass it is
#: refused (ERROR 429, with the time to wait). Clients pace these requests to them.
REPLY_BURST_BYTES: Final = 4 * 1024 * 1024
REPLY_BYTES_PER_SECOND: Final = 2 * 1024 * 1024

#: Most entries one HISTORY or SEARCH asks for (its `limit`); a longer history takes
#: several pages.
HISTORY_PAGE_LIMIT: Final = 100
#: Longest SEARCH `words`, in UTF-8 bytes.
MAX_SEARCH_BYTES: Final = 256

#: How long a kick bars the kicked nick by default, in seconds (an operator may say otherwise).
DEFAULT_KICK_BAR_SECONDS: Final = 60
#: How long a ban bars a nick by default, in seconds: a day.
DEFAULT_BAN_SECONDS: Final = 86400
#: Longest bar of a nick, in seconds: 365 days.
MAX_BAR_SECONDS: Final = 365 * 86400

#: Flood control defaults (a broker may be started with others): chat commands one
#: client may send at once, and per second after that. Clients pace themselves to these.
FLOOD_BURST: Final = 20
FLOOD_PER_SECOND: Final = 5.0

#: Owned nicks (REGISTER, PROVE): an Ed25519 public key, a signature, and the broker's
#: challenge nonce, in bytes before base64url (43, 86 and 43 characters on the wire).
PUBLIC_KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
NONCE_BYTES: Final = 32
#: How long the broker keeps a HELLO waiting for its PROVE, in seconds.
CHALLENGE_SECONDS: Final = 30

# Rooms (see messages.rooms for names).
#: Longest room topic, in bytes.
MAX_TOPIC_BYTES: Final = 390
#: Rooms one session may be in at once, #general aside.
MAX_ROOMS_PER_USER: Final = 50
#: Members of one room, at most.
MAX_ROOM_MEMBERS: Final = 10_000
#: Rooms on one broker, at most.
MAX_ROOMS: Final = 10_000
#: Rooms described in one answer to ROOMS, at most.
ROOMS_PAGE_ROOMS: Final = 100
