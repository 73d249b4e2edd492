"""Command line of the chat client: `python -m client` and the `zmq-chat-client` script."""

import argparse
import asyncio
import contextlib
import io
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from messages import HISTORY_PAGE_LIMIT, sanitize, sanitizing_handler

from .connection import CurveKeys, ServerKeyError, load_server_key, parse_server_key
from .history import DEFAULT_HISTORY_LINES, INPUT_HISTORY_FILE, SEEN_FILE
from .identity import IDENTITY_FILE, Identity, IdentityError, load_identity
from .session import REGISTRATION_TIMEOUT_S

DEFAULT_SERVER: Final = "tcp://127.0.0.1:5555"
#: Environment variable naming the state directory (where the broker writes server.key).
STATE_DIR_ENV: Final = "ZMQ_CHAT_STATE_DIR"
#: The broker's public key file in the state directory.
SERVER_KEY_FILE: Final = "server.key"

_DESCRIPTION = """\
Chat over ZeroMQ. On a terminal this opens the full-screen chat (type /help there).
With stdin or stdout not a terminal it runs in line mode, for scripts: each input line is
handled as if typed, each event is printed as one line (see the client.linemode docstring);
exit status 0 at end of input (once the server has every message), 1 if the server is
unreachable (at start, or for too long after the end of input), shut down or kicked us, 2 if
the nick is invalid or taken. A lost connection is re-established by itself (through the next
--server, if several are given), keeping the nick and every message not yet acknowledged.
"""


def default_state_dir() -> Path:
    """$ZMQ_CHAT_STATE_DIR, or ~/.local/state/zmq-chat."""
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".local" / "state" / "zmq-chat"


def curve_keys(secure: bool, server_key: str | None, state_dir: Path | None) -> CurveKeys | None:
    """The CurveZMQ keys to use: None without --secure or --server-key; else a fresh client
    key pair for the server key given, or read from `state_dir`/server.key. Raises
    ServerKeyError with a message for the user."""
    if server_key is not None:
        return CurveKeys.for_server(parse_server_key(server_key))
    if not secure:
        return None
    directory = state_dir if state_dir is not None else default_state_dir()
    return CurveKeys.for_server(load_server_key(directory / SERVER_KEY_FILE))


def identity_path(identity: Path | None, state_dir: Path | None) -> Path:
    """Where the identity is kept: `identity` if given, else IDENTITY_FILE in the state
    directory."""
    if identity is not None:
        return identity
    directory = state_dir if state_dir is not None else default_state_dir()
    return directory / IDENTITY_FILE


def server_list(values: Sequence[str] | None) -> list[str]:
    """The servers `--server` names, in order: each value may hold several endpoints,
    comma-separated (as `make client SERVER=...` passes them); a repeated one counts once.
    [DEFAULT_SERVER] if none was given."""
    servers: list[str] = []
    for value in values or [DEFAULT_SERVER]:
        for endpoint in value.split(","):
            endpoint = endpoint.strip()
            if endpoint and endpoint not in servers:
                servers.append(endpoint)
    return servers


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError(f"must be between 0 and 3600 seconds: {text!r}")
    return seconds


def _history_lines(text: str) -> int:
    try:
        lines = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of messages: {text!r}") from None
    if not 0 <= lines <= HISTORY_PAGE_LIMIT:
        raise argparse.ArgumentTypeError(f"must be from 0 to {HISTORY_PAGE_LIMIT}: {text!r}")
    return lines


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; `--help` documents every option."""
    parser = argparse.ArgumentParser(
        prog="zmq-chat-client",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--server",
        action="append",
        metavar="ENDPOINT",
        help=f"the broker's ZeroMQ endpoint (default: {DEFAULT_SERVER}); repeat it, or "
        "separate endpoints with commas, to name several brokers of one chat: the first that "
        "answers is used, and when its link is lost the client goes on through the next",
    )
    parser.add_argument(
        "--nick",
        metavar="NICK",
        help="your nickname: letters, digits, '_' and '-' (asked for if missing on a "
        "terminal; required in line mode)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=REGISTRATION_TIMEOUT_S,
        metavar="SECONDS",
        help="how long to wait for the server (each, if several) to answer registration "
        f"(default: {REGISTRATION_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="encrypt the connection with CurveZMQ, authenticating the server by its public "
        f"key, read from {SERVER_KEY_FILE} in the state directory",
    )
    parser.add_argument(
        "--server-key",
        metavar="Z85KEY",
        help=(
            "the server's public key (40 Z85 characters; write --server-key=KEY, as a key "
            "may start with -); implies --secure"
        ),
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help=f"where the broker keeps {SERVER_KEY_FILE}, and the client its {IDENTITY_FILE}, "
        f"the lines you typed ({INPUT_HISTORY_FILE}) and the last message you saw on each "
        f"server ({SEEN_FILE}) (default: ${STATE_DIR_ENV} or ~/.local/state/zmq-chat)",
    )
    parser.add_argument(
        "--history",
        type=_history_lines,
        default=None,
        metavar="N",
        help=f"show the last N messages on joining, 0 for none (default: "
        f"{DEFAULT_HISTORY_LINES} on a terminal, 0 in line mode)",
    )
    parser.add_argument(
        "--identity",
        type=Path,
        metavar="FILE",
        help=f"the secret key that owns the nicks you /register (default: {IDENTITY_FILE} "
        "in the state directory, made on first run); copy it to another machine to use your "
        "nicks there (a file named here must exist)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log protocol traffic (to stderr in line mode, into the message pane otherwise)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the client with `argv` (default: sys.argv[1:]); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    servers = server_list(args.server)
    if not servers:
        parser.error("--server names no endpoint")
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    level = logging.DEBUG if args.verbose else logging.WARNING
    try:
        keys = curve_keys(args.secure, args.server_key, args.state_dir)
        # A file named on the command line is one the user copied: a typo must not quietly
        # make a new identity, which would own none of their nicks.
        identity: Identity = load_identity(
            identity_path(args.identity, args.state_dir), create=args.identity is None
        )
    except (ServerKeyError, IdentityError) as exc:
        print(f"zmq-chat-client: {exc}", file=sys.stderr)
        return 1
    if not interactive:
        if not args.nick:
            parser.error("--nick is required when stdin or stdout is not a terminal")
        from .linemode import LineClient

        # Log lines quote what the broker sent: sanitized like everything else shown.
        logging.basicConfig(
            level=level, handlers=[sanitizing_handler(sys.stderr, "%(name)s: %(message)s")]
        )
        # Text from the network must never crash the output, whatever the locale.
        if isinstance(sys.stdout, io.TextIOWrapper):
            sys.stdout.reconfigure(errors="backslashreplace")
        if isinstance(sys.stdin, io.TextIOWrapper):
            sys.stdin.reconfigure(errors="replace")
        client = LineClient(
            servers,
            args.nick,
            sys.stdin,
            sys.stdout,
            sys.stderr,
            keys,
            args.history or 0,
            identity,
        )
        return asyncio.run(client.run(args.timeout))

    from .app import run_interactive

    logging.getLogger().setLevel(level)
    try:
        history = DEFAULT_HISTORY_LINES if args.history is None else args.history
        state_dir = args.state_dir if args.state_dir is not None else default_state_dir()
        ending = asyncio.run(
            run_interactive(servers, args.nick, args.timeout, keys, state_dir, history, identity)
        )
    except KeyboardInterrupt:
        return 1
    if ending.reason:
        # The reason may quote the broker or an operator (KICK, SHUTDOWN): escaped, as on
        # screen. The terminal may be gone (the window was closed): nobody to tell then.
        with contextlib.suppress(OSError):
            print(sanitize(ending.reason), file=sys.stderr if ending.exit_code else sys.stdout)
    return ending.exit_code
