"""The broker's routing core without sockets: registration, resumption, routing, receipts,
gaps, presence and operators."""

import pytest

from broker.acks import PendingAcks
from broker.console import run_console_line
from broker.core import CONSOLE_OPERATOR, STREAM, ChatCore, Outgoing
from broker.history import HISTORY_EVENTS
from messages import (
    FETCH_LIMIT,
    HEARTBEAT_LIVENESS,
    MAX_ACK_IDS,
    MAX_REASON_BYTES,
    SIGNATURE,
    ErrorCode,
    command_verbs,
    decode_event,
    encode,
)
from messages import commands as cmd
from messages import events as ev

TOKEN = "operator-token-0123456789"
EPOCH = "e0"
ALICE, BOB, CAROL, STRANGER = b"\0alice", b"\0bob", b"\0carol", b"\0stranger"
#: Session tokens of the required length (MIN_SESSION_TOKEN_BYTES).
SESSIONS = {
    ALICE: "alice-session-token-0000",
    BOB: "bob-session-token-000000",
    CAROL: "carol-session-token-0000",
    STRANGER: "stranger-session-token-0",
}
T0 = 1000.0
NOW_MS = 1_700_000_000_500
GONE = f"no heartbeat for {HEARTBEAT_LIVENESS} s"


def wall_clock() -> float:
    return NOW_MS / 1000


@pytest.fixture
def core() -> ChatCore:
    return ChatCore(TOKEN, heartbeat_ms=1000, wall_clock=wall_clock, epoch=EPOCH)


def send(
    core: ChatCore, identity: bytes, command: cmd.ClientCommand, now: float = T0
) -> list[Outgoing]:
    """Through the codec, as the socket loop does."""
    return core.receive(identity, encode(command), now)


def hello(
    core: ChatCore, identity: bytes, nick: str, now: float = T0, stream: bool = False
) -> list[Outgoing]:
    return send(core, identity, cmd.Hello(nick, SESSIONS[identity], stream), now)


@pytest.fixture
def chat(core: ChatCore) -> ChatCore:
    """alice, bob and carol registered (broadcasts 1 to 3 are their joins)."""
    for identity, nick in ((ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")):
        hello(core, identity, nick)
    return core


def error(out: list[Outgoing]) -> ev.Error:
    [(_, event)] = out
    assert isinstance(event, ev.Error), event
    return event


def error_code(out: list[Outgoing]) -> int:
    return error(out).code


# -- registration ------------------------------------------------------------------


def test_welcome_names_commands_and_stream_and_others_hear_the_join(core: ChatCore) -> None:
    hello(core, ALICE, "alice")
    assert hello(core, BOB, "bob") == [
        (STREAM, ev.Joined(2, "bob")),
        (ALICE, ev.Joined(2, "bob")),
        (BOB, ev.Welcome("bob", 1000, EPOCH, 2, command_verbs(), 0)),
    ]
    assert {"HELLO", "SAY", "TELL", "USERS", "QUIT", "ADMIN", "FETCH"} <= set(command_verbs())


@pytest.mark.parametrize(
    ("taken", "attempt"),
    [
        ("alice", "alice"),
        ("alice", "Alice"),
        ("alice", "ALICE"),
        ("alice", "ａｌｉｃｅ"),
        ("Анна", "анна"),
        ("émile", "e\u0301mile"),
        ("alice", "aIice"),  # capital I looks like l
        ("bob", "b0b"),
    ],
)
def test_taken_or_lookalike_nick_is_refused(core: ChatCore, taken: str, attempt: str) -> None:
    hello(core, ALICE, taken)
    assert error_code(hello(core, BOB, attempt)) == ErrorCode.NICK_TAKEN
    assert core.session(BOB) is None
    assert core.users() == (taken,)


@pytest.mark.parametrize("nick", ["", "with space", "a" * 33, "emoji🎉", "tab\t"])
def test_invalid_nick_is_refused_with_reason(core: ChatCore, nick: str) -> None:
    out = hello(core, ALICE, nick)
    # An empty frame never decodes (400); the others are decoded and judged (422).
    assert error_code(out) == (ErrorCode.MALFORMED if nick == "" else ErrorCode.INVALID_NICK)
    assert error(out).reason
    assert core.users() == ()


def test_a_nick_frame_over_its_byte_limit_is_413_and_over_32_characters_is_422(
    core: ChatCore,
) -> None:
    # The frame's limit is checked while decoding, the characters once it is a nick.
    assert error_code(hello(core, ALICE, "a" * 129)) == ErrorCode.TOO_LARGE
    assert error_code(hello(core, ALICE, "é" * 64)) == ErrorCode.INVALID_NICK  # 128 bytes
    assert core.users() == ()


@pytest.mark.parametrize("nick", ["operator", "Operator", "flood-control", "server", "broker"])
def test_names_the_broker_signs_with_are_reserved(core: ChatCore, nick: str) -> None:
    assert error_code(hello(core, ALICE, nick)) == ErrorCode.INVALID_NICK


def test_second_hello_under_another_nick_is_refused(chat: ChatCore) -> None:
    assert error_code(hello(chat, ALICE, "other")) == ErrorCode.ALREADY_REGISTERED
    assert chat.users() == ("alice", "bob", "carol")


@pytest.mark.parametrize(
    "command",
    [
        cmd.Say("m1", "hi"),
        cmd.Tell("m1", "alice", "hi"),
        cmd.ListUsers(),
        cmd.Ping(),
        cmd.Admin(TOKEN),
        cmd.Kick("alice", 60, ""),
        cmd.Wall("x"),
        cmd.Shutdown("x"),
        cmd.Received("m1", "alice"),
        cmd.Fetch(1),
    ],
    ids=repr,
)
def test_unregistered_identity_gets_401(chat: ChatCore, command: cmd.ClientCommand) -> None:
    out = send(chat, STRANGER, command)
    assert error_code(out) == ErrorCode.NOT_REGISTERED
    expected_ref = command.msg_id if isinstance(command, cmd.Say | cmd.Tell) else ""
    assert error(out).ref == expected_ref
    assert not chat.stopped


def test_unregistered_quit_is_ignored(core: ChatCore) -> None:
    assert send(core, STRANGER, cmd.Quit("")) == []


# -- sessions: resumption after a reconnect ----------------------------------------------


def test_same_token_resumes_quietly_on_a_new_connection(chat: ChatCore) -> None:
    new_connection = b"\0bob-2"
    out = chat.receive(new_connection, encode(cmd.Hello("bob", SESSIONS[BOB])), T0 + 1)
    assert out == [
        (new_connection, ev.Welcome("bob", 1000, EPOCH, 3, command_verbs(), 0))
    ]  # no JOIN or LEAVE for anyone
    assert chat.find("bob").identity == new_connection  # type: ignore[union-attr]
    assert chat.session(BOB) is None
    alice_says = send(chat, ALICE, cmd.Say("a1", "welcome back"))
    assert (new_connection, ev.Message(4, "a1", "alice", "welcome back", NOW_MS)) in alice_says
    # The old connection was told nothing; its next command learns it.
    assert error_code(send(chat, BOB, cmd.Ping())) == ErrorCode.NOT_REGISTERED


def test_another_token_cannot_take_over_a_session(chat: ChatCore) -> None:
    out = chat.receive(b"\0thief", encode(cmd.Hello("bob", "guessed-session-token-00")), T0)
    assert error_code(out) == ErrorCode.NICK_TAKEN


def test_repeated_hello_on_the_same_connection_is_welcomed_again(chat: ChatCore) -> None:
    [(identity, welcome)] = hello(chat, BOB, "bob")
    assert identity == BOB
    assert isinstance(welcome, ev.Welcome)


def test_resumed_session_gets_unconfirmed_privates_again(chat: ChatCore) -> None:
    send(chat, ALICE, cmd.Tell("a1", "bob", "first"))
    send(chat, ALICE, cmd.Tell("a2", "bob", "second"))
    send(chat, BOB, cmd.Received("a1", "alice"))
    out = chat.receive(b"\0bob-2", encode(cmd.Hello("bob", SESSIONS[BOB])), T0)
    assert [type(e) for _, e in out] == [ev.Welcome, ev.PrivateMessage]
    assert out[1] == (b"\0bob-2", ev.PrivateMessage("a2", "alice", "bob", "second", NOW_MS))


# -- routing -------------------------------------------------------------------------


def test_broadcast_reaches_everyone_then_the_sender_gets_ack(chat: ChatCore) -> None:
    message = ev.Message(4, "a1", "alice", "hi all", NOW_MS)
    assert send(chat, ALICE, cmd.Say("a1", "hi all")) == [
        (STREAM, message),
        (ALICE, message),
        (BOB, message),
        (CAROL, message),
        (ALICE, ev.Ack(("a1",))),
    ]


def test_a_resent_message_is_acked_but_not_delivered_twice(chat: ChatCore) -> None:
    send(chat, ALICE, cmd.Say("a1", "once"))
    send(chat, ALICE, cmd.Tell("a2", "bob", "once too"))
    assert send(chat, ALICE, cmd.Say("a1", "once")) == [(ALICE, ev.Ack(("a1",)))]
    assert send(chat, ALICE, cmd.Tell("a2", "bob", "once too")) == [(ALICE, ev.Ack(("a2",)))]
    # Ids are per session: bob may use the same id for his own message.
    assert (CAROL, ev.Message(5, "a1", "bob", "mine", NOW_MS)) in send(
        chat, BOB, cmd.Say("a1", "mine")
    )


def test_private_reaches_only_recipient_and_the_sender_gets_ack(chat: ChatCore) -> None:
    private = ev.PrivateMessage("a1", "alice", "bob", "psst", NOW_MS)
    assert send(chat, ALICE, cmd.Tell("a1", "BOB", "psst")) == [
        (BOB, private),
        (ALICE, ev.Ack(("a1",))),
    ]


def test_receipt_tells_the_sender_it_was_delivered(chat: ChatCore) -> None:
    send(chat, ALICE, cmd.Tell("a1", "bob", "psst"))
    assert send(chat, BOB, cmd.Received("a1", "alice")) == [(ALICE, ev.Delivered("a1", "bob"))]
    assert send(chat, BOB, cmd.Received("a1", "alice")) == []  # a repeated receipt changes nothing
    assert send(chat, CAROL, cmd.Received("a1", "alice")) == []  # nor one for someone else's


def test_private_to_self_is_delivered_once(chat: ChatCore) -> None:
    out = send(chat, ALICE, cmd.Tell("a1", "alice", "note"))
    note = ev.PrivateMessage("a1", "alice", "alice", "note", NOW_MS)
    assert out == [(ALICE, note), (ALICE, ev.Ack(("a1",)))]


def test_private_to_unknown_nick_is_an_error_naming_the_message(chat: ChatCore) -> None:
    out = send(chat, ALICE, cmd.Tell("a1", "nobody", "hello?"))
    assert out[0][0] == ALICE
    assert (error(out).code, error(out).ref) == (ErrorCode.NO_SUCH_NICK, "a1")
    # Refused is not accepted: the same id may be used again once the nick exists.
    hello(chat, STRANGER, "nobody")
    assert (ALICE, ev.Ack(("a1",))) in send(chat, ALICE, cmd.Tell("a1", "nobody", "hello?"))


def test_sender_is_stamped_from_identity_not_from_the_message(chat: ChatCore) -> None:
    # There is no sender field in SAY or TELL: the only name the broker uses is the session's.
    for _, event in send(chat, BOB, cmd.Say("b1", "I am alice")):
        assert isinstance(event, ev.Message | ev.Ack)
        if isinstance(event, ev.Message):
            assert event.sender == "bob"


def test_users_on_demand_with_the_snapshot_seq(chat: ChatCore) -> None:
    assert send(chat, BOB, cmd.ListUsers()) == [(BOB, ev.UserList(3, ("alice", "bob", "carol")))]


def test_bad_frames_get_an_error_and_change_nothing(chat: ChatCore) -> None:
    for frames in ([b"junk"], [SIGNATURE, b"NOPE"], [SIGNATURE, b"SAY", b"m9", b"\xff"], []):
        out = chat.receive(ALICE, frames, T0)
        assert len(out) == 1
        assert out[0][0] == ALICE
        assert isinstance(out[0][1], ev.Error)
    assert error(chat.receive(ALICE, [SIGNATURE, b"SAY", b"m9", b"\xff"], T0)).ref == "m9"
    assert chat.users() == ("alice", "bob", "carol")


@pytest.mark.parametrize(
    ("frames", "ref"),
    [
        # Read as a SAY or TELL: its msg_id comes back, whatever else is wrong with it.
        ([SIGNATURE, b"SAY", b"m1", b"hi", b"extra"], "m1"),
        ([SIGNATURE, b"TELL", b"m1", b"bob"], "m1"),
        ([SIGNATURE, b"SAY", b"m1", *[b"x"] * 7], "m1"),
        ([SIGNATURE, b"SAY", b"m1", b"\xff"], "m1"),
        # Not read as one: a bad signature or verb, or no readable msg_id.
        ([b"ZCHAT02", b"SAY", b"m1", b"hi"], ""),
        ([b"junk", b"SAY", b"m1", b"hi"], ""),
        ([SIGNATURE, b"say", b"m1", b"hi"], ""),
        ([SIGNATURE, b"SAY", b"m 1", b"hi"], ""),
    ],
)
def test_an_error_names_a_say_or_tell_only_when_it_reads_as_one(
    chat: ChatCore, frames: list[bytes], ref: str
) -> None:
    assert error(chat.receive(ALICE, frames, T0)).ref == ref


# -- the broadcast log: filling gaps ----------------------------------------------------


def test_fetch_replays_what_was_missed(chat: ChatCore) -> None:
    send(chat, ALICE, cmd.Say("a1", "one"))
    send(chat, ALICE, cmd.Say("a2", "two"))
    assert send(chat, BOB, cmd.Fetch(4)) == [
        (BOB, ev.Message(4, "a1", "alice", "one", NOW_MS)),
        (BOB, ev.Message(5, "a2", "alice", "two", NOW_MS)),
    ]
    assert send(chat, BOB, cmd.Fetch(2)) == [
        (BOB, ev.Joined(2, "bob")),
        (BOB, ev.Joined(3, "carol")),
        (BOB, ev.Message(4, "a1", "alice", "one", NOW_MS)),
        (BOB, ev.Message(5, "a2", "alice", "two", NOW_MS)),
    ]
    assert send(chat, BOB, cmd.Fetch(6)) == []


def test_fetch_says_when_history_is_gone_and_is_bounded(core: ChatCore) -> None:
    core = ChatCore(TOKEN, flood=None, wall_clock=wall_clock, epoch=EPOCH)
    hello(core, ALICE, "alice")
    for i in range(HISTORY_EVENTS + 5):
        core.wall(f"notice {i}")
    out = send(core, ALICE, cmd.Fetch(1))
    assert error(out[:1]).code == ErrorCode.HISTORY_GONE
    assert len(out) == 1 + FETCH_LIMIT
    first = out[1][1]
    assert isinstance(first, ev.Notice)
    assert first.seq == core.history.first_kept == 7


# -- presence ------------------------------------------------------------------------


def test_quit_frees_the_nick_at_once_and_others_hear_it(chat: ChatCore) -> None:
    out = send(chat, BOB, cmd.Quit("bye"))
    left = ev.Left(4, "bob", "bye")
    assert out == [(STREAM, left), (ALICE, left), (CAROL, left)]
    assert chat.users() == ("alice", "carol")
    assert isinstance(hello(chat, STRANGER, "bob")[-1][1], ev.Welcome)


def test_quit_without_reason_says_quit(chat: ChatCore) -> None:
    assert send(chat, BOB, cmd.Quit(""))[0] == (STREAM, ev.Left(4, "bob", "quit"))


def test_silent_client_expires_after_liveness_intervals(chat: ChatCore) -> None:
    expiry = HEARTBEAT_LIVENESS * 1.0
    send(chat, ALICE, cmd.Ping(), now=T0 + expiry - 0.5)
    send(chat, CAROL, cmd.Say("c1", "still here"), now=T0 + expiry - 0.5)
    assert chat.expire(T0 + expiry - 0.1) == []
    assert chat.expire(T0 + expiry + 0.1) == [
        (STREAM, ev.Left(5, "bob", GONE)),
        (ALICE, ev.Left(5, "bob", GONE)),
        (CAROL, ev.Left(5, "bob", GONE)),
    ]
    assert chat.users() == ("alice", "carol")
    # bob's client learns why when it next speaks.
    reason = error(send(chat, BOB, cmd.Ping())).reason
    assert f"you were disconnected ({GONE})" in reason


def test_malformed_traffic_still_counts_as_a_heartbeat(chat: ChatCore) -> None:
    chat.receive(BOB, [b"junk"], T0 + 2.5)
    assert chat.expire(T0 + 3.5) == [
        (STREAM, ev.Left(4, "alice", GONE)),
        (BOB, ev.Left(4, "alice", GONE)),
        (CAROL, ev.Left(4, "alice", GONE)),
        (STREAM, ev.Left(5, "carol", GONE)),
        (BOB, ev.Left(5, "carol", GONE)),
    ]
    assert chat.users() == ("bob",)


def test_a_client_that_stops_reading_is_removed_and_announced(chat: ChatCore) -> None:
    out = chat.remove(CAROL, "not reading")
    assert out == [
        (STREAM, ev.Left(4, "carol", "not reading")),
        (ALICE, ev.Left(4, "carol", "not reading")),
        (BOB, ev.Left(4, "carol", "not reading")),
    ]
    assert chat.remove(CAROL, "again") == []


# -- operators ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [cmd.Kick("bob", 60, "x"), cmd.Wall("x"), cmd.Shutdown("x")], ids=repr
)
def test_operator_commands_need_admin(chat: ChatCore, command: cmd.ClientCommand) -> None:
    assert error_code(send(chat, ALICE, command)) == ErrorCode.FORBIDDEN
    assert not chat.stopped
    assert chat.users() == ("alice", "bob", "carol")


def test_wrong_token_is_refused(chat: ChatCore) -> None:
    assert error_code(send(chat, ALICE, cmd.Admin("guess"))) == ErrorCode.FORBIDDEN
    assert error_code(send(chat, ALICE, cmd.Wall("x"))) == ErrorCode.FORBIDDEN


def test_operator_kicks(chat: ChatCore) -> None:
    assert send(chat, ALICE, cmd.Admin(TOKEN)) == [(ALICE, ev.Operator())]
    assert send(chat, ALICE, cmd.Kick("Bob", 60, "spam")) == [
        (BOB, ev.Kicked("alice", "spam")),
        (STREAM, ev.Left(4, "bob", "kicked by alice: spam")),
        (ALICE, ev.Left(4, "bob", "kicked by alice: spam")),
        (CAROL, ev.Left(4, "bob", "kicked by alice: spam")),
    ]
    assert chat.users() == ("alice", "carol")
    out = send(chat, BOB, cmd.Say("b1", "still here?"))
    assert error_code(out) == ErrorCode.NOT_REGISTERED
    assert "kicked by alice: spam" in error(out).reason


def test_kick_unknown_nick(chat: ChatCore) -> None:
    send(chat, ALICE, cmd.Admin(TOKEN))
    assert error_code(send(chat, ALICE, cmd.Kick("nobody", 60, ""))) == ErrorCode.NO_SUCH_NICK


def test_operator_wall(chat: ChatCore) -> None:
    send(chat, ALICE, cmd.Admin(TOKEN))
    notice = ev.Notice(4, "alice: maintenance")
    assert send(chat, ALICE, cmd.Wall("maintenance")) == [
        (STREAM, notice),
        (ALICE, notice),
        (BOB, notice),
        (CAROL, notice),
    ]


def test_operator_shutdown_tells_everyone_then_stops(chat: ChatCore) -> None:
    send(chat, ALICE, cmd.Admin(TOKEN))
    out = send(chat, ALICE, cmd.Shutdown("upgrade"))
    notice = ev.ServerShutdown("upgrade")
    assert out == [(ALICE, notice), (BOB, notice), (CAROL, notice)]
    assert chat.stopped
    assert send(chat, BOB, cmd.Say("b1", "hello?")) == []
    assert chat.shutdown("again") == []


# -- the broker's terminal ------------------------------------------------------------


def test_console_users(chat: ChatCore) -> None:
    assert run_console_line(chat, "/users", T0).output == ["3 users: alice bob carol"]


def test_console_kick_with_reason(chat: ChatCore) -> None:
    result = run_console_line(chat, "/kick carol too loud", T0)
    assert result.outgoing[0] == (CAROL, ev.Kicked(CONSOLE_OPERATOR, "too loud"))
    assert chat.users() == ("alice", "bob")


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("/kick", "usage: /kick NICK [TIME] [reason]"),
        ("/kick nobody", "no such nick: nobody"),
        ("/wall", "usage: /wall TEXT"),
        ("/dance", "unknown command /dance: /help lists commands"),
    ],
)
def test_console_errors_send_nothing(chat: ChatCore, line: str, reply: str) -> None:
    result = run_console_line(chat, line, T0)
    assert result.output == [reply]
    assert result.outgoing == []


def test_console_wall_and_shutdown(chat: ChatCore) -> None:
    assert run_console_line(chat, "/wall hello all", T0).outgoing[:2] == [
        (STREAM, ev.Notice(4, "operator: hello all")),
        (ALICE, ev.Notice(4, "operator: hello all")),
    ]
    result = run_console_line(chat, "/shutdown", T0)
    assert [e for _, e in result.outgoing] == [ev.ServerShutdown("broker shutdown")] * 3
    assert chat.stopped


def test_long_reasons_are_cut_to_the_protocol_limit(chat: ChatCore) -> None:
    send(chat, ALICE, cmd.Admin(TOKEN))
    out = send(chat, ALICE, cmd.Kick("bob", 60, "é" * 200))  # 400 bytes: the most a reason holds
    left = out[1][1]
    assert isinstance(left, ev.Left)
    assert len(left.reason.encode()) <= 400
    assert left.reason.startswith("kicked by alice: éé")


@pytest.mark.parametrize("nick", ["0perator", "OPERAT0R", "fIood-control"])
def test_lookalikes_of_reserved_names_are_refused(core: ChatCore, nick: str) -> None:
    assert error_code(hello(core, ALICE, nick)) == ErrorCode.INVALID_NICK


def test_after_quit_the_401_does_not_claim_a_disconnection(chat: ChatCore) -> None:
    send(chat, BOB, cmd.Quit("bye"))
    assert "disconnected" not in error(send(chat, BOB, cmd.Ping())).reason


def test_resends_are_not_charged_against_the_flood_limit(chat: ChatCore) -> None:
    send(chat, ALICE, cmd.Say("a1", "once"))
    for _ in range(100):  # far past the burst: every one is a resend of a1
        assert send(chat, ALICE, cmd.Say("a1", "once")) == [(ALICE, ev.Ack(("a1",)))]


def test_fetch_from_zero_means_from_the_start(chat: ChatCore) -> None:
    assert [e for _, e in send(chat, ALICE, cmd.Fetch(0))] == [
        ev.Joined(1, "alice"),
        ev.Joined(2, "bob"),
        ev.Joined(3, "carol"),
    ]


def test_delivered_goes_only_to_the_session_that_sent(chat: ChatCore) -> None:
    send(chat, ALICE, cmd.Tell("a1", "bob", "psst"))
    send(chat, ALICE, cmd.Quit(""))
    chat.receive(b"\0new-alice", encode(cmd.Hello("alice", "someone-elses-token-0000")), T0)
    assert send(chat, BOB, cmd.Received("a1", "alice")) == []


def test_two_senders_with_the_same_message_id_each_get_their_receipt(chat: ChatCore) -> None:
    send(chat, ALICE, cmd.Tell("x1", "carol", "from alice"))
    send(chat, BOB, cmd.Tell("x1", "carol", "from bob"))  # same id: ids are per sender
    resumed = chat.receive(b"\0carol-2", encode(cmd.Hello("carol", SESSIONS[CAROL])), T0)
    assert [e.text for _, e in resumed if isinstance(e, ev.PrivateMessage)] == [
        "from alice",
        "from bob",
    ]
    assert send(chat, b"\0carol-2", cmd.Received("x1", "bob")) == [
        (BOB, ev.Delivered("x1", "carol"))
    ]
    assert send(chat, b"\0carol-2", cmd.Received("x1", "alice")) == [
        (ALICE, ev.Delivered("x1", "carol"))
    ]


def test_the_reason_a_kicked_client_is_told_stays_within_the_limit(chat: ChatCore) -> None:
    send(chat, ALICE, cmd.Admin(TOKEN))
    send(chat, ALICE, cmd.Kick("bob", 60, "é" * 200))
    reply = error(send(chat, BOB, cmd.Ping()))
    assert reply.code == ErrorCode.NOT_REGISTERED
    assert len(reply.reason.encode()) <= MAX_REASON_BYTES
    assert decode_event(encode(reply)) == reply


def test_hello_again_on_a_registered_connection_is_flood_limited(core: ChatCore) -> None:
    hello(core, ALICE, "alice")
    replies = [hello(core, ALICE, "alice")[0][1] for _ in range(60)]
    assert any(isinstance(r, ev.Error) and r.code == ErrorCode.RATE_LIMITED for r in replies)


# -- the broadcast stream ----------------------------------------------------------------


@pytest.fixture
def streamed(core: ChatCore) -> ChatCore:
    """alice and bob read the stream; carol does not."""
    hello(core, ALICE, "alice", stream=True)
    hello(core, BOB, "bob", stream=True)
    hello(core, CAROL, "carol")
    return core


def test_a_broadcast_is_published_once_and_sent_only_to_clients_off_the_stream(
    streamed: ChatCore,
) -> None:
    message = ev.Message(4, "a1", "alice", "hi", NOW_MS)
    assert send(streamed, ALICE, cmd.Say("a1", "hi")) == [
        (STREAM, message),
        (CAROL, message),
        (ALICE, ev.Ack(("a1",))),
    ]


def test_presence_of_stream_readers_is_published_not_sent(core: ChatCore) -> None:
    hello(core, ALICE, "alice", stream=True)
    assert hello(core, BOB, "bob", stream=True) == [
        (STREAM, ev.Joined(2, "bob")),
        (BOB, ev.Welcome("bob", 1000, EPOCH, 2, command_verbs(), 0)),
    ]
    assert send(core, BOB, cmd.Quit("")) == [(STREAM, ev.Left(3, "bob", "quit"))]


def test_welcome_names_the_stream_port() -> None:
    core = ChatCore(TOKEN, wall_clock=wall_clock, epoch=EPOCH, stream_port=5556)
    [(_, welcome)] = hello(core, ALICE, "alice", stream=True)[1:]
    assert isinstance(welcome, ev.Welcome)
    assert welcome.stream_port == 5556


@pytest.mark.parametrize(("before", "after"), [(True, False), (False, True)])
def test_a_resumed_session_may_change_where_it_reads_broadcasts(
    core: ChatCore, before: bool, after: bool
) -> None:
    hello(core, ALICE, "alice", stream=before)
    hello(core, BOB, "bob", stream=True)
    core.receive(b"\0alice-2", encode(cmd.Hello("alice", SESSIONS[ALICE], after)), T0)
    out = send(core, BOB, cmd.Say("b1", "hi"))
    direct = [identity for identity, event in out if isinstance(event, ev.Message)]
    assert direct == [STREAM] + ([] if after else [b"\0alice-2"])


def test_tick_names_the_last_broadcast(streamed: ChatCore) -> None:
    assert streamed.tick() == [(STREAM, ev.Tick(3))]
    streamed.wall("x")
    assert streamed.tick() == [(STREAM, ev.Tick(4))]


def test_shutdown_reaches_stream_readers_on_their_own_connection(streamed: ChatCore) -> None:
    out = streamed.shutdown("bye")
    assert sorted(identity for identity, _ in out) == sorted([ALICE, BOB, CAROL])
    assert streamed.tick() == []


# -- acknowledgements held over a receive batch -------------------------------------------


def test_acks_of_one_batch_go_out_as_one_ack_per_client() -> None:
    pending = PendingAcks()
    private = ev.PrivateMessage("a1", "alice", "bob", "psst", NOW_MS)
    assert pending.hold([(BOB, private), (ALICE, ev.Ack(("a1",)))]) == [(BOB, private)]
    assert pending.hold([(CAROL, ev.Ack(("c1",))), (ALICE, ev.Ack(("a2",)))]) == []
    assert pending.flush() == [(ALICE, ev.Ack(("a1", "a2"))), (CAROL, ev.Ack(("c1",)))]
    assert pending.flush() == []


def test_a_long_batch_is_acknowledged_in_acks_of_at_most_the_limit() -> None:
    pending = PendingAcks()
    ids = [f"m{i}" for i in range(MAX_ACK_IDS + 1)]
    pending.hold([(ALICE, ev.Ack((msg_id,))) for msg_id in ids])
    acks = [ack for _, ack in pending.flush() if isinstance(ack, ev.Ack)]
    assert [len(ack.msg_ids) for ack in acks] == [MAX_ACK_IDS, 1]
    assert [msg_id for ack in acks for msg_id in ack.msg_ids] == ids
    for ack in acks:
        assert decode_event(encode(ack)) == ack
