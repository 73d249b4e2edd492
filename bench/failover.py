"""Failover: SIGKILL the broker that holds a set of clients; how long until the other serves
them, and what became of the messages sent through the kill.

Every client here does what the chat's client (client/session.py) does with two servers: it
PINGs every heartbeat interval and counts any event on its DEALER as life; after one liveness
bound (HEARTBEAT_LIVENESS intervals) of silence it closes the DEALER, opens a fresh one to
the next server and sends the same HELLO (nick and session token), which resumes its
session there; every message not ACKed yet is sent again with the same msg_id.

On broker A: a sender, a recipient of its private messages, and `idle` clients that only
PING. On broker B: a watcher, registered without the stream, which gets every broadcast
on its DEALER. The sender sends a numbered TELL (to the recipient) and a numbered SAY
(to everyone) `rate` times a second, before, during and after the kill ("typed": while it
is between brokers they wait in its outbox, as typed lines do in the client's). Then:

- time to failover, per client on A: from the SIGKILL to its WELCOME from B (of which
  one liveness bound, less the time since its last PONG, is noticing the silence; the
  time from its HELLO to B's WELCOME is given too);
- privates lost: numbers sent that the recipient never got; privates repeated: copies of
  an id it already had (the client confirms and drops them: not shown twice);
- broadcasts lost: numbers the watcher never got; broadcasts doubled: an id under two
  sequence numbers (a client would show it twice).
"""

import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from messages import HEARTBEAT_LIVENESS, ProtocolError, decode_event, encode
from messages import commands as cmd
from messages import events as ev

#: Seconds of steady sending before the kill, and the longest the clients may take to come
#: back after it (then the run reports who did not).
BEFORE_KILL_S, FAILOVER_LIMIT_S = 1.0, 15.0
#: After everyone is back: more sending, then at most this long for the last ACKs and
#: deliveries, in s.
AFTER_S, SETTLE_LIMIT_S = 1.0, 10.0
#: How long one poll waits at most, in s: the clock the clients' timers run on.
TICK_S = 0.005
TEXT = "failover message"


@dataclass
class FailoverClient:
    """A DEALER client with the chat client's liveness, reconnection and outbox."""

    ctx: zmq.Context  # type: ignore[type-arg]
    nick: str
    servers: list[str]
    heartbeat_s: float
    #: HELLO stream=1 (broadcasts on a stream this client never opens) or 0 (on the DEALER).
    stream: bool = True
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    sock: zmq.Socket | None = None  # type: ignore[type-arg]
    server: int = 0
    registered: bool = False
    last_heard: float = 0.0
    next_ping: float = 0.0
    hello_deadline: float = 0.0
    #: (when, server index) of each HELLO sent and each WELCOME.
    hellos: list[tuple[float, int]] = field(default_factory=list)
    welcomes: list[tuple[float, int]] = field(default_factory=list)
    #: Commands not ACKed yet, by msg_id, in the order typed.
    outbox: dict[str, list[bytes]] = field(default_factory=dict)
    errors: list[ev.Error] = field(default_factory=list)

    @property
    def liveness_s(self) -> float:
        return HEARTBEAT_LIVENESS * self.heartbeat_s

    def open(self, now: float, poller: zmq.Poller) -> None:
        """A fresh DEALER to the current server, HELLO sent (a stale one may be queued on
        the old socket: it is closed)."""
        self.close(poller)
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.servers[self.server])
        sock.send_multipart(encode(cmd.Hello(self.nick, self.token, self.stream)))
        poller.register(sock, zmq.POLLIN)
        self.hellos.append((now, self.server))
        self.sock = sock
        self.registered = False
        self.hello_deadline = now + self.liveness_s

    def close(self, poller: zmq.Poller) -> None:
        if self.sock is not None:
            poller.unregister(self.sock)
            self.sock.close(linger=0)
            self.sock = None

    def tick(self, now: float, poller: zmq.Poller) -> None:
        """The client's timers: PING, the liveness bound, the wait for WELCOME."""
        if self.registered:
            if now - self.last_heard > self.liveness_s:
                self.server = (self.server + 1) % len(self.servers)
                self.open(now, poller)
            elif now >= self.next_ping and self.sock is not None:
                self.sock.send_multipart(encode(cmd.Ping()))
                self.next_ping = now + self.heartbeat_s
        elif now > self.hello_deadline:
            self.server = (self.server + 1) % len(self.servers)
            self.open(now, poller)

    def send(self, msg_id: str, command: cmd.Say | cmd.Tell) -> None:
        """Type a message: into the outbox, and sent now if registered."""
        frames = encode(command)
        self.outbox[msg_id] = frames
        if self.registered and self.sock is not None:
            self.sock.send_multipart(frames)

    def read(
        self, now: float, on_event: Callable[["FailoverClient", ev.BrokerEvent], None]
    ) -> None:
        """Everything on the DEALER now, handled, then `on_event` for each."""
        assert self.sock is not None
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.last_heard = now
            try:
                event = decode_event(frames)
            except ProtocolError:
                continue  # newer than this bench: nothing it counts
            if isinstance(event, ev.Welcome):
                self.registered = True
                self.welcomes.append((now, self.server))
                self.next_ping = now + self.heartbeat_s
                # What the dead broker never ACKed goes again, same ids: kept once.
                for frames_out in self.outbox.values():
                    self.sock.send_multipart(frames_out)
            elif isinstance(event, ev.Ack):
                for msg_id in event.msg_ids:
                    self.outbox.pop(msg_id, None)
            elif isinstance(event, ev.Error):
                self.errors.append(event)
            on_event(self, event)


def failed_over(client: FailoverClient, killed_at: float) -> tuple[float, float] | None:
    """When `client` sent the HELLO that B (server 1) welcomed first after `killed_at`, and
    when that WELCOME came; None if it never did."""
    welcome = next((t for t, server in client.welcomes if t > killed_at and server == 1), None)
    if welcome is None:
        return None
    hello = max(t for t, server in client.hellos if server == 1 and t <= welcome)
    return hello, welcome


@dataclass
class Tally:
    """What the recipient and the watcher got from the sender."""

    sender: str
    privates: Counter[str] = field(default_factory=Counter)
    #: Broadcast msg_id -> the sequence numbers it came under.
    broadcasts: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))

    def on_event(self, client: FailoverClient, event: ev.BrokerEvent) -> None:
        if isinstance(event, ev.PrivateMessage) and event.sender == self.sender:
            self.privates[event.msg_id] += 1
            # As the client does: confirm every copy (the broker resends until confirmed).
            if client.sock is not None:
                client.sock.send_multipart(encode(cmd.Received(event.msg_id, event.sender)))
        elif isinstance(event, ev.Message) and event.sender == self.sender:
            self.broadcasts[event.msg_id].add(event.seq)


def count_losses(sent: int, tally: Tally) -> dict[str, float]:
    """Lost and doubled messages among numbers 1..`sent` of each kind (p1.., b1..)."""
    privates = {f"p{n}" for n in range(1, sent + 1)}
    broadcasts = {f"b{n}" for n in range(1, sent + 1)}
    return {
        "privates lost": float(len(privates - set(tally.privates))),
        "privates repeated": float(sum(c - 1 for c in tally.privates.values())),
        "broadcasts lost": float(len(broadcasts - set(tally.broadcasts))),
        "broadcasts doubled": float(sum(len(s) > 1 for s in tally.broadcasts.values())),
    }


def measure_failover(
    endpoints: list[str], kill: Callable[[], None], heartbeat_ms: int, idle: int, rate: float
) -> dict[str, float]:
    """Clients on endpoints[0] (A) fail over to endpoints[1] (B) when `kill` SIGKILLs A;
    the figures named in the module's docstring."""
    heartbeat_s = heartbeat_ms / 1000
    ctx = zmq.Context()
    poller = zmq.Poller()
    both = endpoints[:2]
    sender = FailoverClient(ctx, "sender", both, heartbeat_s)
    recipient = FailoverClient(ctx, "recipient", both, heartbeat_s)
    others = [FailoverClient(ctx, f"idle{i}", both, heartbeat_s) for i in range(idle)]
    watcher = FailoverClient(ctx, "watcher", both[::-1], heartbeat_s, stream=False)
    on_a = [sender, recipient, *others]
    everyone = [*on_a, watcher]
    tally = Tally(sender.nick)
    by_sock: dict[object, FailoverClient] = {}
    sent = 0

    def pump(until: Callable[[float], bool], limit: float, typing_from: float = -1.0) -> bool:
        """Run the clients (and the sender's typing, from `typing_from`) until `until`."""
        nonlocal sent
        deadline = time.monotonic() + limit
        while (now := time.monotonic()) < deadline:
            if until(now):
                return True
            if typing_from >= 0:
                while sent < int((now - typing_from) * rate) + 1:
                    sent += 1
                    sender.send(f"p{sent}", cmd.Tell(f"p{sent}", recipient.nick, TEXT))
                    sender.send(f"b{sent}", cmd.Say(f"b{sent}", TEXT))
            for client in everyone:
                client.tick(now, poller)
                if client.sock is not None:
                    by_sock[client.sock] = client
            for sock, _ in poller.poll(round(TICK_S * 1000)):
                by_sock[sock].read(time.monotonic(), tally.on_event)
        return False

    try:
        start = time.monotonic()
        for client in everyone:
            client.open(start, poller)
        if not pump(lambda _: all(c.registered for c in everyone), 30):
            raise RuntimeError("the failover clients did not all register")
        typing_from = time.monotonic()
        pump(lambda now: now - typing_from >= BEFORE_KILL_S, BEFORE_KILL_S + 1, typing_from)
        killed_at = time.monotonic()
        kill()

        def all_back(_now: float) -> bool:
            return all(any(w[0] > killed_at and w[1] == 1 for w in c.welcomes) for c in on_a)

        pump(all_back, FAILOVER_LIMIT_S, typing_from)
        back_at = time.monotonic()
        pump(lambda now: now - back_at >= AFTER_S, AFTER_S + 1, typing_from)
        typed = sent

        def settled(_now: float) -> bool:
            got = len(tally.privates) >= typed and len(tally.broadcasts) >= typed
            return got and not sender.outbox

        pump(settled, SETTLE_LIMIT_S)
        moves = [m for c in on_a if (m := failed_over(c, killed_at)) is not None]
        times = sorted(welcome - killed_at for _, welcome in moves)
        resumes = sorted(welcome - hello for hello, welcome in moves)
        everyone_back = len(moves) == len(on_a)
        nan = float("nan")
        figures = {
            "clients failed over": float(len(moves)),
            "clients on the killed broker": float(len(on_a)),
            "failover time, median": times[len(times) // 2] if times else nan,
            "failover time, max": times[-1] if everyone_back else nan,
            "goal: 2 x liveness": 2 * HEARTBEAT_LIVENESS * heartbeat_s,
            "HELLO to WELCOME on B, max": resumes[-1] if everyone_back else nan,
            "messages sent (each kind)": float(typed),
            **count_losses(typed, tally),
            "errors": float(sum(len(c.errors) for c in everyone)),
        }
        for client in everyone:
            for error in client.errors[:1]:
                print(f"  {client.nick}: ERROR {error.code} {error.reason}")
        return figures
    finally:
        for client in everyone:
            client.close(poller)
        ctx.term()
