"""Broadcast numbering on the receiving side: in order, once each, gaps filled (sans-IO).

The broker numbers broadcast events (JOIN, LEAVE, MESSAGE, NOTICE) 1, 2, 3, ... within one
epoch (one run of the broker). `BroadcastStream` applies them in that order:

- a number at or below the last one applied is a duplicate (an overlap of a FETCH): dropped;
- the next number is applied, with any held-back events that follow it;
- a number further on means some were missed (while the link was down, or dropped by the
  broadcast stream for a slow reader): the event is held back and `fetch_due` asks for
  FETCH from the first missing one;
- a TICK naming a number beyond the last one applied means the last broadcasts were missed
  with nothing after them to show it: they are fetched the same way;
- after ERROR 410 (the broker no longer keeps the missing ones), the stream skips to what
  arrives next and reports how many were lost.

Within one epoch a broadcast is a repeat only by its number: the broker gives each number
once, and nobody else can. A MESSAGE is also dropped when its sender and id were shown under
an earlier epoch (sent again across a broker restart), and a PRIVATE when its sender and id
were shown at all (the broker resends unconfirmed ones). Ids alone never drop a new broadcast
of the same run: whoever holds a nick later could otherwise send its owner's next ids first
and hide what the owner says after.
"""

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from messages import FETCH_LIMIT, nick_key
from messages.events import (
    AwayChanged,
    Entered,
    Joined,
    Left,
    Message,
    ModeSet,
    Notice,
    Parted,
    Posted,
    Renamed,
    TopicSet,
)

BroadcastEvent = Joined | Left | Message | Notice | AwayChanged | Renamed
#: What a `BroadcastStream` orders: the broadcasts of #general, or one room's events (see
#: `client.rooms`).
Numbered = BroadcastEvent | Entered | Parted | Posted | TopicSet | ModeSet

#: The most events one FETCH returns; a longer gap takes several.
FETCH_BATCH: Final = FETCH_LIMIT
#: A FETCH whose answer never came (see `fetch_answered`) is asked again after this many
#: seconds.
FETCH_RETRY_S: Final = 5.0
#: Most events held back while waiting for a gap to fill; beyond it the gap is given up.
HELD_LIMIT: Final = 10_000
#: Message ids remembered to drop repeats.
SEEN_IDS_LIMIT: Final = 10_000


@dataclass
class Accepted:
    """What one incoming broadcast event releases: events to apply, in order, and how
    many broadcasts were skipped for good (after ERROR 410 or an overlong gap)."""

    events: list[Numbered] = field(default_factory=list)
    lost: int = 0


class RecentIds:
    """A bounded set of the last `limit` ids added (least recently added forgotten first)."""

    def __init__(self, limit: int = SEEN_IDS_LIMIT) -> None:
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, item: str) -> bool:
        return item in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, item: str) -> bool:
        """Remember `item`; False if it was already there (a repeat)."""
        if item in self._ids:
            self._ids.move_to_end(item)
            return False
        self._ids[item] = None
        if len(self._ids) > self.limit:
            self._ids.popitem(last=False)
        return True


class BroadcastStream:
    """The receiving side of one session's broadcast numbering (see the module docstring).

    Times are monotonic seconds passed in by the caller.
    """

    def __init__(
        self,
        fetch_batch: int = FETCH_BATCH,
        fetch_retry_s: float = FETCH_RETRY_S,
        held_limit: int = HELD_LIMIT,
        seen_limit: int = SEEN_IDS_LIMIT,
    ) -> None:
        self.fetch_batch = fetch_batch
        self.fetch_retry_s = fetch_retry_s
        self.held_limit = held_limit
        #: The broker run the numbers belong to; None before the first WELCOME.
        self.epoch: str | None = None
        #: The number of the last event applied.
        self.last_seq = 0
        #: The highest number known to exist (from WELCOME or events seen).
        self.known_seq = 0
        self.seen = RecentIds(seen_limit)
        # (sender's uniqueness key, msg_id) of MESSAGEs applied -> the epoch they came in.
        self._shown_in: OrderedDict[str, str] = OrderedDict()
        self._shown_limit = seen_limit
        self._held: dict[int, Numbered] = {}
        # The FETCH in flight: (from_seq, when sent).
        self._fetch: tuple[int, float] | None = None
        # ERROR 410 came: skip the missing events when the next one arrives.
        self._skip_gap = False
        #: FETCHes asked for so far (gaps and resynchronisations alike).
        self.fetches = 0

    @property
    def gap(self) -> bool:
        """Whether some events are known to exist that have not been applied."""
        return self.known_seq > self.last_seq

    @property
    def held(self) -> int:
        """How many events are held back waiting for a gap to fill."""
        return len(self._held)

    def on_welcome(self, epoch: str, seq: int) -> bool:
        """WELCOME for broker run `epoch`, whose last broadcast is `seq`. Returns True if
        the broker restarted since the last WELCOME (a new epoch).

        On the first WELCOME the stream starts after `seq`. On a resumed session (same
        epoch) the events after the last applied one are fetched. After a restart the new
        run's events are fetched from 1: whatever was said before we got back (our own
        messages sent again, among others) is not lost.
        """
        restarted = self.epoch is not None and epoch != self.epoch
        if self.epoch is None or (not restarted and seq < self.last_seq):
            # (The second: the broker's store lost its last broadcasts, a power loss say:
            # numbers go on from its last one, and those we had above it are gone.)
            self.last_seq = seq
        elif restarted:
            self.last_seq = 0
            self._held.clear()
            self._skip_gap = False
        self.epoch = epoch
        self.known_seq = max(self.known_seq if not restarted else 0, seq, self.last_seq)
        # A FETCH sent before this WELCOME may have been lost with the link.
        self._fetch = None
        return restarted

    def accept(self, event: Numbered, on_connection: bool = True) -> Accepted:
        """Take in one broadcast event; return what to apply now. `on_connection`: it came
        on the connection (an answer to FETCH, or every broadcast without the stream), not
        on the stream."""
        result = Accepted()
        seq = event.seq
        self.known_seq = max(self.known_seq, seq)
        if seq <= self.last_seq:
            return result
        if seq == self.last_seq + 1:
            self._skip_gap = False
            self._held[seq] = event
        else:
            self._held[seq] = event
            # After ERROR 410 the skip ends at the first event the FETCH brings back: a
            # newer one from the stream would skip what the broker still has.
            if self._skip_gap and on_connection:
                self._skip_gap = False
                result.lost += self._skip_to(min(self._held))
            elif len(self._held) > self.held_limit:
                result.lost += self._skip_to(min(self._held))
        self._release(result)
        return result

    def on_tick(self, seq: int) -> None:
        """TICK: the broker has numbered broadcasts up to `seq` (a gap if we have not)."""
        self.known_seq = max(self.known_seq, seq)

    def resync(self, now: float) -> int:
        """The number to FETCH from now, gap or not: the stream has just (re)connected, and
        what was published before it did may not have reached us. The FETCH counts as sent
        at `now`."""
        return self._asked(self.last_seq + 1, now)

    def fetch_answered(self) -> None:
        """The broker has sent all it will for the FETCH in flight (whatever is still
        missing needs another)."""
        self._fetch = None

    def history_gone(self) -> None:
        """ERROR 410: the events we asked for are no longer kept; skip to what comes."""
        self._skip_gap = True

    def fetch_due(self, now: float) -> int | None:
        """The number to FETCH from now, if a gap should be asked for (the request then
        counts as sent at `now`); None if there is no gap or its FETCH is still answering."""
        if not self.gap:
            self._fetch = None
            return None
        from_seq = self.last_seq + 1
        if self._fetch is not None:
            asked, at = self._fetch
            answered_all = from_seq >= asked + self.fetch_batch
            if not answered_all and now - at < self.fetch_retry_s:
                return None
        return self._asked(from_seq, now)

    def _asked(self, from_seq: int, now: float) -> int:
        self._fetch = (from_seq, now)
        self.fetches += 1
        return from_seq

    def first_time(self, sender: str, msg_id: str) -> bool:
        """Remember `msg_id` from `sender` (of a PRIVATE); False if seen before.

        Ids are unique per sender only, so the sender is part of what is remembered.
        """
        return self.seen.add(f"{nick_key(sender)} {msg_id}")

    def _resent_across_restart(self, message: Message) -> bool:
        """Whether `message` was shown before under an earlier epoch (its sender sent it
        again to the restarted broker, which numbered it anew)."""
        key = f"{nick_key(message.sender)} {message.msg_id}"
        shown_in = self._shown_in.get(key)
        if shown_in is None:
            self._shown_in[key] = self.epoch or ""
            if len(self._shown_in) > self._shown_limit:
                self._shown_in.popitem(last=False)
            return False
        return shown_in != self.epoch

    def _skip_to(self, seq: int) -> int:
        lost = seq - self.last_seq - 1
        self.last_seq = seq - 1
        self._fetch = None
        return lost

    def _release(self, result: Accepted) -> None:
        while (event := self._held.pop(self.last_seq + 1, None)) is not None:
            self.last_seq = event.seq
            if isinstance(event, Message) and self._resent_across_restart(event):
                continue  # the old run's copy was shown already
            result.events.append(event)
