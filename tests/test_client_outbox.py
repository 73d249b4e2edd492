"""The outbox without sockets: delivery states, what is (re)sent when, and pacing."""

import math
from dataclasses import dataclass

import pytest

from client.outbox import (
    PACING_BURST,
    PACING_LAG_S,
    Delivery,
    Outbox,
    OutgoingMessage,
    liveness_bound_s,
)
from messages import (
    FLOOD_BURST,
    FLOOD_PER_SECOND,
    HEARTBEAT_INTERVAL_MS,
    MAX_ID_BYTES,
    TokenBucket,
)
from messages import commands as cmd

TOKEN = "t0k3n"
#: A pacer too large to matter, for tests about something else.
UNPACED = 1e9


def outbox(**options: float) -> Outbox:
    settings: dict[str, float] = {"burst": UNPACED, "per_second": UNPACED, **options}
    return Outbox(TOKEN, **settings)  # type: ignore[arg-type]


def ids(messages: list[OutgoingMessage]) -> list[str]:
    return [m.msg_id for m in messages]


def test_messages_get_ids_in_typing_order_and_start_pending() -> None:
    box = outbox()
    say = box.add("hi all", None)
    tell = box.add("psst", "bob")
    assert say.msg_id.startswith(f"{TOKEN}-1-") and tell.msg_id.startswith(f"{TOKEN}-2-")
    assert say.command == cmd.Say(say.msg_id, "hi all")
    assert tell.command == cmd.Tell(tell.msg_id, "bob", "psst")
    assert say.state is tell.state is Delivery.PENDING
    assert ids(box.due(0.0)) == [say.msg_id, tell.msg_id]
    # Sent, not yet acknowledged: nothing more is due.
    assert box.due(0.1) == []


def test_message_ids_cannot_be_told_from_the_ids_before() -> None:
    # Two runs with the same prefix (as if an attacker knew it) number alike, but their
    # ids differ: the random part, new for every message, is what no one can guess.
    first, second = outbox(), outbox()
    ids_one = [first.add(f"line {n}", None).msg_id for n in range(3)]
    ids_two = [second.add(f"line {n}", None).msg_id for n in range(3)]
    assert not set(ids_one) & set(ids_two)
    assert all(len(msg_id) <= MAX_ID_BYTES for msg_id in ids_one)
    assert all(first.owns(msg_id) for msg_id in ids_one)


@dataclass(frozen=True)
class Step:
    """One thing the broker says about message 1 (a TELL to bob), at time `at`."""

    event: str
    at: float = 1.0
    code: int = 0


@pytest.mark.parametrize(
    ("steps", "state", "changed", "kept", "due_at"),
    [
        # ACK: sent; then DELIVERED: delivered, and the outbox is done with it.
        ([Step("ack")], Delivery.SENT, [True], True, None),
        ([Step("ack"), Step("delivered")], Delivery.DELIVERED, [True, True], False, None),
        # A repeated ACK changes nothing.
        ([Step("ack"), Step("ack")], Delivery.SENT, [True, False], True, None),
        # STORED (the recipient, an owned nick, is away): kept, waiting for DELIVERED;
        # it may come before the ACK, which then changes nothing.
        ([Step("stored")], Delivery.STORED, [True], True, None),
        ([Step("stored"), Step("ack")], Delivery.STORED, [True, False], True, None),
        ([Step("ack"), Step("stored")], Delivery.STORED, [True, True], True, None),
        ([Step("stored"), Step("delivered")], Delivery.DELIVERED, [True, True], False, None),
        # DELIVERED may overtake the ACK (the recipient is quick): delivered all the same.
        ([Step("delivered")], Delivery.DELIVERED, [True], False, None),
        # 401: still pending, sent again as soon as possible (after registering again).
        ([Step("error", code=401)], Delivery.PENDING, [False], True, 1.0),
        # 429: still pending, sent again after the retry delay.
        ([Step("error", code=429)], Delivery.PENDING, [False], True, 2.0),
        # 503 (the broker's cluster is out of reach): the same.
        ([Step("error", code=503)], Delivery.PENDING, [False], True, 2.0),
        # Anything else: failed, with the reason, never sent again.
        ([Step("error", code=404)], Delivery.FAILED, [True], False, None),
        ([Step("error", code=413)], Delivery.FAILED, [True], False, None),
        ([Step("error", code=499)], Delivery.FAILED, [True], False, None),
        # An error after the ACK is not about this message any more.
        ([Step("ack"), Step("error", code=404)], Delivery.SENT, [True, False], True, None),
    ],
)
def test_what_the_broker_says(
    steps: list[Step], state: Delivery, changed: list[bool], kept: bool, due_at: float | None
) -> None:
    box = outbox(retry_s=1.0)
    message = box.add("psst", "bob")
    assert box.due(0.0) == [message]
    results = []
    for step in steps:
        match step.event:
            case "ack":
                result = box.on_ack(message.msg_id, step.at)
            case "delivered":
                result = box.on_delivered(message.msg_id, step.at)
            case "stored":
                result = box.on_stored(message.msg_id, step.at)
            case _:
                result = box.on_error(message.msg_id, step.code, "reason", step.at)
        results.append(result is message)
    assert message.state is state
    assert results == changed
    assert (message.msg_id in box) is kept
    if state is Delivery.FAILED:
        assert (message.code, message.reason) == (steps[-1].code, "reason")
    if due_at is None:
        assert box.due(100.0) == []
    else:
        if due_at > steps[-1].at:
            assert box.due(due_at - 0.01) == []
        assert box.due(due_at) == [message]


def test_unknown_ids_are_ignored() -> None:
    box = outbox()
    assert box.on_ack("other-1", 0.0) is None
    assert box.on_delivered("other-1", 0.0) is None
    assert box.on_error("other-1", 404, "x", 0.0) is None


def test_unacknowledged_messages_are_resent_in_order_after_registering_again() -> None:
    box = outbox()
    first, second, third = (box.add(text, None) for text in ("one", "two", "three"))
    assert box.due(0.0) == [first, second, third]
    box.on_ack(second.msg_id, 0.1)
    # The link was lost and is back (same broker run): what was not acknowledged goes again.
    assert box.on_registered(5.0, epoch_changed=False) == []
    assert box.due(5.0) == [first, third]
    assert second.state is Delivery.SENT


def test_no_ack_within_the_timeout_while_connected_means_sending_again() -> None:
    box = outbox()
    box.set_heartbeat(1000)  # liveness bound 3 s: the ACK timeout
    message = box.add("hello", None)
    assert box.due(0.0) == [message]
    assert box.next_wakeup(0.0) == pytest.approx(3.0)
    assert box.due(2.9) == []
    assert box.due(3.0) == [message]


def test_a_later_message_never_overtakes_one_held_back() -> None:
    box = outbox(retry_s=1.0)
    first, second = box.add("one", None), box.add("two", None)
    assert box.due(0.0) == [first, second]
    box.on_error(first.msg_id, 429, "slow down", 0.1)
    box.on_error(second.msg_id, 401, "register first", 0.1)
    assert box.due(0.5) == []
    assert box.next_wakeup(0.5) == pytest.approx(0.6)
    assert box.due(1.1) == [first, second]


def test_messages_typed_before_a_command_can_be_told_apart() -> None:
    box = outbox()
    first, second = box.add("one", None), box.add("two", None)
    assert box.due(0.0, up_to=first.number) == [first]
    assert box.all_sent(first.number)
    assert not box.all_sent(second.number)
    assert box.due(0.0) == [second]


def test_a_broker_restart_resends_what_it_may_have_lost() -> None:
    box = outbox()
    box.set_heartbeat(1000)  # grace: 2 liveness bounds, 6 s
    old_say = box.add("acknowledged long ago", None)
    recent_say = box.add("acknowledged just before the crash", None)
    sent_tell = box.add("never confirmed", "bob")
    delivered_tell = box.add("confirmed", "bob")
    pending = box.add("never acknowledged", None)
    box.due(0.0)
    box.on_ack(old_say.msg_id, 1.0)
    box.on_ack(recent_say.msg_id, 9.0)
    box.on_ack(sent_tell.msg_id, 1.0)
    box.on_ack(delivered_tell.msg_id, 1.0)
    box.on_delivered(delivered_tell.msg_id, 1.5)
    # The link was last good at 10 s; the new broker run welcomes us at 30 s.
    again = box.on_registered(30.0, epoch_changed=True, lost_at=10.0)
    assert again == [recent_say, sent_tell]
    assert all(m.state is Delivery.PENDING for m in again)
    assert old_say.state is Delivery.SENT
    assert box.due(30.0) == [recent_say, sent_tell, pending]


def test_without_a_restart_nothing_acknowledged_is_resent() -> None:
    box = outbox()
    say, tell = box.add("hi", None), box.add("psst", "bob")
    box.due(0.0)
    box.on_ack(say.msg_id, 0.5)
    box.on_ack(tell.msg_id, 0.5)
    assert box.on_registered(1.0, epoch_changed=False) == []
    assert box.due(1.0) == []


def test_after_a_restart_a_missing_recipient_is_waited_for_a_while() -> None:
    box = outbox(retry_s=1.0)
    box.set_heartbeat(1000)  # grace 6 s
    tell = box.add("psst", "bob")
    box.on_registered(10.0, epoch_changed=True)
    box.due(10.0)
    # bob has not registered with the new broker run yet: retried, not failed.
    assert box.on_error(tell.msg_id, 404, "no such nick: bob", 10.1) is None
    assert box.due(11.1) == [tell]
    # Past the grace period he is really gone.
    assert box.on_error(tell.msg_id, 404, "no such nick: bob", 16.5) is tell
    assert tell.state is Delivery.FAILED


def test_acknowledged_says_are_forgotten_after_the_grace_period() -> None:
    box = outbox()
    box.set_heartbeat(1000)  # grace 6 s
    old, new = box.add("old", None), box.add("new", None)
    box.due(0.0)
    box.on_ack(old.msg_id, 1.0)
    box.on_ack(new.msg_id, 8.0)
    assert old.msg_id not in box
    assert new.msg_id in box


def test_timeouts_follow_the_announced_heartbeat() -> None:
    box = outbox()
    assert box.ack_timeout_s == liveness_bound_s(HEARTBEAT_INTERVAL_MS) == 6.0
    assert box.epoch_grace_s == 12.0
    box.set_heartbeat(200)
    assert box.ack_timeout_s == pytest.approx(0.6)
    assert box.epoch_grace_s == pytest.approx(1.2)


@pytest.mark.parametrize("jitter_s", [0.0, 0.05, 0.2])
def test_pacing_100_messages_never_trips_the_brokers_flood_control(jitter_s: float) -> None:
    """The broker's own bucket, fed with what the pacer lets through, arriving late by up to
    `jitter_s` (one in two messages) and never refusing one."""
    box = Outbox(TOKEN)
    broker = TokenBucket(FLOOD_BURST, FLOOD_PER_SECOND)
    messages = [box.add(f"line {n}", None) for n in range(100)]
    now = 0.0
    sent: list[tuple[float, OutgoingMessage]] = []
    while len(sent) < len(messages):
        for message in box.due(now):
            sent.append((now, message))
            box.on_ack(message.msg_id, now)
        if len(sent) == len(messages):
            break
        wait = box.next_wakeup(now)
        assert wait is not None
        now += max(wait, 0.001)
    arrivals = sorted(at + (jitter_s if n % 2 else 0.0) for n, (at, _) in enumerate(sent))
    assert all(broker.take(at) for at in arrivals)
    assert [m for _, m in sent] == messages
    # The burst goes at once, then the broker's rate.
    assert sum(1 for at, _ in sent if at == 0.0) == PACING_BURST
    assert sent[-1][0] == pytest.approx((100 - PACING_BURST) / FLOOD_PER_SECOND, abs=0.01)


@pytest.mark.parametrize("lag_s", [1.0, 1.5, PACING_LAG_S])
def test_a_broker_that_falls_behind_as_the_burst_starts_refuses_nothing(lag_s: float) -> None:
    """The broker reads nothing for `lag_s` (a busy machine) just as the pacer lets the
    burst go: what was paced meanwhile reaches it at once, and its bucket takes it all."""
    box = Outbox(TOKEN)
    broker = TokenBucket(FLOOD_BURST, FLOOD_PER_SECOND)
    messages = [box.add(f"line {n}", None) for n in range(100)]
    now = 0.0
    arrivals: list[float] = []
    while len(arrivals) < len(messages):
        for message in box.due(now):
            arrivals.append(max(now, lag_s))
            box.on_ack(message.msg_id, now)
        wait = box.next_wakeup(now)
        if wait is None:
            break
        now += max(wait, 0.001)
    assert len(arrivals) == len(messages)
    assert all(broker.take(at) for at in arrivals)


def test_a_429_drains_the_pacer() -> None:
    box = Outbox(TOKEN, retry_s=1.0)
    message = box.add("x", None)
    box.due(0.0)
    box.on_error(message.msg_id, 429, "slow down", 0.0)
    assert box.pacer.tokens == 0
    assert box.pacer.wait(0.0) == pytest.approx(1 / FLOOD_PER_SECOND)
    assert not math.isinf(message.not_before)
