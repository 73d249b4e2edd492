"""Test peers: real DEALER sockets that speak the protocol, one per chat user.

Written to read like a conversation: `alice.say("hi")`, then `bob.expect(Message, text="hi")`.
"""

import itertools
import secrets
from collections.abc import Sequence
from typing import Any, TypeVar

import zmq

from messages import commands as cmd
from messages import decode_event, encode
from messages import events as ev

#: How long a peer waits for an expected event before the test fails, in seconds.
EXPECT_TIMEOUT_S = 5.0

E = TypeVar("E", bound=ev.BrokerEvent)
#: Events a conversation test may skip over: presence, heartbeats, acknowledgements.
_NOISE = (ev.Joined, ev.Left, ev.Pong, ev.Ack, ev.Delivered)


class Peer:
    """One chat user on a real DEALER socket."""

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        endpoint: str,
        server_key: bytes | None = None,
        routing_id: bytes | None = None,
    ) -> None:
        self.socket: zmq.Socket[bytes] = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if server_key is not None:
            public, secret = zmq.curve_keypair()
            self.socket.curve_serverkey = server_key
            self.socket.curve_publickey = public
            self.socket.curve_secretkey = secret
        if routing_id is not None:
            self.socket.setsockopt(zmq.ROUTING_ID, routing_id)
        self.socket.connect(endpoint)
        self.nick = ""
        self.welcome: ev.Welcome | None = None
        #: This peer's session token, and a counter for its message ids.
        self.token = secrets.token_hex(8)
        self._ids = itertools.count(1)

    def send(self, command: cmd.ClientCommand) -> None:
        self.socket.send_multipart(encode(command))

    def send_raw(self, frames: Sequence[bytes]) -> None:
        self.socket.send_multipart(list(frames))

    def next_id(self) -> str:
        return f"{self.token}-{next(self._ids)}"

    def register(self, nick: str) -> ev.Welcome:
        self.send(cmd.Hello(nick, self.token))
        welcome = self.expect(ev.Welcome)
        self.nick = welcome.nick
        self.welcome = welcome
        return welcome

    def say(self, text: str) -> str:
        msg_id = self.next_id()
        self.send(cmd.Say(msg_id, text))
        return msg_id

    def tell(self, recipient: str, text: str) -> str:
        msg_id = self.next_id()
        self.send(cmd.Tell(msg_id, recipient, text))
        return msg_id

    def next_event(self, timeout: float = EXPECT_TIMEOUT_S) -> ev.BrokerEvent:
        if not self.socket.poll(int(timeout * 1000)):
            raise AssertionError(f"{self.nick or 'peer'}: no event within {timeout} s")
        return decode_event(self.socket.recv_multipart())

    def expect(self, kind: type[E], **fields: Any) -> E:
        """The next event, which must be a `kind` with these field values."""
        return self._check(self.next_event(), kind, fields)

    def expect_after_presence(self, kind: type[E], **fields: Any) -> E:
        """Like `expect`, skipping JOIN, LEAVE, PONG, ACK and DELIVERED on the way."""
        event = self.next_event()
        while isinstance(event, _NOISE) and not isinstance(event, kind):
            event = self.next_event()
        return self._check(event, kind, fields)

    def _check(self, event: ev.BrokerEvent, kind: type[E], fields: dict[str, Any]) -> E:
        assert isinstance(event, kind), f"{self.nick}: expected {kind.__name__}, got {event!r}"
        for name, value in fields.items():
            assert getattr(event, name) == value, f"{self.nick}: {name} of {event!r}"
        return event

    def sync(self) -> None:
        """Wait until the broker has handled everything this peer sent (PING is in order)."""
        self.send(cmd.Ping())
        self.expect_after_presence(ev.Pong)

    def close(self) -> None:
        self.socket.close(linger=0)
