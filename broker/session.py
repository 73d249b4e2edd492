"""What the broker keeps about one registered client."""

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from messages import TokenBucket, nick_key
from messages import events as ev

Identity = bytes

#: Message ids remembered per session to drop resent duplicates.
DEDUP_WINDOW: Final = 4096
#: Private messages kept per recipient until it confirms them; older ones are dropped.
UNCONFIRMED_LIMIT: Final = 1000


def receipt_key(sender: str, msg_id: str) -> tuple[str, str]:
    """What identifies a private message awaiting its RECEIVED."""
    return (nick_key(sender), msg_id)


@dataclass(slots=True)
class Session:
    """One registered client: its current ROUTER identity and everything tied to its nick."""

    identity: Identity
    nick: str
    #: The client's session token: a HELLO repeating it resumes this session.
    token: str
    #: Monotonic time of the last message from this client.
    last_heard: float
    #: Flood control: chat commands, refusals, failed operator logins, bytes of answers.
    messages: TokenBucket
    strikes: TokenBucket
    admin_tries: TokenBucket
    replies: TokenBucket
    operator: bool = False
    #: The client reads broadcasts from the stream, not from its connection.
    stream: bool = False
    #: Private messages sent to this client and not yet confirmed with RECEIVED, by
    #: (sender's nick key, msg_id), with the session token of their sender (DELIVERED goes
    #: to that session only).
    unconfirmed: OrderedDict[tuple[str, str], tuple[ev.PrivateMessage, str]] = field(
        default_factory=OrderedDict
    )
    _recent_ids: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def seen(self, msg_id: str) -> bool:
        """True if this client's message `msg_id` was already accepted."""
        return msg_id in self._recent_ids

    def accept(self, msg_id: str) -> None:
        """Remember `msg_id` so that a resent copy is recognized."""
        self._recent_ids[msg_id] = None
        if len(self._recent_ids) > DEDUP_WINDOW:
            self._recent_ids.popitem(last=False)

    def await_receipt(self, private: ev.PrivateMessage, sender_token: str) -> None:
        """Keep `private` until this client confirms it."""
        # Ids are unique per sender only: keyed by both, no sender can displace another's.
        self.unconfirmed[receipt_key(private.sender, private.msg_id)] = (private, sender_token)
        if len(self.unconfirmed) > UNCONFIRMED_LIMIT:
            self.unconfirmed.popitem(last=False)
