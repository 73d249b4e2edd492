"""The broadcast log: the last broadcast events, kept so that clients can fill gaps."""

import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from messages import events as ev

BroadcastEvent = ev.Joined | ev.Left | ev.Message | ev.Notice | ev.AwayChanged | ev.Renamed
#: Room events (see `broker.rooms`) are numbered in logs of their own.
LoggedEvent = BroadcastEvent | ev.Entered | ev.Parted | ev.Posted | ev.TopicSet | ev.ModeSet
E = TypeVar("E", bound=LoggedEvent)


#: Broadcast events kept in memory for clients that FETCH what they missed.
HISTORY_EVENTS: Final = 10_000


@dataclass(frozen=True)
class Replay(Generic[E]):
    """What a FETCH gets: the events still kept, and the first one that is not kept."""

    events: list[E]
    #: If > 0, events numbered from the requested one up to this (excluded) are gone.
    gone_until: int
    #: The events' sizes added up (0 unless asked for).
    size: int = 0


def within(
    events: Iterable[E], max_bytes: int, size: Callable[[Any], int] = len
) -> tuple[list[E], int]:
    """The first of `events` whose `size`s add up to at most `max_bytes` (one at least),
    and what they add up to."""
    kept: list[E] = []
    total = 0
    for event in events:
        cost = size(event)
        if total + cost > max_bytes and kept:
            break
        total += cost
        kept.append(event)
    return kept, total


class BroadcastLog(Generic[E]):
    """Events numbered 1, 2, 3, ...; the last `capacity` of them are kept."""

    def __init__(self, capacity: int) -> None:
        self._events: deque[E] = deque(maxlen=capacity)
        self.last_seq = 0

    def resume(self, events: list[E], last_seq: int) -> None:
        """Start from a stored log: its last `events` (oldest first), numbered up to
        `last_seq`."""
        self._events.clear()
        self._events.extend(events[-(self._events.maxlen or 0) :])
        self.last_seq = last_seq
        if self._events and self._events[-1].seq != last_seq:
            raise ValueError(f"stored log ends at {self._events[-1].seq}, not {last_seq}")

    def next_seq(self) -> int:
        """The number the next broadcast event must carry."""
        return self.last_seq + 1

    def append(self, event: E) -> None:
        if event.seq != self.last_seq + 1:
            raise ValueError(f"broadcast {event.seq} out of order after {self.last_seq}")
        self._events.append(event)
        self.last_seq = event.seq

    @property
    def first_kept(self) -> int:
        """The number of the oldest event still kept."""
        return self.last_seq - len(self._events) + 1

    def since(
        self, from_seq: int, limit: int, max_bytes: int = 0, size: Callable[[Any], int] = len
    ) -> Replay[E]:
        """At most `limit` events numbered `from_seq` or later, oldest first; with
        `max_bytes`, only as many as keep their `size`s within it (one at least)."""
        first = self.first_kept
        start = max(from_seq, first, 1)
        gone_until = first if from_seq < first else 0
        offset = start - first
        end = min(len(self._events), offset + limit)
        kept = itertools.islice(self._events, offset, end)
        if not max_bytes:
            return Replay(list(kept), gone_until)
        events, total = within(kept, max_bytes, size)
        return Replay(events, gone_until, total)
