"""The flood policy: which token buckets a client draws on, and how big they are."""

from dataclasses import dataclass

from messages import (
    FLOOD_BURST,
    FLOOD_PER_SECOND,
    REPLY_BURST_BYTES,
    REPLY_BYTES_PER_SECOND,
    TokenBucket,
)


@dataclass(frozen=True)
class FloodPolicy:
    """How much one client may send, and what happens past that.

    Chat commands (SAY, TELL, USERS, WALL, KICK, FETCH) draw on a bucket of `burst` tokens
    refilled at `per_second`; one over the limit is refused with ERROR 429. Each refusal
    is a strike; strikes are forgiven at `strikes_forgiven_per_second`, and a client that
    collects `strikes_to_kick` is kicked for flooding.
    """

    burst: int = FLOOD_BURST
    per_second: float = FLOOD_PER_SECOND
    strikes_to_kick: int = 40
    strikes_forgiven_per_second: float = 1.0
    #: Failed ADMIN attempts allowed in a row, then one more per `admin_retry_seconds`.
    admin_attempts: int = 3
    admin_retry_seconds: float = 20.0
    #: HELLOs from one network address: a burst of `join_burst`, then `joins_per_second`.
    join_burst: int = 10
    joins_per_second: float = 2.0
    #: Loopback clients are not join-limited (tests, benchmarks, bots on the same host).
    exempt_loopback_joins: bool = True
    #: Bytes of FETCH answers one session may draw: a burst, then so many per second.
    reply_burst_bytes: int = REPLY_BURST_BYTES
    reply_bytes_per_second: float = REPLY_BYTES_PER_SECOND

    def message_bucket(self) -> TokenBucket:
        return TokenBucket(self.burst, self.per_second)

    def strike_bucket(self) -> TokenBucket:
        return TokenBucket(self.strikes_to_kick, self.strikes_forgiven_per_second)

    def admin_bucket(self) -> TokenBucket:
        return TokenBucket(self.admin_attempts, 1 / self.admin_retry_seconds)

    def reply_bucket(self) -> TokenBucket:
        return TokenBucket(self.reply_burst_bytes, self.reply_bytes_per_second)

    def join_bucket(self) -> TokenBucket:
        return TokenBucket(self.join_burst, self.joins_per_second)

    def joins_limited(self, peer: str) -> bool:
        """Whether HELLOs from network address `peer` count against a join bucket."""
        if not peer:
            return False
        # ipc peers show as "localhost:uid:gid:pid", IPv4 over IPv6 as "::ffff:127.x.x.x".
        loopback = peer.startswith(("127.", "::ffff:127.", "localhost")) or peer == "::1"
        return not (loopback and self.exempt_loopback_joins)
