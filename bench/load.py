"""ZeroMQ load generator: one worker process driving many DEALER clients.

    python -m bench.load     (driven by bench.run through bench.worker's line protocol)

It speaks two dialects over the same sockets: "chat", the broker's protocol (commands
built with `messages.encode`), and "ceiling", bench.ceiling's relay verbs carrying the
very frames the broker would deliver. Receivers count deliveries by frame 1 only
(b"PRIVATE", b"MESSAGE"), without decoding.

Jobs:
  direct   pairs of (sender, recipient), both held here; each sender keeps at most
           `window` messages in flight (sent and not yet counted at its recipient)
  fanout   members of one broadcast group; the worker holding the sender also holds a
           probe member, and the sender keeps at most `window` broadcasts ahead of it
  latency  one pair; the sender sends at a fixed rate, the message id carries the send
           time (ns), the recipient records the difference
  idle     connect and register `nicks`, at most `concurrency` waiting at a time
"""

import itertools
import secrets
import time
from typing import Any

import zmq

from messages import SIGNATURE, encode
from messages import commands as cmd

from .worker import register_all, run_paced, serve, wait_until

TEXT = "benchmark message: 64 bytes of chat text, the same on every run."
NOBLOCK = zmq.NOBLOCK
#: Most messages read from one socket before looking at the others.
DRAIN_BATCH = 512


class Client:
    __slots__ = ("got", "nick", "sent", "sock", "welcomed")

    def __init__(self, sock: zmq.Socket, nick: str) -> None:  # type: ignore[type-arg]
        self.sock = sock
        self.nick = nick
        self.got = 0
        self.sent = 0
        self.welcomed = False


class Dialect:
    """How a client registers and asks for a delivery; frames are prebuilt once."""

    def __init__(self, name: str) -> None:
        self.chat = name == "chat"

    def hello(self, nick: str) -> list[bytes]:
        if self.chat:
            return encode(cmd.Hello(nick, secrets.token_hex(8)))
        return [b"HELLO", nick.encode()]

    def direct(self, sender: str, recipient: str) -> tuple[list[bytes], int]:
        """Frames asking for a private message, and the index of its msg_id frame."""
        if self.chat:
            return encode(cmd.Tell("0", recipient, TEXT)), 2
        event = [SIGNATURE, b"PRIVATE", b"0", sender.encode(), recipient.encode(), TEXT.encode()]
        return [b"TO", recipient.encode(), *event, b"1700000000000"], 4

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
        self.ctx = zmq.Context()
        self.ctx.max_sockets = 32768
        self.poller = zmq.Poller()
        self.clients: dict[Any, Client] = {}
        self.errors = 0
        self.first_error = ""

    # -- clients -------------------------------------------------------------------

    def connect(self, nick: str) -> Client:
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        # Unlimited: libzmq's I/O thread takes everything off the connection at once,
        # so a momentarily busy worker never pushes back on the system under test.
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.connect(self.endpoint)
        client = Client(sock, nick)
        self.clients[sock] = client
        self.poller.register(sock, zmq.POLLIN)
        sock.send_multipart(self.dialect.hello(nick))
        return client

    def register(self, nicks: list[str], limit: float = 60.0) -> list[Client]:
        clients = [self.connect(nick) for nick in nicks]
        deadline = time.monotonic() + limit
        while not all(c.welcomed for c in clients):
            if time.monotonic() > deadline:
                missing = sum(not c.welcomed for c in clients)
                raise RuntimeError(f"{missing} clients not registered in {limit:.0f} s")
            self.pump(0.05)
        return clients

    def drain(self, client: Client) -> int:
        recv = client.sock.recv_multipart
        verb = self.verb
        n = 0
        try:
            while n < DRAIN_BATCH:
                frames = recv(NOBLOCK)
                n += 1
                if frames[1] == verb:
                    client.got += 1
                else:
                    self.other(client, frames)
        except zmq.Again:
            pass
        return n

    def other(self, client: Client, frames: list[bytes]) -> None:
        kind = frames[1]
        if kind == b"WELCOME":
            client.welcomed = True
        elif kind in (b"ERROR", b"KICKED", b"SHUTDOWN"):
            self.errors += 1
            if not self.first_error:
                self.first_error = repr(frames[1:])[:300]

    def setup(self) -> dict[str, Any]:
        raise NotImplementedError  # each job builds its own clients

    def go(self, request: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError  # each job runs its own load

    def pump(self, timeout: float) -> int:
        n = 0
        clients = self.clients
        for sock, _ in self.poller.poll(round(timeout * 1000)):
            n += self.drain(clients[sock])
        return n

    def close(self) -> None:
        for sock in self.clients:
            sock.close(linger=0)
        self.clients.clear()
        self.ctx.term()

    def result(self, **fields: Any) -> dict[str, Any]:
        return {"errors": self.errors, "first_error": self.first_error, **fields}

    # -- the measuring loop ----------------------------------------------------------

    def run(self, request: dict[str, Any], delivered: Any, top_up: Any) -> dict[str, Any]:
        """Call `top_up` and read until the window ends; count `delivered()` within it."""
        start = request["start"]
        count_from = start + request["warm"]
        end = count_from + request["window"]
        wait_until(start)
        first = cpu0 = None
        pump = self.pump
        while True:
            now = time.monotonic()
            if first is None and now >= count_from:
                first, cpu0 = delivered(), time.process_time()
            if now >= end:
                break
            top_up()
            pump(0.002)
        assert first is not None and cpu0 is not None
        return self.result(
            count=delivered() - first, cpu=time.process_time() - cpu0, seconds=now - count_from
        )


class DirectJob(ZmqJob):
    def setup(self) -> dict[str, Any]:
        pairs = self.request["pairs"]
        clients = self.register([n for pair in pairs for n in pair])
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
        return self.run(request, lambda: sum(r.got for r in receivers), top_up)


class FanoutJob(ZmqJob):
    verb = b"MESSAGE"

    def setup(self) -> dict[str, Any]:
        self.members = self.register(self.request["nicks"])
        by_nick = {c.nick: c for c in self.members}
        self.sender = by_nick.get(self.request.get("sender") or "")
        self.probe = by_nick.get(self.request.get("probe") or "")
        return {}

    def go(self, request: dict[str, Any]) -> dict[str, Any]:
        window = self.window
        members = self.members
        top_up: Any = lambda: None  # noqa: E731
        if self.sender is not None and self.probe is not None:
            sender, probe = self.sender, self.probe
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

        return self.run(request, lambda: sum(m.got for m in members), top_up)


class LatencyJob(ZmqJob):
    recipient: Client | None = None

    def setup(self) -> dict[str, Any]:
        self.samples: list[int] = []
        self.recording = False
        self.sender, self.recipient = self.register(self.request["pair"])
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
        return {}

    def go(self, request: dict[str, Any]) -> dict[str, Any]:
        done, seconds = register_all(
            self,
            request,
            self.request["nicks"],
            self.request.get("concurrency", 200),
            self.connect,
            lambda client: client.welcomed,
        )
        return self.result(registered=done, seconds=seconds)


JOBS = {"direct": DirectJob, "fanout": FanoutJob, "latency": LatencyJob, "idle": IdleJob}


def make_job(request: dict[str, Any]) -> ZmqJob:
    job: ZmqJob = JOBS[request["job"]](request)
    return job


if __name__ == "__main__":
    serve(make_job)
