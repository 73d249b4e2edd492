"""Parsing typed lines: what is sent, what stays local, what is only a hint."""

import pytest

from client.commands import (
    Action,
    Hint,
    Leave,
    Nothing,
    Post,
    Send,
    SetTarget,
    ShowHelp,
    View,
    help_lines,
    parse_line,
)
from messages import MAX_TEXT_BYTES
from messages import commands as cmd

UNKNOWN_HINT = "unknown command /{} — /help lists commands"


@pytest.mark.parametrize(
    ("line", "target", "expected"),
    [
        # Plain lines go to the current target.
        ("hello", None, Post("hello")),
        ("  spaced  out ", None, Post("  spaced  out ")),
        ("hello\n", None, Post("hello")),
        ("hello", "bob", Post("hello", "bob")),
        ("Привет, Анна", None, Post("Привет, Анна")),
        # Empty input does nothing.
        ("", None, Nothing()),
        ("   ", "bob", Nothing()),
        ("\n", None, Nothing()),
        # Private messages.
        ("/msg bob hi there", None, Post("hi there", "bob")),
        ("/MSG bob  two  spaces", None, Post("two  spaces", "bob")),
        ("/msg Анна привет", "bob", Post("привет", "Анна")),
        ("/msg bob", None, Hint("usage: /msg NICK TEXT")),
        ("/msg", None, Hint("usage: /msg NICK TEXT")),
        ("@bob hi", None, Post("hi", "bob")),
        ("@bob: hi", None, Post("hi", "bob")),
        ("@bob", None, Hint("usage: @NICK TEXT")),
        # "@" not followed by a nick is ordinary text.
        ("@ home now", None, Post("@ home now")),
        ("@!? what", "bob", Post("@!? what", "bob")),
        # Target changes.
        ("/query bob", None, SetTarget("bob")),
        ("/query", "bob", SetTarget(None)),
        ("/all", "bob", SetTarget(None)),
        # What the full-screen client shows: carried out there.
        ("/buffer 2", None, View("buffer", "2")),
        ("/BUFFER  #general ", "bob", View("buffer", "#general")),
        ("/close", "bob", View("close", "")),
        ("/mute", None, View("mute", "")),
        ("/filter joins", None, View("filter", "joins")),
        ("/ignore bob", None, View("ignore", "bob")),
        ("/unignore bob", None, View("unignore", "bob")),
        # Local and plain commands.
        ("/users", None, Send(cmd.ListUsers())),
        ("/help", None, ShowHelp()),
        ("/quit", None, Leave("")),
        ("/quit gone fishing", None, Leave("gone fishing")),
        # Operator commands are sent; the broker decides.
        ("/admin s3cret", None, Send(cmd.Admin("s3cret"))),
        ("/admin", None, Hint("usage: /admin TOKEN")),
        ("/kick bob", None, Send(cmd.Kick("bob", 60, ""))),
        ("/kick bob spamming the channel", None, Send(cmd.Kick("bob", 60, "spamming the channel"))),
        ("/kick bob 10m spamming", None, Send(cmd.Kick("bob", 600, "spamming"))),
        ("/kick bob 0s", None, Send(cmd.Kick("bob", 0, ""))),
        ("/kick bob 1h30m", None, Send(cmd.Kick("bob", 5400, ""))),
        ("/kick bob 10 times", None, Send(cmd.Kick("bob", 60, "10 times"))),
        ("/kick", None, Hint("usage: /kick NICK [TIME] [REASON]")),
        ("/ban bob", None, Send(cmd.Ban("bob", 86400, ""))),
        ("/ban bob 2w trolling", None, Send(cmd.Ban("bob", 14 * 86400, "trolling"))),
        ("/ban bob 400d", None, Hint("400d is longer than 365d")),
        ("/ban", None, Hint("usage: /ban NICK [TIME] [REASON]")),
        ("/unban bob", None, Send(cmd.Unban("bob"))),
        ("/unban", None, Hint("usage: /unban NICK")),
        ("/wall maintenance at noon", None, Send(cmd.Wall("maintenance at noon"))),
        ("/wall", None, Hint("usage: /wall TEXT")),
        ("/shutdown", None, Send(cmd.Shutdown(""))),
        ("/shutdown upgrade", None, Send(cmd.Shutdown("upgrade"))),
        # Unknown commands send nothing.
        ("/foo", None, Hint(UNKNOWN_HINT.format("foo"))),
        ("/foo bar baz", "bob", Hint(UNKNOWN_HINT.format("foo"))),
        ("/", None, Hint(UNKNOWN_HINT.format(""))),
        # "//" sends a line starting with "/" literally.
        ("//foo is a path", None, Post("/foo is a path")),
        ("//", "bob", Post("/", "bob")),
    ],
)
def test_parse_line(line: str, target: str | None, expected: Action) -> None:
    assert parse_line(line, target) == expected


def test_invalid_nick_in_msg_is_a_hint() -> None:
    action = parse_line("/msg bad!nick hi", None)
    assert isinstance(action, Hint)
    assert "'bad!nick' is not a nick" in action.text


def test_over_long_text_is_a_hint_not_sent() -> None:
    action = parse_line("é" * (MAX_TEXT_BYTES // 2 + 1), None)
    assert action == Hint(f"message is too long ({MAX_TEXT_BYTES + 2} bytes; the limit is 4096)")
    assert parse_line("x" * MAX_TEXT_BYTES, None) == Post("x" * MAX_TEXT_BYTES)


def test_help_lists_every_command() -> None:
    text = "\n".join(help_lines())
    for name in ("msg", "query", "all", "users", "help", "quit", "admin", "kick", "wall"):
        assert f"/{name}" in text
