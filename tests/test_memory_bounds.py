"""Nobody pins the broker's memory for free (issue 10, finding 8): a recipient that reads
but never confirms, and a connection that asks for answers and never reads them."""

import pytest
import zmq

from broker.core import ChatCore, event_bytes, private_bytes
from broker.ratelimit import FloodPolicy
from broker.session import UNCONFIRMED_BYTES
from messages import MAX_TEXT_BYTES, ErrorCode, decode_event, encode
from messages import commands as cmd
from messages import events as ev
from tests.conftest import ADMIN_TOKEN, start_broker
from tests.peers import Peer

#: Lets any number of commands and answers through: only memory bounds refuse.
UNLIMITED = FloodPolicy(burst=10**6, per_second=1e6, reply_burst_bytes=10**12)
#: Chat text of nearly the largest size.
BIG_TEXT = "x" * (MAX_TEXT_BYTES - 96)
#: FETCHes from 0 sent without reading: before the bound, each brought 64 KiB or more.
FETCHES = 400
#: Most bytes answered to a client that does not read: its kernel buffers (the broker's
#: send buffer, doubled by Linux, and the peer's receive buffer) and answers on their way.
UNREAD_ANSWERS_BOUND = 4 * 1024 * 1024


def rss_bytes() -> int:
    """This process's resident memory (the broker runs in one of its threads)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * 4096


def test_core_refuses_privates_past_the_recipients_bytes_and_frees_them_on_receipt() -> None:
    core = ChatCore(ADMIN_TOKEN, flood=UNLIMITED, epoch="e0", unconfirmed_bytes=20_000)
    core.receive(b"\0a", encode(cmd.Hello("alice", "s-alice-0123456789abcdef")), 0.0)
    core.receive(b"\0b", encode(cmd.Hello("bob", "s-bob-0123456789abcdef00")), 0.0)
    outcomes = [
        core.receive(b"\0a", encode(cmd.Tell(f"m{n}", "bob", BIG_TEXT)), 0.0) for n in range(8)
    ]
    accepted = [out for out in outcomes if any(isinstance(e, ev.Ack) for _, e in out)]
    refused = [e for out in outcomes for _, e in out if isinstance(e, ev.Error)]
    assert len(accepted) == 4  # four of 4.1 KB fit in 20,000 bytes
    assert [e.code for e in refused] == [ErrorCode.INSUFFICIENT_STORAGE] * 4
    assert refused[0].ref == "m4" and "bob has not confirmed 4" in refused[0].reason
    assert core.unconfirmed_bytes <= 20_000
    # Bob confirms one: there is room for one more.
    core.receive(b"\0b", encode(cmd.Received("m0", "alice")), 0.0)
    out = core.receive(b"\0a", encode(cmd.Tell("m9", "bob", BIG_TEXT)), 0.0)
    assert [type(e) for _, e in out] == [ev.PrivateMessage, ev.Ack]
    # Bob leaves: what was kept for him is freed.
    core.receive(b"\0b", encode(cmd.Quit("bye")), 0.0)
    assert core.unconfirmed_bytes == 0


def test_core_bounds_what_all_recipients_together_keep() -> None:
    core = ChatCore(ADMIN_TOKEN, flood=UNLIMITED, epoch="e0", total_unconfirmed_bytes=30_000)
    core.receive(b"\0a", encode(cmd.Hello("alice", "s-alice-0123456789abcdef")), 0.0)
    for n in range(10):
        core.receive(b"\0%d" % n, encode(cmd.Hello(f"r{n}", f"session-{n:016d}")), 0.0)
    codes = []
    for n in range(10):
        out = core.receive(b"\0a", encode(cmd.Tell(f"m{n}", f"r{n}", BIG_TEXT)), 0.0)
        codes += [e.code for _, e in out if isinstance(e, ev.Error)]
    assert core.unconfirmed_bytes <= 30_000
    assert codes == [ErrorCode.INSUFFICIENT_STORAGE] * 3  # 7 of 4.1 KB fit in 30,000


def test_a_recipient_that_never_confirms_pins_no_more_than_its_share() -> None:
    broker = start_broker(flood=UNLIMITED)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        mallory = Peer(context, broker.endpoint)
        mallory.register("mallory")  # reads everything, confirms nothing
        alice = Peer(context, broker.endpoint)
        alice.register("alice")
        count = 4 * UNCONFIRMED_BYTES // MAX_TEXT_BYTES
        for _ in range(count):
            alice.tell("mallory", BIG_TEXT)
        acked = 0
        refused: list[ev.Error] = []
        while acked + len(refused) < count:  # each is acknowledged or refused
            event = alice.next_event()
            if isinstance(event, ev.Ack):
                acked += len(event.msg_ids)
            elif isinstance(event, ev.Error):
                refused.append(event)
        # Before the bound, 1000 privates of 4 KiB were kept for her.
        assert broker.server.core.unconfirmed_bytes <= UNCONFIRMED_BYTES
        assert refused
        assert all(e.code == ErrorCode.INSUFFICIENT_STORAGE and e.ref for e in refused)
    finally:
        broker.stop()
        context.destroy(linger=0)


def test_a_connection_that_fetches_and_never_reads_gets_no_more_than_its_buffers() -> None:
    broker = start_broker(flood=FloodPolicy(burst=10**6, per_second=1e6))
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        alice = Peer(context, broker.endpoint)
        alice.register("alice", stream=True)
        for n in range(300):
            alice.say(f"{n} {BIG_TEXT}")
        alice.sync()
        # A client that does not read: its libzmq takes in one message, its kernel little.
        mallory = context.socket(zmq.DEALER)
        mallory.setsockopt(zmq.LINGER, 0)
        mallory.setsockopt(zmq.RCVHWM, 1)
        mallory.setsockopt(zmq.RCVBUF, 4096)
        mallory.connect(broker.endpoint)
        # Broadcasts do not come on its connection: only what it asks for.
        mallory.send_multipart(encode(cmd.Hello("mallory", "s-mallory-0123456789abcdef", True)))
        assert mallory.poll(10_000)
        assert isinstance(decode_event(mallory.recv_multipart()), ev.Welcome)
        before = rss_bytes()
        for _ in range(FETCHES):
            mallory.send_multipart(encode(cmd.Fetch(0)))
        mallory.send_multipart(encode(cmd.Ping()))
        # The broker handles one connection's messages in order: once alice sees this,
        # every FETCH before it was answered or refused.
        mallory.send_multipart(encode(cmd.Say("done", "done")))
        while not (isinstance(event := alice.next_event(), ev.Message) and event.text == "done"):
            pass  # her own messages, mallory's join
        grown = rss_bytes() - before
        # Before the bound, 400 FETCHes put 2000 messages (8 MiB) in the broker's queue.
        assert grown <= UNREAD_ANSWERS_BOUND, f"the broker grew {grown} bytes"
        answered = 0
        refusals: list[ev.Error] = []
        while True:
            assert mallory.poll(10_000), "no PONG after the FETCHes"
            frames = mallory.recv_multipart()
            event = decode_event(frames)
            if isinstance(event, ev.Pong):
                break
            if isinstance(event, ev.Error):
                refusals.append(event)
            else:
                answered += sum(map(len, frames))
        assert answered <= UNREAD_ANSWERS_BOUND
        assert refusals and "unread" in refusals[0].reason
        mallory.close(linger=0)
    finally:
        broker.stop()
        context.destroy(linger=0)


@pytest.mark.parametrize(
    "private",
    [
        ev.PrivateMessage("a-1", "alice", "bob", "hi", 1),
        ev.PrivateMessage("x" * 64, "ålice", "böb", "日本語 " * 100, 1_796_123_616_452),
        ev.PrivateMessage("id.9_z", "a" * 32, "b", "", 0),
    ],
)
def test_a_privates_size_is_counted_as_its_frames_without_encoding_it(
    private: ev.PrivateMessage,
) -> None:
    assert private_bytes(private) == event_bytes(private)
