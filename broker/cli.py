"""Command line of the broker: `python -m broker`, `zmq-chat-broker`."""

import argparse
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Final

import zmq

from messages import (
    FLOOD_BURST,
    FLOOD_PER_SECOND,
    HEARTBEAT_INTERVAL_MS,
    HEARTBEAT_LIVENESS,
    MIN_HEARTBEAT_MS,
    sanitizing_handler,
)

from .admin_token import (
    ADMIN_TOKEN_ENV,
    MIN_ADMIN_TOKEN_CHARS,
    check_admin_token,
    generate_token_file,
    read_token_file,
    readable_by_others,
)
from .backplane import BackplaneError
from .connections import ConnectionLimits
from .console import HELP
from .keys import STATE_DIR_ENV, default_state_dir, server_key_pair
from .ratelimit import ADDRESS_SHARE, FloodPolicy
from .server import DEFAULT_BIND, BrokerConfig, BrokerServer, tune_gc_for_serving
from .store import (
    DEFAULT_RETAIN_DAYS,
    DEFAULT_RETAIN_MESSAGES,
    IN_MEMORY,
    StoreUnusable,
)

log = logging.getLogger(__name__)
#: The database's name in the state directory.
DB_FILE_NAME = "chat.db"
#: The default flood policy, whose numbers the options' help quotes.
DEFAULTS = FloodPolicy()

#: What `--admin-token` says now that the token is no longer taken from the command line.
_NO_TOKEN_ON_THE_COMMAND_LINE = (
    "--admin-token is not accepted: every user of this host can read a command line "
    f"(ps, /proc/PID/cmdline). Put the token in ${ADMIN_TOKEN_ENV} or in a file named with "
    "--admin-token-file, or let the broker generate one"
)


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
        "--admin-token-file",
        type=Path,
        default=None,
        help=(
            f"file holding the operator token for /admin (its first line; default: "
            f"${ADMIN_TOKEN_ENV}, or else a random token written to admin-token in the state "
            f"directory). At least {MIN_ADMIN_TOKEN_CHARS} characters"
        ),
    )
    # Refused with an explanation, not unknown: the token would be in the process list.
    parser.add_argument("--admin-token", default=None, help=argparse.SUPPRESS)
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
        "--address-sessions",
        type=int,
        default=DEFAULTS.sessions_per_address,
        help=(
            "sessions one network address (loopback included) may hold at once "
            f"(default: {DEFAULTS.sessions_per_address})"
        ),
    )
    parser.add_argument(
        "--address-burst",
        type=float,
        default=None,
        help=(
            "chat commands all the sessions of one address may send at once "
            f"(default: {ADDRESS_SHARE} times --flood-burst)"
        ),
    )
    parser.add_argument(
        "--address-rate",
        type=float,
        default=None,
        help=(
            "chat commands per second all the sessions of one address may sustain "
            f"(default: {ADDRESS_SHARE} times --flood-rate)"
        ),
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
        help=(
            "where the key pair and a generated operator token live "
            f"(default: ${STATE_DIR_ENV} or ~/.local/state/zmq-chat)"
        ),
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
    parser.add_argument(
        "--db",
        default=None,
        metavar="PATH",
        help=(
            f"the SQLite file the chat is remembered in (default: {DB_FILE_NAME} in the state "
            f"directory); {IN_MEMORY} remembers nothing past this run"
        ),
    )
    parser.add_argument(
        "--retain-days",
        type=float,
        default=DEFAULT_RETAIN_DAYS,
        help=f"keep messages this many days (default: {DEFAULT_RETAIN_DAYS:g})",
    )
    parser.add_argument(
        "--retain-messages",
        type=int,
        default=DEFAULT_RETAIN_MESSAGES,
        help=(
            "keep at most this many broadcasts, and as many private messages "
            f"(default: {DEFAULT_RETAIN_MESSAGES})"
        ),
    )
    parser.add_argument(
        "--nats",
        action="append",
        default=[],
        metavar="URL",
        help=(
            "join the cluster of brokers that share this NATS server (nats://host:4222; "
            "repeat, or separate with commas, for a NATS cluster); without it the broker "
            "runs alone (docs/CLUSTER.md)"
        ),
    )
    parser.add_argument(
        "--broker-id",
        default=None,
        help=(
            "this broker's name in the cluster, the same across its restarts (default: "
            "the host's name and --bind's port)"
        ),
    )
    parser.add_argument(
        "--nats-replicas",
        type=int,
        default=1,
        metavar="N",
        help=(
            "copies JetStream keeps of the cluster's streams and buckets, if this broker "
            "is the first and makes them: 3 on a NATS cluster of 3 (default: 1)"
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    args.nats = [url.strip() for value in args.nats for url in value.split(",") if url.strip()]
    if args.broker_id is None:
        args.broker_id = default_broker_id(args.bind)
    if args.nats_replicas < 1:
        parser.error("--nats-replicas must be positive")
    if not BROKER_ID.fullmatch(args.broker_id):
        parser.error("--broker-id: 1 to 64 letters, digits, '-' or '_'")
    if args.admin_token is not None:
        parser.error(_NO_TOKEN_ON_THE_COMMAND_LINE)
    if args.heartbeat_ms < MIN_HEARTBEAT_MS:
        parser.error(f"--heartbeat-ms must be at least {MIN_HEARTBEAT_MS}")
    if min(args.max_connections, args.max_connections_per_address) < 1:
        parser.error("--max-connections and --max-connections-per-address must be positive")
    if args.retain_days <= 0 or args.retain_messages < 1:
        parser.error("--retain-days and --retain-messages must be positive")
    if args.register_within <= 0:
        parser.error("--register-within must be positive")
    if args.flood_burst < 1 or args.flood_rate <= 0:
        parser.error("--flood-burst and --flood-rate must be positive")
    if args.address_sessions < 1 or any(
        value is not None and value <= 0 for value in (args.address_burst, args.address_rate)
    ):
        parser.error("--address-sessions, --address-burst and --address-rate must be positive")
    return args


#: What a broker's name in a cluster may hold (a key of a NATS key-value bucket).
BROKER_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


def default_broker_id(bind: str) -> str:
    """The host's name and `bind`'s port, as a broker's name in a cluster."""
    port = bind.rpartition(":")[2]
    name = f"{socket.gethostname()}-{port}"
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64]


#: A log line on stderr: time, level, module, message.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def operator_token(token_file: Path | None, state_dir: Path | None) -> tuple[str, str]:
    """The operator token and where the operator finds it: from `token_file`, else from
    the environment, else a new one written to the state directory. Raises ValueError
    (stating the rule) for a token too short or too long, OSError for a file that cannot be
    read or written."""
    if token_file is not None:
        token = read_token_file(token_file)
        check_admin_token(token)
        if readable_by_others(token_file):
            log.warning("%s is readable by other users: chmod 600 it", token_file)
        return token, f"as in {token_file}"
    token = os.environ.get(ADMIN_TOKEN_ENV, "")
    if token:
        check_admin_token(token)
        return token, f"as in ${ADMIN_TOKEN_ENV}"
    where = state_dir or default_state_dir()
    try:
        token, path = generate_token_file(where)
    except OSError as exc:
        raise OSError(
            f"cannot write a generated one in {where} ({exc.strerror}): give one in "
            f"${ADMIN_TOKEN_ENV} or with --admin-token-file, or name another --state-dir"
        ) from exc
    return token, f"generated, in {path} (readable by you only)"


def database_path(db: str | None, state_dir: Path | None, broker_id: str = "") -> str:
    """Where the store lives: `db`, else chat.db in the state directory (made if need be,
    readable by its owner only); for a broker in a cluster, chat-BROKER_ID.db, so that two
    brokers started from one directory do not share one."""
    if db is not None:
        return db
    where = state_dir or default_state_dir()
    where.mkdir(parents=True, exist_ok=True, mode=0o700)
    if broker_id:
        return str(where / f"{Path(DB_FILE_NAME).stem}-{broker_id}{Path(DB_FILE_NAME).suffix}")
    return str(where / DB_FILE_NAME)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a broker until /shutdown, SIGINT or SIGTERM."""
    args = parse_args(argv)
    # Log lines carry what peers sent (nicks, reasons, addresses): sanitized, so that none
    # writes escape sequences into the operator's terminal or forges a line.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        handlers=[sanitizing_handler(sys.stderr, LOG_FORMAT)],
    )
    try:
        token, where = operator_token(args.admin_token_file, args.state_dir)
    except (OSError, ValueError) as exc:
        print(f"operator token: {exc}", file=sys.stderr)
        return 2
    console_fd = sys.stdin.fileno() if sys.stdin is not None and not sys.stdin.closed else None
    public_key = secret_key = None
    if args.secure:
        state_dir = args.state_dir or default_state_dir()
        public_key, secret_key = server_key_pair(state_dir)
    try:
        db = database_path(args.db, args.state_dir, args.broker_id if args.nats else "")
    except OSError as exc:
        print(f"database: {exc}", file=sys.stderr)
        return 2
    config = BrokerConfig(
        bind=args.bind,
        stream=args.stream,
        admin_token=token,
        heartbeat_ms=args.heartbeat_ms,
        console_fd=console_fd,
        flood=FloodPolicy(
            burst=args.flood_burst,
            per_second=args.flood_rate,
            sessions_per_address=args.address_sessions,
            address_burst=args.address_burst,
            address_per_second=args.address_rate,
        ),
        curve_secret_key=secret_key,
        connections=ConnectionLimits(
            total=args.max_connections,
            per_address=args.max_connections_per_address,
            register_within_s=args.register_within,
        ),
        db=db,
        retain_days=args.retain_days,
        retain_messages=args.retain_messages,
        nats=tuple(args.nats),
        broker_id=args.broker_id,
        nats_replicas=args.nats_replicas,
    )
    try:
        server = BrokerServer(config)
    except StoreUnusable as exc:
        print(f"cannot use the database {exc}", file=sys.stderr)
        return 1
    except BackplaneError as exc:
        print(f"cannot join the cluster: {exc}", file=sys.stderr)
        return 1
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
    if args.nats:
        print(f"in the cluster of {', '.join(args.nats)} as {args.broker_id}", flush=True)
    print(f"operator token: {where}", flush=True)
    if db == IN_MEMORY:
        print("remembering nothing past this run (--db :memory:)", flush=True)
    else:
        print(f"remembering the chat in {db}", flush=True)
    print("type /help for operator commands", flush=True)
    tune_gc_for_serving()
    server.run()
    print("broker stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
