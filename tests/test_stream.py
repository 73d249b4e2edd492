"""The broadcast stream end to end: libzmq fans broadcasts out, subscribers fill gaps.

A client that registers with HELLO stream=1 reads JOIN, LEAVE, MESSAGE and NOTICE from the
broker's XPUB socket. A subscriber that falls behind loses broadcasts on the stream (the
broker never waits for it), sees the gap in the numbers, or in the next TICK, and FETCHes
what it missed: in the end it has every broadcast exactly once.
"""

from collections.abc import Callable, Iterator

import pytest
import zmq

from broker.ratelimit import FloodPolicy
from broker.server import endpoint_port
from messages import MAX_TEXT_BYTES
from messages import commands as cmd
from messages import events as ev
from tests.conftest import RunningBroker, start_broker
from tests.peers import Peer

Context = zmq.Context[zmq.Socket[bytes]]
Connect = Callable[..., Peer]
#: Broadcasts in the burst that a stalled subscriber cannot all hold.
BURST = 3500
#: Large enough that the burst overflows every queue on the way (the broker's high-water
#: mark of 100 frames of 16 KiB, the kernel's socket buffers, the subscriber's own queue).
BURST_TEXT = "x" * (MAX_TEXT_BYTES // 2)
#: The stalled subscriber's own queue, in messages.
SMALL_HWM = 10
#: Messages of the burst between two of the stalled subscriber's PINGs: a peer that says
#: nothing for a liveness bound is removed, however busy the machine.
KEEPALIVE_EVERY = 100
#: Flood limits out of the way of a deliberate burst.
UNLIMITED = FloodPolicy(burst=10**9, per_second=10**9)


def test_broadcasts_reach_stream_readers_and_direct_readers_alike(connect: Connect) -> None:
    alice, bob, carol = connect(), connect(), connect()
    alice.register("alice", stream=True)
    bob.register("bob", stream=True)
    carol.register("carol")  # no stream: broadcasts come on her connection
    alice.expect_after_presence(ev.Joined, nick="bob")
    alice.say("hello everyone")
    for peer in (alice, bob, carol):
        assert peer.expect_after_presence(ev.Message).text == "hello everyone"
    # Only carol's connection carried the broadcast; the stream readers' carried the ACK.
    bob.send(cmd.Quit("bye"))
    assert alice.expect_after_presence(ev.Left).nick == "bob"
    assert carol.expect_after_presence(ev.Left).nick == "bob"


def test_a_subscriber_drops_its_own_join_as_already_applied(
    connect: Connect, broker: RunningBroker
) -> None:
    alice = connect()
    # Subscribed before registering: her own JOIN reaches her on the stream, as it may
    # whenever the broker publishes it after her subscription is in place.
    alice.open_stream(endpoint_port(broker.server.stream_endpoint))
    alice.register("alice", stream=True)
    connect("bob")
    alice.expect_after_presence(ev.Joined, nick="bob")


def test_a_new_subscriber_fetches_what_was_said_before_its_subscription(
    connect: Connect,
) -> None:
    alice = connect()
    alice.register("alice", stream=True)
    bob = connect()
    bob.send(cmd.Hello("bob", bob.token, True))
    welcome = bob.expect(ev.Welcome)
    alice.say("said before bob subscribed")
    alice.expect_after_presence(ev.Message)
    bob.open_stream(welcome.stream_port)
    bob.send(cmd.Fetch(welcome.seq + 1))
    assert bob.expect_after_presence(ev.Message).text == "said before bob subscribed"


def test_the_pong_after_a_fetch_ends_its_answer(connect: Connect) -> None:
    alice = connect("alice")
    bob = connect()
    # Broadcasts on the stream, which bob does not read: his connection has only replies.
    bob.send(cmd.Hello("bob", bob.token, True))
    bob.expect(ev.Welcome)
    said = [alice.say(f"line {n}") for n in range(3)]
    alice.sync()
    last = bob.last_seq()
    bob.send(cmd.Fetch(1))
    bob.send(cmd.Ping())
    answer = []
    while not isinstance(event := bob.next_event(), ev.Pong):
        answer.append(event)
    assert [event.seq for event in answer if isinstance(event, ev.Message)] == [3, 4, 5]
    assert [event.msg_id for event in answer if isinstance(event, ev.Message)] == said
    assert [type(event) for event in answer] == [ev.Joined, ev.Joined] + [ev.Message] * 3
    assert last == 5
    # Nothing past the last broadcast: the PONG comes alone.
    bob.send(cmd.Fetch(last + 1))
    bob.send(cmd.Ping())
    bob.expect(ev.Pong)


@pytest.fixture
def unlimited() -> Iterator[RunningBroker]:
    # The default heartbeat: TICKs every 2 s, and a peer that PINGs as a client does is
    # never taken for gone on a busy machine.
    running = start_broker(flood=UNLIMITED)
    yield running
    running.stop()


def test_a_stalled_subscriber_loses_nothing_and_sees_nothing_twice(
    unlimited: RunningBroker, context: Context
) -> None:
    alice, bob = Peer(context, unlimited.endpoint), Peer(context, unlimited.endpoint)
    alice.register("alice", stream=True)
    bob.register("bob", stream=True, stream_hwm=SMALL_HWM)
    sent = []
    for i in range(BURST):
        sent.append(alice.say(f"{i} {BURST_TEXT}"))
        if i % KEEPALIVE_EVERY == 0:
            bob.send(cmd.Ping())  # bob reads nothing, but he is still there
    alice.sync()  # the broker has published the whole burst; bob has read none of it
    last = alice.last_seq()

    # bob reads the stream, in order and never twice, until a TICK says he has all the
    # numbers up to the last broadcast, received or not.
    by_seq: dict[int, ev.BrokerEvent] = {}
    caught_up = False
    while not caught_up:
        bob.send(cmd.Ping())
        for event in bob.read_stream():
            if isinstance(event, ev.Tick) and event.seq >= last:
                caught_up = True
            if isinstance(event, ev.Message):
                assert event.seq not in by_seq, f"broadcast {event.seq} came twice"
                assert not by_seq or event.seq > max(by_seq), "the stream went backwards"
                by_seq[event.seq] = event
    assert len(by_seq) < BURST, "nothing was dropped: the subscriber was not stalled"

    # He FETCHes every gap over his connection; what he already has comes again and is
    # recognised by its number.
    missing = [seq for seq in range(1, last + 1) if seq not in by_seq]
    while missing:
        for event in bob.fetch(missing[0], last):
            assert by_seq.setdefault(event.seq, event) == event
        missing = [seq for seq in range(1, last + 1) if seq not in by_seq]
    said = [e.msg_id for _, e in sorted(by_seq.items()) if isinstance(e, ev.Message)]
    assert said == sent
