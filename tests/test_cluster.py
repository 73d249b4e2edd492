"""Several brokers, one chat: two broker processes joined by a real nats-server.

The conversation of the issue's "Done when": alice on one broker and bob on the other see
each other and talk; `Alice` is refused on either; the broker holding alice is killed and
she goes on through the other with nothing lost or doubled.
"""

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
import zmq

from client.identity import Identity
from client.outbox import RATE_LIMIT_RETRY_S
from messages import ErrorCode
from messages import commands as cmd
from messages import events as ev
from tests.natsd import CLUSTER_HEARTBEAT_MS, Cluster, running_cluster
from tests.peers import Peer

#: How long a wait for something the cluster does may take, in s (a busy machine).
WAIT_S = 30.0
#: How often a peer waiting for something PINGs, so that it stays registered, in s.
PING_EVERY_S = 0.3

E = TypeVar("E", bound=ev.BrokerEvent)

#: Each test starts a nats-server and two brokers: one at a time (one pytest worker runs
#: them all, see the Makefile's --dist loadgroup), so that they do not crowd the others.
pytestmark = [pytest.mark.timeout(90), pytest.mark.xdist_group("cluster")]


def wait_for(
    peer: Peer,
    kind: type[E],
    where: Callable[[E], bool] = lambda _: True,
    seen: list[ev.BrokerEvent] | None = None,
) -> E:
    """The first `kind` event `where` takes, PINGing meanwhile (one PING at a time,
    answered before this returns: no PONG is left for later); every event before it goes
    to `seen`."""
    deadline = time.monotonic() + WAIT_S
    pinged = False
    found: E | None = None
    later: list[ev.BrokerEvent] = []
    while found is None or pinged:
        assert time.monotonic() < deadline, f"{peer.nick}: not within {WAIT_S} s; saw {seen}"
        if not pinged:
            peer.send(cmd.Ping())
            pinged = True
        try:
            event = peer.next_event(timeout=PING_EVERY_S)
        except AssertionError:
            continue  # nothing yet
        if isinstance(event, ev.Pong) or (
            isinstance(event, ev.Error) and event.code == ErrorCode.NOT_REGISTERED
        ):
            pinged = False  # answered (a PING from a session that ended gets ERROR 401)
        elif found is not None:
            later.append(event)  # for the test's next wait
        elif isinstance(event, kind) and where(event):
            found = event
            if isinstance(found, ev.ServerShutdown):
                break  # nothing follows, not even the PONG
        elif seen is not None:
            seen.append(event)
    peer.unread(later)
    return found


def proved(peer: Peer, nick: str, key: Identity) -> Peer:
    """`peer` registered as owned `nick`, proved with `key` (again while its broker cannot
    check the nick with the cluster: ERROR 503)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        peer.send(cmd.Hello(nick, peer.token))
        peer.send(key.prove(peer.expect(ev.Challenge).nonce, nick, peer.token))
        answer = peer.next_event()
        if isinstance(answer, ev.Welcome):
            return peer
        assert isinstance(answer, ev.Error) and answer.code == ErrorCode.UNAVAILABLE, answer
        assert time.monotonic() < deadline, answer
        time.sleep(RATE_LIMIT_RETRY_S)


def message_id_is(msg_id: str) -> Callable[[ev.Message], bool]:
    """Whether a MESSAGE is `msg_id`."""
    return lambda message: message.msg_id == msg_id


def said_once_back(peer: Peer, text: str) -> str:
    """SAY `text` until the cluster keeps it (ERROR 503 while its broker is not back on
    NATS yet), as the client does; its msg_id."""
    deadline = time.monotonic() + WAIT_S
    while True:
        msg_id = peer.say(text)
        answer = peer.next_event()
        while not _about(answer, msg_id):
            answer = peer.next_event()
        if isinstance(answer, ev.Ack):
            return msg_id
        assert isinstance(answer, ev.Error) and answer.code == ErrorCode.UNAVAILABLE, answer
        assert time.monotonic() < deadline, "the cluster did not come back"
        # Paced as the client paces it (its retry delay), within the flood limit.
        time.sleep(RATE_LIMIT_RETRY_S)
        peer.sync()


def _about(event: ev.BrokerEvent, msg_id: str) -> bool:
    """Whether `event` is the ACK or the ERROR of `msg_id`."""
    if isinstance(event, ev.Ack):
        return msg_id in event.msg_ids
    return isinstance(event, ev.Error) and event.ref == msg_id


def users_are(peer: Peer, nicks: set[str]) -> None:
    """Wait until `peer`'s USERS lists exactly `nicks`."""
    deadline = time.monotonic() + WAIT_S
    while set(peer.users()) != nicks:
        assert time.monotonic() < deadline, f"{peer.nick}: users {peer.users()}, not {nicks}"
        peer.sync()


def alice_and_bob(cluster: Cluster, context: zmq.Context[zmq.Socket[bytes]]) -> tuple[Peer, Peer]:
    """alice registered on broker A, bob on broker B, each seeing both."""
    alice = Peer(context, cluster.a.endpoint)
    bob = Peer(context, cluster.b.endpoint)
    alice.register("alice")
    bob.register("bob")
    users_are(alice, {"alice", "bob"})
    users_are(bob, {"alice", "bob"})
    return alice, bob


def test_alice_and_bob_on_two_brokers_see_each_other_and_talk(
    cluster: Cluster, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    alice = Peer(context, cluster.a.endpoint)
    bob = Peer(context, cluster.b.endpoint)
    alice_welcome = alice.register("alice")
    bob_welcome = bob.register("bob")
    # One chat: one numbering of #general, whichever broker says it.
    assert alice_welcome.epoch == bob_welcome.epoch
    wait_for(alice, ev.Joined, lambda e: e.nick == "bob")
    users_are(alice, {"alice", "bob"})
    users_are(bob, {"alice", "bob"})

    msg_id = alice.tell("bob", "lunch at one?")
    private = wait_for(bob, ev.PrivateMessage)
    assert private == ev.PrivateMessage(msg_id, "alice", "bob", "lunch at one?", private.time_ms)
    wait_for(alice, ev.Ack, lambda e: msg_id in e.msg_ids)
    bob.send(cmd.Received(msg_id, "alice"))
    delivered = wait_for(alice, ev.Delivered)
    assert delivered == ev.Delivered(msg_id, "bob")

    said = bob.say("yes, at one")
    heard = wait_for(alice, ev.Message)
    assert (heard.sender, heard.text, heard.msg_id) == ("bob", "yes, at one", said)
    wait_for(bob, ev.Message, lambda e: e.msg_id == said)
    # Both brokers number it alike: bob fetches it from his broker under alice's number.
    [fetched] = [e for e in bob.fetch(heard.seq, heard.seq) if isinstance(e, ev.Message)]
    assert fetched == heard


@pytest.mark.parametrize("nick", ["Alice", "ALICE", "aIice"])
def test_a_nick_held_on_one_broker_is_refused_on_every_broker(
    cluster: Cluster, context: zmq.Context[zmq.Socket[bytes]], nick: str
) -> None:
    Peer(context, cluster.a.endpoint).register("alice")
    for broker in (cluster.a, cluster.b):
        other = Peer(context, broker.endpoint)
        other.send(cmd.Hello(nick, other.token))
        refusal = other.expect(ev.Error)
        assert refusal.code == ErrorCode.NICK_TAKEN, refusal


def race(peer: Peer, nick: str, start: threading.Barrier, answers: list[ev.BrokerEvent]) -> None:
    """HELLO `nick` once every racer is ready; the answer goes to `answers`."""
    start.wait()
    peer.send(cmd.Hello(nick, peer.token))
    answers.append(peer.on_connection(ev.Welcome | ev.Error))  # type: ignore[arg-type]


def test_two_brokers_racing_for_one_nick_give_it_to_one(
    cluster: Cluster, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    for round_ in range(5):
        nick = f"carol{round_}"
        peers = [Peer(context, broker.endpoint) for broker in (cluster.a, cluster.b) * 2]
        start = threading.Barrier(len(peers))
        answers: list[ev.BrokerEvent] = []

        threads = [
            threading.Thread(target=race, args=(peer, nick, start, answers)) for peer in peers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT_S)
        welcomes = [a for a in answers if isinstance(a, ev.Welcome)]
        refusals = [a for a in answers if isinstance(a, ev.Error)]
        assert len(welcomes) == 1, answers
        assert [r.code for r in refusals] == [ErrorCode.NICK_TAKEN] * 3, answers
        for peer in peers:
            peer.close()


def test_the_broker_holding_alice_dies_and_she_goes_on_through_the_other(
    cluster: Cluster, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    alice, bob = alice_and_bob(cluster, context)
    before = alice.say("before the crash")
    wait_for(alice, ev.Ack, lambda e: before in e.msg_ids)
    heard = wait_for(bob, ev.Message)
    last_seen = heard.seq

    cluster.a.kill()
    # While alice's client notices: bob writes to her and to everyone.
    to_alice = bob.tell("alice", "are you there?")
    wait_for(bob, ev.Ack, lambda e: to_alice in e.msg_ids)
    meanwhile = bob.say("the server of alice is down")
    # (Its ACK says the cluster keeps it; its MESSAGE, that B numbered it too.)
    wait_for(bob, ev.Message, message_id_is(meanwhile))

    # Her client resumes its session on the other broker: same nick, same token.
    again = Peer(context, cluster.b.endpoint)
    again.token = alice.token
    again.take_ids_from(alice)
    welcome = again.register("alice")
    # What she missed: the private message on resuming, the broadcast by FETCH.
    private = wait_for(again, ev.PrivateMessage)
    assert (private.msg_id, private.text) == (to_alice, "are you there?")
    missed = again.fetch(last_seen + 1, welcome.seq)
    assert [e.text for e in missed if isinstance(e, ev.Message)] == ["the server of alice is down"]
    # Her message the dead broker had ACKed, sent again through this one: kept once.
    again.send(cmd.Say(before, "before the crash"))
    wait_for(again, ev.Ack, lambda e: before in e.msg_ids)
    after = again.say("back")
    seen: list[ev.BrokerEvent] = []
    wait_for(bob, ev.Message, lambda e: e.msg_id == after, seen)
    # Inside the liveness window: bob saw alice neither leave nor join, and her message sent
    # again through the other broker not twice.
    assert not [e for e in seen if isinstance(e, ev.Joined | ev.Left)], seen
    assert not [e for e in seen if isinstance(e, ev.Message) and e.msg_id == before], seen
    users_are(bob, {"alice", "bob"})


def test_a_dead_brokers_users_leave_once_it_is_given_up_on(
    cluster: Cluster, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    _, bob = alice_and_bob(cluster, context)
    cluster.a.kill()
    left = wait_for(bob, ev.Left)
    assert left.nick == "alice"
    users_are(bob, {"bob"})
    # The nick is free again, on either broker.
    assert Peer(context, cluster.b.endpoint).register("alice").nick == "alice"


def test_without_nats_a_nick_is_refused_and_the_chat_comes_back_with_it(
    cluster: Cluster, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    alice, bob = alice_and_bob(cluster, context)
    cluster.nats.stop()
    # Told, and a nick that cannot be checked is refused, never risked.
    told = wait_for(alice, ev.Error)
    assert told.code == ErrorCode.UNAVAILABLE
    carol = Peer(context, cluster.a.endpoint)
    carol.send(cmd.Hello("carol", carol.token))
    refusal = carol.expect(ev.Error)
    assert refusal.code == ErrorCode.UNAVAILABLE, refusal
    # What cannot reach the cluster fails, saying so: a message (by its id), a change of a room.
    unsent = alice.say("anyone?")
    failed = wait_for(alice, ev.Error)
    assert (failed.code, failed.ref) == (ErrorCode.UNAVAILABLE, unsent), failed
    alice.send(cmd.Enter("#down"))
    failed = wait_for(alice, ev.Error)
    assert (failed.code, failed.ref) == (ErrorCode.UNAVAILABLE, ""), failed

    cluster.nats.start()
    deadline = time.monotonic() + WAIT_S
    while True:
        dave = Peer(context, cluster.a.endpoint)
        dave.send(cmd.Hello("dave", dave.token))
        answer: ev.BrokerEvent = dave.on_connection(ev.Welcome | ev.Error)  # type: ignore[arg-type]
        if isinstance(answer, ev.Welcome):
            break
        assert time.monotonic() < deadline, f"the cluster did not come back: {answer}"
        alice.sync()
        bob.sync()
    said = alice.say("still here")
    heard = wait_for(bob, ev.Message, lambda e: e.msg_id == said)
    assert heard.text == "still here"


def test_a_room_spans_the_brokers(
    cluster: Cluster, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    alice, bob = alice_and_bob(cluster, context)
    carol = Peer(context, cluster.b.endpoint)
    carol.register("carol")
    alice.send(cmd.Enter("#dev"))
    made = wait_for(alice, ev.RoomState)
    bob.send(cmd.Enter("#dev"))
    joined = wait_for(bob, ev.RoomState)
    # One room, numbered alike on both brokers.
    assert (joined.room, joined.epoch, joined.members) == ("#dev", made.epoch, 2)
    entered = wait_for(alice, ev.Entered, lambda e: e.nick == "bob")
    assert entered.seq == joined.seq

    alice.send(cmd.Post("#dev", "m1", "standup in five"))
    post = wait_for(bob, ev.Posted)
    assert (post.sender, post.text, post.seq) == ("alice", "standup in five", joined.seq + 1)
    wait_for(alice, ev.Ack, lambda e: "m1" in e.msg_ids)
    bob.send(cmd.Post("#dev", "m2", "coming"))
    heard = wait_for(alice, ev.Posted, lambda e: e.sender == "bob")
    assert heard.seq == post.seq + 1
    # carol, on bob's broker, hears none of it, and sees the room with its 2 members.
    carol.send(cmd.ListRooms(""))
    listed = wait_for(carol, ev.RoomState)
    assert (listed.room, listed.members) == ("#dev", 2)
    seen: list[ev.BrokerEvent] = []
    wait_for(carol, ev.RoomList, seen=seen)
    assert not [e for e in seen if isinstance(e, ev.Posted | ev.Entered)], seen

    bob.send(cmd.Part("#dev", "lunch"))
    parted = wait_for(alice, ev.Parted)
    assert (parted.nick, parted.reason, parted.seq) == ("bob", "lunch", heard.seq + 1)


def test_an_invite_only_room_takes_in_whom_its_maker_invites_from_another_broker(
    cluster: Cluster, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    alice, bob = alice_and_bob(cluster, context)
    alice.send(cmd.Enter("#ops"))
    wait_for(alice, ev.RoomState)
    alice.send(cmd.SetMode("#ops", "+i"))
    wait_for(alice, ev.ModeSet)
    bob.send(cmd.Enter("#ops"))
    refusal = wait_for(bob, ev.Error)
    assert refusal.code == ErrorCode.FORBIDDEN, refusal
    alice.send(cmd.Invite("#ops", "bob"))
    invited = wait_for(bob, ev.Invited)
    assert (invited.room, invited.by) == ("#ops", "alice")
    bob.send(cmd.Enter("#ops"))
    assert wait_for(bob, ev.RoomState).members == 2
    # Once alice's broker has him in the room too (she sees him enter), she removes him.
    wait_for(alice, ev.Entered, lambda e: e.nick == "bob")
    # Its maker removes him, from the other broker.
    alice.send(cmd.Evict("#ops", "bob", "testing"))
    removed = wait_for(bob, ev.Parted, lambda e: e.nick == "bob")
    assert (removed.nick, removed.reason) == ("bob", "removed by alice: testing")


def test_the_console_of_one_broker_acts_on_the_whole_cluster(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    with running_cluster(console=True) as cluster:
        alice, bob = alice_and_bob(cluster, context)
        cluster.a.type("/users")
        assert cluster.a.printed("2 users") == "2 users: alice bob"
        # bob is on B: A's console has B kick him.
        cluster.a.type("/kick bob 0s too loud")
        assert cluster.a.printed("bob is on broker") == "bob is on broker B: asked it to"
        kicked = wait_for(bob, ev.Kicked)
        assert (kicked.by, kicked.reason) == ("operator", "too loud")
        left = wait_for(alice, ev.Left)
        assert (left.nick, left.reason) == ("bob", "kicked by operator: too loud")
        carol = Peer(context, cluster.b.endpoint)
        carol.register("carol")
        # And stops every broker, telling every user first.
        cluster.a.type("/shutdown --all maintenance")
        for peer in (alice, carol):
            assert wait_for(peer, ev.ServerShutdown).reason == "maintenance"
        for broker in (cluster.a, cluster.b):
            assert broker.process is not None
            assert broker.process.wait(WAIT_S) == 0


@pytest.mark.parametrize("new_nick", ["Alice", "aIice"])
def test_a_nick_changed_to_one_like_it_stays_claimed(
    cluster: Cluster, context: zmq.Context[zmq.Socket[bytes]], new_nick: str
) -> None:
    alice, bob = alice_and_bob(cluster, context)
    alice.send(cmd.Nick(new_nick))
    wait_for(bob, ev.Renamed, lambda e: e.new_nick == new_nick)
    users_are(bob, {new_nick, "bob"})
    for taken in ("alice", new_nick):
        other = Peer(context, cluster.b.endpoint)
        other.send(cmd.Hello(taken, other.token))
        refusal = other.expect(ev.Error)
        assert refusal.code == ErrorCode.NICK_TAKEN, refusal


def test_a_nats_outage_longer_than_the_reaping_window_gives_nobody_up(
    cluster: Cluster, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    alice, bob = alice_and_bob(cluster, context)
    cluster.nats.stop()
    wait_for(alice, ev.Error)
    wait_for(bob, ev.Error)
    # Longer than twice the liveness bound (3 heartbeats): the time a broker's silence
    # takes to give its users up. The peers PING meanwhile: their brokers keep them.
    outage_ends = time.monotonic() + 2 * 3 * CLUSTER_HEARTBEAT_MS / 1000 + 1
    while time.monotonic() < outage_ends:
        alice.sync()
        bob.sync()
    cluster.nats.start()
    said = said_once_back(alice, "still here, both of us")
    seen: list[ev.BrokerEvent] = []
    wait_for(bob, ev.Message, lambda e: e.msg_id == said, seen)
    assert not [e for e in seen if isinstance(e, ev.Left)], seen
    users_are(bob, {"alice", "bob"})
    intruder = Peer(context, cluster.b.endpoint)
    intruder.send(cmd.Hello("alice", intruder.token))
    assert intruder.expect(ev.Error).code == ErrorCode.NICK_TAKEN


def test_a_registered_nick_is_owned_everywhere_and_what_it_is_sent_waits_for_it(
    cluster: Cluster, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    key = Identity.generate()
    alice, bob = alice_and_bob(cluster, context)
    alice.send(key.register("alice", alice.token))
    wait_for(alice, ev.Registered)
    alice.send(cmd.Quit("lunch"))
    wait_for(bob, ev.Left)
    # Owned on the other broker too: a HELLO for it is challenged, a look-alike refused.
    mallory = Peer(context, cluster.b.endpoint)
    mallory.send(cmd.Hello("alice", mallory.token))
    assert isinstance(mallory.next_event(), ev.Challenge)
    mallory.send(cmd.Hello("aIice", mallory.token))
    assert mallory.expect(ev.Error).code == ErrorCode.NICK_TAKEN
    # A private message waits for her in the cluster (STORED), and reaches her when she
    # comes back, on either broker: here the other one.
    msg_id = bob.tell("alice", "while you were out")
    wait_for(bob, ev.Stored, lambda e: e.msg_id == msg_id)
    back = proved(Peer(context, cluster.b.endpoint), "alice", key)
    private = wait_for(back, ev.PrivateMessage)
    assert (private.msg_id, private.text) == (msg_id, "while you were out")
    back.send(cmd.Received(msg_id, "bob"))
    assert wait_for(bob, ev.Delivered).msg_id == msg_id


def test_history_pages_and_search_of_general_work_on_every_broker(
    cluster: Cluster, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    alice, bob = alice_and_bob(cluster, context)
    said = [alice.say(text) for text in ("the deploy is at six", "bring snacks", "and cake")]
    for msg_id in said:
        wait_for(bob, ev.Message, message_id_is(msg_id))
    # bob, on the other broker, pages back through what alice said on hers.
    bob.send(cmd.History("h1", "", 0, 10))
    page = [wait_for(bob, ev.LogEntry, lambda e: e.ref == "h1") for _ in range(3)]
    assert [(e.sender, e.text) for e in page] == [
        ("alice", "the deploy is at six"),
        ("alice", "bring snacks"),
        ("alice", "and cake"),
    ]
    # And finds it (once indexed, within a turn or two of the broker's upkeep).
    deadline = time.monotonic() + WAIT_S
    while True:
        bob.send(cmd.Search(f"s{time.monotonic_ns()}", "snacks", 10))
        found = wait_for(bob, ev.Page)
        if found.count:
            break
        assert time.monotonic() < deadline, "never found"
        bob.sync()


def test_a_broker_started_again_catches_up_with_what_was_said_while_it_was_down(
    cluster: Cluster, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    alice = Peer(context, cluster.a.endpoint)
    alice.register("alice")
    before = alice.say("before the restart")
    wait_for(alice, ev.Message, message_id_is(before))
    cluster.b.stop()
    during = alice.say("while B was down")
    wait_for(alice, ev.Message, message_id_is(during))
    cluster.b.start()
    carol = Peer(context, cluster.b.endpoint)
    welcome = carol.register("carol")
    texts = [e.text for e in carol.fetch(1, welcome.seq) if isinstance(e, ev.Message)]
    assert texts == ["before the restart", "while B was down"]
    carol.send(cmd.History("h", "", 0, 10))
    page = [wait_for(carol, ev.LogEntry, lambda e: e.ref == "h") for _ in range(2)]
    assert [e.text for e in page] == texts


def test_a_later_owner_of_a_nick_does_not_read_what_was_sent_to_its_guest_holder(
    cluster: Cluster, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    alice, bob = alice_and_bob(cluster, context)
    secret = bob.tell("alice", "for the alice of now only")
    wait_for(alice, ev.PrivateMessage)  # and she never confirms it
    alice.send(cmd.Quit("gone"))
    undelivered = wait_for(bob, ev.Error, lambda e: e.ref == secret)
    assert undelivered.code == ErrorCode.UNDELIVERED
    # Someone else takes the nick, registers it, and comes back as its owner.
    key = Identity.generate()
    mallory = Peer(context, cluster.b.endpoint)
    mallory.register("alice")
    mallory.send(key.register("alice", mallory.token))
    wait_for(mallory, ev.Registered)
    mallory.send(cmd.Quit("brb"))
    again = proved(Peer(context, cluster.a.endpoint), "alice", key)
    mine = again.tell("bob", "hello")
    seen: list[ev.BrokerEvent] = []
    wait_for(again, ev.Ack, lambda e: mine in e.msg_ids, seen)
    again.sync()
    assert not [e for e in seen if isinstance(e, ev.PrivateMessage)], seen


def test_a_nick_taken_and_given_back_stays_its_holders(
    cluster: Cluster, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    alice, bob = alice_and_bob(cluster, context)
    alice.send(cmd.Nick("carol"))
    alice.send(cmd.Nick("alice"))
    wait_for(bob, ev.Renamed, lambda e: e.new_nick == "alice")
    alice.sync()  # still registered: a PONG, not ERROR 401
    alice.send(cmd.Quit("bye"))
    wait_for(bob, ev.Left)
    # And free once she left, on either broker: nobody holds a ghost of it.
    assert Peer(context, cluster.b.endpoint).register("alice").nick == "alice"
