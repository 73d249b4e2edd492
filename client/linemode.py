"""Line mode: the client for scripts and bots, used when stdin or stdout is not a terminal.

It registers, then handles each line of stdin as if typed (plain lines go to everyone,
`/msg NICK text`, `@NICK text`, `/query NICK`, `/all`, `/users`, `/quit [reason]`, ...), and
prints every event as one sanitized line on stdout:

    HH:MM <alice> text                  a message to everyone (own messages included)
    HH:MM [alice -> bob] text           a private message, sent or received
    HH:MM -!- bob joined                joins, leaves, answers to local commands
    HH:MM -!- notice: text              a notice from the server or an operator
    HH:MM -!- error 404: reason         an ERROR from the server
    HH:MM -!- error: reason             a local error (kicked, shutdown, nick lost)

Own messages are printed once the broker has them, not when read from stdin: an own
`<alice> text` when the broker broadcasts it back, an own `[alice -> bob] text` when the
broker acknowledges it (private messages go to their recipient only). Delivery states print
as their own lines, only where they tell something new:

    HH:MM -!- delivered to bob: text                  bob's client confirmed a private message
    HH:MM -!- kept for bob until they are back: text  bob (an owned nick) is away
    HH:MM -!- error 404: not sent to bob: text (no such nick: bob)
    HH:MM -!- error 413: not sent: text (reason)      the broker refused it; it is not retried
    HH:MM -!- error 504: not delivered to bob: text (bob left before receiving it (...))

Messages waiting for the broker (pending) print nothing. What answers a typed line (its own
message coming back, an error about it, a local answer such as `unknown command`) prints
after the answers to the lines typed before it, whichever reached the client first. Right
after registering, the user list prints as `HH:MM -!- 3 users: alice bob carol`. If the link
is lost, the client registers again by itself (keeping its nick and the messages not yet
acknowledged); that shows as two lines and nothing else:

    HH:MM -!- connection lost (no answer from tcp://host:5555 for 6.0 s): reconnecting
    HH:MM -!- reconnected to tcp://host:5555 as alice

Broadcasts missed meanwhile are fetched again and printed in order; if the broker no longer
has some, `HH:MM -!- N broadcasts were lost` says so. If the broker's broadcast stream
cannot be reached (only its main port is forwarded, say), one line says so,
`HH:MM -!- broadcast stream unreachable (...); doing without`, and broadcasts then come over
the main connection.

Control characters in text are shown in caret notation (`^[`) or as `<U+202E>`, never passed
to the terminal. At the end of input (or `/quit`) the client waits until the broker has
acknowledged every message (sending them at the pace the broker's flood control allows),
then sends PING and waits for the PONG, which proves the broker processed every line before
it, then sends QUIT and exits. If nothing moves forward for DRAIN_STALL_BOUNDS liveness bounds
meanwhile (the broker unreachable: 12 s with the default heartbeat), it gives up.

Exit codes: 0 after end of input or /quit, everything delivered; 1 if the broker does not
answer registration, stays unreachable after the end of input (stderr: "N messages not
delivered"), shuts down or kicks us; 2 if the nick is invalid or refused (also when the nick
went to someone else while reconnecting). Reasons for a non-zero exit go to stderr.
"""

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, TextIO

from messages import ProtocolError, normalize_nick, sanitize

from .connection import CurveKeys
from .identity import Identity
from .outbox import Delivery
from .render import plain_line
from .session import REGISTRATION_TIMEOUT_S, RegistrationError, Session
from .state import Ending, Entry, EntryKind
from .stream import RecentIds

log = logging.getLogger(__name__)

#: How long QUIT may take to leave after the last line, in milliseconds.
QUIT_LINGER_MS: Final = 1000
#: After the end of input, give up when nothing moved forward (no acknowledgement, no
#: registration) for this many liveness bounds.
DRAIN_STALL_BOUNDS: Final = 2
#: The kinds of entry that show an own message as typed.
_TYPED: Final = (EntryKind.MESSAGE, EntryKind.PRIVATE)


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


def printed(entry: Entry) -> bool:
    """Whether line mode prints `entry` (see the module docstring)."""
    if entry.kind is EntryKind.DELIVERY:
        if entry.delivery is Delivery.SENT:
            return bool(entry.recipient)  # an own private message, printed as such
        return entry.delivery in (Delivery.DELIVERED, Delivery.STORED, Delivery.FAILED)
    # Own messages as typed: printed once the broker has them.
    return entry.delivery is None


@dataclass(slots=True)
class _Held:
    """Output held back until the lines typed before it have had their answer: the answer
    to own message `msg_id` (empty for output that is ready), once `ready`."""

    msg_id: str
    lines: list[str] = field(default_factory=list)
    ready: bool = False


class LinePrinter:
    """The output lines of entries, each own private message printed once (when the broker
    acknowledges it, or confirms its delivery, or it comes back to a sender who sent it to
    themselves: whichever is first).

    What answers a typed line prints after what answers the lines typed before it: a
    message's own line comes back over the broadcast stream, while an error about a later
    line comes straight over the connection (and a local hint at once), so the answer to
    each own message keeps its place in typing order, and so do errors and what a line
    typed after it shows at once. Others' messages, joins and the like print as they come.
    """

    def __init__(self) -> None:
        self._told = RecentIds()
        #: Set while a typed line is carried out: what it shows at once answers it.
        self.typing = False
        # Answers in typing order, oldest first; the first not ready holds the rest back.
        self._held: deque[_Held] = deque()
        self._by_id: dict[str, _Held] = {}

    def lines(self, entries: list[Entry]) -> list[str]:
        """The lines to print now for `entries` (see the module docstring), without line
        ends."""
        out: list[str] = []
        for entry in entries:
            if entry.own and entry.delivery is Delivery.PENDING and entry.kind in _TYPED:
                # An own message as typed: its answer is to print in this place.
                self._by_id[entry.msg_id] = _Held(entry.msg_id)
                self._held.append(self._by_id[entry.msg_id])
                continue
            if not printed(entry):
                continue
            lines = self._lines_of(entry)
            held = self._by_id.get(entry.msg_id) if entry.own else None
            if held is not None:
                held.lines += lines
                held.ready = True
            elif self._held and (self.typing or entry.kind is EntryKind.ERROR):
                self._held.append(_Held("", lines, ready=True))
            else:
                out += lines
        while self._held and self._held[0].ready:
            out += self._release()
        return out

    def flush(self) -> list[str]:
        """Everything held back, in order (at the end: answers that never came are not
        waited for)."""
        out: list[str] = []
        while self._held:
            out += self._release()
        return out

    def _release(self) -> list[str]:
        held = self._held.popleft()
        self._by_id.pop(held.msg_id, None)
        return held.lines

    def _lines_of(self, entry: Entry) -> list[str]:
        if entry.kind is EntryKind.PRIVATE and entry.own and not entry.history:
            # It comes back only to someone who sent it to themselves.
            return [plain_line(entry)] if self._told.add(entry.msg_id) else []
        told = entry.kind is EntryKind.DELIVERY and entry.delivery is not Delivery.FAILED
        if not (told and entry.recipient):
            return [plain_line(entry)]
        # An own private message the broker has (SENT) or delivered: the message first, once.
        out: list[str] = []
        if self._told.add(entry.msg_id):
            message = dataclasses.replace(entry, kind=EntryKind.PRIVATE, delivery=None)
            out.append(plain_line(message))
        if entry.delivery in (Delivery.DELIVERED, Delivery.STORED):
            out.append(plain_line(entry))
        return out


class LineClient:
    """One line-mode run: stdin lines in, event lines out."""

    def __init__(
        self,
        servers: Sequence[str],
        nick: str,
        stdin: TextIO,
        stdout: TextIO,
        stderr: TextIO,
        keys: CurveKeys | None = None,
        history_lines: int = 0,
        identity: Identity | None = None,
    ) -> None:
        #: The servers, tried in order (see `Session`).
        self.servers = servers
        self.identity = identity
        #: Broadcasts of the stored history printed on joining.
        self.history_lines = history_lines
        self.nick = nick
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.keys = keys
        self._printer = LinePrinter()

    def show(self, entries: list[Entry]) -> None:
        """Print `entries` that line mode prints, one line each, and flush so pipes see
        them at once."""
        self._write(self._printer.lines(entries))

    def _write(self, lines: list[str]) -> None:
        if lines:
            self.stdout.write("\n".join(lines) + "\n")
            self.stdout.flush()

    def fail(self, reason: str, exit_code: int) -> int:
        """Report `reason` on stderr and return `exit_code`."""
        # The reason may quote the broker or an operator (KICK, SHUTDOWN, a refusal).
        self.stderr.write(f"zmq-chat-client: {sanitize(reason)}\n")
        self.stderr.flush()
        return exit_code

    async def run(self, registration_timeout_s: float = REGISTRATION_TIMEOUT_S) -> int:
        """Register, relay stdin and events until the end, and return the exit code."""
        try:
            nick = normalize_nick(self.nick)
        except ProtocolError as exc:
            return self.fail(f"invalid nick {self.nick!r}: {exc.reason}", 2)
        session = Session(
            self.servers,
            nick,
            self.show,
            keys=self.keys,
            history_lines=self.history_lines,
            identity=self.identity,
        )
        linger_ms = 0
        try:
            try:
                await session.register(registration_timeout_s)
            except RegistrationError as exc:
                return self.fail(exc.reason, exc.exit_code)
            except ValueError as exc:
                return self.fail(str(exc), 1)
            ending = await self._relay(session)
            if ending.exit_code == 0:
                linger_ms = QUIT_LINGER_MS
                return 0
            return self.fail(ending.reason, ending.exit_code)
        finally:
            self._write(self._printer.flush())
            session.close(linger_ms)

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
            running = tasks.create_task(session.run())
            inputs = tasks.create_task(self._inputs(session, lines))
            await asyncio.wait([running, inputs], return_when=asyncio.FIRST_COMPLETED)
            # Input that ended cleanly wins over an ending the session saw meanwhile.
            finished = inputs if inputs.done() else running
            for task in (running, inputs):
                task.cancel()
        return finished.result()

    async def _inputs(self, session: Session, lines: asyncio.Queue[str | None]) -> Ending:
        reason = ""
        while (line := await lines.get()) is not None:
            self._printer.typing = True
            try:
                leave = await session.handle_line(line)
            finally:
                self._printer.typing = False
            if leave is not None:
                reason = leave.reason
                break
        stall_s = DRAIN_STALL_BOUNDS * session.liveness_s
        if not await session.drain(stall_s):
            if session.state.ending is not None:
                # The session reports why (kicked, nick lost); wait for it rather than guess.
                await asyncio.Event().wait()
            count = session.undelivered
            where = ", ".join(self.servers)
            if not count:
                return Ending(f"no answer from {where}", 1)
            noun = "message" if count == 1 else "messages"
            return Ending(f"{count} {noun} not delivered: no answer from {where}", 1)
        await session.quit(reason)
        return Ending("end of input", 0)
