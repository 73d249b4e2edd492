"""Faults over real sockets: a client that stops reading, a flooder, a storm of bad input."""

import random
from collections.abc import Callable

import zmq

from broker.ratelimit import FloodPolicy
from messages import MAX_TEXT_BYTES, SIGNATURE, ErrorCode, encode
from messages import commands as cmd
from messages import events as ev
from tests.conftest import start_broker
from tests.peers import Peer

Context = zmq.Context[zmq.Socket[bytes]]
Connect_T = Callable[..., Peer]
#: Far more than a stalled reader's buffers hold: libzmq HWMs plus the kernel's TCP buffers.
STALL_MESSAGE_LIMIT = 20_000
#: Malformed messages fired at the live broker.
MALFORMED_MESSAGES = 3_000
#: A heartbeat no test outlasts (ms): a peer that stopped reading is removed for that, not
#: for its silence, however long a busy machine takes to fill its queue.
QUIET_HEARTBEAT_MS = 600_000
#: Flood control with the default burst and next to no refill: what is refused does not
#: depend on how fast the broker gets to the burst.
NO_REFILL = FloodPolicy(burst=FloodPolicy().burst, per_second=0.001)


def test_a_client_that_stops_reading_is_dropped_and_slows_no_one(context: Context) -> None:
    broker = start_broker(
        heartbeat_ms=QUIET_HEARTBEAT_MS, flood=FloodPolicy(burst=10**9, per_second=10**9)
    )
    try:
        stalled = Peer(context, broker.endpoint)
        stalled.socket.setsockopt(zmq.RCVHWM, 10)
        stalled.register("stalled")  # ...and never reads again
        talker, listener = Peer(context, broker.endpoint), Peer(context, broker.endpoint)
        talker.register("talker")
        listener.register("listener")
        text = "x" * MAX_TEXT_BYTES
        left = None
        sent = 0
        while left is None and sent < STALL_MESSAGE_LIMIT:
            msg_id = talker.say(text)
            sent += 1
            # The listener keeps up, message by message: the stalled peer never blocks it.
            event = listener.next_event()
            while not isinstance(event, ev.Message):
                if isinstance(event, ev.Left):
                    left = event
                event = listener.next_event()
            assert (event.sender, event.msg_id) == ("talker", msg_id)
            while talker.socket.poll(0):
                talker.next_event()
        assert left is not None, f"stalled reader still connected after {sent} messages"
        assert left.nick == "stalled"
        assert left.reason.startswith("not reading")
        talker.send(cmd.ListUsers())
        talker.expect_after_presence(ev.UserList, users=("listener", "talker"))
    finally:
        broker.stop()


def test_flood_is_refused_live(context: Context) -> None:
    # At the default refill (5 per second) a broker slowed down by a busy machine would
    # earn the flooder a token or two between the first message of the burst and the last.
    broker = start_broker(flood=NO_REFILL)
    try:
        flooder, victim = Peer(context, broker.endpoint), Peer(context, broker.endpoint)
        flooder.register("flooder")
        victim.register("victim")
        burst = NO_REFILL.burst
        for i in range(burst + 5):
            flooder.say(f"spam {i}")
        errors = 0
        for _ in range(burst + 5):
            event = flooder.expect_after_presence(ev.Message | ev.Error)  # type: ignore[arg-type]
            errors += isinstance(event, ev.Error) and event.code == ErrorCode.RATE_LIMITED
        assert errors == 5
        received = [victim.expect_after_presence(ev.Message).text for _ in range(burst)]
        assert received == [f"spam {i}" for i in range(burst)]
    finally:
        broker.stop()


def test_thousands_of_malformed_messages_then_a_normal_conversation(
    connect: Connect_T,
) -> None:
    rng = random.Random(7)
    rogue = connect()
    templates = [
        lambda: [rng.randbytes(rng.randrange(0, 40))],
        lambda: [SIGNATURE, rng.randbytes(rng.randrange(0, 10))],
        lambda: [SIGNATURE, b"SAY", rng.randbytes(rng.randrange(1, 50))],
        lambda: [SIGNATURE, b"HELLO", rng.randbytes(rng.randrange(0, 200))],
        lambda: [SIGNATURE, b"TELL"] + [rng.randbytes(5)] * rng.randrange(0, 9),
        lambda: [b"ZCHAT" + rng.randbytes(2), b"PING"],
        lambda: encode(cmd.Say("m1", "x" * (MAX_TEXT_BYTES + rng.randrange(1, 100)))),
    ]
    for _ in range(MALFORMED_MESSAGES):
        rogue.send_raw(rng.choice(templates)())
    replies = 0
    while replies < MALFORMED_MESSAGES:
        event = rogue.next_event()
        replies += 1
        # Random bytes now and then form a valid HELLO, SAY or PING: one reply each too.
        assert isinstance(event, ev.Error | ev.Welcome | ev.Pong | ev.Message | ev.Kicked)
    alice, bob = connect("alice"), connect("bob")
    alice.tell("bob", "still standing?")
    bob.expect_after_presence(ev.PrivateMessage, sender="alice", text="still standing?")


def test_a_hostile_stream_peer_is_cut_off_and_the_stream_goes_on(
    connect: Connect_T, context: Context
) -> None:
    alice, bob = connect(), connect()
    alice.register("alice", stream=True)
    bob.register("bob", stream=True)
    assert alice.welcome is not None
    stream = alice.stream_endpoint(alice.welcome.stream_port)
    # An XSUB may send anything upstream: first a subscription, then a frame far over the
    # stream's inbound limit, which makes libzmq drop the connection.
    hostile = context.socket(zmq.XSUB)
    hostile.setsockopt(zmq.LINGER, 0)
    hostile.connect(stream)
    hostile.send(b"\x01")
    assert hostile.poll(5000)
    hostile.send(b"\x01" + b"x" * 100_000)
    for i in range(100):  # and a pile of non-subscription messages
        hostile.send(b"junk %d" % i)
    alice.say("still flowing")
    assert bob.expect_after_presence(ev.Message).text == "still flowing"
    hostile.close()
