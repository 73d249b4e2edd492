"""The client's socket to the broker: the only module that touches ZeroMQ.

A DEALER socket connects to the broker's ROUTER. Each command is one multipart message (the
frames of `messages.encode`, no empty delimiter frame), and the socket keeps the identity
ZeroMQ gives it: the broker tells clients apart by connection and refuses chosen routing ids.

With CurveZMQ (`CurveKeys`) every connection is encrypted and the broker authenticated by
its public key; a wrong key makes the handshake fail silently, so the broker never answers.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.asyncio
import zmq.auth
from zmq.utils import z85

from messages import MAX_EVENT_WIRE_FRAME_BYTES, ProtocolError, decode_event, encode
from messages.commands import ClientCommand
from messages.events import BrokerEvent

log = logging.getLogger(__name__)

#: Length of a CurveZMQ key in Z85 text (32 bytes).
Z85_KEY_CHARS = 40


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


class Connection:
    """A DEALER socket connected to the broker at `endpoint` (for example tcp://host:5555),
    encrypted with `keys` if given.

    Raises ValueError if `endpoint` is not an address ZeroMQ can connect to.
    """

    def __init__(self, endpoint: str, keys: CurveKeys | None = None) -> None:
        self.endpoint = endpoint
        self._context = zmq.asyncio.Context()
        self._socket = self._context.socket(zmq.DEALER)
        # A broker that sends an absurdly large frame is cut off by libzmq before we buffer
        # it; nick lists may legitimately approach this size.
        self._socket.setsockopt(zmq.MAXMSGSIZE, MAX_EVENT_WIRE_FRAME_BYTES)
        self._socket.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            # Before connect: the handshake uses them.
            self._socket.curve_serverkey = keys.server_public
            self._socket.curve_publickey = keys.public
            self._socket.curve_secretkey = keys.secret
        self._closed = False
        try:
            self._socket.connect(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise ValueError(f"cannot connect to {endpoint!r}: {exc}") from None

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    async def send(self, command: ClientCommand) -> bool:
        """Queue `command` for the broker (ZeroMQ delivers it once connected). False if it
        could not be queued (the queue towards an unreachable broker is full, or the
        connection is closed): the caller decides whether to try again."""
        if self._closed:
            return False
        log.debug("send %r", command)
        try:
            await self._socket.send_multipart(encode(command), flags=zmq.NOBLOCK)
        except zmq.Again:
            log.debug("not sent (queue full): %r", command)
            return False
        return True

    async def receive(self, timeout_s: float) -> BrokerEvent | ProtocolError | None:
        """The next event from the broker; a ProtocolError if what arrived is not a valid
        event; None if nothing arrived within `timeout_s` seconds."""
        if not await self._socket.poll(max(0, round(timeout_s * 1000))):
            return None
        frames = await self._socket.recv_multipart()
        try:
            event = decode_event(frames)
        except ProtocolError as exc:
            log.debug("undecodable event %r: %s", frames[:3], exc)
            return exc
        log.debug("received %r", event)
        return event

    def close(self, linger_ms: int = 0) -> None:
        """Close the socket, giving queued commands up to `linger_ms` to leave. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._socket.close(linger=linger_ms)
        self._context.term()
