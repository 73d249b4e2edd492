"""How entries look: sanitizing text from the network, nick colors, and formatting an entry
as prompt_toolkit formatted text (full-screen UI) or as one plain line (line mode).

Everything that came from the broker or from other users goes through `sanitize` before it
reaches a terminal, so nobody can move the cursor, change colors or reorder text on screen.
"""

import time
import zlib
from typing import Final

from prompt_toolkit.formatted_text import StyleAndTextTuples

from messages import ErrorCode, nick_key

from .outbox import Delivery
from .state import Entry, EntryKind

#: Bidirectional formatting characters: they can make text display in another order than
#: it is stored (the "Trojan Source" trick), so they are shown as code points.
_BIDI_CONTROLS: Final = frozenset(
    [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)
#: Line and paragraph separators break a line in some terminals.
_LINE_BREAKERS: Final = frozenset([0x2028, 0x2029])


def _build_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in range(0x20):
        # Caret notation, as `cat -v` shows control characters: ESC is ^[.
        table[code] = "^" + chr(code + 0x40)
    table[0x7F] = "^?"
    for code in [*range(0x80, 0xA0), *_BIDI_CONTROLS, *_LINE_BREAKERS]:
        table[code] = f"<U+{code:04X}>"
    return table


_SANITIZE_TABLE: Final = _build_table()


def sanitize(text: str) -> str:
    """`text` with every terminal control character made visible and inert.

    C0 controls (ESC, newline, ...) and DEL become caret notation (`^[`, `^J`, `^?`);
    C1 controls, bidirectional overrides and line separators become `<U+XXXX>`.
    Everything else, including any script and emoji, is unchanged.
    """
    return text.translate(_SANITIZE_TABLE)


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


def plain_line(entry: Entry) -> str:
    """`entry` as one sanitized line of text, the line-mode output format:

    - `HH:MM <alice> text` for a message to everyone;
    - `HH:MM [alice -> bob] text` for a private message;
    - `HH:MM -!- text` for system lines, `HH:MM -!- notice: text` for notices;
    - `HH:MM -!- error CODE: reason` for errors (`-!- error: reason` for local ones);
    - for delivery changes of own messages: `HH:MM -!- delivered to bob: text`,
      `HH:MM -!- error CODE: not sent to bob: text (reason)` (`not sent: text` for a message
      to everyone; `not delivered to bob` for ERROR 504, dropped after it was sent),
      `HH:MM -!- sent: text`, `HH:MM -!- pending: text`.
    """
    stamp = clock(entry.time_ms)
    text = sanitize(entry.text)
    match entry.kind:
        case EntryKind.DELIVERY:
            return f"{stamp} -!- {_delivery_text(entry)}"
        case EntryKind.MESSAGE:
            return f"{stamp} <{sanitize(entry.sender)}> {text}"
        case EntryKind.PRIVATE:
            return f"{stamp} [{sanitize(entry.sender)} -> {sanitize(entry.recipient)}] {text}"
        case EntryKind.NOTICE:
            return f"{stamp} -!- notice: {text}"
        case EntryKind.ERROR:
            code = f" {entry.code}" if entry.code else ""
            return f"{stamp} -!- error{code}: {text}"
        case EntryKind.SYSTEM:
            return f"{stamp} -!- {text}"
    return f"{stamp} {text}"  # pragma: no cover - every kind is matched above


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
        case Delivery.SENT:
            return f"sent{to}: {text}"
    return f"pending{to}: {text}"


#: How the delivery state of an own message shows after its text: style and mark.
DELIVERY_MARKS: Final = {
    Delivery.PENDING: ("class:delivery.pending", " …"),
    Delivery.SENT: ("class:delivery.sent", " ✓"),
    Delivery.DELIVERED: ("class:delivery.delivered", " ✓✓"),
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


def _nick(nick: str, own_nick_style: bool) -> tuple[str, str]:
    style = "class:nick.own" if own_nick_style else f"class:nick fg:{nick_color(nick)}"
    return (style, sanitize(nick))


def formatted_line(entry: Entry) -> StyleAndTextTuples:
    """`entry` as styled fragments for the message pane (one line, sanitized)."""
    line: StyleAndTextTuples = [("class:time", clock(entry.time_ms) + " ")]
    text_style = "class:text.highlight" if entry.highlight else "class:text"
    if entry.own:
        text_style = "class:text.own"
    match entry.kind:
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
                (f"{text_style} class:text.private", sanitize(entry.text)),
                *delivery_mark(entry),
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
    return line
