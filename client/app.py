"""The interactive client: registration (asking for a nick until one is accepted), then the
full-screen UI, the session (receive loop, reconnection, heartbeat, outbox) and the typed
lines as one asyncio TaskGroup.
"""

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final

from prompt_toolkit import PromptSession

from messages import ProtocolError, normalize_nick, sanitize

from .connection import CurveKeys
from .history import (
    INPUT_HISTORY_FILE,
    ROOMS_FILE,
    SEEN_FILE,
    InputHistory,
    RoomsFile,
    SeenFile,
)
from .identity import Identity
from .session import REGISTRATION_TIMEOUT_S, RegistrationError, Session, new_session_token
from .state import Ending, LinkState
from .ui import ChatUI

log = logging.getLogger(__name__)

#: How long QUIT may take to leave once the UI has closed, in milliseconds.
QUIT_LINGER_MS: Final = 1000

AskNick = Callable[[], Awaitable[str]]
Say = Callable[[str], None]


async def connect_and_register(
    servers: Sequence[str],
    nick: str | None,
    ask_nick: AskNick,
    say: Say,
    timeout_s: float = REGISTRATION_TIMEOUT_S,
    keys: CurveKeys | None = None,
    history_lines: int = 0,
    seen: SeenFile | None = None,
    identity: Identity | None = None,
) -> Session:
    """A session registered on one of `servers` (the first that answers, see
    `Session.register`), asking for another nick (through `ask_nick`) while
    the nick is missing, invalid or taken; `say` tells the user why. It shows the last
    `history_lines` broadcasts on joining, marking those after the last one `seen` names
    as unread. Raises
    RegistrationError if no server answers, ValueError if one is not a valid endpoint."""
    token = new_session_token()
    # The state files name the chat by its servers, whichever of them serves this run.
    chat = ",".join(servers)
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
        last_seen = None if seen is None else lambda epoch: seen.last_seen(chat, epoch)
        session = Session(
            servers,
            nick,
            keys=keys,
            token=token,
            history_lines=history_lines,
            last_seen=last_seen,
            identity=identity,
        )
        try:
            await session.register(timeout_s)
        except RegistrationError as exc:
            session.close()
            if exc.exit_code != 2:
                raise
            say(exc.reason)
            nick = None
        except ValueError:
            session.close()
            raise
        else:
            return session


class InteractiveClient:
    """A registered session driven by the full-screen UI."""

    def __init__(
        self,
        session: Session,
        input_history: InputHistory | None = None,
        seen: SeenFile | None = None,
        rooms: RoomsFile | None = None,
    ) -> None:
        """`input_history` keeps the lines typed; `seen`, when the run ends, the last
        broadcast shown (the next run counts the unread from there); `rooms`, the rooms the
        user is in (entered again now, as the last run left them)."""
        self.session = session
        if rooms is not None:
            chat = session.chat
            session.rejoin(rooms.rooms(chat))
            session.on_rooms_changed = lambda names: rooms.save(chat, names)
        self.seen = seen
        self.state = session.state
        self._lines: asyncio.Queue[str] = asyncio.Queue()
        self.ui = ChatUI(
            self.state,
            self._lines.put_nowait,
            input_history,
            older=session.request_older,
            want_rooms=session.request_rooms,
            older_room=session.request_older_room,
        )
        session.show = self.ui.show
        session.show_above = self.ui.show_above
        session.on_view = self.ui.view_command
        self.quit_sent = False

    async def run(self, hung_up: asyncio.Event | None = None) -> Ending:
        """Run until the user leaves, the broker ends the session or `hung_up` is set (the
        terminal is gone); return why it ended."""
        async with asyncio.TaskGroup() as tasks:
            background = [
                tasks.create_task(self._run_session()),
                tasks.create_task(self._inputs()),
            ]
            if hung_up is not None:
                background.append(tasks.create_task(self._hang_up_on(hung_up)))
            ui = tasks.create_task(self._run_ui(background))
        return ui.result()

    async def _hang_up_on(self, hung_up: asyncio.Event) -> None:
        await hung_up.wait()
        await self.hang_up()

    async def _run_ui(self, background: list[asyncio.Task[None]]) -> Ending:
        try:
            return await self.ui.run()
        except (EOFError, OSError) as exc:
            # The terminal is gone (window closed): its input ends, or drawing fails.
            log.info("terminal gone (%r): leaving", exc)
            await self.hang_up()
            return self._ending()
        finally:
            for task in background:
                task.cancel()
            self._save_seen()

    def _save_seen(self) -> None:
        """Keep the last broadcast shown, for the next run's unread count."""
        state = self.state
        if self.seen is not None and state.epoch:
            self.seen.save(self.session.chat, state.epoch, state.last_seq)

    async def hang_up(self) -> None:
        """The terminal is gone (SIGHUP, closed window): leave as /quit does, so that
        others see a normal leave rather than a heartbeat expiry, and end the UI."""
        await self._leave("", self._ending())

    def _ending(self) -> Ending:
        return self.state.ending or Ending("", 0)

    async def _leave(self, reason: str, ending: Ending) -> None:
        """QUIT with `reason` (once), and close the UI with `ending`."""
        if not self.quit_sent and await self.session.quit(reason):
            self.quit_sent = True
        self.state.link = LinkState.CLOSED
        self.ui.exit(ending)

    async def _run_session(self) -> None:
        ending = await self.session.run()
        if self.state.link is LinkState.CLOSED:
            # Kicked or shut down: an orderly end. Close the UI; the reason is printed after.
            self.ui.exit(Ending(ending.reason, 0))
        # Lost (the nick went to someone else): the UI stays up, showing it, until the user
        # leaves.

    async def _inputs(self) -> None:
        while True:
            line = await self._lines.get()
            leave = await self.session.handle_line(line)
            if leave is None:
                continue
            ending = self._ending()
            unsent = self.session.undelivered
            if unsent and ending.exit_code == 0:
                noun = "message was" if unsent == 1 else "messages were"
                ending = Ending(f"{unsent} {noun} not sent", 0)
            await self._leave(leave.reason, ending)
            return


async def run_interactive(
    servers: Sequence[str],
    nick: str | None,
    timeout_s: float = REGISTRATION_TIMEOUT_S,
    keys: CurveKeys | None = None,
    state_dir: Path | None = None,
    history_lines: int = 0,
    identity: Identity | None = None,
) -> Ending:
    """Ask for a nick if needed, register, and run the full-screen chat until it ends
    (logging at the root logger's level shows in its message pane meanwhile). With a
    `state_dir`, the input history and the last broadcast seen are kept there."""
    prompt: PromptSession[str] = PromptSession()

    async def ask_nick() -> str:
        return await prompt.prompt_async("nick: ")

    def say(text: str) -> None:
        # Refusals quote the broker: escaped, like everything else shown.
        print(sanitize(text))

    # SIGHUP (the window closed) ends the client with a QUIT, however early it comes.
    loop = asyncio.get_running_loop()
    hung_up = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, hung_up.set)
    seen = SeenFile(state_dir / SEEN_FILE) if state_dir is not None else None
    try:
        try:
            session = await connect_and_register(
                servers, nick, ask_nick, say, timeout_s, keys, history_lines, seen, identity
            )
        except (RegistrationError, ValueError) as exc:
            return Ending(str(exc), 1)
        except (EOFError, KeyboardInterrupt):
            return Ending("", 1)
        input_history = None
        if state_dir is not None:
            try:
                input_history = InputHistory(state_dir / INPUT_HISTORY_FILE)
            except OSError as exc:
                say(f"the input history is not kept: {exc}")
        rooms = RoomsFile(state_dir / ROOMS_FILE) if state_dir is not None else None
        client = InteractiveClient(session, input_history, seen, rooms)
        try:
            return await client.run(hung_up)
        finally:
            session.close(QUIT_LINGER_MS if client.quit_sent else 0)
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
