"""The cluster's rules in the core, without NATS: two `ChatCore`s share one ordering.

`Ordering` stands in for NATS (it is the test's, not a mock of a library): what either core
publishes to #general or to the rooms' stream is appended to one list, and each core is fed
that list in order, when the test says. So a test can make one broker apply a change before
or after another, as the network may, and check that both end with the same rooms.
"""

from dataclasses import dataclass, field

import pytest

from broker.cluster import (
    Claim,
    ClaimGone,
    ClaimOutcome,
    ClaimResult,
    ClusterEvent,
    Numbered,
    Published,
    RemoteActor,
    RoomChange,
    RoomOp,
    claim_keys,
    renumbered,
)
from broker.core import ChatCore, Outgoing
from broker.history import BroadcastEvent
from broker.session import Outcome
from messages import ErrorCode, encode
from messages import commands as cmd
from messages import events as ev

ADMIN_TOKEN = "x" * 40


@dataclass
class Ordering:
    """The streams every broker reads in one order."""

    general: list[BroadcastEvent] = field(default_factory=list)
    rooms: list[tuple[RoomChange, RemoteActor, str]] = field(default_factory=list)


@dataclass
class Link:
    """One broker's side of `Ordering` (a `broker.cluster.Backplane`)."""

    broker_id: str
    ordering: Ordering
    epoch: str = "c1"
    first_seq: int = 1
    last_seq: int = 0
    start_claims: dict[str, Claim] = field(default_factory=dict)
    start_owners: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    #: What the cluster answers this broker (Published), in order.
    answers: list[ClusterEvent] = field(default_factory=list)
    released: list[str] = field(default_factory=list)

    def claim(self, nick: str, token_hash: str) -> ClaimResult:
        return ClaimResult(ClaimOutcome.CLAIMED)

    def redeliver(self, nick: str, token_hash: str, owner: bool = False) -> None:
        pass

    def follow_general(self, from_seq: int) -> None:
        pass

    def holds(self, key: str) -> bool:
        return False

    def registration(self, nick: str) -> tuple[str, bytes] | None:
        return None

    def own(self, nick: str, public_key: bytes) -> ClaimResult:
        return ClaimResult(ClaimOutcome.CLAIMED)

    def disown(self, nick: str) -> None:
        pass

    def publish_broadcast(
        self, event: BroadcastEvent, token_hash: str = "", nick: str = "", msg_id: str = ""
    ) -> None:
        self.ordering.general.append(event)
        if msg_id:
            self.answers.append(Published(token_hash, nick, msg_id, True))

    def send_private(
        self, private: ev.PrivateMessage, sender: str, recipient: str, stored_for: str = ""
    ) -> None:
        pass

    def confirmed(self, recipient: str, sender: str, msg_id: str) -> None:
        pass

    def send_outcome(self, sender: str, sender_token: str, outcome: Outcome) -> None:
        pass

    def follow(self, nick: str) -> None:
        pass

    def unfollow(self, nick: str) -> None:
        pass

    def release(self, nick: str, token_hash: str, keep: str = "") -> None:
        self.released.append(nick)

    def publish_room(
        self, event: RoomChange, actor: RemoteActor, msg_id: str = "", target: str = ""
    ) -> None:
        self.ordering.rooms.append((event, actor, target))


class Broker:
    """A core in the cluster, with how far it has read each stream."""

    def __init__(self, broker_id: str, ordering: Ordering) -> None:
        self.link = Link(broker_id, ordering)
        self.core = ChatCore(ADMIN_TOKEN, heartbeat_ms=60_000, cluster=self.link)
        self.general_read = self.rooms_read = 0

    def send(self, identity: bytes, command: cmd.ClientCommand) -> list[Outgoing]:
        return self.core.receive(identity, encode(command), now=0.0)

    def catch_up(self, general: bool = True, rooms: bool = True) -> list[Outgoing]:
        """Apply what the streams hold that this broker has not read yet."""
        ordering, out = self.link.ordering, []
        while general and self.general_read < len(ordering.general):
            event = ordering.general[self.general_read]
            self.general_read += 1
            out += self.core.from_cluster(Numbered(renumbered(event, self.general_read)))
        while rooms and self.rooms_read < len(ordering.rooms):
            change, actor, target = ordering.rooms[self.rooms_read]
            self.rooms_read += 1
            out += self.core.from_cluster(RoomOp(change, actor, self.rooms_read, target))
        return out

    def room(self, name: str) -> tuple[list[str], int]:
        room = self.core.rooms.get(name)
        assert room is not None
        return room.nicks(), room.last_seq


def two_brokers() -> tuple[Broker, Broker]:
    ordering = Ordering()
    a, b = Broker("A", ordering), Broker("B", ordering)
    a.send(b"alice", cmd.Hello("alice", "a" * 22, False))
    b.send(b"bob", cmd.Hello("bob", "b" * 22, False))
    for broker in (a, b):
        broker.catch_up()
    return a, b


@pytest.mark.parametrize("evict_first_on_a", [True, False])
def test_a_rename_racing_an_eviction_leaves_both_brokers_with_one_room(
    evict_first_on_a: bool,
) -> None:
    a, b = two_brokers()
    b.send(b"bob", cmd.Enter("#r"))
    b.catch_up(), a.catch_up()
    a.send(b"alice", cmd.Enter("#r"))
    a.catch_up(), b.catch_up()
    # alice takes another nick on A while bob, on B, removes her by the old one.
    a.send(b"alice", cmd.Nick("alicia"))
    b.send(b"bob", cmd.Evict("#r", "alice", "bye"))
    if evict_first_on_a:
        a.catch_up(general=False)
    a.catch_up(), b.catch_up()
    assert a.room("#r") == b.room("#r") == (["bob"], 3)


def test_a_session_that_ends_while_entering_leaves_no_ghost() -> None:
    a, b = two_brokers()
    a.send(b"alice", cmd.Enter("#x"))
    # She quits before the stream brought her ENTER back.
    a.send(b"alice", cmd.Quit("bye"))
    b.send(b"bob", cmd.Enter("#x"))
    a.catch_up(), b.catch_up()
    assert a.room("#x")[0] == b.room("#x")[0] == ["bob"]


def test_an_invitation_names_the_guest_by_session_not_by_nick() -> None:
    a, b = two_brokers()
    b.send(b"bob", cmd.Enter("#ops"))
    b.send(b"bob", cmd.SetMode("#ops", "+i"))
    a.catch_up(), b.catch_up()
    # A learns of bob's invitation while alice is becoming alicia on A.
    b.send(b"bob", cmd.Invite("#ops", "alice"))
    a.send(b"alice", cmd.Nick("alicia"))
    a.catch_up(), b.catch_up()
    a.send(b"alice", cmd.Enter("#ops"))
    a.catch_up(), b.catch_up()
    assert a.room("#ops") == b.room("#ops")


def test_a_claim_taken_from_a_session_here_ends_it_and_says_why() -> None:
    a, _ = two_brokers()
    published = len(a.link.ordering.general)
    by_name, _ = claim_keys("alice")
    assert a.core.from_cluster(ClaimGone(by_name)) == []
    assert a.core.session(b"alice") is None
    [(_, refusal)] = a.send(b"alice", cmd.Ping())
    assert isinstance(refusal, ev.Error) and refusal.code == ErrorCode.NOT_REGISTERED
    assert "cut off from the rest of the chat" in refusal.reason
    # Silently: the others saw it leave when they gave it up.
    assert len(a.link.ordering.general) == published
