"""The token bucket both sides meter chat commands with: sans-IO, time passed in.

The broker refuses what its bucket does not allow (ERROR 429); a client paces itself with
the same bucket at the same defaults (FLOOD_BURST, FLOOD_PER_SECOND) so it is never refused.
"""

import math
from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """`capacity` tokens, refilled at `per_second`; each allowed action takes one.

    Times are monotonic seconds supplied by the caller.
    """

    capacity: float
    per_second: float
    tokens: float = field(init=False)
    updated: float = field(default=-math.inf)

    def __post_init__(self) -> None:
        self.tokens = self.capacity

    def _refill(self, now: float) -> None:
        if now > self.updated:
            elapsed = now - self.updated
            self.tokens = min(self.capacity, self.tokens + elapsed * self.per_second)
            self.updated = now

    def take(self, now: float, amount: float = 1.0) -> bool:
        """Take `amount` tokens if there are that many; False means the action is over the
        limit (and takes nothing)."""
        self._refill(now)
        if self.tokens >= amount:
            self.tokens -= amount
            return True
        return False

    def wait(self, now: float, amount: float = 1.0) -> float:
        """Seconds until `amount` tokens are available again."""
        self._refill(now)
        return max(0.0, (amount - self.tokens) / self.per_second)

    def drain(self, now: float) -> None:
        """Empty the bucket (a client told it went too fast starts over slowly)."""
        self._refill(now)
        self.tokens = 0.0

    def full(self, now: float) -> bool:
        """True when the bucket has refilled completely (nothing to remember)."""
        self._refill(now)
        return self.tokens >= self.capacity
