"""The full-screen client, driven through its real Application (pipe input, dummy output)
against the real broker; other users are plain DEALER peers."""

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import zmq.auth
from prompt_toolkit.application import create_app_session
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from broker import BrokerConfig, BrokerServer
from client.connection import CurveKeys
from client.pane import SCROLLBACK_LINES
from client.state import ChatState, LinkState
from client.ui import ChatUI
from messages import commands as cmd
from messages import events as ev
from tests.client_helpers import (
    eventually,
    expect,
    running_client,
    status_text,
    users_position,
)
from tests.conftest import ADMIN_TOKEN, RunningBroker
from tests.peers import Peer

Connect = Callable[..., Peer]


def test_plain_line_goes_to_everyone_and_msg_only_to_its_recipient(
    broker: RunningBroker, connect: Connect
) -> None:
    bob, carol = connect("bob"), connect("carol")

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice") as alice:
            alice.type("hello all\r")
            await expect(bob, ev.Message, sender="alice", text="hello all")
            await expect(carol, ev.Message, sender="alice", text="hello all")

            alice.type("/msg bob psst\r")
            await expect(bob, ev.PrivateMessage, sender="alice", recipient="bob", text="psst")
            alice.type("after\r")
            # Carol's next message is the later public one: the private line skipped her.
            await expect(carol, ev.Message, sender="alice", text="after")
            await alice.wait_for_pane("[alice → bob] psst")
            await alice.wait_for_pane("<alice> after")

    asyncio.run(scenario())


def test_query_target_from_command_key_and_mouse(broker: RunningBroker, connect: Connect) -> None:
    bob = connect("bob")

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice") as alice:
            ui = alice.client.ui
            alice.type("/query BOB\r")
            await eventually(lambda: alice.client.state.target == "bob", "target bob")
            assert ui.prompt_fragments() == [("class:prompt", "[to bob] > ")]
            alice.type("just you\r")
            await expect(bob, ev.PrivateMessage, recipient="bob", text="just you")

            alice.type("/all\r")
            await eventually(lambda: alice.client.state.target is None, "target all")
            assert ui.prompt_fragments() == [("class:prompt", "[all] > ")]
            alice.type("everyone\r")
            await expect(bob, ev.Message, text="everyone")

            # Ctrl-N cycles: all -> bob -> all (alice herself is not a target).
            alice.type("\x0e")
            await eventually(lambda: alice.client.state.target == "bob", "Ctrl-N to bob")
            alice.type("\x0e")
            await eventually(lambda: alice.client.state.target is None, "Ctrl-N back to all")

            # A mouse click (xterm SGR press and release) on bob's row of the side panel,
            # the rightmost window: below the buffers, rows are the title, all, alice, bob.
            info = ui.users_window.render_info
            assert info is not None
            column = ui.app.output.get_size().columns - info.window_width + 3
            row = users_position(alice)[0] + 4  # (terminal rows count from 1)
            alice.type(f"\x1b[<0;{column};{row}M\x1b[<0;{column};{row}m")
            await eventually(lambda: alice.client.state.target == "bob", "click on bob")

            # The query target leaves: the conversation stays private, and the pane says so.
            bob.send(cmd.Quit("bye"))
            await alice.wait_for_pane("bob is not here; your lines still go to bob only")
            assert alice.client.state.target == "bob"
            assert ui.prompt_fragments() == [("class:prompt", "[to bob] > ")]
            carol = connect("carol")
            alice.type("still private\r")
            await alice.wait_for_pane("still private ✗ no such nick: bob")
            # Nothing went to everyone: carol's next event is alice's deliberate line.
            alice.type("/all\r")
            alice.type("now public\r")
            await expect(carol, ev.Message, sender="alice", text="now public")

    asyncio.run(scenario())


def test_tab_completes_who_joined_since_start_and_not_who_left(
    broker: RunningBroker, connect: Connect
) -> None:
    carol, cecil = connect("carol"), connect("cecil")

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice") as alice:
            state = alice.client.state
            dave = connect("dave")
            await eventually(lambda: state.find_user("dave") is not None, "dave in the list")
            alice.type("da\t")
            await eventually(lambda: alice.input_text == "dave: ", "'da' completed to 'dave: '")

            alice.type("\x15")  # Ctrl-U clears the line
            carol.send(cmd.Quit("bye"))
            await eventually(lambda: state.find_user("carol") is None, "carol gone")
            # Only cecil still matches "c": with carol offered too, she could come first.
            alice.type("c\t")
            await eventually(lambda: alice.input_text == "cecil: ", "'c' completed to 'cecil: '")
            alice.type("\x15/msg D\t")
            await eventually(lambda: alice.input_text == "/msg dave ", "/msg nick completion")
            dave.close()
            cecil.close()

    asyncio.run(scenario())


def test_incoming_message_leaves_the_half_typed_line_alone(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice") as alice:
            alice.type("half typ")
            await eventually(lambda: alice.input_text == "half typ", "typed text")
            bob.say("interrupting \x1b[2J\u202e you, alice")
            await alice.wait_for_pane("<bob> interrupting ^[[2J<U+202E> you, alice")
            assert alice.input_text == "half typ"
            assert alice.client.ui.input.cursor_position == len("half typ")
            await expect(bob, ev.Message, sender="bob")  # his own echo
            alice.type("ed\r")
            await expect(bob, ev.Message, sender="alice", text="half typed")

    asyncio.run(scenario())


def test_unknown_command_is_a_hint_and_sends_nothing(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice") as alice:
            alice.type("/foo bar\r")
            await alice.wait_for_pane("unknown command /foo — /help lists commands")
            alice.type("//foo is literal\r")
            # Bob's next message is the literal line: /foo sent him nothing.
            await expect(bob, ev.Message, text="/foo is literal")

    asyncio.run(scenario())


def test_quit_exits_the_app_and_the_others_see_the_reason(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice") as alice:
            alice.type("/quit see you\r")
            ending = await asyncio.wait_for(alice.task, 5)
            assert ending.exit_code == 0
            assert alice.client.quit_sent
        await expect(bob, ev.Left, nick="alice", reason="see you")

    asyncio.run(scenario())


def test_kick_closes_the_app_with_the_reason(broker: RunningBroker, connect: Connect) -> None:
    bob = connect("bob")

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice") as alice:
            bob.send(cmd.Admin(broker.admin_token))
            await expect(bob, ev.Operator)
            bob.send(cmd.Kick("alice", 60, "flooding"))
            ending = await asyncio.wait_for(alice.task, 5)
            # An orderly end: the reason is printed, the exit status is 0.
            assert ending.exit_code == 0
            assert ending.reason == "you were kicked by bob (flooding)"
            assert alice.client.state.link is LinkState.CLOSED

    asyncio.run(scenario())


def test_operator_status_and_server_shutdown(broker: RunningBroker) -> None:
    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice") as alice:
            alice.type(f"/admin {broker.admin_token}\r")
            await eventually(lambda: alice.client.state.operator, "operator status")
            status = "".join(fragment[1] for fragment in alice.client.ui.status_fragments())
            assert "operator" in status and "connected" in status
            alice.type("/shutdown maintenance\r")
            ending = await asyncio.wait_for(alice.task, 5)
            assert ending.exit_code == 0
            assert ending.reason == "the server is shutting down (maintenance)"

    asyncio.run(scenario())


def test_the_input_line_is_the_last_row_and_no_taller_than_its_text(
    broker: RunningBroker,
) -> None:
    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice") as alice:
            ui = alice.client.ui

            def input_rows() -> int | None:
                info = ui.input_window.render_info
                return None if info is None else info.window_height

            await eventually(lambda: input_rows() == 1, "a one-row input line")
            rows = ui.app.output.get_size().rows
            pane = ui.pane.window.render_info
            assert pane is not None
            # The pane, then the status line, then the input line at the very bottom.
            assert pane.window_height == rows - 2

    asyncio.run(scenario())


def test_secure_shows_in_the_status_line(tmp_path: Path) -> None:
    _public_file, secret_file = zmq.auth.create_certificates(tmp_path, "server")
    public, secret = zmq.auth.load_certificate(secret_file)
    assert secret is not None
    config = BrokerConfig(
        bind="tcp://127.0.0.1:*", admin_token=ADMIN_TOKEN, curve_secret_key=secret
    )
    server = BrokerServer(config)
    thread = threading.Thread(target=server.run, name="broker", daemon=True)
    thread.start()
    running = RunningBroker(server, thread)

    async def scenario() -> None:
        keys = CurveKeys.for_server(public)
        async with running_client(running.endpoint, "alice", keys) as alice:
            await eventually(lambda: "secure" in status_text(alice.client), "secure")
            alice.type("encrypted\r")
            await alice.wait_for_pane("<alice> encrypted ✓")

    try:
        asyncio.run(scenario())
    finally:
        running.stop()


def test_an_own_private_line_is_confirmed_by_the_ack_then_the_delivery(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice") as alice:
            await eventually(lambda: "bob" in alice.client.state.users, "alice knows bob")
            alice.type("/msg bob psst\r")
            private = await expect(bob, ev.PrivateMessage, sender="alice", text="psst")
            # No echo comes back: the ACK alone turns … into ✓.
            await alice.wait_for_pane("[alice → bob] psst ✓")
            bob.send(cmd.Received(private.msg_id, private.sender))
            await alice.wait_for_pane("[alice → bob] psst ✓✓")
            assert sum("psst" in line for line in alice.pane_lines()) == 1

    asyncio.run(scenario())


def test_the_user_list_is_unknown_until_the_server_names_everyone(
    broker: RunningBroker, connect: Connect
) -> None:
    connect("bob")
    state = ChatState("alice", broker.endpoint)
    state.apply(ev.Welcome("alice", 2000, "e1", 0, (), 5556))
    with create_pipe_input() as keyboard, create_app_session(input=keyboard, output=DummyOutput()):
        title = ChatUI(state, lambda line: None).user_list_fragments()[0]
    assert title == ("class:users.title", " … here\n")

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice") as alice:
            ui = alice.client.ui

            def panel() -> str:
                return "".join(fragment[1] for fragment in ui.user_list_fragments())

            # WELCOME names nobody; the USERS answer that follows it names everyone.
            await eventually(lambda: panel().startswith(" 2 here\n"), "the user list")
            assert "bob" in panel()
            await alice.wait_for_pane("2 users: alice bob")

    asyncio.run(scenario())


class CountingLines(list[StyleAndTextTuples]):
    """The pane's lines, counting how many are read (by index or by slice)."""

    reads = 0

    def __getitem__(self, index: Any) -> Any:
        item = super().__getitem__(index)
        self.reads += len(item) if isinstance(index, slice) else 1
        return item

    def __iter__(self) -> Iterator[StyleAndTextTuples]:
        self.reads += len(self)
        return super().__iter__()


def test_a_redraw_reads_the_lines_on_screen_not_the_whole_scrollback(
    broker: RunningBroker,
) -> None:
    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice") as alice:
            ui, state = alice.client.ui, alice.client.state
            ui.show([state.info(f"line {n}") for n in range(SCROLLBACK_LINES)])
            lines = CountingLines(ui.pane.lines)
            ui.pane.lines = lines
            renders = ui.app.render_counter
            ui.show([state.info("one more")])
            await eventually(lambda: ui.app.render_counter > renders, "a redraw")
            rows = ui.app.output.get_size().rows
            # However long the scrollback, a redraw costs what fits on the screen.
            assert 0 < lines.reads <= 2 * rows
            assert alice.pane_lines()[-1].endswith("-!- one more")

    asyncio.run(scenario())
