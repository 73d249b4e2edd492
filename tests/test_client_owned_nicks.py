"""Owned nicks as a user meets them: /register in one state directory, the nick refused to a
client of another, the owner's client proving by itself when it comes back, /unregister.
Real broker, real client processes and sessions, real identity files in tmp dirs."""

import asyncio
import stat
import subprocess
from pathlib import Path

import zmq

from client.identity import IDENTITY_FILE, Identity, load_identity
from client.state import LinkState
from messages import ErrorCode
from messages import commands as cmd
from messages import events as ev
from tests.client_helpers import (
    WAIT_S,
    Relay,
    bot_client,
    eventually,
    port_of,
    running_client,
)
from tests.conftest import RunningBroker, start_broker
from tests.peers import Peer
from tests.processes import BrokerProcess, free_port
from tests.test_client_linemode import run_client
from tests.test_owned_nicks import Connect, owned, prove

#: A short heartbeat: the client notices the killed broker within a few of them.
HEARTBEAT_MS = 500


def line_mode(endpoint: str, state_dir: Path, stdin: str) -> subprocess.CompletedProcess[str]:
    """`python -m client --nick alice` in line mode, keeping its state in `state_dir`."""
    return run_client(endpoint, "alice", stdin, "--state-dir", str(state_dir))


def test_a_nick_registered_from_one_state_directory_is_refused_to_another(
    broker: RunningBroker, tmp_path: Path
) -> None:
    laptop, elsewhere = tmp_path / "laptop", tmp_path / "elsewhere"
    first = line_mode(broker.endpoint, laptop, "/register\n")
    assert first.returncode == 0, first.stderr
    assert "alice is registered to your identity" in first.stdout
    identity = laptop / IDENTITY_FILE
    assert stat.S_IMODE(identity.stat().st_mode) == 0o600

    other = line_mode(broker.endpoint, elsewhere, "hi\n")
    assert other.returncode == 2
    assert "nick alice is registered to another identity" in other.stderr

    # From her own state directory alice is challenged and proves it, unaware.
    back = line_mode(broker.endpoint, laptop, "hi\n")
    assert back.returncode == 0, back.stderr
    assert "<alice> hi" in back.stdout


def test_the_client_proves_by_itself_when_it_comes_back(tmp_path: Path) -> None:
    broker = start_broker(heartbeat_ms=100)  # alice's session expires 300 ms after her link
    relay = Relay(port_of(broker.endpoint))
    identity = load_identity(tmp_path / IDENTITY_FILE)
    core = broker.server.core

    async def scenario() -> None:
        async with bot_client(relay.endpoint, "alice", identity=identity) as alice:
            await eventually(lambda: alice.session.registered, "the session running")
            await alice.session.handle_line("/register")
            await eventually(lambda: core.store.owner("alice") is not None, "the registration")
            relay.close()
            await eventually(lambda: core.find("alice") is None, "her session expired")
            relay.open()
            await eventually(
                lambda: (
                    alice.session.state.link is LinkState.CONNECTED
                    and alice.session.connections > 1
                ),
                "alice back",
            )
            session = core.find("alice")
            assert session is not None and session.owns_nick
            await alice.session.handle_line("/unregister")
            await eventually(
                lambda: "-!- alice is no longer registered: anyone may take it" in alice.lines(),
                "the nick freed",
            )
            assert core.store.owner("alice") is None

    try:
        asyncio.run(asyncio.wait_for(scenario(), 4 * WAIT_S))
    finally:
        relay.stop()
        broker.stop()


def test_a_registration_outlives_a_broker_killed_and_started_again(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    broker = BrokerProcess(f"tcp://127.0.0.1:{free_port()}", HEARTBEAT_MS)
    broker.start()
    identity = load_identity(tmp_path / IDENTITY_FILE)
    stranger_key = Identity.generate()

    async def scenario() -> None:
        async with bot_client(broker.endpoint, "alice", identity=identity) as alice:
            await eventually(lambda: alice.session.registered, "the session running")
            await alice.session.handle_line("/register")
            await eventually(
                lambda: any("registered to your identity" in line for line in alice.lines()),
                "the registration",
            )
            broker.kill()
            broker.start()
            # Whoever comes first, alice's client or a stranger, the nick stays hers.
            stranger = Peer(context, broker.endpoint)
            stranger.send(cmd.Hello("alice", stranger.token))
            answer = await asyncio.to_thread(stranger.next_event)
            if isinstance(answer, ev.Challenge):
                stranger.send(stranger_key.prove(answer.nonce, "alice", stranger.token))
                answer = await asyncio.to_thread(stranger.next_event)
            assert isinstance(answer, ev.Error) and answer.code == ErrorCode.NICK_TAKEN
            stranger.close()
            # Her client learnt that the broker forgot her session, said HELLO again, was
            # challenged and proved the nick is hers.
            await eventually(
                lambda: (
                    any(line.startswith("-!- reconnected") for line in alice.lines())
                    and alice.session.state.link is LinkState.CONNECTED
                ),
                "alice back",
            )
            watcher = Peer(context, broker.endpoint)
            watcher.register("watcher")
            assert await asyncio.to_thread(watcher.users) == ("alice", "watcher")
            watcher.close()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 4 * WAIT_S))
    finally:
        broker.stop()


def test_owners_who_are_away_are_listed_dimmed_after_those_here_and_complete(
    broker: RunningBroker, connect: Connect
) -> None:
    key = Identity.generate()
    owned(connect, "alice", key).send(cmd.Quit(""))
    connect("carol")

    async def scenario() -> None:
        async with running_client(broker.endpoint, "bob") as bob:
            state = bob.client.state
            await eventually(lambda: state.away_users == ["alice"], "alice listed as away")
            rows = bob.client.ui.user_list.rows()
            names = [row.text.strip() for row in rows]
            assert names == ["2 here", "* all", "bob", "carol", "alice"]
            assert "users.away" in rows[-1].style
            assert "users.away" not in rows[-2].style
            bob.type("/msg a\t")
            await eventually(lambda: bob.input_text == "/msg alice ", "/msg a completed")
            # alice comes back (and proves it is her): listed with those here.
            back = connect()
            await asyncio.to_thread(prove, back, "alice", key)
            await eventually(lambda: state.away_users == [], "alice here")
            names = [row.text.strip() for row in bob.client.ui.user_list.rows()]
            assert names == ["3 here", "* all", "alice", "bob", "carol"]

    asyncio.run(scenario())


def test_an_identity_named_that_is_not_there_stops_the_client(
    broker: RunningBroker, tmp_path: Path
) -> None:
    missing = tmp_path / "identity-copy"
    run = run_client(broker.endpoint, "alice", "hi\n", "--identity", str(missing))
    assert run.returncode == 1
    assert f"no identity file at {missing}" in run.stderr
    assert not missing.exists()


def test_the_user_list_as_printed_is_followed_by_who_is_away(
    broker: RunningBroker, connect: Connect
) -> None:
    owned(connect, "alice", Identity.generate()).send(cmd.Quit(""))
    connect("carol")
    listed, away = "-!- 2 users: bob carol", "-!- 1 away (registered nicks): alice"

    async def scenario() -> None:
        async with bot_client(broker.endpoint, "bob") as bob:
            await eventually(lambda: away in bob.lines(), "who is away")
            await eventually(lambda: bob.session.registered, "the session running")
            await bob.session.handle_line("/users")
            await eventually(lambda: bob.lines().count(away) == 2, "who is away, again")
            shown = [line for line in bob.lines() if line in (listed, away)]
            assert shown == [listed, away, listed, away]

    asyncio.run(scenario())
