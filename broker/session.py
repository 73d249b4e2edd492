"""What the broker keeps about one registered client."""

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Final

from messages import TokenBucket, nick_key
from messages import events as ev

Identity = bytes

#: Message ids remembered per session to drop resent duplicates.
DEDUP_WINDOW: Final = 4096
#: Private messages kept per recipient until it confirms them: past this many, or this many
#: bytes (their frames), a TELL to it is refused (ERROR 507), so that a recipient that reads
#: but never confirms pins no more.
UNCONFIRMED_LIMIT: Final = 1000
#: What became of its private messages (DELIVERED, ERROR 504): the last ones sent to a
#: client are kept, and sent again when it resumes on a new connection, in case the old one
#: was already dead when they went out.
OUTCOMES_KEPT: Final = 100

#: Senders told a session is away (AWAYREPLY) remembered per away message: past this many,
#: the first told may be told again.
AWAY_REPLIED_LIMIT: Final = 1024

#: An outcome of a private message, for its sender.
Outcome = ev.Delivered | ev.Stored | ev.Error
UNCONFIRMED_BYTES: Final = 256 * 1024


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
    #: The session registered its nick (REGISTER) or proved it owns it (PROVE).
    owns_nick: bool = False
    #: The client reads broadcasts from the stream, not from its connection.
    stream: bool = False
    #: The network address its connection comes from, as limits key it (`address_key`);
    #: empty if unknown.
    address: str = ""
    #: What the store keeps of `token` (see `core.token_hash`): private messages and their
    #: outcomes are tied to it.
    token_hash: str = ""
    #: Private messages sent to this client and not yet confirmed with RECEIVED, by
    #: (sender's nick key, msg_id), with the hash of their sender's session token (DELIVERED
    #: goes to that session only) and their size in bytes.
    unconfirmed: OrderedDict[tuple[str, str], tuple[ev.PrivateMessage, str, int]] = field(
        default_factory=OrderedDict
    )
    #: The last outcomes of its private messages sent to this client (see OUTCOMES_KEPT).
    outcomes: deque[Outcome] = field(default_factory=lambda: deque(maxlen=OUTCOMES_KEPT))
    #: The sizes of `unconfirmed` added up.
    unconfirmed_bytes: int = 0
    #: Bytes sent to this client still unread in the network, as of its last message (0
    #: when not known).
    unsent_bytes: int = 0
    #: The away message (AWAY); empty while the user is here.
    away: str = ""
    #: The token hashes of the sessions told `away` (AWAYREPLY) since it was set.
    away_told: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _recent_ids: OrderedDict[str, None] = field(default_factory=OrderedDict)
    # Private messages it confirmed lately (see `note_confirmed`).
    _confirmed: OrderedDict[tuple[str, str], None] = field(default_factory=OrderedDict)

    def seen(self, msg_id: str) -> bool:
        """True if this client's message `msg_id` was already accepted."""
        return msg_id in self._recent_ids

    def accept(self, msg_id: str) -> None:
        """Remember `msg_id` so that a resent copy is recognized."""
        self._recent_ids[msg_id] = None
        if len(self._recent_ids) > DEDUP_WINDOW:
            self._recent_ids.popitem(last=False)

    def set_away(self, away: str) -> None:
        """Away with `away` from now on (empty: back); nobody has been told it yet."""
        self.away = away
        self.away_told.clear()

    def tell_away(self, sender_token: str) -> bool:
        """Whether the session of `sender_token` (a hash) is still to be told that this one is
        away: true once per away message."""
        if not self.away or sender_token in self.away_told:
            return False
        self.away_told[sender_token] = None
        if len(self.away_told) > AWAY_REPLIED_LIMIT:
            self.away_told.popitem(last=False)
        return True

    def note_confirmed(self, key: tuple[str, str]) -> None:
        """Remember that private message `key` (see `receipt_key`) was confirmed: in a
        cluster, a copy may come again (sent again through another broker)."""
        self._confirmed[key] = None
        if len(self._confirmed) > DEDUP_WINDOW:
            self._confirmed.popitem(last=False)

    def was_confirmed(self, key: tuple[str, str]) -> bool:
        """Whether private message `key` was confirmed lately (see `note_confirmed`)."""
        return key in self._confirmed

    def await_receipt(self, private: ev.PrivateMessage, sender_token: str, size: int) -> int:
        """Keep `private` (of `size` bytes) until this client confirms it; returns by how
        many bytes what is kept grew."""
        # Ids are unique per sender only: keyed by both, no sender can displace another's.
        key = receipt_key(private.sender, private.msg_id)
        replaced = self.confirmed(key)  # a copy sent again by a new session of its sender
        self.unconfirmed[key] = (private, sender_token, size)
        self.unconfirmed_bytes += size
        return size - replaced[2] if replaced is not None else size

    def confirmed(self, key: tuple[str, str]) -> tuple[ev.PrivateMessage, str, int] | None:
        """Forget the private message `key` (see `receipt_key`); it, if it was kept."""
        waiting = self.unconfirmed.pop(key, None)
        if waiting is not None:
            self.unconfirmed_bytes -= waiting[2]
        return waiting
