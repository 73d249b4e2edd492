"""`python -m broker` as an operator runs it: a real process, its terminal, its signals."""

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from broker.admin_token import ADMIN_TOKEN_ENV, MIN_ADMIN_TOKEN_CHARS
from broker.core import ChatCore
from broker.keys import STATE_DIR_ENV
from messages import ErrorCode
from messages import commands as cmd
from messages import events as ev
from tests.peers import Peer
from tests.processes import OPERATOR_TOKEN

#: Upper bound on the broker process starting or stopping, in seconds.
PROCESS_TIMEOUT_S = 15
BROKER = [sys.executable, "-m", "broker", "--bind", "tcp://127.0.0.1:*"]


def launch(
    *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str, list[str]]:
    """`python -m broker` with `args` and `env` added to the environment (the operator
    token removed from it unless given); the process, its endpoint and its banner lines."""
    environment = {k: v for k, v in os.environ.items() if k != ADMIN_TOKEN_ENV}
    process = subprocess.Popen(
        [*BROKER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**environment, **(env or {})},
    )
    assert process.stdout is not None
    banner = [process.stdout.readline()]
    match = re.search(r"listening on (tcp://\S+)", banner[0])
    assert match, (banner, process.stderr.read() if process.stderr else "")
    while "type /help" not in banner[-1]:
        banner.append(process.stdout.readline())
    return process, match.group(1), banner


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(PROCESS_TIMEOUT_S)


@pytest.fixture
def broker_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    process, endpoint, _ = launch(env={ADMIN_TOKEN_ENV: OPERATOR_TOKEN})
    yield process, endpoint
    stop(process)


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
    expected = (
        ["--bind", "--admin-token-file", ADMIN_TOKEN_ENV, "--address-sessions", "--address-rate"]
        if package == "broker"
        else ["--server", "--nick"]
    )
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
        env={**os.environ, ADMIN_TOKEN_ENV: OPERATOR_TOKEN},
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


def command_line(process: subprocess.Popen[str]) -> str:
    """What every user of the host reads as the process's command line."""
    return Path(f"/proc/{process.pid}/cmdline").read_bytes().decode().replace("\0", " ")


def becomes_operator(context: zmq.Context[zmq.Socket[bytes]], endpoint: str, token: str) -> None:
    peer = Peer(context, endpoint)
    peer.register("op")
    peer.send(cmd.Admin(token))
    peer.expect(ev.Operator)


def test_a_generated_token_is_long_written_privately_and_not_in_the_process_list(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    process, endpoint, banner = launch(env={STATE_DIR_ENV: str(tmp_path)})
    try:
        token_file = tmp_path / "admin-token"
        assert f"operator token: generated, in {token_file} (readable by you only)\n" in banner
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= MIN_ADMIN_TOKEN_CHARS  # 128 bits and more
        assert token not in "".join(banner)
        assert token not in command_line(process)
        becomes_operator(context, endpoint, token)
    finally:
        stop(process)


def test_the_token_comes_from_the_environment_or_a_file_never_the_command_line(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    process, endpoint, banner = launch(env={ADMIN_TOKEN_ENV: OPERATOR_TOKEN})
    try:
        assert f"operator token: as in ${ADMIN_TOKEN_ENV}\n" in banner
        assert OPERATOR_TOKEN not in command_line(process)
        becomes_operator(context, endpoint, OPERATOR_TOKEN)
    finally:
        stop(process)
    token_file = tmp_path / "token"
    token_file.write_text("file-operator-token-0123456789\n")
    token_file.chmod(0o600)
    process, endpoint, banner = launch("--admin-token-file", str(token_file))
    try:
        assert f"operator token: as in {token_file}\n" in banner
        becomes_operator(context, endpoint, "file-operator-token-0123456789")
    finally:
        stop(process)


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        ((), {ADMIN_TOKEN_ENV: "4711"}, "the operator token must be 22 to 256 bytes"),
        ((), {ADMIN_TOKEN_ENV: "x" * 21}, "at least 128 random bits"),
        (("--admin-token", OPERATOR_TOKEN), {}, f"in ${ADMIN_TOKEN_ENV} or in a file"),
    ],
)
def test_a_short_token_or_one_on_the_command_line_is_refused(
    args: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    result = subprocess.run(
        [*BROKER, *args],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env},
    )
    assert result.returncode == 2
    assert says in result.stderr
    assert "listening on" not in result.stdout


def test_the_core_refuses_a_short_token() -> None:
    with pytest.raises(ValueError, match="at least 128 random bits"):
        ChatCore("4711")
