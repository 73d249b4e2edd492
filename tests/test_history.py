"""HISTORY and SEARCH (issue 11): pages of what the store keeps, in the core and through a
real broker."""

from collections.abc import Callable

import pytest

from broker.core import UNSENT_LIMIT_BYTES, ChatCore
from broker.ratelimit import FloodPolicy
from broker.store import Page, StoreError
from client.identity import Identity
from messages import ErrorCode, encode
from messages import commands as cmd
from messages import events as ev
from tests.conftest import ADMIN_TOKEN
from tests.peers import Peer

ALICE, BOB, CAROL = b"\0a", b"\0b", b"\0c"


def _core(owners: bool = True) -> ChatCore:
    """alice, bob and carol registered; each owns its nick (`/register`) unless not
    `owners`: private history is kept for owners only."""
    core = ChatCore(ADMIN_TOKEN, epoch="e0")
    for identity, nick in ((ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")):
        token = f"s-{nick}-0123456789abcdefgh"
        core.receive(identity, encode(cmd.Hello(nick, token)), 0.0)
        if owners:
            core.receive(identity, encode(Identity.generate().register(nick, token)), 0.0)
    return core


def _ask(
    core: ChatCore, identity: bytes, command: cmd.ClientCommand, now: float = 1.0
) -> list[ev.BrokerEvent]:
    """What `identity` gets for `command`: the LOG events and the PAGE (or an ERROR)."""
    return [event for to, event in core.receive(identity, encode(command), now) if to == identity]


def _texts(events: list[ev.BrokerEvent]) -> list[str]:
    return [event.text for event in events if isinstance(event, ev.LogEntry)]


def test_history_pages_back_from_the_latest_broadcast_oldest_first() -> None:
    core = _core()
    for n in range(5):
        core.receive(ALICE, encode(cmd.Say(f"m{n}", f"line {n}")), 0.0)
    core.wall("restart at noon")
    latest = _ask(core, BOB, cmd.History("h1", "", 0, 4))
    assert _texts(latest) == ["line 2", "line 3", "line 4", "operator: restart at noon"]
    assert all(isinstance(e, ev.LogEntry) and e.ref == "h1" for e in latest[:-1])
    page = latest[-1]
    assert isinstance(page, ev.Page) and page.ref == "h1" and page.count == 4
    first = latest[0]
    assert isinstance(first, ev.LogEntry) and first.sender == "alice" and first.recipient == ""
    assert page.next_before == first.id
    notice = latest[3]
    assert isinstance(notice, ev.LogEntry) and notice.sender == ""
    # JOINs are numbered broadcasts too, but not history: the ids skip them.
    older = _ask(core, BOB, cmd.History("h2", "", page.next_before, 4))
    assert _texts(older) == ["line 0", "line 1"]
    assert older[-1] == ev.Page("h2", 2, 0)


def test_a_conversation_holds_the_privates_between_two_nicks_only() -> None:
    core = _core()
    core.receive(ALICE, encode(cmd.Tell("t1", "bob", "hi bob")), 0.0)
    core.receive(BOB, encode(cmd.Tell("t2", "ALICE", "hi alice")), 0.0)
    core.receive(CAROL, encode(cmd.Tell("t3", "bob", "carol to bob")), 0.0)
    core.receive(ALICE, encode(cmd.Say("m1", "to everyone")), 0.0)
    answer = _ask(core, ALICE, cmd.History("q", "Bob", 0, 10))
    assert _texts(answer) == ["hi bob", "hi alice"]
    assert [(e.sender, e.recipient) for e in answer if isinstance(e, ev.LogEntry)] == [
        ("alice", "bob"),
        ("bob", "alice"),
    ]
    # Carol asks for her conversation with alice: there is none, whatever alice said to bob.
    assert _ask(core, CAROL, cmd.History("q", "alice", 0, 10)) == [ev.Page("q", 0, 0)]


def test_search_finds_broadcasts_and_the_askers_own_privates_only() -> None:
    core = _core()
    core.receive(ALICE, encode(cmd.Say("m1", "the red fox")), 0.0)
    core.receive(ALICE, encode(cmd.Say("m2", "a blue whale")), 0.0)
    core.receive(BOB, encode(cmd.Tell("t1", "alice", "red alert, alice")), 0.0)
    core.receive(BOB, encode(cmd.Tell("t2", "carol", "red herring for carol")), 0.0)
    # What the socket loop does after each receive batch, and in its upkeep.
    core.store.commit()
    core.store.index()
    answer = _ask(core, ALICE, cmd.Search("s1", "red", 10))
    assert _texts(answer) == ["the red fox", "red alert, alice"]
    assert answer[-1] == ev.Page("s1", 2, 0)
    assert _texts(_ask(core, CAROL, cmd.Search("s2", "red", 1))) == ["red herring for carol"]
    # User text: a query language's operators mean nothing, and odd input finds nothing.
    assert _ask(core, ALICE, cmd.Search("s3", '" OR * NEAR(', 10)) == [ev.Page("s3", 0, 0)]


def test_a_guest_gets_no_private_history_nor_private_hits() -> None:
    # A guest holding a nick now is not necessarily who held it when its messages were sent.
    core = _core(owners=False)
    core.receive(BOB, encode(cmd.Tell("t1", "alice", "red alert, alice")), 0.0)
    core.receive(ALICE, encode(cmd.Say("m1", "the red fox")), 0.0)
    core.store.commit()
    core.store.index()
    assert _ask(core, ALICE, cmd.History("q", "bob", 0, 10)) == [ev.Page("q", 0, 0)]
    assert _texts(_ask(core, ALICE, cmd.Search("s", "red", 10))) == ["the red fox"]


def test_history_needs_registration_and_a_client_that_reads() -> None:
    core = _core()
    [refused] = core.receive(b"\0x", encode(cmd.History("h1", "", 0, 5)), 0.0)
    assert refused[1] == ev.Error(ErrorCode.NOT_REGISTERED, "h1", refused[1].reason)  # type: ignore[union-attr]
    core.receive(ALICE, encode(cmd.Say("m1", "hi")), 0.0)
    unread = core.receive(
        ALICE, encode(cmd.Search("s1", "hi", 5)), 1.0, unsent=UNSENT_LIMIT_BYTES + 1
    )
    [(_, error)] = unread
    assert isinstance(error, ev.Error) and error.code == ErrorCode.RATE_LIMITED
    assert error.ref == "s1" and "unread" in error.reason


def test_history_answers_are_charged_to_the_reply_budget_by_their_bytes() -> None:
    policy = FloodPolicy(burst=1000, per_second=1000.0, reply_burst_bytes=45_000)
    core = ChatCore(ADMIN_TOKEN, flood=policy, epoch="e0")
    core.receive(ALICE, encode(cmd.Hello("alice", "s-alice-0123456789abcdefgh")), 0.0)
    for n in range(20):
        core.receive(ALICE, encode(cmd.Say(f"m{n}", "y" * 4000)), 0.0)
    answered = [_ask(core, ALICE, cmd.History(f"h{n}", "", 0, 5)) for n in range(3)]
    # Two pages of 5 x 4000 bytes and more fit in 45,000 bytes; the third does not.
    assert [len(answer) for answer in answered[:2]] == [6, 6]
    [refusal] = answered[2]
    assert isinstance(refusal, ev.Error) and refusal.code == ErrorCode.RATE_LIMITED
    assert refusal.ref == "h2" and "bytes" in refusal.reason
    # An empty answer costs little, but not nothing.
    assert _ask(core, ALICE, cmd.Search("s1", "nothing-like-this", 5), 30.0)[-1] == ev.Page(
        "s1", 0, 0
    )


def test_an_unreadable_store_answers_507_and_the_broker_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    core = _core()

    def damaged(*args: object) -> Page:
        raise StoreError("the server's database is damaged")

    monkeypatch.setattr(core.store, "history", damaged)
    [error] = _ask(core, ALICE, cmd.History("h1", "", 0, 5))
    assert isinstance(error, ev.Error) and error.code == ErrorCode.INSUFFICIENT_STORAGE
    assert error.ref == "h1" and "damaged" in error.reason
    assert _ask(core, ALICE, cmd.Ping()) == [ev.Pong()]


def test_a_bad_limit_is_refused_naming_the_ref() -> None:
    core = _core()
    frames = [*encode(cmd.History("h7", "", 0, 1))[:-1], b"101"]
    [(_, error)] = core.receive(ALICE, frames, 0.0)
    assert error == ev.Error(ErrorCode.TOO_LARGE, "h7", "limit is 101; the most is 100")


def test_a_newcomer_reads_the_earlier_conversation_through_a_real_broker(
    connect: Callable[..., Peer],
) -> None:
    alice = connect("alice")
    alice.say("before bob came")
    alice.tell("alice", "a note to self")
    alice.sync()
    bob = connect("bob")
    bob.send(cmd.History("join", "", 0, 50))
    entry = bob.expect_after_presence(ev.LogEntry, ref="join", sender="alice")
    assert entry.text == "before bob came" and entry.time_ms > 0
    assert bob.expect(ev.Page) == ev.Page("join", 1, 0)
    bob.send(cmd.Search("find", "note", 5))
    assert bob.expect_after_presence(ev.Page) == ev.Page("find", 0, 0)
