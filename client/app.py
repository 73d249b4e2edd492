"""The interactive client: registration (asking for a nick until one is accepted), then the
full-screen UI, the receive loop, the heartbeat and the typed lines as one asyncio TaskGroup.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from prompt_toolkit import PromptSession

from messages import ProtocolError, normalize_nick
from messages.commands import Quit
from messages.events import Welcome

from .connection import Connection
from .session import REGISTRATION_TIMEOUT_S, RegistrationError, Session, register
from .state import ChatState, Ending, LinkState
from .ui import ChatUI

#: How long QUIT may take to leave once the UI has closed, in milliseconds.
QUIT_LINGER_MS = 1000

AskNick = Callable[[], Awaitable[str]]
Say = Callable[[str], None]


async def connect_and_register(
    server: str,
    nick: str | None,
    ask_nick: AskNick,
    say: Say,
    timeout_s: float = REGISTRATION_TIMEOUT_S,
) -> tuple[Connection, Welcome]:
    """Register on `server`, asking for another nick (through `ask_nick`) while the nick is
    missing, invalid or taken; `say` tells the user why. Raises RegistrationError if the
    server does not answer, ValueError if `server` is not a valid endpoint."""
    while True:
        if not nick:
            nick = (await ask_nick()).strip()
            if not nick:
                continue
        try:
            nick = normalize_nick(nick)
        except ProtocolError as exc:
            say(f"{nick!r} cannot be a nick: {exc.reason}")
            nick = None
            continue
        # A fresh connection per attempt: nothing of a refused attempt lingers.
        connection = Connection(server)
        try:
            return connection, await register(connection, nick, timeout_s)
        except RegistrationError as exc:
            connection.close()
            if exc.exit_code != 2:
                raise
            say(exc.reason)
            nick = None


class InteractiveClient:
    """A registered session driven by the full-screen UI."""

    def __init__(self, connection: Connection, welcome: Welcome, server: str) -> None:
        self.connection = connection
        self.state = ChatState(welcome.nick, server)
        self._lines: asyncio.Queue[str] = asyncio.Queue()
        self.ui = ChatUI(self.state, self._lines.put_nowait)
        self.session = Session(connection, self.state, self.ui.show, welcome)
        self.quit_sent = False

    async def run(self) -> Ending:
        """Run until the user leaves or the broker ends the session; return why it ended."""
        async with asyncio.TaskGroup() as tasks:
            background = [
                tasks.create_task(self._receive()),
                tasks.create_task(self.session.heartbeat()),
                tasks.create_task(self._inputs()),
            ]
            ui = tasks.create_task(self._run_ui(background))
        return ui.result()

    async def _run_ui(self, background: list[asyncio.Task[None]]) -> Ending:
        try:
            return await self.ui.run()
        finally:
            for task in background:
                task.cancel()

    async def _receive(self) -> None:
        ending = await self.session.receive_events()
        if self.state.link is LinkState.CLOSED:
            # Kicked or shut down: close the UI; the reason is printed after it.
            self.ui.exit(ending)
        # Lost: the UI stays up, showing it, until the user leaves.

    async def _inputs(self) -> None:
        while True:
            line = await self._lines.get()
            leave = await self.session.handle_line(line)
            if leave is None:
                continue
            if self.state.link is LinkState.CONNECTED:
                await self.session.send(Quit(leave.reason))
                self.quit_sent = True
            self.state.link = LinkState.CLOSED
            self.ui.exit(self.state.ending or Ending("", 0))
            return


async def run_interactive(
    server: str,
    nick: str | None,
    timeout_s: float = REGISTRATION_TIMEOUT_S,
    verbose: bool = False,
) -> Ending:
    """Ask for a nick if needed, register, and run the full-screen chat until it ends."""
    prompt: PromptSession[str] = PromptSession()

    async def ask_nick() -> str:
        return await prompt.prompt_async("nick: ")

    try:
        connection, welcome = await connect_and_register(server, nick, ask_nick, print, timeout_s)
    except (RegistrationError, ValueError) as exc:
        return Ending(str(exc), 1)
    except (EOFError, KeyboardInterrupt):
        return Ending("", 1)
    client = InteractiveClient(connection, welcome, server)
    handler = client.ui.log_handler()
    if verbose:
        logging.getLogger().addHandler(handler)
    try:
        return await client.run()
    finally:
        with contextlib.suppress(ValueError):
            logging.getLogger().removeHandler(handler)
        connection.close(QUIT_LINGER_MS if client.quit_sent else 0)
