"""What the full-screen client draws, and that nothing breaks it: the real Application on a
pipe input and a dummy output of a small terminal (60 x 15), against the real broker. What
is on screen is read from the last drawing, as a person would see it."""

import asyncio
import logging
import sys
from collections.abc import Callable

import pytest
from prompt_toolkit.data_structures import Size
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

from client.pane import wrap
from client.uilog import PaneLogHandler
from messages import commands as cmd
from messages import events as ev
from tests.client_helpers import (
    RunningClient,
    eventually,
    expect,
    running_client,
    users_position,
)
from tests.conftest import RunningBroker
from tests.peers import Peer

Connect = Callable[..., Peer]

#: The small terminal of the tests: 60 columns, 15 rows.
SMALL = Size(rows=15, columns=60)
#: Escape sequences of the PageUp and PageDown keys.
PAGE_UP, PAGE_DOWN = "\x1b[5~", "\x1b[6~"


def pane_rows(client: RunningClient) -> list[str]:
    """The message pane's rows as last drawn (the left part of the screen above the status
    line)."""
    info = client.client.ui.pane.window.render_info
    assert info is not None, "the pane is not drawn yet"
    return [row[: info.window_width].rstrip() for row in client.screen()[: info.window_height]]


async def page(client: RunningClient, key: str) -> list[str]:
    """Press `key` and return the pane's rows once redrawn."""
    app = client.client.ui.app
    renders = app.render_counter
    client.type(key)
    await eventually(lambda: app.render_counter > renders, "a redraw")
    return pane_rows(client)


def test_wrap_breaks_at_spaces_and_inside_words_longer_than_a_row() -> None:
    def texts(line: str, width: int, indent: int = 0) -> list[str]:
        rows = wrap([("", line)], width, indent)
        return ["".join(fragment[1] for fragment in row) for row in rows]

    assert texts("aaa bbb ccc", 7) == ["aaa bbb", "ccc"]
    # The space where a row is full is the break: on neither row.
    assert texts("aaa bbb ccc", 8) == ["aaa bbb ", "ccc"]
    assert texts("aaaaaaaaaa bb", 4) == ["aaaa", "aaaa", "aa ", "bb"]
    # A wide character never straddles two rows.
    assert texts("ab日本", 3) == ["ab", "日", "本"]
    assert texts("", 5) == [""]
    # Continuation rows are indented; a word longer than a row is cut after the indent.
    assert texts("12:00 aaa bbb cccccccccc", 9, 2) == ["12:00 aaa", "  bbb ", "  ccccccc", "  ccc"]
    # Styles survive the cut.
    assert wrap([("class:a", "xx "), ("class:b", "yy")], 3) == [
        [("class:a", "xx ")],
        [("class:b", "yy")],
    ]


def test_a_message_taller_than_the_pane_is_drawn_and_paged_through_row_by_row(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")
    words = [f"w{n:03d}" for n in range(150)]

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice", size=SMALL) as alice:
            pane = alice.client.ui.pane
            bob.send(cmd.Say("m1", " ".join(words)))
            bob.send(cmd.Say("m2", "after"))
            await alice.wait_for_screen(
                lambda screen: "<bob> after" in "".join(screen), "the last message drawn"
            )
            rows = pane_rows(alice)
            # The newest rows fill the pane: the end of the long message, then "after".
            assert len(rows) == SMALL.rows - 2
            assert rows[-1].endswith("<bob> after")
            assert rows[-2].endswith(words[-1])
            assert all(rows), rows
            seen = [word for row in rows for word in row.split() if word in words]
            # Page by page up to the first row, every row of the long message shows.
            while "-!- connected to" not in rows[0]:
                rows = await page(alice, PAGE_UP)
                assert all(rows), f"a blank row in {rows}"
                shown = [word for row in rows for word in row.split() if word in words]
                assert shown == sorted(shown), rows
                seen = shown + seen
                assert len(seen) < 10 * len(words), "never reached the top"
            assert sorted(set(seen)) == words
            # Past the top, the pane stays full: nothing scrolls off the screen.
            assert await page(alice, PAGE_UP) == rows
            # Page by page down again, and pinned to the newest row at the end.
            while not pane.pinned:
                rows = await page(alice, PAGE_DOWN)
                assert all(rows), rows
            assert rows[-1].endswith("<bob> after")

    asyncio.run(scenario())


def test_page_up_keeps_a_scrolled_pane_still_and_page_down_pins_it_again(
    broker: RunningBroker,
) -> None:
    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice", size=SMALL) as alice:
            ui, state, pane = alice.client.ui, alice.client.state, alice.client.ui.pane
            ui.show([state.info(f"line {n}") for n in range(200)])
            await alice.wait_for_screen(
                lambda screen: "-!- line 199" in "".join(screen), "the newest line"
            )
            # 13 rows, one kept for context: the bottom row moves up 12 rows a page.
            rows = await page(alice, PAGE_UP)
            assert rows[-1].endswith("-!- line 187")
            rows = await page(alice, PAGE_UP)
            assert rows[-1].endswith("-!- line 175")
            assert "more below" in alice.screen()[len(rows)]
            # New lines do not move a scrolled-up pane.
            renders = ui.app.render_counter
            ui.show([state.info("news")])
            await eventually(lambda: ui.app.render_counter > renders, "a redraw")
            assert pane_rows(alice) == rows
            for _ in range(3):
                rows = await page(alice, PAGE_DOWN)
            assert pane.pinned
            assert rows[-1].endswith("-!- news")
            assert rows[-2].endswith("-!- line 199")

    asyncio.run(scenario())


def test_a_typed_escape_sequence_is_no_exception_and_the_chat_goes_on(
    broker: RunningBroker, connect: Connect, capsys: pytest.CaptureFixture[str]
) -> None:
    bob = connect("bob")

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice", size=SMALL) as alice:
            # ESC [ 0 m (a color reset) looks like a mouse report to prompt_toolkit; so do
            # reports with too few numbers, and an X10 report with an unknown button.
            alice.type("\x1b[0m")
            alice.type("\x1b[<1;2m")
            alice.type("\x1b[M\x7f!!")
            alice.type("still here\r")
            await expect(bob, ev.Message, sender="alice", text="still here")
            await alice.wait_for_pane("<alice> still here ✓")
            assert alice.client.ui.app.is_running
            assert "error" not in alice.pane_text()

    asyncio.run(scenario())
    assert "Press ENTER" not in capsys.readouterr().out


def test_an_exception_in_a_key_binding_is_shown_in_the_pane_and_the_chat_goes_on(
    broker: RunningBroker, connect: Connect, capsys: pytest.CaptureFixture[str]
) -> None:
    bob = connect("bob")

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice", size=SMALL) as alice:
            bindings = alice.client.ui.app.key_bindings
            assert isinstance(bindings, KeyBindings)

            @bindings.add("c-t")
            def _broken(event: KeyPressEvent) -> None:
                raise RuntimeError("broken binding")

            alice.type("\x14")  # Ctrl-T
            await alice.wait_for_pane("RuntimeError: broken binding")
            alice.type("after it\r")
            await expect(bob, ev.Message, sender="alice", text="after it")
            assert alice.client.ui.app.is_running

    asyncio.run(scenario())
    assert "Press ENTER" not in capsys.readouterr().out


def test_a_log_record_that_cannot_be_shown_raises_nothing_where_it_was_logged() -> None:
    shown: list[tuple[str, bool]] = []

    def broken(text: str, error: bool) -> None:
        if text == "client.session: 2 users":
            raise ValueError("cannot draw")
        shown.append((text, error))

    async def scenario() -> None:
        handler = PaneLogHandler(broken, asyncio.get_running_loop())
        log = logging.getLogger("client.session")
        handler.handle(log.makeRecord(log.name, logging.WARNING, "", 0, "%d", ("x",), None))
        handler.handle(log.makeRecord(log.name, logging.WARNING, "", 0, "2 users", (), None))

    asyncio.run(scenario())
    assert shown == [
        ("client.session: a log record could not be shown: '%d'", True),
        ("client.session: a log record could not be shown: '2 users'", True),
    ]


def test_logs_go_to_the_pane_while_the_ui_runs_and_back_to_stderr_after(
    broker: RunningBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    # What the client's logging looks like in a terminal: a handler on stderr.
    terminal = logging.StreamHandler(sys.stderr)
    root.addHandler(terminal)
    session_log = logging.getLogger("client.session")
    silent = "broadcast stream silent for 6.0 s: subscribing again"

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice", size=SMALL) as alice:
            session_log.warning(silent)
            await alice.wait_for_pane(f"client.session: {silent}")
            assert capsys.readouterr().err == ""
        assert not any(isinstance(handler, PaneLogHandler) for handler in root.handlers)

    try:
        asyncio.run(scenario())
        session_log.warning("after the UI")
        assert capsys.readouterr().err == "after the UI\n"
    finally:
        root.removeHandler(terminal)


def test_scrolling_up_stops_at_the_top_with_a_full_pane(broker: RunningBroker) -> None:
    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice", size=SMALL) as alice:
            ui, state = alice.client.ui, alice.client.state
            ui.show([state.info(f"line {n}") for n in range(20)])
            await alice.wait_for_screen(
                lambda screen: "-!- line 19" in "".join(screen), "the newest line"
            )
            for _ in range(3):
                rows = await page(alice, PAGE_UP)
            # The oldest rows fill the pane: the first at the top, none blank below.
            assert "connected to" in rows[0]
            assert all(rows), rows

    asyncio.run(scenario())


def panel_rows(client: RunningClient) -> list[str]:
    """The side panel's rows as last drawn (the right part of the screen)."""
    top, height = users_position(client)
    info = client.client.ui.users_window.render_info
    assert info is not None, "the user list is not drawn yet"
    screen = client.screen()[top : top + height]
    return [row.ljust(SMALL.columns)[-info.window_width :].strip() for row in screen]


def test_the_user_list_says_how_many_more_scrolls_and_cuts_long_nicks_with_an_ellipsis(
    broker: RunningBroker, connect: Connect
) -> None:
    long_nick = "a-very-long-nickname-indeed"
    others = [long_nick, *(f"user{n:02d}" for n in range(12))]
    for nick in others:
        connect(nick)

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice", size=SMALL) as alice:
            ui = alice.client.ui
            await eventually(lambda: len(alice.client.state.users) == 14, "14 users")
            await alice.wait_for_screen(
                lambda screen: "+" in "".join(panel_rows(alice)), "a '+N more' row"
            )
            rows = panel_rows(alice)
            # 12 rows below the buffer list: the title, "all" and 9 of the 14 users, then
            # how many are left.
            assert rows[0] == "14 here"
            assert rows[-1] == "+5 more"
            assert rows[1] == "* all"
            info = ui.users_window.render_info
            assert info is not None
            width = info.window_width
            cut = [row for row in rows if row.startswith("a-very")]
            assert cut == [long_nick[: width - 3] + "…"]
            # The wheel scrolls the list to its end: `+N above` then the last users.
            column = SMALL.columns - width + 3
            for _ in range(3):
                alice.type(f"\x1b[<65;{column};5M")  # wheel down over the list
            await alice.wait_for_screen(
                lambda screen: panel_rows(alice)[-1] == "user11", "the last user"
            )
            rows = panel_rows(alice)
            assert rows[1] == "+5 above"
            assert "more" not in "".join(rows)
            # A click on `+N above` goes back up; every user was on one page or the other.
            above = users_position(alice)[0] + 2  # (terminal rows count from 1)
            alice.type(f"\x1b[<0;{column};{above}M\x1b[<0;{column};{above}m")
            await alice.wait_for_screen(
                lambda screen: panel_rows(alice)[1] == "* all", "the top of the list"
            )

    asyncio.run(scenario())


def bracketed(text: str) -> str:
    """`text` pasted in a terminal with bracketed paste on (as prompt_toolkit asks for)."""
    return f"\x1b[200~{text}\x1b[201~"


def test_a_pasted_line_break_is_an_enter_and_the_rest_stays_in_the_input_line(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice", size=SMALL) as alice:
            alice.type("first: ")
            alice.type(bracketed("one\r\ntwo\nthree"))
            await expect(bob, ev.Message, sender="alice", text="first: one")
            await expect(bob, ev.Message, sender="alice", text="two")
            await eventually(lambda: alice.input_text == "three", "the last line left")
            alice.type(" end\r")
            await expect(bob, ev.Message, sender="alice", text="three end")
            assert "^J" not in alice.pane_text()
            # Pasted at the cursor: what was after it follows the paste's last line.
            alice.type("ac\x1b[D")  # Left
            await eventually(lambda: alice.input_text == "ac", "ac typed")
            alice.type(bracketed("b1\nb2"))
            await expect(bob, ev.Message, sender="alice", text="ab1")
            await eventually(lambda: alice.input_text == "b2c", "the rest of the line")
            assert alice.client.ui.input.cursor_position == 2

    asyncio.run(scenario())


def test_a_long_paste_waits_for_enter_then_goes_line_by_line(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")
    lines = [f"line {n}" for n in range(12)]

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice", size=SMALL) as alice:
            ui = alice.client.ui
            alice.type(bracketed("\n".join(lines) + "\n"))
            await alice.wait_for_pane("12 lines pasted: Enter sends them")
            assert alice.input_text == "\n".join(lines)
            assert ui.prompt_fragments() == [("class:prompt", "[all] 12 lines > ")]
            alice.type("\r")
            for line in lines:
                await expect(bob, ev.Message, sender="alice", text=line)
            await eventually(lambda: alice.input_text == "", "the input line cleared")

    asyncio.run(scenario())


def test_escape_drops_a_paste_that_waits(broker: RunningBroker, connect: Connect) -> None:
    bob = connect("bob")

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice", size=SMALL) as alice:
            alice.type(bracketed("\n".join(f"secret {n}" for n in range(8))))
            await alice.wait_for_pane("8 lines pasted")
            alice.type("\x1b")
            await alice.wait_for_pane("pasted lines dropped")
            assert alice.input_text == ""
            alice.type("after\r")
            # Bob's first message is the line typed after: nothing of the paste went.
            await expect(bob, ev.Message, sender="alice", text="after")

    asyncio.run(scenario())
