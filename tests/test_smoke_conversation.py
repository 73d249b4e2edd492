from collections.abc import Callable

from messages import events as ev
from tests.peers import Peer


def test_alice_and_bob_talk(connect: Callable[..., Peer]) -> None:
    alice = connect("alice")
    bob = connect("bob")
    alice.expect(ev.Joined, nick="bob")
    alice.say("hi bob")
    bob.expect(ev.Message, sender="alice", text="hi bob")
    alice.expect(ev.Message, sender="alice", text="hi bob")
