"""Line mode as scripts use it: `python -m client` with stdin a pipe, against the real broker."""

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import zmq
import zmq.auth

from broker import BrokerConfig, BrokerServer
from messages import commands as cmd
from messages import events as ev
from tests.client_helpers import Relay, port_of
from tests.conftest import ADMIN_TOKEN, RunningBroker, start_broker
from tests.peers import Peer

Connect = Callable[..., Peer]
ROOT = Path(__file__).resolve().parent.parent
#: Bound on a line-mode run in these tests (interpreter start-up included), in seconds.
RUN_TIMEOUT_S = 20
#: What a client says when the broker refuses its encrypted handshake.
REFUSED = (
    "refused the encrypted handshake: is the server key right (the broker prints its public "
    "key when it starts), and does it run with --secure?"
)


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


def test_history_on_joining_prints_before_where_now_begins_when_asked_for(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")
    bob.say("said before alice came")
    bob.sync()
    result = run_client(broker.endpoint, "alice", "/search nothing-like-it\n", "--history", "5")
    assert result.returncode == 0, result.stderr
    lines = [line[6:] for line in result.stdout.splitlines()]
    assert lines.index("<bob> said before alice came") < lines.index("-- now --")
    assert "-!- search 'nothing-like-it': 0 hits" in lines
    # Without --history, line mode prints what happens from now on only.
    quiet = run_client(broker.endpoint, "carol", "")
    assert "said before" not in quiet.stdout


def test_answers_print_in_the_order_the_lines_were_typed(
    broker: RunningBroker, connect: Connect
) -> None:
    connect("bob")
    # Each public line comes back over the broadcast stream, while the error about the line
    # after it comes straight over the connection and the local answers at once.
    script = "".join(
        f"first {n}\n/msg nobody second {n}\n/bogus{n}\n/query bob\n/all\n" for n in range(5)
    )
    result = run_client(broker.endpoint, "alice", script + "last\n")
    assert result.returncode == 0, result.stderr
    answers = [
        line[6:]
        for line in result.stdout.splitlines()
        if "users:" not in line and "connected to" not in line
    ]
    expected: list[str] = []
    for n in range(5):
        expected += [
            f"<alice> first {n}",
            f"-!- error 404: not sent to nobody: second {n} (no such nick: nobody)",
            f"-!- unknown command /bogus{n} — /help lists commands",
            "-!- messages go to bob only; /all to talk to everyone",
            "-!- messages go to everyone",
        ]
    assert answers == [*expected, "<alice> last"]


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
    assert any(
        line[5:] == " -!- error 404: not sent to nobody: hi (no such nick: nobody)"
        for line in lines
    ), lines
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
    endpoint = f"tcp://127.0.0.1:{unused_port()}"
    result = run_client(endpoint, "alice", "hello\n", "--timeout", "0.5")
    assert result.returncode == 1
    # The client waited for the timeout it names (not the default 5 s): one value bounds
    # the wait and is quoted. How long the run took says more about the machine's load.
    assert result.stderr == (
        f"zmq-chat-client: no answer from {endpoint} within 0.5 s: is it running?\n"
    )


def test_kicked_while_input_is_open_exits_1(broker: RunningBroker, connect: Connect) -> None:
    bob = connect("bob")
    alice = start_client(broker.endpoint, "alice")
    try:
        bob.expect(ev.Joined, nick="alice")
        bob.send(cmd.Admin(broker.admin_token))
        bob.expect(ev.Operator)
        bob.send(cmd.Kick("alice", 60, "enough"))
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
    for option in (
        "--server",
        "--nick",
        "--timeout",
        "--verbose",
        "--secure",
        "--server-key",
        "--state-dir",
        "--history",
    ):
        assert option in result.stdout


#: Lines piped at once into a line-mode client.
PIPED_LINES = 30


@pytest.mark.timeout(60)
def test_piped_lines_past_the_burst_are_all_delivered_at_the_pace_the_broker_allows(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")
    # A burst and a half: the client must pace the last third of them (at 5 a second).
    lines = [f"line {n}" for n in range(PIPED_LINES)]
    alice = start_client(broker.endpoint, "alice")
    received: list[str] = []
    seen: list[ev.BrokerEvent] = []
    try:
        assert alice.stdin is not None
        alice.stdin.write("".join(f"{line}\n" for line in lines))
        alice.stdin.close()
        # Bob pings while he waits, or the broker would drop him after 6 s of silence.
        deadline = time.monotonic() + 50
        while len(received) < len(lines) and time.monotonic() < deadline:
            bob.send(cmd.Ping())
            with contextlib.suppress(AssertionError):
                event = bob.next_event(timeout=1.0)
                while True:
                    seen.append(event)
                    if isinstance(event, ev.Message) and event.sender == "alice":
                        received.append(event.text)
                    event = bob.next_event(timeout=0.0)
        # End of input: alice leaves once everything was acknowledged, and only then.
        assert alice.wait(timeout=RUN_TIMEOUT_S) == 0
        assert alice.stdout is not None and alice.stderr is not None
        stdout, stderr = alice.stdout.read(), alice.stderr.read()
    finally:
        alice.kill()
        for stream in (alice.stdout, alice.stderr):
            if stream is not None:
                stream.close()
    assert received == lines
    assert stderr == ""
    assert "429" not in stdout
    assert sum(1 for line in stdout.splitlines() if " <alice> line " in line) == PIPED_LINES
    # Alice left after her last line, not before (her LEAVE may have come with them).
    while not any(isinstance(event, ev.Left) for event in seen):
        seen.append(bob.next_event())
    kinds = [type(event) for event in seen if isinstance(event, ev.Message | ev.Left)]
    assert kinds == [ev.Message] * PIPED_LINES + [ev.Left], seen[-3:]


def test_end_of_input_with_the_broker_unreachable_exits_1_naming_what_was_lost() -> None:
    running = start_broker(heartbeat_ms=200)  # the client gives up after 2 x 600 ms
    relay = Relay(port_of(running.endpoint))
    alice = start_client(relay.endpoint, "alice")
    try:
        assert alice.stdout is not None and alice.stdin is not None
        assert "connected to" in alice.stdout.readline()
        relay.close()
        alice.stdin.write("one\ntwo\nthree\n")
        alice.stdin.close()
        started = time.monotonic()
        assert alice.wait(timeout=RUN_TIMEOUT_S) == 1
        elapsed = time.monotonic() - started
        assert alice.stderr is not None
        stderr = alice.stderr.read()
    finally:
        alice.kill()
        for stream in (alice.stdout, alice.stderr):
            if stream is not None:
                stream.close()
        relay.stop()
        running.stop()
    assert stderr == (
        f"zmq-chat-client: 3 messages not delivered: no answer from {relay.endpoint}\n"
    )
    assert elapsed < 10


def secure_broker(state_dir: Path) -> RunningBroker:
    """A broker with CurveZMQ on, its key pair in `state_dir` as `make broker SECURE=1`
    keeps it."""
    _public, secret_file = zmq.auth.create_certificates(state_dir, "server")
    _, secret = zmq.auth.load_certificate(secret_file)
    config = BrokerConfig(
        bind="tcp://127.0.0.1:*", admin_token=ADMIN_TOKEN, curve_secret_key=secret
    )
    server = BrokerServer(config)
    thread = threading.Thread(target=server.run, name="broker", daemon=True)
    thread.start()
    return RunningBroker(server, thread)


def test_secure_connection_with_the_key_from_the_state_directory(tmp_path: Path) -> None:
    running = secure_broker(tmp_path)
    try:
        result = run_client(
            running.endpoint, "alice", "secret words\n", "--secure", "--state-dir", str(tmp_path)
        )
        assert result.returncode == 0, result.stderr
        assert any(line.endswith(" <alice> secret words") for line in result.stdout.splitlines())
        # The same with the key given directly.
        key = (tmp_path / "server.key").read_text()
        z85_key = key.split('public-key = "')[1].split('"')[0]
        # With "=": a Z85 key may start with "-", which would read as an option.
        result = run_client(running.endpoint, "bob", "hi\n", f"--server-key={z85_key}")
        assert result.returncode == 0, result.stderr
    finally:
        running.stop()


def test_secure_connection_with_a_wrong_key_never_registers(tmp_path: Path) -> None:
    running = secure_broker(tmp_path)
    wrong_public, _ = zmq.curve_keypair()
    try:
        result = run_client(
            running.endpoint,
            "alice",
            "x\n",
            f"--server-key={wrong_public.decode()}",
            "--timeout",
            "0.5",
        )
    finally:
        running.stop()
    assert result.returncode == 1
    assert result.stderr == f"zmq-chat-client: {running.endpoint} {REFUSED}\n"


def test_a_client_without_the_key_is_told_the_broker_requires_encryption(
    tmp_path: Path,
) -> None:
    running = secure_broker(tmp_path)
    try:
        result = run_client(running.endpoint, "alice", "x\n", "--timeout", "0.5")
    finally:
        running.stop()
    assert result.returncode == 1
    assert result.stderr == (
        f"zmq-chat-client: {running.endpoint} requires encryption (its broker runs with "
        "--secure): connect with SECURE=1 (--secure), or give the public key the broker "
        "printed with --server-key=KEY\n"
    )


def test_a_client_with_a_key_is_told_the_broker_does_not_encrypt(
    broker: RunningBroker,
) -> None:
    public, _ = zmq.curve_keypair()
    result = run_client(
        broker.endpoint, "alice", "x\n", f"--server-key={public.decode()}", "--timeout", "0.5"
    )
    assert result.returncode == 1
    # libzmq reports the mismatch, or (when the broker hangs up first) no detail.
    assert result.stderr in (
        f"zmq-chat-client: {broker.endpoint} does not use encryption: "
        "connect without SECURE=1/--server-key\n",
        f"zmq-chat-client: {broker.endpoint} {REFUSED}\n",
    )


def test_secure_without_a_key_file_says_where_it_looked(tmp_path: Path) -> None:
    result = subprocess.run(
        [*client_command("tcp://127.0.0.1:1", "alice"), "--secure"],
        input="",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=RUN_TIMEOUT_S,
        env={**os.environ, "ZMQ_CHAT_STATE_DIR": str(tmp_path / "nowhere")},
    )
    assert result.returncode == 1
    assert str(tmp_path / "nowhere" / "server.key") in result.stderr
    assert "make broker SECURE=1" in result.stderr


def test_a_malformed_server_key_is_refused() -> None:
    result = run_client("tcp://127.0.0.1:1", "alice", "", "--server-key", "not-a-key")
    assert result.returncode == 1
    assert "server key is 40 Z85 characters" in result.stderr


def test_a_refused_message_is_reported_once_with_its_text(broker: RunningBroker) -> None:
    result = run_client(broker.endpoint, "bot", "@nobody are you there?\n")
    assert result.returncode == 0
    errors = [line for line in result.stdout.splitlines() if "error 404" in line]
    assert len(errors) == 1, result.stdout
    assert "not sent to nobody: are you there?" in errors[0]


def test_an_own_private_message_prints_once_on_its_ack_without_an_echo(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")
    alice = start_client(broker.endpoint, "alice")
    try:
        assert alice.stdin is not None
        bob.expect(ev.Joined, nick="alice")
        alice.stdin.write("/msg bob psst\n")
        alice.stdin.flush()
        private = bob.expect(ev.PrivateMessage, sender="alice", recipient="bob", text="psst")
        bob.send(cmd.Received(private.msg_id, private.sender))
        bob.sync()  # the broker has sent alice DELIVERED before she reads her end of input
        stdout, stderr = alice.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        alice.kill()
    assert alice.returncode == 0, stderr
    lines = [line[6:] for line in stdout.splitlines()]
    # Printed when the broker acknowledged it (it sends private messages to their recipient
    # only), once, and before its delivery.
    assert lines.count("[alice -> bob] psst") == 1, lines
    assert lines.count("-!- delivered to bob: psst") == 1, lines
    assert lines.index("[alice -> bob] psst") < lines.index("-!- delivered to bob: psst")
