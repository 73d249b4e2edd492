"""A real nats-server with JetStream for the cluster's tests, on a free loopback port.

`make test` installs Debian's nats-server first (see the Makefile's nats-server target): a
test that needs it and does not find it fails, saying so, rather than skipping.
"""

import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from bench.nats_server import find_nats_server, start_nats
from tests.processes import PROCESS_TIMEOUT_S, BrokerProcess, free_port

#: The heartbeat of the cluster's brokers in tests: a client silent for 3 of them is removed,
#: and a broker silent for twice that loses its users. A test's peers speak when it waits on
#: them: on a busy machine, a peer may wait seconds for the others' turn.
CLUSTER_HEARTBEAT_MS = 2000


def nats_server_binary() -> str:
    """The nats-server program; the test fails if there is none."""
    found = find_nats_server()
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
        self.process, _ = start_nats(nats_server_binary(), self.data_dir, self.port)

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
