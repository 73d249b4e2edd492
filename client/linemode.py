"""Line mode: the client for scripts and bots, used when stdin or stdout is not a terminal.

It registers, then handles each line of stdin as if typed (plain lines go to everyone,
`/msg NICK text`, `@NICK text`, `/query NICK`, `/all`, `/users`, `/quit [reason]`, ...), and
prints every event as one sanitized line on stdout:

    HH:MM <alice> text                  a message to everyone (own messages included)
    HH:MM [alice -> bob] text           a private message, sent or received
    HH:MM -!- bob joined                joins, leaves, answers to local commands
    HH:MM -!- notice: text              a notice from the server or an operator
    HH:MM -!- error 404: reason         an ERROR from the server
    HH:MM -!- error: reason             a local error (kicked, shutdown, connection lost)

Control characters in text are shown in caret notation (`^[`) or as `<U+202E>`, never passed
to the terminal. At the end of input (or `/quit`) the client sends PING and waits for the
PONG, which proves the broker processed every line before it, then sends QUIT and exits.

Exit codes: 0 after end of input or /quit; 1 if the broker does not answer (registration
timeout, connection lost), shuts down or kicks us; 2 if the nick is invalid or refused.
Reasons for a non-zero exit go to stderr.
"""

import asyncio
import contextlib
import logging
import threading
from typing import TextIO

from messages import ProtocolError, normalize_nick
from messages.commands import Quit

from .connection import Connection
from .render import plain_line
from .session import REGISTRATION_TIMEOUT_S, RegistrationError, Session, register
from .state import ChatState, Ending, Entry

log = logging.getLogger(__name__)

#: How long QUIT may take to leave after the last line, in milliseconds.
QUIT_LINGER_MS = 1000


def _read_lines(
    stdin: TextIO, loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]
) -> None:
    # A daemon thread: blocking reads on a pipe or file cannot be cancelled, and the process
    # must be able to exit (kicked, say) while stdin is still open.
    def put(item: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens anymore
            loop.call_soon_threadsafe(lines.put_nowait, item)

    try:
        for line in stdin:
            put(line)
    except (OSError, ValueError) as exc:
        log.debug("stdin: %s", exc)
    put(None)


class LineClient:
    """One line-mode run: stdin lines in, event lines out."""

    def __init__(
        self, server: str, nick: str, stdin: TextIO, stdout: TextIO, stderr: TextIO
    ) -> None:
        self.server = server
        self.nick = nick
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr

    def show(self, entries: list[Entry]) -> None:
        """Print `entries`, one line each, and flush so pipes see them at once."""
        for entry in entries:
            self.stdout.write(plain_line(entry) + "\n")
        self.stdout.flush()

    def fail(self, reason: str, exit_code: int) -> int:
        """Report `reason` on stderr and return `exit_code`."""
        self.stderr.write(f"zmq-chat-client: {reason}\n")
        self.stderr.flush()
        return exit_code

    async def run(self, registration_timeout_s: float = REGISTRATION_TIMEOUT_S) -> int:
        """Register, relay stdin and events until the end, and return the exit code."""
        try:
            nick = normalize_nick(self.nick)
        except ProtocolError as exc:
            return self.fail(f"invalid nick {self.nick!r}: {exc.reason}", 2)
        try:
            connection = Connection(self.server)
        except ValueError as exc:
            return self.fail(str(exc), 1)
        linger_ms = 0
        try:
            try:
                welcome = await register(connection, nick, registration_timeout_s)
            except RegistrationError as exc:
                return self.fail(exc.reason, exc.exit_code)
            session = Session(connection, ChatState(nick, self.server), self.show, welcome)
            ending = await self._relay(session)
            if ending.exit_code == 0:
                linger_ms = QUIT_LINGER_MS
                return 0
            return self.fail(ending.reason, ending.exit_code)
        finally:
            connection.close(linger_ms)

    async def _relay(self, session: Session) -> Ending:
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        reader = threading.Thread(
            target=_read_lines,
            args=(self.stdin, asyncio.get_running_loop(), lines),
            name="stdin",
            daemon=True,
        )
        reader.start()
        async with asyncio.TaskGroup() as tasks:
            receiver = tasks.create_task(session.receive_events())
            heartbeat = tasks.create_task(session.heartbeat())
            inputs = tasks.create_task(self._inputs(session, lines))
            await asyncio.wait([receiver, inputs], return_when=asyncio.FIRST_COMPLETED)
            # Input that ended cleanly wins over an ending the receiver saw meanwhile.
            finished = inputs if inputs.done() else receiver
            for task in (receiver, heartbeat, inputs):
                task.cancel()
        return finished.result()

    async def _inputs(self, session: Session, lines: asyncio.Queue[str | None]) -> Ending:
        reason = ""
        while (line := await lines.get()) is not None:
            leave = await session.handle_line(line)
            if leave is not None:
                reason = leave.reason
                break
        if not await session.flush():
            # The receiver reports why (lost, kicked); wait for it rather than guess.
            await asyncio.Event().wait()
        await session.send(Quit(reason))
        return Ending("end of input", 0)
