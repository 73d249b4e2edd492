"""The client's sockets to the broker: the only module that touches ZeroMQ.

A DEALER socket connects to the broker's ROUTER. Each command is one multipart message (the
frames of `messages.encode`, no empty delimiter frame), and the socket keeps the identity
ZeroMQ gives it: the broker tells clients apart by connection and refuses chosen routing ids.

Broadcasts come on a second socket: a SUB subscribed to everything the broker's XPUB
publishes (the port WELCOME names, on the broker's host). Its first message is
`messages.STREAM_READY`, then broadcast events and TICKs, several packed in one frame
(`messages.unpack_events`; a message of several frames is one event, as on the DEALER).
The broker drops a subscriber's messages when it falls too far behind; the numbers show the
gap and the session fetches it over the DEALER.

With CurveZMQ (`CurveKeys`) every connection is encrypted and the broker authenticated by
its public key; a wrong key makes the handshake fail silently, so the broker never answers.
While registering, a socket monitor tells that apart from a broker that is not there:
`handshake_failure` says how the handshake failed (one side encrypts and the other does not,
or the encrypted handshake was refused).
"""

import contextlib
import enum
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import zmq
import zmq.asyncio
import zmq.auth
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

from messages import (
    GENERAL_ROOM,
    HEARTBEAT_LIVENESS,
    MAX_EVENT_WIRE_FRAME_BYTES,
    MAX_PACKED_BYTES,
    STREAM_READY,
    ErrorCode,
    ProtocolError,
    decode_event,
    encode,
    split_topic,
    stream_topic,
    unpack_events,
)
from messages.commands import ClientCommand
from messages.events import (
    AwayChanged,
    BrokerEvent,
    Entered,
    Joined,
    Left,
    Message,
    Notice,
    Parted,
    Posted,
    Renamed,
    RoomTick,
    Tick,
    TopicSet,
)

log = logging.getLogger(__name__)

#: Length of a CurveZMQ key in Z85 text (32 bytes).
Z85_KEY_CHARS = 40
#: Stream messages libzmq takes in before it stops reading the stream (ZMQ_RCVHWM): while
#: the UI is busy, a burst waits here rather than in the broker's short queue for us, which
#: drops what does not fit (to be fetched again). A message packs up to 16 KiB of events
#: (a hundred or so): ten seconds of a busy chat fit in a fraction of this.
STREAM_HWM_MESSAGES: Final = 1000
#: Events libzmq takes in from the DEALER before it stops reading it: a FETCH answers with
#: up to 1000 at once, and the broker drops a client whose queue towards it fills up.
RECEIVE_HWM_MESSAGES: Final = 10_000
#: Most events `receive` takes from each socket at once (a stream message that packs more
#: is taken whole): the caller handles them as one batch, then lets the UI run.
RECEIVE_BATCH_MESSAGES: Final = 256
#: TCP ports are below this.
MAX_PORT: Final = 65536


#: Monitor events that tell how each ZMTP handshake with the broker went.
_HANDSHAKE_EVENTS: Final = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


class HandshakeFailure(enum.Enum):
    """Why the broker never answered: the connection was made, the handshake was not."""

    #: One side encrypts (CurveZMQ) and the other does not.
    ENCRYPTION_MISMATCH = "encryption mismatch"
    #: The encrypted handshake failed: the server key is wrong, most likely.
    REFUSED = "refused"


class ServerKeyError(Exception):
    """A server key could not be read: the message says which and why."""


@dataclass(frozen=True)
class CurveKeys:
    """The broker's public key and this client's key pair, all Z85-encoded."""

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def for_server(cls, server_public: bytes) -> "CurveKeys":
        """A fresh (ephemeral) client key pair for talking to `server_public`."""
        public, secret = zmq.curve_keypair()
        return cls(server_public, public, secret)


def parse_server_key(text: str) -> bytes:
    """`text` as a Z85 public key; raises ServerKeyError if it is not one."""
    key = text.strip().encode("ascii", "replace")
    if len(key) != Z85_KEY_CHARS:
        raise ServerKeyError(f"a server key is {Z85_KEY_CHARS} Z85 characters, not {len(key)}")
    try:
        z85.decode(key)
    except (ValueError, KeyError):
        raise ServerKeyError("the server key is not valid Z85 text") from None
    return key


def load_server_key(path: Path) -> bytes:
    """The public key in certificate file `path` (as `zmq.auth.create_certificates` writes
    it); raises ServerKeyError naming the file if it is missing or unreadable."""
    if not path.is_file():
        raise ServerKeyError(
            f"no server key at {path}: start the broker with `make broker SECURE=1` "
            "(it writes the key there), or give it with --server-key"
        )
    try:
        public, _secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ServerKeyError(f"cannot read the server key in {path}: {exc}") from None
    return parse_server_key(public.decode("ascii", "replace"))


class StreamReady:
    """The broadcast stream's first message to a new subscriber: from now on, whatever the
    broker publishes reaches this client (or shows as a gap in the numbers)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "StreamReady()"


#: The one `StreamReady` there is: it carries nothing.
STREAM_READY_MARK: Final = StreamReady()

#: What the broadcast stream carries: broadcasts, TICKs, the ready mark, or something that
#: broke the protocol.
StreamItem = (
    Joined
    | Left
    | Message
    | Notice
    | AwayChanged
    | Renamed
    | Tick
    | Entered
    | Parted
    | Posted
    | TopicSet
    | RoomTick
    | StreamReady
    | ProtocolError
)
#: Events the broker may publish on the stream, and protocol errors, for `isinstance`.
_STREAM_ITEMS: Final = (
    Joined,
    Left,
    Message,
    Notice,
    AwayChanged,
    Renamed,
    Tick,
    Entered,
    Parted,
    Posted,
    TopicSet,
    RoomTick,
    ProtocolError,
)


@dataclass(frozen=True, slots=True)
class StreamBuffers:
    """How much of the broadcast stream may wait on this side, unread: `messages` in
    libzmq's queue (ZMQ_RCVHWM), `kernel_bytes` in the kernel's socket buffer (ZMQ_RCVBUF;
    0 for the system's default, which grows as needed)."""

    messages: int = STREAM_HWM_MESSAGES
    kernel_bytes: int = 0


@dataclass(slots=True)
class Batch:
    """What one `Connection.receive` took in: events from the DEALER (`direct`, in order)
    and from the broadcast stream (`stream`, in order)."""

    direct: list[BrokerEvent | ProtocolError] = field(default_factory=list)
    stream: list[StreamItem] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.direct or self.stream)


def stream_endpoint(endpoint: str, port: int) -> str | None:
    """Where the broadcast stream of the broker at `endpoint` is: `port` on the same host;
    None if `endpoint` is not a TCP endpoint (the stream is TCP only)."""
    scheme, _, address = endpoint.partition("://")
    host, colon, _port = address.rpartition(":")
    if scheme != "tcp" or not colon or not host:
        return None
    return f"tcp://{host}:{port}"


class Connection:
    """A DEALER socket connected to the broker at `endpoint` (for example tcp://host:5555),
    encrypted with `keys` if given, and, once `subscribe` is called, a SUB socket on the
    broker's broadcast stream. `receive` reads both.

    Raises ValueError if `endpoint` is not an address ZeroMQ can connect to.
    """

    def __init__(
        self,
        endpoint: str,
        keys: CurveKeys | None = None,
        *,
        stream_buffers: StreamBuffers | None = None,
        watch_handshakes: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.keys = keys
        #: The buffers of the SUB sockets `subscribe` opens.
        self.stream_buffers = stream_buffers or StreamBuffers()
        #: The port of the broadcast stream read now; None when not subscribed.
        self.stream_port: int | None = None
        self._closed = False
        self._context = zmq.asyncio.Context()
        # The asyncio sockets are only awaited (poll) and closed; sending and receiving go
        # through plain shadows of them, which cost no Future per message.
        self._socket = self._open_socket(
            zmq.DEALER, RECEIVE_HWM_MESSAGES, MAX_EVENT_WIRE_FRAME_BYTES
        )
        self._dealer: zmq.Socket[bytes] = zmq.Socket.shadow(self._socket.underlying)
        self._poller = zmq.asyncio.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._stream: zmq.asyncio.Socket | None = None
        self._sub: zmq.Socket[bytes] | None = None
        # With `watch_handshakes`, until `stop_watching_handshakes`: a monitor of the
        # DEALER, so that a broker that never answers can be told from one that refuses
        # our handshake (started with --secure, say).
        self._monitor: zmq.asyncio.Socket | None = None
        if watch_handshakes:
            self._monitor = self._socket.get_monitor_socket(_HANDSHAKE_EVENTS)
        try:
            self._socket.connect(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise ValueError(f"cannot connect to {endpoint!r}: {exc}") from None

    def _open_socket(self, kind: int, receive_hwm: int, max_bytes: int) -> zmq.asyncio.Socket:
        sock = self._context.socket(kind)
        # A broker that sends an absurdly large frame is cut off by libzmq before we buffer
        # it; nick lists and packed broadcasts may legitimately approach `max_bytes`.
        sock.setsockopt(zmq.MAXMSGSIZE, max_bytes)
        sock.setsockopt(zmq.RCVHWM, receive_hwm)
        sock.setsockopt(zmq.LINGER, 0)
        if self.keys is not None:
            # Before connect: the handshake uses them. The stream's SUB uses the same
            # (ephemeral) client key pair as the DEALER: both are this client.
            sock.curve_serverkey = self.keys.server_public
            sock.curve_publickey = self.keys.public
            sock.curve_secretkey = self.keys.secret
        return sock

    def handshake_failure(self) -> HandshakeFailure | None:
        """How the last handshake with the broker failed, if the last one did (None too
        when the handshakes are not watched)."""
        if self._monitor is None:
            return None
        monitor: zmq.Socket[bytes] = zmq.Socket.shadow(self._monitor.underlying)
        failure: HandshakeFailure | None = None
        with contextlib.suppress(zmq.Again):
            while True:
                report = recv_monitor_message(monitor, zmq.NOBLOCK)
                assert isinstance(report, dict)  # a plain socket answers at once
                if report["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    failure = None
                elif report["value"] == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
                    failure = HandshakeFailure.ENCRYPTION_MISMATCH
                elif failure is None:
                    # Vaguer: the broker may close first, before we see the mismatch; a
                    # mismatch seen on an earlier attempt says more.
                    failure = HandshakeFailure.REFUSED
        return failure

    def stop_watching_handshakes(self) -> None:
        """Close the handshake monitor, if any."""
        if self._monitor is None:
            return
        self._socket.disable_monitor()
        self._monitor.close(linger=0)
        self._monitor = None

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    @property
    def can_stream(self) -> bool:
        """Whether the broker's broadcast stream can be reached from `endpoint` (TCP only)."""
        return stream_endpoint(self.endpoint, 1) is not None

    def subscribe(self, port: int, heartbeat_ms: int) -> None:
        """Read the broadcast stream on `port` of the broker's host, on a fresh SUB socket
        (one opened before is closed, with whatever it had buffered): #general's topic
        (rooms are followed one by one, see `follow`). libzmq reconnects it by itself, and
        drops it after `HEARTBEAT_LIVENESS` silent `heartbeat_ms` intervals. Raises
        ValueError if the stream cannot be reached (see `can_stream`)."""
        endpoint = stream_endpoint(self.endpoint, port)
        if endpoint is None or not 0 < port < MAX_PORT:
            raise ValueError(f"no broadcast stream on port {port} of {self.endpoint}")
        self.unsubscribe()
        stream = self._open_socket(zmq.SUB, self.stream_buffers.messages, MAX_PACKED_BYTES)
        if self.stream_buffers.kernel_bytes:
            stream.setsockopt(zmq.RCVBUF, self.stream_buffers.kernel_bytes)
        stream.setsockopt(zmq.HEARTBEAT_IVL, heartbeat_ms)
        stream.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_LIVENESS * heartbeat_ms)
        # STREAM_READY too: a SUB drops whatever its subscriptions do not match.
        stream.setsockopt(zmq.SUBSCRIBE, STREAM_READY)
        stream.setsockopt(zmq.SUBSCRIBE, stream_topic(GENERAL_ROOM))
        try:
            stream.connect(endpoint)
        except zmq.ZMQError as exc:
            stream.close(linger=0)
            raise ValueError(f"cannot connect to {endpoint!r}: {exc}") from None
        self._stream = stream
        self._sub = zmq.Socket.shadow(stream.underlying)
        self._poller.register(stream, zmq.POLLIN)
        self.stream_port = port
        log.debug("subscribed to %s", endpoint)

    def follow(self, room: str) -> None:
        """Read `room`'s events on the stream too (from a moment after this: what it
        missed shows as a gap)."""
        if self._stream is not None:
            self._stream.setsockopt(zmq.SUBSCRIBE, stream_topic(room))

    def unfollow(self, room: str) -> None:
        """Stop reading `room`'s events on the stream."""
        if self._stream is not None:
            self._stream.setsockopt(zmq.UNSUBSCRIBE, stream_topic(room))

    def unsubscribe(self) -> None:
        """Close the SUB socket, if any, dropping what it had buffered."""
        if self._stream is None:
            return
        self._poller.unregister(self._stream)
        self._sub = None
        self._stream.close(linger=0)
        self._stream = None
        self.stream_port = None

    async def send(self, command: ClientCommand) -> bool:
        """Queue `command` for the broker (ZeroMQ delivers it once connected). False if it
        could not be queued (the queue towards an unreachable broker is full, or the
        connection is closed): the caller decides whether to try again."""
        if self._closed:
            return False
        log.debug("send %r", command)
        try:
            self._dealer.send_multipart(encode(command), zmq.NOBLOCK)
        except zmq.Again:
            log.debug("not sent (queue full): %r", command)
            return False
        return True

    async def receive(self, timeout_s: float, limit: int = RECEIVE_BATCH_MESSAGES) -> Batch:
        """What has arrived, up to about `limit` events from each socket, waiting up to
        `timeout_s` seconds for the first (an empty batch if nothing came). What did not
        fit stays queued for the next call. An undecodable message is a ProtocolError in
        the batch."""
        batch = self._drain(limit)
        if not batch and timeout_s > 0 and not self._closed:
            await self._poller.poll(max(1, round(timeout_s * 1000)))
            batch = self._drain(limit)
        return batch

    def _drain(self, limit: int) -> Batch:
        batch = Batch()
        if self._closed:
            return batch
        direct, recv = batch.direct, self._dealer.recv_multipart
        with contextlib.suppress(zmq.Again):
            for _ in range(limit):
                direct.append(_decode(recv(zmq.NOBLOCK)))
        if self._sub is not None:
            stream, recv = batch.stream, self._sub.recv_multipart
            with contextlib.suppress(zmq.Again):
                while len(stream) < limit:
                    stream.extend(_decode_stream(recv(zmq.NOBLOCK)))
        if log.isEnabledFor(logging.DEBUG):
            for event in (*batch.direct, *batch.stream):
                log.debug("received %r", event)
        return batch

    def close(self, linger_ms: int = 0) -> None:
        """Close the sockets, giving queued commands up to `linger_ms` to leave. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.unsubscribe()
        self.stop_watching_handshakes()
        self._socket.close(linger=linger_ms)
        self._context.term()


def _decode(frames: list[bytes]) -> BrokerEvent | ProtocolError:
    try:
        return decode_event(frames)
    except ProtocolError as exc:
        log.debug("undecodable event %r: %s", frames[:3], exc)
        return exc


def _decode_stream(frames: list[bytes]) -> list[StreamItem]:
    if frames == [STREAM_READY]:
        return [STREAM_READY_MARK]
    if len(frames) > 1:
        return [_stream_item(frames)]  # one event, not packed
    try:
        packed = unpack_events(split_topic(frames[0])[1])
    except ProtocolError as exc:
        log.debug("undecodable stream frame %r: %s", frames[0][:32], exc)
        return [exc]
    items: list[StreamItem] = []
    for event_frames in packed:
        item = _stream_item(event_frames)
        if isinstance(item, ProtocolError):
            # One bad event discards the whole frame, with one error: the numbers will show
            # the gap, and a hostile frame cannot turn into thousands of error lines.
            return [item]
        items.append(item)
    return items


def _stream_item(frames: list[bytes]) -> StreamItem:
    event = _decode(frames)
    if isinstance(event, _STREAM_ITEMS):
        return event
    verb = event.VERB.decode()
    return ProtocolError(ErrorCode.UNKNOWN_COMMAND, f"{verb} has no place on the broadcast stream")
