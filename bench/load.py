"""ZeroMQ load generator: one worker process driving many ZeroMQ clients.

    python -m bench.load     (driven by bench.run through bench.worker's line protocol)

It speaks two dialects: "chat", the broker's protocol (commands built with
`messages.encode`), and "ceiling", bench.ceiling's relay verbs carrying the very frames
the broker would deliver. Commands are sent from pyzmq DEALER sockets. Deliveries are
counted without decoding: on pyzmq DEALERs by frame 1 (b"PRIVATE", b"MESSAGE"); in
fan-out, by raw ZMTP readers (bench.zmtp), which count the encoded MESSAGE verb in the
bytes they read (packed on the broker's stream, a frame of its own from the ceiling), as
the IRC load generator counts b"PRIVMSG".

Chat clients register with HELLO stream=1: the broker publishes broadcasts (JOIN, LEAVE,
MESSAGE, NOTICE) once on its stream (an XPUB socket) instead of sending them on every
client's DEALER, so registering N clients costs N publishes, not N^2 sends. A client
that wants the broadcasts opens the stream (a SUB connection to the port WELCOME names);
one that does not simply never connects (the broker only publishes: it neither knows nor
cares who subscribes), and costs the broker no send at all. Acknowledgements are not
used: senders are paced by what their recipients (or the probe) have counted.

Jobs:
  direct   pairs of (sender, recipient), both held here; each sender keeps at most
           `window` messages in flight (sent and not yet counted at its recipient). With
           `recipient_endpoint`, the recipients register there (another broker of the
           cluster, bench.cluster), as in latency
  fanout   members of one broadcast group, each counting on a raw reader: for chat a SUB
           on the broker's stream (beside the member's registered DEALER), for the
           ceiling a DEALER registered with the relay. The worker holding the sender (a
           pyzmq DEALER) also holds a probe member, and the sender keeps at most `window`
           broadcasts ahead of the probe's count
  latency  one pair; the sender sends at a fixed rate, the message id carries the send
           time (ns), the recipient records the difference
  idle     connect and register `nicks`, at most `concurrency` waiting at a time; for
           chat, a second phase ("stream") then opens the stream for each of them
  rooms    members of rooms (ENTER, then a raw SUB subscribed to #general and the room,
           counting the room's POSTEDs and any trace of the rooms in `foreign`); in each
           room with a sender, it POSTs, as fast as `window` allows ahead of the room's
           probe or at a fixed `rate`
  manyrooms  register `nicks`; on "go" each ENTERs its rooms at once, and the job waits
           for every ROOM answer
"""

import itertools
import secrets
import select
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import zmq

from messages import SIGNATURE, encode, stream_topic
from messages import commands as cmd

from . import zmtp
from .worker import register_all, run_load, run_paced, serve, trail, wait_until

TEXT = "benchmark message: 64 bytes of chat text, the same on every run."
NOBLOCK = zmq.NOBLOCK
#: Most messages read from one socket before looking at the others.
DRAIN_BATCH = 512


class Counter(Protocol):
    got: int


class Client:
    __slots__ = ("got", "nick", "pending", "sent", "sock", "welcomed")

    def __init__(self, sock: zmq.Socket, nick: str) -> None:  # type: ignore[type-arg]
        self.sock = sock
        self.nick = nick
        self.got = 0
        self.sent = 0
        self.welcomed = False
        #: ENTERs not answered yet (by ROOM).
        self.pending = 0


class Dialect:
    """How a client registers and asks for a delivery; frames are prebuilt once."""

    def __init__(self, name: str) -> None:
        self.chat = name == "chat"

    def hello(self, nick: str) -> list[bytes]:
        if self.chat:
            # stream=1: broadcasts come on the stream, for whoever opens it (see above).
            return encode(cmd.Hello(nick, secrets.token_urlsafe(16), True))
        return [b"HELLO", nick.encode()]

    def direct(self, sender: str, recipient: str) -> tuple[list[bytes], int]:
        """Frames asking for a private message, and the index of its msg_id frame."""
        if self.chat:
            return encode(cmd.Tell("0", recipient, TEXT)), 2
        event = [SIGNATURE, b"PRIVATE", b"0", sender.encode(), recipient.encode(), TEXT.encode()]
        return [b"TO", recipient.encode(), *event, b"1700000000000"], 4

    def confirm(self, private: list[bytes], recipient: str) -> list[bytes]:
        """What the recipient of `private` sends back, as a real client does: the broker
        keeps a private message until its recipient confirms it (RECEIVED; it refuses more
        past 1000 unconfirmed) and then tells the sender (DELIVERED). The ceiling relays the
        same DELIVERED to the sender: as many messages through it as through the broker."""
        msg_id, sender = private[2], private[3]
        if self.chat:
            return [SIGNATURE, b"RECEIVED", msg_id, sender]
        return [b"TO", sender, SIGNATURE, b"DELIVERED", msg_id, recipient.encode()]

    def broadcast(self, sender: str) -> tuple[list[bytes], int]:
        """Frames asking for a broadcast, and the index of its msg_id frame."""
        if self.chat:
            return encode(cmd.Say("0", TEXT)), 2
        event = [SIGNATURE, b"MESSAGE", b"1", b"0", sender.encode(), TEXT.encode()]
        return [b"ALL", *event, b"1700000000000"], 4


class ZmqJob:
    verb = b"PRIVATE"

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        self.endpoint: str = request["endpoint"]
        self.dialect = Dialect(request["dialect"])
        self.window: int = request.get("window", 100)
        self.host, self.port = zmtp.tcp_address(self.endpoint)
        self.ctx = zmq.Context()
        self.ctx.max_sockets = 32768
        self.poller = zmq.Poller()
        self.clients: dict[Any, Client] = {}
        #: Raw ZMTP readers, by file descriptor, all in one epoll polled with the DEALERs.
        self.readers: dict[int, zmtp.Reader] = {}
        self.epoll = select.epoll()
        self.poller.register(self.epoll.fileno(), zmq.POLLIN)
        #: Readers that have not seen their welcome yet.
        self.waiting: set[zmtp.Reader] = set()
        #: The broker's stream port, from WELCOME.
        self.stream_port = 0
        self.errors = 0
        self.first_error = ""

    # -- clients -------------------------------------------------------------------

    def connect(self, nick: str, endpoint: str = "") -> Client:
        """A DEALER for `nick`, connected to `endpoint` (default: the job's) and HELLO sent."""
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        # Unlimited: libzmq's I/O thread takes everything off the connection at once,
        # so a momentarily busy worker never pushes back on the system under test.
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.connect(endpoint or self.endpoint)
        client = Client(sock, nick)
        self.clients[sock] = client
        self.poller.register(sock, zmq.POLLIN)
        sock.send_multipart(self.dialect.hello(nick))
        return client

    def register(
        self, nicks: list[str], limit: float = 60.0, elsewhere: Sequence[str] = ()
    ) -> list[Client]:
        """Register `nicks`, those in `elsewhere` at request["recipient_endpoint"] (the
        other broker of a cluster, bench.cluster), the others at the job's endpoint."""
        other = self.request.get("recipient_endpoint", "")
        away = set(elsewhere)
        clients = [self.connect(nick, other if nick in away else "") for nick in nicks]
        deadline = time.monotonic() + limit
        while not all(c.welcomed for c in clients):
            if time.monotonic() > deadline:
                missing = sum(not c.welcomed for c in clients)
                raise RuntimeError(f"{missing} clients not registered in {limit:.0f} s")
            self.pump(0.05)
        return clients

    def open_reader(self, nick: str, room: str = "", foreign: bytes = b"") -> zmtp.Reader:
        """A raw reader for `nick`: a SUB on the chat stream (the stream port comes from a
        WELCOME, so some client must have registered first), counting #general's MESSAGEs
        or, given `room`, that room's POSTEDs (and `foreign`); or a DEALER registered with
        the ceiling under `nick`."""
        if self.dialect.chat:
            assert self.stream_port, "no WELCOME yet: the stream port is unknown"
            if room:
                reader = zmtp.room_subscriber(self.host, self.stream_port, nick, room, foreign)
            else:
                reader = zmtp.subscriber(self.host, self.stream_port, nick)
        else:
            reader = zmtp.ceiling_dealer(self.host, self.port, nick)
        self.readers[reader.fileno()] = reader
        self.epoll.register(reader.fileno(), select.EPOLLIN)
        self.waiting.add(reader)
        return reader

    def open_readers(
        self, nicks: Sequence[str], limit: float = 60.0, room: str = "", foreign: bytes = b""
    ) -> list[zmtp.Reader]:
        """A raw reader for each of `nicks` (see `open_reader`), once every one has its
        welcome."""
        readers = [self.open_reader(nick, room, foreign) for nick in nicks]
        self.await_readers(limit)
        if self.waiting:
            raise RuntimeError(f"{len(self.waiting)} readers not welcomed in {limit:.0f} s")
        return readers

    def await_readers(self, limit: float) -> None:
        """Read until no reader waits for its welcome, or for `limit` seconds."""
        deadline = time.monotonic() + limit
        while self.waiting and time.monotonic() < deadline:
            self.pump(0.01)

    def read_raw(self) -> int:
        n = 0
        readers = self.readers
        for fd, _ in self.epoll.poll(0):
            reader = readers[fd]
            got = reader.read()
            if got < 0:
                self.errors += 1
                self.first_error = self.first_error or f"{reader.nick}: connection closed"
                self.epoll.unregister(fd)
                del readers[fd]
                self.waiting.discard(reader)
                continue
            if reader.is_ready:
                self.waiting.discard(reader)
            n += got or 1
        return n

    def drain(self, client: Client) -> int:
        recv = client.sock.recv_multipart
        verb = self.verb
        receipts = verb == b"PRIVATE"
        confirm = self.dialect.confirm
        n = 0
        try:
            while n < DRAIN_BATCH:
                frames = recv(NOBLOCK)
                n += 1
                if frames[1] == verb:
                    client.got += 1
                    if receipts:
                        client.sock.send_multipart(confirm(frames, client.nick))
                else:
                    self.other(client, frames)
        except zmq.Again:
            pass
        return n

    def other(self, client: Client, frames: list[bytes]) -> None:
        kind = frames[1]
        if kind == b"WELCOME":
            client.welcomed = True
            if self.dialect.chat:
                self.stream_port = int(frames[-1])
        elif kind == b"ROOM":
            client.pending -= 1
        elif kind in (b"ERROR", b"KICKED", b"SHUTDOWN"):
            self.errors += 1
            if not self.first_error:
                self.first_error = repr(frames[1:])[:300]

    def await_rooms(self, clients: Sequence[Client], limit: float = 60.0) -> float:
        """Read until every ENTER of `clients` has its ROOM answer; how long it took."""
        start = time.monotonic()
        while any(c.pending > 0 for c in clients):
            if time.monotonic() - start > limit:
                missing = sum(max(0, c.pending) for c in clients)
                raise RuntimeError(f"{missing} ENTERs not answered in {limit:.0f} s")
            self.pump(0.01)
        return time.monotonic() - start

    def setup(self) -> dict[str, Any]:
        raise NotImplementedError  # each job builds its own clients

    def go(self, request: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError  # each job runs its own load

    def pump(self, timeout: float) -> int:
        n = 0
        clients = self.clients
        epoll_fd = self.epoll.fileno()
        for item, _ in self.poller.poll(round(timeout * 1000)):
            if item == epoll_fd:
                n += self.read_raw()
            else:
                n += self.drain(clients[item])
        return n

    def unpoll(self, clients: Sequence[Client]) -> None:
        """Stop polling `clients` (their DEALERs receive nothing during the load: polling
        them would cost the loop a system call per socket); `sweep` reads them later."""
        for client in clients:
            self.poller.unregister(client.sock)

    def sweep(self, clients: Sequence[Client]) -> None:
        """Read whatever reached unpolled `clients` (errors, if anything)."""
        for client in clients:
            self.drain(client)

    def close(self) -> None:
        for sock in self.clients:
            sock.close(linger=0)
        self.clients.clear()
        for reader in self.readers.values():
            reader.close()
        self.readers.clear()
        self.epoll.close()
        self.ctx.term()

    def result(self, **fields: Any) -> dict[str, Any]:
        return {"errors": self.errors, "first_error": self.first_error, **fields}


class DirectJob(ZmqJob):
    def setup(self) -> dict[str, Any]:
        pairs = self.request["pairs"]
        # Recipients on the other broker, if the request names one: across the cluster.
        clients = self.register(
            [n for pair in pairs for n in pair], elsewhere=[r for _, r in pairs]
        )
        self.pairs = [(clients[2 * i], clients[2 * i + 1]) for i in range(len(pairs))]
        self.templates = [self.dialect.direct(s.nick, r.nick) for s, r in self.pairs]
        return {}

    def go(self, request: dict[str, Any]) -> dict[str, Any]:
        window = self.window
        ids = itertools.count(1)
        jobs = [
            (s, r, frames, index)
            for (s, r), (frames, index) in zip(self.pairs, self.templates, strict=True)
        ]

        def top_up() -> None:
            for sender, recipient, frames, index in jobs:
                room = window - (sender.sent - recipient.got)
                if room > 0:
                    send = sender.sock.send_multipart
                    for _ in range(room):
                        frames[index] = b"%d" % next(ids)
                        send(frames)
                    sender.sent += room

        receivers = [r for _, r, _, _ in jobs]
        return run_load(self, request, lambda: sum(r.got for r in receivers), top_up)


class FanoutJob(ZmqJob):
    verb = b"MESSAGE"

    def setup(self) -> dict[str, Any]:
        nicks: list[str] = self.request["nicks"]
        sender_nick = self.request.get("sender") or ""
        self.sender: Client | None = None
        self.counters: list[Counter] = []
        if self.dialect.chat:
            # Every member registers (its DEALER) and reads the stream (a raw SUB).
            members = self.register(nicks)
            self.sender = next((c for c in members if c.nick == sender_nick), None)
            readers = self.open_readers(nicks)
            self.counters.extend(readers)
            # Only the sender's DEALER hears anything during the load (its ACKs).
            self.idle = [c for c in members if c is not self.sender]
        else:
            # The sender is a pyzmq DEALER member and counts its own copies; every other
            # member is a raw DEALER registered with the relay.
            if sender_nick in nicks:
                self.sender = self.register([sender_nick])[0]
                self.counters.append(self.sender)
            readers = self.open_readers([n for n in nicks if n != sender_nick])
            self.counters.extend(readers)
            self.idle = []
        self.unpoll(self.idle)
        by_nick = {r.nick: r for r in readers}
        self.probe = by_nick.get(self.request.get("probe") or "")
        return {}

    def go(self, request: dict[str, Any]) -> dict[str, Any]:
        window = self.window
        counters = self.counters
        got0 = sum(c.got for c in counters)
        top_up: Callable[[], None] = lambda: None  # noqa: E731
        sent = 0
        if self.sender is not None and self.probe is not None:
            sender, probe = self.sender, self.probe
            sender.sent = probe.got
            sent = -sender.sent
            frames, index = self.dialect.broadcast(sender.nick)
            send = sender.sock.send_multipart
            ids = itertools.count(1)

            def top_up() -> None:
                room = window - (sender.sent - probe.got)
                if room > 0:
                    for _ in range(room):
                        frames[index] = b"%d" % next(ids)
                        send(frames)
                    sender.sent += room

        delivered = lambda: sum(c.got for c in counters)  # noqa: E731
        result = run_load(self, request, delivered, top_up)
        trail(self)
        self.sweep(self.idle)
        if self.sender is not None:
            sent += self.sender.sent
        # Every broadcast sent, and every delivery counted, since the load started.
        result.update(sent=sent, total=sum(c.got for c in counters) - got0)
        return result


class LatencyJob(ZmqJob):
    recipient: Client | None = None

    def setup(self) -> dict[str, Any]:
        self.samples: list[int] = []
        self.recording = False
        pair = self.request["pair"]
        self.sender, self.recipient = self.register(pair, elsewhere=pair[1:])
        return {}

    def drain(self, client: Client) -> int:
        if client is not self.recipient:
            return super().drain(client)
        recv = client.sock.recv_multipart
        n = 0
        try:
            while True:
                frames = recv(NOBLOCK)
                now = time.monotonic_ns()
                n += 1
                if frames[1] == b"PRIVATE":
                    client.got += 1
                    client.sock.send_multipart(self.dialect.confirm(frames, client.nick))
                    if self.recording:
                        self.samples.append(now - int(frames[2]))
                else:
                    self.other(client, frames)
        except zmq.Again:
            pass
        return n

    def go(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.recipient is not None
        frames, index = self.dialect.direct(self.sender.nick, self.recipient.nick)
        send = self.sender.sock.send_multipart

        def send_one() -> None:
            frames[index] = b"%d" % time.monotonic_ns()
            send(frames)

        sent = run_paced(self, request, self.request["rate"], send_one)
        samples = sorted(self.samples)
        return self.result(samples_us=[round(s / 1000, 1) for s in samples], sent=sent)


class IdleJob(ZmqJob):
    def setup(self) -> dict[str, Any]:
        self.registered: list[Client] = []
        return {}

    def connect(self, nick: str, endpoint: str = "") -> Client:
        client = super().connect(nick, endpoint)
        self.registered.append(client)
        return client

    def go(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("phase") == "stream":
            return self.open_streams(request)
        done, seconds = register_all(
            self,
            request,
            self.request["nicks"],
            self.request.get("concurrency", 200),
            self.connect,
            lambda client: client.welcomed,
        )
        return self.result(registered=done, seconds=seconds)

    def open_streams(self, request: dict[str, Any]) -> dict[str, Any]:
        """Open the stream (a raw SUB) for up to request["most"] registered clients, all
        at once, and wait for their welcomes."""
        nicks = [c.nick for c in self.registered if c.welcomed][: request.get("most")]
        for nick in nicks:
            self.open_reader(nick)
        self.await_readers(request.get("limit", 60.0))
        opened = sum(r.is_ready for r in self.readers.values())
        return self.result(opened=opened)


class Room:
    """One room as a worker holds it: its members here, their readers, and its sender."""

    __slots__ = ("frames", "index", "name", "nicks", "probe", "rate", "readers", "sender", "sent")

    def __init__(self, spec: dict[str, Any]) -> None:
        self.name: str = spec["room"]
        self.nicks: list[str] = spec["nicks"]
        #: Posts per second, or 0: as fast as the window allows.
        self.rate: float = spec.get("rate", 0)
        self.readers: list[zmtp.Reader] = []
        self.sender: Client | None = None
        self.probe: zmtp.Reader | None = None
        self.frames, self.index = encode(cmd.Post(self.name, "0", TEXT)), 3
        self.sent = 0


def post_paced(rooms: Sequence[Room], window: int, start: float) -> Callable[[], None]:
    """A top-up that keeps each room's sender at most `window` posts ahead of its probe,
    and, for a room with a rate, no further ahead of that rate since `start`."""
    ids = itertools.count(1)
    senders = [r for r in rooms if r.sender is not None and r.probe is not None]
    base = {id(r): r.probe.got for r in senders if r.probe is not None}
    for r in senders:
        r.sent = 0

    def top_up() -> None:
        now = time.monotonic()
        for r in senders:
            assert r.sender is not None and r.probe is not None
            room = window - (r.sent - (r.probe.got - base[id(r)]))
            if r.rate:
                room = min(room, int((now - start) * r.rate) + 1 - r.sent)
            if room > 0:
                frames, index, send = r.frames, r.index, r.sender.sock.send_multipart
                for _ in range(room):
                    frames[index] = b"%d" % next(ids)
                    send(frames)
                r.sent += room

    return top_up


class RoomsJob(ZmqJob):
    """Members of rooms, each counting its own room's posts on the stream; the first room
    is the measured one (its deliveries are "count"), the others are busy around it."""

    def setup(self) -> dict[str, Any]:
        if not self.dialect.chat:
            raise ValueError("rooms: only the chat's dialect has rooms")
        self.rooms = [Room(spec) for spec in self.request["rooms"]]
        foreign: bytes = self.request.get("foreign", "").encode()
        self.foreign = foreign
        #: The measured room's members here, and the traces of `foreign` on their DEALERs
        #: (a member reading the stream is sent no room's events on its connection).
        self.outsiders = set(self.rooms[0].nicks)
        self.dealer_foreign = 0
        clients = self.register([n for r in self.rooms for n in r.nicks])
        by_nick = {c.nick: c for c in clients}
        for room in self.rooms:
            enter = encode(cmd.Enter(room.name))
            for nick in room.nicks:
                by_nick[nick].pending += 1
                by_nick[nick].sock.send_multipart(enter)
        self.await_rooms(clients)
        # Subscribed only once the room exists (ROOM came back): the broker applies a
        # subscription only to a room that exists.
        for room, spec in zip(self.rooms, self.request["rooms"], strict=True):
            room.readers = self.open_readers(room.nicks, room=room.name, foreign=foreign)
            room.sender = by_nick.get(spec.get("sender") or "")
            room.probe = next((r for r in room.readers if r.nick == spec.get("probe")), None)
        senders = {id(r.sender) for r in self.rooms if r.sender is not None}
        self.idle = [c for c in clients if id(c) not in senders]
        self.unpoll(self.idle)
        return {}

    def other(self, client: Client, frames: list[bytes]) -> None:
        if client.nick in self.outsiders and self.foreign:
            self.dealer_foreign += sum(frame.count(self.foreign) for frame in frames)
        super().other(client, frames)

    def go(self, request: dict[str, Any]) -> dict[str, Any]:
        main, busy = self.rooms[0], self.rooms[1:]
        main_readers = main.readers
        busy_readers = [reader for room in busy for reader in room.readers]
        got0 = sum(r.got for r in main_readers)
        busy0 = sum(r.got for r in busy_readers)
        result = run_load(
            self,
            request,
            lambda: sum(r.got for r in main_readers),
            post_paced(self.rooms, self.window, request["start"]),
            lambda: sum(r.got for r in busy_readers),
        )
        trail(self)
        self.sweep(self.idle)
        result.update(
            sent=main.sent,
            total=sum(r.got for r in main_readers) - got0,
            busy_sent=sum(r.sent for r in busy),
            busy_total=sum(r.got for r in busy_readers) - busy0,
            # Since each reader opened: setup's ENTERED events count too.
            foreign=sum(r.foreign_got for r in main_readers) + self.dealer_foreign,
            busy_foreign=sum(r.foreign_got for r in busy_readers),
        )
        return result


class ManyRoomsJob(ZmqJob):
    """Clients that, on "go", all ENTER their rooms (request["rooms_of"]: nick -> rooms).

    Each reads the stream as the reference client does (a raw SUB, subscribed to
    #general); on "go" with phase "subscribe", each subscribes to its rooms' topics too."""

    def setup(self) -> dict[str, Any]:
        nicks = list(self.request["rooms_of"])
        self.members = self.register(nicks)
        self.streams = dict(zip(nicks, self.open_readers(nicks), strict=True))
        return {}

    def go(self, request: dict[str, Any]) -> dict[str, Any]:
        rooms_of: dict[str, list[str]] = self.request["rooms_of"]
        if request.get("phase") == "subscribe":
            for nick, reader in self.streams.items():
                topics = [stream_topic(name) for name in rooms_of[nick]]
                reader.send(zmtp.subscriptions(*topics, first=False))
            return self.result(subscribed=sum(map(len, rooms_of.values())))
        wait_until(request["start"])
        start = time.monotonic()
        for client in self.members:
            for name in rooms_of[client.nick]:
                client.pending += 1
                client.sock.send_multipart(encode(cmd.Enter(name)))
        self.await_rooms(self.members, request.get("limit", 120.0))
        entered = sum(len(rooms_of[c.nick]) for c in self.members)
        return self.result(entered=entered, seconds=time.monotonic() - start)


JOBS = {
    "direct": DirectJob,
    "fanout": FanoutJob,
    "latency": LatencyJob,
    "idle": IdleJob,
    "rooms": RoomsJob,
    "manyrooms": ManyRoomsJob,
}


def make_job(request: dict[str, Any]) -> ZmqJob:
    job: ZmqJob = JOBS[request["job"]](request)
    return job


if __name__ == "__main__":
    serve(make_job)
