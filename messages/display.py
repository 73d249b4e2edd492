"""Text from the network made safe to show: for the client's screen and the broker's logs.

Everything that came from another peer (nicks, texts, reasons, tokens, addresses) goes
through `sanitize` before it reaches a terminal or a log line, so nobody can move the
cursor, change colors or the window title, reorder text on screen or forge a log line.
"""

import copy
import logging
from types import TracebackType
from typing import Final, TextIO, TypeAlias

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


ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]


class SanitizingFormatter(logging.Formatter):
    """A logging formatter that sanitizes each record's message once its arguments are in.

    Log calls pass what peers sent as arguments (`log.info("%s left: %s", nick, reason)`):
    escaping here, where the line is made, covers every call, present and future. A reason
    with a newline stays on its line, so it cannot forge another.
    """

    def format(self, record: logging.LogRecord) -> str:
        safe = copy.copy(record)  # other handlers see the record as it was
        safe.msg, safe.args = sanitize(record.getMessage()), ()
        safe.exc_text = None  # formatted again, line by line, by formatException
        return super().format(safe)

    def formatException(self, ei: ExcInfo | tuple[None, None, None]) -> str:
        # A traceback keeps its lines; what is on each line is escaped.
        return "\n".join(map(sanitize, super().formatException(ei).splitlines()))

    def formatStack(self, stack_info: str) -> str:
        return "\n".join(map(sanitize, super().formatStack(stack_info).splitlines()))


def sanitizing_handler(stream: TextIO, fmt: str) -> logging.Handler:
    """A handler writing log lines in format `fmt` to `stream`, messages sanitized."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SanitizingFormatter(fmt))
    return handler
