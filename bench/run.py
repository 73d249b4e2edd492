"""The benchmark: every scenario against every system, interleaved, a few runs each.

    python -m bench.run [--runs 3] [--scenarios direct-1,latency] [--systems chat,ceiling]
                        [--idle-clients 10000] [--window 2] [--quick] [--profile DIR]

Systems: the broker ("chat", flood limits off, via bench.launch, its store on a file as
`make broker` has it; "chat-memory", the same with no store), the raw pyzmq relay
("ceiling", bench.ceiling, and its zmq.asyncio variant), and ngIRCd and InspIRCd when
installed (bench.peers). Each measurement gets a freshly started system. Every figure is
the median of the runs, with its range; "x ceiling" compares it with the ceiling's figure
from the same run. Prints a table and writes bench/results.json, a list of
{scenario, metric, unit, system, median, min, max, runs}.

Fan-out members count on raw readers (bench.zmtp for ZeroMQ, plain sockets for IRC), so
that the load generator costs less per delivery than the fastest server; "undelivered"
is the share of the deliveries owed for what was sent that never arrived (a queue that
overflowed). The chat's idle clients register with the broadcast stream closed (as an
IRC client joins no channel); the broker's idle figures also include the same clients
with their stream open ("RSS per stream subscriber", "RSS per idle client, stream open",
compared with the ceiling's RSS per idle client).
"""

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from . import peers
from .procstat import cpu_seconds, rss_bytes
from .systems import Server, start_zmq
from .worker import Worker, call_all, wait_until

HERE = Path(__file__).resolve().parent
ZMQ_SYSTEMS = ("chat", "chat-memory", "ceiling", "ceiling-asyncio")
IRC_SYSTEMS = tuple(peers.PEERS)
SCENARIOS = ("direct-1", "direct-50", "fanout-100", "fanout-1000", "latency", "idle")
CEILING = "ceiling"
#: Fixed send rate of the latency scenario, messages per second.
LATENCY_RATE = 2000
#: Messages in flight per pair (direct) or per sender (fanout).
WINDOW = 100
#: How long registering the idle clients may take before the run gives up, seconds.
IDLE_LIMIT = 120.0
#: Registrations in progress at once, per worker. ngIRCd listens with a backlog of 10
#: (fixed in its source): more connections at once overflow it and wait for SYN retries.
CONCURRENCY = {"ngircd": 5}
#: Pause between setup and the start of a measurement, seconds.
LEAD = 0.2
#: Descriptors the broker needs besides one per connection (listeners, libzmq's
#: mailboxes, the wake-up pair, its terminal, Python's own).
FD_RESERVE = 256

Figures = list[tuple[str, str, float]]  # (metric, unit, value)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pools: dict[str, list[Worker]] = {}

    def workers(self, kind: str, count: int) -> list[Worker]:
        pool = self.pools.setdefault(kind, [])
        module = "bench.load" if kind == "zmq" else "bench.irc"
        while len(pool) < count:
            pool.append(Worker(module, len(pool)))
        return pool[:count]

    def stop(self) -> None:
        for pool in self.pools.values():
            for worker in pool:
                worker.stop()

    def start(self, system: str, scenario: str) -> Server:
        if system in ZMQ_SYSTEMS:
            profile = ""
            if self.args.profile and system == "chat":
                profile = os.path.join(self.args.profile, f"{scenario}.prof")
            return start_zmq(system, profile)
        return peers.start(system)

    # -- one measurement -------------------------------------------------------------

    def measure(self, system: str, scenario: str) -> Figures:
        server = self.start(system, scenario)
        used: list[Worker] = []
        try:
            kind = "zmq" if system in ZMQ_SYSTEMS else "irc"
            base = {
                "endpoint": server.address,
                "dialect": server.dialect,
                "window": WINDOW,
                "concurrency": self.args.concurrency or CONCURRENCY.get(system, 200),
            }
            name, _, size = scenario.partition("-")
            run: Callable[..., Figures] = getattr(self, name)
            return run(server, kind, base, used, *([int(size)] if size else []))
        finally:
            for worker in used:
                try:
                    call_all([worker], [{"op": "close"}], 30)
                except Exception as exc:  # noqa: BLE001 - a stuck worker is replaced
                    print(f"  worker {worker.index} did not close ({exc}); restarting it")
                    worker.proc.kill()
                    for pool in self.pools.values():
                        if worker in pool:
                            pool.remove(worker)
            server.stop()

    def _timed(
        self, server: Server, workers: list[Worker], settle: float = 0.05
    ) -> tuple[list[dict[str, Any]], float]:
        """Run the job on `workers`; their replies and the server's CPU seconds in the window.

        First every worker reads until nothing arrived for `settle` seconds (presence
        notices set off by registering)."""
        warm, window = self.args.warm, self.args.window
        call_all(workers, [{"op": "quiet", "seconds": settle, "limit": 30}] * len(workers), 60)
        start = time.monotonic() + LEAD
        request = {"op": "go", "start": start, "warm": warm, "window": window}
        for worker in workers:
            worker.send(request)
        wait_until(start + warm)
        cpu0 = cpu_seconds(server.pid)
        wait_until(start + warm + window)
        cpu = cpu_seconds(server.pid) - cpu0
        replies = [worker.receive(60) for worker in workers]
        for reply in replies:
            if reply.get("errors"):
                print(f"  {server.name}: {reply['errors']} errors, e.g. {reply['first_error']}")
        return replies, cpu

    def _throughput(self, replies: list[dict[str, Any]], cpu: float, unit: str) -> Figures:
        window = self.args.window
        count = sum(r["count"] for r in replies)
        load = sum(r["cpu"] for r in replies)
        return [
            ("throughput", unit, count / window),
            ("server CPU per delivery", "us", cpu / count * 1e6 if count else float("nan")),
            ("server CPU", "%", cpu / window * 100),
            ("load-generator CPU", "%", load / window * 100),
            ("errors", "count", float(sum(r.get("errors", 0) for r in replies))),
        ]

    def direct(
        self, server: Server, kind: str, base: dict[str, Any], used: list[Worker], pairs: int
    ) -> Figures:
        workers = self.workers(kind, min(self.args.workers, pairs))
        used.extend(workers)
        nicks = [(f"u{2 * i}", f"u{2 * i + 1}") for i in range(pairs)]
        share = [nicks[i :: len(workers)] for i in range(len(workers))]
        call_all(workers, [{"op": "setup", "job": "direct", "pairs": s, **base} for s in share], 90)
        replies, cpu = self._timed(server, workers)
        return self._throughput(replies, cpu, "msgs/s")

    def fanout(
        self, server: Server, kind: str, base: dict[str, Any], used: list[Worker], members: int
    ) -> Figures:
        workers = self.workers(kind, self.args.workers)
        used.extend(workers)
        nicks = [f"u{i}" for i in range(members)]
        share = [nicks[i :: len(workers)] for i in range(len(workers))]
        # The sender and its probe live in the first worker.
        share[0] = ["u0", "u1", *(n for n in share[0] if n != "u0")]
        share[1:] = [[n for n in s if n != "u1"] for s in share[1:]]
        requests = [
            {"op": "setup", "job": "fanout", "nicks": s, **base}
            | ({"sender": "u0", "probe": "u1"} if i == 0 else {})
            for i, s in enumerate(share)
        ]
        call_all(workers, requests, 120)
        replies, cpu = self._timed(server, workers, settle=0.2)
        # Each broadcast reaches every member (IRC does not echo it to its sender): what
        # did not arrive by the end was dropped (a full queue) or lost.
        per_message = members - 1 if kind == "irc" else members
        expected = sum(r["sent"] for r in replies) * per_message
        missing = expected - sum(r["total"] for r in replies)
        if missing:
            print(f"  {server.name}: {missing} of {expected} deliveries did not arrive")
        undelivered = missing / expected * 100 if expected else float("nan")
        return [*self._throughput(replies, cpu, "deliveries/s"), ("undelivered", "%", undelivered)]

    def latency(
        self, server: Server, kind: str, base: dict[str, Any], used: list[Worker]
    ) -> Figures:
        workers = self.workers(kind, 1)
        used.extend(workers)
        request = {"op": "setup", "job": "latency", "pair": ["u0", "u1"], "rate": LATENCY_RATE}
        call_all(workers, [request | base], 60)
        replies, cpu = self._timed(server, workers)
        samples = replies[0]["samples_us"]
        if not samples:
            raise RuntimeError("no latency samples")
        return [
            ("p50 latency", "us", samples[len(samples) // 2]),
            ("p99 latency", "us", samples[min(len(samples) - 1, int(len(samples) * 0.99))]),
            ("server CPU", "%", cpu / self.args.window * 100),
        ]

    def idle(self, server: Server, kind: str, base: dict[str, Any], used: list[Worker]) -> Figures:
        total = self.args.idle_clients
        workers = self.workers(kind, self.args.workers)
        used.extend(workers)
        nicks = [f"u{i}" for i in range(total)]
        share = [nicks[i :: len(workers)] for i in range(len(workers))]
        call_all(workers, [{"op": "setup", "job": "idle", "nicks": s, **base} for s in share], 30)
        time.sleep(0.2)
        before = rss_bytes(server.pid)
        start = time.monotonic() + LEAD
        limit = self.args.idle_limit
        replies = call_all(
            workers, [{"op": "go", "start": start, "limit": limit}] * len(workers), limit + 60
        )
        registered = sum(r["registered"] for r in replies)
        seconds = max(r["seconds"] for r in replies)
        # Let whatever registration set off (presence notices) drain before weighing.
        call_all(workers, [{"op": "quiet", "seconds": 0.5, "limit": 60}] * len(workers), 90)
        after = rss_bytes(server.pid)
        per_client = (after - before) / max(1, registered) / 1024
        figures: Figures = [
            ("registered", "clients", float(registered)),
            ("RSS per idle client", "KiB", per_client),
        ]
        if registered == total:
            figures.append(("time to register all", "s", seconds))
        else:
            print(f"  {server.name}: only {registered} of {total} registered in {limit:.0f} s")
        if server.dialect == "chat":
            figures.extend(self._idle_streams(server, workers, registered, per_client, after))
        return figures

    def _idle_streams(
        self, server: Server, workers: list[Worker], registered: int, per_client: float, rss: int
    ) -> Figures:
        """The chat's idle clients registered without opening the broadcast stream (an IRC
        client in no channel); now each opens it, and the second connection is weighed.

        The broker holds a descriptor per connection: past its open-file limit it could
        not accept them all, so at most what that limit leaves room for are opened."""
        room = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - registered - FD_RESERVE
        most = max(0, min(registered, room)) // len(workers)
        limit = self.args.idle_limit
        request = {"op": "go", "phase": "stream", "limit": limit, "most": most}
        replies = call_all(workers, [request] * len(workers), limit + 60)
        opened = sum(r["opened"] for r in replies)
        call_all(workers, [{"op": "quiet", "seconds": 0.5, "limit": 60}] * len(workers), 90)
        per_stream = (rss_bytes(server.pid) - rss) / max(1, opened) / 1024
        if opened < registered:
            print(f"  {server.name}: the stream opened for {opened} of {registered} clients")
        return [
            ("stream subscribers", "clients", float(opened)),
            ("RSS per stream subscriber", "KiB", per_stream),
            ("RSS per idle client, stream open", "KiB", per_client + per_stream),
        ]


# -- aggregation and output ------------------------------------------------------------


def aggregate(raw: dict[tuple[str, str, str, str], list[float]], runs: int) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for (scenario, metric, unit, system), values in raw.items():
        records.append(record(scenario, metric, unit, system, values))
        ceiling = raw.get((scenario, RATIO_AGAINST.get(metric, metric), unit, CEILING))
        if system != CEILING and ceiling and metric in RATIO_METRICS:
            ratios = [v / c for v, c in zip(values, ceiling, strict=False) if c]
            if ratios:
                records.append(record(scenario, f"{metric} / ceiling", "x", system, ratios))
    return records


RATIO_METRICS = (
    "throughput",
    "p50 latency",
    "p99 latency",
    "RSS per idle client",
    "RSS per idle client, stream open",
    "time to register all",
    "server CPU per delivery",
)
#: Metrics compared with another of the ceiling's: the ceiling has no stream, so a chat
#: client with its stream open (two connections) is set against a ceiling client (one).
RATIO_AGAINST = {"RSS per idle client, stream open": "RSS per idle client"}


def record(
    scenario: str, metric: str, unit: str, system: str, values: list[float]
) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "metric": metric,
        "unit": unit,
        "system": system,
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
    }


def fmt(value: float, unit: str) -> str:
    if value != value:  # NaN
        return "-"
    if unit == "x":
        return f"{value:.2f}"
    if unit in ("%", "count", "clients"):
        return f"{value:.0f}"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.2f}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.1f}k"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def table(records: list[dict[str, Any]]) -> str:
    ratio = {
        (r["scenario"], r["metric"].removesuffix(" / ceiling"), r["system"]): r
        for r in records
        if r["unit"] == "x"
    }
    lines = [
        "| scenario | metric | unit | system | median | min - max | x ceiling |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if r["unit"] == "x":
            continue
        x = ratio.get((r["scenario"], r["metric"], r["system"]))
        versus = f"{fmt(x['median'], 'x')} ({fmt(x['min'], 'x')}-{fmt(x['max'], 'x')})" if x else ""
        lines.append(
            f"| {r['scenario']} | {r['metric']} | {r['unit']} | {r['system']} "
            f"| {fmt(r['median'], r['unit'])} "
            f"| {fmt(r['min'], r['unit'])} - {fmt(r['max'], r['unit'])} "
            f"| {versus} |"
        )
    return "\n".join(lines)


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, pyzmq {zmq.__version__}, "
        f"libzmq {zmq.zmq_version()}, open files {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}"
    )


def raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    summary = (__doc__ or "").split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=summary)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=", ".join(SCENARIOS))
    parser.add_argument(
        "--systems", default=",".join(ZMQ_SYSTEMS + IRC_SYSTEMS), help="comma-separated"
    )
    parser.add_argument("--window", type=float, default=1.5, help="seconds measured per figure")
    parser.add_argument("--warm", type=float, default=0.3, help="seconds of load before it")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument(
        "--idle-clients", type=int, default=500, help="idle clients to register (full: 10000)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="registrations in progress per worker (default: 5 for ngIRCd, else 200)",
    )
    parser.add_argument("--idle-limit", type=float, default=IDLE_LIMIT, help="seconds")
    parser.add_argument("--quick", action="store_true", help="1 run, 1 s windows: a smoke test")
    parser.add_argument("--json", default=str(HERE / "results.json"), help="where to write")
    parser.add_argument(
        "--profile", default="", help="run the broker under cProfile, stats into this directory"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.window, args.warm = 1, 1.0, 0.2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_open_files()
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        sys.exit(f"unknown scenarios: {', '.join(sorted(unknown))}")
    systems = [s for s in args.systems.split(",") if s]
    for name in [s for s in systems if s in IRC_SYSTEMS]:
        if not peers.executable(name):
            print(f"note: {name} is not installed; skipped (make bench-peers installs it)")
            systems.remove(name)
    print(machine())
    print(f"systems: {', '.join(systems)}; {args.runs} runs; window {args.window:g} s")
    raw: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    bench = Bench(args)
    started = time.monotonic()
    try:
        for run in range(args.runs):
            for scenario in scenarios:
                for system in systems:
                    t = time.monotonic()
                    figures = bench.measure(system, scenario)
                    shown = ", ".join(f"{m} {fmt(v, u)} {u}" for m, u, v in figures[:2])
                    took = time.monotonic() - t
                    print(f"run {run + 1} {scenario:<11} {system:<15} {shown} ({took:.1f} s)")
                    for metric, unit, value in figures:
                        raw[(scenario, metric, unit, system)].append(value)
    finally:
        bench.stop()
    records = aggregate(raw, args.runs)
    print()
    print(table(records))
    print(f"\n{machine()}; took {time.monotonic() - started:.0f} s")
    with open(args.json, "w") as f:
        json.dump(records, f, indent=1)
        f.write("\n")
    print(f"wrote {args.json}")
    if args.profile:
        print_profiles(args.profile)
    return 0


def print_profiles(directory: str) -> None:
    import pstats

    for name in sorted(os.listdir(directory)):
        if name.endswith(".prof"):
            print(f"\n== broker profile: {name}")
            pstats.Stats(os.path.join(directory, name)).sort_stats("tottime").print_stats(18)


if __name__ == "__main__":
    sys.exit(main())
