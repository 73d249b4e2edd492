"""Sanitizing, nick colors and the line formats."""

import dataclasses
import subprocess
import sys
import time
import unicodedata

import pytest

from client.linemode import LinePrinter, printed
from client.outbox import Delivery, OutgoingMessage
from client.render import (
    NICK_PALETTE,
    clock,
    fit,
    formatted_line,
    nick_color,
    plain_line,
    sanitize,
)
from client.state import ChatState, Entry, EntryKind, mentions
from messages import MIN_HEARTBEAT_MS
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


def test_a_private_delivered_later_says_when_it_was_sent() -> None:
    state = ChatState("alice", "tcp://x:1")
    state.apply(ev.Welcome("alice", 2000, "e1", 0, (), 5556))
    now_ms = time.time_ns() // 1_000_000
    hours_ago = now_ms - 3 * 3600 * 1000
    (late,) = state.apply(ev.PrivateMessage("b-1", "bob", "alice", "kept for you", hours_ago))
    (fresh,) = state.apply(ev.PrivateMessage("b-2", "bob", "alice", "just now", now_ms))
    assert late.late and not fresh.late
    assert state.unread == 1, "kept while she was away: unread until she looks"
    sent = time.strftime("%Y-%m-%d %H:%M", time.localtime(hours_ago / 1000))
    assert plain_line(late).endswith(f"kept for you (sent {sent}, delivered later)")
    assert plain_line(fresh).endswith("just now")
    assert "class:delivery.late" in {fragment[0] for fragment in formatted_line(late)}


def test_formatted_lines_are_distinct_and_sanitized() -> None:
    state = ChatState("alice", "tcp://x:1")
    state.apply(ev.Welcome("alice", 2000, "e1", 0, (), 5556))
    state.apply(ev.UserList(0, ("alice", "bob")))
    (own,) = state.apply(ev.Message(1, "a-1", "alice", "mine", 0))
    (other,) = state.apply(ev.Message(2, "b-1", "bob", "hey ALICE, \x1b[5m", 0))
    (plain,) = state.apply(ev.Message(3, "b-2", "bob", "malice is not a mention", 0))
    now_ms = time.time_ns() // 1_000_000
    (private,) = state.apply(ev.PrivateMessage("b-3", "bob", "alice", "psst", now_ms))
    (joined,) = state.apply(ev.Joined(4, "carol"))
    (error,) = state.apply(ev.Error(403, "", "operator only"))
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


def test_delivery_states_in_plain_lines_and_line_mode() -> None:
    t = int(time.mktime((2024, 5, 1, 12, 1, 30, 0, 0, -1)) * 1000)
    state = ChatState("alice", "tcp://x:1", clock=lambda: t)
    tell = OutgoingMessage("tok-1", "psst", "bob", 1)
    say = OutgoingMessage("tok-2", "hi\x1b", None, 2)
    typed = state.outgoing(tell)
    assert typed.delivery is Delivery.PENDING and typed.own and typed.msg_id == "tok-1"
    assert not printed(typed)  # line mode prints it once the broker has it
    tell.state = Delivery.SENT
    sent = state.delivery(tell)
    assert plain_line(sent) == "12:01 -!- sent to bob: psst"
    # No echo of a private message: line mode prints it on its ACK, once ...
    assert printed(sent)
    printer = LinePrinter()
    assert printer.lines([sent]) == ["12:01 [alice -> bob] psst"]
    assert printer.lines([sent]) == []
    tell.state = Delivery.DELIVERED
    delivered = state.delivery(tell)
    assert plain_line(delivered) == "12:01 -!- delivered to bob: psst"
    assert printer.lines([delivered]) == ["12:01 -!- delivered to bob: psst"]
    # ... or on its DELIVERED, if that came first.
    assert LinePrinter().lines([delivered]) == [
        "12:01 [alice -> bob] psst",
        "12:01 -!- delivered to bob: psst",
    ]
    say.state, say.code, say.reason = Delivery.FAILED, 413, "too long"
    assert plain_line(state.delivery(say)) == "12:01 -!- error 413: not sent: hi^[ (too long)"
    assert printed(state.delivery(say))
    echo = state.apply(ev.Message(1, "tok-2", "alice", "hi", t))[0]
    assert printed(echo) and echo.own and echo.delivery is None
    say.state = Delivery.SENT
    assert printer.lines([state.delivery(say)]) == []  # its echo is printed instead


@pytest.mark.parametrize(
    ("delivery", "mark"),
    [
        (Delivery.PENDING, " …"),
        (Delivery.SENT, " ✓"),
        (Delivery.DELIVERED, " ✓✓"),
        (Delivery.FAILED, " ✗ no such nick: bob"),
    ],
)
def test_delivery_marks_follow_own_lines(delivery: Delivery, mark: str) -> None:
    state = ChatState("alice", "tcp://x:1")
    message = OutgoingMessage("tok-1", "psst", "bob", 1, state=delivery)
    message.reason = "no such nick: bob" if delivery is Delivery.FAILED else ""
    entry = dataclasses.replace(state.outgoing(message), reason=message.reason)
    text = "".join(fragment[1] for fragment in formatted_line(entry))
    assert text.endswith(f"[alice → bob] psst{mark}")


def test_a_welcome_asking_for_no_heartbeat_interval_is_not_obeyed() -> None:
    # A heartbeat of 0 ms would have the client flood the broker with PINGs.
    state = ChatState("alice", "tcp://x:1")
    state.apply(ev.Welcome("alice", 0, "e1", 0, (), 5556))
    assert state.heartbeat_ms == MIN_HEARTBEAT_MS


def test_fit_cuts_to_terminal_columns_with_an_ellipsis() -> None:
    assert fit("alice", 5) == "alice"
    assert fit("alice", 4) == "ali…"
    # Wide characters take two columns; one never sticks out past the cut.
    assert fit("日本語", 6) == "日本語"
    assert fit("日本語", 5) == "日本…"
    assert fit("日本語", 4) == "日…"
    assert fit("abc", 1) == "…"
    assert fit("abc", 0) == ""
