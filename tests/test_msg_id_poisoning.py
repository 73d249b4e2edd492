"""Message ids cannot be used to hide another user's messages (issue 10, finding 10).

Whoever holds a nick after its owner lost the session sees the owner's message ids on the
stream; it must not be able to send, in advance, the ids the owner will use next and so have
every client drop the owner's later messages as repeats.
"""

import asyncio

import zmq

from client.state import Entry, EntryKind
from messages import commands as cmd
from tests.client_helpers import Relay, bot_client, eventually, port_of
from tests.conftest import start_broker
from tests.peers import Peer

#: The broker expires a silent session after 3 x 200 ms.
SHORT_HEARTBEAT_MS = 200
#: Ids the attacker sends in advance, per id seen.
GUESSES_PER_ID = 20
#: Messages the real user sends after coming back.
LATER_MESSAGES = 5


def guesses(seen: str) -> list[str]:
    """The ids that would follow `seen` if ids were counters: each number in it increased."""
    parts = seen.split("-")
    out = []
    for index, part in enumerate(parts):
        if part.isdigit():
            for step in range(1, GUESSES_PER_ID + 1):
                guess = [*parts]
                guess[index] = str(int(part) + step)
                out.append("-".join(guess))
    return out


def test_a_later_holder_of_a_nick_cannot_hide_its_owners_later_messages() -> None:
    broker = start_broker(heartbeat_ms=SHORT_HEARTBEAT_MS)
    relay = Relay(port_of(broker.endpoint))
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()

    def shown_by(entries: list[Entry], sender: str) -> list[str]:
        return [e.text for e in entries if e.kind is EntryKind.MESSAGE and e.sender == sender]

    async def scenario() -> None:
        async with (
            bot_client(broker.endpoint, "bob") as bob,
            bot_client(relay.endpoint, "alice") as alice,
        ):
            for n in (1, 2):
                alice.session.post(f"before {n}")
            await eventually(lambda: len(shown_by(bob.entries, "alice")) == 2, "alice's lines")
            seen = [e.msg_id for e in bob.entries if e.sender == "alice" and e.msg_id]
            # Alice's link goes down long enough for the broker to drop her session.
            relay.close()
            await eventually(
                lambda: any("alice left" in line for line in bob.lines()), "alice's session gone"
            )
            # Someone else takes the free nick and sends the ids alice would use next.
            attacker = Peer(context, broker.endpoint)
            await asyncio.to_thread(attacker.register, "alice")
            forged = [guess for msg_id in seen for guess in guesses(msg_id)]
            for n, msg_id in enumerate(forged):
                attacker.send(cmd.Say(msg_id, f"forged {n}"))
            await asyncio.to_thread(attacker.sync)
            attacker.send(cmd.Quit("done"))
            attacker.close()
            await eventually(
                lambda: sum("alice left" in line for line in bob.lines()) == 2, "attacker gone"
            )
            # Alice is back: her client registers the nick again and goes on talking.
            relay.open()
            await eventually(lambda: alice.session.registered, "alice registered again", 15)
            for n in range(1, LATER_MESSAGES + 1):
                alice.session.post(f"after {n}")
            assert await alice.session.drain(stall_s=10), "alice's lines not acknowledged"
            # Every broadcast made so far has reached bob (dropped or shown).
            last = broker.server.core.history.last_seq
            await eventually(lambda: bob.session.stream.last_seq >= last, "bob up to date")
            later = [t for t in shown_by(bob.entries, "alice") if t.startswith("after")]
            assert later == [f"after {n}" for n in range(1, LATER_MESSAGES + 1)]

    try:
        asyncio.run(scenario())
    finally:
        relay.stop()
        broker.stop()
        context.destroy(linger=0)
