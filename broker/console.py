"""Operator commands typed in the broker's own terminal: parsing and execution, no I/O."""

import shlex
from dataclasses import dataclass, field

from messages import ProtocolError

from .core import CONSOLE_OPERATOR, ChatCore, Outgoing

HELP: str = """\
operator commands:
  /users                  list who is connected
  /kick NICK [reason]     disconnect NICK, telling everyone why
  /wall TEXT              send a notice to everyone
  /shutdown [reason]      tell everyone, then stop the broker
  /help                   this list"""


@dataclass
class ConsoleResult:
    """What an operator line produced: lines for the operator and events to send."""

    output: list[str] = field(default_factory=list)
    outgoing: list[Outgoing] = field(default_factory=list)


def run_console_line(core: ChatCore, line: str) -> ConsoleResult:
    """Execute one line typed at the broker's terminal."""
    line = line.strip()
    if not line:
        return ConsoleResult()
    verb, _, rest = line.partition(" ")
    rest = rest.strip()
    match verb.lower():
        case "/users":
            users = core.users()
            return ConsoleResult([f"{len(users)} users: {' '.join(users) or '(none)'}"])
        case "/kick":
            nick, _, reason = rest.partition(" ")
            if not nick:
                return ConsoleResult(["usage: /kick NICK [reason]"])
            try:
                outgoing = core.kick(nick, CONSOLE_OPERATOR, reason.strip())
            except ProtocolError as exc:
                return ConsoleResult([exc.reason])
            return ConsoleResult([f"kicked {nick}"], outgoing)
        case "/wall":
            if not rest:
                return ConsoleResult(["usage: /wall TEXT"])
            return ConsoleResult([f"notice sent to {len(core.users())} users"], core.wall(rest))
        case "/shutdown":
            return ConsoleResult(["shutting down"], core.shutdown(rest or "broker shutdown"))
        case "/help":
            return ConsoleResult(HELP.splitlines())
    return ConsoleResult([f"unknown command {shlex.quote(verb)}: /help lists commands"])
