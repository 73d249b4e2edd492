"""The message pane of the full-screen client: the scrollback, wrapped to the pane's width
and scrolled by screen rows.

Each entry is one line of the scrollback; the pane wraps it into rows (at a space when one
fits, else inside the word; rows after the first indented past the time) and scrolls through
rows, so a message taller than the pane is
drawn and read through page by page like any other. The pane follows the newest row unless
scrolled up; then it stays on what it shows, and it never scrolls past the first row (the
oldest rows then fill the whole pane).

Drawing costs what is on screen: only the lines around the bottom row on screen are read
and wrapped, however long the scrollback.
"""

from collections.abc import Callable
from typing import Final, NamedTuple

from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.layout import UIContent, UIControl, Window
from prompt_toolkit.mouse_events import MouseEvent, MouseEventType
from prompt_toolkit.utils import get_cwidth

#: Oldest entries are dropped beyond this many.
SCROLLBACK_LINES: Final = 10_000
#: Blanks before the rows that continue a wrapped line: the width of the `HH:MM ` stamp,
#: so the time column stays clear.
CONTINUATION_INDENT: Final = 6
#: Rows moved per mouse wheel step.
WHEEL_LINES: Final = 3
#: Size assumed until the pane is first drawn (rows, columns).
DEFAULT_SIZE: Final = (10, 80)
#: Wrapped lines kept for the next redraw; beyond this many the cache starts over (a
#: redraw wraps only what is on screen, so a few screens' worth is plenty).
WRAP_CACHE_LINES: Final = 1000


class Position(NamedTuple):
    """A row of the scrollback: row `row` of the wrapped line at index `line`."""

    line: int
    row: int


def wrap(line: StyleAndTextTuples, width: int, indent: int = 0) -> list[StyleAndTextTuples]:
    """`line` cut into rows at most `width` columns wide: after the last space that fits,
    or inside a word longer than a row. Rows after the first start with `indent` blanks
    (none in a pane too narrow for it). A wide character never straddles two rows; an empty
    line is one empty row."""
    width = max(1, width)
    if sum(get_cwidth(fragment[1]) for fragment in line) <= width:
        return [line]  # most lines: one row, nothing to cut
    margin = [("", " ")] * (indent if width > 3 * indent else 0)
    rows: list[list[tuple[str, str]]] = [[]]
    used = 0
    # Index in the current row just after its last space: where the row may be cut.
    cut = 0
    for fragment in line:
        style, text = fragment[0], fragment[1]
        for char in text:
            columns = get_cwidth(char)
            row = rows[-1]
            if used + columns > width and len(row) > len(margin):
                # A space here is the break itself, on neither row; else the row ends at
                # its last space, or here if it has none.
                carried = [] if char == " " or not 0 < cut < len(row) else row[cut:]
                del row[len(row) - len(carried) :]
                rows.append([*margin, *carried])
                used = sum(get_cwidth(c) for _, c in rows[-1])
                cut = 0
                if char == " ":
                    continue
                row = rows[-1]
            row.append((style, char))
            used += columns
            if char == " ":
                cut = len(row)
    return [_merge(row) for row in rows]


def _merge(chars: list[tuple[str, str]]) -> StyleAndTextTuples:
    """Runs of characters of one style as one fragment each."""
    merged: StyleAndTextTuples = []
    for style, char in chars:
        if merged and merged[-1][0] == style:
            merged[-1] = (style, merged[-1][1] + char)
        else:
            merged.append((style, char))
    return merged


class MessagePane:
    """The scrollback: its lines, and which row is at the bottom of the pane (the newest,
    unless scrolled up)."""

    def __init__(self) -> None:
        self.lines: list[StyleAndTextTuples] = []
        #: Lines dropped from the top so far: line number `n` (counting from the first line
        #: ever added) is `lines[n - dropped]`.
        self.dropped = 0
        #: The bottom row on screen while scrolled up; None when pinned to the newest row.
        self.anchor: Position | None = None
        #: The pane's size at the last drawing: scrolling counts rows of this width.
        self.height, self.width = DEFAULT_SIZE
        # line number -> (the line wrapped, width, its rows)
        self._wrapped: dict[int, tuple[StyleAndTextTuples, int, list[StyleAndTextTuples]]] = {}
        # Lines were dropped for room: older lines may no longer go on top.
        self._trimmed = False
        #: Called when the user scrolls up with the first row on screen already (to fetch
        #: what came before it), and on any scrolling by the user.
        self.on_top: Callable[[], None] | None = None
        self.on_scroll: Callable[[], None] | None = None
        self.control = _PaneControl(self)
        self.window = Window(self.control, always_hide_cursor=True)

    @property
    def pinned(self) -> bool:
        """Whether the pane follows new lines."""
        return self.anchor is None

    def add(self, lines: list[StyleAndTextTuples]) -> int:
        """Append `lines`, dropping the oldest beyond SCROLLBACK_LINES; return the line
        number (see `dropped`) of the first one."""
        number = self.dropped + len(self.lines)
        self.lines.extend(lines)
        excess = len(self.lines) - SCROLLBACK_LINES
        if excess > 0:
            del self.lines[:excess]
            self.dropped += excess
            self._trimmed = True
            if self.anchor is not None:
                line = self.anchor.line - excess
                self.anchor = self.anchor._replace(line=line) if line >= 0 else Position(0, 0)
        return number

    @property
    def can_prepend(self) -> bool:
        """Whether lines may go above the first (none was dropped for room)."""
        return not self._trimmed

    def prepend(self, lines: list[StyleAndTextTuples]) -> int:
        """Put `lines` above the first line, as many as SCROLLBACK_LINES leaves room for
        (the last of them) and none once lines were dropped for room; return how many.
        Line numbers stay as they were, and so does what a scrolled-up pane shows."""
        if self._trimmed:
            return 0
        room = SCROLLBACK_LINES - len(self.lines)
        lines = lines[len(lines) - room :] if len(lines) > room else lines
        self.lines[:0] = lines
        self.dropped -= len(lines)
        if self.anchor is not None:
            self.anchor = self.anchor._replace(line=self.anchor.line + len(lines))
        return len(lines)

    def drop_first(self) -> None:
        """Remove the first line (the others keep their numbers)."""
        if not self.lines:
            return
        del self.lines[0]
        self.dropped += 1
        if self.anchor is not None:
            line = self.anchor.line - 1
            self.anchor = self.anchor._replace(line=line) if line >= 0 else Position(0, 0)

    def reset(self, lines: list[StyleAndTextTuples]) -> None:
        """Start over with `lines` (the last SCROLLBACK_LINES of them), numbered from 0,
        pinned to the newest row: a filter changed which lines show."""
        self.lines = lines[-SCROLLBACK_LINES:]
        self.dropped = 0
        self.anchor = None
        self._wrapped.clear()

    def replace(self, number: int, line: StyleAndTextTuples) -> bool:
        """Draw line number `number` as `line`; False if it has been dropped."""
        index = number - self.dropped
        if not 0 <= index < len(self.lines):
            return False
        self.lines[index] = line
        return True

    def text(self) -> StyleAndTextTuples:
        """The lines up to the bottom one on screen, as one formatted text (one line per
        entry, unwrapped). The pane itself reads only those on screen."""
        fragments: StyleAndTextTuples = []
        for index, line in enumerate(self.lines[: self.bottom().line + 1]):
            if index:
                fragments.append(("", "\n"))
            fragments.extend(line)
        return fragments

    # -- rows --------------------------------------------------------------------------

    def rows(self, index: int) -> list[StyleAndTextTuples]:
        """The line at `index` wrapped to the pane's width."""
        line = self.lines[index]
        number = self.dropped + index
        cached = self._wrapped.get(number)
        if cached is not None and cached[0] is line and cached[1] == self.width:
            return cached[2]
        if len(self._wrapped) >= WRAP_CACHE_LINES:
            self._wrapped.clear()
        rows = wrap(line, self.width, CONTINUATION_INDENT)
        self._wrapped[number] = (line, self.width, rows)
        return rows

    def last(self) -> Position:
        """The newest row."""
        if not self.lines:
            return Position(0, 0)
        index = len(self.lines) - 1
        return Position(index, len(self.rows(index)) - 1)

    def bottom(self) -> Position:
        """The row at the bottom of the pane."""
        if self.anchor is None or not self.lines:
            return self.last()
        index = min(self.anchor.line, len(self.lines) - 1)
        return Position(index, min(self.anchor.row, len(self.rows(index)) - 1))

    def up(self, position: Position, count: int) -> Position:
        """The row `count` rows above `position`, or the first row."""
        line, row = position
        while count > 0:
            if row >= count:
                return Position(line, row - count)
            if line == 0:
                return Position(0, 0)
            count -= row + 1
            line -= 1
            row = len(self.rows(line)) - 1
        return Position(line, row)

    def down(self, position: Position, count: int) -> Position:
        """The row `count` rows below `position`, or the newest row."""
        line, row = position
        while count > 0:
            rows = len(self.rows(line))
            if row + count < rows:
                return Position(line, row + count)
            if line == len(self.lines) - 1:
                return Position(line, rows - 1)
            count -= rows - row
            line += 1
            row = 0
        return Position(line, row)

    def _scroll_to(self, position: Position) -> None:
        """Put `position` at the bottom of the pane, but never so high that the pane shows
        less than a full page (or the whole scrollback); pinned at the newest row."""
        if not self.lines:
            self.anchor = None
            return
        # Scrolled to the top, the first row is at the top of the pane.
        position = max(position, self.down(Position(0, 0), self.height - 1))
        self.anchor = None if position >= self.last() else position

    # -- scrolling ---------------------------------------------------------------------

    def page(self) -> int:
        """Rows per page: the pane's height less one row kept for context."""
        return max(1, self.height - 1)

    def scroll_up(self, rows: int | None = None) -> None:
        """Scroll back by `rows` (default: a page); with the first row on screen already,
        ask for what came before it (`on_top`)."""
        at_top = not self.lines or self.up(self.bottom(), self.height - 1) == Position(0, 0)
        if self.lines:
            self._scroll_to(self.up(self.bottom(), rows or self.page()))
        if self.on_scroll is not None:
            self.on_scroll()
        if at_top and self.on_top is not None:
            self.on_top()

    def scroll_down(self, rows: int | None = None) -> None:
        """Scroll forward by `rows` (default: a page); pins again at the newest row."""
        if self.anchor is not None:
            self._scroll_to(self.down(self.bottom(), rows or self.page()))
        if self.on_scroll is not None:
            self.on_scroll()

    def resize(self, width: int, height: int) -> None:
        """Take the pane's size for the drawing that follows."""
        if width != self.width:
            self._wrapped.clear()
        self.width, self.height = max(1, width), max(1, height)
        if self.anchor is not None:
            # Rows are counted anew at another width: still never past the top.
            self._scroll_to(self.bottom())

    def screen(self) -> list[StyleAndTextTuples]:
        """The rows on screen, top to bottom: the `height` rows up to the bottom one."""
        if not self.lines:
            return []
        line, row = self.bottom()
        shown: list[StyleAndTextTuples] = []
        while True:
            rows = self.rows(line)
            take = min(row + 1, self.height - len(shown))
            shown[:0] = rows[row + 1 - take : row + 1]
            if len(shown) >= self.height or line == 0:
                return shown
            line -= 1
            row = len(self.rows(line)) - 1


class _PaneControl(UIControl):
    """The pane's control: it draws the rows on screen, and handles the mouse wheel itself,
    as the scroll lives in the pane."""

    def __init__(self, pane: MessagePane) -> None:
        self._pane = pane

    def create_content(self, width: int, height: int) -> UIContent:
        self._pane.resize(width, height)
        rows = self._pane.screen()

        def row(number: int) -> StyleAndTextTuples:
            return rows[number] if number < len(rows) else []

        return UIContent(get_line=row, line_count=len(rows), show_cursor=False)

    def mouse_handler(self, mouse_event: MouseEvent) -> object:
        if mouse_event.event_type == MouseEventType.SCROLL_UP:
            self._pane.scroll_up(WHEEL_LINES)
            return None
        if mouse_event.event_type == MouseEventType.SCROLL_DOWN:
            self._pane.scroll_down(WHEEL_LINES)
            return None
        return NotImplemented
