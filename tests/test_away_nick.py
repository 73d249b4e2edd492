"""/away, /nick and /me end to end: a real broker, real DEALER peers, a line-mode client."""

import asyncio
from collections.abc import Callable

import pytest

from client.identity import Identity
from client.state import LinkState
from messages import ErrorCode
from messages import commands as cmd
from messages import events as ev
from tests.client_helpers import Relay, bot_client, eventually, running_client
from tests.conftest import RunningBroker
from tests.peers import Peer
from tests.test_client_linemode import run_client
from tests.test_client_screen import SMALL, pane_rows
from tests.test_client_session import restart_broker, restartable_broker

Connect = Callable[..., Peer]


def until_pong(peer: Peer) -> list[ev.BrokerEvent]:
    """Everything on the peer's connection up to the PONG of a PING sent now."""
    peer.send(cmd.Ping())
    events: list[ev.BrokerEvent] = []
    while not isinstance(event := peer.next_event(), ev.Pong):
        events.append(event)
    return events


def test_away_is_seen_by_everyone_and_a_private_gets_one_automatic_reply(
    connect: Connect,
) -> None:
    alice, bob = connect("alice"), connect("bob")
    alice.send(cmd.Away("lunch"))
    bob.expect_after_presence(ev.AwayChanged, nick="alice", away="lunch")
    # Someone who comes later learns it with the user list.
    carol = connect("carol")
    carol.send(cmd.ListUsers())
    carol.expect_after_presence(ev.IsAway, nick="alice", away="lunch")
    carol.expect(ev.UserList, users=("alice", "bob", "carol"))

    bob.tell("alice", "are you there?")
    replies = [e for e in until_pong(bob) if isinstance(e, ev.AwayReply)]
    assert replies == [ev.AwayReply("alice", "lunch")]
    bob.tell("alice", "hello?")
    assert not [e for e in until_pong(bob) if isinstance(e, ev.AwayReply)]
    # Both reached her all the same.
    assert alice.on_connection(ev.PrivateMessage).text == "are you there?"
    assert alice.on_connection(ev.PrivateMessage).text == "hello?"


def test_nick_is_seen_by_everyone_and_refused_for_a_taken_or_owned_nick(
    connect: Connect,
) -> None:
    owner = connect("carol")
    owner.send(Identity.generate().register("carol", owner.token))
    owner.expect_after_presence(ev.Registered, state=True)
    owner.send(cmd.Quit("bye"))
    alice, bob = connect("alice"), connect("bob")

    alice.send(cmd.Nick("alice2"))
    bob.expect_after_presence(ev.Renamed, nick="alice", new_nick="alice2")
    assert bob.users() == ("alice2", "bob")
    alice.send(cmd.Nick("BOB"))
    assert alice.on_connection(ev.Error) == ev.Error(ErrorCode.NICK_TAKEN, "", "nick bob is taken")
    alice.send(cmd.Nick("carol"))
    refused = "nick carol is registered to another identity"
    assert alice.on_connection(ev.Error) == ev.Error(ErrorCode.NICK_TAKEN, "", refused)


def test_a_line_mode_client_acts_hears_the_away_reply_once_and_changes_its_nick(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")
    bob.send(cmd.Away("lunch"))
    bob.expect(ev.AwayChanged, nick="bob", away="lunch")
    script = "/me waves\n/msg bob hi\n/msg bob again\n/nick alice2\nafter\n"
    result = run_client(broker.endpoint, "alice", script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.endswith(" * alice waves") for line in lines), lines
    assert sum(line.endswith("-!- bob is away: lunch") for line in lines) == 1, lines
    assert any(line.endswith("-!- you are now known as alice2") for line in lines), lines
    assert any(line.endswith("-!- 1 of them away: bob (lunch)") for line in lines), lines
    bob.expect_after_presence(ev.Message, sender="alice", text="/me waves")
    bob.expect_after_presence(ev.PrivateMessage, text="hi")
    bob.expect_after_presence(ev.PrivateMessage, text="again")
    bob.expect_after_presence(ev.Renamed, nick="alice", new_nick="alice2")
    bob.expect_after_presence(ev.Message, sender="alice2", text="after")


@pytest.mark.timeout(60)
def test_a_client_that_was_away_is_away_again_after_a_broker_restart() -> None:
    async def scenario(relay: Relay, brokers: list[RunningBroker]) -> None:
        async with (
            bot_client(relay.endpoint, "alice") as alice,
            bot_client(relay.endpoint, "bob") as bob,
        ):
            await alice.session.handle_line("/away lunch")
            await eventually(lambda: bob.session.state.away_of("alice") == "lunch", "away")
            relay.close()
            brokers.append(restart_broker(brokers[0]))
            state = alice.session.state
            await eventually(lambda: state.link is LinkState.RECONNECTING, "alice reconnecting")
            relay.open()
            await eventually(lambda: state.link is LinkState.CONNECTED, "alice back", timeout=20)
            # Who comes later learns it from the new broker.
            async with bot_client(relay.endpoint, "carol") as carol:
                await eventually(
                    lambda: carol.session.state.away_of("alice") == "lunch",
                    "carol sees alice away",
                )

    with restartable_broker() as (relay, brokers):
        asyncio.run(scenario(relay, brokers))


def test_the_full_screen_client_draws_an_action_and_dims_who_is_away(
    broker: RunningBroker, connect: Connect
) -> None:
    bob = connect("bob")
    bob.send(cmd.Away("lunch"))

    async def scenario() -> None:
        async with running_client(broker.endpoint, "alice", size=SMALL) as alice:
            await eventually(lambda: alice.client.state.away_of("bob") == "lunch", "bob away")
            bob.say("/me waves")
            await alice.wait_for_screen(
                lambda screen: any(row.endswith(" * bob waves") for row in pane_rows(alice)),
                "the action",
            )
            [row] = [r for r in alice.client.ui.user_list.rows() if r.text.endswith("bob")]
            assert "class:users.away" in row.style

    asyncio.run(scenario())
