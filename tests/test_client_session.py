"""Registration, heartbeat and liveness of a client session over real sockets."""

import asyncio
from collections.abc import Callable

import zmq
import zmq.asyncio

from client.app import connect_and_register
from client.connection import Connection
from client.render import plain_line
from client.session import Session, register
from client.state import ChatState, Entry, EntryKind, LinkState
from messages import SIGNATURE, decode_command, encode
from messages import commands as cmd
from messages import events as ev
from tests.client_helpers import eventually, running_client
from tests.conftest import RunningBroker, start_broker
from tests.peers import Peer

Connect = Callable[..., Peer]
#: Heartbeat the scripted broker announces: liveness is 3 x 50 ms.
FAST_HEARTBEAT_MS = 50


class ScriptedBroker:
    """A ROUTER that plays the broker's part as a test scripts it."""

    def __init__(self) -> None:
        self.context = zmq.asyncio.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind("tcp://127.0.0.1:*")
        self.endpoint: str = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.client = b""

    async def receive(self) -> cmd.ClientCommand:
        identity, *frames = await asyncio.wait_for(self.socket.recv_multipart(), 5)
        self.client = identity
        return decode_command(frames)

    async def send(self, frames: list[bytes]) -> None:
        await self.socket.send_multipart([self.client, *frames])

    async def welcome(self, nick: str) -> None:
        assert await self.receive() == cmd.Hello(nick)
        welcome = ev.Welcome(nick, FAST_HEARTBEAT_MS, ("HELLO",), (nick,))
        await self.send(encode(welcome))

    def close(self) -> None:
        self.context.destroy(linger=0)


def test_silent_broker_is_lost_after_the_liveness_bound() -> None:
    async def scenario() -> None:
        broker = ScriptedBroker()
        connection = Connection(broker.endpoint)
        shown: list[Entry] = []
        try:
            registering = asyncio.create_task(register(connection, "alice"))
            await broker.welcome("alice")
            session = Session(connection, ChatState("alice", "x"), shown.extend, await registering)
            receiving = asyncio.create_task(session.receive_events())
            beating = asyncio.create_task(session.heartbeat())
            # The client pings every heartbeat; a junk message is shown and skipped.
            assert await broker.receive() == cmd.Ping()
            await broker.send([SIGNATURE, b"BOGUS"])
            await broker.send(encode(ev.Message("bob", "still here", 1)))
            assert await broker.receive() == cmd.Ping()
            # Then the broker says nothing more.
            ending = await asyncio.wait_for(receiving, 5)
            await asyncio.wait_for(beating, 5)
        finally:
            connection.close()
            broker.close()
        assert ending.exit_code == 1
        assert ending.reason.startswith("connection lost: no answer from x for 0.")
        assert session.state.link is LinkState.LOST
        lines = [plain_line(entry)[6:] for entry in shown]
        assert (
            "-!- error: ignored a bad message from the server: 405 unknown event 'BOGUS'" in lines
        )
        assert "<bob> still here" in lines
        assert lines[-1] == f"-!- error: {ending.reason}"

    asyncio.run(scenario())


def test_lost_connection_shows_in_the_full_screen_status() -> None:
    async def scenario() -> None:
        broker = ScriptedBroker()
        try:
            welcoming = asyncio.create_task(broker.welcome("alice"))
            async with running_client(broker.endpoint, "alice") as alice:
                await welcoming
                await alice.wait_for_pane("connection lost")
                status = "".join(fragment[1] for fragment in alice.client.ui.status_fragments())
                assert " lost " in status
                # The UI stays up until the user leaves; nothing can be sent meanwhile.
                assert not alice.task.done()
                alice.type("anyone?\r")
                await alice.wait_for_pane("not sent: lost")
                alice.type("/quit\r")
                ending = await asyncio.wait_for(alice.task, 5)
                assert ending.exit_code == 1
                assert not alice.client.quit_sent
        finally:
            broker.close()

    asyncio.run(scenario())


def test_heartbeat_keeps_the_session_registered() -> None:
    running = start_broker(heartbeat_ms=100)  # the broker expires silence after 300 ms

    async def scenario() -> None:
        connection = Connection(running.endpoint)
        shown: list[Entry] = []
        try:
            welcome = await register(connection, "alice")
            assert welcome.heartbeat_ms == 100
            session = Session(connection, ChatState("alice", "x"), shown.extend, welcome)
            receiving = asyncio.create_task(session.receive_events())
            beating = asyncio.create_task(session.heartbeat())
            # Ten heartbeats: over three times the broker's expiry.
            await eventually(lambda: session._pings_sent >= 10, "ten heartbeats")
            await session.handle_line("/users")
            await eventually(lambda: shown[-1].text == "1 user: alice", "the user list")
            assert not receiving.done()
            assert not any(entry.kind is EntryKind.ERROR for entry in shown)
            receiving.cancel()
            beating.cancel()
        finally:
            connection.close()

    try:
        asyncio.run(scenario())
    finally:
        running.stop()


def test_refused_nicks_are_explained_and_asked_again(
    broker: RunningBroker, connect: Connect
) -> None:
    connect("bob")
    answers = iter(["", "BOB", "alice"])
    told: list[str] = []

    async def ask() -> str:
        return next(answers)

    async def scenario() -> None:
        connection, welcome = await connect_and_register(
            broker.endpoint, "no good", ask, told.append
        )
        connection.close()
        assert welcome.nick == "alice"
        assert sorted(welcome.users) == ["alice", "bob"]

    asyncio.run(scenario())
    assert told == [
        "'no good' cannot be a nick: nick may not contain ' ': use letters, digits, '_' and '-'",
        "nick 'BOB' refused (409): nick bob is taken",
    ]


def test_flush_waits_for_everything_sent_before(broker: RunningBroker, connect: Connect) -> None:
    bob = connect("bob")

    async def scenario() -> None:
        connection = Connection(broker.endpoint)
        try:
            welcome = await register(connection, "alice")
            session = Session(connection, ChatState("alice", "x"), lambda _: None, welcome)
            receiving = asyncio.create_task(session.receive_events())
            for n in range(10):
                await session.handle_line(f"line {n}")
            assert await asyncio.wait_for(session.flush(), 5)
            receiving.cancel()
        finally:
            connection.close()

    asyncio.run(scenario())
    # Everything was handed to the broker before flush returned; only then did alice close.
    for n in range(10):
        bob.expect_after_presence(ev.Message, sender="alice", text=f"line {n}")
