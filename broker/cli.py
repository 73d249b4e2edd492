"""Command line of the broker: `python -m broker`, `zmq-chat-broker`."""

import argparse
import logging
import secrets
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import zmq

from messages import (
    FLOOD_BURST,
    FLOOD_PER_SECOND,
    HEARTBEAT_INTERVAL_MS,
    HEARTBEAT_LIVENESS,
    MAX_TOKEN_BYTES,
    MIN_HEARTBEAT_MS,
    sanitizing_handler,
)

from .connections import ConnectionLimits
from .console import HELP
from .keys import STATE_DIR_ENV, default_state_dir, server_key_pair
from .ratelimit import FloodPolicy
from .server import DEFAULT_BIND, BrokerConfig, BrokerServer, tune_gc_for_serving

#: Bytes of randomness in a generated operator token.
GENERATED_TOKEN_BYTES = 12


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m broker",
        description="zmq-chat broker: one ZeroMQ ROUTER socket that relays the chat.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--bind",
        default=DEFAULT_BIND,
        help=f"ZeroMQ endpoint to listen on (default: {DEFAULT_BIND})",
    )
    parser.add_argument(
        "--stream",
        default=None,
        help=(
            "ZeroMQ endpoint to publish broadcasts on (default: the port after --bind's; "
            "clients learn it at registration)"
        ),
    )
    parser.add_argument(
        "--admin-token",
        default="",
        help="operator token for /admin (default: a random token, printed at start)",
    )
    parser.add_argument(
        "--heartbeat-ms",
        type=int,
        default=HEARTBEAT_INTERVAL_MS,
        help=(
            f"interval clients must PING at, in ms (default: {HEARTBEAT_INTERVAL_MS}); a client "
            f"silent for {HEARTBEAT_LIVENESS} intervals is removed"
        ),
    )
    parser.add_argument(
        "--flood-burst",
        type=int,
        default=FLOOD_BURST,
        help=f"chat commands a client may send at once (default: {FLOOD_BURST})",
    )
    parser.add_argument(
        "--flood-rate",
        type=float,
        default=FLOOD_PER_SECOND,
        help=f"chat commands per second a client may sustain (default: {FLOOD_PER_SECOND:g})",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="encrypt with CurveZMQ; the key pair is created once in the state directory",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help=f"where the key pair lives (default: ${STATE_DIR_ENV} or ~/.local/state/zmq-chat)",
    )
    limits = ConnectionLimits()
    parser.add_argument(
        "--max-connections",
        type=int,
        default=limits.total,
        help=(
            f"open connections in all (default: {limits.total}, or fewer if the descriptor "
            "limit is lower)"
        ),
    )
    parser.add_argument(
        "--max-connections-per-address",
        type=int,
        default=limits.per_address,
        help=f"open connections from one network address (default: {limits.per_address})",
    )
    parser.add_argument(
        "--register-within",
        type=float,
        default=limits.register_within_s,
        metavar="SECONDS",
        help=(
            "a connection that has not registered after this long is cut off "
            f"(default: {limits.register_within_s:g})"
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    if len(args.admin_token.encode()) > MAX_TOKEN_BYTES:
        parser.error(f"--admin-token is longer than {MAX_TOKEN_BYTES} bytes")
    if args.heartbeat_ms < MIN_HEARTBEAT_MS:
        parser.error(f"--heartbeat-ms must be at least {MIN_HEARTBEAT_MS}")
    if min(args.max_connections, args.max_connections_per_address) < 1:
        parser.error("--max-connections and --max-connections-per-address must be positive")
    if args.register_within <= 0:
        parser.error("--register-within must be positive")
    if args.flood_burst < 1 or args.flood_rate <= 0:
        parser.error("--flood-burst and --flood-rate must be positive")
    return args


#: A log line on stderr: time, level, module, message.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(argv: Sequence[str] | None = None) -> int:
    """Run a broker until /shutdown, SIGINT or SIGTERM."""
    args = parse_args(argv)
    # Log lines carry what peers sent (nicks, reasons, addresses): sanitized, so that none
    # writes escape sequences into the operator's terminal or forges a line.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        handlers=[sanitizing_handler(sys.stderr, LOG_FORMAT)],
    )
    token = args.admin_token or secrets.token_urlsafe(GENERATED_TOKEN_BYTES)
    console_fd = sys.stdin.fileno() if sys.stdin is not None and not sys.stdin.closed else None
    public_key = secret_key = None
    if args.secure:
        state_dir = args.state_dir or default_state_dir()
        public_key, secret_key = server_key_pair(state_dir)
    config = BrokerConfig(
        bind=args.bind,
        stream=args.stream,
        admin_token=token,
        heartbeat_ms=args.heartbeat_ms,
        console_fd=console_fd,
        flood=FloodPolicy(burst=args.flood_burst, per_second=args.flood_rate),
        curve_secret_key=secret_key,
        connections=ConnectionLimits(
            total=args.max_connections,
            per_address=args.max_connections_per_address,
            register_within_s=args.register_within,
        ),
    )
    try:
        server = BrokerServer(config)
    except (zmq.ZMQError, ValueError) as exc:
        where = args.bind if args.stream is None else f"{args.bind} and {args.stream}"
        print(f"cannot listen on {where}: {exc}", file=sys.stderr)
        return 1

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        server.request_shutdown(f"broker stopped ({signal.Signals(signum).name})")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"zmq-chat broker listening on {server.endpoint}", flush=True)
    print(f"broadcast stream on {server.stream_endpoint}", flush=True)
    if public_key is not None:
        print(f"CurveZMQ on; server public key: {public_key.decode()}", flush=True)
    if args.admin_token:
        print("operator token: as given with --admin-token", flush=True)
    else:
        print(f"operator token: {token}", flush=True)
    print("type /help for operator commands", flush=True)
    tune_gc_for_serving()
    server.run()
    print("broker stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
