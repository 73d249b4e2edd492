"""Offline delivery on a real broker with real DEALER sockets: a private message to an owned
nick that is away is kept (STORED) and delivered, with its original time, when its owner
comes back (then DELIVERED); one to a nick that is not owned still gets 404; and one to an
owner whose session ends before confirming it is kept too, where a guest's comes back as
ERROR 504."""

import time
from collections.abc import Callable

from broker.core import OFFLINE_LIMIT, ChatCore
from client.identity import Identity
from messages import ErrorCode, from_b64url
from messages import commands as cmd
from messages import events as ev
from tests.conftest import ADMIN_TOKEN
from tests.peers import Peer
from tests.test_owned_nicks import owned, prove

Connect = Callable[..., Peer]


def ack_and_stored(peer: Peer, msg_id: str) -> ev.Stored:
    """The ACK and the STORED that answer `peer`'s TELL `msg_id`, in either order."""
    stored: ev.Stored | None = None
    acked = False
    while stored is None or not acked:
        event = peer.next_event()
        if isinstance(event, ev.Stored):
            assert event.msg_id == msg_id, event
            stored = event
        elif isinstance(event, ev.Ack) and msg_id in event.msg_ids:
            acked = True
    return stored


def test_a_private_to_an_owner_away_waits_for_her_and_comes_once(connect: Connect) -> None:
    alice_key = Identity.generate()
    bob = connect("bob")
    alice = owned(connect, "alice", alice_key)
    alice.send(cmd.Quit("lunch"))
    bob.expect_after_presence(ev.Left, nick="alice")

    told = bob.tell("ALICE", "the keys are under the mat")
    stored = ack_and_stored(bob, told)
    assert stored.recipient == "alice"

    before_she_came_back_ms = time.time_ns() // 1_000_000
    back = connect()
    prove(back, "alice", alice_key)
    private = back.expect(ev.PrivateMessage, msg_id=told, sender="bob", recipient="alice")
    assert private.text == "the keys are under the mat"
    # With the time it was sent, not the time it was delivered.
    assert private.time_ms <= before_she_came_back_ms
    back.send(cmd.Received(told, "bob"))
    bob.expect_after_presence(ev.Delivered, msg_id=told, recipient="alice")

    # Once: her next WELCOME is not followed by it.
    back.send(cmd.Hello("alice", back.token))
    back.expect(ev.Welcome)
    back.send(cmd.Ping())
    back.expect(ev.Pong)


def test_a_private_to_an_absent_nick_nobody_owns_is_refused(connect: Connect) -> None:
    bob = connect("bob")
    told = bob.tell("carol", "hello?")
    bob.expect_after_presence(ev.Error, ref=told, code=ErrorCode.NO_SUCH_NICK)


def test_an_owner_whose_session_ends_unconfirmed_keeps_her_mail(connect: Connect) -> None:
    alice_key = Identity.generate()
    bob = connect("bob")
    alice = owned(connect, "alice", alice_key)
    told = bob.tell("alice", "read this later")
    alice.expect_after_presence(ev.PrivateMessage, msg_id=told)
    # Her client never confirmed it, and she is gone.
    alice.send(cmd.Quit("closed the lid"))
    bob.expect_after_presence(ev.Stored, msg_id=told, recipient="alice")

    back = connect()
    prove(back, "alice", alice_key)
    back.expect(ev.PrivateMessage, msg_id=told, text="read this later")


def test_a_guest_whose_session_ends_unconfirmed_returns_the_message(connect: Connect) -> None:
    bob, carol = connect("bob"), connect("carol")
    told = bob.tell("carol", "are you there?")
    carol.expect_after_presence(ev.PrivateMessage, msg_id=told)
    carol.send(cmd.Quit("gone"))
    error = bob.expect_after_presence(ev.Error, ref=told, code=ErrorCode.UNDELIVERED)
    assert "carol left before receiving it" in error.reason


def test_what_waits_for_one_owner_is_bounded() -> None:
    core = ChatCore(ADMIN_TOKEN)
    core.store.set_owner("alice", from_b64url(Identity.generate().public_key))
    core.handle(b"bob", cmd.Hello("bob", "b" * 22), now=0.0)
    for n in range(OFFLINE_LIMIT):
        core.store.add_private(ev.PrivateMessage(f"fill-{n}", "carol", "alice", "x", 0), "", "")
    [(to, error)] = core.handle(b"bob", cmd.Tell("one-too-many", "alice", "hi"), now=0.0)
    assert to == b"bob"
    assert isinstance(error, ev.Error) and error.code == ErrorCode.INSUFFICIENT_STORAGE
    assert f"{OFFLINE_LIMIT} private messages waiting" in error.reason
