"""Test peers: real DEALER sockets that speak the protocol, one per chat user.

Written to read like a conversation: `alice.say("hi")`, then `bob.expect(Message, text="hi")`.
"""

import itertools
import math
import secrets
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, TypeVar

import zmq

from messages import (
    GENERAL_ROOM,
    STREAM_READY,
    ErrorCode,
    decode_event,
    encode,
    split_topic,
    stream_topic,
    unpack_events,
)
from messages import commands as cmd
from messages import events as ev

#: How long a peer waits for an expected event before the test fails, in seconds:
#: generous, since a wait ends as soon as the event comes, and a busy machine is slow.
EXPECT_TIMEOUT_S = 15.0
#: How long a peer waits before it sends a HELLO refused with ERROR 503 again, in s.
UNAVAILABLE_RETRY_S = 0.5

E = TypeVar("E", bound=ev.BrokerEvent)
BroadcastEvent = ev.Joined | ev.Left | ev.Message | ev.Notice | ev.AwayChanged | ev.Renamed
#: Events a conversation test may skip over: presence, heartbeats, acknowledgements.
_NOISE = (ev.Joined, ev.Left, ev.Pong, ev.Ack, ev.Delivered, ev.Tick)


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
        self._context = context
        self._endpoint = endpoint
        self._server_key = server_key
        #: The SUB socket on the broadcast stream, once `register(..., stream=True)` opened it.
        self.stream: zmq.Socket[bytes] | None = None
        self._poller = zmq.Poller()
        self._poller.register(self.socket, zmq.POLLIN)
        # Stream events read and not yet returned by `next_event`.
        self._unread: deque[ev.BrokerEvent] = deque()
        self.nick = ""
        self.welcome: ev.Welcome | None = None
        #: This peer's session token, and a counter for its message ids.
        self.token = secrets.token_urlsafe(16)
        self._ids = itertools.count(1)

    def send(self, command: cmd.ClientCommand) -> None:
        self.socket.send_multipart(encode(command))

    def send_raw(self, frames: Sequence[bytes]) -> None:
        self.socket.send_multipart(list(frames))

    def next_id(self) -> str:
        return f"{self.token}-{next(self._ids)}"

    def register(self, nick: str, stream: bool = False, stream_hwm: int = 1000) -> ev.Welcome:
        """HELLO until WELCOME; with `stream`, then subscribe to the broadcast stream (queueing
        at most `stream_hwm` messages)."""
        self.send(cmd.Hello(nick, self.token, stream))
        answer = self.next_event()
        deadline = time.monotonic() + EXPECT_TIMEOUT_S
        while isinstance(answer, ev.Error) and answer.code == ErrorCode.UNAVAILABLE:
            # A broker of a cluster that cannot check the nick now (NATS slow, or away): as
            # a client does, try again a moment later.
            assert time.monotonic() < deadline, f"{nick}: {answer.reason}"
            time.sleep(UNAVAILABLE_RETRY_S)
            self.send(cmd.Hello(nick, self.token, stream))
            answer = self.next_event()
        welcome = self._check(answer, ev.Welcome, {})
        self.nick = welcome.nick
        self.welcome = welcome
        if stream and self.stream is None:
            self.open_stream(welcome.stream_port, stream_hwm)
        return welcome

    def stream_endpoint(self, port: int) -> str:
        """The broker's stream: `port` on the broker's host."""
        return f"{self._endpoint.rpartition(':')[0]}:{port}"

    def open_stream(self, port: int, hwm: int = 1000) -> None:
        """Subscribe to the stream on `port` of the broker's host; wait until it is in place."""
        sub: zmq.Socket[bytes] = self._context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, hwm)
        if self._server_key is not None:
            public, secret = zmq.curve_keypair()
            sub.curve_serverkey = self._server_key
            sub.curve_publickey = public
            sub.curve_secretkey = secret
        sub.setsockopt(zmq.SUBSCRIBE, STREAM_READY)
        sub.setsockopt(zmq.SUBSCRIBE, stream_topic(GENERAL_ROOM))
        sub.connect(self.stream_endpoint(port))
        assert sub.poll(int(EXPECT_TIMEOUT_S * 1000)), f"{self.nick}: the stream never opened"
        first = sub.recv_multipart()
        assert first == [STREAM_READY], first
        self.stream = sub
        self._poller.register(sub, zmq.POLLIN)

    def say(self, text: str) -> str:
        msg_id = self.next_id()
        self.send(cmd.Say(msg_id, text))
        return msg_id

    def tell(self, recipient: str, text: str) -> str:
        msg_id = self.next_id()
        self.send(cmd.Tell(msg_id, recipient, text))
        return msg_id

    def users(self) -> tuple[str, ...]:
        """Everyone present, asked with USERS (presence events on the way are skipped)."""
        self.send(cmd.ListUsers())
        return self.expect_after_presence(ev.UserList).users

    def users_page(self, after: str = "") -> ev.UserList:
        """The page of the user list after `after`, asked with USERS."""
        self.send(cmd.ListUsers(after))
        return self.on_connection(ev.UserList)

    def last_seq(self) -> int:
        """The number of the last broadcast so far (a USERS reply names it)."""
        self.send(cmd.ListUsers())
        return self.on_connection(ev.UserList).seq

    def fetch(self, from_seq: int, last_seq: int) -> list[BroadcastEvent]:
        """FETCH from `from_seq`: the broadcasts up to `last_seq` the broker sends back (at
        most FETCH_LIMIT, and FETCH_REPLY_BYTES), read from the connection only."""
        self.send(cmd.Fetch(from_seq))
        # The broker answers in order: the answer is complete when the PONG comes.
        self.send(cmd.Ping())
        replay: list[BroadcastEvent] = []
        other: list[ev.BrokerEvent] = []
        while True:
            assert self.socket.poll(int(EXPECT_TIMEOUT_S * 1000)), (
                f"{self.nick}: FETCH unanswered after {len(replay)}; also got {other[:5]}"
            )
            event = decode_event(self.socket.recv_multipart())
            if isinstance(event, ev.Pong):
                return [e for e in replay if e.seq <= last_seq]
            if isinstance(event, BroadcastEvent):
                replay.append(event)
            else:
                other.append(event)

    def next_event(self, timeout: float = EXPECT_TIMEOUT_S) -> ev.BrokerEvent:
        """The next event from the connection or, if open, the stream (whichever is first).

        Stream broadcasts numbered up to our WELCOME's `seq` are dropped as already applied,
        as PROTOCOL.md says: our own JOIN among them, which the stream may deliver if the
        broker publishes it after we subscribed."""
        deadline = time.monotonic() + timeout
        while not self._unread:
            left_ms = max(0, math.ceil((deadline - time.monotonic()) * 1000))
            ready = dict(self._poller.poll(left_ms))
            if not ready:
                raise AssertionError(f"{self.nick or 'peer'}: no event within {timeout} s")
            if self.socket in ready:
                return decode_event(self.socket.recv_multipart())
            self._unread.extend(e for e in self.read_stream() if not self._applied(e))
        return self._unread.popleft()

    def take_ids_from(self, other: "Peer") -> None:
        """Number messages on from where `other` is (a client that went on elsewhere with
        the same session)."""
        self._ids = other._ids

    def unread(self, events: list[ev.BrokerEvent]) -> None:
        """Have `next_event` return `events` (in order) before anything else."""
        self._unread.extendleft(reversed(events))

    def _applied(self, event: ev.BrokerEvent) -> bool:
        """Whether `event` is a broadcast our WELCOME's `seq` already covers."""
        welcome = self.welcome
        return (
            welcome is not None and isinstance(event, BroadcastEvent) and event.seq <= welcome.seq
        )

    def read_stream(self) -> list[ev.BrokerEvent]:
        """The events of the next stream message (one frame packs one or more)."""
        assert self.stream is not None
        assert self.stream.poll(int(EXPECT_TIMEOUT_S * 1000)), f"{self.nick}: stream silent"
        [framed] = self.stream.recv_multipart()
        _, packed = split_topic(framed)
        return [decode_event(frames) for frames in unpack_events(packed)]

    def expect(self, kind: type[E], **fields: Any) -> E:
        """The next event, which must be a `kind` with these field values."""
        return self._check(self.next_event(), kind, fields)

    def expect_after_presence(self, kind: type[E], **fields: Any) -> E:
        """Like `expect`, skipping JOIN, LEAVE, PONG, ACK, DELIVERED and TICK on the way."""
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
        self.on_connection(ev.Pong)

    def on_connection(self, kind: type[E]) -> E:
        """The next `kind` on the connection, skipping what comes before it; the stream is
        not read."""
        while True:
            assert self.socket.poll(int(EXPECT_TIMEOUT_S * 1000)), f"{self.nick}: no {kind}"
            event = decode_event(self.socket.recv_multipart())
            if isinstance(event, kind):
                return event

    def close(self) -> None:
        self.socket.close(linger=0)
        if self.stream is not None:
            self.stream.close(linger=0)
