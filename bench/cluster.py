"""One broker against brokers behind one NATS: what the cluster costs, and failover.

    python -m bench.cluster [--runs 3] [--scenarios direct-1,failover] [--window 1.5]
                            [--quick] [--failover-clients 20] [--json PATH]

Systems, each started afresh for every measurement (bench.launch's broker: flood limits
off, its store on a file in a new directory, as `make broker` has it):

- "lone": one broker, no NATS (the baseline);
- "nats-1": nats-server with JetStream and one broker in it: both ends of every exchange on
  that broker, so what differs from "lone" is the NATS hop alone;
- "nats-2": nats-server and two brokers, A and B: in direct-N and latency each sender is on
  A and its recipient on B; in fanout-N the first load generator's members (the sender
  among them) are on A, the second's on B, half and half.

Scenarios (bench.run's, with the same load generator, bench.load): direct-N, fanout-N,
latency-RATE (RATE private messages a second, p50 and p99), and "failover" (nats-2 only,
bench.failover: the brokers' heartbeat is FAILOVER_HEARTBEAT_MS, broker A is SIGKILLed
under its clients).

CPU is read from /proc for the brokers and nats-server apart: "broker CPU per delivery"
and "nats-server CPU per delivery" are their seconds in the window over the deliveries
counted ("broker A CPU per delivery", "broker B CPU per delivery": each of two); "server
CPU per delivery" is both; "broker A CPU", "broker B CPU" and "nats-server CPU" are each
process's share of one CPU in the window. "x lone" is each figure's ratio to the lone
broker's in the same run. Prints a table and writes bench/cluster-results.json (records
as bench/results.json's); docs/PERFORMANCE.md ("Cluster") has the figures.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .failover import measure_failover
from .nats_server import find_nats_server, start_nats
from .procstat import cpu_seconds
from .run import Bench, Figures, aggregate, raise_open_files, report, run_all
from .systems import Server, first_line, terminate

HERE = Path(__file__).resolve().parent
SYSTEMS = ("lone", "nats-1", "nats-2")
LONE = "lone"
SCENARIOS = (
    "direct-1",
    "direct-50",
    "fanout-100",
    "fanout-1000",
    "latency-500",
    "latency-2000",
    "failover",
)
#: The brokers' heartbeat in the failover scenario (ms): clients PING this often and are
#: given up on after 3 silent intervals (the liveness bound); the goal is failover within
#: twice that.
FAILOVER_HEARTBEAT_MS = 500
#: Clients on the broker killed in the failover scenario, besides the sender and the
#: recipient; and the sender's rate, in messages of each kind (TELL, SAY) per second.
FAILOVER_CLIENTS, FAILOVER_RATE = 20, 100.0
#: The key of nats-server's CPU seconds among a Deployment's parts.
NATS_PART = "nats-server"
#: The failover figures in seconds (the others are counts).
SECONDS = {
    m: "s"
    for m in (
        "failover time, median",
        "failover time, max",
        "goal: 2 x liveness",
        "HELLO to WELCOME on B, max",
    )
}


def nats_binary() -> str:
    """The nats-server program (`make nats-server` installs it)."""
    found = find_nats_server()
    if found is None:
        sys.exit("nats-server is not installed: `make nats-server` installs Debian's package")
    return found


@dataclass
class Deployment(Server):
    """The system under test: broker A (`proc`, at `address`), any other brokers and the
    nats-server they share."""

    brokers: list["subprocess.Popen[bytes]"] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)
    nats: "subprocess.Popen[bytes] | None" = None

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each process: "broker A", "broker B" (while alive) and
        NATS_PART."""
        parts = {
            f"broker {name}": cpu_seconds(proc.pid)
            for name, proc in zip("AB", self.brokers, strict=False)
            if proc.poll() is None
        }
        if self.nats is not None:
            parts[NATS_PART] = cpu_seconds(self.nats.pid)
        return parts

    def kill_first(self) -> None:
        """SIGKILL broker A."""
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        # The brokers first: a broker that stops tells NATS its users left.
        for proc in self.brokers:
            terminate(proc)
        if self.nats is not None:
            terminate(self.nats)
        for path in self.cleanup_dirs:
            shutil.rmtree(path, ignore_errors=True)


def deploy(system: str, heartbeat_ms: int = 0) -> Deployment:
    """Start `system` ("lone", "nats-1", "nats-2"), with a heartbeat of `heartbeat_ms` if
    given (else bench.launch's long one)."""
    home = tempfile.mkdtemp(prefix="zmq-chat-bench-cluster-")
    nats, url = None, ""
    brokers: list[subprocess.Popen[bytes]] = []
    endpoints: list[str] = []
    count = {"lone": 1, "nats-1": 1, "nats-2": 2}[system]
    try:
        if system != LONE:
            nats, url = start_nats(nats_binary(), os.path.join(home, "nats"))
        # One after the other: the first makes the cluster's streams and buckets.
        for name in "AB"[:count]:
            argv = ["--bind", "tcp://127.0.0.1:*", "--db", os.path.join(home, f"chat-{name}.db")]
            if url:
                argv += ["--nats", url, "--broker-id", name]
            if heartbeat_ms:
                argv += ["--heartbeat-ms", str(heartbeat_ms)]
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.launch", *argv],
                stdout=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
            )
            brokers.append(proc)
            endpoints.append(first_line(proc, 30))
    except BaseException:
        for proc in brokers:
            proc.kill()
        if nats is not None:
            nats.kill()
        shutil.rmtree(home, ignore_errors=True)
        raise
    return Deployment(
        system, brokers[0], endpoints[0], "zmq", "chat", [home], brokers, endpoints, nats
    )


class ClusterBench(Bench):
    """bench.run's scenarios against a Deployment, CPU by part, and failover."""

    def start(self, system: str, scenario: str) -> Server:
        return deploy(system)

    def cpu_parts(self, server: Server) -> dict[str, float]:
        assert isinstance(server, Deployment)
        return server.cpu()

    def placement(self, server: Server) -> dict[str, Any]:
        # Recipients (direct, latency) on broker B when there is one.
        assert isinstance(server, Deployment)
        return {"recipient_endpoint": server.endpoints[1]} if len(server.endpoints) > 1 else {}

    def spread(self, server: Server, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Load generator i on broker i (of two: half the members on each).
        assert isinstance(server, Deployment)
        endpoints = server.endpoints
        return [r | {"endpoint": endpoints[i % len(endpoints)]} for i, r in enumerate(requests)]

    def measure(self, system: str, scenario: str) -> Figures:
        if scenario == "failover":
            return self.failover(system)
        self.last_cpu = {}
        figures = super().measure(system, scenario)
        window = self.args.window
        parts = dict(self.last_cpu)
        nats = parts.pop(NATS_PART, None)
        count = next((v for m, _, v in figures if m == "throughput"), 0.0) * window
        if count:
            figures.append(("broker CPU per delivery", "us", sum(parts.values()) / count * 1e6))
            if nats is not None:
                figures.append(("nats-server CPU per delivery", "us", nats / count * 1e6))
        # Each process on its own: is one of them the limit (a broker near 100 %), and what
        # does each broadcast cost the broker it came in on, and the other?
        for part, seconds in self.last_cpu.items():
            figures.append((f"{part} CPU", "%", seconds / window * 100))
            if count and part != NATS_PART and len(parts) > 1:
                figures.append((f"{part} CPU per delivery", "us", seconds / count * 1e6))
        return figures

    def failover(self, system: str) -> Figures:
        deployment = deploy(system, FAILOVER_HEARTBEAT_MS)
        try:
            figures = measure_failover(
                deployment.endpoints,
                deployment.kill_first,
                FAILOVER_HEARTBEAT_MS,
                self.args.failover_clients,
                self.args.failover_rate,
            )
        finally:
            deployment.stop()
        return [(metric, SECONDS.get(metric, "count"), value) for metric, value in figures.items()]


def supports(system: str, scenario: str) -> bool:
    """Failover needs a broker to fail over to."""
    return scenario != "failover" or system == "nats-2"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    summary = (__doc__ or "").split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=summary)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=", ".join(SCENARIOS))
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=", ".join(SYSTEMS))
    parser.add_argument("--window", type=float, default=1.5, help="seconds measured per figure")
    parser.add_argument("--warm", type=float, default=0.3, help="seconds of load before it")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--concurrency", type=int, default=0, help="registrations at once")
    parser.add_argument(
        "--failover-clients",
        type=int,
        default=FAILOVER_CLIENTS,
        help="idle clients on the killed broker, besides the sender and its recipient",
    )
    parser.add_argument(
        "--failover-rate",
        type=float,
        default=FAILOVER_RATE,
        help="TELLs (and as many SAYs) the sender sends a second through the kill",
    )
    parser.add_argument("--quick", action="store_true", help="1 run, 1 s windows: a smoke test")
    parser.add_argument("--json", default=str(HERE / "cluster-results.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.window, args.warm = 1, 1.0, 0.2
    # bench.run's scenarios read these; none of them is run here.
    args.profile, args.idle_clients, args.idle_limit = "", 0, 0.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_open_files()
    scenarios = [s for s in args.scenarios.split(",") if s]
    systems = [s for s in args.systems.split(",") if s]
    unknown = (set(scenarios) - set(SCENARIOS)) | (set(systems) - set(SYSTEMS))
    if unknown:
        sys.exit(f"unknown scenarios or systems: {', '.join(sorted(unknown))}")
    nats_binary()
    started = time.monotonic()
    raw = run_all(ClusterBench(args), scenarios, systems, supports)
    records = aggregate(raw, args.runs, lambda _scenario: LONE)
    report(records, f"x baseline: to the {LONE} broker, run by run", args.json, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
