"""IRC load generator: one worker process driving many raw-socket IRC clients.

    python -m bench.irc     (driven by bench.run through bench.worker's line protocol)

The same jobs as bench.load (direct, fanout, latency, idle), over plain TCP. Senders
write many PRIVMSG lines per write(); receivers count occurrences of b"PRIVMSG" in the
bytes they read, without splitting lines, so the load generator costs little per message.
The in-flight window is per pair (direct) or per sender against a probe member (fanout),
as for the ZeroMQ systems. IRC does not echo a channel message to its sender, so a
broadcast to N members is N - 1 deliveries.
"""

import select
import socket
import time
from typing import Any

from .load import TEXT
from .worker import (
    READ_BYTES,
    TRAILING_LIMIT,
    count_in,
    register_all,
    run_load,
    run_paced,
    serve,
    trail,
    wait_until,
)

WORD = b"PRIVMSG"
CHANNEL = b"#bench"
#: Numeric replies that say a client is registered, has joined, or has failed.
WELCOME, END_OF_NAMES = b"001", b"366"
FAILURES = frozenset({b"432", b"433", b"451", b"471", b"473", b"474"})


#: Every pattern counted is at most this long; a read keeps this many bytes minus one.
MAX_PATTERN = 24


class Conn:
    __slots__ = (
        "channels",
        "foreign",
        "foreign_got",
        "got",
        "joins_left",
        "nick",
        "out",
        "pattern",
        "scan",
        "sent",
        "sock",
        "state",
        "tail",
    )

    def __init__(self, sock: socket.socket, nick: str) -> None:
        self.sock = sock
        self.nick = nick
        self.got = 0
        self.sent = 0
        self.tail = b""
        self.out = b""
        self.scan = b""
        #: "registering", "registered", "joining", "joined"
        self.state = "registering"
        #: The channels to join once registered, and the joins not yet complete (366).
        self.channels: list[bytes] = []
        self.joins_left = 0
        #: What a delivery looks like, and what this client should never see.
        self.pattern = WORD
        self.foreign = b""
        self.foreign_got = 0


class IrcJob:
    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        host, port = request["endpoint"].rsplit(":", 1)
        self.address = (host, int(port))
        self.window: int = request.get("window", 100)
        self.epoll = select.epoll()
        self.conns: dict[int, Conn] = {}
        #: The channels each nick joins once registered.
        self.channels_of: dict[str, list[bytes]] = {}
        self.errors = 0
        self.first_error = ""

    # -- clients -------------------------------------------------------------------

    def connect(self, nick: str) -> Conn:
        sock = socket.create_connection(self.address, timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conn = Conn(sock, nick)
        conn.channels = self.channels_of.get(nick, [])
        self.conns[sock.fileno()] = conn
        self.epoll.register(sock.fileno(), select.EPOLLIN)
        name = nick.encode()
        self.write(conn, b"NICK %s\r\nUSER %s 0 * :%s\r\n" % (name, name, name))
        return conn

    def register(self, nicks: list[str], join: bool, limit: float = 60.0) -> list[Conn]:
        """Connect and register `nicks` (and join the channel, or the channels in
        `channels_of`), `concurrency` at a time."""
        if join:
            for member in nicks:
                self.channels_of.setdefault(member, [CHANNEL])
        want = "joined" if join else "registered"
        concurrency: int = self.request.get("concurrency", 200)
        conns: list[Conn] = []
        pending: list[Conn] = []
        todo = iter(nicks)
        deadline = time.monotonic() + limit
        while True:
            while len(pending) < concurrency and (nick := next(todo, None)) is not None:
                pending.append(self.connect(nick))
                conns.append(pending[-1])
            pending = [c for c in pending if c.state != want]
            if not pending and len(conns) == len(nicks):
                return conns
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} IRC clients not {want} in {limit:.0f} s")
            self.pump(0.01)

    def write(self, conn: Conn, data: bytes) -> None:
        data = conn.out + data if conn.out else data
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        conn.out = data[sent:]

    def handshake(self, conn: Conn, data: bytes) -> None:
        """Follow registration (and the channel join) through the server's replies."""
        *lines, conn.scan = (conn.scan + data).split(b"\r\n")
        for line in lines:
            parts = line.split(b" ", 2)
            code = parts[1] if len(parts) > 1 else b""
            if code in FAILURES or line.startswith(b"ERROR "):
                self.errors += 1
                self.first_error = self.first_error or line[:200].decode(errors="replace")
            elif code == WELCOME and conn.state == "registering":
                conn.state = "registered"
                if conn.channels:
                    self.join(conn)
            elif code == END_OF_NAMES and conn.state == "joining":
                conn.joins_left -= 1
                if conn.joins_left == 0:
                    conn.state = "joined"
                    conn.scan = b""
                    return

    def join(self, conn: Conn) -> None:
        """Join each of the client's channels, with a JOIN each (as the chat ENTERs each)."""
        conn.state = "joining"
        conn.joins_left = len(conn.channels)
        self.write(conn, b"".join(b"JOIN %s\r\n" % channel for channel in conn.channels))

    def read(self, conn: Conn) -> int:
        try:
            data = conn.sock.recv(READ_BYTES)
        except BlockingIOError:
            return 0
        if not data:
            self.errors += 1
            self.first_error = self.first_error or f"{conn.nick}: connection closed"
            self.epoll.unregister(conn.sock.fileno())
            return 0
        if conn.state not in ("registered", "joined"):
            self.handshake(conn, data)
        # A word split between two reads is counted once, in the later one.
        tail = conn.tail
        n = count_in(tail, data, conn.pattern)
        conn.got += n
        if conn.foreign:
            conn.foreign_got += count_in(tail, data, conn.foreign)
        conn.tail = (
            data[1 - MAX_PATTERN :]
            if len(data) >= MAX_PATTERN
            else (tail + data)[1 - MAX_PATTERN :]
        )
        return n or 1

    def setup(self) -> dict[str, Any]:
        raise NotImplementedError  # each job builds its own clients

    def go(self, request: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError  # each job runs its own load

    def pump(self, timeout: float) -> int:
        n = 0
        conns = self.conns
        for fd, _ in self.epoll.poll(timeout):
            n += self.read(conns[fd])
        return n

    def close(self) -> None:
        for conn in self.conns.values():
            conn.sock.close()
        self.conns.clear()
        self.epoll.close()

    def result(self, **fields: Any) -> dict[str, Any]:
        return {"errors": self.errors, "first_error": self.first_error, **fields}


def privmsg(target: bytes) -> bytes:
    return b"PRIVMSG %s :%s\r\n" % (target, TEXT.encode())


class DirectJob(IrcJob):
    def setup(self) -> dict[str, Any]:
        pairs = self.request["pairs"]
        conns = self.register([n for pair in pairs for n in pair], join=False)
        self.pairs = [(conns[2 * i], conns[2 * i + 1]) for i in range(len(pairs))]
        return {}

    def go(self, request: dict[str, Any]) -> dict[str, Any]:
        window = self.window
        jobs = [(s, r, privmsg(r.nick.encode())) for s, r in self.pairs]
        # Messages already counted during setup (none expected) do not count.
        for s, r in self.pairs:
            s.sent = r.got

        def top_up() -> None:
            for sender, recipient, line in jobs:
                room = window - (sender.sent - recipient.got)
                if room > 0 and not sender.out:
                    self.write(sender, line * room)
                    sender.sent += room
                elif sender.out:
                    self.write(sender, b"")

        receivers = [r for _, r, _ in jobs]
        return run_load(self, request, lambda: sum(r.got for r in receivers), top_up)


class FanoutJob(IrcJob):
    def setup(self) -> dict[str, Any]:
        self.members = self.register(self.request["nicks"], join=True)
        by_nick = {c.nick: c for c in self.members}
        self.sender = by_nick.get(self.request.get("sender") or "")
        self.probe = by_nick.get(self.request.get("probe") or "")
        return {}

    def go(self, request: dict[str, Any]) -> dict[str, Any]:
        window = self.window
        members = self.members
        got0 = sum(m.got for m in members)
        top_up: Any = lambda: None  # noqa: E731
        sent = 0
        if self.sender is not None and self.probe is not None:
            sender, probe = self.sender, self.probe
            sender.sent = probe.got
            sent = -sender.sent
            line = privmsg(CHANNEL)

            def top_up() -> None:
                room = window - (sender.sent - probe.got)
                if room > 0 and not sender.out:
                    self.write(sender, line * room)
                    sender.sent += room
                elif sender.out:
                    self.write(sender, b"")

        delivered = lambda: sum(m.got for m in members)  # noqa: E731
        result = run_load(self, request, delivered, top_up)
        if self.sender is not None:
            # Whatever the sender could not write yet is not sent.
            deadline = time.monotonic() + TRAILING_LIMIT
            while self.sender.out and time.monotonic() < deadline:
                self.write(self.sender, b"")
                self.pump(0.001)
        trail(self)
        if self.sender is not None:
            sent += self.sender.sent
        # Every message sent, and every delivery counted, since the load started.
        result.update(sent=sent, total=sum(m.got for m in members) - got0)
        return result


class LatencyJob(IrcJob):
    recipient: Conn | None = None

    def setup(self) -> dict[str, Any]:
        self.samples: list[int] = []
        self.recording = False
        self.lines = b""
        self.sender, self.recipient = self.register(self.request["pair"], join=False)
        return {}

    def read(self, conn: Conn) -> int:
        if conn is not self.recipient or conn.state != "registered":
            return super().read(conn)
        try:
            data = conn.sock.recv(READ_BYTES)
        except BlockingIOError:
            return 0
        now = time.monotonic_ns()
        *lines, self.lines = (self.lines + data).split(b"\r\n")
        for line in lines:
            if WORD in line:
                conn.got += 1
                if self.recording:
                    self.samples.append(now - int(line.rsplit(b":", 1)[1]))
        return len(lines)

    def go(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.recipient is not None
        target = self.recipient.nick.encode()
        sender = self.sender

        def send_one() -> None:
            self.write(sender, b"PRIVMSG %s :%d\r\n" % (target, time.monotonic_ns()))

        sent = run_paced(self, request, self.request["rate"], send_one)
        samples = sorted(self.samples)
        return self.result(samples_us=[round(s / 1000, 1) for s in samples], sent=sent)


class IdleJob(IrcJob):
    def setup(self) -> dict[str, Any]:
        return {}

    def go(self, request: dict[str, Any]) -> dict[str, Any]:
        done, seconds = register_all(
            self,
            request,
            self.request["nicks"],
            self.request.get("concurrency", 200),
            self.connect,
            lambda conn: conn.state == "registered",
        )
        return self.result(registered=done, seconds=seconds)


class RoomsJob(IrcJob):
    """The chat's rooms job (bench.load.RoomsJob) with channels: members of channels, each
    counting its own channel's PRIVMSGs and any trace of `foreign`; the first channel is
    the measured one, the others are busy around it."""

    def setup(self) -> dict[str, Any]:
        specs = self.request["rooms"]
        foreign: bytes = self.request.get("foreign", "").encode()
        for spec in specs:
            for nick in spec["nicks"]:
                self.channels_of[nick] = [spec["room"].encode()]
        conns = self.register([n for spec in specs for n in spec["nicks"]], join=True)
        by_nick = {c.nick: c for c in conns}
        self.rooms: list[tuple[list[Conn], Conn | None, Conn | None, float, bytes]] = []
        for spec in specs:
            members = [by_nick[n] for n in spec["nicks"]]
            for conn in members:
                conn.pattern = b"PRIVMSG %s " % spec["room"].encode()
                conn.foreign = foreign
            self.rooms.append(
                (
                    members,
                    by_nick.get(spec.get("sender") or ""),
                    by_nick.get(spec.get("probe") or ""),
                    spec.get("rate", 0),
                    privmsg(spec["room"].encode()),
                )
            )
        return {}

    def go(self, request: dict[str, Any]) -> dict[str, Any]:
        window, start = self.window, request["start"]
        main, busy = self.rooms[0], self.rooms[1:]
        busy_members = [c for room in busy for c in room[0]]
        senders = [(s, p, rate, line) for _, s, p, rate, line in self.rooms if s and p]
        base = {s.nick: p.got for s, p, _, _ in senders}
        for sender, *_ in senders:
            sender.sent = 0
        got0 = sum(c.got for c in main[0])
        busy0 = sum(c.got for c in busy_members)

        def top_up() -> None:
            now = time.monotonic()
            for sender, probe, rate, line in senders:
                if sender.out:
                    self.write(sender, b"")
                    continue
                room = window - (sender.sent - (probe.got - base[sender.nick]))
                if rate:
                    room = min(room, int((now - start) * rate) + 1 - sender.sent)
                if room > 0:
                    self.write(sender, line * room)
                    sender.sent += room

        result = run_load(
            self,
            request,
            lambda: sum(c.got for c in main[0]),
            top_up,
            lambda: sum(c.got for c in busy_members),
        )
        # Whatever the senders could not write yet is not sent.
        deadline = time.monotonic() + TRAILING_LIMIT
        while any(s.out for s, *_ in senders) and time.monotonic() < deadline:
            for sender, *_ in senders:
                self.write(sender, b"")
            self.pump(0.001)
        trail(self)
        result.update(
            sent=main[1].sent if main[1] else 0,
            total=sum(c.got for c in main[0]) - got0,
            busy_sent=sum(s.sent for _, s, _, _, _ in busy if s),
            busy_total=sum(c.got for c in busy_members) - busy0,
            foreign=sum(c.foreign_got for c in main[0]),
            busy_foreign=sum(c.foreign_got for c in busy_members),
        )
        return result


class ManyRoomsJob(IrcJob):
    """Clients that, on "go", all JOIN their channels (request["rooms_of"])."""

    def setup(self) -> dict[str, Any]:
        self.members = self.register(list(self.request["rooms_of"]), join=False)
        return {}

    def go(self, request: dict[str, Any]) -> dict[str, Any]:
        rooms_of: dict[str, list[str]] = self.request["rooms_of"]
        limit: float = request.get("limit", 120.0)
        wait_until(request["start"])
        start = time.monotonic()
        for conn in self.members:
            conn.channels = [name.encode() for name in rooms_of[conn.nick]]
            self.join(conn)
        while any(c.state != "joined" for c in self.members):
            if time.monotonic() - start > limit:
                raise RuntimeError(f"not every channel joined in {limit:.0f} s")
            self.pump(0.01)
        entered = sum(len(c.channels) for c in self.members)
        return self.result(entered=entered, seconds=time.monotonic() - start)


JOBS = {
    "direct": DirectJob,
    "fanout": FanoutJob,
    "latency": LatencyJob,
    "idle": IdleJob,
    "rooms": RoomsJob,
    "manyrooms": ManyRoomsJob,
}


def make_job(request: dict[str, Any]) -> IrcJob:
    job: IrcJob = JOBS[request["job"]](request)
    return job


if __name__ == "__main__":
    serve(make_job)
