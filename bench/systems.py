"""The systems under test: how to start one, where it listens, how to stop it."""

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field


@dataclass
class Server:
    """A running system under test."""

    name: str
    proc: subprocess.Popen  # type: ignore[type-arg]
    #: Where clients connect: a ZeroMQ endpoint, or "host:port" for IRC.
    address: str
    #: "zmq" or "irc": which load generator speaks to it.
    kind: str
    #: For the ZeroMQ systems, the dialect its clients speak.
    dialect: str = ""
    #: Temporary directories to remove once stopped.
    cleanup_dirs: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        terminate(self.proc)
        for path in self.cleanup_dirs:
            shutil.rmtree(path, ignore_errors=True)


def terminate(proc: subprocess.Popen, timeout: float = 3) -> None:  # type: ignore[type-arg]
    """SIGTERM `proc` if it runs, and SIGKILL it if it has not ended `timeout` s later."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def first_line(proc: subprocess.Popen, timeout: float) -> str:  # type: ignore[type-arg]
    """The first line `proc` prints (it names where it listens), within `timeout` s."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            proc.kill()
            raise RuntimeError(f"{proc.args!r} did not start in {timeout:.0f} s")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise RuntimeError(f"{proc.args!r} exited at start")
        data += chunk
    return data.split(b"\n", 1)[0].decode()


def start_zmq(name: str, profile: str = "") -> Server:
    """The broker with its store on a file in a new directory, as `make broker` runs it
    (`chat`), with no store (`chat-memory`), the ceiling relay (`ceiling`) or its asyncio
    variant."""
    cleanup: list[str] = []
    if name in ("chat", "chat-memory"):
        argv = ["-m", "bench.launch", *(["--profile", profile] if profile else [])]
        if name == "chat":
            cleanup.append(tempfile.mkdtemp(prefix="zmq-chat-bench-"))
            argv += ["--db", os.path.join(cleanup[0], "chat.db")]
        dialect = "chat"
    elif name == "ceiling":
        argv, dialect = ["-m", "bench.ceiling"], "ceiling"
    elif name == "ceiling-asyncio":
        argv, dialect = ["-m", "bench.ceiling", "--asyncio"], "ceiling"
    else:
        raise ValueError(name)
    proc = subprocess.Popen(
        [sys.executable, *argv, "--bind", "tcp://127.0.0.1:*"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    endpoint = first_line(proc, 15)
    return Server(name, proc, endpoint, "zmq", dialect, cleanup)
