"""Parsing a typed line into what to do: a command to send, a local action, or a hint.

The parser is shared by the full-screen UI and line mode, so `/msg`, `@nick`, `/query` and
the rest behave the same in both. It looks at nothing but the line and the current target;
checks that need the user list (is this nick present?) happen when the action is carried out.
"""

from dataclasses import dataclass
from typing import Final

from messages import (
    DEFAULT_BAN_SECONDS,
    DEFAULT_KICK_BAR_SECONDS,
    HISTORY_PAGE_LIMIT,
    MAX_AWAY_BYTES,
    MAX_REASON_BYTES,
    MAX_SEARCH_BYTES,
    MAX_TEXT_BYTES,
    MAX_TOKEN_BYTES,
    MAX_TOPIC_BYTES,
    ProtocolError,
    format_duration,
    is_room_name,
    split_duration,
)
from messages.commands import (
    Admin,
    Away,
    Ban,
    ClientCommand,
    Evict,
    Invite,
    Kick,
    ListMembers,
    ListRooms,
    ListUsers,
    Nick,
    Part,
    SetMode,
    SetTopic,
    Shutdown,
    Unban,
    Unregister,
    Wall,
)
from messages.nicks import normalize_nick


@dataclass(frozen=True, slots=True)
class Post:
    """Chat text for the outbox: to everyone if `recipient` is None, else privately. The
    session gives it a message id and sends it as SAY or TELL."""

    text: str
    recipient: str | None = None


@dataclass(frozen=True, slots=True)
class Send:
    """Send `command` (anything but chat text) to the broker."""

    command: ClientCommand


@dataclass(frozen=True, slots=True)
class SetTarget:
    """Send plain lines to `nick` from now on; None means everyone."""

    nick: str | None


@dataclass(frozen=True, slots=True)
class JoinRoom:
    """Enter `room` (made if new) and send plain lines there."""

    room: str


@dataclass(frozen=True, slots=True)
class ShowTopic:
    """Show the topic of `room`, as this client knows it."""

    room: str


@dataclass(frozen=True, slots=True)
class ShowHistory:
    """Show the last `limit` messages to everyone, from the broker's history."""

    limit: int


@dataclass(frozen=True, slots=True)
class SearchHistory:
    """Show the messages (to everyone, and one's own privates) that hold `words`."""

    words: str


@dataclass(frozen=True, slots=True)
class ShowHelp:
    """Show the command list."""


@dataclass(frozen=True, slots=True)
class Hint:
    """Nothing is sent; tell the user `text` (usage, unknown command, too long)."""

    text: str


@dataclass(frozen=True, slots=True)
class RegisterNick:
    """Register the current nick to this client's identity (the session signs REGISTER)."""


@dataclass(frozen=True, slots=True)
class Leave:
    """Leave the chat with `reason` and end the client."""

    reason: str


@dataclass(frozen=True, slots=True)
class View:
    """A command about what the full-screen client shows (`/buffer`, `/close`, `/mute`,
    `/filter`, `/ignore`, `/unignore`), with the rest of the line: the UI carries it out."""

    name: str
    argument: str


@dataclass(frozen=True, slots=True)
class Nothing:
    """An empty line: do nothing."""


Action = (
    Post
    | Send
    | SetTarget
    | JoinRoom
    | ShowTopic
    | ShowHistory
    | SearchHistory
    | ShowHelp
    | Hint
    | RegisterNick
    | Leave
    | View
    | Nothing
)

#: How many messages `/history` shows unless told.
DEFAULT_HISTORY_SHOWN: Final = 50


@dataclass(frozen=True, slots=True)
class CommandInfo:
    """One slash command, for /help and completion."""

    name: str
    args: str
    summary: str
    #: Its first argument is a nick (completion offers nicks there).
    takes_nick: bool = False


COMMANDS: Final = (
    CommandInfo("msg", "NICK TEXT", "send TEXT privately to NICK (also: @NICK TEXT)", True),
    CommandInfo(
        "query",
        "NICK",
        "send plain lines privately to NICK until /all; shows your last messages with NICK",
        True,
    ),
    CommandInfo("all", "", "send plain lines to everyone again (#general)"),
    CommandInfo("join", "#ROOM", "enter ROOM (made if new) and send plain lines there"),
    CommandInfo("part", "[#ROOM] [REASON]", "leave ROOM (default: the one lines go to)"),
    CommandInfo("rooms", "", "list the rooms, with their members and topics"),
    CommandInfo("topic", "[#ROOM] [TEXT]", "show the topic of ROOM, or set it to TEXT"),
    CommandInfo("who", "[#ROOM]", "list the members of ROOM (without one: /users)"),
    CommandInfo(
        "invite", "NICK [#ROOM]", "let NICK into ROOM (invite-only ones too), and tell them", True
    ),
    CommandInfo("mode", "[#ROOM] +i|-i", "make ROOM invite-only (+i: off the open stream) or open"),
    CommandInfo("buffer", "N|NAME", "go to buffer N or NAME (also Alt-1..9, Alt-Left/Right)"),
    CommandInfo("close", "", "close the current private buffer"),
    CommandInfo("mute", "", "no bell, title count or activity for the current buffer (again: on)"),
    CommandInfo("filter", "[joins]", "hide joins and leaves but of recent speakers (again: show)"),
    CommandInfo("ignore", "[NICK]", "show nothing NICK says (no NICK: list who is ignored)", True),
    CommandInfo("unignore", "NICK", "show what NICK says again", True),
    CommandInfo("me", "ACTION", "say what you do: alice's /me waves shows as * alice waves"),
    CommandInfo("away", "[MESSAGE]", "mark yourself away, with MESSAGE; /away alone: back"),
    CommandInfo("nick", "NEWNICK", "take NEWNICK as your nick"),
    CommandInfo(
        "history",
        "[N]",
        f"show the last N messages (default {DEFAULT_HISTORY_SHOWN}, at most "
        f"{HISTORY_PAGE_LIMIT}); PageUp at the top fetches older ones",
    ),
    CommandInfo("search", "WORDS", "find the messages that hold every one of WORDS"),
    CommandInfo("users", "", "list who is here"),
    CommandInfo("register", "", "own your nick: only your identity may take it"),
    CommandInfo("unregister", "", "free your nick for anyone again"),
    CommandInfo("help", "", "show this list"),
    CommandInfo("quit", "[REASON]", "leave the chat"),
    CommandInfo("admin", "TOKEN", "become an operator"),
    CommandInfo(
        "kick",
        "NICK [TIME] [REASON]",
        f"operator: disconnect NICK, barred for TIME (default "
        f"{format_duration(DEFAULT_KICK_BAR_SECONDS)}; TIME: 90s, 10m, 2h, 7d); "
        "/kick #ROOM NICK [REASON]: take NICK out of a room you made",
        True,
    ),
    CommandInfo(
        "ban",
        "NICK [TIME] [REASON]",
        f"operator: bar NICK for TIME (default {format_duration(DEFAULT_BAN_SECONDS)})",
        True,
    ),
    CommandInfo("unban", "NICK", "operator: lift the bar on NICK", True),
    CommandInfo("wall", "TEXT", "operator: a notice to everyone"),
    CommandInfo("shutdown", "[REASON]", "operator: stop the server"),
)
_BY_NAME: Final = {info.name: info for info in COMMANDS}


def help_lines() -> list[str]:
    """The /help text, one line per command."""
    lines = ["commands (a line starting with // sends a literal /):"]
    for info in COMMANDS:
        usage = f"/{info.name} {info.args}".rstrip()
        lines.append(f"  {usage:<24} {info.summary}")
    return lines


def _usage(name: str) -> Hint:
    info = _BY_NAME[name]
    return Hint(f"usage: /{name} {info.args}".rstrip())


def _too_long(what: str, text: str, limit: int) -> Hint | None:
    size = len(text.encode("utf-8"))
    if size > limit:
        return Hint(f"{what} is too long ({size} bytes; the limit is {limit})")
    return None


def _say(text: str, target: str | None) -> Action:
    if (hint := _too_long("message", text, MAX_TEXT_BYTES)) is not None:
        return hint
    return Post(text, target)


def _tell(nick: str, text: str) -> Action:
    if is_room_name(nick):
        return _say(text, nick)
    try:
        nick = normalize_nick(nick)
    except ProtocolError as exc:
        return Hint(f"{nick!r} is not a nick: {exc.reason}")
    return _say(text, nick)


def _reasoned(command: ClientCommand, reason: str) -> Action:
    hint = _too_long("reason", reason, MAX_REASON_BYTES)
    return hint if hint is not None else Send(command)


def _bar(name: str, args: list[str]) -> Action:
    """/kick or /ban NICK [TIME] [REASON]."""
    if not args:
        return _usage(name)
    default = DEFAULT_KICK_BAR_SECONDS if name == "kick" else DEFAULT_BAN_SECONDS
    try:
        seconds, reason = split_duration(args[1] if len(args) > 1 else "", default)
    except ValueError as exc:
        return Hint(str(exc))
    if name == "kick":
        return _reasoned(Kick(args[0], seconds, reason), reason)
    return _reasoned(Ban(args[0], seconds, reason), reason)


def _history(args: list[str]) -> Action:
    """/history [N]."""
    if not args:
        return ShowHistory(DEFAULT_HISTORY_SHOWN)
    if not args[0].isdecimal() or not 1 <= int(args[0]) <= HISTORY_PAGE_LIMIT or len(args) > 1:
        return Hint(f"usage: /history [N], N from 1 to {HISTORY_PAGE_LIMIT}")
    return ShowHistory(int(args[0]))


def _not_a_room(name: str) -> Hint:
    return Hint(f"{name!r} is not a room: '#' and 1 to 32 letters, digits, '_' or '-'")


def _room_and_rest(rest: str, target: str | None) -> tuple[str | None, str]:
    """The room a line names first (else the target, if a room), and what follows it."""
    first, _, after = rest.partition(" ")
    if first.startswith("#"):
        return first, after.strip(" ")
    return (target if target is not None and is_room_name(target) else None), rest


def _part(args: list[str], target: str | None) -> Action:
    """/part [#ROOM] [REASON]."""
    room, reason = _room_and_rest(" ".join(args), target)
    if room is None:
        return Hint("usage: /part #ROOM [REASON] (nobody leaves #general)")
    if not is_room_name(room):
        return _not_a_room(room)
    return _reasoned(Part(room, reason), reason)


def _evict(rest: str) -> Action:
    """/kick #ROOM NICK [REASON]."""
    room, _, rest = rest.partition(" ")
    nick, _, reason = rest.strip(" ").partition(" ")
    if not nick:
        return _usage("kick")
    if not is_room_name(room):
        return _not_a_room(room)
    return _reasoned(Evict(room, nick, reason.strip(" ")), reason)


def _invite(rest: str, target: str | None) -> Action:
    """/invite NICK [#ROOM] (the room the line's target is, by default)."""
    nick, _, room = rest.partition(" ")
    room = room.strip(" ") or (target if target is not None and is_room_name(target) else "")
    if not nick or not room:
        return _usage("invite")
    return Send(Invite(room, nick)) if is_room_name(room) else _not_a_room(room)


def _topic(rest: str, target: str | None) -> Action:
    """/topic [#ROOM] [TEXT]."""
    room, text = _room_and_rest(rest, target)
    if room is None:
        return Hint("usage: /topic [#ROOM] [TEXT] (#general has none)")
    if not is_room_name(room):
        return _not_a_room(room)
    if not text:
        return ShowTopic(room)
    hint = _too_long("topic", text, MAX_TOPIC_BYTES)
    return hint if hint is not None else Send(SetTopic(room, text))


def _nick(args: list[str]) -> Action:
    """/nick NEWNICK."""
    if len(args) != 1:
        return _usage("nick")
    try:
        normalize_nick(args[0])
    except ProtocolError as exc:
        return Hint(f"{args[0]!r} is not a nick: {exc.reason}")
    return Send(Nick(args[0]))


def _mention(line: str) -> Action | None:
    """`@nick text` as a private message, or None if the line is not one."""
    first, _, text = line[1:].partition(" ")
    # "@bob: hi" and "@bob, hi" are the same as "@bob hi".
    nick = first.rstrip(":,")
    try:
        normalize_nick(nick)
    except ProtocolError:
        return None
    if not text.strip():
        return Hint("usage: @NICK TEXT")
    return _tell(nick, text.lstrip(" "))


def parse_line(line: str, target: str | None) -> Action:
    """What to do with `line` as typed, when plain lines go to `target` (None: everyone)."""
    line = line.rstrip("\r\n")
    if not line.strip():
        return Nothing()
    if line.startswith("//"):
        return _say(line[1:], target)
    if line.startswith("@") and (action := _mention(line)) is not None:
        return action
    if not line.startswith("/"):
        return _say(line, target)

    name, _, rest = line[1:].partition(" ")
    name = name.lower()
    rest = rest.strip(" ")
    args = rest.split(None, 1)
    match name:
        case "msg" | "tell":
            if len(args) < 2:
                return _usage("msg")
            return _tell(args[0], args[1])
        case "query":
            return SetTarget(args[0]) if args else SetTarget(None)
        case "all":
            return SetTarget(None)
        case "buffer" | "close" | "mute" | "filter" | "ignore" | "unignore":
            return View(name, rest)
        case "me" | "action":
            # On the wire as typed: a text that starts with "/me " is an action.
            return _say(f"/me {rest}", target) if rest else _usage("me")
        case "away":
            hint = _too_long("away message", rest, MAX_AWAY_BYTES)
            return hint if hint is not None else Send(Away(rest))
        case "back":
            return Send(Away(""))
        case "nick":
            return _nick(rest.split())
        case "history" | "backlog":
            return _history(args)
        case "search" | "grep":
            if not rest:
                return _usage("search")
            hint = _too_long("search", rest, MAX_SEARCH_BYTES)
            return hint if hint is not None else SearchHistory(rest)
        case "who" if args and args[0].startswith("#"):
            return Send(ListMembers(args[0])) if is_room_name(args[0]) else _not_a_room(args[0])
        case "users" | "names" | "who":
            return Send(ListUsers())
        case "join" | "j":
            if not args:
                return _usage("join")
            return JoinRoom(args[0]) if is_room_name(args[0]) else _not_a_room(args[0])
        case "part" | "leave":
            return _part(args, target)
        case "rooms" | "list":
            return Send(ListRooms())
        case "topic":
            return _topic(rest, target)
        case "register":
            return RegisterNick()
        case "unregister":
            return Send(Unregister())
        case "help":
            return ShowHelp()
        case "quit" | "exit":
            hint = _too_long("reason", rest, MAX_REASON_BYTES)
            return hint if hint is not None else Leave(rest)
        case "admin" | "oper":
            if not rest:
                return _usage("admin")
            hint = _too_long("token", rest, MAX_TOKEN_BYTES)
            return hint if hint is not None else Send(Admin(rest))
        case "kick" if args and args[0].startswith("#"):
            return _evict(rest)
        case "kick" | "ban":
            return _bar(name, args)
        case "mode":
            room, mode = _room_and_rest(rest, target)
            if room is None or mode not in ("+i", "-i"):
                return _usage("mode")
            return Send(SetMode(room, mode)) if is_room_name(room) else _not_a_room(room)
        case "invite":
            return _invite(rest, target)
        case "unban":
            return Send(Unban(args[0])) if args else _usage("unban")
        case "wall":
            if not rest:
                return _usage("wall")
            hint = _too_long("notice", rest, MAX_TEXT_BYTES)
            return hint if hint is not None else Send(Wall(rest))
        case "shutdown":
            return _reasoned(Shutdown(rest), rest)
    return Hint(f"unknown command /{name} — /help lists commands")
