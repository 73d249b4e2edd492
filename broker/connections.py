"""Which TCP connection each routing id came in on: sans-IO bookkeeping for the socket loop.

libzmq tells the broker about connections through a socket monitor (accepted, closed, each
with its file descriptor) and tells it, for each message, the descriptor it came in on
(ZMQ_SRCFD). This table joins the two, so that the loop can hold every routing id to the
one connection it belongs to:

- A routing id is bound to the connection its first message came in on, and only ids that
  libzmq assigned (a zero byte and a 4-byte counter) are bound: a peer that chose its own
  id (ZMQ_ROUTING_ID) is refused and cut off. libzmq aborts the whole process when an id
  it assigns later is already taken by a chosen one, and a chosen id would let a peer speak
  for the session of a connection that dropped.
- A routing id whose connection closed is never bound again: libzmq never assigns an id
  twice, so whoever comes back with it chose it.
- The loop sends only to ids bound to an open connection.
- Connections are capped, in total and per network address; a connection that has not
  registered within a stated time is cut off.

Nothing here touches a socket: the loop reports what libzmq said and acts on the verdicts.
"""

from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from messages import ErrorCode

Identity = bytes

#: libzmq's own routing ids: a zero byte, then a 32-bit counter.
ASSIGNED_ID_BYTES: Final = 5
#: Routing ids of closed connections remembered so that a peer reusing one is caught.
RETIRED_IDS_KEPT: Final = 65_536
#: Which socket of the broker a connection belongs to.
CHAT: Final = "chat"
STREAM_SOCKET: Final = "stream"
#: Defaults of ConnectionLimits, named as docs/PROTOCOL.md names them.
MAX_CONNECTIONS: Final = 4096
MAX_CONNECTIONS_PER_ADDRESS: Final = 256
REGISTER_WITHIN_S: Final = 10.0
REFUSED_WITHIN_S: Final = 5.0
REFUSAL_GRACE_S: Final = 0.5


@dataclass(frozen=True)
class ConnectionLimits:
    """How many connections the broker holds, and for how long unregistered ones."""

    #: Open connections in all (chat and stream sockets together).
    total: int = MAX_CONNECTIONS
    #: Open connections from one network address (loopback included).
    per_address: int = MAX_CONNECTIONS_PER_ADDRESS
    #: Seconds a chat connection may stay open without registering (HELLO accepted).
    register_within_s: float = REGISTER_WITHIN_S
    #: Seconds a connection over a limit has to send its first message and read why it
    #: is refused, before it is cut off without a word.
    refused_within_s: float = REFUSED_WITHIN_S
    #: Seconds between sending a refusal and cutting the connection off: cut at once, the
    #: connection would take the refusal with it.
    refusal_grace_s: float = REFUSAL_GRACE_S


class Verdict(Enum):
    """What the loop does with a message, given where it came from."""

    #: Hand it to the core.
    ACCEPT = "accept"
    #: Refuse it (answer with an error naming the reason) and cut the connection off.
    REFUSE = "refuse"
    #: Drop it silently: it cannot be told apart from a forgery.
    DROP = "drop"


@dataclass(slots=True)
class Connection:
    """One open TCP connection to a socket of the broker."""

    fd: int
    address: str
    #: Monotonic time it was accepted.
    since: float
    #: Which socket of the broker it belongs to (chat or stream).
    kind: str
    identity: Identity | None = None
    #: It has had a session (HELLO accepted) at some point.
    registered: bool = False
    #: Why it is refused: set when accepted over a limit, or when its first message
    #: showed a chosen routing id. Nothing more from it reaches the core.
    refusal: str = ""
    #: Refused in a way that allows no courtesy: cut off as soon as it is accepted (the
    #: broker is full, or its address is banned).
    refused_outright: bool = False
    #: Monotonic time the refusal was sent to it; it is cut off a little later, once the
    #: refusal has had time to leave.
    refused_at: float | None = None
    #: Set once the loop has cut it off (shutdown of its descriptor).
    cut: bool = False
    #: Bytes of the messages the broker has read from it, framing included.
    bytes_read: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str = ""
    #: The connection it came in on, when known (the one to cut off, when refused).
    connection: Connection | None = None
    #: The ERROR code a refusal is sent with.
    code: ErrorCode = ErrorCode.MALFORMED


def assigned_by_libzmq(identity: Identity) -> bool:
    """Whether `identity` has the shape of a routing id libzmq assigns."""
    return len(identity) == ASSIGNED_ID_BYTES and identity[0] == 0


@dataclass
class ConnectionTable:
    """Open connections by descriptor, and the routing id each chat connection is bound to."""

    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    _by_fd: dict[int, Connection] = field(default_factory=dict)
    _by_identity: dict[Identity, Connection] = field(default_factory=dict)
    _per_address: dict[str, int] = field(default_factory=dict)
    #: Ids whose connection closed, with the descriptor it had then.
    _retired: OrderedDict[Identity, int] = field(default_factory=OrderedDict)
    #: Addresses refused until a monotonic time, and why.
    _banned: dict[str, tuple[float, str]] = field(default_factory=dict)
    #: Open connections not cut off: what counts against the total.
    _live: int = 0
    _evicted: list[Connection] = field(default_factory=list)

    def connections(self) -> tuple[Connection, ...]:
        return tuple(self._by_fd.values())

    def from_address(self, address: str) -> int:
        """Open connections from network address `address`."""
        return self._per_address.get(address, 0)

    # -- what the monitor reports -------------------------------------------------------

    def accepted(self, fd: int, address: str, kind: str, now: float) -> Connection:
        """A connection was accepted on descriptor `fd`; it may be over a limit."""
        stale = self._by_fd.get(fd)
        if stale is not None:  # its close was not reported: the descriptor is reused
            self.closed(fd)
        connection = Connection(fd, address, now, kind)
        ban = self._banned.get(address)
        if ban is not None and ban[0] <= now:
            del self._banned[address]
            ban = None
        if ban is not None:
            connection.refusal = ban[1]
            connection.refused_outright = True
        elif self._live >= self.limits.total and not self._evict_for(address):
            # Each connection costs a descriptor: one over the total gets no time to be told.
            connection.refusal = f"the broker is full ({self.limits.total} connections)"
            connection.refused_outright = True
        elif self.from_address(address) >= self.limits.per_address:
            connection.refusal = (
                f"too many connections from {address} (at most {self.limits.per_address})"
            )
        self._by_fd[fd] = connection
        self._per_address[address] = self.from_address(address) + 1
        self._live += 1
        return connection

    def _evict_for(self, address: str) -> bool:
        """Make room for a connection from `address` in a full broker: pick the oldest
        connection that has not registered, of the address holding the most connections
        (if it holds more than `address` does); True if one was picked (see `evicted`).

        Idle connections would otherwise lock every new user out until they expire: the
        one who holds the most gives way first, never a user."""
        mine = self.from_address(address)
        # Cheap while the newcomer's address is as busy as any (a flood reconnecting): one
        # look per address, not per connection.
        busiest = max(self._per_address, key=self._per_address.__getitem__, default=address)
        if self._per_address.get(busiest, 0) <= mine:
            return False
        candidates = [
            c
            for c in self._by_fd.values()
            if c.address == busiest and not c.cut and not c.registered and c not in self._evicted
        ]
        if not candidates:
            return False
        victim = min(candidates, key=lambda c: c.since)
        self._evicted.append(victim)
        return True

    def evicted(self) -> list[Connection]:
        """Connections picked to make room since the last call: to cut off now."""
        picked, self._evicted = self._evicted, []
        return picked

    def closed(self, fd: int) -> Connection | None:
        """The connection on `fd` closed; its routing id is retired."""
        connection = self._by_fd.pop(fd, None)
        if connection is None:
            return None
        if connection in self._evicted:
            self._evicted.remove(connection)
        if not connection.cut:
            self._live -= 1
        left = self._per_address[connection.address] - 1
        if left:
            self._per_address[connection.address] = left
        else:
            del self._per_address[connection.address]
        identity = connection.identity
        if identity is not None and self._by_identity.get(identity) is connection:
            del self._by_identity[identity]
            self._retired[identity] = fd
            if len(self._retired) > RETIRED_IDS_KEPT:
                self._retired.popitem(last=False)
        return connection

    # -- what messages show -------------------------------------------------------------

    def bound_fd(self, fd: int) -> Connection | None:
        """The open connection on descriptor `fd`, if any."""
        return self._by_fd.get(fd)

    def bound(self, identity: Identity) -> Connection | None:
        """The open connection `identity` is bound to, if any: the only one to send to."""
        return self._by_identity.get(identity)

    def ban(self, address: str, until: float, reason: str) -> None:
        """Refuse new connections from `address` until monotonic time `until`."""
        self._banned[address] = (until, reason)

    def cutting(self, connection: Connection) -> None:
        """`connection` is being cut off: it no longer counts against the total."""
        if not connection.cut:
            self._live -= 1
        connection.cut = True

    def refused(self, connection: Connection, reason: str, now: float) -> None:
        """`connection` was sent a refusal for `reason`: nothing more from it counts."""
        connection.refusal = connection.refusal or reason
        connection.refused_at = now

    def place(self, identity: Identity, fd: int) -> Decision:
        """Judge a message from `identity`, not bound now, that came in on descriptor `fd`."""
        connection = self._by_fd.get(fd)
        retired_fd = self._retired.get(identity)
        if retired_fd is not None:
            if fd == retired_fd:
                # A message the closed connection sent before it closed, read late; or,
                # once the descriptor is reused, one that cannot be told apart from it.
                return Decision(Verdict.ACCEPT if connection is None else Verdict.DROP)
            if connection is None or connection.identity not in (None, identity):
                return Decision(Verdict.DROP)
            connection.identity = identity
            return Decision(
                Verdict.REFUSE, "this routing id belonged to a closed connection", connection
            )
        if connection is None or connection.identity is not None:
            # Closed before its first message was read, not the connection that sent it,
            # or refused already.
            return Decision(Verdict.DROP)
        # Whatever the verdict, this connection's id is now known.
        connection.identity = identity
        if not assigned_by_libzmq(identity):
            return Decision(
                Verdict.REFUSE, "clients must not set a routing id (ZMQ_ROUTING_ID)", connection
            )
        if connection.refusal:
            return Decision(Verdict.REFUSE, connection.refusal, connection, ErrorCode.RATE_LIMITED)
        self._by_identity[identity] = connection
        return Decision(Verdict.ACCEPT, connection=connection)

    def overdue(self, now: float) -> list[Connection]:
        """Open connections to cut off now: refused ones, and chat connections that have
        not registered in time."""
        limits = self.limits
        due = []
        for c in self._by_fd.values():
            if c.cut or c.registered:
                continue
            if c.refused_at is not None:
                deadline = c.refused_at + limits.refusal_grace_s
            elif c.refusal:
                deadline = c.since + limits.refused_within_s
            elif c.kind == CHAT:
                deadline = c.since + limits.register_within_s
            else:
                continue
            if now >= deadline:
                due.append(c)
        return due
