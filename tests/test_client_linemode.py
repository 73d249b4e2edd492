"""Line mode as scripts use it: `python -m client` with stdin a pipe, against the real broker."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from messages import commands as cmd
from messages import events as ev
from tests.conftest import RunningBroker
from tests.peers import Peer

Connect = Callable[..., Peer]
ROOT = Path(__file__).resolve().parent.parent
#: Bound on a line-mode run in these tests (interpreter start-up included), in seconds.
RUN_TIMEOUT_S = 20


def client_command(endpoint: str, nick: str) -> list[str]:
    return [sys.executable, "-m", "client", "--server", endpoint, "--nick", nick]


def run_client(
    endpoint: str, nick: str, stdin: str, *options: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*client_command(endpoint, nick), *options],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        timeout=RUN_TIMEOUT_S,
    )


def start_client(endpoint: str, nick: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        client_command(endpoint, nick),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
    )


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_lines_are_delivered_before_leaving_at_end_of_input(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")
    script = "hello everyone\n/msg bob psst\n@bob at you\n/query bob\nquery line\n/all\nlast\n"
    result = run_client(broker.endpoint, "alice", script)
    assert result.returncode == 0, result.stderr
    bob.expect_after_presence(ev.Message, sender="alice", text="hello everyone")
    bob.expect(ev.PrivateMessage, sender="alice", recipient="bob", text="psst")
    bob.expect(ev.PrivateMessage, text="at you")
    bob.expect(ev.PrivateMessage, text="query line")
    bob.expect(ev.Message, text="last")
    bob.expect(ev.Left, nick="alice")
    lines = result.stdout.splitlines()
    # HH:MM, then the event.
    assert any(line[5:] == " <alice> hello everyone" for line in lines), lines
    assert any(line[5:] == " [alice -> bob] psst" for line in lines), lines
    assert any(line[5:] == " <alice> last" for line in lines), lines
    assert result.stderr == ""


def test_events_are_printed_one_sanitized_line_each(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")
    alice = start_client(broker.endpoint, "alice")
    try:
        bob.expect(ev.Joined, nick="alice")
        bob.say("\x1b[2J\x1b]0;owned\x07multi\nline \u202eevil")
        # Bob's echo: the broker has sent alice her copy too, before she reads her last line.
        bob.expect(ev.Message, sender="bob")
        stdout, stderr = alice.communicate("/msg nobody hi\n", timeout=RUN_TIMEOUT_S)
    finally:
        alice.kill()
    assert alice.returncode == 0, stderr
    lines = stdout.splitlines()
    assert any(line[5:] == " <bob> ^[[2J^[]0;owned^Gmulti^Jline <U+202E>evil" for line in lines), (
        lines
    )
    assert any(line[5:] == " -!- error 404: no such nick: nobody" for line in lines), lines
    assert "\x1b" not in stdout and "\u202e" not in stdout


def test_taken_nick_exits_2_with_the_reason(broker: RunningBroker, connect: Connect) -> None:
    connect("bob")
    result = run_client(broker.endpoint, "BOB", "never sent\n")
    assert result.returncode == 2
    assert "taken" in result.stderr
    assert result.stdout == ""


def test_invalid_nick_exits_2_without_a_server() -> None:
    result = run_client(f"tcp://127.0.0.1:{unused_port()}", "no spaces", "")
    assert result.returncode == 2
    assert "invalid nick" in result.stderr


def test_no_broker_exits_1_within_the_registration_timeout() -> None:
    started = time.monotonic()
    endpoint = f"tcp://127.0.0.1:{unused_port()}"
    result = run_client(endpoint, "alice", "hello\n", "--timeout", "0.5")
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert result.stderr == f"zmq-chat-client: no answer from {endpoint} within 0.5 s\n"
    # The timeout plus interpreter start-up, nowhere near the default 5 s.
    assert elapsed < 4


def test_kicked_while_input_is_open_exits_1(broker: RunningBroker, connect: Connect) -> None:
    bob = connect("bob")
    alice = start_client(broker.endpoint, "alice")
    try:
        bob.expect(ev.Joined, nick="alice")
        bob.send(cmd.Admin(broker.admin_token))
        bob.expect(ev.Operator)
        bob.send(cmd.Kick("alice", "enough"))
        # stdin stays open: the client must end on its own.
        assert alice.wait(timeout=RUN_TIMEOUT_S) == 1
        assert alice.stdout is not None and alice.stderr is not None
        assert "you were kicked by bob (enough)" in alice.stderr.read()
        assert "-!- error: you were kicked by bob (enough)" in alice.stdout.read()
    finally:
        alice.kill()
        for stream in (alice.stdin, alice.stdout, alice.stderr):
            if stream is not None:
                stream.close()


def test_nick_is_required_in_line_mode() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "client"],
        input="",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=RUN_TIMEOUT_S,
    )
    assert result.returncode == 2
    assert "--nick is required" in result.stderr


def test_help_documents_the_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "client", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=RUN_TIMEOUT_S,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert result.returncode == 0
    for option in ("--server", "--nick", "--timeout", "--verbose"):
        assert option in result.stdout
