"""Broadcast numbering on the receiving side, without sockets: order, duplicates, gaps."""

import pytest

from client.stream import BroadcastEvent, BroadcastStream, RecentIds
from messages import events as ev


def event(seq: int, msg_id: str | None = None) -> BroadcastEvent:
    """A MESSAGE numbered `seq` (message id `m{seq}` unless given)."""
    return ev.Message(seq, msg_id or f"m{seq}", "bob", f"text {seq}", 0)


def applied(stream: BroadcastStream, *seqs: int) -> list[int]:
    out: list[int] = []
    for seq in seqs:
        out += [e.seq for e in stream.accept(event(seq)).events]
    return out


def started(seq: int = 10, epoch: str = "e1") -> BroadcastStream:
    stream = BroadcastStream(fetch_retry_s=5.0, fetch_batch=1000)
    assert not stream.on_welcome(epoch, seq)
    return stream


@pytest.mark.parametrize(
    ("incoming", "expected", "last"),
    [
        # In order.
        ([11, 12, 13], [11, 12, 13], 13),
        # Duplicates and overlaps are dropped (including what came before WELCOME's seq).
        ([11, 11, 12, 10, 9, 12, 13], [11, 12, 13], 13),
        # A gap holds later events back until it fills, then all come in order.
        ([11, 13, 14, 12], [11, 12, 13, 14], 14),
        ([14, 13, 12, 11], [11, 12, 13, 14], 14),
        # Held events are not applied twice when the gap's FETCH repeats them.
        ([13, 11, 12, 13, 14], [11, 12, 13, 14], 14),
    ],
)
def test_order_and_duplicates(incoming: list[int], expected: list[int], last: int) -> None:
    stream = started(10)
    assert applied(stream, *incoming) == expected
    assert stream.last_seq == last
    assert not stream.gap


def test_a_gap_asks_for_a_fetch_once_and_again_after_the_retry_time() -> None:
    stream = started(10)
    assert applied(stream, 11, 14) == [11]
    assert stream.gap and stream.held == 1
    assert stream.fetch_due(0.0) == 12
    # Asked already: not again while the answer may be on its way ...
    assert stream.fetch_due(1.0) is None
    # ... unless it never came.
    assert stream.fetch_due(5.0) == 12
    assert applied(stream, 12, 13) == [12, 13, 14]
    assert stream.fetch_due(6.0) is None


def test_a_gap_longer_than_one_fetch_asks_again_where_the_answer_ended() -> None:
    stream = BroadcastStream(fetch_batch=3)
    stream.on_welcome("e1", 0)
    applied(stream, 10)
    assert stream.fetch_due(0.0) == 1
    assert applied(stream, 1, 2) == [1, 2]
    assert stream.fetch_due(0.1) is None
    applied(stream, 3)
    assert stream.fetch_due(0.2) == 4


def test_history_gone_skips_to_what_arrives_and_counts_the_loss() -> None:
    stream = started(10)
    applied(stream, 11, 20)
    assert stream.fetch_due(0.0) == 12
    stream.history_gone()
    # The broker replays what it still has: from 15 on.
    result = stream.accept(event(15))
    assert result.lost == 3
    assert [e.seq for e in result.events] == [15]
    assert applied(stream, 16, 17, 18, 19) == [16, 17, 18, 19, 20]
    assert not stream.gap


def test_after_history_gone_a_newer_event_from_the_stream_skips_nothing() -> None:
    stream = started(10)
    applied(stream, 11, 5000)
    assert stream.fetch_due(0.0) == 12
    stream.history_gone()
    # A live broadcast on the stream overtakes the FETCH's answer: it is held, not skipped to.
    result = stream.accept(event(5001), on_connection=False)
    assert (result.lost, result.events) == (0, [])
    # The answer starts where the broker's history does: the skip ends there.
    result = stream.accept(event(15))
    assert result.lost == 3
    assert [e.seq for e in result.events] == [15]


def test_a_resumed_session_fetches_what_was_broadcast_meanwhile() -> None:
    stream = started(10)
    applied(stream, 11)
    assert not stream.on_welcome("e1", 15)  # same run of the broker
    assert stream.fetch_due(0.0) == 12
    assert applied(stream, 16) == []  # live, held until the gap fills
    assert applied(stream, 12, 13, 14, 15) == [12, 13, 14, 15, 16]


def test_a_restarted_broker_is_read_from_its_first_broadcast() -> None:
    stream = started(10)
    applied(stream, 11, 13)
    assert stream.on_welcome("e2", 4)
    assert stream.epoch == "e2"
    assert stream.last_seq == 0 and stream.held == 0
    assert stream.fetch_due(0.0) == 1
    assert applied(stream, 5, 1, 2, 3, 4) == [1, 2, 3, 4, 5]


def test_a_message_seen_before_is_dropped_under_any_number() -> None:
    stream = started(0)
    assert [e.seq for e in stream.accept(event(1, "alice-1")).events] == [1]
    # Sent again to a restarted broker, which numbered it anew.
    stream.on_welcome("e2", 0)
    result = stream.accept(event(1, "alice-1"))
    assert result.events == []
    assert stream.last_seq == 1  # its number is used up all the same
    assert [e.seq for e in stream.accept(event(2, "alice-2")).events] == [2]


def test_within_one_run_only_the_number_makes_a_repeat() -> None:
    # Whoever holds alice's nick after her sends an id first: it cannot hide hers, which
    # the broker numbers anew.
    stream = started(0)
    assert [e.seq for e in stream.accept(event(1, "alice-2")).events] == [1]
    assert [e.seq for e in stream.accept(event(2, "alice-2")).events] == [2]
    assert stream.accept(event(2, "alice-2")).events == []  # the same number again


def test_presence_and_notices_go_through_in_order() -> None:
    stream = started(0)
    joined, notice, left = ev.Joined(1, "bob"), ev.Notice(2, "hi"), ev.Left(3, "bob", "quit")
    assert stream.accept(left).events == []
    assert stream.accept(notice).events == []
    assert stream.accept(joined).events == [joined, notice, left]


def test_too_much_held_back_gives_the_gap_up() -> None:
    stream = BroadcastStream(held_limit=3)
    stream.on_welcome("e1", 0)
    assert applied(stream, 5, 6, 7) == []
    result = stream.accept(event(8))
    assert result.lost == 4
    assert [e.seq for e in result.events] == [5, 6, 7, 8]


def test_private_ids_are_remembered_too() -> None:
    stream = started(0)
    assert stream.first_time("bob", "b-7")
    assert not stream.first_time("BOB", "b-7")
    assert stream.first_time("carol", "b-7")  # ids are unique per sender only


def test_recent_ids_are_bounded() -> None:
    recent = RecentIds(limit=3)
    for item in "abcd":
        assert recent.add(item)
    assert len(recent) == 3
    assert "a" not in recent and "d" in recent
    assert not recent.add("d")


def test_a_tick_beyond_the_last_event_is_a_gap() -> None:
    stream = started(10)
    applied(stream, 11, 12)
    stream.on_tick(12)
    assert not stream.gap and stream.fetch_due(0.0) is None
    # 13 and 14 were dropped, and nothing came after them: only the TICK tells.
    stream.on_tick(14)
    assert stream.gap
    assert stream.fetch_due(0.0) == 13
    assert applied(stream, 13, 14) == [13, 14]
    assert not stream.gap


def test_an_answered_fetch_that_left_a_gap_is_followed_at_once() -> None:
    stream = started(10)
    applied(stream, 15)
    assert stream.fetch_due(0.0) == 11
    # The answer brought 11 and 12 (all the broker had when it answered); 13 and 14 were
    # dropped on the stream meanwhile.
    applied(stream, 11, 12)
    assert stream.fetch_due(0.1) is None  # the answer may still be coming ...
    stream.fetch_answered()  # ... until the PONG after it says it is complete
    assert stream.fetch_due(0.1) == 13
    assert applied(stream, 13, 14) == [13, 14, 15]


def test_resync_fetches_after_the_last_event_gap_or_not() -> None:
    stream = started(10)
    applied(stream, 11)
    fetches = stream.fetches
    assert stream.resync(0.0) == 12
    assert stream.fetches == fetches + 1
    assert applied(stream, 12) == [12]  # published before the stream was in place
