"""Logging while the full-screen UI runs: nothing may write to the terminal under it.

A line written to stderr over a full-screen application lands wherever the cursor is and
shifts the display until the next full redraw. So while the UI runs, every log record (and
every Python warning) becomes a line of the message pane instead, and so does any exception
that escapes a key binding or a callback of the event loop: it is reported there and the UI
keeps running, rather than prompt_toolkit printing a traceback over the screen and waiting
for Enter. When the UI ends, logging goes back to where it went before (stderr).
"""

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

#: Shows one log line in the pane: (text, is_error).
ShowLine = Callable[[str, bool], None]


def describe(record: logging.LogRecord) -> str:
    """`record` as one line: `logger: message`, then the exception's type and text if any."""
    text = f"{record.name}: {record.getMessage()}"
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        text += f" ({type(exc).__name__}: {exc})"
    return text


class PaneLogHandler(logging.Handler):
    """Hands every record, as one line, to `show` on the event loop's thread (records
    logged from another thread are passed over to it)."""

    def __init__(self, show: ShowLine, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._show = show
        self._loop = loop
        self._thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = describe(record)
            error = record.levelno >= logging.ERROR
            if threading.get_ident() == self._thread:
                self._show(text, error)
            elif not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._show, text, error)
        except RecursionError:  # as logging's own handlers do
            raise
        except Exception:  # noqa: BLE001 - logging's contract: emit reports, never raises
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        # logging's default prints a traceback to stderr, over the screen; and the code that
        # logged must not fail because its record could not be shown.
        with contextlib.suppress(Exception):
            self._show(f"{record.name}: a log record could not be shown: {record.msg!r}", True)


def _writes_to_terminal(handler: logging.Handler) -> bool:
    """Whether `handler` writes to stdout or stderr (the screen the UI draws on)."""
    if not isinstance(handler, logging.StreamHandler) or isinstance(handler, logging.FileHandler):
        return False
    stream = handler.stream
    return stream in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)


@contextlib.contextmanager
def logs_in_pane(show: ShowLine) -> Iterator[None]:
    """For the duration of the block, in the running event loop: every log record, Python
    warning and exception left to the event loop goes to `show` and none to the terminal."""
    loop = asyncio.get_running_loop()
    root = logging.getLogger()
    handler = PaneLogHandler(show, loop)
    detached = [h for h in root.handlers if _writes_to_terminal(h)]
    previous_exception_handler = loop.get_exception_handler()

    last: list[str] = []

    def report(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        # Once is enough: an error in drawing would otherwise redraw (to show itself),
        # fail again and fill the pane.
        seen = repr(exc) if exc is not None else str(context.get("message"))
        if last == [seen]:
            return
        last[:] = [seen]
        if isinstance(exc, BaseException):
            log.error("unexpected error, the chat goes on", exc_info=exc)
        else:
            log.error("%s", context.get("message", "unexpected error"))

    for detached_handler in detached:
        root.removeHandler(detached_handler)
    # With a handler on the root logger, logging's last resort (stderr) is never used.
    root.addHandler(handler)
    logging.captureWarnings(True)
    loop.set_exception_handler(report)
    try:
        yield
    finally:
        loop.set_exception_handler(previous_exception_handler)
        logging.captureWarnings(False)
        root.removeHandler(handler)
        for detached_handler in detached:
            root.addHandler(detached_handler)
