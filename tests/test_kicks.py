"""A kick lasts: the kicked session ends for good, its nick stays barred for the time the
operator said, a kicked client does not come back by itself, and /ban and /unban bar and free
a nick for longer. Real broker, real sockets; the client through a relay that can cut it."""

import asyncio
import calendar
import time
from collections.abc import Callable

import pytest
import zmq

from broker.console import run_console_line
from broker.core import ChatCore
from messages import ErrorCode, encode, format_duration, parse_duration, split_duration
from messages import commands as cmd
from messages import events as ev
from tests.client_helpers import WAIT_S, Relay, bot_client, expect, port_of
from tests.conftest import ADMIN_TOKEN, RunningBroker
from tests.peers import Peer

Connect = Callable[..., Peer]
#: A HELLO refused because of a bar names the end of the bar like this.
UNTIL = "%Y-%m-%d %H:%M:%S UTC"


def operator(connect: Connect, nick: str = "op") -> Peer:
    peer = connect(nick)
    peer.send(cmd.Admin(ADMIN_TOKEN))
    peer.expect_after_presence(ev.Operator)
    return peer


def refused_hello(
    context: zmq.Context[zmq.Socket[bytes]], endpoint: str, nick: str, token: str = ""
) -> ev.Error:
    """The ERROR 403 that a HELLO for `nick` (with `token`, else a fresh one) gets."""
    peer = Peer(context, endpoint)
    peer.token = token or peer.token
    peer.send(cmd.Hello(nick, peer.token))
    return peer.expect(ev.Error, code=ErrorCode.FORBIDDEN)


def barred_until(reason: str) -> float:
    """The end of the bar a refusal names, in seconds since 1970."""
    stamp = reason.split(" is barred until ", 1)[1][: len("2026-01-01 00:00:00 UTC")]
    return calendar.timegm(time.strptime(stamp, UNTIL))


def test_a_kicked_client_cannot_come_back_with_its_token_or_nick(
    connect: Connect, context: zmq.Context[zmq.Socket[bytes]], broker: RunningBroker
) -> None:
    op = operator(connect)
    bob = connect("bob")
    started = time.time()
    op.send(cmd.Kick("bob", 60, "spam"))
    bob.expect(ev.Kicked, by="op", reason="spam")
    # The same client at once, same nick, same token: refused, saying until when.
    refusal = refused_hello(context, broker.endpoint, "bob", bob.token)
    assert refusal.reason.startswith("nick bob is barred until ")
    assert refusal.reason.endswith(" (kicked by op: spam)")
    assert started + 60 - 1 <= barred_until(refusal.reason) <= time.time() + 60 + 1
    # The nick in another case, or a look-alike, is barred as well, whatever the token.
    for nick in ("BOB", "b0b"):
        assert "is barred until" in refused_hello(context, broker.endpoint, nick).reason
    # The token of the kicked session resumes nothing, under any nick.
    ended = refused_hello(context, broker.endpoint, "robert", bob.token)
    assert ended.reason == (
        "this session was ended (kicked by op: spam): a new session needs a new token"
    )
    # Others are welcome.
    assert Peer(context, broker.endpoint).register("carol").nick == "carol"


def test_a_kick_for_no_time_bars_nothing_but_still_ends_the_session(
    connect: Connect, context: zmq.Context[zmq.Socket[bytes]], broker: RunningBroker
) -> None:
    op = operator(connect)
    bob = connect("bob")
    op.send(cmd.Kick("bob", 0, "cool down"))
    bob.expect(ev.Kicked, by="op", reason="cool down")
    refused = refused_hello(context, broker.endpoint, "bob", bob.token)
    assert refused.reason.startswith("this session was ended (kicked by op: cool down)")
    # A new session (a new token) may take the nick again at once.
    assert Peer(context, broker.endpoint).register("bob").nick == "bob"


def test_ban_bars_an_absent_nick_until_unban(
    connect: Connect, context: zmq.Context[zmq.Socket[bytes]], broker: RunningBroker
) -> None:
    op = operator(connect)
    watcher = connect("watcher")
    op.send(cmd.Ban("mallory", 3600, "trolling"))
    notice = watcher.expect_after_presence(ev.Notice)
    assert notice.text.startswith("op barred mallory until ")
    assert notice.text.endswith(" (1h): trolling")
    refusal = refused_hello(context, broker.endpoint, "Mallory")
    assert refusal.reason.endswith("(banned by op: trolling)")
    assert barred_until(refusal.reason) >= time.time() + 3600 - 60
    op.send(cmd.Unban("MALLORY"))
    watcher.expect_after_presence(ev.Notice, text="op lifted the bar on mallory")
    mallory = connect("mallory")
    # Unban of a nick that is not barred, and /ban from a non-operator, are refused.
    op.send(cmd.Unban("nobody"))
    assert op.on_connection(ev.Error).code == ErrorCode.NO_SUCH_NICK
    mallory.send(cmd.Ban("op", 60, "revenge"))
    assert mallory.on_connection(ev.Error).code == ErrorCode.FORBIDDEN


def test_ban_of_a_present_user_kicks_it(
    connect: Connect, context: zmq.Context[zmq.Socket[bytes]], broker: RunningBroker
) -> None:
    op = operator(connect)
    watcher = connect("watcher")
    bob = connect("bob")
    watcher.expect(ev.Joined, nick="bob")
    op.send(cmd.Ban("bob", 7 * 86400, "again"))
    bob.expect(ev.Kicked, by="op", reason="again")
    watcher.expect(ev.Left, nick="bob", reason="banned by op: again")
    assert watcher.expect(ev.Notice).text.endswith(" (7d): again")
    refusal = refused_hello(context, broker.endpoint, "bob")
    assert refusal.reason.endswith("(banned by op: again)")


def test_a_client_kicked_while_its_link_was_down_does_not_rejoin(
    broker: RunningBroker, connect: Connect
) -> None:
    op = operator(connect)
    relay = Relay(port_of(broker.endpoint))

    async def scenario() -> None:
        async with bot_client(relay.endpoint, "alice") as alice:
            await expect(op, ev.Joined, nick="alice")
            # alice's link goes down; meanwhile the operator kicks her: the KICKED is lost.
            relay.close()
            op.send(cmd.Kick("alice", 60, "rude"))
            await expect(op, ev.Left, nick="alice", reason="kicked by op: rude")
            relay.open()
            # Back on the network, she asks to resume, is refused, and stops there.
            ending = await asyncio.wait_for(alice.task, 4 * WAIT_S)
            assert ending.exit_code == 1
            assert ending.reason.startswith("not allowed back (403): nick alice is barred until")
            assert ending.reason.endswith("(kicked by op: rude)")
            assert alice.session.connection is None or not alice.session.registered

    try:
        asyncio.run(scenario())
    finally:
        relay.stop()
    assert op.users() == ("op",)


@pytest.mark.parametrize(
    ("word", "seconds"),
    [("90s", 90), ("10m", 600), ("1h30m", 5400), ("7d", 604800), ("2w", 1209600), ("0s", 0)],
)
def test_duration_syntax(word: str, seconds: int) -> None:
    assert parse_duration(word) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("word", ["10", "m", "5x", "10m1h", "spam", ""])
def test_words_that_are_not_durations_start_the_reason(word: str) -> None:
    assert parse_duration(word) is None
    assert split_duration(f"{word} more".strip(), 60) == (60, f"{word} more".strip())


def test_a_bar_ends_when_its_time_is_up_and_the_console_lists_and_lifts_bars() -> None:
    core = ChatCore(ADMIN_TOKEN, wall_clock=lambda: 1_700_000_000.0)
    token = "bob-session-token-000000"
    core.receive(b"\0bob", encode(cmd.Hello("bob", token)), 100.0)
    result = run_console_line(core, "/kick bob 90s enough", 100.0)
    assert result.output == ["kicked bob, barred for 1m30s"]
    assert run_console_line(core, "/bans", 150.0).output == [
        "1 barred",
        "bob until 2023-11-14 22:14:50 UTC (kicked by operator: enough)",
    ]
    fresh = "new-session-token-000000"
    refused = core.receive(b"\0bob2", encode(cmd.Hello("bob", fresh)), 189.9)
    assert isinstance(refused[0][1], ev.Error) and refused[0][1].code == ErrorCode.FORBIDDEN
    welcomed = core.receive(b"\0bob2", encode(cmd.Hello("bob", fresh)), 190.0)
    assert isinstance(welcomed[-1][1], ev.Welcome)
    run_console_line(core, "/ban eve 2h", 200.0)
    assert run_console_line(core, "/unban Eve", 200.0).output == ["lifted the bar on Eve"]
    assert run_console_line(core, "/unban eve", 200.0).output == ["nick eve is not barred"]
    assert run_console_line(core, "/ban eve 400d", 200.0).output == ["400d is longer than 365d"]


def test_a_bar_on_a_look_alike_does_not_stop_a_present_user_resuming() -> None:
    core = ChatCore(ADMIN_TOKEN)
    token = "bob-session-token-000000"
    core.receive(b"\0bob", encode(cmd.Hello("bob", token)), 100.0)
    run_console_line(core, "/ban b0b 1h look-alike", 100.0)
    assert core.users() == ("bob",)  # not the same nick: bob stays
    resumed = core.receive(b"\0bob-2", encode(cmd.Hello("bob", token)), 101.0)
    assert isinstance(resumed[0][1], ev.Welcome)
    # Anyone else asking for bob's nick is told about the bar.
    other = core.receive(b"\0eve", encode(cmd.Hello("bob", "eve-session-token-000000")), 101.0)
    assert isinstance(other[0][1], ev.Error) and other[0][1].code == ErrorCode.FORBIDDEN
