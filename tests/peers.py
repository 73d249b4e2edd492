"""Test peers: real DEALER sockets that speak the protocol, one per chat user.

Written to read like a conversation: `alice.say("hi")`, then `bob.expect(Message, text="hi")`.
"""

from collections.abc import Sequence
from typing import Any, TypeVar

import zmq

from messages import commands as cmd
from messages import decode_event, encode
from messages import events as ev

#: How long a peer waits for an expected event before the test fails, in seconds.
EXPECT_TIMEOUT_S = 5.0

E = TypeVar("E", bound=ev.BrokerEvent)
#: Events a conversation test may skip over: presence changes and heartbeat answers.
_NOISE = (ev.Joined, ev.Left, ev.Pong)


class Peer:
    """One chat user on a real DEALER socket."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> None:
        self.socket: zmq.Socket[bytes] = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self.nick = ""
        self.welcome: ev.Welcome | None = None

    def send(self, command: cmd.ClientCommand) -> None:
        self.socket.send_multipart(encode(command))

    def send_raw(self, frames: Sequence[bytes]) -> None:
        self.socket.send_multipart(list(frames))

    def register(self, nick: str) -> ev.Welcome:
        self.send(cmd.Hello(nick))
        welcome = self.expect(ev.Welcome)
        self.nick = welcome.nick
        self.welcome = welcome
        return welcome

    def say(self, text: str) -> None:
        self.send(cmd.Say(text))

    def tell(self, recipient: str, text: str) -> None:
        self.send(cmd.Tell(recipient, text))

    def next_event(self, timeout: float = EXPECT_TIMEOUT_S) -> ev.BrokerEvent:
        if not self.socket.poll(int(timeout * 1000)):
            raise AssertionError(f"{self.nick or 'peer'}: no event within {timeout} s")
        return decode_event(self.socket.recv_multipart())

    def expect(self, kind: type[E], **fields: Any) -> E:
        """The next event, which must be a `kind` with these field values."""
        return self._check(self.next_event(), kind, fields)

    def expect_after_presence(self, kind: type[E], **fields: Any) -> E:
        """Like `expect`, skipping the JOIN, LEAVE and PONG events that arrive on the way."""
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
