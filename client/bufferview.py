"""How the buffers look in the full-screen client: each buffer's scrollback, the list of
buffers at the top of the side panel, and the activity list of the status line.

    *1 #general          the current buffer (reversed)
    !2 bob 3             a private message or a mention not seen yet, and the unread count
     3 carol 1           other activity

A click on a buffer's row goes to it.
"""

import dataclasses
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.layout import UIContent, UIControl
from prompt_toolkit.mouse_events import MouseEvent, MouseEventType

from .buffers import Buffer, Buffers, Level
from .outbox import Delivery
from .pane import SCROLLBACK_LINES, MessagePane
from .render import fit, formatted_line, sanitize
from .state import Entry, EntryKind
from .userlist import Row

#: The style of a buffer number in the activity list and of its row, by level.
LEVEL_STYLES: Final = {
    Level.NONE: "",
    Level.LOW: "class:activity.low",
    Level.MESSAGE: "class:activity.message",
    Level.PRIVATE: "class:activity.private",
    Level.HIGHLIGHT: "class:activity.highlight",
}


@dataclass(slots=True)
class Line:
    """An entry of a buffer's scrollback, as last updated, and whether the smart filter
    hides it when on (client.filters)."""

    entry: Entry
    quiet: bool = False


class BufferView:
    """One buffer's scrollback: every line it holds, those its pane shows, and where its own
    messages' lines are."""

    def __init__(self) -> None:
        self.pane = MessagePane()
        #: Quiet lines are not in the pane (`/filter joins`).
        self.hide_quiet = False
        # Every line, hidden or not (the last SCROLLBACK_LINES): the pane is drawn anew from
        # them when the filter changes.
        self._lines: deque[Line] = deque(maxlen=SCROLLBACK_LINES)
        # msg_id -> (line number, line) of own messages still in the pane, oldest first.
        self.own: OrderedDict[str, tuple[int, Line]] = OrderedDict()
        #: The day of the date line at the top of the pane, if it is one.
        self.top_day: str | None = None

    def show(self, lines: list[Line]) -> None:
        """Append `lines` to the scrollback (the pane shows those not hidden), updating own
        messages' lines in place for DELIVERY entries (the broker's echo of an own line adds
        no second line)."""
        # Lines go to the pane together, as few times as possible: a full pane drops its
        # oldest lines on each addition.
        drawn: list[StyleAndTextTuples] = []
        for line in lines:
            entry = line.entry
            if entry.kind is EntryKind.DELIVERY:
                self.pane.add(drawn)
                drawn.clear()
                self._update_delivery(entry)
                continue
            if entry.own and entry.msg_id in self.own and entry.delivery is None:
                continue  # the echo of an own line shown already
            self._lines.append(line)
            if line.quiet and self.hide_quiet:
                continue
            if entry.own and entry.msg_id and entry.delivery is not None:
                first = self.pane.add([*drawn, formatted_line(entry)])
                self.own[entry.msg_id] = (first + len(drawn), line)
                drawn.clear()
            else:
                drawn.append(formatted_line(entry))
        self.pane.add(drawn)
        while self.own and next(iter(self.own.values()))[0] < self.pane.dropped:
            self.own.popitem(last=False)

    def show_above(self, entries: list[Entry]) -> bool:
        """Put `entries` (older history, never hidden) above every line; False if there is
        no room above."""
        count = self.pane.prepend([formatted_line(entry) for entry in entries])
        # (Never more than there is room for: a full deque would drop the newest.)
        kept = min(count, SCROLLBACK_LINES - len(self._lines))
        if kept:
            self._lines.extendleft(Line(entry) for entry in reversed(entries[-kept:]))
        return count > 0

    def drop_first(self) -> None:
        """Remove the first line (a date line the history above repeats)."""
        self.pane.drop_first()
        if self._lines:
            self._lines.popleft()

    def refilter(self, hide_quiet: bool) -> None:
        """Show the quiet lines, or hide them, those shown already included: the pane is
        drawn anew (and follows the newest line)."""
        if hide_quiet == self.hide_quiet:
            return
        self.hide_quiet = hide_quiet
        shown = [line for line in self._lines if not (hide_quiet and line.quiet)]
        self.pane.reset([formatted_line(line.entry) for line in shown])
        first = len(shown) - len(self.pane.lines)
        self.own = OrderedDict(
            (line.entry.msg_id, (number - first, line))
            for number, line in enumerate(shown)
            if number >= first and line.entry.own and line.entry.delivery is not None
        )

    def _update_delivery(self, update: Entry) -> None:
        shown = self.own.get(update.msg_id)
        if shown is None:
            if update.delivery is Delivery.FAILED:
                # Its line is gone: say it anyway.
                self._lines.append(Line(update))
                self.pane.add([formatted_line(update)])
            return
        number, line = shown
        line.entry = dataclasses.replace(
            line.entry, delivery=update.delivery, code=update.code, reason=update.reason
        )
        self.pane.replace(number, formatted_line(line.entry))


def buffer_row(number: int, buffer: Buffer, current: bool, width: int | None) -> Row:
    """The side panel's row of `buffer` (without its click): a mark, the number, the name,
    the unread count."""
    if current:
        mark, style = "*", "class:buffers.current"
    elif buffer.level >= Level.PRIVATE:
        mark, style = "!", LEVEL_STYLES[buffer.level]
    else:
        mark, style = " ", LEVEL_STYLES[buffer.level]
    if buffer.muted:
        style += " class:buffers.muted"
    head = f"{mark}{number} "
    count = f" {buffer.unread}" if buffer.unread else ""
    name = sanitize(buffer.name)
    if width is not None:
        name = fit(name, max(1, width - len(head) - len(count)))
    return Row(style, f"{head}{name}{count}")


def activity_fragments(buffers: Buffers) -> StyleAndTextTuples:
    """The status line's activity list, `Act: 2,3`, each number in its level's style."""
    active = buffers.activity()
    if not active:
        return []
    fragments: StyleAndTextTuples = [("", " Act: ")]
    for index, (number, buffer) in enumerate(active):
        if index:
            fragments.append(("", ","))
        fragments.append((LEVEL_STYLES[buffer.level], str(number)))
    fragments.append(("", " "))
    return fragments


class BufferList(UIControl):
    """The buffers at the top of the side panel, one row each; a click goes to one."""

    def __init__(self, buffers: Buffers, go: Callable[[Buffer], None]) -> None:
        self._buffers = buffers
        self._go = go
        self._shown: list[Buffer] = []

    def rows(self, width: int | None = None) -> list[Row]:
        """One row per buffer, for a panel `width` columns wide (None: unbounded)."""
        buffers = self._buffers
        current = buffers.current
        self._shown = list(buffers.buffers)
        return [
            buffer_row(number, buffer, buffer is current, width)
            for number, buffer in enumerate(self._shown, 1)
        ]

    def create_content(self, width: int, height: int) -> UIContent:
        rows = self.rows(width)

        def line(number: int) -> StyleAndTextTuples:
            return [(rows[number].style, rows[number].text)] if number < len(rows) else []

        return UIContent(get_line=line, line_count=len(rows), show_cursor=False)

    def mouse_handler(self, mouse_event: MouseEvent) -> object:
        if mouse_event.event_type != MouseEventType.MOUSE_UP:
            return NotImplemented
        y = mouse_event.position.y
        if not 0 <= y < len(self._shown) or self._shown[y] not in self._buffers.buffers:
            return NotImplemented
        self._go(self._shown[y])
        return None

    def is_focusable(self) -> bool:
        return False
