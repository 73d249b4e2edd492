"""Attacks on a real broker, each with a bystander: `make attack` (python -m tests.attacks).

Every attack runs against a fresh broker process on loopback. A bystander, registered before
the attack, PINGs the broker all through it; the attack held if the broker is still alive,
the bystander was answered every time and can still talk, and the attacker got nothing it
should not. Each result gives the bystander's worst PING round trip and the broker's
resident memory before and after. tests/test_attacks.py runs the same attacks at a smaller
scale.
"""

import argparse
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import zmq

from bench.zmtp import GREETING, GREETING_BYTES, ready, tcp_address
from bench.zmtp import message as zmtp_message
from messages import SIGNATURE, ErrorCode, encode
from messages import commands as cmd
from messages import events as ev
from tests.peers import Peer
from tests.processes import BrokerProcess, free_port

Context = zmq.Context[zmq.Socket[bytes]]
#: The first routing id libzmq 4.3 assigns in a process whose rand() nobody seeded.
UNSEEDED_FIRST_ID = 0x6B8B4567
#: How long a bystander waits for one PONG before the attack counts as a stall, in s.
PING_TIMEOUT_S = 30.0
#: Heartbeat of the attacked brokers (ms): long, so that the test peers need not PING.
QUIET_HEARTBEAT_MS = 60_000
#: How long the broker's CPU use is sampled while a connection flood stays, in s.
CPU_SAMPLE_S = 2.0
#: How long the broker is left alone after an attack before its memory is read, in s.
SETTLE_S = 1.0
#: How long to wait for the broker to show it acted (cut a peer off), in s.
ACT_TIMEOUT_S = 20.0
#: How long the last connections of a flood are given to be taken in, all together (s).
SETTLE_TIMEOUT_S = 5.0


@dataclass
class Result:
    """What one attack did to the broker."""

    attack: str
    held: bool
    what: str
    worst_ping_ms: float
    rss_before_mib: float
    rss_after_mib: float
    notes: list[str] = field(default_factory=list)

    def row(self) -> str:
        verdict = "held" if self.held else "BROKE"
        what = "; ".join([self.what, *self.notes])
        return (
            f"| {self.attack} | {verdict} | {what} | {self.worst_ping_ms:.0f} ms | "
            f"{self.rss_before_mib:.0f} -> {self.rss_after_mib:.0f} MiB |"
        )


def rss_mib(pid: int) -> float:
    """Resident memory of process `pid`, in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Bystander:
    """A registered user who PINGs the broker in a thread, keeping the worst round trip."""

    def __init__(self, context: Context, endpoint: str, nick: str = "bystander") -> None:
        self.peer = Peer(context, endpoint)
        self.peer.register(nick)
        self.worst_s = 0.0
        self.missed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._ping, daemon=True)

    def _ping(self) -> None:
        socket = self.peer.socket
        while not self._stop.is_set():
            start = time.monotonic()
            socket.send_multipart(encode(cmd.Ping()))
            answered = False
            while socket.poll(int(PING_TIMEOUT_S * 1000)):
                if socket.recv_multipart()[1:2] == [b"PONG"]:
                    answered = True
                    break
            self.worst_s = max(self.worst_s, time.monotonic() - start)
            self.missed += not answered
            self._stop.wait(0.02)

    def __enter__(self) -> "Bystander":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(PING_TIMEOUT_S + 5)


def disconnected(socket: zmq.Socket[bytes]) -> Callable[[float], bool]:
    """A function that waits (up to its argument, in s) for `socket`'s connection to end."""
    monitor = socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)

    def wait(timeout_s: float) -> bool:
        if monitor.poll(int(timeout_s * 1000)):
            monitor.recv_multipart()
            return True
        return False

    return wait


@contextmanager
def broker_process(*extra_args: str, descriptors: int | None = None) -> Iterator[BrokerProcess]:
    broker = BrokerProcess(
        f"tcp://127.0.0.1:{free_port()}", QUIET_HEARTBEAT_MS, "--flood-burst", "1000", *extra_args
    )
    broker.descriptors = descriptors
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _from_address(endpoint: str, source: str) -> str:
    """`endpoint`, connected to from loopback address `source` (libzmq's source syntax)."""
    return endpoint.replace("tcp://", f"tcp://{source}:0;")


def _alive(broker: BrokerProcess) -> bool:
    return broker.process is not None and broker.process.poll() is None


def _outcome(
    name: str,
    broker: BrokerProcess,
    bystander: Bystander,
    rss_before: float,
    checks: dict[str, bool],
) -> Result:
    assert broker.process is not None
    # Time for the broker to cut off what it will and give memory back.
    time.sleep(SETTLE_S)
    alive = _alive(broker)
    rss_after = rss_mib(broker.process.pid) if alive else 0.0
    talks = False
    if alive:
        bystander.peer.send(cmd.ListUsers())
        try:
            bystander.peer.expect_after_presence(ev.UserList)
            talks = True
        except AssertionError:
            talks = False
    checks = {"broker alive": alive, "bystander answered": not bystander.missed, **checks}
    checks["bystander still talks"] = talks
    failed = [what for what, ok in checks.items() if not ok]
    return Result(
        name,
        not failed,
        "; ".join(failed) if failed else ", ".join(checks),
        bystander.worst_s * 1000,
        rss_before,
        rss_after,
    )


def routing_id_collision(context: Context, chosen: int) -> Result:
    """Peers take the routing ids libzmq would assign next (unseeded rand()), then users
    connect: libzmq 4.3 aborts when it assigns an id a peer chose."""
    with broker_process() as broker:
        assert broker.process is not None
        bystander = Bystander(context, broker.endpoint)
        rss_before = rss_mib(broker.process.pid)
        with bystander:
            squatters = []
            for i in range(chosen):
                squatter = Peer(
                    context,
                    _from_address(broker.endpoint, "127.0.0.2"),
                    routing_id=b"\x00" + (UNSEEDED_FIRST_ID + i).to_bytes(4, "big"),
                )
                squatters.append(squatter)
            # Half speak (and are refused), half stay silent (and are cut off later).
            for squatter in squatters[::2]:
                squatter.send(cmd.Ping())
            refused = sum(
                isinstance(squatter.next_event(), ev.Error) for squatter in squatters[::2]
            )
            # From several addresses: joins are limited per address.
            newcomers = [
                Peer(context, _from_address(broker.endpoint, f"127.0.1.{n % 8 + 1}"))
                for n in range(chosen)
            ]
            for n, newcomer in enumerate(newcomers):
                newcomer.register(f"newcomer{n}")
        result = _outcome(
            "routing-id collision",
            broker,
            bystander,
            rss_before,
            {
                f"{refused} of {len(squatters[::2])} squatters refused": refused
                == len(squatters[::2])
            },
        )
        for peer in [*squatters, *newcomers, bystander.peer]:
            peer.close()
        return result


def session_hijack(context: Context) -> Result:
    """alice's link drops; a peer comes back with her routing id and speaks."""
    with broker_process() as broker:
        assert broker.process is not None
        bystander = Bystander(context, broker.endpoint)
        rss_before = rss_mib(broker.process.pid)
        with bystander:
            # alice is whoever connects first after the bystander: her id is the next.
            probe = Peer(context, broker.endpoint)
            probe.register("alice")
            probe.close()
            bob = Peer(context, broker.endpoint)
            bob.register("bob")
            answers: list[ev.BrokerEvent] = []
            # The attacker tries every id the broker may have given alice.
            for guess in range(UNSEEDED_FIRST_ID, UNSEEDED_FIRST_ID + 4):
                thief = Peer(
                    context, broker.endpoint, routing_id=b"\x00" + guess.to_bytes(4, "big")
                )
                thief.send(cmd.Say("stolen-1", "I am alice"))
                if thief.socket.poll(int(ACT_TIMEOUT_S * 1000 / 4)):
                    answers.append(thief.next_event())
                thief.close()
            bob.send(cmd.ListUsers())
            bob_saw = bob.expect_after_presence(ev.UserList)
        spoke = any(isinstance(answer, ev.Ack) for answer in answers)
        result = _outcome(
            "session hijack by routing id",
            broker,
            bystander,
            rss_before,
            {"no stolen message accepted": not spoke and bool(bob_saw.users)},
        )
        bob.close()
        bystander.peer.close()
        return result


def send_frame_bomb(endpoint: str, frames: int) -> bool:
    """Send, over raw TCP (as fast as the kernel takes it), one ZMTP message of `frames`
    empty frames; True if the broker cut the connection off before or after it."""
    chunk = b"\x01\x00" * 65_536  # empty frames, each with the more flag
    with socket.create_connection(tcp_address(endpoint)) as raw:
        try:
            raw.sendall(GREETING + ready(b"DEALER"))
            # Frames must wait for the broker's READY: libzmq fails a handshake that sees
            # anything else first.
            got = b""
            while len(got) < GREETING_BYTES + 2 or len(got) < GREETING_BYTES + 2 + got[65]:
                more = raw.recv(4096)
                if not more:
                    return False
                got += more
            raw.sendall(zmtp_message(SIGNATURE, b"SAY")[:-5] + b"\x01\x03SAY")
            sent = 0
            while sent < frames:
                count = min(frames - sent, len(chunk) // 2)
                raw.sendall(chunk[: 2 * count])
                sent += count
            raw.sendall(b"\x00\x00")
            raw.settimeout(ACT_TIMEOUT_S)
            while raw.recv(65_536):
                pass  # the broker's greeting, READY, maybe an ERROR: until it closes
        except (ConnectionError, TimeoutError):
            pass
        except OSError:
            return False
    return True


def frame_bomb(context: Context, frames: int) -> Result:
    """One message of `frames` empty frames: libzmq holds it whole before the broker sees it."""
    with broker_process() as broker:
        assert broker.process is not None
        bystander = Bystander(context, broker.endpoint)
        rss_before = rss_mib(broker.process.pid)
        with bystander:
            was_cut = send_frame_bomb(broker.endpoint, frames)
        result = _outcome(
            f"frame bomb ({frames:,} frames)",
            broker,
            bystander,
            rss_before,
            {"bomber cut off": was_cut},
        )
        bystander.peer.close()
        return result


def subscription_bomb(context: Context, subscriptions: int, size: int) -> Result:
    """Distinct subscriptions on the stream, `size` bytes each: libzmq would keep them all."""
    with broker_process() as broker:
        assert broker.process is not None
        bystander = Bystander(context, broker.endpoint)
        rss_before = rss_mib(broker.process.pid)
        assert bystander.peer.welcome is not None
        sub: zmq.Socket[bytes] = context.socket(zmq.XSUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SNDHWM, 0)
        cut = disconnected(sub)
        sub.connect(bystander.peer.stream_endpoint(bystander.peer.welcome.stream_port))
        with bystander:
            for n in range(subscriptions):
                topic = n.to_bytes(4, "big") * (size // 4)
                try:
                    sub.send(b"\x01" + topic, zmq.NOBLOCK)
                except zmq.Again:
                    break
            was_cut = cut(ACT_TIMEOUT_S)
        result = _outcome(
            f"subscription bomb ({subscriptions:,} x {size} B)",
            broker,
            bystander,
            rss_before,
            {"subscriber cut off": was_cut},
        )
        sub.close(linger=0)
        bystander.peer.close()
        return result


def connection_flood(context: Context, connections: int, per_address: int) -> Result:
    """Idle connections from one address, past the per-address cap, then a new user."""
    with broker_process(
        "--max-connections-per-address",
        str(per_address),
        "--register-within",
        "1",
    ) as broker:
        assert broker.process is not None
        # The flood comes from 127.0.0.2; the bystander and the new user from 127.0.0.1.
        bystander = Bystander(context, broker.endpoint)
        rss_before = rss_mib(broker.process.pid)
        flood_endpoint = _from_address(broker.endpoint, "127.0.0.2")
        with bystander:
            idle = [Peer(context, flood_endpoint) for _ in range(connections)]
            cuts = [disconnected(peer.socket) for peer in idle[:per_address]]
            extra = Peer(context, flood_endpoint)
            extra.send(cmd.Hello("extra", extra.token))
            refusal = extra.next_event()
            newcomer = Peer(context, broker.endpoint)
            newcomer.register("newcomer")
            idle_cut = all(wait(ACT_TIMEOUT_S) for wait in cuts)
        refused = isinstance(refusal, ev.Error) and refusal.code == ErrorCode.RATE_LIMITED
        result = _outcome(
            f"connection flood ({connections:,} idle from one address)",
            broker,
            bystander,
            rss_before,
            {
                "connection over the cap refused with 429": refused,
                "idle unregistered connections cut off": idle_cut,
            },
        )
        for peer in [*idle, extra, newcomer, bystander.peer]:
            peer.close()
        return result


def cpu_seconds(pid: int) -> float:
    """CPU time process `pid` has used so far (user and system), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _answered(peers: list[Peer], timeout_s: float) -> int:
    """Each of `peers` PINGs; how many answered within `timeout_s` (all waited at once)."""
    poller = zmq.Poller()
    for peer in peers:
        peer.socket.send_multipart(encode(cmd.Ping()))
        poller.register(peer.socket, zmq.POLLIN)
    waiting = {peer.socket for peer in peers}
    deadline = time.monotonic() + timeout_s
    while waiting and (left := deadline - time.monotonic()) > 0:
        for answering, _ in poller.poll(int(left * 1000)):
            answering.recv_multipart()
            if answering in waiting:
                waiting.discard(answering)
                poller.unregister(answering)
    return len(peers) - len(waiting)


def descriptor_limit(context: Context, descriptors: int, connections: int) -> Result:
    """A broker allowed `descriptors` file descriptors; `connections` idle connections from
    several addresses, more than it can hold; then a new user."""
    addresses = [f"127.0.2.{n}" for n in range(1, 9)]
    with broker_process(descriptors=descriptors) as broker:
        assert broker.process is not None
        pid = broker.process.pid
        bystander = Bystander(context, broker.endpoint)
        rss_before = rss_mib(pid)
        with bystander:
            idle = [
                Peer(context, _from_address(broker.endpoint, addresses[n % len(addresses)]))
                for n in range(connections)
            ]
            # Time for libzmq to accept them all (and the broker to cut off the excess): the
            # last ones PING, and are waited for together (one that was cut off never
            # answers: a wait for each in turn could take ACT_TIMEOUT_S apiece).
            _answered(idle[-8:], SETTLE_TIMEOUT_S)
            used_before = cpu_seconds(pid)
            start = time.monotonic()
            newcomer = Peer(context, _from_address(broker.endpoint, "127.0.3.1"))
            welcome = newcomer.register("newcomer")
            time.sleep(CPU_SAMPLE_S)
            busy = (cpu_seconds(pid) - used_before) / (time.monotonic() - start)
        result = _outcome(
            f"descriptor limit ({connections} connections, {descriptors} descriptors)",
            broker,
            bystander,
            rss_before,
            {"a new user still gets in": welcome.nick == "newcomer"},
        )
        result.notes.append(f"broker CPU while the flood stays: {busy:.0%} of a core")
        for peer in [*idle, newcomer, bystander.peer]:
            peer.close()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply attack sizes")
    args = parser.parse_args()
    scale = args.scale
    context: Context = zmq.Context()
    attacks: list[Callable[[], Result]] = [
        lambda: routing_id_collision(context, chosen=int(50 * scale)),
        lambda: session_hijack(context),
        lambda: frame_bomb(context, frames=int(5_000_000 * scale)),
        lambda: subscription_bomb(context, subscriptions=int(20_000 * scale), size=1000),
        lambda: descriptor_limit(context, descriptors=256, connections=int(400 * scale) or 300),
        lambda: connection_flood(
            context, connections=int(200 * scale), per_address=max(4, int(64 * scale))
        ),
    ]
    print("| attack | verdict | checks | bystander's worst PING | broker RSS |")
    print("|---|---|---|---|---|")
    for attack in attacks:
        print(attack().row(), flush=True)
    context.term()


if __name__ == "__main__":
    main()
