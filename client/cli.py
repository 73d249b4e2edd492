"""Command line of the chat client: `python -m client` and the `zmq-chat-client` script."""

import argparse
import asyncio
import io
import logging
import sys
from collections.abc import Sequence

from .session import REGISTRATION_TIMEOUT_S

DEFAULT_SERVER = "tcp://127.0.0.1:5555"

_DESCRIPTION = """\
Chat over ZeroMQ. On a terminal this opens the full-screen chat (type /help there).
With stdin or stdout not a terminal it runs in line mode, for scripts: each input line is
handled as if typed, each event is printed as one line (see the client.linemode docstring);
exit status 0 at end of input, 1 if the server is unreachable, lost, shut down or kicked us,
2 if the nick is invalid or taken.
"""


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError(f"must be between 0 and 3600 seconds: {text!r}")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; `--help` documents every option."""
    parser = argparse.ArgumentParser(
        prog="zmq-chat-client",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--server",
        default=DEFAULT_SERVER,
        metavar="ENDPOINT",
        help=f"the broker's ZeroMQ endpoint (default: {DEFAULT_SERVER})",
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
        help="how long to wait for the server to answer registration "
        f"(default: {REGISTRATION_TIMEOUT_S:g})",
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
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    level = logging.DEBUG if args.verbose else logging.WARNING
    if not interactive:
        if not args.nick:
            parser.error("--nick is required when stdin or stdout is not a terminal")
        from .linemode import LineClient

        logging.basicConfig(level=level, format="%(name)s: %(message)s", stream=sys.stderr)
        # Text from the network must never crash the output, whatever the locale.
        if isinstance(sys.stdout, io.TextIOWrapper):
            sys.stdout.reconfigure(errors="backslashreplace")
        if isinstance(sys.stdin, io.TextIOWrapper):
            sys.stdin.reconfigure(errors="replace")
        client = LineClient(args.server, args.nick, sys.stdin, sys.stdout, sys.stderr)
        return asyncio.run(client.run(args.timeout))

    from .app import run_interactive

    logging.getLogger().setLevel(level)
    try:
        ending = asyncio.run(run_interactive(args.server, args.nick, args.timeout, args.verbose))
    except KeyboardInterrupt:
        return 1
    if ending.reason:
        print(ending.reason, file=sys.stderr if ending.exit_code else sys.stdout)
    return ending.exit_code
