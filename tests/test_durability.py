"""The broker remembers: a real broker process, killed with SIGKILL and started again on the
same state directory, keeps every acknowledged message, goes on numbering where it stopped,
and does not take a message resent across the restart for a new one. A full disk refuses
messages with a clear error and the broker goes on serving."""

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from broker import BrokerConfig, BrokerServer
from broker.ratelimit import FloodPolicy
from messages import ErrorCode
from messages import commands as cmd
from messages import events as ev
from tests.conftest import ADMIN_TOKEN, RANDOM_LOOPBACK, serve
from tests.peers import EXPECT_TIMEOUT_S, Peer
from tests.processes import BrokerProcess, free_port

#: A short heartbeat: peers of the killed broker are not waited for long.
HEARTBEAT_MS = 500
#: A database this many pages long is full after a few dozen long messages.
FULL_DB_PAGES = 48


@pytest.fixture
def broker() -> Iterator[BrokerProcess]:
    running = BrokerProcess(f"tcp://127.0.0.1:{free_port()}", HEARTBEAT_MS)
    running.start()
    yield running
    running.stop()


def restart(broker: BrokerProcess) -> None:
    broker.kill()
    broker.start()


def answer(peer: Peer, msg_id: str) -> ev.Ack | ev.Error:
    """The ACK or ERROR that answers `peer`'s message `msg_id` (what comes before is skipped)."""
    while True:
        event = peer.next_event()
        if isinstance(event, ev.Ack) and msg_id in event.msg_ids:
            return event
        if isinstance(event, ev.Error) and event.ref == msg_id:
            return event


def wait_while_pinging(peer: Peer, kind: type[ev.Error], timeout: float) -> ev.Error:
    """The next `kind` for `peer`, which keeps its session alive with PINGs meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        peer.send(cmd.Ping())
        with contextlib.suppress(AssertionError):  # nothing within the poll
            event = peer.next_event(timeout=HEARTBEAT_MS / 1000)
            if isinstance(event, kind):
                return event
    raise AssertionError(f"{peer.nick}: no {kind.__name__} within {timeout} s")


def test_a_conversation_survives_a_sigkill_with_its_numbers(
    broker: BrokerProcess, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    alice, bob = Peer(context, broker.endpoint), Peer(context, broker.endpoint)
    epoch = alice.register("alice").epoch
    bob.register("bob")
    said = alice.say("before the crash")
    alice.expect_after_presence(ev.Message, msg_id=said)
    message = bob.expect_after_presence(ev.Message, msg_id=said)
    alice.expect_after_presence(ev.Ack, msg_ids=(said,))

    restart(broker)

    carol = Peer(context, broker.endpoint)
    welcome = carol.register("carol")
    assert welcome.epoch == epoch, "a new epoch: clients would fetch from 1 again"
    assert welcome.seq > message.seq, "numbers started again: clients would drop the new ones"
    replay = carol.fetch(1, welcome.seq)
    assert message in replay, f"not kept through the restart: {replay}"
    assert [e.seq for e in replay] == list(range(1, welcome.seq + 1))


def test_a_message_resent_across_a_restart_is_not_said_twice(
    broker: BrokerProcess, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    alice = Peer(context, broker.endpoint)
    alice.register("alice")
    said = alice.say("only once")
    assert isinstance(answer(alice, said), ev.Ack)

    restart(broker)

    # Its ACK was lost with the broker, say: the client sends it again, same id.
    welcome = alice.register("alice")
    alice.send(cmd.Say(said, "only once"))
    assert isinstance(answer(alice, said), ev.Ack)
    replay = alice.fetch(1, alice.last_seq())
    copies = [e for e in replay if isinstance(e, ev.Message) and e.msg_id == said]
    assert len(copies) == 1, replay
    assert alice.last_seq() == welcome.seq, "the resend was numbered as a new broadcast"


def told_and_unconfirmed(
    context: zmq.Context[zmq.Socket[bytes]], endpoint: str, text: str
) -> tuple[Peer, Peer, str]:
    """alice and bob registered; alice told bob `text`, acknowledged; bob's (raw) client got
    it but did not confirm it. Returns alice, bob and the message's id."""
    alice, bob = Peer(context, endpoint), Peer(context, endpoint)
    alice.register("alice")
    bob.register("bob")
    told = alice.tell("bob", text)
    assert isinstance(answer(alice, told), ev.Ack)
    bob.expect_after_presence(ev.PrivateMessage, msg_id=told)
    return alice, bob, told


def test_a_private_kept_through_a_restart_reaches_its_recipient_once(
    broker: BrokerProcess, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    alice, bob, told = told_and_unconfirmed(context, broker.endpoint, "while you were away")

    restart(broker)

    # Both come back with the session tokens of their run.
    alice.register("alice")
    bob.register("bob")
    private = bob.expect_after_presence(ev.PrivateMessage, msg_id=told)
    assert private.text == "while you were away"
    bob.send(cmd.Received(told, "alice"))
    alice.expect_after_presence(ev.Delivered, msg_id=told, recipient="bob")
    # Confirmed: a WELCOME is no longer followed by it.
    bob.send(cmd.Hello("bob", bob.token, False))
    bob.send(cmd.Ping())
    bob.on_connection(ev.Welcome)
    assert isinstance(bob.next_event(), ev.Pong)


def test_a_private_whose_guest_recipient_never_comes_back_returns_to_its_sender(
    broker: BrokerProcess, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    alice, bob, told = told_and_unconfirmed(context, broker.endpoint, "are you there?")
    bob.close()

    restart(broker)

    alice.register("alice")
    # Within a session's lifetime (3 heartbeats) after the start, bob did not come back.
    error = wait_while_pinging(alice, ev.Error, EXPECT_TIMEOUT_S)
    assert error.ref == told
    assert error.code == ErrorCode.UNDELIVERED
    assert "did not come back" in error.reason


def test_a_full_disk_refuses_messages_clearly_and_the_broker_serves_on(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    config = BrokerConfig(
        bind=RANDOM_LOOPBACK,
        admin_token=ADMIN_TOKEN,
        db=str(tmp_path / "chat.db"),
        db_max_pages=FULL_DB_PAGES,
        # Messages as fast as the test sends them.
        flood=FloodPolicy(
            burst=1000, per_second=1000.0, address_burst=1000.0, address_per_second=1000.0
        ),
    )
    running = serve(BrokerServer(config))
    try:
        alice, bob = Peer(context, running.endpoint), Peer(context, running.endpoint)
        alice.register("alice")
        bob.register("bob")
        refusal: ev.Ack | ev.Error | None = None
        acked = 0
        for n in range(200):
            refusal = answer(alice, alice.say(f"{n} " + "x" * 2000))
            if isinstance(refusal, ev.Error):
                break
            acked += 1
        assert isinstance(refusal, ev.Error), "the disk never filled"
        assert refusal.code == ErrorCode.INSUFFICIENT_STORAGE
        # (Its batch could not be committed: it went out, but is not stored.)
        assert "disk is full" in refusal.reason
        assert acked > 0
        # From now on a message is refused before it goes anywhere.
        after = answer(alice, alice.say("after the disk filled"))
        assert isinstance(after, ev.Error)
        assert after.code == ErrorCode.INSUFFICIENT_STORAGE
        assert after.reason.startswith("not sent: the server's disk is full")
        # A bystander is still served, at once.
        start = time.monotonic()
        bob.sync()
        assert time.monotonic() - start < EXPECT_TIMEOUT_S
        # And what was acknowledged before is still there.
        replay = bob.fetch(1, bob.last_seq())
        texts = [e.text for e in replay if isinstance(e, ev.Message)]
        assert [text.split()[0] for text in texts[:acked]] == [str(n) for n in range(acked)]
        assert "after the disk filled" not in texts
    finally:
        running.stop()
