"""The outbox: every chat message the user typed, until the broker has it (sans-IO).

Each SAY or TELL gets a message id (`{random prefix}-{counter}-{random part}`; the prefix is
not the session token, which every recipient would otherwise learn, and the random part,
new for each message, makes the next id impossible to guess from the last one: nobody can
send an id first so that receivers drop ours as a repeat) and goes through these delivery
states:

    PENDING --ACK--> SENT --DELIVERED--> DELIVERED      (DELIVERED: TELL only)
                      +--STORED--> STORED --DELIVERED--+  (the recipient, an owned nick, is away)
       |              |
       +--ERROR--> FAILED <--ERROR 504--+               (any code but 401, 429 and 503)

(ERROR 504: the broker dropped a TELL it had acknowledged, unconfirmed: its recipient left.)

A PENDING message is (re)sent after every registration, in the order it was typed, and again
if no ACK came within `ack_timeout_s` while connected. ERROR 401, 429 and 503 keep it
PENDING: the first means the broker lost our session (the session registers again, then
resends), the second that we went too fast, the third that the broker cannot pass it on now
(its cluster's NATS is unreachable): both are retried `retry_s` later. When the broker
restarted (a new epoch), it forgot everything: every TELL not yet DELIVERED and every SAY
acknowledged shortly before the link was lost goes back to PENDING and is sent again;
recipients drop the copies they already have by message id.

All sending is paced by a token bucket matching the broker's flood control, so that a script
piping many lines never trips ERROR 429. Times are monotonic seconds passed in by the caller.
"""

import enum
import itertools
import math
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from messages import (
    FLOOD_BURST,
    FLOOD_PER_SECOND,
    HEARTBEAT_INTERVAL_MS,
    HEARTBEAT_LIVENESS,
    ErrorCode,
    TokenBucket,
    is_room_name,
)
from messages.commands import Post, Say, Tell

#: How far behind the broker may fall, in seconds, just as we spend our burst, without
#: refusing anything: it counts a message when it reads it, we count it when we send it,
#: so what we paced over a stall of the broker (a busy machine, a slow network) reaches
#: it at once.
PACING_LAG_S: Final = 2.0
#: Tokens the client keeps below the broker's burst, for that.
PACING_SLACK_TOKENS: Final = math.ceil(PACING_LAG_S * FLOOD_PER_SECOND)
#: The pacing bucket: at most this many messages at once ...
PACING_BURST: Final = FLOOD_BURST - PACING_SLACK_TOKENS
#: ... and this many per second after that (the broker's rate).
PACING_PER_SECOND: Final = FLOOD_PER_SECOND
#: A message sent while connected is sent again if not acknowledged within this many
#: liveness bounds (a liveness bound is HEARTBEAT_LIVENESS heartbeat intervals).
ACK_TIMEOUT_BOUNDS: Final = 1
#: After a broker restart, SAYs acknowledged within this many liveness bounds before the
#: link was lost are sent again: the old broker may have died before passing them on.
EPOCH_GRACE_BOUNDS: Final = 2
#: A message refused with ERROR 429 is retried after this many seconds.
RATE_LIMIT_RETRY_S: Final = 1.0
#: Sent TELLs kept while waiting for DELIVERED (for resending after a broker restart);
#: the oldest are forgotten beyond this.
MAX_AWAITING_DELIVERY: Final = 1000
#: Random bytes in each message id (hex-encoded: twice as many characters), new for each
#: message: whoever sees our ids cannot tell the next one.
MSG_ID_RANDOM_BYTES: Final = 8


def liveness_bound_s(heartbeat_ms: int) -> float:
    """How long a broker announcing `heartbeat_ms` may stay silent, in seconds."""
    return HEARTBEAT_LIVENESS * heartbeat_ms / 1000


#: Defaults for the protocol's default heartbeat (2 s): 6 s and 12 s.
ACK_TIMEOUT_S: Final = ACK_TIMEOUT_BOUNDS * liveness_bound_s(HEARTBEAT_INTERVAL_MS)
EPOCH_GRACE_S: Final = EPOCH_GRACE_BOUNDS * liveness_bound_s(HEARTBEAT_INTERVAL_MS)


class Delivery(enum.Enum):
    """Where an own chat message stands."""

    #: Not yet accepted by the broker (maybe not even sent: the link is down).
    PENDING = "pending"
    #: The broker acknowledged it and passed it on.
    SENT = "sent"
    #: A private message the recipient's client confirmed.
    DELIVERED = "delivered"
    #: The recipient is away: the broker keeps it for them (then DELIVERED).
    STORED = "stored"
    #: The broker refused it; it is not sent again.
    FAILED = "failed"


@dataclass
class OutgoingMessage:
    """One typed chat message: to everyone if `recipient` is None, else a TELL."""

    msg_id: str
    text: str
    recipient: str | None
    #: 1, 2, 3, ... in typing order.
    number: int = 0
    state: Delivery = Delivery.PENDING
    #: When it was last handed to the socket; None while it is due to be (re)sent.
    sent_at: float | None = None
    #: Not to be sent before this time (after ERROR 429).
    not_before: float = -math.inf
    #: When the broker acknowledged it.
    acked_at: float | None = None
    #: The ERROR that made it FAILED.
    code: int = 0
    reason: str = ""

    @property
    def command(self) -> Say | Tell | Post:
        """The command that sends it: to everyone, to a room (`#dev`) or to a nick."""
        if self.recipient is None:
            return Say(self.msg_id, self.text)
        if is_room_name(self.recipient):
            return Post(self.recipient, self.msg_id, self.text)
        return Tell(self.msg_id, self.recipient, self.text)


class Outbox:
    """The messages typed in this session that the broker has not settled yet."""

    def __init__(
        self,
        id_prefix: str,
        *,
        heartbeat_ms: int = HEARTBEAT_INTERVAL_MS,
        burst: float = PACING_BURST,
        per_second: float = PACING_PER_SECOND,
        retry_s: float = RATE_LIMIT_RETRY_S,
    ) -> None:
        self.id_prefix = id_prefix
        self.pacer = TokenBucket(burst, per_second)
        self.retry_s = retry_s
        self.ack_timeout_s = ACK_TIMEOUT_S
        self.epoch_grace_s = EPOCH_GRACE_S
        self.set_heartbeat(heartbeat_ms)
        self._counter = itertools.count(1)
        #: The number of the last message added (0: none yet).
        self.last_number = 0
        # msg_id -> message, oldest first: resending walks it in typing order.
        self._messages: dict[str, OutgoingMessage] = {}
        # Until then, a TELL refused with 404 is retried: after a broker restart its
        # recipient may simply not have registered again yet.
        self._recipients_return_until = -math.inf

    def set_heartbeat(self, heartbeat_ms: int) -> None:
        """Scale the timeouts to the heartbeat the broker announced."""
        bound = liveness_bound_s(heartbeat_ms)
        self.ack_timeout_s = ACK_TIMEOUT_BOUNDS * bound
        self.epoch_grace_s = EPOCH_GRACE_BOUNDS * bound

    # -- queries -------------------------------------------------------------------------

    def owns(self, msg_id: str) -> bool:
        """Whether `msg_id` is one this outbox gave out (settled or not)."""
        return msg_id.startswith(f"{self.id_prefix}-")

    def __contains__(self, msg_id: str) -> bool:
        return msg_id in self._messages

    def __iter__(self) -> Iterator[OutgoingMessage]:
        return iter(list(self._messages.values()))

    def get(self, msg_id: str) -> OutgoingMessage | None:
        """The message `msg_id`, if the outbox still holds it."""
        return self._messages.get(msg_id)

    @property
    def unacknowledged(self) -> list[OutgoingMessage]:
        """Messages still PENDING, oldest first."""
        return [m for m in self._messages.values() if m.state is Delivery.PENDING]

    # -- the user types ------------------------------------------------------------------

    def add(self, text: str, recipient: str | None) -> OutgoingMessage:
        """A new PENDING message to everyone (`recipient` None) or to `recipient`."""
        number = next(self._counter)
        msg_id = f"{self.id_prefix}-{number}-{secrets.token_hex(MSG_ID_RANDOM_BYTES)}"
        message = OutgoingMessage(msg_id, text, recipient, number)
        self._messages[message.msg_id] = message
        self.last_number = number
        return message

    # -- sending -------------------------------------------------------------------------

    def due(self, now: float, up_to: int | None = None) -> list[OutgoingMessage]:
        """The messages to send now, in typing order, taking a pacing token for each; they
        count as sent at `now`. Only messages numbered `up_to` or lower, if given. Call only
        while registered."""
        out: list[OutgoingMessage] = []
        for message in self.unacknowledged:
            if up_to is not None and message.number > up_to:
                break
            if message.sent_at is not None and now - message.sent_at < self.ack_timeout_s:
                continue  # in flight
            if message.not_before > now or not self.pacer.take(now):
                break  # later ones wait too: they must not overtake it
            message.sent_at = now
            out.append(message)
        return out

    def all_sent(self, up_to: int) -> bool:
        """Whether every message numbered `up_to` or lower has been sent at least once (or
        settled): what was typed after them may go now."""
        return all(m.sent_at is not None for m in self.unacknowledged if m.number <= up_to)

    def unsent(self, message: OutgoingMessage) -> None:
        """`message` could not be handed to the socket after all: due again."""
        message.sent_at = None

    def next_wakeup(self, now: float) -> float | None:
        """Seconds until `due` may return something (0: now), None if nothing is waiting."""
        waits: list[float] = []
        for message in self.unacknowledged:
            if message.sent_at is not None and now - message.sent_at < self.ack_timeout_s:
                waits.append(message.sent_at + self.ack_timeout_s - now)
                continue
            waits.append(max(message.not_before - now, self.pacer.wait(now), 0.0))
            break
        return min(waits) if waits else None

    # -- what the broker says ------------------------------------------------------------

    def on_ack(self, msg_id: str, now: float) -> OutgoingMessage | None:
        """ACK (or our own message echoed back): PENDING becomes SENT. Returns the message
        if its state changed."""
        message = self._messages.get(msg_id)
        if message is None or message.state is not Delivery.PENDING:
            return None
        message.state = Delivery.SENT
        message.acked_at = now
        self._prune(now)
        return message

    def on_stored(self, msg_id: str, now: float) -> OutgoingMessage | None:
        """STORED: the broker keeps the TELL for its recipient, who is away. Returns the
        message if its state changed."""
        message = self._messages.get(msg_id)
        if message is None or message.recipient is None:
            return None
        if message.state not in (Delivery.PENDING, Delivery.SENT):
            return None
        if message.acked_at is None:
            message.acked_at = now
        message.state = Delivery.STORED
        return message

    def on_delivered(self, msg_id: str, now: float) -> OutgoingMessage | None:
        """DELIVERED: the TELL reached its recipient; the outbox forgets it. Returns the
        message if its state changed."""
        message = self._messages.get(msg_id)
        if message is None or message.recipient is None:
            return None
        if message.acked_at is None:
            message.acked_at = now
        message.state = Delivery.DELIVERED
        del self._messages[msg_id]
        return message

    def on_error(self, msg_id: str, code: int, reason: str, now: float) -> OutgoingMessage | None:
        """ERROR about `msg_id`. Returns the message if it FAILED (and is forgotten);
        None if it stays PENDING (401, 429, 503, a recipient that should be back soon) or is
        not ours. A SENT TELL fails on ERROR 504 only."""
        message = self._messages.get(msg_id)
        if message is None:
            return None
        # ERROR 504 comes after the ACK: the broker dropped a TELL it had accepted.
        undelivered = code == ErrorCode.UNDELIVERED and message.recipient is not None
        if message.state is not Delivery.PENDING and not undelivered:
            return None
        if code == ErrorCode.NOT_REGISTERED:
            message.sent_at = None  # sent again once registered
            return None
        if code in (ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE):
            message.sent_at = None
            message.not_before = now + self.retry_s
            if code == ErrorCode.RATE_LIMITED:
                self.pacer.drain(now)
            return None
        if (
            code == ErrorCode.NO_SUCH_NICK
            and message.recipient is not None
            and now < self._recipients_return_until
        ):
            message.sent_at = None
            message.not_before = now + self.retry_s
            return None
        message.state = Delivery.FAILED
        message.code = code
        message.reason = reason
        del self._messages[msg_id]
        return message

    def on_registered(
        self, now: float, epoch_changed: bool, lost_at: float | None = None
    ) -> list[OutgoingMessage]:
        """WELCOME (first or again): every PENDING message is due now. If the broker
        restarted (`epoch_changed`), also every TELL not yet DELIVERED and every SAY
        acknowledged within `epoch_grace_s` before `lost_at` (when the old broker was last
        heard; default `now`). Returns the messages that went back to PENDING."""
        for message in self.unacknowledged:
            message.sent_at = None
            message.not_before = -math.inf
        if not epoch_changed:
            return []
        self._recipients_return_until = now + self.epoch_grace_s
        since = (now if lost_at is None else lost_at) - self.epoch_grace_s
        again: list[OutgoingMessage] = []
        for message in self._messages.values():
            if message.state is not Delivery.SENT:
                continue
            recent = message.acked_at is not None and message.acked_at >= since
            if message.recipient is not None or recent:
                message.state = Delivery.PENDING
                message.sent_at = None
                message.acked_at = None
                again.append(message)
        return again

    def _prune(self, now: float) -> None:
        """Forget SAYs acknowledged longer ago than the grace period, and the oldest TELLs
        beyond MAX_AWAITING_DELIVERY."""
        horizon = now - self.epoch_grace_s
        awaiting = 0
        for message in list(reversed(self._messages.values())):
            if message.state is not Delivery.SENT:
                continue
            if message.recipient is None:
                if message.acked_at is not None and message.acked_at < horizon:
                    del self._messages[message.msg_id]
            else:
                awaiting += 1
                if awaiting > MAX_AWAITING_DELIVERY:
                    del self._messages[message.msg_id]
