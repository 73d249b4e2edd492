"""The broadcast stream under load, with real client sessions against the real broker:
whatever the broker's stream drops for a subscriber that falls behind is fetched again, so
every message shows exactly once and in order; a lost tail is found through TICK.

To fall behind for sure, alice's session runs with small receive buffers on the stream and
a display that stalls (blocking her event loop, as a slow terminal would) until bob has
broadcast more than the broker queues for one subscriber: the broker then drops what does
not fit, and nothing but the numbers tells alice.
"""

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator

import pytest
import zmq

from broker.ratelimit import FloodPolicy
from client.connection import RECEIVE_BATCH_MESSAGES, StreamBuffers
from client.outbox import Delivery
from client.state import Entry, EntryKind
from messages import MAX_TEXT_BYTES
from messages import commands as cmd
from messages import events as ev
from tests.client_helpers import (
    WAIT_S,
    BotClient,
    KeepAlive,
    bot_client,
    eventually,
    streaming_peer,
)
from tests.conftest import RunningBroker, start_broker
from tests.peers import Peer

#: Flood limits high enough for one peer to broadcast thousands of messages at once.
NO_FLOOD_LIMIT = FloodPolicy(burst=100_000, per_second=100_000)
#: Alice's buffers on the stream: next to nothing, so that what she does not read piles up
#: at the broker (which queues a megabyte or two per subscriber, then drops).
SMALL_BUFFERS = StreamBuffers(messages=10, kernel_bytes=4096)
#: Bob's messages are this long: a few thousand of them are more than the broker's queue
#: for alice and the kernel's socket buffers (a few megabytes on loopback) hold together.
MESSAGE_BYTES = MAX_TEXT_BYTES - 96
#: Bob reads his ACKs after this many messages (the broker drops a client that does not
#: read what it is sent).
ACK_READ_INTERVAL = 100
#: Heartbeat of the broker in the TICK test: a TICK at least every 500 ms.
SHORT_HEARTBEAT_MS = 500
#: Heartbeat of the broker bob floods: a TICK every 1.5 s, and bob, whose thread may wait a
#: while for the CPU on a busy machine between two of his bursts, is not taken for gone
#: before 4.5 s.
FLOOD_HEARTBEAT_MS = 1500
#: Bound on alice catching up after the flood, in seconds: FETCHes, and a TICK or two.
CATCH_UP_S = 20.0


def text(number: int) -> str:
    """Bob's message number `number`: its number first, padded to MESSAGE_BYTES."""
    head = f"{number:05d} "
    return head + "x" * (MESSAGE_BYTES - len(head))


def flood(bob: KeepAlive, numbers: range) -> None:
    """Bob says messages `numbers`, then waits until the broker has broadcast them all."""
    bob.settle()
    for number in numbers:
        bob.peer.say(text(number))
        if number % ACK_READ_INTERVAL == 0:
            with contextlib.suppress(zmq.Again):
                while True:
                    bob.peer.socket.recv_multipart(zmq.NOBLOCK)
    bob.peer.sync()  # PING after the last SAY: its PONG means the broker has handled them all


def bobs_numbers(alice: BotClient) -> list[int]:
    """The numbers of bob's messages alice has shown, in the order shown."""
    return [
        int(entry.text[:5])
        for entry in alice.entries
        if entry.kind is EntryKind.MESSAGE and entry.sender == "bob"
    ]


class StallingDisplay:
    """A display that blocks the event loop on the first of bob's messages it is given,
    until `release` (or WAIT_S at most)."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.stalled = False

    def show(self, entries: list[Entry]) -> None:
        if self.stalled or not any(entry.sender == "bob" for entry in entries):
            return
        self.stalled = True
        self.released.wait(WAIT_S)

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def running() -> Iterator[Callable[..., RunningBroker]]:
    """`running(heartbeat_ms=...)`: a broker without flood limits, stopped at the end."""
    brokers: list[RunningBroker] = []

    def start(**options: int) -> RunningBroker:
        broker = start_broker(flood=NO_FLOOD_LIMIT, **options)
        brokers.append(broker)
        return broker

    yield start
    for broker in brokers:
        broker.stop()


async def ready(alice: BotClient, bob: KeepAlive) -> int:
    """Wait until alice's stream is in place and she knows who is here (bob staying
    meanwhile); return how many FETCHes she asked for so far."""
    session = alice.session
    await eventually(
        lambda: session.state.users == ["alice", "bob"], "alice knows bob", meanwhile=bob
    )
    await eventually(
        lambda: session.stream_ready and not session.stream.gap, "stream ready", meanwhile=bob
    )
    return session.stream.fetches


@pytest.mark.timeout(60)
def test_a_slow_subscriber_misses_nothing_and_sees_nothing_twice(
    running: Callable[..., RunningBroker], context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    broker = running(heartbeat_ms=FLOOD_HEARTBEAT_MS)
    bob = KeepAlive(streaming_peer(context, broker.endpoint, "bob"))
    display = StallingDisplay()
    stalled_through, total = 3000, 4000

    def bob_floods_while_alice_is_stuck() -> None:
        # Alice is stuck on the first of these until the broker has broadcast them all:
        # it drops those that do not fit in its queue for her.
        flood(bob, range(stalled_through))
        display.release()

    async def scenario() -> None:
        async with bot_client(broker.endpoint, "alice", SMALL_BUFFERS, display.show) as alice:
            stream = alice.session.stream
            fetches = await ready(alice, bob)
            await asyncio.to_thread(bob_floods_while_alice_is_stuck)
            # She reads what the broker kept for her, learns from a TICK how much more there
            # was and asks for it ...
            await eventually(lambda: stream.fetches > fetches, "a FETCH", CATCH_UP_S, meanwhile=bob)
            # ... while bob goes on: his next messages come on the stream, and in the
            # answers to her FETCHes too, before the gap is filled.
            await asyncio.to_thread(flood, bob, range(stalled_through, total))
            await eventually(
                lambda: len(bobs_numbers(alice)) >= total, "all of bob's messages", CATCH_UP_S
            )
            await alice.session.flush()  # anything doubled would have come by now
            assert bobs_numbers(alice) == list(range(total))
            assert not any("lost" in line for line in alice.lines())

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_a_tail_lost_on_the_stream_is_fetched_after_the_next_tick(
    running: Callable[..., RunningBroker], context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    broker = running(heartbeat_ms=SHORT_HEARTBEAT_MS)
    bob = KeepAlive(streaming_peer(context, broker.endpoint, "bob"))
    display = StallingDisplay()
    total = 2500

    def bob_floods() -> None:
        # Alice is stuck until every message has been broadcast: the broker drops the last
        # ones for her, and no broadcast comes after them to show the gap. Only the TICK
        # does.
        flood(bob, range(total))
        display.release()

    async def scenario() -> None:
        async with bot_client(broker.endpoint, "alice", SMALL_BUFFERS, display.show) as alice:
            fetches = await ready(alice, bob)
            await asyncio.to_thread(bob_floods)
            await eventually(
                lambda: len(bobs_numbers(alice)) >= total, "all of bob's messages", CATCH_UP_S
            )
            assert alice.session.stream.fetches > fetches
            await alice.session.flush()
            assert bobs_numbers(alice) == list(range(total))

    asyncio.run(scenario())


def test_a_private_message_is_confirmed_without_an_echo(
    running: Callable[..., RunningBroker], context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    broker = running()
    bob = Peer(context, broker.endpoint)
    bob.register("bob")

    async def scenario() -> None:
        async with bot_client(broker.endpoint, "alice") as alice:
            await eventually(lambda: "bob" in alice.session.state.users, "alice knows bob")
            message = alice.session.post("psst", "bob")
            assert message is not None
            private = await asyncio.to_thread(
                lambda: bob.expect_after_presence(ev.PrivateMessage, sender="alice")
            )
            await eventually(lambda: "-!- sent to bob: psst" in alice.lines(), "the ACK")
            bob.send(cmd.Received(private.msg_id, private.sender))
            await eventually(lambda: "-!- delivered to bob: psst" in alice.lines(), "DELIVERED")
            await alice.session.flush()
            # The line as typed, then its delivery states; no copy from the broker.
            psst = [entry for entry in alice.entries if entry.text == "psst"]
            assert [(entry.kind, entry.delivery) for entry in psst] == [
                (EntryKind.PRIVATE, Delivery.PENDING),
                (EntryKind.DELIVERY, Delivery.SENT),
                (EntryKind.DELIVERY, Delivery.DELIVERED),
            ]

    asyncio.run(scenario())


def test_a_backlog_is_shown_in_batches_with_the_ui_running_between_them(
    running: Callable[..., RunningBroker], context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    broker = running()
    bob = KeepAlive(streaming_peer(context, broker.endpoint, "bob"))
    display = StallingDisplay()
    total = 2000
    # For each `show` after the stall: how many of bob's messages, and how many turns the
    # other task had had by then.
    batches: list[tuple[int, int]] = []
    turns = 0

    def show(entries: list[Entry]) -> None:
        if display.stalled:
            batches.append((sum(entry.sender == "bob" for entry in entries), turns))
        display.show(entries)

    async def other_task() -> None:
        # Stands for the UI: it must get its turn between batches, however many wait.
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    def bob_floods() -> None:
        flood(bob, range(total))  # alice is stuck meanwhile: they pile up on her side
        display.release()

    async def scenario() -> None:
        async with bot_client(broker.endpoint, "alice", show=show) as alice:
            await ready(alice, bob)
            other = asyncio.create_task(other_task())
            await asyncio.to_thread(bob_floods)
            await eventually(lambda: len(bobs_numbers(alice)) >= total, "all of bob's messages")
            other.cancel()
        assert bobs_numbers(alice) == list(range(total))
        # In several batches (of about RECEIVE_BATCH_MESSAGES: a stream message is taken
        # whole), the other task having had its turn between any two.
        sizes = [size for size, _ in batches if size]
        assert len(sizes) >= total // RECEIVE_BATCH_MESSAGES // 2, sizes
        seen_turns = [seen for size, seen in batches if size]
        assert all(a < b for a, b in itertools.pairwise(seen_turns)), seen_turns

    asyncio.run(scenario())
