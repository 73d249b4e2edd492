"""The broker's socket loop: the only module that touches ZeroMQ.

One ROUTER socket, polled together with a wake-up socket (for shutdown requests from
signal handlers or other threads) and, optionally, the operator's terminal; one XPUB
socket publishes the broadcast stream, so that libzmq, not Python, copies each broadcast
to every subscriber. Everything else is decided by `ChatCore`.
"""

import contextlib
import fcntl
import gc
import logging
import math
import os
import queue
import socket
import sys
import termios
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import zmq

from messages import (
    FETCH_LIMIT,
    HEARTBEAT_INTERVAL_MS,
    HEARTBEAT_LIVENESS,
    MAX_WIRE_FRAME_BYTES,
    STREAM_READY,
    USERS_PAGE_BYTES,
    ErrorCode,
    encode,
    pack_events,
)
from messages import events as ev

from .acks import PendingAcks
from .console import run_console_line
from .core import STREAM, ChatCore, Outgoing
from .ratelimit import FloodPolicy
from .session import Identity

log = logging.getLogger(__name__)

DEFAULT_BIND: Final = "tcp://127.0.0.1:5555"
#: Messages queued towards one client before it counts as not reading (ZMQ_SNDHWM): room
#: for two whole answers to FETCH, so that a client catching up is not taken for one that
#: stopped reading.
SEND_HWM_MESSAGES: Final = 2 * FETCH_LIMIT
#: The kernel's send buffer of each client connection, in bytes (ZMQ_SNDBUF; Linux doubles
#: it): a fixed size, where the default grows to megabytes for a peer that does not read.
SEND_BUFFER_BYTES: Final = 256 * 1024
#: Commands answered with up to FETCH_REPLY_BYTES: the core needs to know whether the
#: client reads what it was sent.
_LARGE_ANSWERS: Final = ([b"FETCH"], [b"USERS"])
#: Messages queued from one client before libzmq stops reading its connection.
RECEIVE_HWM_MESSAGES: Final = 1000
#: Pending TCP connections the listening socket holds (ZMQ_BACKLOG); the default of 100
#: makes thousands of clients connecting at once wait for SYN retries.
LISTEN_BACKLOG: Final = 4096
#: How long a peer may take over the ZMTP handshake (ZMQ_HANDSHAKE_IVL), in ms.
HANDSHAKE_TIMEOUT_MS: Final = 5000
#: On shutdown, how long to keep flushing the SHUTDOWN notice to clients, in ms.
SHUTDOWN_LINGER_MS: Final = 2000
#: Stream frames queued towards one subscriber before the stream skips frames for it: a
#: slow reader loses its place, not the broker's memory (at most about this many times
#: STREAM_FRAME_BYTES), and FETCHes the gap.
STREAM_HWM_MESSAGES: Final = 100
#: A stream frame is closed once its packed events reach this size, in bytes (one event
#: may take it past).
STREAM_FRAME_BYTES: Final = 16 * 1024
#: Longest message a stream subscriber may send, in bytes: its subscription, and the
#: CurveZMQ handshake (whose INITIATE command is about 300 bytes) counts too.
STREAM_MAX_INBOUND_BYTES: Final = 1024
#: Python's garbage collector thresholds while serving (gc.set_threshold): new container
#: objects before a young collection, then young and middle collections before the next
#: older one (the defaults are 700, 10, 10).
GC_THRESHOLDS: Final = (50_000, 100, 100)
#: Most messages handled per socket per poll, so the terminal and timers are not starved.
RECEIVE_BATCH: Final = 256
#: libzmq starts the routing ids it assigns with a zero byte; ids peers set never do.
ROUTER_ASSIGNED_PREFIX: Final = b"\x00"
_MORE_FLAGS: Final = int(zmq.SNDMORE | zmq.NOBLOCK)
#: Size of the C int the TIOCOUTQ ioctl fills in.
_INT_BYTES: Final = 4
_LAST_FLAGS: Final = int(zmq.NOBLOCK)
_CHOSEN_ROUTING_ID: Final = ev.Error(
    ErrorCode.MALFORMED, "", "clients must not set a routing id (ZMQ_ROUTING_ID)"
)


@dataclass(frozen=True)
class BrokerConfig:
    """How to run a broker."""

    bind: str = DEFAULT_BIND
    #: Where the broadcast stream is published; None: the port after `bind`'s (any free
    #: port if `bind`'s is `*`).
    stream: str | None = None
    admin_token: str = ""
    heartbeat_ms: int = HEARTBEAT_INTERVAL_MS
    flood: FloodPolicy = field(default_factory=FloodPolicy)
    #: The broker's CurveZMQ secret key (Z85): encrypts every connection when set.
    curve_secret_key: bytes | None = None
    #: Read operator commands from this file descriptor (normally the terminal's); None
    #: for none.
    console_fd: int | None = None
    #: Most bytes of nicks in one USERS page.
    users_page_bytes: int = USERS_PAGE_BYTES


class BrokerServer:
    """A ROUTER socket bound at `config.bind`, serving a `ChatCore` until shut down.

    The socket is bound on construction, so `endpoint` is known (with a `*` port it names
    the port chosen) before `run` starts. `request_shutdown` may be called from any thread
    or from a signal handler.
    """

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        # A send to a vanished or saturated client must fail loudly, not be dropped.
        self._socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._socket.setsockopt(zmq.MAXMSGSIZE, MAX_WIRE_FRAME_BYTES)
        self._socket.setsockopt(zmq.SNDHWM, SEND_HWM_MESSAGES)
        self._socket.setsockopt(zmq.RCVHWM, RECEIVE_HWM_MESSAGES)
        self._socket.setsockopt(zmq.SNDBUF, SEND_BUFFER_BYTES)
        self._socket.setsockopt(zmq.BACKLOG, LISTEN_BACKLOG)
        self._stream = self._context.socket(zmq.XPUB)
        self._stream.setsockopt(zmq.SNDHWM, STREAM_HWM_MESSAGES)
        self._stream.setsockopt(zmq.MAXMSGSIZE, STREAM_MAX_INBOUND_BYTES)
        # Tells a subscriber its connection is attached: the moment to FETCH what was
        # published before (anything lost later shows as a gap).
        self._stream.setsockopt(zmq.XPUB_WELCOME_MSG, STREAM_READY)
        for sock in (self._socket, self._stream):
            sock.setsockopt(zmq.BACKLOG, LISTEN_BACKLOG)
            sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_TIMEOUT_MS)
            # Transport-level heartbeats close dead TCP connections, freeing their buffers;
            # the chat-level PING in the core is what frees a vanished user's nick.
            sock.setsockopt(zmq.HEARTBEAT_IVL, config.heartbeat_ms)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_LIVENESS * config.heartbeat_ms)
            sock.setsockopt(zmq.LINGER, 0)
            if config.curve_secret_key is not None:
                # Clients must know the matching public key to complete the handshake.
                sock.curve_server = True
                sock.curve_secretkey = config.curve_secret_key
        try:
            self._socket.bind(config.bind)
            self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
            self._stream.bind(config.stream or stream_endpoint(config.bind))
            #: Where the broadcast stream is published.
            self.stream_endpoint: str = self._stream.getsockopt_string(zmq.LAST_ENDPOINT)
            stream_port = endpoint_port(self.stream_endpoint)
        except (zmq.ZMQError, ValueError):
            self._socket.close()
            self._stream.close()
            self._context.term()
            raise
        self.core = ChatCore(
            config.admin_token,
            config.heartbeat_ms,
            config.flood,
            stream_port=stream_port,
            users_page_bytes=config.users_page_bytes,
        )
        self._acks = PendingAcks()
        # Broadcasts (encoded) waiting to be published together at the end of this turn
        # of the loop.
        self._unpublished: list[list[bytes]] = []
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._shutdown_reasons: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._console_buffer = b""

    def request_shutdown(self, reason: str) -> None:
        """Ask the loop to notify every client with `reason` and stop."""
        self._shutdown_reasons.put(reason)
        # OSError: already awake (a byte is pending), or the loop has finished.
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    def run(self) -> None:
        """Serve until a shutdown (requested, by an operator or from the console)."""
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        # Polling the stream socket is what lets libzmq attach new subscribers (and send
        # them the ready message) promptly, not at the next broadcast.
        poller.register(self._stream, zmq.POLLIN)
        # pyzmq's poll reports plain sockets and files by their descriptor.
        wake_fd = self._wake_reader.fileno()
        poller.register(wake_fd, zmq.POLLIN)
        console = self.config.console_fd
        if console is not None:
            poller.register(console, zmq.POLLIN)
        sweep_interval = self.config.heartbeat_ms / 1000
        next_sweep = time.monotonic() + sweep_interval
        try:
            while not self.core.stopped:
                timeout_ms = max(0, math.ceil((next_sweep - time.monotonic()) * 1000))
                ready = dict(poller.poll(timeout_ms))
                if self._socket in ready:
                    self._receive_batch()
                if self._stream in ready:
                    self._drain_subscriptions()
                if wake_fd in ready:
                    self._drain_shutdown_requests()
                if console is not None and console in ready and not self._read_console(console):
                    poller.unregister(console)
                    console = None
                now = time.monotonic()
                if now >= next_sweep:
                    self._send(self.core.expire(now))
                    self._send(self.core.tick())
                    next_sweep = now + sweep_interval
                self._publish()
        finally:
            try:
                self._publish()
            finally:
                self._close()

    def _receive_batch(self) -> None:
        try:
            self._receive_some()
        finally:
            # A client that sent several messages gets one ACK for all of them.
            self._send(self._acks.flush())

    def _receive_some(self) -> None:
        for _ in range(RECEIVE_BATCH):
            try:
                # The identity part as a Frame: it knows the peer's network address.
                identity = self._socket.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            frames = self._receive_rest() if identity.more else []
            if not identity.bytes.startswith(ROUTER_ASSIGNED_PREFIX):
                # A routing id the client chose: whoever reconnects with it would speak
                # for the session it names. Only ids libzmq assigns are accepted.
                self._send([(identity.bytes, _CHOSEN_ROUTING_ID)])
                continue
            # Only HELLO needs the address (joins are limited per address); the lookup
            # is not free, so skip it for everything else.
            peer = str(identity.get("Peer-Address")) if frames[1:2] == [b"HELLO"] else ""
            unsent = unsent_bytes(identity) if frames[1:2] in _LARGE_ANSWERS else 0
            outgoing = self.core.receive(identity.bytes, frames, time.monotonic(), peer, unsent)
            if self.core.stopped:
                # Nothing may follow SHUTDOWN: what was accepted before it is ACKed first.
                self._send(self._acks.flush())
            self._send(self._acks.hold(outgoing))
            if self.core.stopped:
                return

    def _receive_rest(self) -> list[bytes]:
        """The remaining frames of a message whose first frame was received."""
        # Frames know whether more follow; recv_multipart asks the socket with a getsockopt
        # per frame, which costs a third of the receive.
        recv = self._socket.recv
        frame = recv(zmq.NOBLOCK, copy=False)
        frames = [frame.bytes]
        while frame.more:
            frame = recv(zmq.NOBLOCK, copy=False)
            frames.append(frame.bytes)
        return frames

    def _drain_shutdown_requests(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_reader.recv(4096):
                pass
        while not self._shutdown_reasons.empty():
            self._send(self.core.shutdown(self._shutdown_reasons.get()))

    def _read_console(self, fd: int) -> bool:
        """Run the operator lines that arrived; False once the terminal is closed."""
        # Raw reads, not a buffered readline: a buffered line would hide from poll.
        data = os.read(fd, 4096)
        if not data:
            log.info("operator console closed; still serving (stop with SIGINT or SIGTERM)")
            return False
        self._console_buffer += data
        *lines, self._console_buffer = self._console_buffer.split(b"\n")
        for line in lines:
            result = run_console_line(self.core, line.decode("utf-8", "replace"))
            for text in result.output:
                print(text, flush=True)
            self._send(result.outgoing)
        return True

    def _send(self, outgoing: Iterable[Outgoing]) -> None:
        pending = deque(outgoing)
        # A broadcast is one event object for many identities: encode it once. The cache
        # holds the event too, so its id() cannot be reused by a newer event meanwhile.
        encoded: dict[int, tuple[ev.BrokerEvent, list[bytes]]] = {}
        while pending:
            identity, event = pending.popleft()
            cached = encoded.get(id(event))
            if cached is None:
                cached = encoded[id(event)] = (event, encode(event))
            if identity == STREAM:
                self._unpublished.append(cached[1])
                continue
            try:
                self._send_frames(identity, cached[1])
            except zmq.ZMQError as exc:
                pending.extend(self._unreachable(identity, exc))

    def _send_frames(self, identity: Identity, frames: list[bytes]) -> None:
        # send_multipart combines enum flags for every frame, a quarter of the broker's time
        # in a large fan-out; plain int flags cost nothing. With ROUTER_MANDATORY an
        # unreachable or saturated peer fails on the identity frame, before any body.
        send = self._socket.send
        send(identity, _MORE_FLAGS)
        for frame in frames[:-1]:
            send(frame, _MORE_FLAGS)
        send(frames[-1], _LAST_FLAGS)

    def _publish(self) -> None:
        """Publish the broadcasts of this turn, packed into as few frames as they fit."""
        if not self._unpublished:
            return  # most turns of the loop broadcast nothing
        pending, self._unpublished = self._unpublished, []
        start, size = 0, 0
        for end, frames in enumerate(pending, 1):
            size += sum(map(len, frames))
            if size >= STREAM_FRAME_BYTES or end == len(pending):
                # XPUB never blocks: a subscriber whose queue is full skips this frame.
                self._stream.send(pack_events(pending[start:end]), _LAST_FLAGS)
                start, size = end, 0

    def _drain_subscriptions(self) -> None:
        # Subscription changes arrive here; nothing in them needs an answer, but unread
        # they would pile up.
        # At most a batch per turn: a peer churning subscriptions must not keep the loop
        # from the chat.
        with contextlib.suppress(zmq.Again):
            for _ in range(RECEIVE_BATCH):
                self._stream.recv(zmq.NOBLOCK)

    def _unreachable(self, identity: Identity, exc: zmq.ZMQError) -> list[Outgoing]:
        if exc.errno == zmq.EHOSTUNREACH:
            # Gone for now (closed, or reconnecting under a new identity). The session
            # stays until it resumes or expires: broadcasts wait in the log, private
            # messages until the client confirms them.
            log.debug("%s is unreachable", identity.hex())
            return []
        if exc.errno == zmq.EAGAIN:
            reason = f"not reading: {SEND_HWM_MESSAGES} messages queued"
            log.info("dropping %s: %s", identity.hex(), reason)
            return self.core.remove(identity, reason)
        # Nothing else is expected from a non-blocking ROUTER send; one lost event is
        # better than a dead broker.
        log.error("send to %s failed: %s", identity.hex(), exc)
        return []

    def _close(self) -> None:
        # Give the SHUTDOWN notices (and anything else queued) time to leave.
        self._socket.close(linger=SHUTDOWN_LINGER_MS)
        self._stream.close(linger=SHUTDOWN_LINGER_MS)
        self._context.term()
        self._wake_reader.close()
        self._wake_writer.close()


def unsent_bytes(frame: zmq.Frame) -> int:
    """Bytes the kernel still holds for the connection `frame` came from (sent, not yet
    acknowledged by the peer, or not yet sent): a peer that does not read shows as a full
    buffer. 0 where the platform cannot tell."""
    try:
        fd = frame.get(zmq.SRCFD)
        packed = fcntl.ioctl(fd, termios.TIOCOUTQ, bytes(_INT_BYTES))
    except (OSError, zmq.ZMQError, AttributeError):
        return 0
    return int.from_bytes(packed, sys.byteorder, signed=True)


def tune_gc_for_serving() -> None:
    """Make garbage collection pauses rarer, for a process that is about to serve.

    What exists by now (the nick tables above all) lives as long as the process: it is kept
    out of every collection; and the young generation is collected less often. The tail of
    the broker's latency is made of these pauses, and it makes few reference cycles. This
    is process-wide: the command line calls it, a broker embedded in another program
    does not.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def stream_endpoint(bind: str) -> str:
    """Where to publish the broadcast stream by default: `bind`'s port plus one."""
    scheme, _, address = bind.partition("://")
    host, colon, port = address.rpartition(":")
    if scheme != "tcp" or not colon or not (port == "*" or port.isdigit()):
        raise ValueError(f"no default stream endpoint for {bind}: name one")
    if port == "*":
        return bind
    return f"tcp://{host}:{int(port) + 1}"


def endpoint_port(endpoint: str) -> int:
    """The TCP port of a bound endpoint such as `tcp://127.0.0.1:5556`.

    Raises ValueError for an endpoint with no port: the stream must be TCP, since clients
    find it by port on the broker's host."""
    scheme, _, address = endpoint.partition("://")
    port = address.rpartition(":")[2]
    if scheme != "tcp" or not port.isdigit():
        raise ValueError(f"the stream must be a TCP endpoint, not {endpoint}")
    return int(port)
