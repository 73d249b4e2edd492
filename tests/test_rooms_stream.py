"""Rooms on the broadcast stream, over real sockets: a member reads its room under the room's
topic; a subscriber follows only what it subscribed to, and the broker applies no
subscription to everything."""

from collections.abc import Callable, Iterator

import pytest
import zmq

from messages import GENERAL_ROOM, STREAM_READY, stream_topic
from messages import commands as cmd
from messages import events as ev
from tests.conftest import start_broker
from tests.peers import EXPECT_TIMEOUT_S, Peer

Connect = Callable[..., Peer]
Context = zmq.Context[zmq.Socket[bytes]]
#: The broker's heartbeat where a subscriber is watched receiving nothing, in ms (a TICK is
#: published at each).
QUICK_HEARTBEAT_MS = 200
#: How long it is watched, in ms: several heartbeats.
SILENT_MS = 5 * QUICK_HEARTBEAT_MS


def follow(peer: Peer, room: str) -> None:
    """Subscribe `peer`'s SUB to `room` and wait until the broker applied it: the room's
    ROOMTICK (one each heartbeat) comes through."""
    assert peer.stream is not None
    peer.stream.setsockopt(zmq.SUBSCRIBE, stream_topic(room))
    while True:
        events = peer.read_stream()
        if any(isinstance(e, ev.RoomTick) and e.room == room for e in events):
            return


@pytest.fixture
def quick(context: Context) -> Iterator[Connect]:
    """Peers of a broker whose heartbeat (and so each room's ROOMTICK) is quick."""
    broker = start_broker(QUICK_HEARTBEAT_MS)
    peers: list[Peer] = []

    def make() -> Peer:
        peers.append(Peer(context, broker.endpoint))
        return peers[-1]

    yield make
    for peer in peers:
        peer.close()
    broker.stop()


def test_a_member_reads_its_room_on_the_stream_and_others_see_none_of_it(
    quick: Connect,
) -> None:
    alice, bob, carol = quick(), quick(), quick()
    for peer, nick in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
        peer.register(nick, stream=True)
    alice.send(cmd.Enter("#dev"))
    bob.send(cmd.Enter("#dev"))
    assert bob.on_connection(ev.RoomState).members == 2
    follow(bob, "#dev")

    alice.send(cmd.Post("#dev", alice.next_id(), "for the devs"))
    alice.say("for everyone")
    seen: list[ev.BrokerEvent] = []
    while not any(isinstance(e, ev.Message) for e in seen):
        seen += bob.read_stream()
    assert [e.text for e in seen if isinstance(e, ev.Posted)] == ["for the devs"]
    # carol follows #general only: the post never reaches her socket.
    heard: list[ev.BrokerEvent] = []
    while not any(isinstance(e, ev.Message) for e in heard):
        heard += carol.read_stream()
    assert not [e for e in heard if isinstance(e, ev.Posted | ev.RoomTick)]


def test_a_subscription_to_everything_is_not_applied(quick: Connect, context: Context) -> None:
    alice = quick()
    port = alice.register("alice", stream=True).stream_port
    alice.send(cmd.Enter("#dev"))
    alice.on_connection(ev.RoomState)
    greedy = context.socket(zmq.SUB)
    greedy.setsockopt(zmq.LINGER, 0)
    greedy.setsockopt(zmq.SUBSCRIBE, b"")
    greedy.connect(alice.stream_endpoint(port))
    try:
        assert greedy.poll(int(EXPECT_TIMEOUT_S * 1000))
        assert greedy.recv_multipart() == [STREAM_READY]
        alice.send(cmd.Post("#dev", alice.next_id(), "not for you"))
        alice.say("nor this")
        # Neither the post, nor #general's MESSAGE, nor any TICK reaches it.
        assert not greedy.poll(SILENT_MS)
        # Whereas what #general's topic names does.
        greedy.setsockopt(zmq.SUBSCRIBE, stream_topic(GENERAL_ROOM))
        assert greedy.poll(int(EXPECT_TIMEOUT_S * 1000))
    finally:
        greedy.close()
