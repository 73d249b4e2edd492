"""Notifications through the terminal: the bell and the window title.

A mention of the user's nick or a private message arriving in a buffer they are not looking
at rings the bell once, and the title counts such events until they are seen: `(2) zmq-chat`,
then `zmq-chat` again. Both go through prompt_toolkit's `Output` (never printed directly),
so they reach the terminal between two redraws, not inside one.
"""

from typing import Final

from prompt_toolkit.output import Output

#: The terminal title with nothing unseen.
TITLE: Final = "zmq-chat"


def title(alerts: int) -> str:
    """The terminal title for `alerts` unseen mentions and private messages."""
    return f"({alerts}) {TITLE}" if alerts else TITLE


class Notifier:
    """Rings the bell and keeps the title's count on one terminal `Output`."""

    def __init__(self) -> None:
        # The count the title shows (None: the title was never set).
        self._shown: int | None = None

    def notify(self, output: Output, bells: int, alerts: int) -> None:
        """Ring the bell `bells` times (one per event) and show `alerts` in the title if
        it changed."""
        for _ in range(bells):
            output.bell()
        if alerts != (self._shown or 0):
            output.set_title(title(alerts))
            self._shown = alerts
            output.flush()

    def reset(self, output: Output) -> None:
        """Leave the title as nothing unseen (the client ends)."""
        if self._shown:
            output.set_title(TITLE)
            output.flush()
        self._shown = None
