"""Sanitizing, nick colors and the line formats."""

import subprocess
import sys
import time
import unicodedata

import pytest

from client.render import NICK_PALETTE, clock, formatted_line, nick_color, plain_line, sanitize
from client.state import ChatState, Entry, EntryKind, mentions
from messages import events as ev


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text", "plain text"),
        ("\x1b[2J\x1b[31mred", "^[[2J^[[31mred"),
        ("\x1b]0;pwned title\x07", "^[]0;pwned title^G"),
        ("line\nbreak\r\ttab", "line^Jbreak^M^Itab"),
        ("nul\x00 del\x7f", "nul^@ del^?"),
        ("csi\x9b31m c1\x85", "csi<U+009B>31m c1<U+0085>"),
        ("abc\u202edcba\u202c", "abc<U+202E>dcba<U+202C>"),
        ("\u2066isolate\u2069 \u200fmark", "<U+2066>isolate<U+2069> <U+200F>mark"),
        ("para\u2029graph", "para<U+2029>graph"),
        ("Привет, Анна! 你好 café 🎉 e\u0301", "Привет, Анна! 你好 café 🎉 e\u0301"),
        ("", ""),
    ],
)
def test_sanitize(raw: str, shown: str) -> None:
    assert sanitize(raw) == shown


#: Bidirectional classes of the explicit embedding, override and isolate controls.
BIDI_CONTROL_CLASSES = {"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}


def test_sanitized_text_has_no_control_characters_left() -> None:
    every_char = "".join(chr(code) for code in range(0x3000))
    for char in sanitize(every_char):
        category = unicodedata.category(char)
        assert category not in {"Cc", "Zl", "Zp"}, f"U+{ord(char):04X} survived"
        assert unicodedata.bidirectional(char) not in BIDI_CONTROL_CLASSES, f"U+{ord(char):04X}"


def test_nick_colors_are_stable_per_nick_and_ignore_case() -> None:
    assert nick_color("alice") in NICK_PALETTE
    assert nick_color("alice") == nick_color("ALICE") == nick_color("ａｌｉｃｅ")
    assert nick_color("Анна") == nick_color("анна")
    nicks = [f"user{n}" for n in range(50)]
    assert len({nick_color(nick) for nick in nicks}) > len(NICK_PALETTE) // 2


def test_nick_colors_are_the_same_in_another_process() -> None:
    # str hashes are randomized per process; the colors must not be.
    code = "from client.render import nick_color; print(nick_color('alice'), nick_color('bob'))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=20
    )
    assert other.stdout.split() == [nick_color("alice"), nick_color("bob")]


def test_plain_lines() -> None:
    t = int(time.mktime((2024, 5, 1, 12, 1, 30, 0, 0, -1)) * 1000)
    assert clock(t) == "12:01"
    assert plain_line(Entry(EntryKind.MESSAGE, "hi", t, "alice")) == "12:01 <alice> hi"
    private = Entry(EntryKind.PRIVATE, "psst", t, "alice", "bob")
    assert plain_line(private) == "12:01 [alice -> bob] psst"
    assert plain_line(Entry(EntryKind.SYSTEM, "bob joined", t)) == "12:01 -!- bob joined"
    assert plain_line(Entry(EntryKind.NOTICE, "op: hi", t)) == "12:01 -!- notice: op: hi"
    error = Entry(EntryKind.ERROR, "no such nick: x", t, code=404)
    assert plain_line(error) == "12:01 -!- error 404: no such nick: x"
    assert plain_line(Entry(EntryKind.ERROR, "lost", t)) == "12:01 -!- error: lost"
    evil = Entry(EntryKind.MESSAGE, "\x1b[2Jgone", t, "bo\x1bb")
    assert plain_line(evil) == "12:01 <bo^[b> ^[[2Jgone"


def test_formatted_lines_are_distinct_and_sanitized() -> None:
    state = ChatState("alice", "tcp://x:1")
    state.apply(ev.Welcome("alice", 2000, (), ("alice", "bob")))
    (own,) = state.apply(ev.Message("alice", "mine", 0))
    (other,) = state.apply(ev.Message("bob", "hey ALICE, \x1b[5m", 0))
    (plain,) = state.apply(ev.Message("bob", "malice is not a mention", 0))
    (private,) = state.apply(ev.PrivateMessage("bob", "alice", "psst", 0))
    (joined,) = state.apply(ev.Joined("carol"))
    (error,) = state.apply(ev.Error(403, "operator only"))
    assert own.own and not own.highlight
    assert other.highlight and not plain.highlight

    def styles(entry: Entry) -> set[str]:
        return {fragment[0] for fragment in formatted_line(entry)}

    def text(entry: Entry) -> str:
        return "".join(fragment[1] for fragment in formatted_line(entry))

    assert "class:text.own" in styles(own)
    assert "class:text.highlight" in styles(other)
    assert "class:text" in styles(plain)
    assert f"class:nick fg:{nick_color('bob')}" in styles(plain)
    assert text(other).endswith("<bob> hey ALICE, ^[[5m")
    assert text(private).endswith("[bob → alice] psst")
    assert "class:system" in styles(joined)
    assert text(error).endswith("-!- error 403: operator only")
    assert "class:error" in styles(error)


@pytest.mark.parametrize(
    ("text", "nick", "found"),
    [
        ("hi alice", "alice", True),
        ("Alice: look", "alice", True),
        ("malice", "alice", False),
        ("alice_b is here", "alice", False),
        ("ask анна.", "Анна", True),
        ("bob-alice", "alice", False),
    ],
)
def test_mentions(text: str, nick: str, found: bool) -> None:
    assert mentions(text, nick) is found
