"""A real nats-server with JetStream for the cluster's tests, on a free loopback port.

`make test` installs Debian's nats-server first (see the Makefile's nats-server target): a
test that needs it and does not find it fails, saying so, rather than skipping.
"""

import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import PROCESS_TIMEOUT_S, BrokerProcess, free_port

#: Where Debian puts nats-server (not on a normal user's PATH).
DEBIAN_PATH = Path("/usr/sbin/nats-server")
#: The heartbeat of the cluster's brokers in tests: a client silent for 3 of them is removed,
#: and a broker silent for twice that loses its users.
CLUSTER_HEARTBEAT_MS = 1000
#: How often a wait for the server to listen looks again, in s.
LISTEN_POLL_S = 0.02


def nats_server_binary() -> str:
    """The nats-server program; the test fails if there is none."""
    found = shutil.which("nats-server")
    if found is None and DEBIAN_PATH.exists():
        found = str(DEBIAN_PATH)
    if found is None:
        pytest.fail("nats-server is not installed: `make test` installs it (Debian's package)")
    return found


class NatsServer:
    """nats-server with JetStream on 127.0.0.1, its data in a directory of its own (kept
    across `stop` and `start`, removed with this object)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.data_dir = tempfile.mkdtemp(prefix="zmq-chat-nats-")
        weakref.finalize(self, shutil.rmtree, self.data_dir, ignore_errors=True)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        self.process = subprocess.Popen(
            [
                nats_server_binary(),
                "-js",
                "-sd",
                self.data_dir,
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + PROCESS_TIMEOUT_S
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server did not start on {self.url}") from None
                time.sleep(LISTEN_POLL_S)

    def stop(self) -> None:
        """Stop it (its data stays for the next `start`)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(PROCESS_TIMEOUT_S)


@dataclass
class Cluster:
    """A nats-server and two broker processes in its cluster, A and B."""

    nats: NatsServer
    a: BrokerProcess
    b: BrokerProcess


def broker_in(nats: NatsServer, broker_id: str, console: bool = False) -> BrokerProcess:
    """A broker process named `broker_id` in the cluster of `nats`, started (with an
    operator console the test types into, if `console`)."""
    broker = BrokerProcess(
        f"tcp://127.0.0.1:{free_port()}",
        CLUSTER_HEARTBEAT_MS,
        "--nats",
        nats.url,
        "--broker-id",
        broker_id,
    )
    broker.console = console
    broker.start()
    return broker


@contextmanager
def running_cluster(console: bool = False) -> Iterator[Cluster]:
    """A nats-server and brokers A and B, stopped at the end; A's console is the test's
    if `console`."""
    nats = NatsServer()
    nats.start()
    brokers: list[BrokerProcess] = []
    try:
        brokers += [broker_in(nats, "A", console), broker_in(nats, "B")]
        yield Cluster(nats, *brokers)
    finally:
        for broker in brokers:
            broker.stop()
        nats.stop()
