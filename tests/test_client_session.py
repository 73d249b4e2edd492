"""A client session over real sockets: registration, heartbeat, liveness, reconnection,
re-registration after 401, paced retries after 429, and keeping its nick and messages across
dropped links and broker restarts."""

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import pytest
import zmq
import zmq.asyncio

from broker import BrokerConfig, BrokerServer
from client.app import connect_and_register
from client.outbox import Delivery
from client.render import plain_line
from client.session import RegistrationError, Session, backoff_s
from client.state import Entry, EntryKind, LinkState
from messages import SIGNATURE, STREAM_READY, decode_command, encode
from messages import commands as cmd
from messages import events as ev
from tests.client_helpers import (
    WAIT_S,
    Relay,
    bot_client,
    eventually,
    expect,
    port_of,
    running_client,
    status_text,
)
from tests.conftest import ADMIN_TOKEN, RANDOM_LOOPBACK, RunningBroker, start_broker
from tests.peers import Peer
from tests.processes import free_port

Connect = Callable[..., Peer]
C = TypeVar("C", bound=cmd.ClientCommand)
#: Heartbeat the scripted broker announces: liveness is 3 x 50 ms.
FAST_HEARTBEAT_MS = 50
#: Heartbeat of real brokers in tests where every user is a client session (which pings by
#: itself): a lost link shows after 3 x 200 ms.
SHORT_HEARTBEAT_MS = 200


class ScriptedBroker:
    """A ROUTER and an XPUB that play the broker's part as a test scripts it."""

    def __init__(self) -> None:
        self.context = zmq.asyncio.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind("tcp://127.0.0.1:*")
        self.endpoint: str = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.stream = self.context.socket(zmq.XPUB)
        self.stream.setsockopt(zmq.LINGER, 0)
        self.stream.setsockopt(zmq.XPUB_WELCOME_MSG, STREAM_READY)
        self.stream.bind("tcp://127.0.0.1:*")
        self.stream_port = port_of(self.stream.getsockopt_string(zmq.LAST_ENDPOINT))
        # Reading the subscriptions is what has libzmq take new subscribers in (and send
        # them STREAM_READY).
        self._subscriptions = asyncio.get_running_loop().create_task(self._read_subscriptions())

    async def _read_subscriptions(self) -> None:
        while True:
            await self.stream.recv_multipart()

    async def receive(self) -> tuple[bytes, cmd.ClientCommand]:
        """The next command and the identity it came from."""
        identity, *frames = await asyncio.wait_for(self.socket.recv_multipart(), WAIT_S)
        return identity, decode_command(frames)

    async def receive_skipping_pings(self, pong: bool = False) -> tuple[bytes, cmd.ClientCommand]:
        """The next command but PING, and but the USERS and FETCH a client sends by itself;
        with `pong`, PINGs are answered meanwhile (and USERS: nobody but who asked)."""
        while True:
            identity, command = await self.receive()
            if not isinstance(command, cmd.Ping | cmd.ListUsers | cmd.Fetch):
                return identity, command
            if pong and isinstance(command, cmd.Ping):
                await self.send(identity, ev.Pong())

    async def receive_command(self, kind: type[C]) -> C:
        """The next command of type `kind`, answering PINGs on the way."""
        while True:
            identity, command = await self.receive()
            if isinstance(command, kind):
                return command
            if isinstance(command, cmd.Ping):
                await self.send(identity, ev.Pong())

    async def send(self, identity: bytes, event: ev.BrokerEvent) -> None:
        await self.socket.send_multipart([identity, *encode(event)])

    async def welcome(self, nick: str, seq: int = 0, epoch: str = "e1") -> tuple[bytes, str]:
        """Wait for HELLO from `nick` and answer WELCOME; return the identity and token."""
        identity, hello = await self.receive_skipping_pings()
        assert isinstance(hello, cmd.Hello) and hello.nick == nick, hello
        welcome = ev.Welcome(nick, FAST_HEARTBEAT_MS, epoch, seq, ("HELLO",), self.stream_port)
        await self.send(identity, welcome)
        return identity, hello.session

    async def publish(self, event: ev.BrokerEvent) -> None:
        """Publish `event` on the broadcast stream."""
        await self.stream.send_multipart(encode(event))

    def close(self) -> None:
        self._subscriptions.cancel()
        self.context.destroy(linger=0)


async def scripted_session(broker: ScriptedBroker, shown: list[Entry]) -> tuple[Session, bytes]:
    """alice registered on `broker`; returns her session (not running yet) and identity."""
    session = Session(broker.endpoint, "alice", shown.extend)
    registering = asyncio.create_task(session.register())
    identity, _ = await broker.welcome("alice")
    await registering
    return session, identity


async def stop(task: asyncio.Task[object]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@dataclass
class Scripted:
    """alice's session running against a scripted broker, and what it showed."""

    broker: ScriptedBroker
    session: Session
    identity: bytes
    shown: list[Entry]


@contextlib.asynccontextmanager
async def scripted_run() -> AsyncIterator[Scripted]:
    """alice registered on a scripted broker, her session running until the block ends."""
    broker = ScriptedBroker()
    shown: list[Entry] = []
    try:
        session, identity = await scripted_session(broker, shown)
        running = asyncio.create_task(session.run())
        try:
            yield Scripted(broker, session, identity, shown)
        finally:
            await stop(running)
            session.close()
    finally:
        broker.close()


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_s(n) for n in range(1, 8)] == [0, 1, 2, 4, 8, 8, 8]


def test_silent_broker_means_reconnecting_on_a_fresh_socket_with_the_same_token() -> None:
    async def scenario() -> None:
        broker = ScriptedBroker()
        shown: list[Entry] = []
        session, first = await scripted_session(broker, shown)
        running = asyncio.create_task(session.run())
        try:
            # The client asks who is here; once the stream is ready, it fetches what was
            # published before (nothing here), with a PING to mark the end of the answer.
            assert (await broker.receive())[1] == cmd.ListUsers()
            assert (await broker.receive())[1] == cmd.Fetch(1)
            assert (await broker.receive())[1] == cmd.Ping()
            # Until the connection answers that FETCH, the stream may be another broker
            # run's: nothing from it is applied.
            assert not session.stream_confirmed
            await broker.socket.send_multipart([first, SIGNATURE, b"PONG"])
            await eventually(lambda: session.stream_confirmed, "the stream to be confirmed")
            # A junk message is shown and skipped; broadcasts come on the stream.
            await broker.socket.send_multipart([first, SIGNATURE, b"BOGUS"])
            await broker.publish(ev.Message(1, "b-1", "bob", "still here", 1))
            # Then the broker says nothing more on the connection (the stream is no sign of
            # its life): after 300 ms the client tries again, on a new connection (a new
            # identity) with the same session token.
            second, token = await broker.welcome("alice", seq=1)
            assert second != first
            assert token == session.token
            await eventually(lambda: session.state.link is LinkState.CONNECTED, "connected")
            assert session.connections == 2
        finally:
            await stop(running)
            session.close()
            broker.close()
        lines = [plain_line(entry)[6:] for entry in shown]
        assert "-!- error: ignored a bad message from the server: 405 unknown event 'BOGUS'" in (
            lines
        )
        assert "<bob> still here" in lines
        lost = [line for line in lines if "reconnecting" in line]
        assert len(lost) == 1
        assert lost[0].startswith(f"-!- connection lost (no answer from {broker.endpoint} for 0.")
        assert lines[-1] == f"-!- reconnected to {broker.endpoint} as alice"

    asyncio.run(scenario())


def test_reconnecting_and_lost_show_in_the_full_screen_status() -> None:
    async def scenario() -> None:
        broker = ScriptedBroker()
        try:
            welcoming = asyncio.create_task(broker.welcome("alice"))
            async with running_client(broker.endpoint, "alice", users=False) as alice:
                await welcoming
                # Silence: reconnecting. The first attempt's HELLO goes unanswered ...
                _, hello = await broker.receive_skipping_pings()
                assert isinstance(hello, cmd.Hello)
                # ... the second one, from a fresh socket, is answered below.
                identity, hello = await broker.receive_skipping_pings()
                assert isinstance(hello, cmd.Hello)
                assert "reconnecting (attempt 2)" in status_text(alice.client)
                # Typed meanwhile: kept, shown as pending.
                alice.type("anyone?\r")
                await alice.wait_for_pane("<alice> anyone? …")
                # The nick went to someone else while we were away: lost for good.
                await broker.send(identity, ev.Error(409, "", "nick alice is taken"))
                await alice.wait_for_pane("nick alice is no longer yours (409)")
                assert " lost " in status_text(alice.client)
                # The UI stays up until the user leaves; the ending is not an orderly one.
                assert not alice.task.done()
                alice.type("/quit\r")
                ending = await asyncio.wait_for(alice.task, WAIT_S)
                assert ending.exit_code == 2
                assert not alice.client.quit_sent
        finally:
            broker.close()

    asyncio.run(scenario())


def test_401_registers_again_on_the_same_socket_and_resends() -> None:
    async def scenario() -> None:
        async with scripted_run() as run:
            broker, session, identity = run.broker, run.session, run.identity
            message = session.post("hello")
            assert message is not None
            # The broker restarted behind the same connection and knows nobody.
            sender, say = await broker.receive_skipping_pings(pong=True)
            assert say == cmd.Say(message.msg_id, "hello")
            await broker.send(sender, ev.Error(401, message.msg_id, "register first"))
            hello_from, hello = await broker.receive_skipping_pings(pong=True)
            assert hello_from == identity  # the same socket
            assert hello == cmd.Hello("alice", session.token, stream=True)
            assert message.state is Delivery.PENDING
            welcome = ev.Welcome("alice", 50, "e2", 0, (), broker.stream_port)
            await broker.send(identity, welcome)
            # Sent again once registered, and acknowledged.
            assert await broker.receive_skipping_pings(pong=True) == (identity, say)
            await broker.send(identity, ev.Ack((message.msg_id,)))
            await eventually(lambda: message.state is Delivery.SENT, "sent")
            assert session.connections == 1
        assert not any(entry.kind is EntryKind.ERROR for entry in run.shown)

    asyncio.run(scenario())


def test_429_keeps_the_message_pending_and_retries_later() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with scripted_run() as run:
            broker, session, identity = run.broker, run.session, run.identity
            message = session.post("too fast")
            assert message is not None
            _, say = await broker.receive_skipping_pings(pong=True)
            refused_at = loop.time()
            await broker.send(identity, ev.Error(429, message.msg_id, "slow down"))
            assert await broker.receive_skipping_pings(pong=True) == (identity, say)
            assert loop.time() - refused_at >= session.outbox.retry_s * 0.9
            await broker.send(identity, ev.Ack((message.msg_id,)))
            await eventually(lambda: message.state is Delivery.SENT, "sent")
        assert not any(entry.kind is EntryKind.ERROR for entry in run.shown)

    asyncio.run(scenario())


def test_heartbeat_keeps_the_session_registered() -> None:
    running = start_broker(heartbeat_ms=100)  # the broker expires silence after 300 ms

    async def scenario() -> None:
        async with bot_client(running.endpoint, "alice") as alice:
            session = alice.session
            await eventually(lambda: session.state.heartbeat_ms == 100, "the heartbeat")
            # Ten heartbeats: over three times the broker's expiry.
            await eventually(lambda: session._pings_sent >= 10, "ten heartbeats")
            await session.handle_line("/users")
            await eventually(lambda: alice.lines()[-1] == "-!- 1 user: alice", "the user list")
            assert session.connections == 1
            assert not any(entry.kind is EntryKind.ERROR for entry in alice.entries)

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
        session = await connect_and_register([broker.endpoint], "no good", ask, told.append)
        session.close()
        assert session.state.nick == "alice"

    asyncio.run(scenario())
    assert told == [
        "'no good' cannot be a nick: nick may not contain ' ': use letters, digits, '_' and '-'",
        "nick 'BOB' refused (409): nick bob is taken",
    ]


def test_no_answer_names_the_server() -> None:
    async def scenario() -> None:
        broker = ScriptedBroker()  # never answers
        session = Session(broker.endpoint, "alice")
        try:
            with pytest.raises(RegistrationError) as raised:
                await session.register(0.2)
        finally:
            session.close()
            broker.close()
        assert raised.value.exit_code == 1
        assert (
            raised.value.reason == f"no answer from {broker.endpoint} within 0.2 s: is it running?"
        )

    asyncio.run(scenario())


def test_drain_waits_for_every_ack_and_the_barrier(broker: RunningBroker, connect: Connect) -> None:
    bob = connect("bob")

    async def scenario() -> None:
        async with bot_client(broker.endpoint, "alice") as alice:
            for n in range(10):
                await alice.session.handle_line(f"line {n}")
            assert await asyncio.wait_for(alice.session.drain(WAIT_S), WAIT_S)
            assert alice.session.undelivered == 0

    asyncio.run(scenario())
    # Everything was handed on before drain returned; only then did alice close.
    for n in range(10):
        bob.expect_after_presence(ev.Message, sender="alice", text=f"line {n}")


def test_a_cut_link_resumes_the_session_quietly_and_fetches_what_was_missed(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")
    relay = Relay(port_of(broker.endpoint))

    async def scenario() -> None:
        async with running_client(relay.endpoint, "alice") as alice:
            await expect(bob, ev.Joined, nick="alice")
            bob.say("before")
            await expect(bob, ev.Message, text="before")  # his own echo
            await alice.wait_for_pane("<bob> before")
            relay.cut()
            # The broker cannot reach alice's old connection: this one is lost for her ...
            bob.say("while you were away")
            await expect(bob, ev.Message, text="while you were away")
            # ... until her next PING draws a 401, she says HELLO again, resumes her session
            # and fetches what she missed.
            await alice.wait_for_pane("<bob> while you were away")
            await eventually(lambda: alice.client.state.link is LinkState.CONNECTED, "connected")
            alice.type("back\r")
            await alice.wait_for_pane("<alice> back ✓")
            await expect(bob, ev.Message, sender="alice", text="back")
            lines = alice.pane_lines()
            assert sum(line.endswith("<bob> while you were away") for line in lines) == 1
            assert sum(line.endswith("<alice> back ✓") for line in lines) == 1
            assert alice.client.session.connections == 1  # the same socket throughout

    try:
        asyncio.run(scenario())
    finally:
        relay.stop()
    # Bob saw nothing of it: no LEAVE, no JOIN.
    bob.sync()
    bob.send(cmd.Ping())
    while not isinstance(event := bob.next_event(), ev.Pong):
        assert not isinstance(event, ev.Joined | ev.Left), event


def test_private_typed_while_unreachable_goes_pending_sent_delivered(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")
    relay = Relay(port_of(broker.endpoint))

    async def scenario() -> None:
        async with running_client(relay.endpoint, "alice") as alice:
            await expect(bob, ev.Joined, nick="alice")
            relay.close()
            alice.type("/msg bob psst\r")
            await alice.wait_for_pane("[alice → bob] psst …")
            relay.open()
            private = await expect(bob, ev.PrivateMessage, sender="alice", text="psst")
            await alice.wait_for_pane("[alice → bob] psst ✓")
            bob.send(cmd.Received(private.msg_id, private.sender))
            await alice.wait_for_pane("[alice → bob] psst ✓✓")
            lines = alice.pane_lines()
            assert sum("psst" in line for line in lines) == 1  # one line, updated in place

    try:
        asyncio.run(scenario())
    finally:
        relay.stop()
    # Exactly once.
    bob.sync()
    bob.send(cmd.Ping())
    while not isinstance(event := bob.next_event(), ev.Pong):
        assert not isinstance(event, ev.PrivateMessage), event


def restart_broker(old: RunningBroker) -> RunningBroker:
    """Stop `old` and start a fresh broker (a new epoch) on the same endpoint, its stream on
    another port (clients follow WELCOME there)."""
    old.stop()
    config = BrokerConfig(
        bind=old.endpoint,
        stream=RANDOM_LOOPBACK,
        admin_token=ADMIN_TOKEN,
        heartbeat_ms=old.server.config.heartbeat_ms,
    )
    server = BrokerServer(config)
    thread = threading.Thread(target=server.run, name="broker", daemon=True)
    thread.start()
    return RunningBroker(server, thread)


@contextlib.contextmanager
def restartable_broker() -> Iterator[tuple[Relay, list[RunningBroker]]]:
    """A short-heartbeat broker behind a relay (clients connect to the relay), and the list
    of its runs: append `restart_broker(runs[0])` to restart it. All are stopped at the end."""
    first = start_broker(heartbeat_ms=SHORT_HEARTBEAT_MS)
    relay = Relay(port_of(first.endpoint))
    runs = [first]
    try:
        yield relay, runs
    finally:
        relay.stop()
        for running in runs:
            if running.thread.is_alive():
                running.stop()


@pytest.mark.timeout(60)
def test_after_a_broker_restart_clients_come_back_and_nothing_is_lost_or_doubled() -> None:
    async def scenario(relay: Relay, brokers: list[RunningBroker]) -> None:
        first = brokers[0]
        async with (
            bot_client(relay.endpoint, "alice") as alice,
            bot_client(relay.endpoint, "bob") as bob,
        ):
            await eventually(lambda: "bob" in alice.session.state.users, "bob for alice")
            await alice.session.handle_line("before")
            await eventually(lambda: "<alice> before" in bob.lines(), "bob sees 'before'")
            epoch = alice.session.stream.epoch
            # The broker goes away without a word (its SHUTDOWN cannot reach anyone) ...
            relay.close()
            brokers.append(restart_broker(first))
            await eventually(
                lambda: alice.session.state.link is LinkState.RECONNECTING, "alice reconnecting"
            )
            # ... and what alice types meanwhile waits in her outbox.
            await alice.session.handle_line("during")
            await alice.session.handle_line("/msg bob private during")
            assert alice.session.undelivered == 2
            relay.open()
            await eventually(
                lambda: (
                    "<alice> during" in bob.lines()
                    and "[alice -> bob] private during" in bob.lines()
                ),
                "bob sees what alice typed while the broker was down",
                timeout=20,
            )
            assert alice.session.stream.epoch != epoch
            stream_port = port_of(brokers[-1].server.stream_endpoint)
            await eventually(
                lambda: (
                    alice.session.connection is not None
                    and alice.session.connection.stream_port == stream_port
                ),
                "alice on the new stream",
            )
            await eventually(lambda: alice.session.state.users == ["alice", "bob"], "user list")
            await eventually(lambda: alice.session.undelivered == 0, "alice's outbox acked")
            await alice.session.drain(WAIT_S)
            await bob.session.drain(WAIT_S)
            lines = bob.lines()
            for line in ("<alice> before", "<alice> during", "[alice -> bob] private during"):
                assert lines.count(line) == 1, (line, lines)
            assert any("the server was restarted" in line for line in alice.lines())

    with restartable_broker() as (relay, brokers):
        asyncio.run(scenario(relay, brokers))


@pytest.mark.timeout(60)
def test_an_operator_is_told_its_rights_are_gone_after_a_broker_restart() -> None:
    async def scenario(relay: Relay, brokers: list[RunningBroker]) -> None:
        first = brokers[0]
        async with bot_client(relay.endpoint, "alice") as alice:
            state = alice.session.state
            await eventually(lambda: alice.session.registered, "alice registered")
            await alice.session.handle_line(f"/admin {ADMIN_TOKEN}")
            await eventually(lambda: state.operator, "alice an operator")
            relay.close()
            brokers.append(restart_broker(first))
            await eventually(lambda: state.link is LinkState.RECONNECTING, "alice reconnecting")
            relay.open()
            await eventually(lambda: state.link is LinkState.CONNECTED, "alice back", timeout=20)
            assert not state.operator
            assert (
                "-!- error: operator rights were lost when the server restarted: /admin TOKEN again"
            ) in alice.lines()

    with restartable_broker() as (relay, brokers):
        asyncio.run(scenario(relay, brokers))


def test_one_ack_settles_every_message_it_names() -> None:
    async def scenario() -> None:
        async with scripted_run() as run:
            messages = [run.session.post(text) for text in ("one", "two", "three")]
            ids = []
            for _ in messages:
                _, say = await run.broker.receive_skipping_pings(pong=True)
                assert isinstance(say, cmd.Say)
                ids.append(say.msg_id)
            # The broker acknowledges a burst with one ACK.
            await run.broker.send(run.identity, ev.Ack(tuple(ids)))
            await eventually(
                lambda: all(m is not None and m.state is Delivery.SENT for m in messages), "sent"
            )

    asyncio.run(scenario())


def test_an_unreachable_stream_is_done_without() -> None:
    async def scenario() -> None:
        broker = ScriptedBroker()
        shown: list[Entry] = []
        session = Session(broker.endpoint, "alice", shown.extend)
        registering = asyncio.create_task(session.register())
        try:
            identity, hello = await broker.receive()
            assert hello == cmd.Hello("alice", session.token, stream=True)
            # WELCOME names a stream port nothing listens on (a tunnel that forwards the
            # broker's port only, say).
            nowhere = free_port()
            await broker.send(
                identity, ev.Welcome("alice", FAST_HEARTBEAT_MS, "e1", 0, (), nowhere)
            )
            await registering
            running = asyncio.create_task(session.run())
            # The stream never says it is ready: after a liveness bound the client asks the
            # broker, on a fresh connection (where a refusal would be retried), to send
            # broadcasts over the connection instead; the session resumes.
            second, hello = await broker.receive_skipping_pings(pong=True)
            while hello != cmd.Hello("alice", session.token, stream=False):
                second, hello = await broker.receive_skipping_pings(pong=True)
            assert second != identity
            await broker.send(second, ev.Welcome("alice", FAST_HEARTBEAT_MS, "e1", 1, (), nowhere))
            # What was broadcast meanwhile is fetched, the rest comes as it is said.
            fetch = await broker.receive_command(cmd.Fetch)
            assert fetch == cmd.Fetch(1)
            await broker.send(second, ev.Message(1, "b-1", "bob", "meanwhile", 1))
            await broker.send(second, ev.Message(2, "b-2", "bob", "now", 2))
            await eventually(lambda: session.stream.last_seq == 2, "both messages")
            assert not session.streaming
            await stop(running)
        finally:
            session.close()
            broker.close()
        lines = [plain_line(entry)[6:] for entry in shown]
        assert any(line.startswith("-!- broadcast stream unreachable (") for line in lines), lines
        assert lines[-2:] == ["<bob> meanwhile", "<bob> now"]

    asyncio.run(scenario())


def test_a_stream_gone_silent_is_subscribed_to_again() -> None:
    async def scenario() -> None:
        broker = ScriptedBroker()
        session, _ = await scripted_session(broker, [])
        running = asyncio.create_task(session.run())
        try:
            # The stream is ready once: the client fetches what came before it.
            assert await broker.receive_command(cmd.Fetch) == cmd.Fetch(1)
            await eventually(lambda: session.stream_ready, "the stream to be ready")
            # Then it says nothing, not even a TICK, for a liveness bound: the client
            # subscribes afresh, and the new subscription's ready message brings another
            # FETCH of what may have been missed.
            assert await broker.receive_command(cmd.Fetch) == cmd.Fetch(1)
            assert session.streaming
        finally:
            await stop(running)
            session.close()
            broker.close()

    asyncio.run(scenario())
