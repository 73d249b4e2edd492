"""What a new user expects of the keys and the window: Tab completes like weechat, Ctrl-C
clears a typed line before it leaves, and closing the window is a clean /quit. The real
full-screen client (pipe input, dummy output), and a real client process on a pseudo
terminal; the broker is real, the other users plain DEALER peers."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from client.ui import INPUT_CLEARED
from messages import events as ev
from tests.client_helpers import WAIT_S, eventually, expect, running_client
from tests.conftest import RunningBroker
from tests.peers import Peer

Connect = Callable[..., Peer]
ROOT = Path(__file__).resolve().parent.parent
#: Bound on the client process starting (interpreter start-up included) or exiting, in s.
PROCESS_TIMEOUT_S = 20


def test_tab_completes_the_first_candidate_in_full_then_cycles(
    broker: RunningBroker, connect: Connect
) -> None:
    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice") as alice:
            # As README says: "/q<Tab> gives /query ", not the common prefix "/qu".
            alice.type("/q\t")
            await eventually(lambda: alice.input_text == "/query ", "/q completed to /query")
            alice.type("\t")
            await eventually(lambda: alice.input_text == "/quit ", "the next candidate")
            alice.type("\t")
            await eventually(lambda: alice.input_text == "/query ", "round again")
            alice.type("\x1b[Z")  # Shift-Tab: back
            await eventually(lambda: alice.input_text == "/quit ", "Shift-Tab goes back")

    asyncio.run(scenario())


#: How many times the test presses Up before it gives up on the history coming back.
UP_PRESSES = 10


def test_ctrl_c_clears_a_typed_line_and_leaves_only_from_an_empty_one(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice") as alice:
            alice.type("a long line I did not mean to lose")
            await eventually(lambda: alice.input_text.endswith("lose"), "the typed line")
            alice.type("\x03")
            await eventually(lambda: alice.input_text == "", "the line cleared")
            await alice.wait_for_pane(INPUT_CLEARED)
            assert not alice.task.done()
            # Up brings it back, and it can still be sent.
            # prompt_toolkit loads the history into the input line in a task of its own:
            # on a busy machine the first Up may come before it ran, as a user's could.
            for _ in range(UP_PRESSES):
                alice.type("\x1b[A")
                with contextlib.suppress(AssertionError):
                    await eventually(
                        lambda: alice.input_text.endswith("lose"), "the line back", timeout=2.0
                    )
                    break
            assert alice.input_text.endswith("lose")
            alice.type("\r")
            await expect(bob, ev.Message, sender="alice", text="a long line I did not mean to lose")
            # On the empty line, Ctrl-C leaves.
            alice.type("\x03")
            ending = await asyncio.wait_for(alice.task, WAIT_S)
            assert ending.exit_code == 0
            await expect(bob, ev.Left, nick="alice", reason="quit")

    asyncio.run(scenario())


def test_closing_the_window_is_a_clean_quit(broker: RunningBroker, connect: Connect) -> None:
    bob = connect("bob")
    master, terminal = os.openpty()
    client = subprocess.Popen(
        [sys.executable, "-m", "client", "--server", broker.endpoint, "--nick", "alice"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=ROOT,
        env={**os.environ, "TERM": "xterm"},
        start_new_session=True,
    )
    os.close(terminal)
    # The client draws its screen: read it, so that it never blocks on a full terminal.
    drawn = threading.Thread(target=_read_until_closed, args=(master,), daemon=True)
    drawn.start()
    try:
        joined = bob.next_event(PROCESS_TIMEOUT_S)
        assert joined == ev.Joined(joined.seq, "alice"), joined  # type: ignore[union-attr]
        # The terminal window closes: the terminal goes away, and the client gets SIGHUP.
        os.close(master)
        client.send_signal(signal.SIGHUP)
        # A normal leave at once, not an expiry after 3 missed heartbeats (6 s).
        bob.expect_after_presence(ev.Left, nick="alice", reason="quit")
        assert client.wait(PROCESS_TIMEOUT_S) == 0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(PROCESS_TIMEOUT_S)


def _read_until_closed(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass  # closed: the window went away
