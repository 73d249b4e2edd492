"""Counting receivers that speak ZMTP 3 over a plain TCP socket, without libzmq.

    python -m bench.zmtp      self-check: raw counts against pyzmq's, on a real broker

A pyzmq receiver pays about 0.8 us per frame (5-6 us per 7-frame MESSAGE) in
`recv_multipart`, as much as the broker spends per delivery: with it the load generator,
not the system under test, would cap every ZeroMQ fan-out figure. IRC receivers
(bench.irc) count b"PRIVMSG" in the bytes they read; these do the same for ZeroMQ. A
`Reader` connects, sends its greeting (NULL mechanism) and READY with its socket type,
waits for the peer's, then sends its first message: a subscription to everything for a
SUB on the broker's stream, HELLO for a DEALER on bench.ceiling. From then on it reads
big chunks and counts occurrences of the encoded MESSAGE verb with `bytes.count`; a
pattern split between two reads is counted once, in the later one (the reader keeps the
last bytes of each read).

What is counted depends on the wire format. On the broker's stream, events travel packed
(`messages.pack_events`: several events in one ZMTP frame, each frame of an event as a
4-byte big-endian length and its bytes), so the MESSAGE verb is b"\x00\x00\x00\x07MESSAGE".
From the ceiling, each event is a 7-frame ZMTP message, and the verb frame is its short
frame header (flags 0x01 = more, size 7) and b"MESSAGE". No frame is parsed. That is
exact because these bytes cannot appear anywhere else: a length or size of 7 followed by
b"MESSAGE" is only ever the verb of a MESSAGE, whose text, nicks and numbers are plain
ASCII.

Ready markers: the stream's welcome (XPUB_WELCOME_MSG, a one-frame message: flags 0x00,
size 7, b"ZCHAT01"), which libzmq sends when it attaches the subscriber; the same bytes
also end the length-prefixed signature of every packed event, which likewise proves the
subscriber attached. bench.ceiling's WELCOME ends with a last frame (flags 0x00, size 7)
b"WELCOME".

Heartbeats: a libzmq peer with ZMQ_HEARTBEAT_IVL sends a PING command every interval and
drops the connection when nothing comes back within its timeout. A reader answers every
PING it sees whole within one read with a PONG (a PING split between two reads goes
unanswered; the next one, an interval later, is answered, and libzmq's timeout is several
intervals). The benchmark's broker pings every 600 s, so no PING arrives during a run; the
self-check below exercises the answer with a 100 ms heartbeat.
"""

import contextlib
import secrets
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Final

import zmq

from messages import (
    GENERAL_ROOM,
    STREAM_READY,
    encode,
    pack_events,
    split_topic,
    stream_topic,
    unpack_events,
)
from messages import commands as cmd

from .worker import READ_BYTES, count_in

#: Our half of the ZMTP 3.1 greeting: signature (0xFF, 8 bytes of padding, 0x7F),
#: version 3.1, mechanism NULL padded to 20 bytes, as-server 0, 31 bytes of filler.
GREETING: Final = (
    b"\xff" + bytes(8) + b"\x7f" + b"\x03\x01" + b"NULL".ljust(20, b"\x00") + b"\x00" + bytes(31)
)
#: The peer's greeting, which is skipped, not parsed (64 bytes, as ours).
GREETING_BYTES: Final = len(GREETING)
#: The MESSAGE verb frame of a multipart ZMTP message (from bench.ceiling).
MESSAGE_FRAME: Final = b"\x01\x07MESSAGE"
#: The MESSAGE verb inside a packed stream frame (`messages.pack_events`).
PACKED_MESSAGE: Final = b"\x00\x00\x00\x07MESSAGE"
#: The broadcast stream's welcome (XPUB_WELCOME_MSG = b"ZCHAT01", one frame).
STREAM_WELCOME: Final = b"\x00\x07ZCHAT01"
#: bench.ceiling's answer to HELLO ends with this frame.
CEILING_WELCOME: Final = b"\x00\x07WELCOME"
#: Subscriptions to STREAM_READY (a SUB drops what its subscriptions do not match) and to
#: #general's topic, as messages (ZMTP 3.0 style; libzmq 4.3 accepts them from 3.1 peers
#: too): each one frame, body b"\x01" + the topic.
_GENERAL_TOPIC: Final = stream_topic(GENERAL_ROOM)


def subscriptions(*topics: bytes, first: bool = True) -> bytes:
    """Subscriptions to `topics`, one message each, after those to STREAM_READY and
    #general's topic unless `first` is false (they were sent already)."""
    return b"".join(
        b"\x00" + bytes((1 + len(topic),)) + b"\x01" + topic
        for topic in ((STREAM_READY, _GENERAL_TOPIC) if first else ()) + topics
    )


SUBSCRIBE_GENERAL: Final = subscriptions()
PING: Final = b"\x04PING"
#: Every pattern searched for is at most this long; a read keeps this many bytes minus
#: one for the next.
_MAX_PATTERN: Final = 24


def posted_in(room: str) -> bytes:
    """The POSTED verb of a room's event and its room frame, inside a packed stream frame:
    a POSTED of `room` and of no other room (its length prefix ends the name)."""
    name = room.encode()
    return b"POSTED" + len(name).to_bytes(4, "big") + name


def command(name: bytes, body: bytes) -> bytes:
    """A ZMTP command frame: flags (0x04 short / 0x06 long), size, name length, name, body."""
    payload = bytes([len(name)]) + name + body
    if len(payload) < 256:
        return b"\x04" + bytes([len(payload)]) + payload
    return b"\x06" + struct.pack(">Q", len(payload)) + payload


def ready(socket_type: bytes) -> bytes:
    """The NULL mechanism's READY command naming our socket type (and, as libzmq's DEALER
    does, an empty Identity)."""
    properties = b"\x0bSocket-Type" + struct.pack(">I", len(socket_type)) + socket_type
    if socket_type in (b"DEALER", b"ROUTER", b"REQ"):
        properties += b"\x08Identity" + struct.pack(">I", 0)
    return command(b"READY", properties)


def message(*frames: bytes) -> bytes:
    """A ZMTP message: each frame with the more flag but the last (short or long form)."""
    out = bytearray()
    for index, frame in enumerate(frames):
        more = 1 if index < len(frames) - 1 else 0
        if len(frame) < 256:
            out += bytes([more, len(frame)])
        else:
            out += bytes([more | 2]) + struct.pack(">Q", len(frame))
        out += frame
    return bytes(out)


class Reader:
    """One ZMTP connection that counts `pattern` in what it reads.

    `first` is the message sent once the handshake is done (a subscription or a HELLO);
    `ready_marker` is the encoded frame that says the peer is sending us what we want (the
    stream's welcome; the ceiling's WELCOME). Call `read` whenever the socket is readable:
    it completes the handshake, then counts. A non-empty `foreign` is counted too, in
    `foreign_got`: bytes this reader should never see (another room's name).
    """

    __slots__ = (
        "closed",
        "first",
        "foreign",
        "foreign_got",
        "got",
        "greeted",
        "is_ready",
        "marker",
        "nick",
        "pattern",
        "sock",
        "tail",
    )

    def __init__(
        self,
        address: tuple[str, int],
        socket_type: bytes,
        first: bytes,
        ready_marker: bytes,
        pattern: bytes = MESSAGE_FRAME,
        nick: str = "",
        foreign: bytes = b"",
    ) -> None:
        assert max(len(pattern), len(ready_marker), len(foreign)) <= _MAX_PATTERN
        self.nick = nick
        self.pattern = pattern
        self.foreign = foreign
        self.foreign_got = 0
        self.marker = ready_marker
        self.first = first
        self.got = 0
        #: The peer's greeting and READY, until both are in (then None).
        self.greeted: bytes | None = b""
        self.is_ready = False
        self.closed = False
        self.tail = b""
        self.sock = socket.create_connection(address, timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Greeting and READY in one write; libzmq reads the greeting, then READY. The first
        # message must wait for the peer's READY: libzmq takes anything that arrives before
        # it has sent its own READY for a handshake command, and fails the handshake.
        self.sock.sendall(GREETING + ready(socket_type))
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, size: int = READ_BYTES) -> int:
        """Read once (the socket must be non-blocking): how many patterns were counted, or
        -1 when the peer closed the connection or refused the handshake."""
        try:
            data = self.sock.recv(size)
        except BlockingIOError:
            return 0
        except ConnectionError:
            data = b""
        if not data:
            self.closed = True
            return -1
        if self.greeted is not None:
            data = self._handshake(self.greeted + data)
            if self.closed:
                return -1
            if not data:
                return 0
        tail = self.tail
        n = count_in(tail, data, self.pattern)
        self.got += n
        if self.foreign:
            self.foreign_got += count_in(tail, data, self.foreign)
        if not self.is_ready:
            marker = self.marker
            if marker in data or marker in tail[1 - len(marker) :] + data[: len(marker) - 1]:
                self.is_ready = True
        if PING in data:
            self._pong(data)
        if len(data) >= _MAX_PATTERN:
            self.tail = data[1 - _MAX_PATTERN :]
        else:
            self.tail = (tail + data)[1 - _MAX_PATTERN :]
        return n

    def _handshake(self, data: bytes) -> bytes:
        """Wait for the peer's greeting and READY command in `data`; once both are in,
        send our first message. What follows them (already the first messages)."""
        end = 0
        if len(data) >= GREETING_BYTES + 2:
            flags = data[GREETING_BYTES]
            if flags == 0x04:
                end = GREETING_BYTES + 2 + data[GREETING_BYTES + 1]
                name_at = GREETING_BYTES + 2
            elif flags == 0x06 and len(data) >= GREETING_BYTES + 9:
                size = struct.unpack_from(">Q", data, GREETING_BYTES + 1)[0]
                end = GREETING_BYTES + 9 + size
                name_at = GREETING_BYTES + 9
            else:
                end = -1 if flags not in (0x04, 0x06) else 0
        if end == 0 or 0 < len(data) < end:
            self.greeted = data
            return b""
        if end < 0 or not data.startswith(b"\x05READY", name_at):
            # An ERROR command (or not ZMTP): the peer refused us.
            self.close()
            return b""
        self.greeted = None
        self.send(self.first)
        return data[end:]

    def send(self, data: bytes) -> None:
        """Send `data` whole (subscriptions: a few hundred bytes at most)."""
        self.sock.setblocking(True)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.setblocking(False)

    def _pong(self, data: bytes) -> None:
        start = 0
        while (at := data.find(PING, start)) >= 0:
            start = at + 1
            # A short command: flags 0x04, size, then b"\x04PING", a 2-byte TTL, a context.
            if at < 2 or data[at - 2] != 0x04:
                continue
            context = data[at + 7 : at + data[at - 1]]
            with contextlib.suppress(OSError):
                self.sock.send(command(b"PONG", context))

    def close(self) -> None:
        self.sock.close()
        self.closed = True


def subscriber(host: str, port: int, nick: str = "") -> Reader:
    """A SUB reader of the broker's broadcast stream, subscribed to #general: counts its
    MESSAGEs."""
    return Reader((host, port), b"SUB", SUBSCRIBE_GENERAL, STREAM_WELCOME, PACKED_MESSAGE, nick)


def room_subscriber(host: str, port: int, nick: str, room: str, foreign: bytes = b"") -> Reader:
    """A SUB reader of the broker's stream subscribed to #general and `room` (whose ROOM
    answer has come: the broker applies a subscription only to a room that exists), as a
    member of `room` subscribes: counts the POSTEDs of `room`, and `foreign`."""
    first = subscriptions(stream_topic(room))
    return Reader((host, port), b"SUB", first, STREAM_WELCOME, posted_in(room), nick, foreign)


def ceiling_dealer(host: str, port: int, nick: str) -> Reader:
    """A DEALER reader registered with bench.ceiling under `nick`."""
    hello = message(b"HELLO", nick.encode())
    return Reader((host, port), b"DEALER", hello, CEILING_WELCOME, nick=nick)


def tcp_address(endpoint: str) -> tuple[str, int]:
    """("127.0.0.1", 5555) from "tcp://127.0.0.1:5555"."""
    host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    return host, int(port)


# -- self-check ---------------------------------------------------------------------------


def _pump(readers: list[Reader], seconds: float, size: int = READ_BYTES) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready_list, _, _ = select.select(readers, [], [], min(left, 0.01))
        for reader in ready_list:
            reader.read(size)


@contextlib.contextmanager
def _launched(
    module: str, problems: list[str]
) -> Iterator[tuple[str, zmq.Context[zmq.Socket[bytes]]]]:
    """A server (`python -m module --bind ...`) on a loopback port, its endpoint and a
    context for the sockets that talk to it; a server slow to stop is a problem."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--bind", "tcp://127.0.0.1:*"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().decode().strip(), ctx
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            problems.append(f"{proc.args!r} did not stop within 10 s of SIGTERM")
        ctx.destroy(linger=0)


def check_broker(messages: int = 3000, room: str = "") -> list[str]:
    """Counts of raw SUB readers (big and tiny reads) against a pyzmq SUB's, on the
    benchmark's broker, of #general's MESSAGEs or, given `room`, of its POSTEDs while the
    sender posts as much in another room (#busy-0), of which the readers, subscribed to
    `room` only, must see no byte; the problems found."""
    problems: list[str] = []
    other = "#busy-0"
    with _launched("bench.launch", problems) as (endpoint, ctx):
        host, _ = tcp_address(endpoint)
        sender = ctx.socket(zmq.DEALER)
        sender.setsockopt(zmq.LINGER, 0)
        sender.connect(endpoint)
        sender.send_multipart(encode(cmd.Hello("sender", secrets.token_urlsafe(16), True)))
        welcome = sender.recv_multipart()
        port = int(welcome[-1])
        for name in (room, other) if room else ():
            sender.send_multipart(encode(cmd.Enter(name)))
            while sender.recv_multipart()[1] != b"ROOM":
                pass
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 0)
        for topic in (STREAM_READY, _GENERAL_TOPIC, *([stream_topic(room)] if room else [])):
            sub.setsockopt(zmq.SUBSCRIBE, topic)
        sub.connect(f"tcp://{host}:{port}")

        def reader() -> Reader:
            if room:
                return room_subscriber(host, port, "", room, foreign=other.encode())
            return subscriber(host, port)

        big = [reader() for _ in range(3)]
        tiny = [reader() for _ in range(2)]
        # Wait for every welcome (the broker sends it when it attaches the subscriber).
        deadline = time.monotonic() + 10
        sub_ready = False
        while not (sub_ready and all(r.is_ready for r in big + tiny)):
            if time.monotonic() > deadline:
                problems.append("stream welcome never arrived")
                return problems
            _pump(big, 0.02)
            _pump(tiny, 0.02, 5)
            while sub.poll(0):
                if sub.recv_multipart() == [STREAM_READY]:
                    sub_ready = True
        time.sleep(0.1)
        _pump(big, 0.05)
        _pump(tiny, 0.05, 5)
        base = [r.got for r in big + tiny]
        # Drain the pyzmq SUB of what came before (JOINs).
        while sub.poll(50):
            sub.recv_multipart()
        text = "benchmark message: 64 bytes of chat text, the same."
        template, index = (
            (encode(cmd.Post(room, "0", text)), 3) if room else (encode(cmd.Say("0", text)), 2)
        )
        elsewhere = encode(cmd.Post(other, "0", text))
        verb = b"POSTED" if room else b"MESSAGE"
        pyzmq_count = 0
        for i in range(1, messages + 1):
            template[index] = b"%d" % i
            sender.send_multipart(template)
            if room:
                elsewhere[3] = b"x%d" % i
                sender.send_multipart(elsewhere)
            if i % 100 == 0:
                _pump(big, 0.001)
                _pump(tiny, 0.001, 5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and pyzmq_count < messages:
            if sub.poll(10):
                frames = sub.recv_multipart()
                if frames != [STREAM_READY]:
                    # Decoded, independently of the raw count: one frame of packed events.
                    (framed,) = frames
                    _, packed = split_topic(framed)
                    pyzmq_count += sum(e[1] == verb for e in unpack_events(packed))
        _pump(big, 0.3)
        _pump(tiny, 1.0, 5)
        raw = [r.got - b for r, b in zip(big + tiny, base, strict=True)]
        what = f"POSTs in {room} (and as many in {other})" if room else "SAYs"
        print(f"broker: {messages} {what}; pyzmq SUB counted {pyzmq_count}; raw SUBs {raw}")
        if pyzmq_count != messages or any(n != pyzmq_count for n in raw):
            problems.append(f"counts differ: pyzmq {pyzmq_count}, raw {raw}, sent {messages}")
        if leaked := sum(r.foreign_got for r in big + tiny):
            problems.append(f"{leaked} traces of {other} reached readers of {room} only")
        for r in big + tiny:
            r.close()
        sender.close()
        sub.close()
    return problems


def check_ceiling(messages: int = 3000) -> list[str]:
    """Raw DEALER readers against a pyzmq DEALER's count, on bench.ceiling."""
    problems: list[str] = []
    with _launched("bench.ceiling", problems) as (endpoint, ctx):
        host, port = tcp_address(endpoint)
        sender = ctx.socket(zmq.DEALER)
        sender.setsockopt(zmq.LINGER, 0)
        sender.connect(endpoint)
        sender.send_multipart([b"HELLO", b"sender"])
        sender.recv_multipart()
        readers = [ceiling_dealer(host, port, f"r{i}") for i in range(3)]
        _pump(readers, 0.3)
        if not all(r.is_ready for r in readers):
            problems.append("ceiling WELCOME not seen by every raw DEALER")
        event = [b"ZCHAT01", b"MESSAGE", b"1", b"0", b"sender", b"text", b"1700000000000"]
        for i in range(1, messages + 1):
            event[3] = b"%d" % i
            sender.send_multipart([b"ALL", *event])
            if i % 100 == 0:
                _pump(readers, 0.001)
        count = 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and count < messages:
            if sender.poll(10):
                count += sender.recv_multipart()[1] == b"MESSAGE"
        _pump(readers, 0.3)
        raw = [r.got for r in readers]
        print(f"ceiling: {messages} ALLs; pyzmq DEALER counted {count}; raw DEALERs {raw}")
        if count != messages or any(n != count for n in raw):
            problems.append(f"counts differ: pyzmq {count}, raw {raw}, sent {messages}")
        for r in readers:
            r.close()
        sender.close()
    return problems


def check_heartbeat() -> list[str]:
    """A raw SUB stays connected to an XPUB that pings every 100 ms and gives up after
    300 ms of silence: it answers PINGs."""
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.setsockopt(zmq.HEARTBEAT_IVL, 100)
    pub.setsockopt(zmq.HEARTBEAT_TIMEOUT, 300)
    pub.setsockopt(zmq.XPUB_WELCOME_MSG, b"ZCHAT01")
    pub.bind("tcp://127.0.0.1:*")
    host, port = tcp_address(pub.getsockopt_string(zmq.LAST_ENDPOINT))
    reader = subscriber(host, port)
    problems: list[str] = []
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            # Polling lets the XPUB attach the subscriber and take its subscription.
            if pub.poll(10):
                pub.recv()
            _pump([reader], 0.01)
        frames = [b"ZCHAT01", b"MESSAGE", b"1", b"1", b"x", b"y", b"1"]
        pub.send(_GENERAL_TOPIC + pack_events([frames]))
        _pump([reader], 0.2)
        print(f"heartbeat: after 1.5 s of 100 ms PINGs, closed={reader.closed}, got={reader.got}")
        if reader.closed or reader.got != 1 or not reader.is_ready:
            problems.append("the raw SUB did not survive libzmq's heartbeat")
    finally:
        reader.close()
        pub.close()
        ctx.destroy(linger=0)
    return problems


def main() -> int:
    problems = check_broker() + check_broker(room="#fan") + check_ceiling() + check_heartbeat()
    for problem in problems:
        print("FAILED:", problem)
    if not problems:
        print("ok: raw ZMTP readers count what pyzmq receives")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
