"""Command line of the broker: `python -m broker`, `zmq-chat-broker`."""

import argparse
import logging
import secrets
import signal
import sys
from collections.abc import Sequence
from types import FrameType

import zmq

from messages import HEARTBEAT_INTERVAL_MS, HEARTBEAT_LIVENESS, MAX_TOKEN_BYTES

from .console import HELP
from .server import DEFAULT_BIND, BrokerConfig, BrokerServer

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
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    if len(args.admin_token.encode()) > MAX_TOKEN_BYTES:
        parser.error(f"--admin-token is longer than {MAX_TOKEN_BYTES} bytes")
    if args.heartbeat_ms < 1:
        parser.error("--heartbeat-ms must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run a broker until /shutdown, SIGINT or SIGTERM."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    token = args.admin_token or secrets.token_urlsafe(GENERATED_TOKEN_BYTES)
    console_fd = sys.stdin.fileno() if sys.stdin is not None and not sys.stdin.closed else None
    config = BrokerConfig(
        bind=args.bind, admin_token=token, heartbeat_ms=args.heartbeat_ms, console_fd=console_fd
    )
    try:
        server = BrokerServer(config)
    except zmq.ZMQError as exc:
        print(f"cannot listen on {args.bind}: {exc}", file=sys.stderr)
        return 1

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        server.request_shutdown(f"broker stopped ({signal.Signals(signum).name})")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"zmq-chat broker listening on {server.endpoint}", flush=True)
    if args.admin_token:
        print("operator token: as given with --admin-token", flush=True)
    else:
        print(f"operator token: {token}", flush=True)
    print("type /help for operator commands", flush=True)
    server.run()
    print("broker stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
