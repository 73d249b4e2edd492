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

from client.uilog import PaneLogHandler
from messages import events as ev
from tests.client_helpers import expect, running_client
from tests.conftest import RunningBroker
from tests.peers import Peer

Connect = Callable[..., Peer]

#: The small terminal of the tests: 60 columns, 15 rows.
SMALL = Size(rows=15, columns=60)


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
