"""The broker as the benchmark runs it: flood control off, a long heartbeat.

    python -m bench.launch --bind tcp://127.0.0.1:* [--db PATH] [--profile FILE]
                           [--nats URL --broker-id NAME] [--heartbeat-ms MS]

Prints the endpoint it listens on as its first line, then serves until SIGTERM or SIGINT.
The heartbeat is long (like the IRC servers' ping timeouts in bench/) so that idle and
receive-only benchmark clients, which never PING, are not expired mid-run. With
`--profile`, the serving loop runs under cProfile and the statistics are written to FILE
on shutdown. With `--nats`, the broker joins the cluster of the brokers on that NATS server
(bench.cluster); `--heartbeat-ms` shortens the heartbeat for a failover measurement, whose
clients PING.
"""

import argparse
import cProfile
import secrets
import signal
import sys
from types import FrameType

from broker.connections import ConnectionLimits
from broker.ratelimit import FloodPolicy
from broker.server import BrokerConfig, BrokerServer, tune_gc_for_serving
from broker.store import IN_MEMORY

#: Heartbeat interval for benchmark runs (ms): clients are expired after 3 of these.
BENCH_HEARTBEAT_MS = 600_000
UNLIMITED = 10**9


def bench_config(
    bind: str,
    admin_token: str,
    db: str = IN_MEMORY,
    nats: tuple[str, ...] = (),
    broker_id: str = "",
    heartbeat_ms: int = BENCH_HEARTBEAT_MS,
) -> BrokerConfig:
    """A broker configuration with every rate limit raised out of reach (in the cluster of
    the brokers on `nats` as `broker_id`, if given)."""
    flood = FloodPolicy(
        burst=UNLIMITED,
        per_second=UNLIMITED,
        strikes_to_kick=UNLIMITED,
        join_burst=UNLIMITED,
        joins_per_second=UNLIMITED,
        sessions_per_address=UNLIMITED,
    )
    # Every benchmark client comes from loopback, and idle ones never register.
    connections = ConnectionLimits(
        total=UNLIMITED, per_address=UNLIMITED, register_within_s=BENCH_HEARTBEAT_MS / 1000
    )
    return BrokerConfig(
        bind=bind,
        admin_token=admin_token,
        heartbeat_ms=heartbeat_ms,
        flood=flood,
        connections=connections,
        db=db,
        nats=nats,
        broker_id=broker_id,
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.launch")
    parser.add_argument("--bind", default="tcp://127.0.0.1:*")
    parser.add_argument("--profile", default="", help="write cProfile statistics here")
    parser.add_argument("--db", default=IN_MEMORY, help="the broker's store (default: none)")
    parser.add_argument("--nats", default="", help="join the cluster on this NATS server")
    parser.add_argument("--broker-id", default="bench", help="the broker's name in the cluster")
    parser.add_argument("--heartbeat-ms", type=int, default=BENCH_HEARTBEAT_MS)
    args = parser.parse_args()
    # Nobody becomes an operator in a benchmark: a token nobody knows.
    config = bench_config(
        args.bind,
        secrets.token_urlsafe(16),
        args.db,
        nats=(args.nats,) if args.nats else (),
        broker_id=args.broker_id,
        heartbeat_ms=args.heartbeat_ms,
    )
    server = BrokerServer(config)

    def stop(signum: int, _frame: FrameType | None) -> None:
        server.request_shutdown("benchmark over")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(server.endpoint, flush=True)
    tune_gc_for_serving()  # as the broker's command line does
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(server.run)
        profiler.dump_stats(args.profile)
    else:
        server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
