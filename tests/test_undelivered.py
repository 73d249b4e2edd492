"""A private message the broker drops before its recipient confirmed it comes back to its
sender as ERROR 504 (and the client marks its line ✗ with the reason): nothing stays ✓
forever. Real broker, real DEALER peers, the real full-screen client."""

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import zmq

from broker.session import UNCONFIRMED_LIMIT
from client.outbox import Delivery
from messages import ErrorCode
from messages import commands as cmd
from messages import events as ev
from tests.client_helpers import eventually, running_client
from tests.conftest import ADMIN_TOKEN, RunningBroker, start_broker
from tests.peers import Peer
from tests.test_client_broadcast_stream import NO_FLOOD_LIMIT

Connect = Callable[..., Peer]
#: A heartbeat short enough that a silent client expires within a test (0.3 s).
SHORT_HEARTBEAT_MS = 100
#: PINGs a peer sends while waiting for something on a short-heartbeat broker.
PATIENCE_PINGS = 200


def keep_alive_until(peer: Peer, wanted: Callable[[ev.BrokerEvent], bool]) -> ev.BrokerEvent:
    """PING (to stay registered on a short-heartbeat broker) until an event `wanted` comes;
    return it."""
    for _ in range(PATIENCE_PINGS):
        peer.send(cmd.Ping())
        event = peer.next_event()
        while not isinstance(event, ev.Pong):
            if wanted(event):
                return event
            event = peer.next_event()
        peer.socket.poll(20)
    raise AssertionError(f"{peer.nick}: never got what it waited for")


@contextlib.contextmanager
def short_heartbeat_pair(
    context: zmq.Context[zmq.Socket[bytes]],
) -> Iterator[tuple[str, Peer, Peer]]:
    """A broker that expires silence after 0.3 s (its endpoint), alice and bob registered."""
    fast = start_broker(heartbeat_ms=SHORT_HEARTBEAT_MS)
    try:
        alice, bob = Peer(context, fast.endpoint), Peer(context, fast.endpoint)
        alice.register("alice")
        bob.register("bob")
        yield fast.endpoint, alice, bob
    finally:
        fast.stop()


def undelivered(msg_id: str) -> Callable[[ev.BrokerEvent], bool]:
    def match(event: ev.BrokerEvent) -> bool:
        return isinstance(event, ev.Error) and event.ref == msg_id

    return match


def test_a_private_to_a_frozen_recipient_comes_back_when_it_expires(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    with short_heartbeat_pair(context) as (_, alice, bob):
        alice.expect(ev.Joined, nick="bob")
        msg_id = alice.tell("bob", "lunch?")
        # bob's client is frozen (like a closed lid): the PRIVATE reaches its socket, and
        # it neither confirms nor PINGs.
        bob.expect(ev.PrivateMessage, msg_id=msg_id)
        error = keep_alive_until(alice, undelivered(msg_id))
        assert isinstance(error, ev.Error)
        assert error.code == ErrorCode.UNDELIVERED
        assert error.reason == "bob left before receiving it (no heartbeat for 0.3 s)"


def test_a_private_left_unconfirmed_by_quit_or_kick_comes_back(
    connect: Connect, broker: RunningBroker
) -> None:
    alice, bob, carol = connect("alice"), connect("bob"), connect("carol")
    first = alice.tell("bob", "one")
    second = carol.tell("bob", "two")
    # Two connections: no order between them.
    received = {bob.expect_after_presence(ev.PrivateMessage).msg_id for _ in range(2)}
    assert received == {first, second}
    bob.send(cmd.Quit("off"))
    alice.expect_after_presence(ev.Error, ref=first, code=ErrorCode.UNDELIVERED)
    carol.expect_after_presence(ev.Error, ref=second, reason="bob left before receiving it (off)")

    dave = connect("dave")
    third = alice.tell("dave", "three")
    dave.expect_after_presence(ev.PrivateMessage, msg_id=third)
    alice.send(cmd.Admin(ADMIN_TOKEN))
    alice.expect_after_presence(ev.Operator)
    alice.send(cmd.Kick("dave", 0, "spam"))
    error = alice.expect_after_presence(ev.Error, ref=third)
    assert error.reason == "dave left before receiving it (kicked by alice: spam)"


def test_a_confirmed_private_is_not_reported_when_its_recipient_leaves(
    connect: Connect,
) -> None:
    alice, bob = connect("alice"), connect("bob")
    msg_id = alice.tell("bob", "hi")
    private = bob.expect_after_presence(ev.PrivateMessage, msg_id=msg_id)
    bob.send(cmd.Received(private.msg_id, private.sender))
    alice.expect_after_presence(ev.Delivered, msg_id=msg_id)
    bob.send(cmd.Quit("bye"))
    alice.expect_after_presence(ev.Left, nick="bob")
    alice.sync()  # nothing but the PONG on the way: no ERROR about the confirmed message


def test_a_recipient_that_holds_its_share_refuses_new_privates_and_drops_none(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    unlimited = start_broker(flood=NO_FLOOD_LIMIT)
    try:
        alice, bob, carol = (Peer(context, unlimited.endpoint) for _ in range(3))
        for peer, nick in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
            peer.register(nick)
        carol.tell("bob", "first")
        carol.sync()
        # bob reads but confirms nothing: his share fills up (by count or by bytes).
        refused = None
        for number in range(UNCONFIRMED_LIMIT):
            msg_id = alice.tell("bob", f"more {number}")
            while True:  # its ACK, or the refusal
                event = alice.next_event()
                if isinstance(event, ev.Ack) and msg_id in event.msg_ids:
                    break
                if isinstance(event, ev.Error) and event.ref == msg_id:
                    refused = event
                    break
            if refused is not None:
                break
        assert refused is not None and refused.code == ErrorCode.INSUFFICIENT_STORAGE
        # What bob holds stays: carol's message is not dropped to make room.
        carol.sync()
        assert not carol.socket.poll(200)
    finally:
        unlimited.stop()


def test_the_client_marks_a_private_to_a_frozen_recipient_failed(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    fast = start_broker(heartbeat_ms=SHORT_HEARTBEAT_MS)

    async def scenario() -> None:
        bob = Peer(context, fast.endpoint)
        bob.register("bob")
        async with running_client(fast.endpoint, "alice") as alice:
            alice.type("/msg bob lunch?\r")
            outbox = alice.client.session.outbox
            # bob reads nothing and sends nothing: frozen. alice's client keeps its own
            # heartbeat going and is told once bob expires.
            await eventually(
                lambda: "lunch? ✗ bob left before receiving it" in alice.pane_text(),
                "the ✗ mark with the reason",
                # Under load alice's own 100 ms heartbeat may lapse too: she comes back and
                # gets the outcome after her WELCOME.
                timeout=20.0,
            )
            assert all(m.state is not Delivery.SENT for m in outbox)
        bob.close()

    try:
        asyncio.run(scenario())
    finally:
        fast.stop()


def same_client_again(old: Peer, context: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> Peer:
    """`old`'s client on a fresh connection (its link dropped), with the same token."""
    old.close()
    again = Peer(context, endpoint)
    again.token = old.token
    return again


def test_what_became_of_a_private_reaches_its_sender_back_from_a_dead_link(
    connect: Connect, context: zmq.Context[zmq.Socket[bytes]], broker: RunningBroker
) -> None:
    alice, bob = connect("alice"), connect("bob")
    first, second = alice.tell("bob", "one"), alice.tell("bob", "two")
    alice.expect_after_presence(ev.Ack)
    # alice's link drops (her session stays until it expires) ...
    alice.close()
    # ... while bob confirms one and leaves without the other: both outcomes go to a
    # connection that is gone.
    private = bob.expect_after_presence(ev.PrivateMessage, msg_id=first)
    bob.send(cmd.Received(private.msg_id, private.sender))
    bob.expect_after_presence(ev.PrivateMessage, msg_id=second)
    bob.send(cmd.Quit("off"))
    bob.close()
    # Her client comes back on a new connection: after WELCOME, what became of both.
    alice = same_client_again(alice, context, broker.endpoint)
    alice.register("alice")
    # (bob's LEAVE may come between, if his QUIT is handled after her HELLO.)
    alice.expect_after_presence(ev.Delivered, msg_id=first, recipient="bob")
    alice.expect_after_presence(ev.Error, ref=second, code=ErrorCode.UNDELIVERED)
    alice.close()


def test_what_became_of_a_private_waits_for_a_sender_whose_session_expired(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    with short_heartbeat_pair(context) as (endpoint, alice, bob):
        msg_id = alice.tell("bob", "while you sleep")
        private = bob.expect_after_presence(ev.PrivateMessage, msg_id=msg_id)
        # alice's laptop sleeps: her session expires ...
        keep_alive_until(bob, lambda event: isinstance(event, ev.Left))
        # ... and bob confirms while she is away.
        bob.send(cmd.Received(private.msg_id, private.sender))
        bob.sync()
        alice = same_client_again(alice, context, endpoint)
        alice.register("alice")
        alice.expect(ev.Delivered, msg_id=msg_id, recipient="bob")
        # Someone else with the nick later (another token) learns nothing of it.
        alice.send(cmd.Quit("bye"))
        keep_alive_until(bob, lambda event: isinstance(event, ev.Left))
        mallory = Peer(context, endpoint)
        mallory.register("alice")
        mallory.send(cmd.Ping())
        mallory.expect(ev.Pong)
        mallory.close()
        alice.close()
