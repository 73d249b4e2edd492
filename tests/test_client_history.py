"""History in the client (issue 11): what was said before joining, dimmed above a line where
now begins, older pages by scrolling up, /history, /search and /query, the unread marker,
and the input history kept across runs. Real broker, real sockets, the real Application."""

import asyncio
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import zmq
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.data_structures import Size
from prompt_toolkit.document import Document

from broker import BrokerConfig, BrokerServer
from client.commands import SearchHistory, ShowHistory, help_lines, parse_line
from client.completion import ChatCompleter
from client.history import InputHistory, SeenFile
from client.identity import Identity
from client.pane import MessagePane
from client.render import plain_line
from client.state import ChatState, day
from messages import commands as cmd
from messages import events as ev
from tests.client_helpers import (
    WAIT_S,
    BotClient,
    RunningClient,
    bot_client,
    eventually,
    running_client,
    status_text,
)
from tests.conftest import ADMIN_TOKEN, RANDOM_LOOPBACK, RunningBroker, serve
from tests.peers import Peer

Connect = Callable[..., Peer]
#: A small terminal: a page of history does not fit in its pane.
SMALL = Size(rows=12, columns=60)
PAGE_UP = "\x1b[5~"


def said(peer: Peer, *texts: str) -> list[int]:
    """`peer` says each of `texts`; returns their broadcast numbers once all are handled."""
    for text in texts:
        peer.say(text)
    seqs = []
    for text in texts:
        while (message := peer.expect_after_presence(ev.Message)).text != text:
            pass  # said before
        seqs.append(message.seq)
    return seqs


async def search(client: BotClient, words: str, hits: int) -> list[str]:
    """The lines of the answer to `/search words` (header first) once it has `hits` hits:
    the broker indexes what was said for search within a moment, so the search is made
    again until then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    header = f"search {words!r}: {hits} hit"

    start = 0

    def answer() -> list[str]:
        """The lines shown since the last search was typed, from its answer's header on."""
        lines = [plain_line(entry) for entry in client.entries[start:]]
        headers = [n for n, line in enumerate(lines) if f"search {words!r}:" in line]
        return lines[headers[0] :] if headers else []

    while True:
        start = len(client.entries)
        await client.session.handle_line(f"/search {words}")
        await eventually(lambda: bool(answer()), f"an answer to /search {words}")
        # The hits come with their header, in one batch.
        lines = answer()
        if header in lines[0]:
            return lines[: hits + 1]
        assert loop.time() < deadline, f"/search {words} never found {hits}"


async def scroll_to_the_beginning(client: RunningClient, oldest: str) -> None:
    """PageUp until `oldest` shows in the current buffer, then until the history begins."""
    pane = client.client.ui.pane
    while oldest not in client.pane_text():
        client.type(PAGE_UP)
        await eventually(lambda: not pane.pinned or oldest in client.pane_text(), "scroll")
    await client.wait_for_pane("the history begins here")


def index(lines: list[str], needle: str) -> int:
    """The index of the first line of `lines` that holds `needle`."""
    return next(n for n, line in enumerate(lines) if needle in line)


def styles_of(client: RunningClient, needle: str) -> str:
    """The styles of the pane's line that holds `needle`, joined."""
    for line in client.client.ui.pane.lines:
        if needle in "".join(fragment[1] for fragment in line):
            return " ".join(fragment[0] for fragment in line)
    raise AssertionError(f"{needle!r} is not in the pane")


def test_joining_shows_the_earlier_conversation_dimmed_above_where_now_begins(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")
    seqs = said(bob, "earlier one", "earlier two", "earlier three")

    async def scenario() -> None:
        async with running_client(
            broker.endpoint, "alice", history_lines=50, last_seen=lambda epoch: seqs[0]
        ) as alice:
            await alice.wait_for_pane("now ──")
            lines = alice.pane_lines()
            today = day(_now_ms())
            assert lines[0].endswith(f"──────── {today} ────────")
            one, unread, two = (index(lines, n) for n in ("earlier one", "2 unread", "earlier two"))
            assert one < unread < two < index(lines, "──────── now ────────")
            assert index(lines, "now ──") < index(lines, "connected to")
            assert "class:history" in styles_of(alice, "earlier two")
            assert "class:history" not in styles_of(alice, "connected to")
            assert " 2 unread " in status_text(alice.client)
            # Said after joining: live, below the line.
            bob.say("live one")
            await alice.wait_for_pane("<bob> live one")
            assert "class:history" not in styles_of(alice, "live one")
            # Typing reads what was unread.
            alice.type("x")
            await eventually(lambda: "unread" not in status_text(alice.client), "no unread")

    asyncio.run(scenario())


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_the_next_run_marks_what_came_since_as_unread(
    broker: RunningBroker, connect: Connect, tmp_path: Path
) -> None:
    bob = connect("bob")
    said(bob, "seen one")
    seen = SeenFile(tmp_path / "seen.json")

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice", history_lines=50, seen=seen) as a:
            await a.wait_for_pane("now ──")
            assert "unread" not in a.pane_text()  # a first run: nothing is known unread
            bob.say("seen two")
            await a.wait_for_pane("<bob> seen two")
        await asyncio.to_thread(said, bob, "missed one", "missed two")
        # (The first run's session is still registered: another nick, the same state.)
        async with running_client(broker.endpoint, "alice2", history_lines=50, seen=seen) as a:
            await a.wait_for_pane("now ──")
            lines = a.pane_lines()
            assert index(lines, "seen two") < index(lines, "── 2 unread ──")
            assert index(lines, "── 2 unread ──") < index(lines, "missed one")
            assert " 2 unread " in status_text(a.client)

    asyncio.run(scenario())


def test_scrolling_up_past_the_top_fetches_the_older_page_above(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")
    said(bob, *(f"old {n}" for n in range(6)))

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice", size=SMALL, history_lines=2) as alice:
            await alice.wait_for_pane("now ──")
            assert "old 3" not in alice.pane_text() and "<bob> old 4" in alice.pane_text()
            pane = alice.client.ui.pane
            await scroll_to_the_beginning(alice, "old 0")
            lines = alice.pane_lines()
            assert index(lines, "history begins") < index(lines, "old 0") < index(lines, "old 3")
            assert index(lines, "old 3") < index(lines, "old 4") < index(lines, "now ──")
            # One date line for the day, at the top: the older page took it over.
            assert sum(day(_now_ms()) in line for line in lines) == 1
            # Nothing older: scrolling further asks for nothing.
            assert pane.can_prepend
            before = len(pane.lines)
            alice.type(PAGE_UP)
            alice.client.session.request_older()
            await alice.client.session.flush()
            assert len(pane.lines) == before

    asyncio.run(scenario())


def test_history_search_and_query_show_what_this_user_may_see(
    broker: RunningBroker, connect: Connect
) -> None:
    bob, carol = connect("bob"), connect("carol")
    said(bob, "the red fox", "a blue whale")

    def privates() -> None:
        # To someone present: a private is stored only once it is passed on.
        bob.tell("alice", "red alert for alice")
        bob.tell("carol", "red herring for carol")
        carol.tell("bob", "hello bob")
        bob.sync()
        carol.sync()

    async def scenario() -> None:
        # Private history is kept for a nick's owner: alice owns hers.
        async with bot_client(broker.endpoint, "alice", identity=Identity.generate()) as alice:
            session = alice.session
            await eventually(lambda: session.state.users_known, "the user list")
            await session.handle_line("/register")
            await eventually(
                lambda: any("registered to your identity" in x for x in alice.lines()), "owned"
            )
            await asyncio.to_thread(privates)
            await eventually(lambda: any("red alert" in x for x in alice.lines()), "the private")
            lines = await search(alice, "red", 2)
            hits = lines[1:]
            assert hits[0].endswith("<bob> the red fox")
            assert hits[1].endswith("[bob -> alice] red alert for alice")
            assert hits[0][:10] == _date_today() and hits[0][10] == " "
            assert not any("herring" in line for line in lines)

            await session.handle_line("/history 1")
            await eventually(lambda: any("the last 1 message" in x for x in alice.lines()), "h")
            await session.handle_line("/query bob")
            await eventually(lambda: any("with bob" in line for line in alice.lines()), "query")
            await session.flush()
            lines = alice.lines()
            shown = lines[index(lines, "the last 1 message") :]
            assert shown[1:3] == [f"-- {day(_now_ms())} --", "<bob> a blue whale"]
            query = lines[index(lines, "with bob") :]
            assert any(line.endswith("[bob -> alice] red alert for alice") for line in query)
            assert not any("hello bob" in line for line in query)
            assert session.state.target == "bob"

    asyncio.run(scenario())


def _date_today() -> str:
    return time.strftime("%Y-%m-%d", time.localtime(_now_ms() / 1000))


def test_typed_lines_come_back_with_up_in_the_next_run(
    broker: RunningBroker, tmp_path: Path
) -> None:
    path = tmp_path / "state" / "input-history"

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice", input_history=InputHistory(path)) as a:
            a.type("first line\r")
            a.type("/search whale\r")
            await a.wait_for_pane("search 'whale'")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        # (The first run's session is still registered: another nick.)
        async with running_client(broker.endpoint, "alice2", input_history=InputHistory(path)) as a:
            await eventually(lambda: a.client.ui.input.history.get_strings() != [], "loaded")
            a.type("\x1b[A")
            await eventually(lambda: a.input_text == "/search whale", "the last line back")
            a.type("\x1b[A")
            await eventually(lambda: a.input_text == "first line", "the line before")

    asyncio.run(scenario())


def test_the_input_history_file_is_private_and_bounded(tmp_path: Path) -> None:
    path = tmp_path / "input-history"
    history = InputHistory(path, limit=3)
    for n in range(8):
        history.store_string(f"line {n}\nsecond row")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = InputHistory(path, limit=3)
    assert list(again.load_history_strings()) == [f"line {n}\nsecond row" for n in (7, 6, 5)]
    # The file was rewritten with the newest only, and reads the same.
    assert path.read_text().count("+line") == 3
    assert next(iter(InputHistory(path, limit=3).load_history_strings())) == "line 7\nsecond row"
    # The operator token is a secret: not written.
    again.store_string("/admin s3cret-operator-token")
    again.store_string("/OPER s3cret-operator-token")
    assert "s3cret" not in path.read_text()


def test_the_last_broadcast_seen_is_kept_per_server_and_epoch(tmp_path: Path) -> None:
    seen = SeenFile(tmp_path / "seen.json")
    assert seen.last_seen("tcp://a:1", "e1") is None
    seen.save("tcp://a:1", "e1", 41)
    seen.save("tcp://b:2", "e9", 7)
    assert seen.last_seen("tcp://a:1", "e1") == 41
    assert seen.last_seen("tcp://a:1", "e2") is None  # another database: numbers differ
    assert stat.S_IMODE(os.stat(tmp_path / "seen.json").st_mode) == 0o600
    (tmp_path / "seen.json").write_text("{not json")
    assert seen.last_seen("tcp://a:1", "e1") is None


def test_history_commands_parse_and_help_lists_them() -> None:
    assert parse_line("/history", None) == ShowHistory(50)
    assert parse_line("/history 7", None) == ShowHistory(7)
    assert "usage" in str(parse_line("/history 500", None))
    assert parse_line("/search red  fox", None) == SearchHistory("red  fox")
    text = "\n".join(help_lines())
    assert "/history [N]" in text and "/search WORDS" in text
    state = ChatState("alice", "tcp://127.0.0.1:5555")
    state.apply(ev.Welcome("alice", 2000, "e1", 7, (), 5556))
    state.apply(ev.UserList(0, ("alice", "bob")))
    state.apply(ev.Message(9, "m1", "bob", "hi", 5))
    # What the next run counts unread from: all before joining, and what came since.
    assert (state.epoch, state.last_seq) == ("e1", 9)
    completer = ChatCompleter(state)

    def completions(line: str) -> list[str]:
        event = CompleteEvent(completion_requested=True)
        return [c.text for c in completer.get_completions(Document(line, len(line)), event)]

    assert completions("/his") == ["/history "]
    assert completions("/se") == ["/search "]
    assert completions("/query b") == ["bob "]


def test_after_a_restart_a_newcomer_sees_and_finds_what_was_said_before(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    config = BrokerConfig(bind=RANDOM_LOOPBACK, admin_token=ADMIN_TOKEN, db=str(tmp_path / "db"))
    first = serve(BrokerServer(config))
    alice = Peer(context, first.endpoint)
    alice.register("alice")
    said(alice, "said before the restart")
    alice.close()
    first.stop()
    again = serve(BrokerServer(config))

    async def scenario() -> None:
        async with bot_client(again.endpoint, "carol", history_lines=10) as carol:
            await eventually(lambda: any("now --" in line for line in carol.lines()), "history")
            lines = carol.lines()
            backlog = lines[: index(lines, "now --")]
            assert any(line.endswith("<alice> said before the restart") for line in backlog)
            hits = (await search(carol, "restart", 1))[1:]
            assert [hit[17:] for hit in hits] == ["<alice> said before the restart"]

    try:
        asyncio.run(scenario())
    finally:
        again.stop()


def test_the_pane_takes_older_lines_on_top_keeping_its_numbers_and_view() -> None:
    pane = MessagePane()
    pane.resize(40, 3)
    asked: list[str] = []
    pane.on_top = lambda: asked.append("older")
    numbers = [pane.add([[("", f"line {n}")]]) for n in range(6)]
    pane.scroll_up(2)
    assert asked == []  # the first row is not on screen yet
    shown = pane.screen()
    assert pane.prepend([[("", "older 0")], [("", "older 1")]]) == 2
    assert pane.screen() == shown  # what a scrolled-up pane shows stays
    assert pane.replace(numbers[0], [("", "line 0 again")])
    assert pane.lines[2] == [("", "line 0 again")]
    pane.drop_first()
    assert pane.lines[0] == [("", "older 1")] and pane.screen() == shown
    pane.scroll_up(10)  # to the top
    pane.scroll_up(1)  # and past it
    assert asked == ["older"]


def test_scrolling_up_in_a_rooms_buffer_fetches_its_older_posts(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")
    bob.send(cmd.Enter("#dev"))
    bob.on_connection(ev.RoomState)
    for n in range(6):
        bob.send(cmd.Post("#dev", bob.next_id(), f"old {n}"))
        bob.on_connection(ev.Ack)

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice", size=SMALL, history_lines=2) as alice:
            alice.type("/join #dev\r")
            await alice.wait_for_pane("<bob> old 5")
            assert "old 3" not in alice.pane_text()
            await scroll_to_the_beginning(alice, "old 0")  # in #dev's buffer
            lines = alice.pane_lines()
            assert index(lines, "history begins") < index(lines, "old 0") < index(lines, "old 4")
            assert "#dev <bob>" not in alice.pane_text()  # its own buffer names no room
            # #general's pane got none of it.
            alice.type("\x1b1")
            await eventually(lambda: alice.client.ui.buffers.current_number == 1, "Alt-1")
            assert "old" not in alice.pane_text()

    asyncio.run(scenario())
