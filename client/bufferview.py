"""How the buffers look in the full-screen client: each buffer's scrollback, the list of
buffers at the top of the side panel, and the activity list of the status line.

    *1 #general          the current buffer (reversed)
    !2 bob 3             a private message or a mention not seen yet, and the unread count
     3 carol 1           other activity

A click on a buffer's row goes to it.
"""

import dataclasses
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.layout import UIContent, UIControl
from prompt_toolkit.mouse_events import MouseEvent, MouseEventType

from .buffers import Buffer, Buffers, Level
from .outbox import Delivery
from .pane import MessagePane
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


class BufferView:
    """One buffer's scrollback: its pane, and where its own messages' lines are."""

    def __init__(self) -> None:
        self.pane = MessagePane()
        # msg_id -> (line number, entry) of own messages still in the pane, oldest first.
        self.own: OrderedDict[str, tuple[int, Entry]] = OrderedDict()
        #: The day of the date line at the top of the pane, if it is one.
        self.top_day: str | None = None

    def show(self, entries: list[Entry]) -> None:
        """Append `entries` to the pane, updating own messages' lines in place for DELIVERY
        entries (the broker's echo of an own line adds no second line)."""
        # Lines go to the pane together, as few times as possible: a full pane drops its
        # oldest lines on each addition.
        lines: list[StyleAndTextTuples] = []
        for entry in entries:
            if entry.kind is EntryKind.DELIVERY:
                self.pane.add(lines)
                lines.clear()
                self._update_delivery(entry)
            elif entry.own and entry.msg_id and entry.delivery is not None:
                first = self.pane.add([*lines, formatted_line(entry)])
                self.own[entry.msg_id] = (first + len(lines), entry)
                lines.clear()
            elif not (entry.own and entry.msg_id in self.own):
                # (else: the echo of an own line shown already)
                lines.append(formatted_line(entry))
        self.pane.add(lines)
        while self.own and next(iter(self.own.values()))[0] < self.pane.dropped:
            self.own.popitem(last=False)

    def _update_delivery(self, update: Entry) -> None:
        shown = self.own.get(update.msg_id)
        if shown is None:
            if update.delivery is Delivery.FAILED:
                self.pane.add([formatted_line(update)])  # its line is gone: say it anyway
            return
        number, entry = shown
        entry = dataclasses.replace(
            entry, delivery=update.delivery, code=update.code, reason=update.reason
        )
        self.own[update.msg_id] = (number, entry)
        self.pane.replace(number, formatted_line(entry))


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
