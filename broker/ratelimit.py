"""The flood policy: which token buckets a client draws on, and how big they are."""

from dataclasses import dataclass
from typing import Final

from messages import (
    FLOOD_BURST,
    FLOOD_PER_SECOND,
    REPLY_BURST_BYTES,
    REPLY_BYTES_PER_SECOND,
    TokenBucket,
)

#: By default one network address may send as much as this many sessions at full speed.
ADDRESS_SHARE: Final = 10


@dataclass(frozen=True)
class FloodPolicy:
    """How much one client, and one network address, may send, and what happens past that.

    Chat commands (SAY, TELL, USERS, WALL, KICK, FETCH) draw on a bucket of `burst` tokens
    refilled at `per_second`; one over the limit is refused with ERROR 429. Each refusal
    is a strike; strikes are forgiven at `strikes_forgiven_per_second`, and a client that
    collects `strikes_to_kick` is kicked for flooding. All the sessions of one network
    address (loopback included) draw on a second bucket together, hold at most
    `sessions_per_address` sessions, and share a bucket of HELLOs.
    """

    burst: int = FLOOD_BURST
    per_second: float = FLOOD_PER_SECOND
    strikes_to_kick: int = 40
    strikes_forgiven_per_second: float = 1.0
    #: Failed ADMIN attempts allowed in a row to one session, then one more per
    #: `admin_retry_seconds`.
    admin_attempts: int = 3
    admin_retry_seconds: float = 20.0
    #: Failed ADMIN attempts allowed in a row to all sessions together, then one more per
    #: `admin_global_retry_seconds`: new sessions bring no new guesses.
    admin_global_attempts: int = 10
    admin_global_retry_seconds: float = 10.0
    #: HELLOs from one network address: a burst of `join_burst`, then `joins_per_second`.
    #: The burst lets a few dozen users behind one NAT address come back at once after a
    #: broker restart.
    join_burst: int = 50
    joins_per_second: float = 2.0
    #: Sessions one network address may hold at once: a LAN of a few dozen users behind one
    #: NAT address fits.
    sessions_per_address: int = 100
    #: Chat commands all the sessions of one address may send at once, and per second;
    #: None: as much as ADDRESS_SHARE sessions at full speed (ten users typing as fast as
    #: the per-session limit allows, far more than a few dozen people chatting).
    address_burst: float | None = None
    address_per_second: float | None = None
    #: Bytes of FETCH answers one session may draw: a burst, then so many per second.
    reply_burst_bytes: int = REPLY_BURST_BYTES
    reply_bytes_per_second: float = REPLY_BYTES_PER_SECOND

    def message_bucket(self) -> TokenBucket:
        return TokenBucket(self.burst, self.per_second)

    def strike_bucket(self) -> TokenBucket:
        return TokenBucket(self.strikes_to_kick, self.strikes_forgiven_per_second)

    def admin_bucket(self) -> TokenBucket:
        return TokenBucket(self.admin_attempts, 1 / self.admin_retry_seconds)

    def global_admin_bucket(self) -> TokenBucket:
        return TokenBucket(self.admin_global_attempts, 1 / self.admin_global_retry_seconds)

    def reply_bucket(self) -> TokenBucket:
        return TokenBucket(self.reply_burst_bytes, self.reply_bytes_per_second)

    def join_bucket(self) -> TokenBucket:
        return TokenBucket(self.join_burst, self.joins_per_second)

    @property
    def address_limits(self) -> tuple[float, float]:
        """The burst and rate of one address's bucket of chat commands."""
        burst = self.address_burst if self.address_burst is not None else ADDRESS_SHARE * self.burst
        rate = self.address_per_second
        return burst, rate if rate is not None else ADDRESS_SHARE * self.per_second

    def address_message_bucket(self) -> TokenBucket:
        return TokenBucket(*self.address_limits)
