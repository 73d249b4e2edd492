"""The broker's routing core without sockets: registration, routing, presence, operators."""

import pytest

from broker.console import run_console_line
from broker.core import CONSOLE_OPERATOR, ChatCore, Outgoing
from messages import HEARTBEAT_LIVENESS, SIGNATURE, ErrorCode, encode
from messages import commands as cmd
from messages import events as ev

TOKEN = "op-token"
ALICE, BOB, CAROL, STRANGER = b"id-alice", b"id-bob", b"id-carol", b"id-stranger"
T0 = 1000.0


def wall_clock() -> float:
    return 1_700_000_000.5


@pytest.fixture
def core() -> ChatCore:
    return ChatCore(TOKEN, heartbeat_ms=1000, wall_clock=wall_clock)


def send(
    core: ChatCore, identity: bytes, command: cmd.ClientCommand, now: float = T0
) -> list[Outgoing]:
    """Through the codec, as the socket loop does."""
    return core.receive(identity, encode(command), now)


@pytest.fixture
def chat(core: ChatCore) -> ChatCore:
    """alice, bob and carol registered."""
    for identity, nick in ((ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")):
        send(core, identity, cmd.Hello(nick))
    return core


def error_code(out: list[Outgoing]) -> int:
    [(_, event)] = out
    assert isinstance(event, ev.Error), event
    return event.code


# -- registration ------------------------------------------------------------------


def test_welcome_lists_users_and_commands_and_others_hear_the_join(core: ChatCore) -> None:
    send(core, ALICE, cmd.Hello("alice"))
    out = send(core, BOB, cmd.Hello("bob"))
    assert out == [
        (BOB, ev.Welcome("bob", 1000, out[0][1].commands, ("alice", "bob"))),  # type: ignore[union-attr]
        (ALICE, ev.Joined("bob")),
    ]
    welcome = out[0][1]
    assert isinstance(welcome, ev.Welcome)
    assert {"HELLO", "SAY", "TELL", "USERS", "QUIT", "ADMIN"} <= set(welcome.commands)


@pytest.mark.parametrize(
    ("taken", "attempt"),
    [
        ("alice", "alice"),
        ("alice", "Alice"),
        ("alice", "ALICE"),
        ("alice", "ａｌｉｃｅ"),
        ("Анна", "анна"),
        ("émile", "e\u0301mile"),
    ],
)
def test_taken_nick_is_refused_case_insensitively(core: ChatCore, taken: str, attempt: str) -> None:
    send(core, ALICE, cmd.Hello(taken))
    out = send(core, BOB, cmd.Hello(attempt))
    assert error_code(out) == ErrorCode.NICK_TAKEN
    assert core.session(BOB) is None
    assert core.users() == (taken,)


@pytest.mark.parametrize("nick", ["", "with space", "a" * 33, "emoji🎉", "tab\t"])
def test_invalid_nick_is_refused_with_reason(core: ChatCore, nick: str) -> None:
    out = send(core, ALICE, cmd.Hello(nick))
    if nick == "":
        assert error_code(out) == ErrorCode.MALFORMED  # an empty frame never decodes
    else:
        assert error_code(out) == ErrorCode.INVALID_NICK
    assert core.users() == ()


def test_second_hello_is_refused(chat: ChatCore) -> None:
    assert error_code(send(chat, ALICE, cmd.Hello("other"))) == ErrorCode.ALREADY_REGISTERED
    assert chat.users() == ("alice", "bob", "carol")


@pytest.mark.parametrize(
    "command",
    [
        cmd.Say("hi"),
        cmd.Tell("alice", "hi"),
        cmd.ListUsers(),
        cmd.Admin(TOKEN),
        cmd.Kick("alice", ""),
        cmd.Wall("x"),
        cmd.Shutdown("x"),
    ],
    ids=repr,
)
def test_unregistered_identity_gets_401(chat: ChatCore, command: cmd.ClientCommand) -> None:
    assert error_code(send(chat, STRANGER, command)) == ErrorCode.NOT_REGISTERED
    assert not chat.stopped


def test_unregistered_ping_is_answered_and_quit_ignored(core: ChatCore) -> None:
    assert send(core, STRANGER, cmd.Ping()) == [(STRANGER, ev.Pong())]
    assert send(core, STRANGER, cmd.Quit("")) == []


# -- routing -----------------------------------------------------------------------


def test_broadcast_reaches_everyone_including_sender(chat: ChatCore) -> None:
    message = ev.Message("alice", "hi all", 1_700_000_000_500)
    assert send(chat, ALICE, cmd.Say("hi all")) == [
        (ALICE, message),
        (BOB, message),
        (CAROL, message),
    ]


def test_private_reaches_only_recipient_and_is_echoed_to_sender(chat: ChatCore) -> None:
    private = ev.PrivateMessage("alice", "bob", "psst", 1_700_000_000_500)
    assert send(chat, ALICE, cmd.Tell("BOB", "psst")) == [(BOB, private), (ALICE, private)]


def test_private_to_self_is_delivered_once(chat: ChatCore) -> None:
    out = send(chat, ALICE, cmd.Tell("alice", "note"))
    assert out == [(ALICE, ev.PrivateMessage("alice", "alice", "note", 1_700_000_000_500))]


def test_private_to_unknown_nick_is_an_error_delivered_nowhere(chat: ChatCore) -> None:
    out = send(chat, ALICE, cmd.Tell("nobody", "hello?"))
    assert error_code(out) == ErrorCode.NO_SUCH_NICK
    assert out[0][0] == ALICE


def test_sender_is_stamped_from_identity_not_from_the_message(chat: ChatCore) -> None:
    # There is no sender field in SAY or TELL: the only name the broker uses is the session's.
    for _, event in send(chat, BOB, cmd.Say("I am alice")):
        assert isinstance(event, ev.Message)
        assert event.sender == "bob"


def test_users_on_demand(chat: ChatCore) -> None:
    assert send(chat, BOB, cmd.ListUsers()) == [(BOB, ev.UserList(("alice", "bob", "carol")))]


def test_bad_frames_get_an_error_and_change_nothing(chat: ChatCore) -> None:
    for frames in ([b"junk"], [SIGNATURE, b"NOPE"], [SIGNATURE, b"SAY", b"\xff"], []):
        out = chat.receive(ALICE, frames, T0)
        assert len(out) == 1
        assert out[0][0] == ALICE
        assert isinstance(out[0][1], ev.Error)
    assert chat.users() == ("alice", "bob", "carol")


# -- presence ------------------------------------------------------------------------


def test_quit_frees_the_nick_at_once_and_others_hear_it(chat: ChatCore) -> None:
    out = send(chat, BOB, cmd.Quit("bye"))
    assert out == [(ALICE, ev.Left("bob", "bye")), (CAROL, ev.Left("bob", "bye"))]
    assert chat.users() == ("alice", "carol")
    assert send(chat, STRANGER, cmd.Hello("bob"))[0][1].nick == "bob"  # type: ignore[union-attr]


def test_quit_without_reason_says_quit(chat: ChatCore) -> None:
    assert send(chat, BOB, cmd.Quit(""))[0] == (ALICE, ev.Left("bob", "quit"))


def test_silent_client_expires_after_liveness_intervals(chat: ChatCore) -> None:
    expiry = HEARTBEAT_LIVENESS * 1.0
    send(chat, ALICE, cmd.Ping(), now=T0 + expiry - 0.5)
    send(chat, CAROL, cmd.Say("still here"), now=T0 + expiry - 0.5)
    assert chat.expire(T0 + expiry - 0.1) == []
    out = chat.expire(T0 + expiry + 0.1)
    assert [identity for identity, _ in out] == [ALICE, CAROL]
    assert all(event == ev.Left("bob", "no heartbeat for 3 s") for _, event in out)
    assert chat.users() == ("alice", "carol")


def test_malformed_traffic_still_counts_as_a_heartbeat(chat: ChatCore) -> None:
    chat.receive(BOB, [b"junk"], T0 + 2.5)
    gone = "no heartbeat for 3 s"
    assert chat.expire(T0 + 3.5) == [
        (BOB, ev.Left("alice", gone)),
        (CAROL, ev.Left("alice", gone)),
        (BOB, ev.Left("carol", gone)),
    ]
    assert chat.users() == ("bob",)


def test_unreachable_peer_is_removed_and_announced(chat: ChatCore) -> None:
    out = chat.remove(CAROL, "connection lost")
    assert out == [
        (ALICE, ev.Left("carol", "connection lost")),
        (BOB, ev.Left("carol", "connection lost")),
    ]
    assert chat.remove(CAROL, "again") == []


# -- operators ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [cmd.Kick("bob", "x"), cmd.Wall("x"), cmd.Shutdown("x")], ids=repr
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
    out = send(chat, ALICE, cmd.Kick("Bob", "spam"))
    assert out == [
        (BOB, ev.Kicked("alice", "spam")),
        (ALICE, ev.Left("bob", "kicked by alice: spam")),
        (CAROL, ev.Left("bob", "kicked by alice: spam")),
    ]
    assert chat.users() == ("alice", "carol")
    assert error_code(send(chat, BOB, cmd.Say("still here?"))) == ErrorCode.NOT_REGISTERED


def test_kick_unknown_nick(chat: ChatCore) -> None:
    send(chat, ALICE, cmd.Admin(TOKEN))
    assert error_code(send(chat, ALICE, cmd.Kick("nobody", ""))) == ErrorCode.NO_SUCH_NICK


def test_operator_wall(chat: ChatCore) -> None:
    send(chat, ALICE, cmd.Admin(TOKEN))
    notice = ev.Notice("alice: maintenance")
    assert send(chat, ALICE, cmd.Wall("maintenance")) == [
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
    assert send(chat, BOB, cmd.Say("hello?")) == []
    assert chat.shutdown("again") == []


# -- the broker's terminal ------------------------------------------------------------


def test_console_users(chat: ChatCore) -> None:
    assert run_console_line(chat, "/users").output == ["3 users: alice bob carol"]


def test_console_kick_with_reason(chat: ChatCore) -> None:
    result = run_console_line(chat, "/kick carol too loud")
    assert result.outgoing[0] == (CAROL, ev.Kicked(CONSOLE_OPERATOR, "too loud"))
    assert chat.users() == ("alice", "bob")


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("/kick", "usage: /kick NICK [reason]"),
        ("/kick nobody", "no such nick: nobody"),
        ("/wall", "usage: /wall TEXT"),
        ("/dance", "unknown command /dance: /help lists commands"),
    ],
)
def test_console_errors_send_nothing(chat: ChatCore, line: str, reply: str) -> None:
    result = run_console_line(chat, line)
    assert result.output == [reply]
    assert result.outgoing == []


def test_console_wall_and_shutdown(chat: ChatCore) -> None:
    assert run_console_line(chat, "/wall hello all").outgoing[0] == (
        ALICE,
        ev.Notice("operator: hello all"),
    )
    result = run_console_line(chat, "/shutdown")
    assert [e for _, e in result.outgoing] == [ev.ServerShutdown("broker shutdown")] * 3
    assert chat.stopped


def test_long_reasons_are_cut_to_the_protocol_limit(chat: ChatCore) -> None:
    send(chat, ALICE, cmd.Admin(TOKEN))
    out = send(chat, ALICE, cmd.Kick("bob", "é" * 200))  # 400 bytes: the most a reason holds
    left = out[1][1]
    assert isinstance(left, ev.Left)
    assert len(left.reason.encode()) <= 400
    assert left.reason.startswith("kicked by alice: éé")
