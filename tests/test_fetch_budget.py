"""FETCH answers are metered by their bytes (issue 10, finding 15): a few bytes of FETCH do
not buy megabytes, and the real client still catches up from a long gap unrefused."""

import asyncio
import contextlib
import time

import zmq

from broker.core import ChatCore, event_bytes
from broker.ratelimit import FloodPolicy
from client.session import Session
from client.state import Entry, EntryKind
from messages import (
    FETCH_REPLY_BYTES,
    MAX_TEXT_BYTES,
    REPLY_BURST_BYTES,
    REPLY_BYTES_PER_SECOND,
    ErrorCode,
    decode_event,
    encode,
)
from messages import commands as cmd
from messages import events as ev
from tests.client_helpers import WAIT_S, Relay, eventually, port_of
from tests.conftest import ADMIN_TOKEN, start_broker
from tests.peers import Peer

#: A flood policy that lets any number of commands through: only bytes are metered.
UNMETERED_COMMANDS = FloodPolicy(burst=100_000, per_second=100_000.0)
#: Chat text of nearly the largest size: few of them make a large history.
BIG_TEXT = "x" * (MAX_TEXT_BYTES - 96)
#: The broker's heartbeat where a client must notice a lost link quickly: 3 x 200 ms.
SHORT_HEARTBEAT_MS = 200
#: Longest wait for the broker to handle a big history, in seconds.
HISTORY_WAIT_S = 20.0
#: A history a little larger than the reply budget's burst: catching it up takes pacing.
HISTORY_BYTES = REPLY_BURST_BYTES + REPLY_BURST_BYTES // 4
#: A small byte budget for the core test: three answers of FETCH_REPLY_BYTES.
BURST = 3 * FETCH_REPLY_BYTES


def big_history(peer: Peer, total_bytes: int) -> int:
    """`peer` says big messages until they weigh `total_bytes`; returns how many once the
    broker has handled them all."""
    count = total_bytes // len(BIG_TEXT) + 1
    for n in range(count):
        peer.say(f"{n} {BIG_TEXT}")
    # The PONG follows the broadcasts; on a busy machine they may take a while.
    peer.send(cmd.Ping())
    while True:
        assert peer.socket.poll(int(HISTORY_WAIT_S * 1000)), "the broker did not answer"
        if isinstance(decode_event(peer.socket.recv_multipart()), ev.Pong):
            return count


def test_core_refuses_a_fetch_past_the_byte_budget_and_says_when_to_come_back() -> None:
    policy = FloodPolicy(burst=1000, per_second=1000.0, reply_burst_bytes=BURST)
    core = ChatCore(ADMIN_TOKEN, flood=policy, epoch="e0")
    core.receive(b"\0a", encode(cmd.Hello("alice", "s-alice-0123456789abcdef")), 0.0)
    for n in range(20):
        core.receive(b"\0a", encode(cmd.Say(f"m{n}", "y" * 4000)), 0.0)
    answered = 0
    for _ in range(20):
        out = core.receive(b"\0a", encode(cmd.Fetch(1)), 0.0)
        if isinstance(out[0][1], ev.Error):
            refusal = out[0][1]
            break
        answered += sum(event_bytes(event) for _, event in out)
    else:
        raise AssertionError("never refused")
    assert 0 < answered <= BURST
    assert refusal.code == ErrorCode.RATE_LIMITED
    assert "bytes" in refusal.reason and " s" in refusal.reason
    # Once the budget has refilled, the same FETCH is answered.
    later = core.receive(b"\0a", encode(cmd.Fetch(1)), 60.0)
    assert later[0][1] == ev.Joined(1, "alice")


def test_an_answer_holds_at_most_fetch_reply_bytes() -> None:
    core = ChatCore(ADMIN_TOKEN, flood=UNMETERED_COMMANDS, epoch="e0")
    core.receive(b"\0a", encode(cmd.Hello("alice", "s-alice-0123456789abcdef")), 0.0)
    for n in range(100):
        core.receive(b"\0a", encode(cmd.Say(f"m{n}", BIG_TEXT)), 0.0)
    out = core.receive(b"\0a", encode(cmd.Fetch(1)), 0.0)
    assert 0 < sum(event_bytes(event) for _, event in out) <= FETCH_REPLY_BYTES
    assert [event.seq for _, event in out] == list(range(1, len(out) + 1))  # type: ignore[union-attr]


def test_many_fetches_bring_no_more_than_the_byte_budget() -> None:
    broker = start_broker(flood=UNMETERED_COMMANDS)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        alice = Peer(context, broker.endpoint)
        alice.register("alice", stream=True)  # broadcasts do not queue up for her
        big_history(alice, HISTORY_BYTES)
        mallory = Peer(context, broker.endpoint)
        mallory.register("mallory")
        started = time.monotonic()
        for _ in range(40):
            mallory.send(cmd.Fetch(1))
        mallory.send(cmd.Ping())
        received = 0
        refusals: list[ev.Error] = []
        while True:
            assert mallory.socket.poll(int(WAIT_S * 1000)), "no PONG after the FETCHes"
            frames = mallory.socket.recv_multipart()
            event = decode_event(frames)
            if isinstance(event, ev.Pong):
                break
            if isinstance(event, ev.Error):
                refusals.append(event)
            elif isinstance(event, ev.Message):
                received += sum(map(len, frames))
        elapsed = time.monotonic() - started
        # Before the budget, 40 FETCHes of 1000 events brought over 100 MiB.
        assert received <= REPLY_BURST_BYTES + elapsed * REPLY_BYTES_PER_SECOND
        assert refusals and all(e.code == ErrorCode.RATE_LIMITED for e in refusals)
        # Refused for the byte budget, or (mallory reads only at the end) for bytes unread.
        assert all("bytes" in e.reason for e in refusals)
    finally:
        broker.stop()
        context.destroy(linger=0)


def test_the_client_catches_up_a_long_gap_without_being_refused() -> None:
    broker = start_broker(heartbeat_ms=SHORT_HEARTBEAT_MS, flood=UNMETERED_COMMANDS)
    relay = Relay(port_of(broker.endpoint))
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    entries: list[Entry] = []

    async def scenario() -> None:
        bob = Session(relay.endpoint, "bob", entries.extend)
        # Every broadcast comes over the connection, so a cut link makes a gap.
        bob.streaming = False
        await bob.register()
        task = asyncio.create_task(bob.run())
        try:
            alice = Peer(context, broker.endpoint)
            await asyncio.to_thread(alice.register, "alice", True)
            await eventually(lambda: bob.state.find_user("alice") is not None, "alice joined")
            relay.close()
            await eventually(lambda: not bob.registered, "bob's link lost")
            # More than the byte budget's burst is said while bob is away.
            count = await asyncio.to_thread(big_history, alice, HISTORY_BYTES)
            relay.open()

            def shown() -> int:
                return sum(e.kind is EntryKind.MESSAGE and e.sender == "alice" for e in entries)

            await eventually(lambda: shown() == count, "every line alice said", 30)
            refused = [e for e in entries if e.kind is EntryKind.ERROR]
            assert not refused, refused
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, WAIT_S)
            bob.close()

    try:
        asyncio.run(scenario())
    finally:
        relay.stop()
        broker.stop()
        context.destroy(linger=0)
