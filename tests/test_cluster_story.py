"""The cluster as its users see it: real clients, two brokers, one chat.

alice's client knows both brokers and starts on A; bob's is on B. They talk; A is killed;
alice's client goes on through B, and nothing either of them wrote is lost or shown twice.
"""

import asyncio

import pytest

from client.state import LinkState
from tests.client_helpers import bot_client, eventually
from tests.natsd import Cluster

#: Each test starts a nats-server and two brokers: one at a time (one pytest worker runs
#: them all, see the Makefile's --dist loadgroup), so that they do not crowd the others.
pytestmark = [pytest.mark.timeout(90), pytest.mark.xdist_group("cluster")]


def test_alice_goes_on_through_the_other_broker_when_hers_is_killed(cluster: Cluster) -> None:
    a, b = cluster.a.endpoint, cluster.b.endpoint

    async def story() -> None:
        async with (
            bot_client([a, b], "alice") as alice,
            bot_client([b, a], "bob") as bob,
        ):
            session = alice.session
            await eventually(lambda: "bob joined" in " ".join(alice.lines()), "alice sees bob")
            await session.handle_line("/msg bob lunch at one?")
            await eventually(lambda: "[alice -> bob] lunch at one?" in bob.lines(), "bob has it")
            await bob.session.handle_line("sure")
            await eventually(lambda: "<bob> sure" in alice.lines(), "alice hears bob")
            await session.handle_line("/join #dev")
            await eventually(lambda: "you joined #dev" in " ".join(alice.lines()), "#dev made")
            await bob.session.handle_line("/join #dev")
            await eventually(lambda: "bob joined #dev" in " ".join(alice.lines()), "bob in #dev")
            await bob.session.handle_line("/msg #dev the build is green")
            await eventually(
                lambda: "#dev <bob> the build is green" in alice.lines(), "alice hears #dev"
            )
            # Plain lines to everyone again.
            await session.handle_line("/all")
            await bob.session.handle_line("/all")

            seen_before_the_kill = len(bob.lines())
            cluster.a.kill()
            # While alice's client notices, bob writes to her, and she types.
            await bob.session.handle_line("/msg alice where did you go?")
            await bob.session.handle_line("is alice's server down?")
            await bob.session.handle_line("/msg #dev and the deploy too")
            await session.handle_line("typed while my server was down")
            await eventually(
                lambda: session.server == b and session.state.link is LinkState.CONNECTED,
                "alice on broker B",
            )
            await eventually(
                lambda: "[bob -> alice] where did you go?" in alice.lines(),
                "alice gets the private message sent while she was away",
            )
            await eventually(
                lambda: "<bob> is alice's server down?" in alice.lines(),
                "alice gets the broadcast she missed",
            )
            await eventually(
                lambda: "<alice> typed while my server was down" in bob.lines(),
                "bob gets what alice typed meanwhile",
            )
            await eventually(
                lambda: "#dev <bob> and the deploy too" in alice.lines(),
                "alice, still in #dev, gets what was posted there meanwhile",
            )
            assert await session.drain(20)
            await session.handle_line("/msg bob back")
            await eventually(lambda: "[alice -> bob] back" in bob.lines(), "bob has it")
            # Nothing twice, and bob saw alice neither leave nor join: her session went on.
            for lines, line in (
                (alice.lines(), "[bob -> alice] where did you go?"),
                (alice.lines(), "<bob> is alice's server down?"),
                (bob.lines(), "<alice> typed while my server was down"),
                (bob.lines(), "[alice -> bob] lunch at one?"),
                (alice.lines(), "#dev <bob> and the deploy too"),
            ):
                assert lines.count(line) == 1, (line, lines)
            after_the_kill = bob.lines()[seen_before_the_kill:]
            noise = [
                line for line in after_the_kill if "alice left" in line or "alice joined" in line
            ]
            assert not noise, bob.lines()
            assert f"-!- reconnected to {b} as alice" in alice.lines()

    asyncio.run(story())


def test_what_alice_types_while_nats_is_down_arrives_once_it_is_back(cluster: Cluster) -> None:
    a, b = cluster.a.endpoint, cluster.b.endpoint

    async def story() -> None:
        async with bot_client([a, b], "alice") as alice, bot_client([b, a], "bob") as bob:
            session = alice.session
            await eventually(lambda: "bob joined" in " ".join(alice.lines()), "alice sees bob")
            cluster.nats.stop()
            await eventually(
                lambda: any(
                    "lost its link to the rest of the chat" in line for line in alice.lines()
                ),
                "alice is told",
            )
            await session.handle_line("typed during the outage")
            await session.handle_line("/msg bob and this one too")
            cluster.nats.start()
            await eventually(
                lambda: "<alice> typed during the outage" in bob.lines(),
                f"bob gets it when back {alice.lines()} {bob.lines()}",
                timeout=40,
            )
            await eventually(
                lambda: "[alice -> bob] and this one too" in bob.lines(), "and the private one"
            )
            assert await session.drain(20)
            assert bob.lines().count("<alice> typed during the outage") == 1
            assert bob.lines().count("[alice -> bob] and this one too") == 1

    asyncio.run(story())
