"""A client given several servers: which it parses from `--server`, registering on the first
that answers, and going on through the next when its broker dies (SIGKILL), with what it
typed meanwhile delivered once."""

import asyncio
from collections.abc import Callable

import pytest

from client.cli import DEFAULT_SERVER, build_parser, server_list
from client.session import backoff_s, reconnect_round
from client.state import LinkState
from messages import events as ev
from tests.client_helpers import WAIT_S, bot_client, eventually, port_of
from tests.conftest import RunningBroker, start_broker
from tests.peers import Peer
from tests.processes import BrokerProcess, free_port
from tests.test_client_linemode import run_client

Connect = Callable[..., Peer]
#: Heartbeat of the brokers here: a dead one is noticed after 3 x 200 ms.
SHORT_HEARTBEAT_MS = 200


@pytest.mark.parametrize(
    ("arguments", "servers"),
    [
        ([], [DEFAULT_SERVER]),
        (["--server", "tcp://a:1"], ["tcp://a:1"]),
        (
            ["--server", "tcp://a:1,tcp://b:2", "--server", "tcp://c:3"],
            ["tcp://a:1", "tcp://b:2", "tcp://c:3"],
        ),
        # As a Makefile or a shell may leave them: spaces, a trailing comma, one given twice.
        (
            ["--server", " tcp://a:1 , tcp://b:2,", "--server", "tcp://a:1"],
            ["tcp://a:1", "tcp://b:2"],
        ),
        (["--server", ","], []),
    ],
)
def test_server_options_give_the_servers_in_order(arguments: list[str], servers: list[str]) -> None:
    assert server_list(build_parser().parse_args(arguments).server) == servers


@pytest.mark.parametrize(
    ("servers", "waits"),
    [
        # One server: the backoff as ever.
        (1, [0, 1, 2, 4, 8, 8]),
        # Each other server is tried promptly; each round then waits longer.
        (2, [0, 0, 1, 1, 2, 2]),
        (3, [0, 0, 0, 1, 1, 1]),
    ],
)
def test_reconnect_attempts_back_off_by_rounds_of_servers(servers: int, waits: list[int]) -> None:
    assert [backoff_s(reconnect_round(n, servers)) for n in range(1, 7)] == waits


def test_a_server_not_listening_is_passed_for_the_next(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")
    dead = f"tcp://127.0.0.1:{free_port(avoid=port_of(broker.endpoint))}"
    result = run_client(
        f"{dead},{broker.endpoint}", "alice", "hello from the second\n", "--timeout", "1"
    )
    assert result.returncode == 0, result.stderr
    assert f"no answer from {dead} within 1 s: trying {broker.endpoint}" in result.stderr
    bob.expect_after_presence(ev.Message, sender="alice", text="hello from the second")


def test_no_server_answering_names_them_all() -> None:
    first = free_port()
    dead = [f"tcp://127.0.0.1:{port}" for port in (first, free_port(avoid=first))]
    result = run_client(dead[0], "alice", "", "--server", dead[1], "--timeout", "0.3")
    assert result.returncode == 1
    assert f"no answer from {dead[0]}, {dead[1]} within 0.3 s: are they running?" in result.stderr


@pytest.mark.timeout(60)
def test_a_client_whose_broker_is_killed_goes_on_through_the_next() -> None:
    first = BrokerProcess(f"tcp://127.0.0.1:{free_port()}", SHORT_HEARTBEAT_MS)
    first.start()
    second = start_broker(heartbeat_ms=SHORT_HEARTBEAT_MS)

    async def scenario() -> None:
        async with (
            bot_client([first.endpoint, second.endpoint], "alice") as alice,
            bot_client(second.endpoint, "bob") as bob,
        ):
            session = alice.session
            assert session.server == first.endpoint
            await session.handle_line("before")
            await eventually(lambda: session.undelivered == 0, "'before' acknowledged")
            first.kill()
            # Typed after the broker died: never acknowledged there, sent again on the next.
            await session.handle_line("during")
            await eventually(
                lambda: (
                    session.server == second.endpoint and session.state.link is LinkState.CONNECTED
                ),
                "alice registered on the second broker",
            )
            assert session.state.server == second.endpoint  # what the status line names
            # The stream is read on the second broker's port now, not the first's.
            stream_port = port_of(second.server.stream_endpoint)
            await eventually(
                lambda: (
                    session.connection is not None and session.connection.stream_port == stream_port
                ),
                "alice on the second broker's stream",
            )
            await session.handle_line("after")
            await eventually(
                lambda: "<alice> after" in bob.lines(), "bob sees what alice says there"
            )
            assert await session.drain(WAIT_S)
            assert bob.lines().count("<alice> during") == 1
            assert bob.lines().count("<alice> after") == 1
            notice = f"-!- reconnected to {second.endpoint} as alice; it did not know this session"
            assert notice in alice.lines()

    try:
        asyncio.run(scenario())
    finally:
        first.stop()
        second.stop()
