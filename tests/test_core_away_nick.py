"""AWAY and NICK in the broker's core, without sockets: table-driven where the rules are."""

from pathlib import Path

import pytest

from broker.console import run_console_line
from broker.core import STREAM, ChatCore, Outgoing
from broker.store import Store
from client.identity import Identity
from messages import ErrorCode
from messages import commands as cmd
from messages import events as ev
from tests.test_broker_core import (
    ALICE,
    BOB,
    CAROL,
    EPOCH,
    SESSIONS,
    T0,
    TOKEN,
    error_code,
    hello,
    send,
    wall_clock,
)


@pytest.fixture
def chat() -> ChatCore:
    """alice, bob and carol registered (broadcasts 1 to 3 are their joins)."""
    core = ChatCore(TOKEN, heartbeat_ms=1000, wall_clock=wall_clock, epoch=EPOCH)
    for identity, nick in ((ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")):
        hello(core, identity, nick)
    return core


def to(out: list[Outgoing], identity: bytes) -> list[ev.BrokerEvent]:
    return [event for who, event in out if who == identity]


# -- AWAY -------------------------------------------------------------------------------


def test_away_is_a_numbered_broadcast_and_back_is_an_empty_one(chat: ChatCore) -> None:
    out = send(chat, ALICE, cmd.Away("lunch"))
    assert (STREAM, ev.AwayChanged(4, "alice", "lunch")) in out
    assert to(out, BOB) == [ev.AwayChanged(4, "alice", "lunch")]
    assert send(chat, ALICE, cmd.Away("lunch")) == []  # nothing changes: nothing sent
    assert to(send(chat, ALICE, cmd.Away("")), CAROL) == [ev.AwayChanged(5, "alice", "")]
    # FETCH replays them like joins.
    assert ev.AwayChanged(4, "alice", "lunch") in to(send(chat, BOB, cmd.Fetch(4)), BOB)


def test_users_tells_who_is_away_before_the_page(chat: ChatCore) -> None:
    send(chat, BOB, cmd.Away("in a meeting"))
    out = to(send(chat, CAROL, cmd.ListUsers()), CAROL)
    assert out == [ev.IsAway("bob", "in a meeting"), ev.UserList(4, ("alice", "bob", "carol"))]


@pytest.mark.parametrize(
    ("steps", "replies"),
    [
        # (who sends what, in order) -> how many AWAYREPLYs alice gets
        ([("tell",)], 1),
        ([("tell",), ("tell",)], 1),
        ([("tell",), ("away", "dinner"), ("tell",)], 2),
        ([("tell",), ("away", ""), ("tell",)], 1),
        ([("away", ""), ("tell",)], 0),
        ([("tell",), ("resume",), ("tell",)], 1),
    ],
)
def test_a_private_to_someone_away_is_answered_once_per_away(
    chat: ChatCore, steps: list[tuple[str, ...]], replies: int
) -> None:
    send(chat, BOB, cmd.Away("lunch"))
    got: list[ev.AwayReply] = []
    for n, step in enumerate(steps):
        match step:
            case ("tell",):
                out = send(chat, ALICE, cmd.Tell(f"m{n}", "bob", "hi"))
                got += [e for e in to(out, ALICE) if isinstance(e, ev.AwayReply)]
            case ("away", text):
                send(chat, BOB, cmd.Away(text))
            case ("resume",):
                hello(chat, ALICE, "alice")
    assert len(got) == replies
    assert all(reply.nick == "bob" for reply in got)


def test_the_away_reply_names_the_message_and_goes_to_the_sender_only(chat: ChatCore) -> None:
    send(chat, BOB, cmd.Away("back at one"))
    out = send(chat, ALICE, cmd.Tell("m1", "bob", "lunch?"))
    assert to(out, ALICE) == [ev.Ack(("m1",)), ev.AwayReply("bob", "back at one")]
    assert not [e for e in to(out, BOB) if isinstance(e, ev.AwayReply)]
    assert all(who != STREAM for who, _ in out)


def test_away_is_rate_limited_like_chat(chat: ChatCore) -> None:
    codes = [
        send(chat, ALICE, cmd.Away(f"away {n}"), now=T0)[-1][1] for n in range(chat.flood.burst + 1)
    ]
    assert isinstance(codes[-1], ev.Error) and codes[-1].code == ErrorCode.RATE_LIMITED


# -- NICK -------------------------------------------------------------------------------


def test_nick_is_a_numbered_broadcast_and_the_session_goes_on(chat: ChatCore) -> None:
    send(chat, ALICE, cmd.Away("lunch"))
    out = send(chat, ALICE, cmd.Nick("alice2"))
    assert to(out, BOB) == [ev.Renamed(5, "alice", "alice2")]
    assert chat.users() == ("alice2", "bob", "carol")
    assert chat.find("alice") is None
    session = chat.find("alice2")
    assert session is not None and session.identity == ALICE and session.away == "lunch"
    # Anyone may take the old nick now.
    dave = b"\0dave"
    welcome = to(chat.handle(dave, cmd.Hello("alice", "dave-session-token-00000"), T0), dave)
    assert isinstance(welcome[0], ev.Welcome) and welcome[0].nick == "alice"


@pytest.mark.parametrize(
    ("nick", "code"),
    [
        ("bob", ErrorCode.NICK_TAKEN),
        ("BOB", ErrorCode.NICK_TAKEN),
        ("b0b", ErrorCode.NICK_TAKEN),  # a look-alike of someone here
        ("with space", ErrorCode.INVALID_NICK),
        ("a" * 33, ErrorCode.INVALID_NICK),
        ("operator", ErrorCode.INVALID_NICK),
        ("alice", ErrorCode.MALFORMED),  # already
        ("barred", ErrorCode.FORBIDDEN),
    ],
)
def test_nick_gets_every_rule_hello_gets(chat: ChatCore, nick: str, code: int) -> None:
    chat.bans.bar("barred", 60, "banned by operator: spam", T0, 0)
    assert error_code(send(chat, ALICE, cmd.Nick(nick))) == code
    assert chat.users() == ("alice", "bob", "carol")


def test_a_case_change_is_allowed(chat: ChatCore) -> None:
    assert to(send(chat, ALICE, cmd.Nick("Alice")), BOB) == [ev.Renamed(4, "alice", "Alice")]


@pytest.fixture
def owned() -> tuple[ChatCore, Identity]:
    """A core whose nick `owned` belongs to an identity (registered, then left)."""
    core = ChatCore(TOKEN, heartbeat_ms=1000, store=Store())
    key = Identity.generate()
    hello(core, CAROL, "owned")
    send(core, CAROL, key.register("owned", SESSIONS[CAROL]))
    send(core, CAROL, cmd.Quit(""))
    hello(core, ALICE, "alice")
    return core, key


def test_an_owned_nick_is_refused_to_a_session_that_did_not_prove_it(
    owned: tuple[ChatCore, Identity],
) -> None:
    core, _ = owned
    assert error_code(send(core, ALICE, cmd.Nick("owned"))) == ErrorCode.NICK_TAKEN
    assert error_code(send(core, ALICE, cmd.Nick("0wned"))) == ErrorCode.NICK_TAKEN


def test_the_owner_moves_between_its_owned_nicks_and_the_old_one_stays_owned(
    owned: tuple[ChatCore, Identity],
) -> None:
    core, key = owned
    # alice registers her nick with the same identity: she may take "owned" too.
    send(core, ALICE, key.register("alice", SESSIONS[ALICE]))
    assert to(send(core, ALICE, cmd.Nick("owned")), STREAM)[0] == ev.Renamed(4, "alice", "owned")
    session = core.find("owned")
    assert session is not None and session.owns_nick
    assert core.store.owner("alice") is not None
    # A guest that takes a free nick holds no owned one any more.
    send(core, ALICE, cmd.Nick("guest"))
    assert not core.find("guest").owns_nick  # type: ignore[union-attr]
    # "alice" is still owned: challenged, as any owned nick is.
    assert isinstance(hello(core, BOB, "alice")[0][1], ev.Challenge)


def test_unconfirmed_privates_and_outcomes_follow_the_renamed_session(chat: ChatCore) -> None:
    send(chat, ALICE, cmd.Tell("m1", "bob", "to bob"))
    send(chat, CAROL, cmd.Tell("m2", "alice", "to alice"))
    send(chat, BOB, cmd.Nick("bobby"))
    send(chat, ALICE, cmd.Nick("alicia"))
    # bob confirms alice's message as he saw it: DELIVERED reaches her under her new nick.
    assert send(chat, BOB, cmd.Received("m1", "alice")) == [(ALICE, ev.Delivered("m1", "bobby"))]
    # Her client comes back with a HELLO for the old nick: the same session resumes, with
    # what it has not confirmed.
    out = to(send(chat, b"\0alice-2", cmd.Hello("alice", SESSIONS[ALICE])), b"\0alice-2")
    assert isinstance(out[0], ev.Welcome) and out[0].nick == "alicia"
    assert any(isinstance(e, ev.PrivateMessage) and e.msg_id == "m2" for e in out)
    assert chat.users() == ("alicia", "bobby", "carol")


def test_nick_is_rate_limited(chat: ChatCore) -> None:
    last = [send(chat, ALICE, cmd.Nick(f"a{n}"))[-1][1] for n in range(chat.flood.burst + 1)]
    assert isinstance(last[-1], ev.Error) and last[-1].code == ErrorCode.RATE_LIMITED


def test_the_console_lists_who_is_away(chat: ChatCore) -> None:
    send(chat, BOB, cmd.Away("lunch"))
    assert run_console_line(chat, "/users", T0).output == [
        "3 users: alice bob carol",
        "1 away: bob (lunch)",
    ]


def test_away_and_renames_are_stored_and_a_renamed_recipient_gets_its_privates_after_a_restart(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "chat.db")
    core = ChatCore(TOKEN, heartbeat_ms=1000, store=Store(path))
    hello(core, ALICE, "alice")
    hello(core, BOB, "bob")
    send(core, BOB, cmd.Away("lunch"))
    send(core, ALICE, cmd.Tell("m1", "bob", "kept for you"))
    send(core, BOB, cmd.Nick("bobby"))
    core.store.commit()
    del core  # the broker dies
    again = ChatCore(TOKEN, heartbeat_ms=1000, store=Store(path))
    assert again.store.broadcasts(3, 10) == [
        ev.AwayChanged(3, "bob", "lunch"),
        ev.Renamed(4, "bob", "bobby"),
    ]
    # bob's client comes back under its new nick, with its token: the private waits there.
    out = to(hello(again, BOB, "bobby"), BOB)
    assert [e.text for e in out if isinstance(e, ev.PrivateMessage)] == ["kept for you"]
