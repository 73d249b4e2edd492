"""The full-screen chat: layout, styles and every key binding.

    +------------------------------------------+------------+
    | message pane (the current buffer's)      | *1 #general|
    |                                          | !2 bob 1   |
    |                                          |  2 here    |
    |                                          | * all      |
    |                                          |   alice    |
    |                                          |   bob      |
    +------------------------------------------+------------+
    | status: nick, server, link, buffer, activity, operator  |
    | [all] > input line                                     |
    +--------------------------------------------------------+

The UI owns no chat logic: typed lines go to `submit`, entries to show come in through
`show`, and the user list, status and prompt are drawn from the live `ChatState`.

Buffers (client.buffers): `show` puts each entry in its buffer's scrollback, counts what
arrives where the user is not looking, and rings the bell for a mention or a private message
there (client.notify). The current buffer is where plain lines go: it follows the state's
target (`/query`, `/all`, Ctrl-N, a click on a nick), and switching buffers (Alt-1..9,
Alt-Left/Right, Alt-A, `/buffer`) sets the target.

Own messages show at once, with their delivery state after the text (`…` pending, `✓` sent,
`✓✓` delivered, `✗ reason` failed); a DELIVERY entry redraws that same line, and the broker's
echo of an own message adds no second line.

Many events a second must not make typing lag: a batch of entries costs one `invalidate`,
redraws come at most every REDRAW_INTERVAL_S, and drawing the pane costs what is on screen,
not the whole scrollback (client.pane: the scrollback, wrapped and scrolled by rows).
"""

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Final

from prompt_toolkit.application import Application
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition, has_completions
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.history import History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.key_binding.bindings.mouse import load_mouse_bindings
from prompt_toolkit.keys import Keys
from prompt_toolkit.layout import (
    BufferControl,
    Dimension,
    DynamicContainer,
    Float,
    FloatContainer,
    FormattedTextControl,
    HSplit,
    Layout,
    VSplit,
    Window,
)
from prompt_toolkit.layout.menus import CompletionsMenu
from prompt_toolkit.layout.processors import BeforeInput
from prompt_toolkit.styles import Style

from messages import ProtocolError, is_room_name
from messages.nicks import normalize_nick

from .buffers import GENERAL, GENERAL_NAME, BufferKey, BufferKind, Buffers
from .buffers import Buffer as ChatBuffer
from .bufferview import BufferList, BufferView, Line, activity_fragments
from .commands import View
from .completion import ChatCompleter
from .filters import Filters
from .notify import Notifier
from .pane import MessagePane
from .render import sanitize
from .state import ChatState, Ending, Entry, EntryKind, LinkState, day, now_ms
from .uilog import logs_in_pane
from .userlist import UserList

#: What Ctrl-C on a typed line says.
INPUT_CLEARED: Final = "input cleared (Up brings it back); Ctrl-C again leaves"
#: Shortest time between two redraws, in seconds: messages arriving by the thousand redraw
#: the screen 50 times a second, not once each; a key press shows within this.
REDRAW_INTERVAL_S: Final = 0.02

#: A paste of more lines than this is not sent at once: it waits in the input line for
#: Enter (as irssi's paste_verify_line_count, 5 by default, asks first).
PASTE_CONFIRM_LINES: Final = 5
#: What the pane says when a paste waits for Enter.
PASTE_WAITING: Final = "{lines} lines pasted: Enter sends them, one message each; Esc drops them"

#: A mouse report prompt_toolkit can decode: X10 (`ESC [ M` and three bytes), or SGR and
#: urxvt (`ESC [ <b;x;y M`, `ESC [ b;x;y M`) with exactly three numbers.
_MOUSE_REPORT: Final = re.compile(r"\x1b\[(M...|<?\d+;\d+;\d+[mM])\Z", re.DOTALL)

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
        "marker": "#888888 bold",
        # Last, so that it wins over the colors of what it dims.
        "history": "#777777",
        "users.title": "bold underline",
        "users.selected": "reverse",
        "users.self": "bold",
        "users.more": "#888888",
        "users.away": "#666666",
        "buffers.current": "reverse",
        "buffers.muted": "#666666",
        "activity.low": "#888888",
        "activity.message": "bold",
        "activity.private": "bold ansiyellow",
        "activity.highlight": "bold ansimagenta",
        "status": "reverse",
        "status.lost": "bg:ansired fg:ansiwhite bold",
        "status.reconnecting": "bg:ansiyellow fg:ansiblack bold",
        "status.operator": "bold",
        "status.secure": "bold",
        "status.unread": "bg:ansiblue fg:ansiwhite bold",
        "delivery.pending": "#888888",
        "delivery.sent": "#888888",
        "delivery.delivered": "ansigreen",
        "delivery.stored": "ansiyellow",
        "delivery.late": "#888888 italic",
        "delivery.failed": "ansired bold",
        "prompt": "bold",
    }
)


class ChatUI:
    """The prompt_toolkit Application of the chat.

    Build it inside the app session it should use (tests pass a pipe input and a dummy
    output through `create_app_session`). Its result is the `Ending` given to `exit`.
    """

    def __init__(
        self,
        state: ChatState,
        submit: Callable[[str], None],
        history: History | None = None,
        older: Callable[[], None] | None = None,
        want_rooms: Callable[[], None] | None = None,
        older_room: Callable[[str], None] | None = None,
    ) -> None:
        """`history`: the input history (Up/Down; default: this run's only); `older`: asks
        for the history before the first line (scrolling up past it); `want_rooms`: asks
        for the list of rooms (the user is typing a room name, which Tab completes);
        `older_room`, for the posts of a room before the first its buffer shows."""
        self._older_room = older_room
        self.state = state
        self._submit = submit
        self._pending_exit: Ending | None = None
        #: The buffers: #general and the private conversations.
        self.buffers = Buffers()
        #: What is left out: ignored nicks, joins and leaves (`/filter joins`).
        self.filters = Filters()
        self._notifier = Notifier()
        # Each open buffer's scrollback; #general's fetches older history at its top.
        self._views: dict[BufferKey, BufferView] = {}
        self._view(GENERAL).pane.on_top = older
        self.input = Buffer(
            multiline=False,
            completer=ChatCompleter(state),
            complete_while_typing=False,
            history=history if history is not None else InMemoryHistory(),
            accept_handler=self._accept,
        )
        self.input.on_text_changed += lambda _: self._read()
        if want_rooms is not None:

            def rooms_wanted(buffer: Buffer) -> None:
                if buffer.document.get_word_before_cursor(WORD=True) == "#":
                    want_rooms()

            self.input.on_text_changed += rooms_wanted
        #: The input line (with its prompt).
        self.input_window = input_window = Window(
            BufferControl(self.input, input_processors=[BeforeInput(self.prompt_fragments)]),
            height=Dimension(min=1, max=4),
            wrap_lines=True,
            # As tall as the typed text, no taller: the pane above takes the rest.
            dont_extend_height=True,
        )
        #: The side panel: the buffers, then the user list.
        self.buffer_list = BufferList(self.buffers, self.switch)
        self.buffers_window = Window(
            self.buffer_list, height=lambda: Dimension.exact(len(self.buffers.buffers))
        )
        self.user_list = UserList(state, lambda target: self.show(state.set_target(target)))
        self.users_window = Window(self.user_list)
        body = HSplit(
            [
                VSplit(
                    [
                        DynamicContainer(lambda: self.pane.window),
                        Window(width=1, char="│", style="class:separator"),
                        HSplit(
                            [self.buffers_window, self.users_window],
                            width=Dimension(preferred=18, max=24),
                        ),
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

    @property
    def pane(self) -> MessagePane:
        """The current buffer's message pane."""
        return self._view(self.buffers.current.key).pane

    def _view(self, key: BufferKey) -> BufferView:
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = BufferView()
            view.pane.on_scroll = self._read
            view.hide_quiet = self.filters.smart
            older = self._older_room
            if older is not None and key.kind is BufferKind.ROOM and key != GENERAL:
                view.pane.on_top = lambda: older(key.key)
        return view

    def show(self, entries: list[Entry]) -> None:
        """Put each of `entries` in its buffer's scrollback (updating own messages' lines in
        place for DELIVERY entries), count and announce what arrives where the user is not
        looking, and redraw."""
        self._follow_target()
        now = now_ms()
        # Each buffer's lines, in order, to go to its pane at once.
        routed: dict[BufferKey, list[Line]] = {}
        bells = 0
        for entry in entries:
            if entry.kind is EntryKind.DELIVERY:
                # To wherever its line is (or is about to be); a failure with no line left
                # is said in the current buffer.
                keys = [key for key, view in self._views.items() if entry.msg_id in view.own]
                keys += [key for key, batch in routed.items() if _holds(batch, entry.msg_id)]
                for key in dict.fromkeys(keys or [self.buffers.current.key]):
                    routed.setdefault(key, []).append(Line(entry))
                continue
            if self.filters.ignores(entry, now):
                continue
            quiet = self.filters.quiet(entry, now)
            for buffer in self.buffers.route(entry):
                if not (quiet and self.filters.smart):  # (a hidden line is no activity)
                    bells += self.buffers.arrive(buffer, entry).alert
                # In its room's own buffer a line needs no room name (elsewhere it does).
                own_room = bool(entry.room) and buffer.key == BufferKey.room(entry.room)
                shown = replace(entry, room="") if own_room else entry
                routed.setdefault(buffer.key, []).append(Line(shown, quiet))
        for key, batch in routed.items():
            self._view(key).show(batch)
        self._notify(bells)
        self.app.invalidate()

    def _notify(self, bells: int = 0) -> None:
        self._notifier.notify(self.app.output, bells, self.buffers.alerts)

    def _follow_target(self) -> None:
        """Make the buffer of the state's target current (a `/query`, `/all`, Ctrl-N or a
        click on a nick changed it)."""
        target = self.state.target
        if target is None:
            key = GENERAL
        elif is_room_name(target):
            key = BufferKey.room(target)
        else:
            key = BufferKey.private(target)
        if self.buffers.current.key != key:
            self.buffers.switch(self.buffers.open(key, target or GENERAL_NAME))
            self._notify()

    def switch(self, buffer: ChatBuffer) -> None:
        """Show `buffer` (an open one): plain lines go to its conversation from now on."""
        self.buffers.switch(buffer)
        self.state.focus(buffer.target)
        self._notify()
        self.app.invalidate()

    def show_above(self, entries: list[Entry]) -> None:
        """Put `entries` (older history) above everything in the pane of their room
        (#general's unless they name one) and redraw. A date line at the top that names the
        day the entries end with goes: one per day."""
        room = next((entry.room for entry in entries if entry.room), "")
        view = self._view(BufferKey.room(room) if room else GENERAL)
        # In its room's own buffer a line needs no room name.
        entries = [replace(entry, room="") for entry in entries]
        if not entries or not view.pane.can_prepend:
            return
        days = [day(e.time_ms) for e in entries if e.kind is not EntryKind.MARKER]
        if days and days[-1] == view.top_day:
            view.drop_first()
        if view.show_above(entries):
            first = entries[0]
            is_date = first.kind is EntryKind.MARKER and first.text == day(first.time_ms)
            view.top_day = first.text if is_date else None
        self.app.invalidate()

    def _read(self) -> None:
        """The user scrolled or typed: what was unread counts as read."""
        if self.state.unread:
            self.state.unread = 0
            self.state.unread_more = False
            self.app.invalidate()

    def exit(self, ending: Ending) -> None:
        """Close the UI; `Application.run_async` returns `ending`."""
        if self.app.is_done:
            return
        if not self.app.is_running:
            self._pending_exit = ending
            return
        self.app.exit(result=ending)

    async def run(self) -> Ending:
        """Run the Application until `exit`. Meanwhile every log record, and any exception
        a key binding or callback lets escape, is a line of the message pane (see
        client.uilog): nothing writes over the screen, and the chat goes on."""

        def exit_if_asked() -> None:
            if self._pending_exit is not None:
                self.app.exit(result=self._pending_exit)

        with logs_in_pane(self._show_log):
            try:
                return await self.app.run_async(pre_run=exit_if_asked, set_exception_handler=False)
            finally:
                self._notifier.reset(self.app.output)

    # -- what is shown: buffers, filters, ignores ----------------------------------------

    def view_command(self, action: View) -> None:
        """Carry out `/buffer`, `/close`, `/mute`, `/filter`, `/ignore` or `/unignore`."""
        entries = self._view_command(action.name, action.argument.strip())
        if entries:
            self.show(entries)
        self.app.invalidate()

    def _view_command(self, name: str, argument: str) -> list[Entry]:
        state, buffers = self.state, self.buffers
        current = buffers.current
        match name:
            case "buffer" if not argument:
                return [state.info("buffers:")] + [
                    state.info(f"  {number} {buffer.name}")
                    for number, buffer in enumerate(buffers.buffers, 1)
                ]
            case "buffer":
                buffer = buffers.lookup(argument)
                if buffer is None:
                    return [state.error(f"no buffer {argument}")]
                self.switch(buffer)
            case "close":
                why = buffers.close(current)
                if why is not None:
                    return [state.error(why)]
                self._views.pop(current.key, None)
                self.switch(buffers.current)
            case "mute":
                current.muted = not current.muted
                current.seen()
                if current.muted:
                    return [state.info(f"{current.name}: no bell, title count or activity")]
                return [state.info(f"{current.name}: notifications on again")]
            case "filter" if argument.lower() == "joins":
                self.filters.smart = not self.filters.smart
                for view in self._views.values():
                    view.refilter(self.filters.smart)
                return [state.info(self._filter_text())]
            case "filter" if not argument:
                return [state.info(self._filter_text())]
            case "filter":
                return [state.info("usage: /filter [joins]")]
            case "ignore" if not argument:
                ignored = self.filters.ignored
                return [
                    state.info(f"ignored: {' '.join(ignored)}" if ignored else "nobody ignored")
                ]
            case "ignore" | "unignore":
                return [self._ignore(name, argument)]
        return []

    def _filter_text(self) -> str:
        if self.filters.smart:
            return "filter joins on: joins and leaves hidden but of those who spoke lately"
        return "filter joins off: joins and leaves shown (/filter joins hides them)"

    def _ignore(self, name: str, nick: str) -> Entry:
        """`/ignore NICK` or `/unignore NICK`: the line that says what was done."""
        state = self.state
        try:
            nick = normalize_nick(nick)
        except ProtocolError as exc:
            return state.error(f"{nick!r} is not a nick: {exc.reason}")
        if name == "unignore":
            done = self.filters.unignore(nick)
            return state.info(f"{nick} is shown again" if done else f"{nick} was not ignored")
        if state.is_self(nick):
            return state.error("you cannot ignore yourself")
        if not self.filters.ignore(nick):
            return state.info(f"{nick} is ignored already")
        return state.info(f"ignoring {nick}: nothing they say is shown (/unignore {nick})")

    def _show_log(self, text: str, error: bool) -> None:
        self.show([self.state.error(text) if error else self.state.info(text)])

    # -- drawn from the state ----------------------------------------------------------

    def prompt_fragments(self) -> StyleAndTextTuples:
        """The prompt before the input line: where plain lines go, `[all] > ` or `[to bob] > `,
        and how many lines Enter sends when a paste left several (`[all] 12 lines > `)."""
        target = self.state.target
        label = "all" if target is None else f"to {sanitize(target)}"
        lines = self.input.document.line_count
        count = f" {lines} lines" if lines > 1 else ""
        return [("class:prompt", f"[{label}]{count} > ")]

    def status_fragments(self) -> StyleAndTextTuples:
        """The status line: own nick, server, link state (with the reconnect attempt), the
        scrolled-up marker, the current buffer, the activity list, operator, secure, the
        unread count of the history on joining."""
        state = self.state
        link = state.link.value
        link_style = "class:status.lost"
        if state.link is LinkState.CONNECTED:
            link_style = ""
        elif state.link is LinkState.RECONNECTING:
            link_style = "class:status.reconnecting"
            link += f" (attempt {state.reconnect_attempt})"
        buffers = self.buffers
        current = f"{buffers.current_number}:{sanitize(buffers.current.name)}"
        status: StyleAndTextTuples = [
            ("class:status.nick", f" {sanitize(state.nick)} "),
            ("", f"@ {sanitize(state.server)} "),
            (link_style, f" {link} "),
        ]
        if not self.pane.pinned:
            # Before the rest: it is about what the pane shows right now.
            status.append(("", " -- more below (PageDown) -- "))
        status += [("class:status.buffer", f" [{current}] "), *activity_fragments(buffers)]
        if state.operator:
            status.append(("class:status.operator", " operator "))
        if state.secure:
            status.append(("class:status.secure", " secure "))
        if state.unread:
            status.append(("class:status.unread", f" {state.unread_count()} unread "))
        return status

    def user_list_fragments(
        self, width: int | None = None, height: int | None = None
    ) -> StyleAndTextTuples:
        """The side panel as text, one row a line, for a panel of `width` x `height` (None:
        unbounded): "N here", "all", then every user (see client.userlist)."""
        return [(row.style, row.text + "\n") for row in self.user_list.rows(width, height)]

    # -- input -------------------------------------------------------------------------

    def _accept(self, buffer: Buffer) -> bool:
        # Several lines (a paste waiting for Enter) go one by one, as if each was typed.
        for line in buffer.text.split("\n"):
            self._submit(line)
        return False  # clear the line (it stays in history)

    def paste(self, data: str) -> None:
        """Insert pasted `data` at the cursor, as typing it would, each line break an Enter:
        the lines it completes are sent at once and what follows the last break stays in
        the input line. Above PASTE_CONFIRM_LINES lines, nothing is sent yet: the lines
        wait in the input line, shown and editable, until Enter sends them or Escape drops
        them."""
        text = data.replace("\r\n", "\n").replace("\r", "\n")
        document = self.input.document
        before, after = document.text_before_cursor, document.text_after_cursor
        lines = (before + text + after).split("\n")
        if len(lines) - 1 > PASTE_CONFIRM_LINES:
            # A copied block often ends with a line break: no empty line after it.
            self.input.insert_text(text.removesuffix("\n"))
            count = self.input.document.line_count
            # The input line shows its first rows, where the prompt says how many lines.
            self.input.cursor_position = 0
            self.show([self.state.info(PASTE_WAITING.format(lines=count))])
            return
        if len(lines) == 1:
            self.input.insert_text(text)
            return
        *complete, last = lines
        for line in complete:
            self._submit(line)
        # The cursor stays before what followed it (its last line, if it spanned several).
        self.input.document = Document(last, len(last) - len(after.rsplit("\n", 1)[-1]))

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

        def go_to(number: int) -> Callable[[KeyPressEvent], None]:
            def go(event: KeyPressEvent) -> None:
                buffer = self.buffers.lookup(str(number))
                if buffer is not None:
                    self.switch(buffer)

            return go

        for number in range(1, 10):
            # Alt-1..9: buffer N (weechat and irssi).
            bindings.add("escape", str(number))(go_to(number))

        @bindings.add("escape", "left")
        def _previous_buffer(event: KeyPressEvent) -> None:
            self.switch(self.buffers.step(-1))

        @bindings.add("escape", "right")
        def _next_buffer(event: KeyPressEvent) -> None:
            self.switch(self.buffers.step(+1))

        @bindings.add("escape", "a")
        def _next_activity(event: KeyPressEvent) -> None:
            buffer = self.buffers.next_active()
            if buffer is not None:
                self.switch(buffer)

        @bindings.add("c-n", filter=~has_completions)
        @bindings.add("escape", "down")
        def _next_target(event: KeyPressEvent) -> None:
            self.show(self.state.cycle_target(+1))

        @bindings.add("c-p", filter=~has_completions)
        @bindings.add("escape", "up")
        def _previous_target(event: KeyPressEvent) -> None:
            self.show(self.state.cycle_target(-1))

        # prompt_toolkit reads any `ESC [ digits-and-semicolons m` as a mouse report and
        # fails to decode most of them (typing or pasting ESC [ 0 m, a color reset, raised
        # "not enough values to unpack"): only well-formed reports reach its handler.
        decode_mouse = load_mouse_bindings().get_bindings_for_keys((Keys.Vt100MouseEvent,))
        mouse_handler = decode_mouse[0].handler

        @bindings.add(Keys.Vt100MouseEvent)
        def _mouse(event: KeyPressEvent) -> object:
            if not _MOUSE_REPORT.match(event.data):
                return NotImplemented  # not a mouse report: ignored, nothing to redraw
            try:
                return mouse_handler(event)
            except KeyError:  # an X10 report with a button code it does not know
                return NotImplemented

        @bindings.add(Keys.BracketedPaste)
        def _paste(event: KeyPressEvent) -> None:
            self.paste(event.data)

        @bindings.add("escape", filter=Condition(lambda: "\n" in self.input.text))
        def _drop_pasted_lines(event: KeyPressEvent) -> None:
            self.input.reset()
            self.show([self.state.info("pasted lines dropped")])

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


def _holds(lines: list[Line], msg_id: str) -> bool:
    """Whether `lines` hold the line of own message `msg_id`."""
    return any(line.entry.own and line.entry.msg_id == msg_id for line in lines)
