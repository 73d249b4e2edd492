"""A chat session over one connection: registration, the receive loop with its liveness
check, the heartbeat, and carrying out typed lines.

The full-screen UI and line mode both run a `Session`; they differ only in where entries are
shown (`show`) and in how the session ends. A reconnect loop would wrap `register` and a new
`Session` around a fresh `Connection` once `receive_events` reports the link lost.
"""

import asyncio
import logging
from collections.abc import Callable

from messages import HEARTBEAT_LIVENESS, ProtocolError
from messages.commands import ClientCommand, Hello, Ping
from messages.events import Error, Pong, Welcome

from .commands import Hint, Leave, Nothing, Send, SetTarget, ShowHelp, help_lines, parse_line
from .connection import Connection
from .state import ChatState, Ending, Entry, LinkState

log = logging.getLogger(__name__)

#: How long to wait for WELCOME before giving up, in seconds.
REGISTRATION_TIMEOUT_S = 5.0


class RegistrationError(Exception):
    """Registration failed; `exit_code` is 2 if the nick was refused, 1 otherwise."""

    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code


async def register(
    connection: Connection, nick: str, timeout_s: float = REGISTRATION_TIMEOUT_S
) -> Welcome:
    """Send HELLO and wait for WELCOME. Raises RegistrationError if the broker refuses the
    nick (with its reason) or does not answer within `timeout_s` seconds."""
    await connection.send(Hello(nick))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        event = await connection.receive(deadline - loop.time())
        match event:
            case None:
                raise RegistrationError(
                    f"no answer from {connection.endpoint} within {timeout_s:g} s", 1
                )
            case Welcome():
                return event
            case Error(code=code, reason=reason):
                raise RegistrationError(f"nick {nick!r} refused ({code}): {reason}", 2)
            case _:
                # Anything else before WELCOME belongs to no session of ours.
                log.debug("ignored before registration: %r", event)


class Session:
    """A registered session: feeds broker events into `state`, shows the resulting entries
    through `show`, sends heartbeats, and carries out typed lines. Construction applies
    `welcome` (the answer `register` returned) and shows its entries."""

    def __init__(
        self,
        connection: Connection,
        state: ChatState,
        show: Callable[[list[Entry]], None],
        welcome: Welcome,
    ) -> None:
        self.connection = connection
        self.state = state
        self._show = show
        self._pings_sent = 0
        self._pongs_received = 0
        self._pong_waiters: list[tuple[int, asyncio.Future[None]]] = []
        show(state.apply(welcome))

    @property
    def liveness_s(self) -> float:
        """How long the broker may stay silent before the link counts as lost."""
        return HEARTBEAT_LIVENESS * self.state.heartbeat_ms / 1000

    async def send(self, command: ClientCommand) -> None:
        """Send `command` to the broker."""
        if isinstance(command, Ping):
            self._pings_sent += 1
        await self.connection.send(command)

    async def receive_events(self) -> Ending:
        """Apply events until the broker ends the session or stays silent for `liveness_s`;
        return why the session ended."""
        loop = asyncio.get_running_loop()
        last_heard = loop.time()
        while self.state.ending is None:
            event = await self.connection.receive(last_heard + self.liveness_s - loop.time())
            if event is None:
                silent_ms = round((loop.time() - last_heard) * 1000)
                self._show(self.state.mark_lost(silent_ms))
                break
            last_heard = loop.time()
            if isinstance(event, ProtocolError):
                self._show([self.state.error(f"ignored a bad message from the server: {event}")])
                continue
            if isinstance(event, Pong):
                self._pong()
            self._show(self.state.apply(event))
        self._fail_waiters()
        assert self.state.ending is not None
        return self.state.ending

    async def heartbeat(self) -> None:
        """Send PING every heartbeat interval while the link is up."""
        while self.state.link is LinkState.CONNECTED:
            await asyncio.sleep(self.state.heartbeat_ms / 1000)
            if self.state.link is LinkState.CONNECTED:
                await self.send(Ping())

    async def flush(self) -> bool:
        """Wait until the broker has processed everything sent so far (PING, then its PONG:
        the broker handles one client's messages in order). False if no PONG came within
        `liveness_s` or the session ended first."""
        if self.state.ending is not None:
            return False
        await self.send(Ping())
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pong_waiters.append((self._pings_sent, waiter))
        try:
            await asyncio.wait_for(waiter, self.liveness_s)
        except (TimeoutError, ConnectionError):
            return False
        return True

    async def handle_line(self, line: str) -> Leave | None:
        """Carry out `line` as typed; return the Leave action if it asks to leave (the
        caller decides how to end), else None."""
        action = parse_line(line, self.state.target)
        match action:
            case Send(command=command):
                if self.state.link is not LinkState.CONNECTED:
                    self._show([self.state.error(f"not sent: {self.state.link.value}")])
                else:
                    await self.send(command)
            case SetTarget(nick=nick):
                self._show(self.state.set_target(nick))
            case ShowHelp():
                self._show([self.state.info(text) for text in help_lines()])
            case Hint(text=text):
                self._show([self.state.info(text)])
            case Leave():
                return action
            case Nothing():
                pass
        return None

    def _pong(self) -> None:
        self._pongs_received += 1
        waiting = []
        for number, waiter in self._pong_waiters:
            if number <= self._pongs_received:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((number, waiter))
        self._pong_waiters = waiting

    def _fail_waiters(self) -> None:
        for _, waiter in self._pong_waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionError("session ended"))
        self._pong_waiters = []
