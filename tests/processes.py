"""Real processes for end-to-end tests and figures: a broker that can be killed and restarted."""

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Sequence

from broker.admin_token import ADMIN_TOKEN_ENV
from broker.keys import STATE_DIR_ENV

#: Bound on a broker process starting or dying, in seconds.
PROCESS_TIMEOUT_S = 10
#: The operator token of broker processes (given in their environment, never as an argument).
OPERATOR_TOKEN = "process-operator-token-0123"


def free_port(avoid: int = 0) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (and not `avoid`)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port != avoid:
            return port


class BrokerProcess:
    """`python -m broker` on a fixed port, which can be killed and started again.

    Its broadcast stream gets a free port of its own (the same on every start): by default
    the broker would take the port after `endpoint`'s, which may be in use.
    """

    def __init__(self, endpoint: str, heartbeat_ms: int, *extra_args: str) -> None:
        self.endpoint = endpoint
        self.heartbeat_ms = heartbeat_ms
        self.extra_args = extra_args
        host = endpoint.rpartition(":")[0]
        bound = int(endpoint.rpartition(":")[2])
        self.stream_endpoint = f"{host}:{free_port(avoid=bound)}"
        self.process: subprocess.Popen[str] | None = None
        #: Its state directory, where it remembers the chat (chat.db): kept across restarts
        #: of this broker, removed with this object.
        self.state_dir = tempfile.mkdtemp(prefix="zmq-chat-broker-")
        weakref.finalize(self, shutil.rmtree, self.state_dir, ignore_errors=True)
        #: When set, the broker runs with at most this many file descriptors (soft and hard).
        self.descriptors: int | None = None
        #: Whether its operator console (stdin) is a pipe the test types into (`type`).
        self.console = False

    def _limit_descriptors(self) -> None:
        if self.descriptors is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.descriptors, self.descriptors))

    def start(self) -> None:
        """Start the broker and wait until it listens."""
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "broker",
                "--bind",
                self.endpoint,
                "--stream",
                self.stream_endpoint,
                "--heartbeat-ms",
                str(self.heartbeat_ms),
                "--state-dir",
                self.state_dir,
                *self.extra_args,
            ],
            stdin=subprocess.PIPE if self.console else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=None if os.environ.get("BROKER_STDERR") else subprocess.DEVNULL,
            text=True,
            # The operator token from the environment, as an operator would give it.
            env={**os.environ, ADMIN_TOKEN_ENV: OPERATOR_TOKEN},
            preexec_fn=self._limit_descriptors,
        )
        assert self.process.stdout is not None
        assert "listening on" in self.process.stdout.readline()

    def type(self, line: str) -> None:
        """Type `line` at its operator console (see `console`)."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def printed(self, prefix: str) -> str:
        """The next line it prints that starts with `prefix` (the ones before are skipped)."""
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(prefix):
                return line.rstrip("\n")
        raise AssertionError(f"it ended without printing {prefix!r}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(PROCESS_TIMEOUT_S)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(PROCESS_TIMEOUT_S)


#: A chat line in line mode's output: "HH:MM <sender> text".
CHAT_LINE = re.compile(r"<(?P<sender>[^>]+)> (?P<text>.*?)\s*$")
#: Line mode's user list after registering ("HH:MM -!- 3 users: alice bob carol") and a
#: join ("HH:MM -!- dave joined").
USER_LIST_LINE = re.compile(r"-!- \d+ users?: (?P<nicks>.*?)\s*$")
JOIN_LINE = re.compile(r"-!- (?P<nick>\S+) joined\s*$")
#: Line mode's private messages: "HH:MM [alice -> dora] text".
PRIVATE_LINE = re.compile(r"\[(?P<sender>[^\]]+?) -> (?P<recipient>[^\]]+?)\] (?P<text>.*?)\s*$")
#: How often a wait on the clients' output looks again, in seconds.
OUTPUT_POLL_S = 0.05


class LineClients:
    """Line-mode clients (`python -m client` with stdin a pipe), one per nick.

    Each client's stdout is collected line by line as it arrives, so a test can wait for
    what it expects before ending the input.
    """

    def __init__(
        self,
        endpoint: str,
        nicks: list[str],
        state_root: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        #: Each client's state directory (its identity, input history): `state_root`/nick,
        #: or a new temporary directory removed with this object.
        if state_root is None:
            state_root = tempfile.mkdtemp(prefix="zmq-chat-clients-")
            weakref.finalize(self, shutil.rmtree, state_root, ignore_errors=True)
        self.state_root = state_root
        self.processes = {
            nick: subprocess.Popen(
                [sys.executable, "-m", "client", "--server", endpoint, "--nick", nick, *extra_args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, STATE_DIR_ENV: os.path.join(state_root, nick)},
            )
            for nick in nicks
        }
        self.outputs: dict[str, list[str]] = {nick: [] for nick in nicks}
        self._readers = [
            threading.Thread(target=self._read, args=(nick,), daemon=True) for nick in nicks
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, nick: str) -> None:
        stdout = self.processes[nick].stdout
        assert stdout is not None
        for line in stdout:
            self.outputs[nick].append(line)

    def type(self, nick: str, line: str) -> None:
        stdin = self.processes[nick].stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()

    def chat_seen(self, nick: str) -> Counter[tuple[str, str]]:
        """(sender, text) of every chat line `nick` printed from someone else."""
        return Counter(
            (match["sender"], match["text"])
            for line in list(self.outputs[nick])
            if (match := CHAT_LINE.search(line)) and match["sender"] != nick
        )

    def privates_seen(self, nick: str) -> Counter[tuple[str, str]]:
        """(sender, text) of every private message `nick`'s client printed as received."""
        return Counter(
            (match["sender"], match["text"])
            for line in list(self.outputs[nick])
            if (match := PRIVATE_LINE.search(line)) and match["recipient"] == nick
        )

    def wait_for_privates(
        self, nick: str, expected: Counter[tuple[str, str]], timeout: float
    ) -> bool:
        """Until `nick`'s client printed every private message of `expected` (or `timeout`
        seconds); whether it did."""
        return self._wait(lambda: not (expected - self.privates_seen(nick)), timeout)

    def wait_for_line(self, nick: str, text: str, timeout: float) -> bool:
        """Until `nick`'s client printed a line containing `text` (or `timeout` seconds)."""
        return self._wait(lambda: any(text in line for line in list(self.outputs[nick])), timeout)

    def present(self, nick: str) -> set[str]:
        """Who `nick`'s client printed as present: its user list and the joins after it."""
        seen: set[str] = set()
        for line in list(self.outputs[nick]):
            if match := USER_LIST_LINE.search(line):
                seen.update(match["nicks"].split())
            elif match := JOIN_LINE.search(line):
                seen.add(match["nick"])
        return seen

    def wait_until_all_present(self, timeout: float) -> bool:
        """Until every client printed every other as present (or `timeout` seconds): only
        then is each one sure to be sent what the others say. Whether they all are."""
        everyone = set(self.processes)
        return self._wait(
            lambda: all(everyone <= self.present(nick) | {nick} for nick in everyone), timeout
        )

    def wait_for(self, expected: dict[str, Counter[tuple[str, str]]], timeout: float) -> None:
        """Until every client printed what `expected` lists for it (or `timeout` seconds)."""
        self._wait(
            lambda: all(not (want - self.chat_seen(nick)) for nick, want in expected.items()),
            timeout,
        )

    def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        """Look at the output until `done()` (True) or for `timeout` seconds (False)."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() >= deadline:
                return False
            time.sleep(OUTPUT_POLL_S)
        return True

    def finish(self, timeout: float) -> dict[str, int]:
        """End every client's input; their exit codes once they have left."""
        for process in self.processes.values():
            assert process.stdin is not None
            process.stdin.close()
        codes = {}
        try:
            for nick, process in self.processes.items():
                codes[nick] = process.wait(timeout)
        finally:
            self.kill()
        for reader in self._readers:
            reader.join(timeout)
        return codes

    def stderr(self, nick: str) -> str:
        stream = self.processes[nick].stderr
        return stream.read() if stream is not None else ""

    def kill(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(PROCESS_TIMEOUT_S)
