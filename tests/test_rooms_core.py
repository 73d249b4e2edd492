"""Rooms in the broker's core, without sockets: entering, posting, parting, topics, listings,
gap repair per room, and the limits."""

from pathlib import Path
from typing import TypeVar

import pytest

from broker.core import STREAM, ChatCore, Outgoing
from broker.rooms import ROOM_LOG_EVENTS
from broker.store import Store
from client.state import ChatState
from messages import MAX_ROOMS_PER_USER, ErrorCode
from messages import commands as cmd
from messages import events as ev
from tests.test_broker_core import ALICE, BOB, CAROL, NOW_MS, SESSIONS, T0, core, hello, send

__all__ = ["core"]  # a fixture, shared

E = TypeVar("E")


@pytest.fixture
def chat(core: ChatCore) -> ChatCore:
    """alice, bob and carol registered; alice and bob in #dev (alice made it)."""
    for identity, nick in ((ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")):
        hello(core, identity, nick)
    send(core, ALICE, cmd.Enter("#dev"))
    send(core, BOB, cmd.Enter("#dev"))
    return core


def only(out: list[Outgoing], kind: type[E]) -> list[E]:
    return [event for _, event in out if isinstance(event, kind)]


def error(out: list[Outgoing]) -> ev.Error:
    [(_, event)] = out
    assert isinstance(event, ev.Error), event
    return event


def code(out: list[Outgoing]) -> int:
    return error(out).code


def test_entering_tells_the_members_and_answers_the_rooms_state(core: ChatCore) -> None:
    hello(core, ALICE, "alice")
    hello(core, BOB, "bob")
    out = send(core, ALICE, cmd.Enter("#Dev"))
    epoch = core.rooms.require("#dev").epoch
    assert out == [
        (STREAM, ev.Entered("#Dev", 1, "alice")),
        (ALICE, ev.Entered("#Dev", 1, "alice")),
        (ALICE, ev.RoomState("#Dev", epoch, 1, 1, "")),
    ]
    # The name is kept as first written; #dev is the same room.
    assert send(core, BOB, cmd.Enter("#dev")) == [
        (STREAM, ev.Entered("#Dev", 2, "bob")),
        (ALICE, ev.Entered("#Dev", 2, "bob")),
        (BOB, ev.Entered("#Dev", 2, "bob")),
        (BOB, ev.RoomState("#Dev", epoch, 2, 2, "")),
    ]
    # Entering again only answers the state (a client coming back does so).
    assert send(core, BOB, cmd.Enter("#DEV")) == [(BOB, ev.RoomState("#Dev", epoch, 2, 2, ""))]


def test_a_post_reaches_the_members_only(chat: ChatCore) -> None:
    out = send(chat, ALICE, cmd.Post("#dev", "m1", "hi devs"))
    post = ev.Posted("#dev", 3, "m1", "alice", "hi devs", NOW_MS)
    assert out == [(STREAM, post), (ALICE, post), (BOB, post), (ALICE, ev.Ack(("m1",)))]
    # A resend is acknowledged, not posted again.
    assert send(chat, ALICE, cmd.Post("#dev", "m1", "hi devs")) == [(ALICE, ev.Ack(("m1",)))]


@pytest.mark.parametrize(
    ("who", "command", "expected"),
    [
        (CAROL, cmd.Post("#dev", "m2", "let me in"), ErrorCode.FORBIDDEN),
        (CAROL, cmd.Post("#nowhere", "m2", "hello?"), ErrorCode.NO_SUCH_NICK),
        (CAROL, cmd.Post("dev", "m2", "no #"), ErrorCode.INVALID_NICK),
        (CAROL, cmd.Enter("#dév"), ErrorCode.INVALID_NICK),
        (CAROL, cmd.Enter("#" + "x" * 33), ErrorCode.TOO_LARGE),
        (CAROL, cmd.Enter("#general"), ErrorCode.FORBIDDEN),
        (CAROL, cmd.Enter("#GENERA1"), ErrorCode.NICK_TAKEN),
        (CAROL, cmd.Enter("#deV"), None),  # the same room, not a look-alike
        (CAROL, cmd.Part("#dev", ""), ErrorCode.FORBIDDEN),
        (BOB, cmd.SetTopic("#dev", "mine now"), ErrorCode.FORBIDDEN),
        (CAROL, cmd.FetchRoom("#dev", 1), ErrorCode.FORBIDDEN),
        (CAROL, cmd.ListMembers("#nowhere"), ErrorCode.NO_SUCH_NICK),
    ],
)
def test_what_is_refused_and_why(
    chat: ChatCore, who: bytes, command: cmd.ClientCommand, expected: int | None
) -> None:
    out = send(chat, who, command)
    if expected is None:
        assert not [e for _, e in out if isinstance(e, ev.Error)]
    else:
        assert code(out) == expected


def test_a_look_alike_of_a_room_is_refused(chat: ChatCore) -> None:
    out = send(chat, CAROL, cmd.Enter("#deV1"))
    assert not only(out, ev.Error)
    refused = error(send(chat, CAROL, cmd.Enter("#devl")))
    assert refused.code == ErrorCode.NICK_TAKEN
    assert "#deV1" in refused.reason


def test_parting_tells_everyone_in_it_and_an_empty_room_goes(chat: ChatCore) -> None:
    out = send(chat, BOB, cmd.Part("#dev", "lunch"))
    parted = ev.Parted("#dev", 3, "bob", "lunch")
    assert out == [(STREAM, parted), (ALICE, parted), (BOB, parted)]
    send(chat, ALICE, cmd.Part("#dev", ""))
    assert chat.rooms.get("#dev") is None
    # Made again: a new life, numbered anew.
    out = send(chat, CAROL, cmd.Enter("#dev"))
    assert out[1] == (CAROL, ev.Entered("#dev", 1, "carol"))


def test_a_session_that_ends_parts_its_rooms(chat: ChatCore) -> None:
    out = send(chat, BOB, cmd.Quit("bye"))
    assert (ALICE, ev.Parted("#dev", 3, "bob", "bye")) in out
    assert chat.rooms.require("#dev").nicks() == ["alice"]


def test_a_session_keeps_its_rooms_when_it_resumes_on_a_new_connection(chat: ChatCore) -> None:
    again = b"\0bob-again"
    send(chat, again, cmd.Hello("bob", SESSIONS[BOB], False), T0 + 1)
    out = send(chat, ALICE, cmd.Post("#dev", "m1", "still there?"), T0 + 1)
    assert [identity for identity, e in out if isinstance(e, ev.Posted)] == [STREAM, ALICE, again]


def test_the_maker_sets_the_topic_which_the_room_state_carries(chat: ChatCore) -> None:
    out = send(chat, ALICE, cmd.SetTopic("#dev", "release on Friday"))
    topic = ev.TopicSet("#dev", 3, "alice", "release on Friday")
    assert out == [(STREAM, topic), (ALICE, topic), (BOB, topic)]
    [(_, state), _end] = send(chat, CAROL, cmd.ListRooms())
    assert state == ev.RoomState(
        "#dev", chat.rooms.require("#dev").epoch, 3, 2, "release on Friday"
    )


def test_rooms_and_members_come_in_pages(chat: ChatCore) -> None:
    send(chat, CAROL, cmd.Enter("#ops"))
    out = send(chat, CAROL, cmd.ListRooms())
    assert [e.room for e in only(out, ev.RoomState)] == ["#dev", "#ops"]
    assert out[-1] == (CAROL, ev.RoomList("#ops", False))
    assert send(chat, CAROL, cmd.ListMembers("#dev")) == [
        (CAROL, ev.MemberList("#dev", 2, ("alice", "bob"), "", False))
    ]
    assert send(chat, CAROL, cmd.ListMembers("#dev", "alice")) == [
        (CAROL, ev.MemberList("#dev", 2, ("bob",), "alice", False))
    ]


def test_a_member_fetches_what_it_missed_in_one_room(chat: ChatCore) -> None:
    for n in range(3):
        send(chat, ALICE, cmd.Post("#dev", f"m{n}", f"line {n}"))
    out = send(chat, BOB, cmd.FetchRoom("#dev", 4))
    assert [(e.seq, e.text) for _, e in out if isinstance(e, ev.Posted)] == [
        (4, "line 1"),
        (5, "line 2"),
    ]


def test_a_fetch_older_than_the_room_keeps_says_so_and_sends_what_is_kept(
    core: ChatCore,
) -> None:
    hello(core, ALICE, "alice")
    send(core, ALICE, cmd.Enter("#dev"))
    room = core.rooms.require("#dev")
    for n in range(ROOM_LOG_EVENTS + 5):
        room.log.append(ev.Posted("#dev", room.log.next_seq(), f"x{n}", "alice", "x", 1))
    out = core.handle(ALICE, cmd.FetchRoom("#dev", 1), T0 + 100)
    gone = error(out[:1])
    assert gone.code == ErrorCode.HISTORY_GONE and "#dev" in gone.reason
    assert only(out, ev.Posted)[0].seq == room.log.first_kept


def test_one_session_may_be_in_so_many_rooms(core: ChatCore) -> None:
    hello(core, ALICE, "alice")
    for n in range(MAX_ROOMS_PER_USER):
        core.handle(ALICE, cmd.Enter(f"#r{n}x"), T0 + n)
    refused = error(core.handle(ALICE, cmd.Enter("#onemore"), T0 + 100))
    assert refused.code == ErrorCode.RATE_LIMITED
    assert "/part" in refused.reason


def test_members_who_read_the_stream_get_a_public_rooms_events_there_only(
    core: ChatCore,
) -> None:
    hello(core, ALICE, "alice", stream=True)
    hello(core, BOB, "bob")
    send(core, ALICE, cmd.Enter("#dev"))
    send(core, BOB, cmd.Enter("#dev"))
    out = send(core, BOB, cmd.Post("#dev", "m1", "hi"))
    assert [identity for identity, e in out if isinstance(e, ev.Posted)] == [STREAM, BOB]
    # And each heartbeat names the room's last number on the stream.
    assert (STREAM, ev.RoomTick("#dev", 3)) in core.tick()


def test_an_invite_only_room_lets_in_the_invited_only_and_never_goes_on_the_stream(
    chat: ChatCore,
) -> None:
    out = send(chat, ALICE, cmd.SetMode("#dev", "+i"))
    mode = ev.ModeSet("#dev", 3, "alice", "+i")
    assert out == [(ALICE, mode), (BOB, mode)]
    assert code(send(chat, CAROL, cmd.Enter("#dev"))) == ErrorCode.FORBIDDEN
    assert code(send(chat, CAROL, cmd.ListMembers("#dev"))) == ErrorCode.FORBIDDEN
    # Only whoever made it invites, and the one invited is told.
    assert code(send(chat, BOB, cmd.Invite("#dev", "carol"))) == ErrorCode.FORBIDDEN
    invited = ev.Invited("#dev", "carol", "alice")
    assert send(chat, ALICE, cmd.Invite("#dev", "CAROL")) == [(CAROL, invited), (ALICE, invited)]
    entered = send(chat, CAROL, cmd.Enter("#dev"))
    assert (STREAM, ev.Entered("#dev", 4, "carol")) not in entered
    out = send(chat, BOB, cmd.Post("#dev", "m1", "between us"))
    assert [identity for identity, e in out if isinstance(e, ev.Posted)] == [ALICE, BOB, CAROL]
    assert not [e for _, e in chat.tick() if isinstance(e, ev.RoomTick)]
    # Open again: on the stream again (the change itself still on connections).
    out = send(chat, ALICE, cmd.SetMode("#dev", "-i"))
    assert STREAM not in [identity for identity, _ in out]
    out = send(chat, BOB, cmd.Post("#dev", "m2", "for all"))
    assert out[0] == (STREAM, ev.Posted("#dev", 7, "m2", "bob", "for all", NOW_MS))


def test_the_maker_removes_a_member_who_is_told_why(chat: ChatCore) -> None:
    assert code(send(chat, BOB, cmd.Evict("#dev", "alice", ""))) == ErrorCode.FORBIDDEN
    out = send(chat, ALICE, cmd.Evict("#dev", "Bob", "spam"))
    parted = ev.Parted("#dev", 3, "bob", "removed by alice: spam")
    assert out == [(STREAM, parted), (ALICE, parted), (BOB, parted)]
    assert code(send(chat, BOB, cmd.Post("#dev", "m1", "hey"))) == ErrorCode.FORBIDDEN
    assert code(send(chat, ALICE, cmd.Evict("#dev", "carol", ""))) == ErrorCode.NO_SUCH_NICK


@pytest.mark.parametrize("mode", ["+o", "i", ""])
def test_an_unknown_mode_is_refused(chat: ChatCore, mode: str) -> None:
    assert code(send(chat, ALICE, cmd.SetMode("#dev", mode))) in (
        ErrorCode.MALFORMED,
        ErrorCode.TOO_LARGE,
    )


def test_rooms_members_topics_and_events_survive_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "chat.db")
    core = ChatCore("operator-token-0123456789", heartbeat_ms=1000, store=Store(path))
    for identity, nick in ((ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")):
        hello(core, identity, nick)
    send(core, ALICE, cmd.Enter("#dev"))
    send(core, BOB, cmd.Enter("#dev"))
    send(core, ALICE, cmd.SetTopic("#dev", "release Friday"))
    send(core, ALICE, cmd.Post("#dev", "m1", "before the crash"))
    send(core, ALICE, cmd.SetMode("#dev", "+i"))
    send(core, ALICE, cmd.Invite("#dev", "carol"))
    epoch = core.rooms.require("#dev").epoch
    core.store.commit()
    del core  # the broker dies

    again = ChatCore("operator-token-0123456789", heartbeat_ms=1000, store=Store(path))
    room = again.rooms.require("#dev")
    assert (room.epoch, room.topic, room.invite_only, room.last_seq) == (
        epoch,
        "release Friday",
        True,
        5,
    )
    assert room.nicks() == ["alice", "bob"]
    # alice's client comes back with its token: in #dev again, running it still.
    hello(again, ALICE, "alice", T0 + 1)
    assert send(again, ALICE, cmd.Enter("#dev"), T0 + 1) == [(ALICE, room.state())]
    out = send(again, ALICE, cmd.FetchRoom("#dev", 3), T0 + 1)
    assert [e.text for _, e in out if isinstance(e, ev.Posted)] == ["before the crash"]
    # The invitation held; a resend of the post is only acknowledged.
    hello(again, CAROL, "carol", T0 + 1)
    assert not only(send(again, CAROL, cmd.Enter("#dev"), T0 + 1), ev.Error)
    resent = send(again, ALICE, cmd.Post("#dev", "m1", "before the crash"), T0 + 1)
    assert resent == [(ALICE, ev.Ack(("m1",)))]
    # bob never comes back: after a session's lifetime, he leaves #dev.
    again.expire(T0 + 1.5)
    later = T0 + 1.5 + again.expiry_seconds
    for present in (ALICE, CAROL):
        send(again, present, cmd.Ping(), later)
    out = again.expire(later)
    assert (
        ALICE,
        ev.Parted("#dev", 7, "bob", "did not come back after the server restarted"),
    ) in out
    assert room.nicks() == ["alice", "carol"]


def test_in_a_room_completion_offers_its_members_first_recent_speakers_first() -> None:
    state = ChatState("alice", "tcp://127.0.0.1:5555", clock=lambda: NOW_MS)
    state.apply(ev.Welcome("alice", 2000, "e1", 5, (), 5556))
    state.apply(ev.UserList(5, ("alice", "bob", "carol", "dave", "erin")))
    state.apply(ev.Message(6, "m1", "carol", "hi", NOW_MS))  # carol spoke last, outside
    state.set_members("#dev", ["alice", "erin", "bob"], first_page=True)
    state.room_event(ev.Posted("#dev", 3, "m2", "erin", "ping", NOW_MS))
    # A join in a room is a join like any other: /filter joins may hide it.
    [joined] = state.room_event(ev.Entered("#dev", 4, "dave"))
    assert (joined.presence, joined.sender, joined.room) == (True, "dave", "#dev")
    state.set_target("#dev")
    assert state.ranked_nicks() == ["erin", "bob", "dave", "carol"]
    assert state.members_of("#DEV") == ["alice", "bob", "dave", "erin"]
    state.set_target(None)
    assert state.ranked_nicks()[:2] == ["erin", "carol"]


def test_a_rooms_history_is_for_its_members(chat: ChatCore) -> None:
    send(chat, ALICE, cmd.Post("#dev", "m1", "first"))
    send(chat, BOB, cmd.Post("#dev", "m2", "second"))
    out = send(chat, BOB, cmd.History("h1", "#DEV", 0, 10))
    assert [(e.sender, e.recipient, e.text) for e in only(out, ev.LogEntry)] == [
        ("alice", "#dev", "first"),
        ("bob", "#dev", "second"),
    ]
    assert only(out, ev.Page) == [ev.Page("h1", 2, 0)]
    assert code(send(chat, CAROL, cmd.History("h2", "#dev", 0, 10))) == ErrorCode.FORBIDDEN


def test_search_finds_posts_in_the_rooms_one_is_in(chat: ChatCore) -> None:
    send(chat, ALICE, cmd.Post("#dev", "m1", "the deploy is green"))
    chat.store.commit()
    chat.store.index()
    out = send(chat, BOB, cmd.Search("s1", "deploy", 10))
    assert [(e.recipient, e.text) for e in only(out, ev.LogEntry)] == [
        ("#dev", "the deploy is green")
    ]
    assert only(send(chat, CAROL, cmd.Search("s2", "deploy", 10)), ev.LogEntry) == []
