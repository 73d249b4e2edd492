"""Finding the connection behind a message that grows inside libzmq.

libzmq queues a multipart message whole before the broker can read a frame of it, and
counts no frames: one message of millions of empty frames costs about 64 bytes of memory
per 2 bytes sent. The broker cannot see such a message until it is complete, but it can
see its effects: the process grows, and one connection has handed libzmq bytes that never
become a message the broker reads.

`GrowthWatch` is fed a reading of the resident memory every MEMORY_WATCH_S. When memory
has grown by RSS_JUMP_BYTES within the last GROWTH_WINDOW_READINGS readings (fast: a
broker that slowly fills its history never gets there), it samples, for a few readings, how
far each chat connection
is ahead of the broker: bytes libzmq took from the kernel (received minus still queued in
the kernel) minus bytes of the messages the broker read. A connection is a culprit when,
between two samples, that gap grew past UNREAD_LIMIT_BYTES while the broker read nothing
from it. An honest client that sends a lot has complete messages, which the broker reads
at every turn; one whose messages wait because the broker is slow stops being read from
by libzmq at its high-water mark, so its gap stops growing.
"""

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from .connections import Connection

#: How often the resident memory is read, in s.
MEMORY_WATCH_S: Final = 0.02
#: Growth of the resident memory that starts sampling connections, in bytes.
RSS_JUMP_BYTES: Final = 8 * 1024 * 1024
#: Readings within which that growth must happen (with MEMORY_WATCH_S: 200 ms).
GROWTH_WINDOW_READINGS: Final = 10
#: Readings for which connections are sampled after a jump (each samples every chat
#: connection: two syscalls apiece).
SAMPLED_READINGS: Final = 10
#: Bytes a connection may be ahead of the broker (a message on its way, the handshake,
#: heartbeats) before its growth counts.
UNREAD_LIMIT_BYTES: Final = 256 * 1024
#: Two samples further apart than this many watch intervals say nothing about each other
#: (the loop was busy elsewhere), in readings.
STALE_AFTER_READINGS: Final = 5


@dataclass
class GrowthWatch:
    """Memory readings in, culprit connections out."""

    #: The last readings, in bytes.
    _recent: deque[int] = field(default_factory=lambda: deque(maxlen=GROWTH_WINDOW_READINGS))
    _readings_left: int = 0
    _sampled_at: float = 0.0
    #: Per descriptor: (bytes the broker had read, bytes libzmq was ahead) at last sample.
    _samples: dict[int, tuple[int, int]] = field(default_factory=dict)

    def reading(
        self,
        rss: int,
        now: float,
        connections: Callable[[], Iterable[Connection]],
        ahead_of_broker: Callable[[Connection], int],
    ) -> list[Connection]:
        """Take one memory reading; the connections to cut off now. `connections` gives the
        chat connections, asked for only while sampling."""
        recent = self._recent
        if recent and rss - min(recent) >= RSS_JUMP_BYTES:
            recent.clear()
            self._readings_left = SAMPLED_READINGS
        recent.append(rss)
        if not self._readings_left:
            self._samples.clear()
            return []
        self._readings_left -= 1
        fresh = now - self._sampled_at <= STALE_AFTER_READINGS * MEMORY_WATCH_S
        self._sampled_at = now
        samples: dict[int, tuple[int, int]] = {}
        culprits = []
        for connection in connections():
            ahead = ahead_of_broker(connection)
            before = self._samples.get(connection.fd) if fresh else None
            if (
                before is not None
                and before[0] == connection.bytes_read
                and ahead > before[1]
                and ahead > UNREAD_LIMIT_BYTES
            ):
                culprits.append(connection)
            samples[connection.fd] = (connection.bytes_read, ahead)
        self._samples = samples
        return culprits
