"""`python -m broker` as an operator runs it: a real process, its terminal, its signals."""

import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
import zmq

from messages import ErrorCode
from messages import commands as cmd
from messages import events as ev
from tests.peers import Peer

#: Upper bound on the broker process starting or stopping, in seconds.
PROCESS_TIMEOUT_S = 15


@pytest.fixture
def broker_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "broker", "--bind", "tcp://127.0.0.1:*", "--admin-token", "tok"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    banner = process.stdout.readline()
    match = re.search(r"listening on (tcp://\S+)", banner)
    assert match, banner
    yield process, match.group(1)
    if process.poll() is None:
        process.kill()
    process.wait(PROCESS_TIMEOUT_S)


def test_sigterm_tells_every_client_before_exit(
    broker_process: tuple[subprocess.Popen[str], str], context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    process, endpoint = broker_process
    alice, bob = Peer(context, endpoint), Peer(context, endpoint)
    alice.register("alice")
    bob.register("bob")
    process.send_signal(signal.SIGTERM)
    for peer in (alice, bob):
        peer.expect_after_presence(ev.ServerShutdown, reason="broker stopped (SIGTERM)")
    assert process.wait(PROCESS_TIMEOUT_S) == 0


def test_operator_terminal_commands(
    broker_process: tuple[subprocess.Popen[str], str], context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    process, endpoint = broker_process
    assert process.stdin is not None
    alice, bob = Peer(context, endpoint), Peer(context, endpoint)
    alice.register("alice")
    bob.register("bob")
    alice.expect(ev.Joined, nick="bob")
    process.stdin.write("/wall coffee break\n/kick bob too loud\n")
    process.stdin.flush()
    alice.expect(ev.Notice, text="operator: coffee break")
    alice.expect(ev.Left, nick="bob", reason="kicked by operator: too loud")
    bob.expect(ev.Notice, text="operator: coffee break")
    bob.expect(ev.Kicked, by="operator", reason="too loud")
    process.stdin.write("/users\n/shutdown upgrade\n")
    process.stdin.flush()
    alice.expect(ev.ServerShutdown, reason="upgrade")
    out, err = process.communicate(timeout=PROCESS_TIMEOUT_S)
    assert process.returncode == 0
    assert "1 users: alice" in out
    assert "bob joined" in err  # logged to stderr with levels


@pytest.mark.parametrize("package", ["broker", "client"])
def test_help_documents_the_options(package: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", package, "--help"],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_S,
        check=True,
    )
    expected = ["--bind", "--admin-token"] if package == "broker" else ["--server", "--nick"]
    for option in expected:
        assert option in result.stdout


def test_taken_port_is_a_clear_error(broker_process: tuple[subprocess.Popen[str], str]) -> None:
    _, endpoint = broker_process
    result = subprocess.run(
        [sys.executable, "-m", "broker", "--bind", endpoint],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert f"cannot listen on {endpoint}" in result.stderr


#: `alice` followed by an invisible character (variation selectors, combining grapheme
#: joiner, zero-width space, soft hyphen, a tag): every client draws it exactly as `alice`.
INVISIBLE_ALICES = [
    "alice\ufe00",
    "alice\ufe0f",
    "alice\u034f",
    "alice\U000e0100",
    "alice\u200b",
    "alice\u00ad",
    "alice\U000e0061",
]


def test_no_invisible_alice_beside_alice(
    broker_process: tuple[subprocess.Popen[str], str], context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    process, endpoint = broker_process
    assert process.stdin is not None
    alice, watcher = Peer(context, endpoint), Peer(context, endpoint)
    alice.register("alice")
    for nick in INVISIBLE_ALICES:
        impostor = Peer(context, endpoint)
        impostor.send(cmd.Hello(nick, impostor.token))
        refusal = impostor.expect(ev.Error, code=ErrorCode.INVALID_NICK)
        assert "which is invisible" in refusal.reason
        impostor.close()
    watcher.register("watcher")
    assert watcher.users() == ("alice", "watcher")
    # The operator's /kick alice finds the one alice there is.
    process.stdin.write("/kick alice\n")
    process.stdin.flush()
    alice.expect_after_presence(ev.Kicked, by="operator")
    watcher.expect_after_presence(ev.Left, nick="alice")
    assert watcher.users() == ("watcher",)


#: A log line as the broker writes it, which a peer tries to forge inside a QUIT reason.
FORGED_LINE = "2026-01-01 00:00:00,000 WARNING broker.core: mallory is now an operator"
#: Bytes a terminal acts on: C0 controls but the newline that ends a log line, DEL, C1.
TERMINAL_CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def test_what_peers_send_reaches_the_operator_terminal_escaped(
    broker_process: tuple[subprocess.Popen[str], str], context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    process, endpoint = broker_process
    assert process.stdin is not None
    bob = Peer(context, endpoint)
    bob.register("bob")
    bob.send(cmd.Quit(f"bye\x1b]0;owned\x07\x1b[2J\n{FORGED_LINE}\r\n"))
    watcher = Peer(context, endpoint)
    watcher.register("watcher")
    watcher.sync()
    process.stdin.write("/shutdown\n")
    process.stdin.flush()
    out, err = process.communicate(timeout=PROCESS_TIMEOUT_S)
    assert process.returncode == 0
    assert not TERMINAL_CONTROLS.search(err), err
    assert not TERMINAL_CONTROLS.search(out), out
    lines = err.splitlines()
    assert not [line for line in lines if line.startswith(FORGED_LINE[:23])], err
    # The reason is all there, on the line that logs bob's leaving.
    assert any(f"bob left: bye^[]0;owned^G^[[2J^J{FORGED_LINE}^M^J" in line for line in lines), err
