"""The client's socket to the broker: the only module that touches ZeroMQ.

A DEALER socket connects to the broker's ROUTER. Each command is one multipart message (the
frames of `messages.encode`, no empty delimiter frame), and the socket keeps the identity
ZeroMQ gives it: the broker tells clients apart by connection, not by a chosen routing id.
"""

import logging

import zmq
import zmq.asyncio

from messages import MAX_WIRE_FRAME_BYTES, ProtocolError, decode_event, encode
from messages.commands import ClientCommand
from messages.events import BrokerEvent

log = logging.getLogger(__name__)


class Connection:
    """A DEALER socket connected to the broker at `endpoint` (for example tcp://host:5555).

    Raises ValueError if `endpoint` is not an address ZeroMQ can connect to.
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._context = zmq.asyncio.Context()
        self._socket = self._context.socket(zmq.DEALER)
        # A broker that sends an absurdly large frame is cut off by libzmq before we buffer it.
        self._socket.setsockopt(zmq.MAXMSGSIZE, MAX_WIRE_FRAME_BYTES)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._closed = False
        try:
            self._socket.connect(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise ValueError(f"cannot connect to {endpoint!r}: {exc}") from None

    async def send(self, command: ClientCommand) -> None:
        """Queue `command` for the broker (ZeroMQ delivers it once connected)."""
        log.debug("send %r", command)
        await self._socket.send_multipart(encode(command))

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
