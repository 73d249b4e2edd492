"""Helpers for the client tests: the real full-screen client on a pipe, client sessions in
the test's event loop, a TCP relay whose connections a test can cut, and waiting."""

import asyncio
import contextlib
import math
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import zmq
from prompt_toolkit.application import create_app_session
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.layout import Window
from prompt_toolkit.output import DummyOutput, Output

from client.app import InteractiveClient
from client.connection import CurveKeys, StreamBuffers
from client.history import InputHistory, RoomsFile, SeenFile
from client.identity import Identity
from client.render import plain_line
from client.session import Session
from client.state import Ending, Entry
from messages import commands as cmd
from messages import decode_event
from messages import events as ev
from tests.peers import EXPECT_TIMEOUT_S, Peer

#: Upper bound on any single wait in the client tests, in seconds: generous, since a wait
#: ends as soon as what it waits for happens, and a busy machine is slow.
WAIT_S = 15.0
#: Bytes a relay reads at once.
RELAY_CHUNK = 65536
#: How often an idle test peer that must stay registered PINGs, in seconds: well within
#: the shortest liveness bound the tests give a broker.
KEEPALIVE_S = 0.1

E = TypeVar("E", bound=ev.BrokerEvent)


async def eventually(
    condition: Callable[[], bool],
    what: str,
    timeout: float = WAIT_S,
    meanwhile: Callable[[], None] | None = None,
) -> None:
    """Wait until `condition()` holds, checking after each turn of the event loop's work;
    `meanwhile()` is called before each check (a `KeepAlive`, say)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if meanwhile is not None:
            meanwhile()
        if condition():
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        # The client's tasks run between checks; 10 ms bounds the cost of a check.
        await asyncio.sleep(0.01)


class KeepAlive:
    """Keeps a test peer registered while the test waits on something else: called, it
    PINGs if it has not for KEEPALIVE_S (a broker removes a peer silent for a liveness
    bound, however busy the machine), and reads and drops what came on the peer's
    connection meanwhile, so that nothing piles up there. For a peer whose connection
    carries nothing the test needs (one that reads broadcasts from the stream, or not at
    all). `settle` before the peer is used again."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self._pinged_at = -math.inf
        self._unanswered = 0

    def __call__(self) -> None:
        with contextlib.suppress(zmq.Again):
            while True:
                self._drop(self.peer.socket.recv_multipart(zmq.NOBLOCK))
        now = time.monotonic()
        if now - self._pinged_at >= KEEPALIVE_S:
            self.peer.send(cmd.Ping())
            self._pinged_at = now
            self._unanswered += 1

    def settle(self) -> None:
        """Wait until every PING sent is answered, dropping what comes before: a PONG the
        peer reads from now on answers a PING of its own."""
        while self._unanswered:
            assert self.peer.socket.poll(int(EXPECT_TIMEOUT_S * 1000)), "PING unanswered"
            self._drop(self.peer.socket.recv_multipart())

    def _drop(self, frames: list[bytes]) -> None:
        if isinstance(decode_event(frames), ev.Pong):
            self._unanswered -= 1


async def expect(peer: Peer, kind: type[E], **fields: Any) -> E:
    """`peer.expect_after_presence` off the event loop, so the client under test keeps running."""
    return await asyncio.to_thread(lambda: peer.expect_after_presence(kind, **fields))


def streaming_peer(context: zmq.Context[zmq.Socket[bytes]], endpoint: str, nick: str) -> Peer:
    """A peer registered as `nick` that reads broadcasts from the stream, or rather does
    not read them at all: its connection carries only what is addressed to it (its ACKs,
    say), however much the others broadcast."""
    peer = Peer(context, endpoint)
    peer.send(cmd.Hello(nick, peer.token, stream=True))
    peer.welcome = peer.expect(ev.Welcome)
    peer.nick = peer.welcome.nick
    return peer


def status_text(client: InteractiveClient) -> str:
    """The full-screen status line as plain text."""
    return "".join(fragment[1] for fragment in client.ui.status_fragments())


class SizedOutput(DummyOutput):
    """A dummy output (nothing is written anywhere) of a terminal of `size`."""

    def __init__(self, size: Size) -> None:
        super().__init__()
        self.size = size

    def get_size(self) -> Size:
        return self.size


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

    def pane_lines(self) -> list[str]:
        return self.pane_text().split("\n")

    async def wait_for_pane(self, needle: str, timeout: float = WAIT_S) -> None:
        await eventually(
            lambda: needle in self.pane_text(), f"{needle!r} in the message pane", timeout
        )

    def screen(self) -> list[str]:
        """The rows of the terminal as last drawn (what a person would see), without
        trailing blanks; [] before the first drawing."""
        screen = self.client.ui.app.renderer.last_rendered_screen
        if screen is None:
            return []
        size = self.client.ui.app.output.get_size()
        return [
            "".join(screen.data_buffer[row][column].char for column in range(size.columns)).rstrip()
            for row in range(size.rows)
        ]

    async def wait_for_screen(
        self, condition: Callable[[list[str]], bool], what: str, timeout: float = WAIT_S
    ) -> list[str]:
        """Wait until a drawing satisfies `condition`; return that drawing's rows."""
        await eventually(lambda: condition(self.screen()), what, timeout)
        return self.screen()


def window_position(client: "RunningClient", window: Window) -> tuple[int, int]:
    """The first row and the height of `window` as last drawn."""
    screen = client.client.ui.app.renderer.last_rendered_screen
    assert screen is not None, "nothing drawn yet"
    where = screen.visible_windows_to_write_positions[window]
    return where.ypos, where.height


def users_position(client: "RunningClient") -> tuple[int, int]:
    """The first row and the height of the user list (below the buffers) as last drawn."""
    return window_position(client, client.client.ui.users_window)


@contextlib.asynccontextmanager
async def running_client(
    endpoint: str,
    nick: str,
    keys: CurveKeys | None = None,
    users: bool = True,
    size: Size | None = None,
    history_lines: int = 0,
    last_seen: Callable[[str], int | None] | None = None,
    input_history: InputHistory | None = None,
    seen: SeenFile | None = None,
    identity: Identity | None = None,
    output: Output | None = None,
    rooms: RoomsFile | None = None,
) -> AsyncIterator[RunningClient]:
    """Register `nick` and run the real Application on a pipe input and a dummy output (of
    a terminal of `size` if given, or `output`); with `users`, wait until the user list has come too
    (nothing else is then on its way). The session shows `history_lines` of history on
    joining (unread after `last_seen`, or what `seen` says); `input_history` keeps the
    typed lines, `seen` the last broadcast shown."""
    if output is None:
        output = DummyOutput() if size is None else SizedOutput(size)
    with create_pipe_input() as keyboard, create_app_session(input=keyboard, output=output):
        if seen is not None:
            last_seen = lambda epoch: seen.last_seen(endpoint, epoch)  # noqa: E731
        session = Session(
            endpoint,
            nick,
            keys=keys,
            history_lines=history_lines,
            last_seen=last_seen,
            identity=identity,
        )
        task: asyncio.Task[Ending] | None = None
        try:
            await session.register(WAIT_S)
            client = InteractiveClient(session, input_history, seen, rooms)
            task = asyncio.create_task(client.run())
            await eventually(lambda: client.ui.app.is_running, "the application to start")
            if users:
                await eventually(lambda: session.state.users_known, "the user list")
            yield RunningClient(client, keyboard, task)
        finally:
            if task is not None:
                if not task.done():
                    client.ui.exit(Ending("test over", 0))
                # Ends the task (cancelling it after WAIT_S) and raises what it raised.
                await asyncio.wait_for(task, WAIT_S)
            session.close()


@dataclass
class BotClient:
    """A client session run in the test's event loop, recording what it would print."""

    session: Session
    task: asyncio.Task[Ending]
    entries: list[Entry] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Everything shown so far, in the line-mode format without the HH:MM stamp."""
        return [plain_line(entry)[6:] for entry in self.entries]


@contextlib.asynccontextmanager
async def bot_client(
    endpoint: str | Sequence[str],
    nick: str,
    stream_buffers: StreamBuffers | None = None,
    show: Callable[[list[Entry]], None] | None = None,
    history_lines: int = 0,
    identity: Identity | None = None,
) -> AsyncIterator[BotClient]:
    """Register `nick` and run its session (no UI) until the block ends. What the session
    shows (`history_lines` of history on joining first) is recorded, then passed on to
    `show` if given."""
    entries: list[Entry] = []

    def record(shown: list[Entry]) -> None:
        entries.extend(shown)
        if show is not None:
            show(shown)

    session = Session(
        endpoint,
        nick,
        record,
        stream_buffers=stream_buffers,
        history_lines=history_lines,
        identity=identity,
    )
    task: asyncio.Task[Ending] | None = None
    try:
        await session.register(WAIT_S)
        task = asyncio.create_task(session.run())
        yield BotClient(session, task, entries)
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                # Raises what the session raised, if anything.
                await asyncio.wait_for(task, WAIT_S)
        session.close()


class Relay:
    """A TCP relay on a loopback port to the broker at `target` (host, port), running in a
    thread: a test cuts every connection through it (`cut`), or refuses new ones until
    `open` (`close`), without touching the broker."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.accepting = True
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)
        self._thread.start()
        assert self._started.wait(WAIT_S), "relay did not start"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(self._handle, sock=self._listener)
            self._started.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()
        # Stopped: its connections' tasks end here, not when the garbage collector finds them
        # pending, in whatever test runs then (asyncio logs that as an error, which a client
        # running at that moment shows in its pane).
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(RELAY_CHUNK):
                writer.write(data)
                await writer.drain()
        finally:
            self._writers.discard(writer)
            writer.close()

    def _call(self, action: Callable[[], None]) -> None:
        done = threading.Event()

        def run() -> None:
            action()
            done.set()

        self._loop.call_soon_threadsafe(run)
        assert done.wait(WAIT_S), "relay did not answer"

    def cut(self) -> None:
        """Close every connection through the relay (both sides); new ones still work."""

        def cut_all() -> None:
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

        self._call(cut_all)

    def close(self) -> None:
        """Cut every connection and refuse new ones: the broker is unreachable."""
        self.accepting = False
        self.cut()

    def open(self) -> None:
        """Accept connections again."""
        self.accepting = True

    def stop(self) -> None:
        """Stop the relay thread."""

        def shut() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            self._loop.stop()

        self._loop.call_soon_threadsafe(shut)
        self._thread.join(WAIT_S)
        self._loop.close()


def port_of(endpoint: str) -> int:
    """The TCP port of a tcp://host:port endpoint."""
    return int(endpoint.rsplit(":", 1)[1])
