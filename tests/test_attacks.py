"""Attacks on a real broker (tests/attacks.py, smaller than `make attack`), and the
connection table that holds them off, table by table."""

import pytest
import zmq

from broker.connections import Connection, ConnectionLimits, ConnectionTable, Verdict
from broker.growth import GrowthWatch
from messages import ErrorCode
from messages import commands as cmd
from messages import events as ev
from tests import attacks
from tests.conftest import RunningBroker
from tests.peers import Peer

Context = zmq.Context[zmq.Socket[bytes]]
#: Most the broker's resident memory may grow through one attack here, in MiB (libzmq
#: and the allocator keep some; a lost fight costs hundreds).
MEMORY_GROWTH_LIMIT_MIB = 40

ALICE = b"\x00\x00\x00\x00\x01"
BOB = b"\x00\x00\x00\x00\x02"


def _held(result: attacks.Result) -> None:
    assert result.held, result.what
    assert result.rss_after_mib - result.rss_before_mib < MEMORY_GROWTH_LIMIT_MIB, result.row()


# -- real brokers under attack ---------------------------------------------------------


def test_peers_taking_the_ids_libzmq_assigns_next_neither_crash_the_broker_nor_get_in(
    context: Context,
) -> None:
    _held(attacks.routing_id_collision(context, chosen=20))


def test_nobody_comes_back_with_the_routing_id_of_a_dropped_user(context: Context) -> None:
    _held(attacks.session_hijack(context))


def test_a_frame_bomb_is_cut_off_while_it_arrives(context: Context) -> None:
    _held(attacks.frame_bomb(context, frames=3_000_000))


def test_a_finished_message_of_too_many_frames_is_discarded_and_its_sender_cut_off(
    context: Context,
) -> None:
    # Small enough to arrive whole before the memory watch sees it.
    _held(attacks.frame_bomb(context, frames=20_000))


def test_foreign_subscriptions_on_the_stream_cut_the_subscriber_off(context: Context) -> None:
    _held(attacks.subscription_bomb(context, subscriptions=5_000, size=1000))


def test_connections_are_capped_per_address_and_unregistered_ones_closed(
    context: Context,
) -> None:
    _held(attacks.connection_flood(context, connections=12, per_address=6))


def test_a_thief_who_knows_the_dropped_users_routing_id_still_cannot_be_her(
    context: Context, broker: RunningBroker
) -> None:
    # Worst case: the id is known (read from the broker itself), not guessed.
    alice, bob = Peer(context, broker.endpoint), Peer(context, broker.endpoint)
    alice.register("alice")
    bob.register("bob")
    session = broker.server.core.find("alice")
    assert session is not None
    stolen = session.identity
    alice.close()  # her link drops; the session waits for her to resume
    answer: ev.BrokerEvent | None = None
    # libzmq ignores a duplicate id until it has reaped alice's connection: come back
    # with it on fresh connections until one gets an answer.
    for attempt in range(50):
        thief = Peer(context, broker.endpoint, routing_id=stolen)
        thief.send(cmd.Say(f"stolen-{attempt}", "I am alice"))
        if thief.socket.poll(200):
            answer = thief.next_event()
            break
        thief.close()
    assert isinstance(answer, ev.Error), answer
    assert "routing id" in answer.reason
    bob.tell("alice", "for alice only")
    bob.say("anyone there?")
    # bob hears his own line back, and nothing from the thief before it.
    assert bob.expect_after_presence(ev.Message).sender == "bob"
    # Nothing of alice's reached the thief.
    assert not thief.socket.poll(500)


# -- the table, without sockets -----------------------------------------------------------


def _table(**limits: float) -> ConnectionTable:
    return ConnectionTable(ConnectionLimits(**limits))  # type: ignore[arg-type]


def test_only_ids_libzmq_assigns_are_bound() -> None:
    table = _table()
    table.accepted(10, "10.0.0.1", "chat", now=0.0)
    table.accepted(11, "10.0.0.1", "chat", now=0.0)
    assert table.place(ALICE, 10).verdict is Verdict.ACCEPT
    assert table.bound(ALICE) is not None
    chosen = table.place(b"alice", 11)
    assert chosen.verdict is Verdict.REFUSE
    assert chosen.code == ErrorCode.MALFORMED
    assert table.bound(b"alice") is None


def test_an_id_whose_connection_closed_is_never_bound_again() -> None:
    table = _table()
    table.accepted(10, "10.0.0.1", "chat", now=0.0)
    table.place(ALICE, 10)
    table.closed(10)
    assert table.bound(ALICE) is None
    table.accepted(12, "10.0.0.2", "chat", now=1.0)
    assert table.place(ALICE, 12).verdict is Verdict.REFUSE


def test_a_late_message_of_a_closed_connection_is_accepted_but_not_after_reuse() -> None:
    table = _table()
    table.accepted(10, "10.0.0.1", "chat", now=0.0)
    table.place(ALICE, 10)
    table.closed(10)
    # Sent before the close, read after: same descriptor, not reused yet.
    assert table.place(ALICE, 10).verdict is Verdict.ACCEPT
    table.accepted(10, "10.0.0.9", "chat", now=1.0)  # the descriptor is reused
    assert table.place(ALICE, 10).verdict is Verdict.DROP


def test_connections_over_a_cap_are_refused_with_429() -> None:
    table = _table(total=3, per_address=2)
    for fd in (10, 11):
        assert not table.accepted(fd, "10.0.0.1", "chat", now=0.0).refusal
    over_address = table.accepted(12, "10.0.0.1", "chat", now=0.0)
    assert "10.0.0.1" in over_address.refusal
    # Full: the busiest address's oldest idle connection makes room for another address.
    other = table.accepted(13, "10.0.0.2", "chat", now=0.0)
    assert not other.refusal
    [evicted] = table.evicted()
    assert evicted.fd == 10
    decision = table.place(BOB, 12)
    assert (decision.verdict, decision.code) == (Verdict.REFUSE, ErrorCode.RATE_LIMITED)
    for fd in (10, 12, 13):
        table.closed(fd)
    assert not table.accepted(14, "10.0.0.1", "chat", now=0.0).refusal


def test_what_is_cut_off_and_when() -> None:
    table = _table(register_within_s=10.0, refused_within_s=5.0, refusal_grace_s=0.5)
    idle = table.accepted(10, "10.0.0.1", "chat", now=0.0)
    registered = table.accepted(11, "10.0.0.1", "chat", now=0.0)
    registered.registered = True
    subscriber = table.accepted(12, "10.0.0.1", "stream", now=0.0)
    refused = table.accepted(13, "10.0.0.1", "chat", now=0.0)
    table.refused(refused, "chosen id", now=1.0)
    assert table.overdue(1.2) == []
    assert table.overdue(1.5) == [refused]
    assert table.overdue(10.0) == [idle, refused]
    assert registered not in table.overdue(100.0)
    assert subscriber not in table.overdue(100.0)


def test_a_banned_address_is_refused_until_the_ban_ends() -> None:
    table = _table()
    table.ban("10.0.0.1", until=60.0, reason="banned: frame bomb")
    assert table.accepted(10, "10.0.0.1", "chat", now=1.0).refusal == "banned: frame bomb"
    assert not table.accepted(11, "10.0.0.2", "chat", now=1.0).refusal
    assert not table.accepted(12, "10.0.0.1", "chat", now=61.0).refusal


# -- the memory watch, without sockets ----------------------------------------------------

MIB = 1024 * 1024


def _watched(fd: int, bytes_read: int = 0) -> Connection:
    connection = Connection(fd, "10.0.0.1", since=0.0, kind="chat")
    connection.bytes_read = bytes_read
    return connection


def test_a_connection_whose_unread_bytes_grow_while_memory_jumps_is_the_culprit() -> None:
    watch = GrowthWatch()
    bomber, talker = _watched(10), _watched(11)
    ahead = {10: 0, 11: 0}

    def reading(rss_mib: int, now: float) -> list[Connection]:
        return watch.reading(rss_mib * MIB, now, lambda: [bomber, talker], lambda c: ahead[c.fd])

    assert reading(100, 0.00) == []
    ahead.update({10: 2 * MIB, 11: 2 * MIB})
    # Memory jumped: sampling starts, nothing to compare with yet.
    assert reading(120, 0.02) == []
    ahead.update({10: 3 * MIB, 11: 3 * MIB})
    talker.bytes_read += 1 * MIB  # the broker read the talker's messages meanwhile
    assert reading(130, 0.04) == [bomber]


def test_no_culprit_for_slow_growth_or_across_a_busy_loop() -> None:
    watch = GrowthWatch()
    bomber = _watched(10)
    ahead = {10: 2 * MIB}

    def reading(rss_mib: float, now: float) -> list[Connection]:
        rss = int(rss_mib * MIB)
        return watch.reading(rss, now, lambda: [bomber], lambda c: ahead[c.fd])

    # A broker that grows half a MiB a reading (25 MiB/s: its history filling fast) is not
    # searched: 8 MiB within 10 readings is what starts a search.
    for step in range(30):
        ahead[10] += MIB
        assert reading(100 + step / 2, step * 0.02) == []
    assert reading(140, 0.62) == []  # a jump: sampling starts
    ahead[10] += MIB
    # A second later: the loop was busy; the samples say nothing about each other.
    assert reading(141, 1.62) == []
    ahead[10] += MIB
    assert reading(142, 1.64) == [bomber]


def test_a_full_broker_makes_room_with_the_oldest_idle_connection_of_the_busiest_address() -> None:
    table = _table(total=3)
    flood = [table.accepted(fd, "10.0.0.66", "chat", now=float(fd)) for fd in (10, 11)]
    user = table.accepted(12, "10.0.0.1", "chat", now=0.0)
    user.registered = True
    newcomer = table.accepted(13, "10.0.0.2", "chat", now=5.0)
    assert not newcomer.refusal
    assert table.evicted() == [flood[0]]
    table.cutting(flood[0])
    late = table.accepted(14, "10.0.0.2", "chat", now=6.0)
    assert table.evicted() == [flood[1]]
    table.cutting(flood[1])
    assert not late.refusal
    # Full again, of registered users only: nobody gives way, the new connection is
    # refused outright.
    newcomer.registered = late.registered = True
    last = table.accepted(15, "10.0.0.3", "chat", now=7.0)
    assert last.refused_outright and "full" in last.refusal
    assert table.evicted() == []


@pytest.mark.timeout(90)  # a broker process, a flood of 150 connections, a CPU sample
def test_a_broker_at_its_descriptor_limit_still_lets_a_new_user_in(context: Context) -> None:
    _held(attacks.descriptor_limit(context, descriptors=160, connections=150))
