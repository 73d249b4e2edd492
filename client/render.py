"""How entries look: sanitizing text from the network, nick colors, and formatting an entry
as prompt_toolkit formatted text (full-screen UI) or as one plain line (line mode).

Everything that came from the broker or from other users goes through `sanitize` (from
messages.display, shared with the broker's logs) before it reaches a terminal, so nobody can
move the cursor, change colors or reorder text on screen.
"""

import time
import zlib
from typing import Final

from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.utils import get_cwidth

from messages import ErrorCode, nick_key
from messages import sanitize as sanitize  # the client's modules draw with it from here

from .outbox import Delivery
from .state import Entry, EntryKind, action


def fit(text: str, columns: int) -> str:
    """`text` cut to at most `columns` terminal columns, ending with `…` when cut."""
    if get_cwidth(text) <= columns:
        return text
    kept: list[str] = []
    used = 0
    for char in text:
        used += get_cwidth(char)
        if used > columns - 1:
            break
        kept.append(char)
    return "".join(kept) + "…" if columns > 0 else ""


#: Nick colors: the ANSI palette minus black, white and blue (poor contrast on common themes).
NICK_PALETTE: Final = (
    "ansired",
    "ansigreen",
    "ansiyellow",
    "ansimagenta",
    "ansicyan",
    "ansibrightred",
    "ansibrightgreen",
    "ansibrightyellow",
    "ansibrightblue",
    "ansibrightmagenta",
    "ansibrightcyan",
)


def nick_color(nick: str) -> str:
    """The color of `nick`: the same in every session and for every spelling of the nick."""
    # crc32, not hash(): str hashes are randomized per process.
    return NICK_PALETTE[zlib.crc32(nick_key(nick).encode("utf-8")) % len(NICK_PALETTE)]


def clock(time_ms: int) -> str:
    """`time_ms` (milliseconds since the epoch) as local HH:MM."""
    return time.strftime("%H:%M", time.localtime(time_ms / 1000))


def stamp(entry: Entry) -> str:
    """When `entry` was said: HH:MM, or YYYY-MM-DD HH:MM for a dated entry."""
    if entry.dated:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.time_ms / 1000))
    return clock(entry.time_ms)


#: What surrounds the text of a marker line (`── now ──`).
MARKER_RULE: Final = "──"


def plain_line(entry: Entry) -> str:
    """`entry` as one sanitized line of text, the line-mode output format:

    - `HH:MM <alice> text` for a message to everyone, `HH:MM #dev <alice> text` in a room
      (and `HH:MM #dev -!- bob joined #dev` for what happens there);
    - `HH:MM [alice -> bob] text` for a private message;
    - `HH:MM * alice waves` for an action (`/me waves`) to everyone, and
      `HH:MM [alice -> bob] * alice waves` for a private one;
    - `HH:MM -!- text` for system lines, `HH:MM -!- notice: text` for notices;
    - `HH:MM -!- error CODE: reason` for errors (`-!- error: reason` for local ones);
    - `HH:MM -- text --` for marker lines (a new day, where the unread part and now
      begin); search hits start with the date: `YYYY-MM-DD HH:MM <alice> text`;
    - for delivery changes of own messages: `HH:MM -!- delivered to bob: text`,
      `HH:MM -!- error CODE: not sent to bob: text (reason)` (`not sent: text` for a message
      to everyone; `not delivered to bob` for ERROR 504, dropped after it was sent),
      `HH:MM -!- sent: text`, `HH:MM -!- pending: text`, and for a private message kept for
      an owner who is away `HH:MM -!- kept for bob until they are back: text`;
    - a private message that arrived long after it was sent ends with
      `(sent YYYY-MM-DD HH:MM, delivered later)`.
    """
    when = stamp(entry)
    if entry.room:
        when = f"{when} {entry.room}"
    text = sanitize(entry.text)
    does = action(entry.text)
    if does is not None and entry.kind in (EntryKind.MESSAGE, EntryKind.PRIVATE):
        text = f"* {sanitize(entry.sender)} {sanitize(does)}"
    match entry.kind:
        case EntryKind.DELIVERY:
            return f"{when} -!- {_delivery_text(entry)}"
        case EntryKind.MESSAGE if does is not None:
            return f"{when} {text}"
        case EntryKind.MESSAGE:
            return f"{when} <{sanitize(entry.sender)}> {text}"
        case EntryKind.PRIVATE:
            late = "".join(text for _, text, *_ in late_mark(entry))
            return f"{when} [{sanitize(entry.sender)} -> {sanitize(entry.recipient)}] {text}{late}"
        case EntryKind.NOTICE:
            return f"{when} -!- notice: {text}"
        case EntryKind.ERROR:
            code = f" {entry.code}" if entry.code else ""
            return f"{when} -!- error{code}: {text}"
        case EntryKind.SYSTEM:
            return f"{when} -!- {text}"
        case EntryKind.MARKER:
            return f"{when} -- {text} --"
    return f"{when} {text}"  # pragma: no cover - every kind is matched above


def _delivery_text(entry: Entry) -> str:
    to = f" to {sanitize(entry.recipient)}" if entry.recipient else ""
    text = sanitize(entry.text)
    match entry.delivery:
        case Delivery.FAILED:
            code = f" {entry.code}" if entry.code else ""
            # 504: the broker had it, but dropped it before the recipient confirmed it.
            what = "not delivered" if entry.code == ErrorCode.UNDELIVERED else "not sent"
            return f"error{code}: {what}{to}: {text} ({sanitize(entry.reason)})"
        case Delivery.DELIVERED:
            return f"delivered{to}: {text}"
        case Delivery.STORED:
            return f"kept for {sanitize(entry.recipient)} until they are back: {text}"
        case Delivery.SENT:
            return f"sent{to}: {text}"
    return f"pending{to}: {text}"


#: How the delivery state of an own message shows after its text: style and mark.
DELIVERY_MARKS: Final = {
    Delivery.PENDING: ("class:delivery.pending", " …"),
    Delivery.SENT: ("class:delivery.sent", " ✓"),
    Delivery.DELIVERED: ("class:delivery.delivered", " ✓✓"),
    Delivery.STORED: ("class:delivery.stored", " ✉"),
    Delivery.FAILED: ("class:delivery.failed", " ✗"),
}


def delivery_mark(entry: Entry) -> StyleAndTextTuples:
    """The fragments that show `entry`'s delivery state (none for others' messages)."""
    if entry.delivery is None:
        return []
    style, mark = DELIVERY_MARKS[entry.delivery]
    if entry.delivery is Delivery.FAILED and entry.reason:
        mark += " " + sanitize(entry.reason)
    return [(style, mark)]


def late_mark(entry: Entry) -> StyleAndTextTuples:
    """For a private message delivered later: when it was sent (its line shows that time)."""
    if not entry.late:
        return []
    sent = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.time_ms / 1000))
    return [("class:delivery.late", f" (sent {sent}, delivered later)")]


def _nick(nick: str, own_nick_style: bool) -> tuple[str, str]:
    style = "class:nick.own" if own_nick_style else f"class:nick fg:{nick_color(nick)}"
    return (style, sanitize(nick))


def _action_head(entry: Entry, does: str | None) -> StyleAndTextTuples:
    """`* alice ` before the text of a private action (`does`), else nothing."""
    if does is None:
        return []
    return [("class:private", "* "), _nick(entry.sender, entry.own), ("class:private", " ")]


def formatted_line(entry: Entry) -> StyleAndTextTuples:
    """`entry` as styled fragments for the message pane (one line, sanitized); history
    dimmed."""
    line: StyleAndTextTuples = [("class:time", stamp(entry) + " ")]
    if entry.room:
        line.append(("class:room", entry.room + " "))
    text_style = "class:text.highlight" if entry.highlight else "class:text"
    if entry.own:
        text_style = "class:text.own"
    does = action(entry.text)
    match entry.kind:
        case EntryKind.MESSAGE if does is not None:
            line += [
                ("class:punct", "* "),
                _nick(entry.sender, entry.own),
                (text_style, " " + sanitize(does)),
                *delivery_mark(entry),
            ]
        case EntryKind.MESSAGE:
            line += [
                ("class:punct", "<"),
                _nick(entry.sender, entry.own),
                ("class:punct", "> "),
                (text_style, sanitize(entry.text)),
                *delivery_mark(entry),
            ]
        case EntryKind.PRIVATE:
            line += [
                ("class:private", "["),
                _nick(entry.sender, entry.own),
                ("class:private", " → "),
                _nick(entry.recipient, not entry.own),
                ("class:private", "] "),
                *_action_head(entry, does),
                (
                    f"{text_style} class:text.private",
                    sanitize(entry.text if does is None else does),
                ),
                *delivery_mark(entry),
                *late_mark(entry),
            ]
        case EntryKind.NOTICE:
            line += [("class:notice", "-!- notice: " + sanitize(entry.text))]
        case EntryKind.ERROR:
            code = f" {entry.code}" if entry.code else ""
            line += [("class:error", f"-!- error{code}: " + sanitize(entry.text))]
        case EntryKind.SYSTEM:
            line += [("class:system", "-!- " + sanitize(entry.text))]
        case EntryKind.DELIVERY:
            style = "class:error" if entry.delivery is Delivery.FAILED else "class:system"
            line += [(style, "-!- " + _delivery_text(entry))]
        case EntryKind.MARKER:
            rule = MARKER_RULE * 4
            line += [("class:marker", f"{rule} {sanitize(entry.text)} {rule}")]
    if entry.history:
        # The class comes last: its color wins over the nick colors.
        return [(f"{fragment[0]} class:history", fragment[1]) for fragment in line]
    return line
