"""Helpers for the client tests: the real full-screen client on a pipe, and waiting."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput

from client.app import InteractiveClient
from client.connection import Connection
from client.session import register
from client.state import Ending
from messages import events as ev
from tests.peers import Peer

#: Upper bound on any single wait in the client tests, in seconds.
WAIT_S = 5.0

E = TypeVar("E", bound=ev.BrokerEvent)


async def eventually(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Wait until `condition()` holds, checking after each turn of the event loop's work."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        # The client's tasks run between checks; 10 ms bounds the cost of a check.
        await asyncio.sleep(0.01)


async def expect(peer: Peer, kind: type[E], **fields: Any) -> E:
    """`peer.expect_after_presence` off the event loop, so the client under test keeps running."""
    return await asyncio.to_thread(lambda: peer.expect_after_presence(kind, **fields))


@dataclass
class RunningClient:
    """The full-screen client under test, its keyboard and its run task."""

    client: InteractiveClient
    keyboard: PipeInput
    task: asyncio.Task[Ending]

    def type(self, text: str) -> None:
        """Type `text` (use "\\r" for Enter and "\\t" for Tab)."""
        self.keyboard.send_text(text)

    @property
    def input_text(self) -> str:
        return self.client.ui.input.text

    def pane_text(self) -> str:
        """The message pane as plain text."""
        return "".join(fragment[1] for fragment in self.client.ui.pane.text())

    async def wait_for_pane(self, needle: str) -> None:
        await eventually(lambda: needle in self.pane_text(), f"{needle!r} in the message pane")


@contextlib.asynccontextmanager
async def running_client(endpoint: str, nick: str) -> AsyncIterator[RunningClient]:
    """Register `nick` and run the real Application on a pipe input and a dummy output."""
    with create_pipe_input() as keyboard, create_app_session(input=keyboard, output=DummyOutput()):
        connection = Connection(endpoint)
        task: asyncio.Task[Ending] | None = None
        try:
            welcome = await register(connection, nick)
            client = InteractiveClient(connection, welcome, endpoint)
            task = asyncio.create_task(client.run())
            await eventually(lambda: client.ui.app.is_running, "the application to start")
            yield RunningClient(client, keyboard, task)
        finally:
            if task is not None:
                if not task.done():
                    client.ui.exit(Ending("test over", 0))
                # Ends the task (cancelling it after WAIT_S) and raises what it raised.
                await asyncio.wait_for(task, WAIT_S)
            connection.close()
