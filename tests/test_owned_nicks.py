"""Owned nicks on a real broker with real DEALER sockets: REGISTER, the challenge on HELLO,
PROVE, UNREGISTER, the console's /drop and NICKS; and the bounds of pending challenges in
the core, where time can be moved."""

import os
from collections.abc import Callable, Iterator

import pytest
import zmq

from broker import BrokerConfig, BrokerServer
from broker.console import run_console_line
from broker.core import ChatCore
from broker.owners import Challenges
from client.identity import Identity
from messages import CHALLENGE_SECONDS, ErrorCode, ProtocolError, b64url, encode
from messages import commands as cmd
from messages import events as ev
from tests.conftest import ADMIN_TOKEN, RANDOM_LOOPBACK, RunningBroker, serve
from tests.peers import Peer

Connect = Callable[..., Peer]
REFUSED = "nick alice is registered to another identity"


def owned(connect: Connect, nick: str, identity: Identity) -> Peer:
    """A peer registered as `nick`, which it then registers to `identity`."""
    peer = connect(nick)
    peer.send(identity.register(nick, peer.token))
    peer.expect_after_presence(ev.Registered, nick=nick, state=True)
    return peer


def hello(peer: Peer, nick: str) -> ev.Challenge:
    """HELLO for an owned nick: the broker challenges it."""
    peer.send(cmd.Hello(nick, peer.token))
    return peer.expect(ev.Challenge)


def prove(peer: Peer, nick: str, identity: Identity) -> ev.Welcome:
    """HELLO, then PROVE with `identity`: WELCOME."""
    challenge = hello(peer, nick)
    peer.send(identity.prove(challenge.nonce, nick, peer.token))
    welcome = peer.expect(ev.Welcome, nick=nick)
    peer.nick, peer.welcome = welcome.nick, welcome
    return welcome


def test_only_the_owner_takes_a_registered_nick_back(connect: Connect) -> None:
    alice_key, mallory_key = Identity.generate(), Identity.generate()
    bob = connect("bob")
    alice = owned(connect, "alice", alice_key)
    alice.send(cmd.Quit("bye"))
    bob.expect_after_presence(ev.Left, nick="alice")

    # Another identity, from another state directory: challenged, then refused.
    mallory = connect()
    challenge = hello(mallory, "ALICE")
    mallory.send(mallory_key.prove(challenge.nonce, "ALICE", mallory.token))
    mallory.expect(ev.Error, code=ErrorCode.NICK_TAKEN, reason=REFUSED.replace("alice", "ALICE"))
    # Nor does alice's public key help without her secret: the signature is mallory's.
    forged = mallory_key.prove(hello(mallory, "alice").nonce, "alice", mallory.token)
    mallory.send(cmd.Prove(alice_key.public_key, forged.signature))
    mallory.expect(ev.Error, code=ErrorCode.NICK_TAKEN, reason=REFUSED)
    mallory.send(cmd.Ping())
    mallory.expect(ev.Error, code=ErrorCode.NOT_REGISTERED)

    # alice, back with a new session: challenged, proves, is welcome; bob sees her join.
    back = connect()
    prove(back, "alice", alice_key)
    bob.expect_after_presence(ev.Joined, nick="alice")
    assert bob.users() == ("alice", "bob")


def test_a_recorded_prove_cannot_be_replayed(connect: Connect) -> None:
    alice_key = Identity.generate()
    owned(connect, "alice", alice_key).send(cmd.Quit(""))
    # What an eavesdropper records: alice's HELLO (her token) and her PROVE.
    alice = connect()
    first = hello(alice, "alice")
    recorded = alice_key.prove(first.nonce, "alice", alice.token)
    alice.send(recorded)
    alice.expect(ev.Welcome)
    alice.send(cmd.Quit(""))

    thief = connect()
    thief.token = alice.token  # the recorded HELLO, word for word
    fresh = hello(thief, "alice")
    assert fresh.nonce != first.nonce
    thief.send(recorded)
    thief.expect(ev.Error, code=ErrorCode.NICK_TAKEN, reason=REFUSED)
    # The nonce served once: a second PROVE finds nothing pending.
    thief.send(alice_key.prove(fresh.nonce, "alice", alice.token))
    thief.expect(ev.Error, code=ErrorCode.NOT_REGISTERED)


def test_prove_without_a_challenge_is_refused(connect: Connect) -> None:
    key = Identity.generate()
    stranger = connect()
    stranger.send(key.prove(b64url(bytes(32)), "alice", stranger.token))
    stranger.expect(ev.Error, code=ErrorCode.NOT_REGISTERED)
    bob = connect("bob")
    bob.send(key.prove(b64url(bytes(32)), "bob", bob.token))
    bob.expect(ev.Error, code=ErrorCode.MALFORMED)


def test_a_session_that_resumes_is_not_challenged(connect: Connect) -> None:
    key = Identity.generate()
    alice = owned(connect, "alice", key)
    # Her connection breaks; the same client says HELLO again on a new one, with its token.
    again = connect()
    again.token = alice.token
    again.send(cmd.Hello("alice", again.token))
    again.expect(ev.Welcome, nick="alice")


def test_a_nick_someone_holds_is_taken_whatever_the_proof(connect: Connect) -> None:
    key = Identity.generate()
    owned(connect, "alice", key)
    second = connect()  # alice's second machine, with her identity, while she is here
    second.send(cmd.Hello("alice", second.token))
    second.expect(ev.Error, code=ErrorCode.NICK_TAKEN, reason="nick alice is taken")


def test_register_checks_its_signature_and_the_owner(connect: Connect) -> None:
    key, other = Identity.generate(), Identity.generate()
    alice = connect("alice")
    # Signed for another session: worth nothing here.
    alice.send(key.register("alice", "another-session-token-0000"))
    alice.expect(ev.Error, code=ErrorCode.MALFORMED)
    alice.send(key.register("alice", alice.token))
    alice.expect(ev.Registered, nick="alice", state=True)
    # The same key again: still registered. Another key: refused.
    alice.send(key.register("alice", alice.token))
    alice.expect(ev.Registered, nick="alice", state=True)
    alice.send(other.register("alice", alice.token))
    alice.expect(ev.Error, code=ErrorCode.NICK_TAKEN, reason=REFUSED)


def test_unregister_frees_the_nick(connect: Connect) -> None:
    key = Identity.generate()
    alice = owned(connect, "alice", key)
    alice.send(cmd.Unregister())
    alice.expect(ev.Registered, nick="alice", state=False)
    alice.send(cmd.Unregister())
    alice.expect(ev.Error, code=ErrorCode.NO_SUCH_NICK, reason="nick alice is not registered")
    alice.send(cmd.Quit(""))
    anyone = connect()
    anyone.send(cmd.Hello("alice", anyone.token))
    anyone.expect(ev.Welcome, nick="alice")


@pytest.fixture
def connect_to(context: zmq.Context[zmq.Socket[bytes]]) -> Iterator[Callable[[str], Peer]]:
    """`connect_to(endpoint)`: a peer connected to that broker, unregistered."""
    peers: list[Peer] = []

    def make(endpoint: str) -> Peer:
        peers.append(Peer(context, endpoint))
        return peers[-1]

    yield make
    for peer in peers:
        peer.close()


@pytest.fixture
def console_broker() -> Iterator[tuple[RunningBroker, int]]:
    """A broker whose console is a pipe: the write end is returned."""
    read_end, write_end = os.pipe()
    config = BrokerConfig(bind=RANDOM_LOOPBACK, admin_token=ADMIN_TOKEN, console_fd=read_end)
    running = serve(BrokerServer(config))
    yield running, write_end
    if running.thread.is_alive():
        running.stop()
    os.close(write_end)
    os.close(read_end)


def test_the_console_drops_a_registration(
    console_broker: tuple[RunningBroker, int], connect_to: Callable[[str], Peer]
) -> None:
    broker, console = console_broker
    key = Identity.generate()
    alice = connect_to(broker.endpoint)
    alice.register("alice")
    alice.send(key.register("alice", alice.token))
    alice.expect(ev.Registered, state=True)
    os.write(console, b"/drop ALICE\n")
    # Her session goes on, unowned, and is told.
    alice.expect(ev.Registered, nick="alice", state=False)
    alice.send(cmd.Quit(""))
    anyone = connect_to(broker.endpoint)
    anyone.send(cmd.Hello("alice", anyone.token))
    anyone.expect(ev.Welcome, nick="alice")


def test_nicks_lists_the_registered_nicks_present_or_not(connect: Connect) -> None:
    for nick in ("carol", "Bob", "dave"):
        owned(connect, nick, Identity.generate())
    connect("eve")  # here, not registered
    owned(connect, "alice", Identity.generate()).send(cmd.Quit(""))
    asker = connect("zed")
    asker.send(cmd.ListNicks())
    assert asker.on_connection(ev.NickList) == ev.NickList(("alice", "Bob", "carol", "dave"))
    asker.send(cmd.ListNicks("bob"))
    assert asker.on_connection(ev.NickList).nicks == ("carol", "dave")


# -- in the core, where time can be moved -------------------------------------------------

T0 = 1000.0
ALICE, OTHER = b"\0alice", b"\0other"


def core_send(
    core: ChatCore, identity: bytes, command: cmd.ClientCommand, now: float
) -> ev.BrokerEvent:
    [(_, event), *_] = core.receive(identity, encode(command), now)
    return event


def test_a_challenge_expires_and_is_forgotten() -> None:
    core = ChatCore(ADMIN_TOKEN)
    key = Identity.generate()
    core.store.set_owner("alice", bytes(32))
    token = "alice-session-token-0000"
    challenge = core_send(core, ALICE, cmd.Hello("alice", token), T0)
    assert isinstance(challenge, ev.Challenge)
    late = T0 + CHALLENGE_SECONDS + 1
    refusal = core_send(core, ALICE, key.prove(challenge.nonce, "alice", token), late)
    assert refusal == ev.Error(
        ErrorCode.NOT_REGISTERED, "", "the challenge expired: send HELLO again"
    )
    core_send(core, ALICE, cmd.Hello("alice", token), T0)
    assert len(core.challenges) == 1
    core.expire(late)
    assert len(core.challenges) == 0


def test_pending_challenges_are_one_per_connection_and_bounded() -> None:
    challenges = Challenges(limit=3)
    first = challenges.challenge(ALICE, "alice", "t", False, "", T0)
    second = challenges.challenge(ALICE, "alice", "t", False, "", T0)
    assert first != second and len(challenges) == 1
    for number in range(10):
        challenges.challenge(bytes([number]), "alice", "t", False, "", T0)
    assert len(challenges) == 3
    # The oldest went first: alice's among them.
    with pytest.raises(ProtocolError, match="no challenge is pending"):
        challenges.take(ALICE, T0)
    assert challenges.take(bytes([9]), T0).nick == "alice"


def test_nicks_come_in_pages_that_together_are_the_whole_list() -> None:
    core = ChatCore(ADMIN_TOKEN)
    nicks = [f"user{number:03d}" for number in range(300)]  # more than one read of the store
    for nick in nicks:
        core.store.set_owner(nick, bytes(32))
    gathered: list[str] = []
    after, more = "", True
    while more:
        page, more = core.owned_page(after, 128)
        assert page and len(" ".join(page).encode()) <= 128
        gathered += page
        after = page[-1]
    assert gathered == nicks


def test_a_look_alike_of_an_owned_nick_is_refused_while_its_owner_is_away(
    connect: Connect,
) -> None:
    key = Identity.generate()
    owned(connect, "alice", key).send(cmd.Quit(""))
    impostor = connect()
    impostor.send(cmd.Hello("aIice", impostor.token))  # a capital I for the l
    impostor.expect(
        ev.Error,
        code=ErrorCode.NICK_TAKEN,
        reason="nick aIice looks like alice, which is registered",
    )
    # Once the registration is dropped, the look-alike is a nick like any other.
    alice = connect()
    prove(alice, "alice", key)
    alice.send(cmd.Unregister())
    alice.expect(ev.Registered, state=False)
    alice.send(cmd.Quit(""))
    impostor.send(cmd.Hello("aIice", impostor.token))
    impostor.expect(ev.Welcome, nick="aIice")


def test_a_broker_knows_the_look_alikes_of_the_nicks_its_store_keeps() -> None:
    first = ChatCore(ADMIN_TOKEN)
    first.store.set_owner("alice", bytes(32))
    again = ChatCore(ADMIN_TOKEN, store=first.store)  # as a restart on the same file finds it
    refusal = core_send(again, OTHER, cmd.Hello("aIice", "other-session-token-00000"), T0)
    assert refusal == ev.Error(
        ErrorCode.NICK_TAKEN, "", "nick aIice looks like alice, which is registered"
    )


def test_the_console_lists_the_registered_nicks_a_page_at_a_time() -> None:
    core = ChatCore(ADMIN_TOKEN)
    assert run_console_line(core, "/registered", T0).output == ["0 registered: (none)"]
    for number in range(1000):
        core.store.set_owner(f"user{number:03d}", bytes(32))
    [line] = run_console_line(core, "/registered", T0).output
    assert line.startswith("512 registered: user000 user001 ")
    assert line.endswith("user511 ... (more: /registered user511)")
    [line] = run_console_line(core, "/registered user998", T0).output
    assert line == "1 registered after user998: user999"
