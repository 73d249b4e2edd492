"""The side panel of the full-screen client: who is here, and where plain lines go.

    14 here          title: how many users (in a room's buffer, `3 in #dev`: its members)
  * all              the target (`*`, reversed)
    alice            one row per user, cut with `…` to the panel's width (dimmed: away)
    ...
    +3 more          what does not fit, below (and `+N above` once scrolled)

A click on a row makes it the target; a click on `+N more` / `+N above`, or the mouse wheel,
scrolls the list.
"""

from collections.abc import Callable
from typing import Final, NamedTuple

from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.layout import UIContent, UIControl
from prompt_toolkit.mouse_events import MouseEvent, MouseEventType

from messages import is_room_name, nick_key

from .render import fit, nick_color, sanitize
from .state import ChatState

#: Rows the list moves per mouse wheel step.
WHEEL_ROWS: Final = 3

#: Makes a nick (None: everyone) the target.
Pick = Callable[[str | None], None]


class Row(NamedTuple):
    """One row of the panel: its style and text, and what a click on it does."""

    style: str
    text: str
    click: Callable[[], None] | None = None


class UserList(UIControl):
    """The panel's control: it draws the rows that fit and scrolls through the rest."""

    def __init__(self, state: ChatState, pick: Pick) -> None:
        self._state = state
        self._pick = pick
        #: Index of the first entry ("all" is 0) shown below the title.
        self.offset = 0
        #: Entry rows the panel showed last: a page for a click on `+N more`.
        self._page = 1
        self._shown: list[Row] = []

    def rows(self, width: int | None = None, height: int | None = None) -> list[Row]:
        """The rows for a panel `width` columns wide and `height` rows high (None: as many
        as needed)."""
        state = self._state
        users = state.users  # sorted anew on each read: once per redraw
        # Then, dimmed, the owners of owned nicks who are away.
        listed = users + state.away_users
        # In a room's buffer: who is in the room.
        in_room = state.target if state.target and is_room_name(state.target) else None
        members = state.members_of(in_room) if in_room is not None else None
        if members is not None:
            users = listed = members
        columns = None if width is None else max(1, width - 2)
        target_key = None if state.target is None else nick_key(state.target)

        def entries(start: int, stop: int) -> list[Row]:
            # Entry 0 is "all", entry i the (i-1)th user: only the rows shown are built.
            return [
                self._entry("all", None, columns, target_key)
                if i == 0
                else self._entry(
                    listed[i - 1], listed[i - 1], columns, target_key, away=i > len(users)
                )
                for i in range(start, stop)
            ]

        # Until the first USERS answer, only who was seen joining is known.
        count = str(len(users)) if state.users_known or members is not None else "…"
        where = f"in {in_room}" if members is not None else "here"
        title = Row("class:users.title", self._cut(f" {count} {where}", width))
        total = len(listed) + 1
        room = total if height is None else max(1, height - 1)
        if total <= room:
            self.offset = 0
            self._page = room
            return [title, *entries(0, total)]
        # The last entries fill the panel once scrolled to the end; `+N above` takes a row.
        self.offset = max(0, min(self.offset, total - room + 1))
        rows = [title]
        if self.offset > 0:
            rows.append(self._more(f"+{self.offset} above", -1, width))
            room -= 1
        remaining = total - self.offset
        if remaining <= room:
            shown = entries(self.offset, total)
            rows += shown
        else:
            shown = entries(self.offset, self.offset + max(1, room - 1))
            rows += shown
            rows.append(self._more(f"+{remaining - len(shown)} more", +1, width))
        self._page = max(1, len(shown))
        return rows

    def scroll(self, entries: int) -> None:
        """Move the list by `entries` (negative: up); `rows` keeps it in bounds."""
        self.offset = max(0, self.offset + entries)

    @staticmethod
    def _cut(text: str, width: int | None) -> str:
        return text if width is None else fit(text, width)

    def _entry(
        self,
        label: str,
        target: str | None,
        columns: int | None,
        target_key: str | None,
        away: bool = False,
    ) -> Row:
        """The row of `target` (None: everyone), selected if it is the one `target_key`
        names; dimmed if `away` (an owner not here) or if its user is away (AWAY)."""
        state = self._state
        name = self._cut(sanitize(label), columns)
        if target is not None and state.is_self(target):
            return Row("class:users.self", f"  {name}")
        if target is None:
            selected = target_key is None
        else:
            selected = target_key is not None and target_key == nick_key(target)
        style = "class:users.selected" if selected else ""
        if away or (target is not None and state.away_of(target) is not None):
            style += " class:users.away"
        elif target is not None:
            style += f" fg:{nick_color(target)}"
        marker = "*" if selected else " "
        return Row(style, f"{marker} {name}", lambda: self._pick(target))

    def _more(self, text: str, direction: int, width: int | None) -> Row:
        return Row("class:users.more", self._cut(f"  {text}", width), lambda: self._turn(direction))

    def _turn(self, direction: int) -> None:
        self.scroll(direction * self._page)

    # -- UIControl -----------------------------------------------------------------------

    def create_content(self, width: int, height: int) -> UIContent:
        shown = self._shown = self.rows(width, height)

        def line(number: int) -> StyleAndTextTuples:
            if number >= len(shown):
                return []
            row = shown[number]
            return [(row.style, row.text)]

        return UIContent(get_line=line, line_count=len(shown), show_cursor=False)

    def mouse_handler(self, mouse_event: MouseEvent) -> object:
        match mouse_event.event_type:
            case MouseEventType.SCROLL_UP:
                self.scroll(-WHEEL_ROWS)
            case MouseEventType.SCROLL_DOWN:
                self.scroll(WHEEL_ROWS)
            case MouseEventType.MOUSE_UP:
                y = mouse_event.position.y
                click = self._shown[y].click if 0 <= y < len(self._shown) else None
                if click is None:
                    return NotImplemented
                click()
            case _:
                return NotImplemented
        return None

    def is_focusable(self) -> bool:
        return False
