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

Rooms (the ceiling relays have none, so these skip them and compare with InspIRCd, whose
channels are the IRC equivalent): "rooms-N" is fan-out to the N members of one room
(#fan; a channel for IRC) while BUSY_ROOMS rooms of BUSY_MEMBERS members each get
`--busy-rate` posts a second; every member of #fan counts each trace of the busy rooms'
names that reaches it ("busy-room traces at non-members", which must be 0; the busy rooms'
own members count theirs, which shows the count works). "manyrooms-N" registers the users
of N rooms of MANY_ROOM_MEMBERS, each user in `--rooms-per-user` of them, then every user
ENTERs (JOINs) all its rooms at once: the time until every answer came, and the server's
RSS growth per membership.
"""

import argparse
import itertools
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
SCENARIOS = (
    "direct-1",
    "direct-50",
    "fanout-100",
    "fanout-1000",
    "latency",
    "idle",
    "rooms-1000",
    "manyrooms-1000",
)
CEILING = "ceiling"
#: Scenarios of rooms, which the ceiling relays do not know (they have one group): their
#: ratios are to InspIRCd, measured in the same run.
ROOM_SCENARIOS = ("rooms", "manyrooms")
ROOM_BASELINE = "inspircd"
#: Around the measured room (rooms-N): this many busy rooms of BUSY_MEMBERS members each,
#: whose first member posts `--busy-rate` times a second. Their names share BUSY_PREFIX,
#: which no byte of the measured room's traffic holds: a member of none of them counts it.
BUSY_ROOMS, BUSY_MEMBERS, BUSY_PREFIX = 10, 10, "#busy-"
#: The measured room (a short name: its members count "POSTED" and the name, packed).
MAIN_ROOM = "#fan"
#: Posts per second in each busy room, by default: a very busy room for people, not a
#: flood (ten rooms: 2,000 posts and 20,000 deliveries a second).
BUSY_RATE = 200.0
#: Members of each room in manyrooms-N (N rooms), and rooms of each user by default:
#: 1,000 rooms of 10 are 10,000 memberships of 1,000 users.
MANY_ROOM_MEMBERS, ROOMS_PER_USER = 10, 10
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
        #: CPU seconds of each part of the system (`cpu_parts`) in the last window measured.
        self.last_cpu: dict[str, float] = {}

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
            kind = server.kind
            base = {
                "endpoint": server.address,
                "dialect": server.dialect,
                "window": WINDOW,
                "concurrency": self.args.concurrency or CONCURRENCY.get(system, 200),
                **self.placement(server),
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
        cpu0 = self.cpu_parts(server)
        wait_until(start + warm + window)
        cpu1 = self.cpu_parts(server)
        self.last_cpu = {part: cpu1[part] - cpu0[part] for part in cpu0}
        cpu = sum(self.last_cpu.values())
        replies = [worker.receive(60) for worker in workers]
        for reply in replies:
            if reply.get("errors"):
                print(f"  {server.name}: {reply['errors']} errors, e.g. {reply['first_error']}")
        return replies, cpu

    def cpu_parts(self, server: Server) -> dict[str, float]:
        """CPU seconds so far of each process of the system under test, by part."""
        return {"server": cpu_seconds(server.pid)}

    def placement(self, server: Server) -> dict[str, Any]:
        """What every setup request adds about where clients connect: nothing for one
        system (bench.cluster puts recipients on another broker)."""
        return {}

    def spread(self, server: Server, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Where the workers of a fan-out connect: one system, one endpoint (a cluster
        spreads them over its brokers)."""
        return requests

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
        share = with_sender([f"u{i}" for i in range(members)], len(workers))
        requests = [
            {"op": "setup", "job": "fanout", "nicks": s, **base}
            | ({"sender": "u0", "probe": "u1"} if i == 0 else {})
            for i, s in enumerate(share)
        ]
        call_all(workers, self.spread(server, requests), 120)
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

    def rooms(
        self, server: Server, kind: str, base: dict[str, Any], used: list[Worker], members: int
    ) -> Figures:
        """Fan-out to the `members` of one room while BUSY_ROOMS other rooms are busy; the
        measured room's members count every trace of the busy rooms that reaches them."""
        workers = self.workers(kind, self.args.workers)
        used.extend(workers)
        share = with_sender([f"u{i}" for i in range(members)], len(workers))
        requests = [
            {
                "op": "setup",
                "job": "rooms",
                "foreign": BUSY_PREFIX,
                "rooms": [{"room": MAIN_ROOM, "nicks": s, "sender": "u0", "probe": "u1"}],
                **base,
            }
            for s in share
        ]
        for k in range(BUSY_ROOMS):
            nicks = [f"b{k}m{j}" for j in range(BUSY_MEMBERS)]
            busy = {"room": f"{BUSY_PREFIX}{k}", "nicks": nicks, "rate": self.args.busy_rate}
            # A whole busy room lives in one worker, its sender and probe together.
            requests[k % len(workers)]["rooms"].append(
                busy | {"sender": nicks[0], "probe": nicks[1]}
            )
        call_all(workers, requests, 180)
        replies, cpu = self._timed(server, workers, settle=0.2)
        window = self.args.window
        busy_count = sum(r["also_count"] for r in replies)
        figures = self._throughput(replies, cpu, "deliveries/s")
        # Per delivery: the busy rooms' deliveries are work too.
        all_count = sum(r["count"] for r in replies) + busy_count
        figures[1] = ("server CPU per delivery", "us", cpu / all_count * 1e6 if all_count else 0)
        echo = 1 if kind == "irc" else 0  # IRC does not send a message back to its sender
        owed = sum(r["sent"] for r in replies) * (members - echo)
        busy_owed = sum(r["busy_sent"] for r in replies) * (BUSY_MEMBERS - echo)
        missing = owed - sum(r["total"] for r in replies)
        busy_missing = busy_owed - sum(r["busy_total"] for r in replies)
        if missing or busy_missing:
            print(
                f"  {server.name}: {missing} of {owed} deliveries did not arrive, and "
                f"{busy_missing} of {busy_owed} in the busy rooms"
            )
        foreign = float(sum(r["foreign"] for r in replies))
        if foreign:
            print(f"  {server.name}: {foreign:.0f} traces of the busy rooms reached non-members")
        return [
            *figures,
            ("undelivered", "%", missing / owed * 100 if owed else float("nan")),
            ("busy rooms", "deliveries/s", busy_count / window),
            ("busy rooms undelivered", "%", busy_missing / busy_owed * 100 if busy_owed else 0),
            ("busy-room traces at non-members", "count", foreign),
            (
                "busy-room traces at members",
                "count",
                float(sum(r["busy_foreign"] for r in replies)),
            ),
        ]

    def manyrooms(
        self, server: Server, kind: str, base: dict[str, Any], used: list[Worker], rooms: int
    ) -> Figures:
        """`rooms` rooms of MANY_ROOM_MEMBERS members, each user in `--rooms-per-user` of
        them: how long until every ENTER (JOIN) is answered, and what the server's memory
        grew by."""
        per_user = self.args.rooms_per_user
        memberships = rooms * MANY_ROOM_MEMBERS
        users = memberships // per_user
        if users * per_user != memberships or users < MANY_ROOM_MEMBERS:
            raise ValueError(f"{memberships} memberships do not split into {per_user} per user")
        rooms_of: dict[str, list[str]] = defaultdict(list)
        # Membership m: room m // size, user m % users; users >= size keeps both distinct.
        for m in range(memberships):
            rooms_of[f"u{m % users}"].append(f"#r{m // MANY_ROOM_MEMBERS}")
        workers = self.workers(kind, self.args.workers)
        used.extend(workers)
        nicks = list(rooms_of)
        share = [nicks[i :: len(workers)] for i in range(len(workers))]
        requests = [
            {"op": "setup", "job": "manyrooms", "rooms_of": {n: rooms_of[n] for n in s}, **base}
            for s in share
        ]
        call_all(workers, requests, 180)
        call_all(workers, [{"op": "quiet", "seconds": 0.5, "limit": 60}] * len(workers), 90)
        before = rss_bytes(server.pid)
        start = time.monotonic() + LEAD
        limit = self.args.idle_limit
        replies = call_all(
            workers, [{"op": "go", "start": start, "limit": limit}] * len(workers), limit + 60
        )
        quiet = [{"op": "quiet", "seconds": 0.5, "limit": 60}] * len(workers)
        call_all(workers, quiet, 90)
        after = rss_bytes(server.pid)
        entered = sum(r["entered"] for r in replies)
        figures: Figures = [
            ("memberships", "count", float(entered)),
            ("time to join all", "s", max(r["seconds"] for r in replies)),
            ("RSS per membership", "KiB", (after - before) / max(1, entered) / 1024),
            ("RSS before joining", "MiB", before / 2**20),
            ("RSS after joining", "MiB", after / 2**20),
        ]
        if server.dialect == "chat":
            # The members read the stream: each now subscribes to its rooms' topics too.
            call_all(workers, [{"op": "go", "phase": "subscribe"}] * len(workers), 60)
            call_all(workers, quiet, 90)
            subscribed = rss_bytes(server.pid)
            per = (subscribed - before) / max(1, entered) / 1024
            figures.append(("RSS per membership, stream subscribed", "KiB", per))
        errors = sum(r.get("errors", 0) for r in replies)
        return [*figures, ("errors", "count", float(errors))]

    def latency(
        self,
        server: Server,
        kind: str,
        base: dict[str, Any],
        used: list[Worker],
        rate: int = LATENCY_RATE,
    ) -> Figures:
        """p50 and p99 of one pair's private messages sent at `rate` a second ("latency",
        or "latency-RATE")."""
        workers = self.workers(kind, 1)
        used.extend(workers)
        request = {"op": "setup", "job": "latency", "pair": ["u0", "u1"], "rate": rate}
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


def with_sender(nicks: list[str], workers: int) -> list[list[str]]:
    """`nicks` shared among `workers`, the sender u0 and its probe u1 in the first."""
    share = [nicks[i::workers] for i in range(workers)]
    share[0] = ["u0", "u1", *(n for n in share[0] if n != "u0")]
    share[1:] = [[n for n in s if n != "u1"] for s in share[1:]]
    return share


def baseline(scenario: str) -> str:
    """The system a scenario's figures are compared with, measured in the same run."""
    return ROOM_BASELINE if scenario.partition("-")[0] in ROOM_SCENARIOS else CEILING


def supports(system: str, scenario: str) -> bool:
    """The ceiling relays have no rooms: one group of everyone."""
    return not (system.startswith(CEILING) and scenario.partition("-")[0] in ROOM_SCENARIOS)


# -- aggregation and output ------------------------------------------------------------


def aggregate(
    raw: dict[tuple[str, str, str, str], list[float]],
    runs: int,
    against: Callable[[str], str] = baseline,
) -> list[dict[str, Any]]:
    """A record per (scenario, metric, unit, system), and one of its ratios to the system
    `against(scenario)` names, run by run, for the metrics in RATIO_METRICS."""
    records: list[dict[str, Any]] = []
    for (scenario, metric, unit, system), values in raw.items():
        records.append(record(scenario, metric, unit, system, values))
        versus = against(scenario)
        base = raw.get((scenario, RATIO_AGAINST.get(metric, metric), unit, versus))
        if system != versus and base and metric in RATIO_METRICS:
            ratios = [v / c for v, c in zip(values, base, strict=False) if c]
            if ratios:
                records.append(record(scenario, f"{metric} / {versus}", "x", system, ratios))
    return records


RATIO_METRICS = (
    "throughput",
    "broker CPU per delivery",
    "p50 latency",
    "p99 latency",
    "RSS per idle client",
    "RSS per idle client, stream open",
    "time to register all",
    "server CPU per delivery",
    "time to join all",
    "RSS per membership",
    "RSS per membership, stream subscribed",
    "RSS after joining",
)
#: Metrics compared with another of the ceiling's: the ceiling has no stream, so a chat
#: client with its stream open (two connections) is set against a ceiling client (one).
RATIO_AGAINST = {
    "RSS per idle client, stream open": "RSS per idle client",
    "RSS per membership, stream subscribed": "RSS per membership",
}


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


BASELINES = f"x baseline: to the {CEILING}; for {', '.join(ROOM_SCENARIOS)}, to {ROOM_BASELINE}"


def table(records: list[dict[str, Any]], note: str = BASELINES) -> str:
    """A Markdown table of `records`, each with its ratio to the baseline (`note` says
    which it is)."""
    ratio = {
        (r["scenario"], r["metric"].rsplit(" / ", 1)[0], r["system"]): r
        for r in records
        if r["unit"] == "x"
    }
    lines = [
        note,
        "",
        "| scenario | metric | unit | system | median | min - max | x baseline |",
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


def load_average() -> str:
    """The machine's load averages (1, 5, 15 minutes): other work on it shows there, beside
    the benchmark's own (about 2 while it runs)."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


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
    parser.add_argument(
        "--busy-rate",
        type=float,
        default=BUSY_RATE,
        help=f"posts per second in each of the {BUSY_ROOMS} busy rooms of rooms-N",
    )
    parser.add_argument(
        "--rooms-per-user",
        type=int,
        default=ROOMS_PER_USER,
        help=f"rooms each user is in, in manyrooms-N (N rooms of {MANY_ROOM_MEMBERS})",
    )
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
    for system, scenario in itertools.product(systems, scenarios):
        if not supports(system, scenario):
            print(f"note: {system} has no rooms; {scenario} skipped for it")
    started = time.monotonic()
    raw = run_all(Bench(args), scenarios, systems, supports)
    report(aggregate(raw, args.runs), BASELINES, args.json, started)
    if args.profile:
        print_profiles(args.profile)
    return 0


Raw = dict[tuple[str, str, str, str], list[float]]


def run_all(
    bench: Bench, scenarios: list[str], systems: list[str], supported: Callable[[str, str], bool]
) -> Raw:
    """Every scenario against every system that `supported` allows, interleaved, a fresh
    system each time, `bench.args.runs` times: each figure's values by (scenario, metric,
    unit, system)."""
    args = bench.args
    print(f"{machine()}; load average {load_average()}")
    print(f"systems: {', '.join(systems)}; {args.runs} runs; window {args.window:g} s")
    raw: Raw = defaultdict(list)
    try:
        for run in range(args.runs):
            for scenario in scenarios:
                for system in systems:
                    if not supported(system, scenario):
                        continue
                    t = time.monotonic()
                    figures = bench.measure(system, scenario)
                    shown = ", ".join(f"{m} {fmt(v, u)} {u}" for m, u, v in figures[:2])
                    took = time.monotonic() - t
                    print(f"run {run + 1} {scenario:<12} {system:<15} {shown} ({took:.1f} s)")
                    for metric, unit, value in figures:
                        raw[(scenario, metric, unit, system)].append(value)
    finally:
        bench.stop()
    return raw


def report(records: list[dict[str, Any]], note: str, path: str, started: float) -> None:
    """Print the table of `records` (`note` says what the ratios are to) and write them to
    `path` as JSON."""
    print()
    print(table(records, note))
    took = time.monotonic() - started
    print(f"\n{machine()}; took {took:.0f} s; load average {load_average()}")
    with open(path, "w") as f:
        json.dump(records, f, indent=1)
        f.write("\n")
    print(f"wrote {path}")


def print_profiles(directory: str) -> None:
    import pstats

    for name in sorted(os.listdir(directory)):
        if name.endswith(".prof"):
            print(f"\n== broker profile: {name}")
            pstats.Stats(os.path.join(directory, name)).sort_stats("tottime").print_stats(18)


if __name__ == "__main__":
    sys.exit(main())
