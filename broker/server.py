"""The broker's socket loop: the only module that touches ZeroMQ.

One ROUTER socket, polled together with a wake-up socket (for shutdown requests from
signal handlers or other threads) and, optionally, the operator's terminal; one XPUB
socket publishes the broadcast stream, so that libzmq, not Python, copies each broadcast
to every subscriber. Everything else is decided by `ChatCore`.
"""

import contextlib
import gc
import logging
import math
import os
import queue
import socket
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Final, cast

import zmq
from zmq.utils.monitor import parse_monitor_message

from messages import (
    FETCH_LIMIT,
    GENERAL_ROOM,
    HEARTBEAT_INTERVAL_MS,
    HEARTBEAT_LIVENESS,
    MAX_FRAMES,
    MAX_REASON_BYTES,
    MAX_ROOMS_PER_USER,
    MAX_WIRE_FRAME_BYTES,
    STREAM_READY,
    USERS_PAGE_BYTES,
    ErrorCode,
    ProtocolError,
    encode,
    pack_events,
    sanitize,
    split_topic,
    stream_topic,
    truncate_utf8,
)
from messages import events as ev

from .acks import PendingAcks
from .addresses import address_key
from .backplane import BackplaneError, NatsBackplane
from .cluster import ConsoleIn
from .connections import (
    CHAT,
    STREAM_SOCKET,
    Connection,
    ConnectionLimits,
    ConnectionTable,
    Verdict,
)
from .console import run_console_line
from .core import STREAM, ChatCore, Outgoing
from .descriptors import (
    ResidentMemory,
    connection_budget,
    cut_off,
    peer_address,
    release_free_memory,
    tcp_bytes_received,
    tcp_bytes_unread,
    tcp_bytes_unsent,
    unpredictable_routing_ids,
)
from .growth import MEMORY_WATCH_S, GrowthWatch
from .ratelimit import FloodPolicy
from .session import Identity
from .store import DEFAULT_RETAIN_DAYS, DEFAULT_RETAIN_MESSAGES, IN_MEMORY, Store, StoreError

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
_LARGE_ANSWERS: Final = ([b"FETCH"], [b"USERS"], [b"ROOMFETCH"], [b"ROOMS"], [b"MEMBERS"])
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
#: Subscription messages queued from one stream subscriber (ZMQ_RCVHWM): a subscriber
#: sends one; this bounds what a peer that sends more can make libzmq hold at once.
STREAM_RECEIVE_HWM_MESSAGES: Final = 16
#: Bytes an honest stream subscriber sends: the ZMTP greeting and handshake (CurveZMQ's
#: included), a subscription to #general and to each of its rooms and their cancellations
#: (about 40 bytes each), then heartbeats and a few rooms joined and left, at most this
#: many bytes a second.
STREAM_HONEST_BYTES: Final = 2048 + 2 * 40 * MAX_ROOMS_PER_USER
STREAM_HONEST_BYTES_PER_S: Final = 128
#: A subscription message: this byte, then the topic (ZMTP 3.0 style; libzmq turns 3.1's
#: SUBSCRIBE and CANCEL commands into the same).
SUBSCRIBE: Final = b"\x01"
UNSUBSCRIBE: Final = b"\x00"
_GENERAL_TOPIC: Final = stream_topic(GENERAL_ROOM)
#: Most messages handled per socket per poll, so the terminal and timers are not starved.
RECEIVE_BATCH: Final = 256
#: Messages handled between two commits (and releases of what they produced), at most:
#: fewer commits cost less, but whatever the messages produced waits for the commit.
COMMIT_EVERY: Final = 32
#: When a batch leaves nothing to send but ACKs that wait for a commit, the commit waits this
#: long (s) for more messages to share it: off the path of what the batch sent on (a private
#: message reaches its recipient while the disk is written), and fewer commits under load.
COMMIT_DELAY_S: Final = 0.0002
#: After discarding a message of more frames than this, hand freed memory back to the
#: system (libzmq held every frame of it, about 64 bytes each).
TRIM_AFTER_FRAMES: Final = 100_000
#: Frames past MAX_FRAMES in one message that still count as a mistake (answered with
#: an error); past these the sender is cut off.
CUT_OFF_EXTRA_FRAMES: Final = 64
#: Per frame, ZMTP's framing: a flags byte and a length of up to 8 bytes.
FRAME_OVERHEAD_BYTES: Final = 9
#: How long an address that sent a frame bomb is refused, in s.
BAN_SECONDS: Final = 60
#: How often the store deletes a slice of what is past retention and indexes a slice of
#: new messages for search, in s.
UPKEEP_INTERVAL_S: Final = 0.25
#: How often connections are checked for being refused or late to register, in s.
CONNECTION_SWEEP_S: Final = 0.5
#: How long a broker in a cluster waits at start for #general's last events, in s.
CATCH_UP_TIMEOUT_S: Final = 30.0
#: What the socket monitors report: connections accepted and ended.
MONITORED_EVENTS: Final = int(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
_MORE_FLAGS: Final = int(zmq.SNDMORE | zmq.NOBLOCK)
_LAST_FLAGS: Final = int(zmq.NOBLOCK)
_CHAT_ONLY: Final = (CHAT,)
_EVENTS: Final = int(zmq.EVENTS)
_POLLIN: Final = int(zmq.POLLIN)


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
    #: Caps on connections (the total is lowered to what the descriptor limit allows).
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    #: Most bytes of nicks in one USERS page.
    users_page_bytes: int = USERS_PAGE_BYTES
    #: The SQLite file the broker remembers in; IN_MEMORY for none (nothing outlives the
    #: process).
    db: str = IN_MEMORY
    #: What the store keeps: messages younger than this many days, and at most this many of
    #: each kind (broadcasts, private messages).
    retain_days: float = DEFAULT_RETAIN_DAYS
    retain_messages: int = DEFAULT_RETAIN_MESSAGES
    #: Caps the database at this many pages (SQLite's max_page_count): a full disk, for
    #: tests. None: no cap.
    db_max_pages: int | None = None
    #: The NATS servers of the cluster this broker joins (docs/CLUSTER.md); none: alone.
    nats: tuple[str, ...] = ()
    #: This broker's name in the cluster: the same across its restarts, so that its
    #: clients' sessions are found again.
    broker_id: str = ""
    #: Copies of the cluster's streams and buckets, when this broker makes them.
    nats_replicas: int = 1


class BrokerServer:
    """A ROUTER socket bound at `config.bind`, serving a `ChatCore` until shut down.

    The socket is bound on construction, so `endpoint` is known (with a `*` port it names
    the port chosen) before `run` starts. `request_shutdown` may be called from any thread
    or from a signal handler.
    """

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        # Before the ROUTER exists: it takes the start of its id counter from rand().
        unpredictable_routing_ids()
        # First: StoreUnusable goes to the caller, like a port in use, with nothing to close.
        store = Store(
            config.db,
            retain_days=config.retain_days,
            retain_messages=config.retain_messages,
            max_pages=config.db_max_pages,
        )
        self.backplane: NatsBackplane | None = None
        if config.nats:
            liveness_s = HEARTBEAT_LIVENESS * config.heartbeat_ms / 1000
            backplane = NatsBackplane(
                list(config.nats), config.broker_id, liveness_s, config.nats_replicas
            )
            try:
                backplane.start()
            except BackplaneError:
                store.close()
                raise
            self.backplane = backplane
        limits = config.connections
        self._connections = ConnectionTable(
            replace(limits, total=min(limits.total, connection_budget()))
        )
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
        self._stream.setsockopt(zmq.RCVHWM, STREAM_RECEIVE_HWM_MESSAGES)
        # Every subscription comes to the broker, which applies only those to #general and to
        # the rooms on the stream (see `_may_subscribe`): libzmq would otherwise keep
        # whatever distinct subscriptions a peer sends, byte by byte.
        self._stream.setsockopt(zmq.XPUB_MANUAL, 1)
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
            if self.backplane is not None:
                self.backplane.close()
            raise
        # Connections come and go on these: the table knows each one's descriptor.
        self._monitors = {
            CHAT: self._socket.get_monitor_socket(MONITORED_EVENTS),
            STREAM_SOCKET: self._stream.get_monitor_socket(MONITORED_EVENTS),
        }
        self._memory = ResidentMemory()
        self._growth = GrowthWatch()
        # Connections to cut off once the monitors are read, and whether they are being.
        self._cuts: list[Connection] = []
        self._draining = False
        self.core = ChatCore(
            config.admin_token,
            config.heartbeat_ms,
            config.flood,
            stream_port=stream_port,
            users_page_bytes=config.users_page_bytes,
            store=store,
            cluster=self.backplane,
        )
        self.store = store
        self._acks = PendingAcks()
        # When the ACKs held (and the commit they wait for) are due; None: none deferred.
        self._acks_due: float | None = None
        # Broadcasts (encoded) waiting to be published together at the end of this turn
        # of the loop.
        # What this turn publishes: the encoded events, by stream topic (their room's).
        self._unpublished: dict[bytes, list[list[bytes]]] = {}
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
        for monitor in self._monitors.values():
            poller.register(monitor, zmq.POLLIN)
        # pyzmq's poll reports plain sockets and files by their descriptor.
        wake_fd = self._wake_reader.fileno()
        poller.register(wake_fd, zmq.POLLIN)
        console = self.config.console_fd
        if console is not None:
            poller.register(console, zmq.POLLIN)
        cluster_fd = None if self.backplane is None else self.backplane.wake_fd
        if cluster_fd is not None:
            poller.register(cluster_fd, zmq.POLLIN)
        self._catch_up()
        heartbeat_interval = self.config.heartbeat_ms / 1000
        next_heartbeat = time.monotonic() + heartbeat_interval
        # Connections over a limit or late to register are cut off within this.
        sweep_interval = min(heartbeat_interval, CONNECTION_SWEEP_S)
        next_sweep = time.monotonic() + sweep_interval
        next_watch = time.monotonic() + MEMORY_WATCH_S
        next_prune = time.monotonic() + UPKEEP_INTERVAL_S
        try:
            while not self.core.stopped:
                wake = min(next_sweep, next_heartbeat, next_watch, self._acks_due or math.inf)
                timeout_ms = max(0, math.ceil((wake - time.monotonic()) * 1000))
                ready = dict(poller.poll(timeout_ms))
                self._drain_monitors()
                if self._socket in ready:
                    self._receive_batch()
                if self._acks_due is not None and (
                    time.monotonic() >= self._acks_due or len(ready) > (self._socket in ready)
                ):
                    # Due, or something else is about to be done (which may send).
                    self._release_deferred()
                if self._stream in ready:
                    self._drain_subscriptions()
                if cluster_fd is not None and cluster_fd in ready:
                    self._from_cluster()
                if wake_fd in ready:
                    self._drain_shutdown_requests()
                if console is not None and console in ready and not self._read_console(console):
                    poller.unregister(console)
                    console = None
                now = time.monotonic()
                if now >= min(next_watch, next_sweep, next_prune, next_heartbeat):
                    self._release_deferred()  # before anything of upkeep may send
                if now >= next_watch:
                    self._watch_memory(now)
                    next_watch = now + MEMORY_WATCH_S
                if now >= next_sweep:
                    if self._memory.trim_pending:
                        # libzmq has freed by now what the connections cut off were sending.
                        self._memory.trim_pending = False
                        release_free_memory()
                    self._cut_overdue(now)
                    next_sweep = now + sweep_interval
                if now >= next_prune:
                    self.store.prune()
                    self._commit()
                    self.store.index()
                    next_prune = now + UPKEEP_INTERVAL_S
                if now >= next_heartbeat:
                    self._send(self.core.expire(now))
                    self._send(self.core.tick())
                    if self.backplane is not None:
                        self.backplane.beat()
                    next_heartbeat = now + heartbeat_interval
                self._publish()
        finally:
            try:
                self._release_deferred()
                self._publish()
            finally:
                self._close()

    def _receive_batch(self) -> None:
        # What depends on a batch's rows leaves after the batch is committed: an ACK means
        # stored, and no broadcast number is seen that a crash could give to another message
        # (see `Store.owes_commit_to_send` for what may leave before).
        held: list[Outgoing] = []
        try:
            self._receive_some(held)
        finally:
            now = time.monotonic()
            if held or not self.store.owes_commit or (self._acks_due or now) <= now:
                self._release(held)
            elif self._acks_due is None:
                self._acks_due = now + COMMIT_DELAY_S

    def _release_deferred(self) -> None:
        """Commit and send the ACKs a batch left waiting (see COMMIT_DELAY_S), if any."""
        if self._acks_due is not None:
            self._release([])

    def _release(self, held: list[Outgoing]) -> None:
        """Commit, then send `held` and the ACKs held (one per client for all its messages):
        if the commit failed, an ERROR 507 instead of each ACK."""
        self._acks_due = None
        failure = self._commit_owed(acks=True)
        acks = self._acks.flush()
        if failure is not None:
            acks = [
                (identity, ev.Error(ErrorCode.INSUFFICIENT_STORAGE, msg_id, failure))
                for identity, ack in acks
                if isinstance(ack, ev.Ack)
                for msg_id in ack.msg_ids
            ]
        self._send(held)
        self._send(acks)

    def _commit_owed(self, acks: bool = False) -> str | None:
        """Commit if what is about to be sent (`acks`, or other events) depends on rows not
        committed yet (see `Store.owes_commit`); the reason if that failed."""
        store = self.store
        owed = store.owes_commit if acks else store.owes_commit_to_send
        return self._commit() if owed else None

    def _commit(self) -> str | None:
        """Commit the store's writes; the reason if that failed (the rows are kept and
        written again with the next commit)."""
        try:
            self.store.commit()
        except StoreError as exc:
            # (The store logged the failure; until a commit succeeds it is tried again
            # every second at most.)
            return truncate_utf8(
                f"not stored ({exc}): it may have reached others, but a restart of the "
                "server would lose it",
                MAX_REASON_BYTES,
            )
        return None

    def _receive_some(self, held: list[Outgoing]) -> None:
        connections = self._connections
        for handled in range(1, RECEIVE_BATCH + 1):
            try:
                # The identity part as a Frame: it knows the peer's address and descriptor.
                identity = self._socket.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            sender = identity.bytes
            # What the monitor said before this message could be read: whether the
            # connection this id was bound to has closed since (then this is not it).
            self._drain_monitors(_CHAT_ONLY)
            connection = connections.bound(sender)
            verdict, reason, code = Verdict.ACCEPT, "", ErrorCode.MALFORMED
            if connection is None:
                decision = connections.place(sender, int(identity.get(zmq.SRCFD)))
                verdict, reason, code = decision.verdict, decision.reason, decision.code
                connection = decision.connection
            frames, extra = self._receive_rest(identity.more)
            if connection is not None:
                connection.bytes_read += _wire_bytes(frames) + len(sender)
            if extra > CUT_OFF_EXTRA_FRAMES:
                verdict, code = Verdict.REFUSE, ErrorCode.MALFORMED
                reason = f"{len(frames) + 1 + extra} frames in one message (at most {MAX_FRAMES})"
                connection = connections.bound(sender) or connection
                if connection is not None:
                    self._ban(connection.address, reason)
            if verdict is Verdict.DROP:
                log.debug("dropped a message from %s: its connection is gone", sender.hex())
                continue
            if verdict is Verdict.REFUSE:
                self._refuse(sender, connection, ev.Error(code, "", reason), cut_now=extra > 0)
                continue
            # Only HELLO needs the address (joins are limited per address); the lookup
            # is not free, so skip it for everything else.
            peer = str(identity.get("Peer-Address")) if frames[1:2] == [b"HELLO"] else ""
            unsent = 0
            unsent_checked = frames[1:2] in _LARGE_ANSWERS
            if unsent_checked:
                unsent = tcp_bytes_unsent(int(identity.get(zmq.SRCFD)))
            outgoing = self.core.receive(sender, frames, time.monotonic(), peer, unsent)
            if connection is not None and not connection.registered:
                connection.registered = self.core.session(sender) is not None
            if self.core.stopped:
                # Nothing may follow SHUTDOWN: what was accepted before it is ACKed first.
                self._release(held)
                held.clear()
            held.extend(self._acks.hold(outgoing))
            if self.core.stopped:
                return
            if unsent_checked or handled % COMMIT_EVERY == 0:
                # A large answer leaves now, not with the batch: it is sent while the
                # client's unread bytes are still measured, and is not held in memory.
                # And clients wait for their answers while they are held: a batch is
                # committed in parts, so that they work while the broker goes on.
                self._release(held)
                held.clear()
            elif held and not self.store.owes_commit_to_send:
                # Nothing written that must be stored before it is seen: what this message
                # produced leaves now, as before the broker had a store (its ACKs still
                # wait for the end of the batch).
                self._send(held)
                held.clear()

    def _receive_rest(self, more: bool) -> tuple[list[bytes], int]:
        """The remaining frames of a message whose first frame was received, and how many
        frames past MAX_FRAMES were discarded unread."""
        if not more:
            return [], 0
        # Frames know whether more follow; recv_multipart asks the socket with a getsockopt
        # per frame, which costs a third of the receive.
        recv = self._socket.recv
        frame = recv(zmq.NOBLOCK, copy=False)
        frames = [frame.bytes]
        while frame.more:
            if len(frames) > MAX_FRAMES:
                # One past the limit is kept: enough for the core to see what is wrong.
                return frames, self._discard_rest()
            frame = recv(zmq.NOBLOCK, copy=False)
            frames.append(frame.bytes)
        return frames, 0

    def _discard_rest(self) -> int:
        """Read and drop the rest of a message: libzmq holds it whole already, and the
        socket gives nothing else until it is read. The cheapest read there is."""
        discard = bytearray()
        recv_into, get = self._socket.recv_into, self._socket.get
        count = 0
        while get(zmq.RCVMORE):
            recv_into(discard, flags=zmq.NOBLOCK)
            count += 1
        if count >= TRIM_AFTER_FRAMES:
            release_free_memory()
        return count

    def _refuse(
        self, sender: bytes, connection: Connection | None, refusal: ev.Error, cut_now: bool
    ) -> None:
        """Tell the sender why (if it can still hear), then cut its connection off: at
        once (`cut_now`), or at the next sweep, once the refusal has left."""
        with contextlib.suppress(zmq.ZMQError):
            self._send_frames(sender, encode(refusal))
        log.warning("refused %s: %s", sender.hex(), refusal.reason)
        if connection is None:
            return
        self._connections.refused(connection, refusal.reason, time.monotonic())
        if cut_now:
            self._cut(connection)

    def _cut(self, connection: Connection) -> None:
        """Cut `connection` off, once the monitors are read: only a connection the table
        still holds open, whose descriptor is not reused yet."""
        self._cuts.append(connection)
        if not self._draining:
            self._drain_monitors()

    def _cut_pending(self) -> None:
        while self._cuts:
            connection = self._cuts.pop()
            if connection.cut or self._connections.bound_fd(connection.fd) is not connection:
                continue
            self._connections.cutting(connection)
            cut_off(connection.fd)

    def _cut_overdue(self, now: float) -> None:
        for connection in self._connections.overdue(now):
            log.info(
                "cut off a %s connection from %s: %s",
                connection.kind,
                connection.address,
                connection.refusal or "not registered in time",
            )
            self._cut(connection)

    def _drain_monitors(self, kinds: tuple[str, ...] = (CHAT, STREAM_SOCKET)) -> None:
        """Apply what the socket monitors of `kinds` reported (connections accepted and
        closed), then make the cut-offs decided meanwhile: a cut-off decided while an event
        is applied waits for the rest, which may say its descriptor was reused."""
        self._draining = True
        try:
            for kind in kinds:
                monitor = self._monitors[kind]
                # Plain ints: pyzmq's enums cost more than the check, once per message.
                while cast(int, monitor.get(_EVENTS)) & _POLLIN:
                    event, value = _monitor_event(monitor.recv_multipart())
                    if event == zmq.EVENT_ACCEPTED:
                        self._accepted(value, kind)
                    elif event == zmq.EVENT_DISCONNECTED:
                        self._connections.closed(value)
        finally:
            self._draining = False
        self._cut_pending()

    def _accepted(self, fd: int, kind: str) -> None:
        now = time.monotonic()
        # Counted as the limits per address count: an IPv6 host holds a whole /64.
        address = address_key(peer_address(fd))
        connection = self._connections.accepted(fd, address, kind, now)
        for idle in self._connections.evicted():
            log.info("cut off a %s connection from %s to make room", idle.kind, idle.address)
            self._cut(idle)
        if connection.refusal and (kind == STREAM_SOCKET or connection.refused_outright):
            # A stream subscriber cannot be told why; a banned address is not listened to;
            # past the total, descriptors run short: cut off at once.
            # (A flood brings thousands a second: not one log line each.)
            log.debug("cut off a %s connection from %s: %s", kind, address, connection.refusal)
            self._cut(connection)

    def _ban(self, address: str, reason: str) -> None:
        """Refuse `address` for BAN_SECONDS: it sent what no client sends by mistake."""
        log.warning("refusing %s for %d s: %s", address, BAN_SECONDS, reason)
        self._connections.ban(address, time.monotonic() + BAN_SECONDS, f"banned: {reason}")

    def _watch_memory(self, now: float) -> None:
        """Cut off connections building a huge message inside libzmq (broker.growth)."""
        memory = self._memory

        def chat() -> list[Connection]:
            return [c for c in self._connections.connections() if c.kind == CHAT and not c.cut]

        culprits = self._growth.reading(memory.rss_bytes(), now, chat, _ahead_of_broker)
        for connection in culprits:
            self._ban(connection.address, "sent a message that never ends")
            self._cut(connection)
            memory.trim_pending = True

    def _drain_shutdown_requests(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_reader.recv(4096):
                pass
        while not self._shutdown_reasons.empty():
            self._send(self.core.shutdown(self._shutdown_reasons.get()))

    def _catch_up(self) -> None:
        """In a cluster, take in #general's last events before serving anyone: a WELCOME
        must not name an older last event than the cluster's."""
        backplane = self.backplane
        if backplane is None:
            return
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        poller = zmq.Poller()
        poller.register(backplane.wake_fd, zmq.POLLIN)
        while (
            backplane.received_seq < backplane.last_seq
            or backplane.rooms_received_seq < backplane.rooms_last_seq
        ):
            left_ms = (deadline - time.monotonic()) * 1000
            if left_ms <= 0:
                log.warning("serving before the cluster's streams caught up")
                break
            poller.poll(math.ceil(left_ms))
            self._from_cluster()
        self._from_cluster()

    def _from_cluster(self) -> None:
        """Handle what the other brokers of the cluster sent."""
        assert self.backplane is not None
        for event in self.backplane.events():
            if isinstance(event, ConsoleIn):
                log.warning("operator line from the cluster: %s", sanitize(event.line))
                self._run_console_line(event.line, forward=False)
            else:
                self._send(self.core.from_cluster(event))

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
            self._run_console_line(line.decode("utf-8", "replace"))
        return True

    def _run_console_line(self, line: str, forward: bool = True) -> None:
        """Run an operator line: from this broker's terminal, or (`forward` False) from
        another broker's."""
        result = run_console_line(self.core, line, time.monotonic())
        for text in result.output:
            # Lines may quote peers (nicks, reasons): never raw to the terminal.
            print(sanitize(text), flush=True)
        if forward and self.backplane is not None:
            for other_line, broker in result.forward:
                self.backplane.console(other_line, broker)
        self._send(result.outgoing)

    def _send(self, outgoing: Iterable[Outgoing]) -> None:
        # What is sent is stored first (a LEAVE of an expiry, a console notice, ...).
        self._commit_owed()
        pending = deque(outgoing)
        # A broadcast is one event object for many identities: encode it once. The cache
        # holds the event too, so its id() cannot be reused by a newer event meanwhile.
        encoded: dict[int, tuple[ev.BrokerEvent, list[bytes]]] = {}
        bound = self._connections.bound
        while pending:
            identity, event = pending.popleft()
            cached = encoded.get(id(event))
            if cached is None:
                cached = encoded[id(event)] = (event, encode(event))
            if identity == STREAM:
                room = getattr(event, "room", None)  # (#general's broadcasts have none)
                topic = _GENERAL_TOPIC if room is None else stream_topic(room)
                self._unpublished.setdefault(topic, []).append(cached[1])
                continue
            if bound(identity) is None:
                # Its connection is gone (a routing id is never bound twice): gone for
                # now, like an unreachable peer.
                continue
            try:
                self._send_frames(identity, cached[1])
            except zmq.ZMQError as exc:
                pending.extend(self._unreachable(identity, exc))
                self._commit_owed()  # its LEAVE
                connection = bound(identity)
                if exc.errno == zmq.EAGAIN and connection is not None:
                    # Removed for not reading: cut off too, so that libzmq frees the
                    # messages queued for it (up to SEND_HWM_MESSAGES) now, not whenever
                    # its TCP connection ends.
                    self._cut(connection)

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
        unpublished, self._unpublished = self._unpublished, {}
        for topic, pending in unpublished.items():
            start, size = 0, 0
            for end, frames in enumerate(pending, 1):
                size += sum(map(len, frames))
                if size >= STREAM_FRAME_BYTES or end == len(pending):
                    # XPUB never blocks: a subscriber whose queue is full skips this frame.
                    self._stream.send(topic + pack_events(pending[start:end]), _LAST_FLAGS)
                    start, size = end, 0

    def _drain_subscriptions(self) -> None:
        # Subscription changes arrive here. Only the one the protocol defines is applied;
        # anything else marks a peer that must be found and cut off.
        # At most a batch per turn: a peer churning subscriptions must not keep the loop
        # from the chat.
        stream = self._stream
        foreign = False
        with contextlib.suppress(zmq.Again):
            for _ in range(RECEIVE_BATCH):
                subscription = stream.recv(zmq.NOBLOCK)
                kind, topic = subscription[:1], subscription[1:]
                if kind == UNSUBSCRIBE:
                    stream.setsockopt(zmq.UNSUBSCRIBE, topic)
                elif subscription == SUBSCRIBE + STREAM_READY:
                    # So that the subscriber's own filter lets STREAM_READY through; nothing
                    # published starts with it, so there is nothing to apply.
                    pass
                elif kind == SUBSCRIBE and self._may_subscribe(topic):
                    stream.setsockopt(zmq.SUBSCRIBE, topic)
                else:
                    # Find it now: every call on the socket lets libzmq take in more.
                    foreign = True
                    break
        if foreign:
            self._cut_noisy_subscribers(time.monotonic())

    def _may_subscribe(self, topic: bytes) -> bool:
        """Whether `topic` is one a subscriber may have: #general's, or that of a room that
        exists and is not invite-only. (Who subscribes is not known: any room on the
        stream is readable by whoever reaches its port, as #general is.)"""
        if topic == _GENERAL_TOPIC:
            return True
        try:
            name, packed = split_topic(topic)
        except ProtocolError:
            return False
        room = self.core.rooms.get(name)
        return not packed and room is not None and not room.invite_only

    def _cut_noisy_subscribers(self, now: float) -> None:
        """Cut off every stream connection that sent more than an honest subscriber does.

        libzmq does not say which connection a subscription came from, but the kernel
        counts what each one sent."""
        for connection in self._connections.connections():
            if connection.kind != STREAM_SOCKET or connection.cut:
                continue
            allowed = STREAM_HONEST_BYTES + STREAM_HONEST_BYTES_PER_S * (now - connection.since)
            if tcp_bytes_received(connection.fd) > allowed:
                # libzmq's subscribers subscribe again whenever they reconnect: refused.
                self._ban(connection.address, "subscriptions the protocol does not define")
                self._cut(connection)
                # libzmq frees what it kept of those subscriptions when the connection ends.
                self._memory.trim_pending = True

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
        for monitor in self._monitors.values():
            monitor.close(linger=0)
        self._context.term()
        self._wake_reader.close()
        self._wake_writer.close()
        self._memory.close()
        if self.backplane is not None:
            self.backplane.close()
        self.store.close()


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


def _monitor_event(frames: list[bytes]) -> tuple[int, int]:
    """The event and its value (a descriptor, for the events monitored) from a socket
    monitor's message."""
    event = parse_monitor_message(frames)
    return int(event["event"]), int(event["value"])


def _wire_bytes(frames: list[bytes]) -> int:
    """Bytes `frames` took on the wire, framing included (at most)."""
    return sum(map(len, frames)) + FRAME_OVERHEAD_BYTES * (len(frames) + 1)


def _ahead_of_broker(connection: Connection) -> int:
    """Bytes libzmq took from `connection` that the broker has not read as messages."""
    fd = connection.fd
    return tcp_bytes_received(fd) - tcp_bytes_unread(fd) - connection.bytes_read
