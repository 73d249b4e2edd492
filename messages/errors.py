"""Error codes of the ERROR event and the exception that carries them."""

from enum import IntEnum


class ErrorCode(IntEnum):
    """The code of an ERROR event: three ASCII digits on the wire."""

    MALFORMED = 400
    NOT_REGISTERED = 401
    ALREADY_REGISTERED = 402
    FORBIDDEN = 403
    NO_SUCH_NICK = 404
    UNKNOWN_COMMAND = 405
    NICK_TAKEN = 409
    HISTORY_GONE = 410
    TOO_LARGE = 413
    INVALID_NICK = 422
    UNSUPPORTED_VERSION = 426
    RATE_LIMITED = 429
    #: A private message the broker accepted (ACK) was dropped before its recipient
    #: confirmed it: the recipient's session ended, or it had too many unconfirmed.
    UNDELIVERED = 504
    #: The broker cannot do this now: in a cluster, NATS (which it must ask) is unreachable.
    #: The same command may succeed later.
    UNAVAILABLE = 503
    INSUFFICIENT_STORAGE = 507


class ProtocolError(Exception):
    """A message broke the protocol; `code` and `reason` go back to the peer as ERROR."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(f"{int(code)} {reason}")
        self.code = code
        self.reason = reason
