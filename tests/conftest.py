"""Shared fixtures: a real broker on a random loopback port, and real DEALER peers."""

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zmq

from broker import BrokerConfig, BrokerServer
from broker.keys import STATE_DIR_ENV
from broker.ratelimit import FloodPolicy
from messages import HEARTBEAT_INTERVAL_MS
from tests.natsd import Cluster, running_cluster
from tests.peers import Peer

#: An operator token as long as the broker requires (MIN_ADMIN_TOKEN_CHARS).
ADMIN_TOKEN = "test-operator-token-0123456789"
#: Loopback, any free port: libzmq picks it and the server reports it as `endpoint`.
RANDOM_LOOPBACK = "tcp://127.0.0.1:*"
#: Upper bound on a broker thread's exit after a shutdown request, in seconds.
STOP_TIMEOUT_S = 10.0


@dataclass
class RunningBroker:
    """A BrokerServer serving from a thread of the test process."""

    server: BrokerServer
    thread: threading.Thread

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def admin_token(self) -> str:
        return self.server.config.admin_token

    def stop(self, reason: str = "test over") -> None:
        self.server.request_shutdown(reason)
        self.thread.join(STOP_TIMEOUT_S)
        assert not self.thread.is_alive(), "broker did not stop"


def start_broker(
    heartbeat_ms: int = HEARTBEAT_INTERVAL_MS, flood: FloodPolicy | None = None
) -> RunningBroker:
    """A broker on a random loopback port, serving from a thread; stop it with `stop`."""
    config = BrokerConfig(
        bind=RANDOM_LOOPBACK,
        admin_token=ADMIN_TOKEN,
        heartbeat_ms=heartbeat_ms,
        flood=flood or FloodPolicy(),
    )
    return serve(BrokerServer(config))


def serve(server: BrokerServer) -> RunningBroker:
    """Run `server` in a thread of the test process."""
    thread = threading.Thread(target=server.run, name="broker", daemon=True)
    thread.start()
    return RunningBroker(server, thread)


@pytest.fixture(autouse=True)
def own_state_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test, and every broker or client process it starts, has a state directory of
    its own: none reads or writes the user's (its chat.db, keys, identity), nor another
    test's."""
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "state"))


@pytest.fixture
def broker() -> Iterator[RunningBroker]:
    running = start_broker()
    yield running
    if running.thread.is_alive():
        running.stop()


@pytest.fixture
def context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def connect(
    broker: RunningBroker, context: zmq.Context[zmq.Socket[bytes]]
) -> Iterator[Callable[..., Peer]]:
    """`connect("alice")`: a registered peer; `connect()`: a connected, unregistered one."""
    peers: list[Peer] = []

    def make(nick: str | None = None) -> Peer:
        peer = Peer(context, broker.endpoint)
        peers.append(peer)
        if nick is not None:
            peer.register(nick)
        return peer

    yield make
    for peer in peers:
        peer.close()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """Two brokers, A and B, in the cluster of a nats-server of their own."""
    with running_cluster() as running:
        yield running
