"""Operator commands typed in the broker's own terminal: parsing and execution, no I/O."""

import shlex
from dataclasses import dataclass, field
from typing import Final

from messages import (
    DEFAULT_BAN_SECONDS,
    DEFAULT_KICK_BAR_SECONDS,
    ProtocolError,
    format_duration,
    split_duration,
)

from .core import CONSOLE_OPERATOR, ChatCore, Outgoing
from .store import StoreError

#: Most bytes of nicks /registered prints at once.
REGISTERED_LINE_BYTES: Final = 4096

HELP: str = f"""\
operator commands:
  /users                       list who is connected
  /kick NICK [TIME] [reason]   disconnect NICK, telling everyone why; the session ends
                               and NICK stays barred for TIME (default
                               {format_duration(DEFAULT_KICK_BAR_SECONDS)}; 0s: not barred)
  /ban NICK [TIME] [reason]    bar NICK, present or not, for TIME (default
                               {format_duration(DEFAULT_BAN_SECONDS)}), kicking it if present
  /unban NICK                  lift the bar on NICK
  /bans                        list the barred nicks
  /wall TEXT                   send a notice to everyone
  /registered [AFTER]          list the registered nicks (those after AFTER)
  /drop NICK                   free a registered nick, whoever owns it
  /shutdown [reason]           tell everyone, then stop the broker
  /shutdown --all [reason]     in a cluster: stop every broker of it
  /help                        this list
TIME is a number and a unit, s m h d or w, or several largest first: 90s, 10m, 1h30m, 7d"""


@dataclass
class ConsoleResult:
    """What an operator line produced: lines for the operator and events to send."""

    output: list[str] = field(default_factory=list)
    outgoing: list[Outgoing] = field(default_factory=list)
    #: Lines for other brokers of the cluster to run, with the broker each is for ("":
    #: every other broker).
    forward: list[tuple[str, str]] = field(default_factory=list)


def run_console_line(core: ChatCore, line: str, now: float) -> ConsoleResult:
    """Execute one line typed at the broker's terminal, at monotonic time `now`."""
    line = line.strip()
    if not line:
        return ConsoleResult()
    verb, _, rest = line.partition(" ")
    rest = rest.strip()
    match verb.lower():
        case "/users":
            users = core.users()
            lines = [f"{len(users)} users: {' '.join(users) or '(none)'}"]
            away = [f"{s.nick} ({s.away})" for s in core.sessions() if s.away]
            if away:
                lines.append(f"{len(away)} away: {', '.join(away)}")
            return ConsoleResult(lines)
        case "/kick" | "/ban":
            return _bar(core, verb.lower(), rest, now)
        case "/unban":
            if not rest:
                return ConsoleResult(["usage: /unban NICK"])
            try:
                return ConsoleResult(
                    [f"lifted the bar on {rest}"], core.unban(rest, CONSOLE_OPERATOR, now)
                )
            except ProtocolError as exc:
                return ConsoleResult([exc.reason])
        case "/bans":
            bars = core.bans.bars(now)
            lines = [f"{bar.nick} until {bar.until_text()} ({bar.why})" for bar in bars]
            return ConsoleResult([f"{len(bars)} barred", *lines])
        case "/wall":
            if not rest:
                return ConsoleResult(["usage: /wall TEXT"])
            return ConsoleResult([f"notice sent to {len(core.users())} users"], core.wall(rest))
        case "/drop":
            return _drop(core, rest)
        case "/registered":
            nicks, more = core.owned_page(rest, REGISTERED_LINE_BYTES)
            after = f" after {rest}" if rest else ""
            tail = f" ... (more: /registered {nicks[-1]})" if more else ""
            return ConsoleResult(
                [f"{len(nicks)} registered{after}: {' '.join(nicks) or '(none)'}{tail}"]
            )
        case "/shutdown":
            everywhere, _, why = rest.partition(" ")
            if everywhere == "--all" and core.cluster is not None:
                forward = [(f"/shutdown {why}".strip(), "")]
                reason = why or "chat shutdown"
                return ConsoleResult(["shutting down the cluster"], core.shutdown(reason), forward)
            return ConsoleResult(["shutting down"], core.shutdown(rest or "broker shutdown"))
        case "/help":
            return ConsoleResult(HELP.splitlines())
    return ConsoleResult([f"unknown command {shlex.quote(verb)}: /help lists commands"])


def _bar(core: ChatCore, verb: str, rest: str, now: float) -> ConsoleResult:
    """/kick or /ban NICK [TIME] [reason]."""
    nick, _, after = rest.partition(" ")
    if not nick:
        return ConsoleResult([f"usage: {verb} NICK [TIME] [reason]"])
    default = DEFAULT_KICK_BAR_SECONDS if verb == "/kick" else DEFAULT_BAN_SECONDS
    try:
        seconds, reason = split_duration(after, default)
        if verb == "/kick":
            outgoing = core.kick(nick, CONSOLE_OPERATOR, reason, now, seconds)
        else:
            outgoing = core.ban(nick, CONSOLE_OPERATOR, reason, now, seconds)
    except ValueError as exc:
        return ConsoleResult([str(exc)])
    except ProtocolError as exc:
        broker = core.broker_of(nick)
        if broker is not None:
            # Held on another broker of the cluster: that one acts.
            line = f"{verb} {rest}"
            return ConsoleResult(
                [f"{nick} is on broker {broker}: asked it to"], [], [(line, broker)]
            )
        return ConsoleResult([exc.reason])
    done = "kicked" if verb == "/kick" else "banned"
    barred = f", barred for {format_duration(seconds)}" if seconds else ""
    return ConsoleResult([f"{done} {nick}{barred}"], outgoing)


def _drop(core: ChatCore, nick: str) -> ConsoleResult:
    """/drop NICK: free a registered nick."""
    if not nick:
        return ConsoleResult(["usage: /drop NICK"])
    try:
        dropped, outgoing = core.drop_owner(nick)
    except StoreError as exc:
        return ConsoleResult([f"the registration of {nick} was not dropped: {exc}"])
    if not dropped:
        return ConsoleResult([f"{nick} is not registered"])
    return ConsoleResult([f"dropped the registration of {nick}: anyone may take it now"], outgoing)
