"""What the client prints as it ends, as a user runs it: `python -m client` on a
pseudo-terminal (full screen) or on pipes (line mode), against the real broker. Reasons from
the network (KICK, SHUTDOWN, a refused nick) never reach the terminal raw."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

from messages import ErrorCode, encode
from messages import commands as cmd
from messages import events as ev
from tests.conftest import RunningBroker
from tests.peers import Peer
from tests.test_client_linemode import start_client

Connect = Callable[..., Peer]
ROOT = Path(__file__).resolve().parent.parent
#: Bound on the client starting, registering or ending, in seconds.
PROCESS_TIMEOUT_S = 20
#: The pseudo-terminal's size, in cells.
ROWS, COLUMNS = 24, 80
#: A reason that sets the terminal's window title, rings its bell and moves to a new line.
TITLE_SETTER = "\x1b]0;owned\x07 bye\nnext"
#: The same, as it must reach the terminal.
TITLE_SETTER_SHOWN = "^[]0;owned^G bye^Jnext"


class Terminal:
    """`python -m client ...` on a pseudo-terminal of ROWS x COLUMNS, everything it writes
    to it kept in `output`."""

    def __init__(self, *args: str) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        # No cursor position requests: nobody answers them here.
        env = {**os.environ, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "client", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        os.close(slave)
        self._master = master
        self._output = bytearray()
        self._written = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="pty", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        # Read until every writer has closed the terminal (EIO), so the client never blocks.
        while True:
            try:
                data = os.read(self._master, 4096)
            except OSError:
                with self._written:
                    self._written.notify_all()
                return
            if not data:
                return
            with self._written:
                self._output += data
                self._written.notify_all()

    def type(self, text: str) -> None:
        os.write(self._master, text.encode())

    def wait_for(self, needle: bytes) -> None:
        """Wait until the client has written `needle` (or fail after PROCESS_TIMEOUT_S)."""
        with self._written:
            found = self._written.wait_for(
                lambda: needle in self._output or not self._reader.is_alive(), PROCESS_TIMEOUT_S
            )
        assert found and needle in self._output, f"{needle!r} never shown: {self._output!r}"

    def wait(self) -> bytes:
        """Wait for the client to exit; everything it wrote."""
        self.process.wait(PROCESS_TIMEOUT_S)
        self._reader.join(PROCESS_TIMEOUT_S)
        return bytes(self._output)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(PROCESS_TIMEOUT_S)
        self._reader.join(PROCESS_TIMEOUT_S)
        os.close(self._master)


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    started: list[Terminal] = []

    def start(*args: str) -> Terminal:
        started.append(Terminal(*args))
        return started[-1]

    yield start
    for term in started:
        term.close()


def operator(connect: Connect, broker: RunningBroker) -> Peer:
    peer = connect("op")
    peer.send(cmd.Admin(broker.admin_token))
    peer.expect_after_presence(ev.Operator)
    return peer


def test_a_kick_reason_reaches_the_full_screen_client_terminal_escaped(
    broker: RunningBroker, connect: Connect, terminal: Callable[..., Terminal]
) -> None:
    op = operator(connect, broker)
    alice = terminal("--server", broker.endpoint, "--nick", "alice")
    op.expect_after_presence(ev.Joined, nick="alice")
    op.send(cmd.Kick("alice", 0, TITLE_SETTER))
    output = alice.wait()
    assert b"\x1b]0;owned" not in output and b"\x07" not in output
    # Printed after the full-screen UI has closed.
    assert f"you were kicked by op ({TITLE_SETTER_SHOWN})".encode() in output


def test_a_shutdown_reason_reaches_the_line_mode_client_terminal_escaped(
    broker: RunningBroker, connect: Connect
) -> None:
    watcher = connect("watcher")
    alice = start_client(broker.endpoint, "alice")
    try:
        watcher.expect_after_presence(ev.Joined, nick="alice")
        broker.stop(TITLE_SETTER)
        # stdin stays open: the client ends on its own.
        stdout, stderr = alice.communicate(timeout=PROCESS_TIMEOUT_S)
    finally:
        alice.kill()
    assert alice.returncode == 1
    assert "\x1b" not in stdout + stderr and "\x07" not in stdout + stderr
    assert stderr == (f"zmq-chat-client: the server is shutting down ({TITLE_SETTER_SHOWN})\n")


def test_a_refusal_from_the_broker_reaches_the_nick_prompt_escaped(
    terminal: Callable[..., Terminal], context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    # A broker that refuses every nick with a reason it chose.
    fake: zmq.Socket[bytes] = context.socket(zmq.ROUTER)
    fake.setsockopt(zmq.LINGER, 0)
    port = fake.bind_to_random_port("tcp://127.0.0.1")
    alice = terminal("--server", f"tcp://127.0.0.1:{port}", "--nick", "alice")
    assert fake.poll(PROCESS_TIMEOUT_S * 1000), "no HELLO"
    identity, *_ = fake.recv_multipart()
    refusal = ev.Error(ErrorCode.NICK_TAKEN, "", TITLE_SETTER)
    fake.send_multipart([identity, *encode(refusal)])
    # The client says why and asks for another nick; Ctrl-D gives up.
    alice.wait_for(b"nick:")
    alice.type("\x04")
    output = alice.wait()
    assert b"\x1b]0;owned" not in output and b"\x07" not in output
    assert TITLE_SETTER_SHOWN.encode() in output
