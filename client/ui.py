"""The full-screen chat: layout, styles and every key binding.

    +------------------------------------------+----------+
    | message pane (scrollback)                | * all    |
    |                                          |   alice  |
    |                                          |   bob    |
    +------------------------------------------+----------+
    | status: nick, server, link, operator, secure         |
    | [all] > input line                                  |
    +-----------------------------------------------------+

The UI owns no chat logic: typed lines go to `submit`, entries to show come in through
`show`, and the user list, status and prompt are drawn from the live `ChatState`.

Own messages show at once, with their delivery state after the text (`…` pending, `✓` sent,
`✓✓` delivered, `✗ reason` failed); a DELIVERY entry redraws that same line, and the broker's
echo of an own message adds no second line.

Many events a second must not make typing lag: a batch of entries costs one `invalidate`,
redraws come at most every REDRAW_INTERVAL_S, and drawing the pane costs what is on screen,
not the whole scrollback.
"""

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from prompt_toolkit.application import Application
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.data_structures import Point
from prompt_toolkit.filters import Condition, has_completions
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import (
    BufferControl,
    Dimension,
    Float,
    FloatContainer,
    FormattedTextControl,
    HSplit,
    Layout,
    UIContent,
    UIControl,
    VSplit,
    Window,
)
from prompt_toolkit.layout.menus import CompletionsMenu
from prompt_toolkit.layout.processors import BeforeInput
from prompt_toolkit.mouse_events import MouseEvent, MouseEventType
from prompt_toolkit.styles import Style

from messages import nick_key

from .completion import ChatCompleter
from .outbox import Delivery
from .render import formatted_line, nick_color, sanitize
from .state import ChatState, Ending, Entry, EntryKind, LinkState

#: Oldest entries are dropped beyond this many.
SCROLLBACK_LINES: Final = 10_000
#: Lines moved per mouse wheel step.
WHEEL_LINES: Final = 3
#: What Ctrl-C on a typed line says.
INPUT_CLEARED: Final = "input cleared (Up brings it back); Ctrl-C again leaves"
#: Shortest time between two redraws, in seconds: messages arriving by the thousand redraw
#: the screen 50 times a second, not once each; a key press shows within this.
REDRAW_INTERVAL_S: Final = 0.02

STYLE: Final = Style.from_dict(
    {
        "time": "#888888",
        "punct": "#888888",
        "nick.own": "bold",
        "text.own": "#bbbbbb",
        "text.highlight": "bold ansiyellow",
        "private": "ansimagenta",
        "text.private": "italic",
        "system": "#888888",
        "notice": "bold ansicyan",
        "error": "ansired",
        "separator": "#555555",
        "users.title": "bold underline",
        "users.selected": "reverse",
        "users.self": "bold",
        "status": "reverse",
        "status.lost": "bg:ansired fg:ansiwhite bold",
        "status.reconnecting": "bg:ansiyellow fg:ansiblack bold",
        "status.operator": "bold",
        "status.secure": "bold",
        "delivery.pending": "#888888",
        "delivery.sent": "#888888",
        "delivery.delivered": "ansigreen",
        "delivery.failed": "ansired bold",
        "prompt": "bold",
    }
)


class MessagePane:
    """The scrollback: one line per entry, pinned to the newest line unless scrolled up.

    Scrolled up, the pane draws the lines up to `anchor` only, with the window's cursor on
    the last of them: the window then shows `anchor` at its bottom whatever the wrapping,
    and new lines arriving meanwhile change nothing on screen.
    """

    def __init__(self) -> None:
        self.lines: list[StyleAndTextTuples] = []
        #: Lines dropped from the top so far: line number `n` (counting from the first line
        #: ever added) is `lines[n - dropped]`.
        self.dropped = 0
        #: The bottom line while scrolled up; None when pinned to the newest line.
        self.anchor: int | None = None
        self.control = _PaneControl(self)
        self.window = Window(self.control, wrap_lines=True, always_hide_cursor=True)

    @property
    def pinned(self) -> bool:
        """Whether the pane follows new lines."""
        return self.anchor is None

    @property
    def bottom(self) -> int:
        """Index of the bottom line on screen."""
        last = max(0, len(self.lines) - 1)
        return last if self.anchor is None else min(self.anchor, last)

    def add(self, lines: list[StyleAndTextTuples]) -> int:
        """Append `lines`, dropping the oldest beyond SCROLLBACK_LINES; return the line
        number (see `dropped`) of the first one."""
        number = self.dropped + len(self.lines)
        self.lines.extend(lines)
        excess = len(self.lines) - SCROLLBACK_LINES
        if excess > 0:
            del self.lines[:excess]
            self.dropped += excess
            if self.anchor is not None:
                self.anchor = max(0, self.anchor - excess)
        return number

    def replace(self, number: int, line: StyleAndTextTuples) -> bool:
        """Draw line number `number` as `line`; False if it has been dropped."""
        index = number - self.dropped
        if not 0 <= index < len(self.lines):
            return False
        self.lines[index] = line
        return True

    def text(self) -> StyleAndTextTuples:
        """The lines the control draws from (all of them, or up to `anchor` when scrolled
        up) as one formatted text. The control itself reads only those on screen."""
        fragments: StyleAndTextTuples = []
        for index, line in enumerate(self.lines[: self.bottom + 1]):
            if index:
                fragments.append(("", "\n"))
            fragments.extend(line)
        return fragments

    def cursor(self) -> Point:
        """The last drawn line: the window scrolls to keep it in view, at the bottom."""
        return Point(x=0, y=self.bottom)

    def page(self) -> int:
        """Lines per page: the window's height less one line kept for context."""
        info = self.window.render_info
        return max(1, (info.window_height if info is not None else 10) - 1)

    def scroll_up(self, lines: int | None = None) -> None:
        """Scroll back by `lines` (default: a page)."""
        if self.lines:
            self.anchor = max(0, self.bottom - (lines or self.page()))

    def scroll_down(self, lines: int | None = None) -> None:
        """Scroll forward by `lines` (default: a page); pins again at the newest line."""
        if self.anchor is not None:
            anchor = self.anchor + (lines or self.page())
            self.anchor = None if anchor >= len(self.lines) - 1 else anchor


class _PaneControl(UIControl):
    """The pane's control. It hands the window its lines one by one, as asked for (the
    window asks for those on screen only), and handles the mouse wheel itself, as the
    scroll lives in the pane."""

    def __init__(self, pane: MessagePane) -> None:
        self._pane = pane

    def create_content(self, width: int, height: int) -> UIContent:
        lines = self._pane.lines
        bottom = self._pane.bottom

        def line(number: int) -> StyleAndTextTuples:
            return lines[number] if number < len(lines) else []

        return UIContent(
            get_line=line,
            line_count=bottom + 1,
            cursor_position=self._pane.cursor(),
            show_cursor=False,
        )

    def mouse_handler(self, mouse_event: MouseEvent) -> object:
        if mouse_event.event_type == MouseEventType.SCROLL_UP:
            self._pane.scroll_up(WHEEL_LINES)
            return None
        if mouse_event.event_type == MouseEventType.SCROLL_DOWN:
            self._pane.scroll_down(WHEEL_LINES)
            return None
        return NotImplemented


class ChatUI:
    """The prompt_toolkit Application of the chat.

    Build it inside the app session it should use (tests pass a pipe input and a dummy
    output through `create_app_session`). Its result is the `Ending` given to `exit`.
    """

    def __init__(self, state: ChatState, submit: Callable[[str], None]) -> None:
        self.state = state
        self._submit = submit
        self._pending_exit: Ending | None = None
        self.pane = MessagePane()
        # msg_id -> (line number, entry) of own messages still in the pane, oldest first.
        self._own: OrderedDict[str, tuple[int, Entry]] = OrderedDict()
        self.input = Buffer(
            multiline=False,
            completer=ChatCompleter(state),
            complete_while_typing=False,
            history=InMemoryHistory(),
            accept_handler=self._accept,
        )
        #: The input line (with its prompt).
        self.input_window = input_window = Window(
            BufferControl(self.input, input_processors=[BeforeInput(self.prompt_fragments)]),
            height=Dimension(min=1, max=4),
            wrap_lines=True,
            # As tall as the typed text, no taller: the pane above takes the rest.
            dont_extend_height=True,
        )
        #: The side panel with the user list.
        self.users_window = Window(
            FormattedTextControl(self.user_list_fragments, focusable=False),
            width=Dimension(preferred=18, max=24),
        )
        body = HSplit(
            [
                VSplit(
                    [
                        self.pane.window,
                        Window(width=1, char="│", style="class:separator"),
                        self.users_window,
                    ]
                ),
                Window(FormattedTextControl(self.status_fragments), height=1, style="class:status"),
                input_window,
            ]
        )
        root = FloatContainer(
            body,
            floats=[
                Float(
                    xcursor=True,
                    ycursor=True,
                    content=CompletionsMenu(max_height=8, scroll_offset=1),
                )
            ],
        )
        self.app: Application[Ending] = Application(
            layout=Layout(root, focused_element=input_window),
            key_bindings=self._key_bindings(),
            style=STYLE,
            full_screen=True,
            mouse_support=True,
            min_redraw_interval=REDRAW_INTERVAL_S,
            # PageUp/PageDown scroll the message pane, not the input line.
            enable_page_navigation_bindings=False,
        )

    # -- fed by the client -------------------------------------------------------------

    def show(self, entries: list[Entry]) -> None:
        """Append `entries` to the message pane (updating own messages' lines in place for
        DELIVERY entries) and redraw."""
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
                self._own[entry.msg_id] = (first + len(lines), entry)
                lines.clear()
            elif not (entry.own and entry.msg_id in self._own):
                # (else: the echo of an own line shown already)
                lines.append(formatted_line(entry))
        self.pane.add(lines)
        while self._own and next(iter(self._own.values()))[0] < self.pane.dropped:
            self._own.popitem(last=False)
        self.app.invalidate()

    def _update_delivery(self, update: Entry) -> None:
        shown = self._own.get(update.msg_id)
        if shown is None:
            if update.delivery is Delivery.FAILED:
                self.pane.add([formatted_line(update)])  # its line is gone: say it anyway
            return
        number, entry = shown
        entry = dataclasses.replace(
            entry, delivery=update.delivery, code=update.code, reason=update.reason
        )
        self._own[update.msg_id] = (number, entry)
        self.pane.replace(number, formatted_line(entry))

    def exit(self, ending: Ending) -> None:
        """Close the UI; `Application.run_async` returns `ending`."""
        if self.app.is_done:
            return
        if not self.app.is_running:
            self._pending_exit = ending
            return
        self.app.exit(result=ending)

    async def run(self) -> Ending:
        """Run the Application until `exit`."""

        def exit_if_asked() -> None:
            if self._pending_exit is not None:
                self.app.exit(result=self._pending_exit)

        return await self.app.run_async(pre_run=exit_if_asked)

    def log_handler(self) -> logging.Handler:
        """A logging handler that shows records in the message pane."""
        return _PaneLogHandler(self)

    # -- drawn from the state ----------------------------------------------------------

    def prompt_fragments(self) -> StyleAndTextTuples:
        """The prompt before the input line: where plain lines go, `[all] > ` or `[to bob] > `."""
        target = self.state.target
        label = "all" if target is None else f"to {sanitize(target)}"
        return [("class:prompt", f"[{label}] > ")]

    def status_fragments(self) -> StyleAndTextTuples:
        """The status line: own nick, server, link state (with the reconnect attempt),
        operator, secure, scrolled-up marker."""
        state = self.state
        link = state.link.value
        link_style = "class:status.lost"
        if state.link is LinkState.CONNECTED:
            link_style = ""
        elif state.link is LinkState.RECONNECTING:
            link_style = "class:status.reconnecting"
            link += f" (attempt {state.reconnect_attempt})"
        status: StyleAndTextTuples = [
            ("class:status.nick", f" {sanitize(state.nick)} "),
            ("", f"@ {sanitize(state.server)} "),
            (link_style, f" {link} "),
        ]
        if state.operator:
            status.append(("class:status.operator", " operator "))
        if state.secure:
            status.append(("class:status.secure", " secure "))
        if not self.pane.pinned:
            status.append(("", " -- more below (PageDown) -- "))
        return status

    def user_list_fragments(self) -> StyleAndTextTuples:
        """The side panel: "all", then every user; a click on a row makes it the target."""
        state = self.state
        target_key = nick_key(state.target) if state.target is not None else None
        # Until the first USERS answer, only who was seen joining is known.
        count = str(len(state.users)) if state.users_known else "…"
        rows: StyleAndTextTuples = [("class:users.title", f" {count} here\n")]
        rows.append(self._user_row("all", None, state.target is None))
        for nick in state.users:
            if state.is_self(nick):
                rows.append(("class:users.self", f"  {sanitize(nick)}\n"))
            else:
                rows.append(self._user_row(nick, nick, nick_key(nick) == target_key))
        return rows

    def _user_row(
        self, label: str, target: str | None, selected: bool
    ) -> tuple[str, str, Callable[[MouseEvent], object]]:
        def pick(mouse_event: MouseEvent) -> object:
            if mouse_event.event_type != MouseEventType.MOUSE_UP:
                return NotImplemented
            self.show(self.state.set_target(target))
            return None

        style = "class:users.selected" if selected else ""
        if target is not None:
            style += f" fg:{nick_color(target)}"
        marker = "*" if selected else " "
        return (style, f"{marker} {sanitize(label)}\n", pick)

    # -- input -------------------------------------------------------------------------

    def _accept(self, buffer: Buffer) -> bool:
        self._submit(buffer.text)
        return False  # clear the line (it stays in history)

    def _cycle_completion(self, step: int) -> bool:
        """Move `step` candidates on in the completion under way, round the end; False if
        none is."""
        state = self.input.complete_state
        if state is None or not state.completions:
            return False
        index = -1 if state.complete_index is None else state.complete_index
        self.input.go_to_completion((index + step) % len(state.completions))
        return True

    def _key_bindings(self) -> KeyBindings:
        bindings = KeyBindings()
        empty_line = Condition(lambda: not self.input.text)

        @bindings.add("pageup")
        def _page_up(event: KeyPressEvent) -> None:
            self.pane.scroll_up()

        @bindings.add("pagedown")
        def _page_down(event: KeyPressEvent) -> None:
            self.pane.scroll_down()

        @bindings.add("c-n", filter=~has_completions)
        @bindings.add("escape", "down")
        def _next_target(event: KeyPressEvent) -> None:
            self.show(self.state.cycle_target(+1))

        @bindings.add("c-p", filter=~has_completions)
        @bindings.add("escape", "up")
        def _previous_target(event: KeyPressEvent) -> None:
            self.show(self.state.cycle_target(-1))

        @bindings.add("tab")
        def _complete(event: KeyPressEvent) -> None:
            # weechat's way: the first candidate in full (the menu shows the others), then
            # each Tab the next one, round and round; not prompt_toolkit's common prefix
            # ("/q" -> "/qu").
            if not self._cycle_completion(+1):
                self.input.start_completion(select_first=True)

        @bindings.add("s-tab")
        def _complete_back(event: KeyPressEvent) -> None:
            self._cycle_completion(-1)

        @bindings.add("c-c", filter=~empty_line)
        def _clear(event: KeyPressEvent) -> None:
            # As in a shell: the line goes (into the history: Up brings it back), the chat
            # stays; Ctrl-C on the empty line leaves.
            self.input.reset(append_to_history=True)
            self.show([self.state.info(INPUT_CLEARED)])

        @bindings.add("c-c", filter=empty_line)
        @bindings.add("c-d", filter=empty_line)
        def _quit(event: KeyPressEvent) -> None:
            self._submit("/quit")

        return bindings


class _PaneLogHandler(logging.Handler):
    def __init__(self, ui: ChatUI) -> None:
        super().__init__()
        self._ui = ui

    def emit(self, record: logging.LogRecord) -> None:
        self._ui.show([self._ui.state.info(f"{record.name}: {record.getMessage()}")])
