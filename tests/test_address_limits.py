"""Limits per network address and on operator logins, against a real broker from loopback:
many sessions from one address get no more than one address's share, and many sessions
guessing the operator token get no more guesses than the broker allows in all."""

import time
from collections.abc import Iterator

import pytest
import zmq

from broker.ratelimit import FloodPolicy
from messages import ErrorCode
from messages import commands as cmd
from messages import events as ev
from tests.conftest import RunningBroker, start_broker
from tests.peers import EXPECT_TIMEOUT_S, Peer

Context = zmq.Context[zmq.Socket[bytes]]
#: Sessions of the flood: all from 127.0.0.1.
FLOODERS = 200
#: What one address may send, all sessions together: a burst, then a rate per second.
ADDRESS_BURST = 50
ADDRESS_RATE = 20.0
#: A policy where only the address limits stop the flood: each session stays within its own
#: burst, and the join limit lets every flooder in.
FLOOD_POLICY = FloodPolicy(
    sessions_per_address=10 * FLOODERS,
    join_burst=10 * FLOODERS,
    address_burst=ADDRESS_BURST,
    address_per_second=ADDRESS_RATE,
)


def quiet_peer(context: Context, endpoint: str, nick: str) -> Peer:
    """A registered peer whose connection carries only what is addressed to it: it asks for
    the stream (broadcasts are not sent on its connection) and never opens it."""
    peer = Peer(context, endpoint)
    peer.send(cmd.Hello(nick, peer.token, stream=True))
    peer.welcome = peer.expect(ev.Welcome)
    peer.nick = nick
    return peer


@pytest.fixture
def flood_broker() -> Iterator[RunningBroker]:
    running = start_broker(flood=FLOOD_POLICY)
    yield running
    running.stop()


def answers(peers: list[Peer], expected: dict[Peer, set[str]]) -> tuple[int, list[str]]:
    """Read every peer's answers until each of its message ids was acknowledged or refused;
    the number acknowledged and the reasons of the refusals."""
    poller = zmq.Poller()
    by_socket = {peer.socket: peer for peer in peers}
    for peer in peers:
        poller.register(peer.socket, zmq.POLLIN)
    acknowledged, refusals = 0, []
    while any(expected.values()):
        ready = poller.poll(int(EXPECT_TIMEOUT_S * 1000))
        assert ready, f"{sum(map(len, expected.values()))} messages unanswered"
        for sock, _ in ready:
            peer = by_socket[sock]
            event = peer.next_event()
            if isinstance(event, ev.Ack):
                acknowledged += len(expected[peer] & set(event.msg_ids))
                expected[peer] -= set(event.msg_ids)
            elif isinstance(event, ev.Error) and event.ref in expected[peer]:
                assert event.code == ErrorCode.RATE_LIMITED, event
                refusals.append(event.reason)
                expected[peer].discard(event.ref)
    return acknowledged, refusals


def test_many_sessions_from_one_address_share_one_addresss_rate(
    flood_broker: RunningBroker, context: Context
) -> None:
    peers = [quiet_peer(context, flood_broker.endpoint, f"f{i}") for i in range(FLOODERS)]
    per_session = FLOOD_POLICY.burst  # each within its own limit
    started = time.monotonic()
    expected = {peer: {peer.say(f"spam {n}") for n in range(per_session)} for peer in peers}
    acknowledged, refusals = answers(peers, expected)
    elapsed = time.monotonic() - started
    # 4,000 SAYs, each session within its own burst: the address's bucket let through its
    # burst and its rate over the time it took, no more (before: all 4,000).
    assert 0 < acknowledged <= ADDRESS_BURST + ADDRESS_RATE * elapsed + 1
    assert len(refusals) == FLOODERS * per_session - acknowledged
    assert "20 per second from 127.0.0.1, all sessions together" in refusals[0]


def test_sessions_per_address_are_capped_with_a_clear_refusal(context: Context) -> None:
    cap = 5
    broker = start_broker(flood=FloodPolicy(sessions_per_address=cap))
    try:
        present = [Peer(context, broker.endpoint) for _ in range(cap)]
        for i, peer in enumerate(present):
            peer.register(f"u{i}")
        one_more = Peer(context, broker.endpoint)
        one_more.send(cmd.Hello("extra", one_more.token))
        error = one_more.expect(ev.Error, code=ErrorCode.RATE_LIMITED)
        assert error.reason == (
            f"too many sessions from 127.0.0.1: at most {cap} at once; one must leave "
            "before another joins"
        )
        # A session that leaves makes room; resuming one's own session is not a new one.
        present[0].send(cmd.Quit("bye"))
        # Connections are not ordered with each other: wait until the QUIT is handled.
        present[1].expect_after_presence(ev.Left, nick="u0")
        assert one_more.register("extra").nick == "extra"
        back = Peer(context, broker.endpoint)
        back.token = present[1].token
        assert back.register("u1").nick == "u1"
    finally:
        broker.stop()


def test_a_lan_of_a_few_dozen_behind_one_address_is_not_hurt_by_the_defaults(
    broker: RunningBroker, context: Context
) -> None:
    users = [quiet_peer(context, broker.endpoint, f"lan{i}") for i in range(40)]
    expected = {user: {user.say("hello"), user.say("how are you all?")} for user in users}
    acknowledged, refusals = answers(users, expected)
    assert (acknowledged, refusals) == (80, [])


def test_operator_token_guesses_are_capped_for_all_sessions_together(
    broker: RunningBroker, context: Context
) -> None:
    policy = FloodPolicy()
    guessers = [quiet_peer(context, broker.endpoint, f"g{i}") for i in range(20)]
    started = time.monotonic()
    forbidden = refused = 0
    for guesser in guessers:
        for attempt in range(policy.admin_attempts):
            guesser.send(cmd.Admin(f"guess-{guesser.nick}-{attempt}"))
            error = guesser.expect(ev.Error)
            forbidden += error.code == ErrorCode.FORBIDDEN
            refused += error.code == ErrorCode.RATE_LIMITED
    elapsed = time.monotonic() - started
    # 60 guesses from 20 fresh sessions: only the broker's global allowance was checked
    # (before: all 60).
    refill = elapsed / policy.admin_global_retry_seconds
    assert forbidden <= policy.admin_global_attempts + refill + 1
    assert forbidden + refused == 20 * policy.admin_attempts
    # While guessing is throttled, even the right token from a new session is refused.
    newcomer = quiet_peer(context, broker.endpoint, "newcomer")
    newcomer.send(cmd.Admin(broker.admin_token))
    error = newcomer.expect(ev.Error, code=ErrorCode.RATE_LIMITED)
    assert error.reason.startswith("too many failed operator logins: try again in")
