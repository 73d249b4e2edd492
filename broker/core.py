"""The broker's routing core: sans-IO, no sockets.

The core takes what one client sent (its ROUTER identity and the message frames) and returns
the events to send, as a list of (identity, event) pairs; the socket loop in
`broker.server` does the sending. Everything the broker knows about its users lives here,
so every rule (registration, resumption, routing, receipts, presence, operators, expiry,
flood control) can be tested without a socket.
"""

import hashlib
import hmac
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Final

from messages import (
    DEFAULT_KICK_BAR_SECONDS,
    FETCH_LIMIT,
    FETCH_REPLY_BYTES,
    HEARTBEAT_INTERVAL_MS,
    HEARTBEAT_LIVENESS,
    MAX_BAR_SECONDS,
    MAX_NICK_CHARS,
    MAX_REASON_BYTES,
    MAX_TEXT_BYTES,
    ROOMS_PAGE_ROOMS,
    SIGNATURE,
    USERS_PAGE_BYTES,
    ErrorCode,
    ProtocolError,
    check_room_name,
    command_verbs,
    decode_command,
    encode,
    format_duration,
    from_b64url,
    is_room_name,
    message_ref,
    nick_key,
    nick_skeleton,
    normalize_nick,
    prove_payload,
    register_payload,
    truncate_utf8,
)
from messages import commands as cmd
from messages import events as ev
from messages.events import RoomEvent

from .addresses import AddressLimits, address_key
from .admin_token import check_admin_token
from .bans import Bans
from .cluster import (
    Backplane,
    Claim,
    ClaimGone,
    ClaimOutcome,
    ClaimResult,
    ClaimSet,
    ClusterEvent,
    ConsoleIn,
    LinkChanged,
    Numbered,
    OutcomeIn,
    OwnerGone,
    OwnerSet,
    PrivateIn,
    Published,
    Reaped,
    RemoteActor,
    RoomChange,
    RoomOp,
    claim_keys,
)
from .history import HISTORY_EVENTS, BroadcastEvent, BroadcastLog, Replay, within
from .owners import Challenges, OwnedLookalikes, owned_nicks, signed_by
from .ratelimit import FloodPolicy
from .rooms import Actor, Room, Rooms, numbered
from .roster import Roster, page_of
from .session import (
    UNCONFIRMED_BYTES,
    UNCONFIRMED_LIMIT,
    Identity,
    Outcome,
    Session,
    receipt_key,
)
from .store import AlreadyStored, Page, Store, StoreError

log = logging.getLogger(__name__)

Outgoing = tuple[Identity, ev.BrokerEvent]

#: The address of the broadcast stream: an event addressed here is published once, for
#: every client that reads the stream. (ROUTER identities are never empty.)
STREAM: Final[Identity] = b""

#: Who a kick or notice comes from when the broker's own terminal issues it.
CONSOLE_OPERATOR: Final = "operator"
#: Who kicks a client for flooding.
FLOOD_CONTROL: Final = "flood-control"
#: Names the broker signs with; no user may take them, nor anything that looks like them.
RESERVED_NICKS: Final = frozenset({CONSOLE_OPERATOR, FLOOD_CONTROL, "server", "broker"})
_RESERVED_SKELETONS: Final = frozenset(nick_skeleton(nick) for nick in RESERVED_NICKS)
#: Bytes of unconfirmed private messages kept for all recipients together: past it, a TELL
#: is refused (ERROR 507) until recipients confirm or leave.
TOTAL_UNCONFIRMED_BYTES: Final = 64 * 1024 * 1024
#: The least a FETCH or USERS costs from the reply budget, in bytes, whatever its answer:
#: asking is not free either.
MIN_REPLY_CHARGE_BYTES: Final = 1024
#: FETCH and USERS are refused while more than this many bytes sent to the client wait in
#: the network unread (as the socket loop measures it): a client that asks for answers and
#: never reads them gets no more than its kernel buffers hold.
UNSENT_LIMIT_BYTES: Final = 128 * 1024
#: Identities of removed sessions remembered, so their next message learns why.
DEPARTED_LIMIT: Final = 1024
#: Outcomes of private messages (DELIVERED, ERROR 504) whose sender was away, kept (in
#: all) for its next session with the same token: the oldest beyond this are forgotten.
AWAY_OUTCOMES_LIMIT: Final = 1000
#: Private messages the store kept through a restart that are looked at in one sweep, once
#: their recipients have had the time to come back: those whose recipient did not are
#: returned to their senders (ERROR 504).
ORPHAN_SWEEP_LIMIT: Final = 10_000
#: Private messages kept for one owned nick while it is away: past this, a TELL to it is
#: refused (ERROR 507) until its owner comes back and reads them.
OFFLINE_LIMIT: Final = 1000
#: Commands that carry a client's message id.
_CHAT: Final = (cmd.Say, cmd.Tell, cmd.Post)
#: Commands that change a room (in a cluster: through the rooms' stream, see `_room_change`).
_ROOM_CHANGES: Final = (
    cmd.Enter,
    cmd.Part,
    cmd.Post,
    cmd.SetTopic,
    cmd.SetMode,
    cmd.Invite,
    cmd.Evict,
)
#: Commands that carry a client's reference for their answer.
_REFERRED: Final = (cmd.History, cmd.Search)
#: Commands that draw on a client's flood-control bucket.
_METERED: Final = (
    cmd.Say,
    cmd.Tell,
    cmd.ListUsers,
    cmd.Wall,
    cmd.Kick,
    cmd.Ban,
    cmd.Unban,
    cmd.Register,
    cmd.Unregister,
    cmd.ListNicks,
    # (FETCH draws on the reply budget instead: by the bytes of its answer.)
    # HISTORY and SEARCH draw on both: each reads the store, whatever its answer weighs.
    cmd.History,
    cmd.Search,
    # A HELLO on a registered connection is answered with a whole WELCOME: not for free.
    cmd.Hello,
    cmd.Post,
    cmd.Enter,
    cmd.Part,
    cmd.SetTopic,
    cmd.ListRooms,
    cmd.ListMembers,
    cmd.SetMode,
    cmd.Invite,
    cmd.Evict,
    # (ROOMFETCH, like FETCH, draws on the reply budget.)
    # Each is a broadcast.
    cmd.Away,
    cmd.Nick,
)


def token_hash(token: str) -> str:
    """What the store keeps of a session token: enough to recognize it, not to present it."""
    return hashlib.sha256(token.encode()).hexdigest()


def event_bytes(event: ev.BrokerEvent) -> int:
    """What `event` weighs on the wire: its frames, signature and verb included."""
    return sum(map(len, encode(event)))


#: The frames of a PRIVATE that do not depend on it: signature and verb.
_PRIVATE_FIXED_BYTES: Final = len(SIGNATURE) + len(ev.PrivateMessage.VERB)


def private_bytes(private: ev.PrivateMessage) -> int:
    """`event_bytes(private)`, without encoding it (the socket loop encodes it once, later)."""
    return (
        _PRIVATE_FIXED_BYTES
        + len(private.msg_id)  # ASCII
        + len(private.sender.encode())
        + len(private.recipient.encode())
        + len(private.text.encode())
        + len(str(private.time_ms))
    )


class ChatCore:
    """Nick registry and router: `receive` in, (identity, event) pairs out.

    `now` arguments are monotonic seconds (for liveness and flood control); message times
    are stamped from `wall_clock`.
    """

    def __init__(
        self,
        admin_token: str,
        heartbeat_ms: int = HEARTBEAT_INTERVAL_MS,
        flood: FloodPolicy | None = None,
        wall_clock: Callable[[], float] = time.time,
        epoch: str | None = None,
        stream_port: int = 0,
        users_page_bytes: int = USERS_PAGE_BYTES,
        unconfirmed_bytes: int = UNCONFIRMED_BYTES,
        total_unconfirmed_bytes: int = TOTAL_UNCONFIRMED_BYTES,
        store: Store | None = None,
        cluster: Backplane | None = None,
    ) -> None:
        check_admin_token(admin_token)
        self.admin_token = admin_token
        self.heartbeat_ms = heartbeat_ms
        self.flood = flood or FloodPolicy()
        #: Where clients subscribe to the broadcast stream (announced in WELCOME).
        self.stream_port = stream_port
        #: Most bytes of nicks in one USERS page (a longer list comes in pages).
        self.users_page_bytes = max(users_page_bytes, 4 * MAX_NICK_CHARS)
        #: Bytes of unconfirmed private messages kept for one recipient, and for all.
        self.unconfirmed_limit_bytes = unconfirmed_bytes
        self.total_unconfirmed_limit_bytes = total_unconfirmed_bytes
        #: Bytes of unconfirmed private messages kept now, for every recipient together.
        self.unconfirmed_bytes = 0
        #: What the broker remembers (in memory only, unless given a file).
        self.store = store or Store()
        #: Names the numbering of broadcasts: the store's (a file keeps it across restarts,
        #: and numbers go on from the last one stored); random for a store in memory.
        self.epoch = epoch or self.store.epoch
        #: The last broadcasts, in memory: most FETCHes are answered from here.
        self.history: BroadcastLog[BroadcastEvent] = BroadcastLog(HISTORY_EVENTS)
        self.history.resume(self.store.recent(HISTORY_EVENTS), self.store.last_seq)
        self.stopped = False
        #: Barred nicks and the tokens of sessions ended by a kick.
        self.bans = Bans()
        self._wall_clock = wall_clock
        self._by_identity: dict[Identity, Session] = {}
        self._by_key: dict[str, Session] = {}
        # Sessions that took a new nick (NICK), by their token's hash: found by their token,
        # to resume them and to tell them what became of what they sent as another nick.
        self._renamed: dict[str, Session] = {}
        # Clients that do not read the stream: broadcasts go to each of them one by one.
        self._direct: dict[Identity, None] = {}
        # Every USERS reply lists everyone: keep the list sorted as people come and go
        # rather than sorting it for each request.
        self._roster = Roster()
        # What each present nick looks like: no one may take a look-alike.
        self._by_skeleton: dict[str, Session] = {}
        # Sessions, chat commands and joins per network address.
        self._addresses = AddressLimits(self.flood)
        # Failed operator logins of every session together.
        self._admin_failures = self.flood.global_admin_bucket()
        self._departed: OrderedDict[Identity, str] = OrderedDict()
        # Outcomes for senders that were away, by session token (see AWAY_OUTCOMES_LIMIT).
        self._away_outcomes: OrderedDict[str, list[Outcome]] = OrderedDict()
        self._away_count = 0
        # When private messages kept through a restart are given up on, if their
        # recipient has not come back (monotonic s; None until the first expiry check).
        self._orphans_due: float | None = None
        self._orphans_swept = False
        #: HELLOs for owned nicks, waiting for their PROVE.
        self.challenges = Challenges()
        self._owned_lookalikes = OwnedLookalikes(self.store)
        #: Every room but #general (whose traffic is the broadcasts above), as the store kept
        #: them: their members are absent until they register again.
        self.rooms = Rooms()
        if cluster is None:
            self.rooms.resume(self.store.rooms())
            # A store that kept a cluster's #general numbers its own from now on.
            self.epoch = epoch or self.store.go_alone()
        #: The cluster this broker serves the chat with (docs/CLUSTER.md); None: alone.
        self.cluster = cluster
        # The nicks other brokers of the cluster hold, by nick key: they are in USERS, and
        # a TELL reaches them.
        self._remote: dict[str, Claim] = {}
        # The nick key of each of their claims' keys, and the sessions here by theirs.
        self._remote_keys: dict[str, str] = {}
        self._own_keys: dict[str, Session] = {}
        if cluster is not None:
            # #general is the cluster's: its numbering and history are the cluster
            # stream's; the store keeps a copy, from where it stopped (or, new to the
            # cluster, from the events that fit in memory), for history pages and search.
            self.epoch = cluster.epoch
            first = self.store.follow_cluster(cluster.epoch, cluster.first_seq, cluster.last_seq)
            if first < cluster.first_seq:
                # Far behind: not every event since (the start would take long), the last
                # ones; the copy has a gap there.
                log.warning("#general's copy here skips %d to %d", first, cluster.first_seq - 1)
                first = cluster.first_seq
            self.history.resume(self.store.recent(HISTORY_EVENTS), first - 1)
            cluster.follow_general(first)
            for claim in cluster.start_claims.values():
                # This broker's own too: from before a restart, they are elsewhere until
                # their sessions come back (or are given up).
                self._claim_set(claim, starting=True)
            self._mirror_owners(list(cluster.start_owners.values()))

    # -- what the broker knows -------------------------------------------------------

    @property
    def expiry_seconds(self) -> float:
        """A client silent for this long is removed."""
        return HEARTBEAT_LIVENESS * self.heartbeat_ms / 1000

    def users(self) -> tuple[str, ...]:
        """Every registered nick, sorted case-insensitively."""
        return tuple(self._roster.values())

    def sessions(self) -> tuple[Session, ...]:
        """Every registered session, in order of registration."""
        return tuple(self._by_identity.values())

    def session(self, identity: Identity) -> Session | None:
        """The session registered from `identity`, if any."""
        return self._by_identity.get(identity)

    def find(self, nick: str) -> Session | None:
        """The session whose nick matches `nick` case-insensitively, if any."""
        return self._by_key.get(nick_key(nick))

    # -- input -------------------------------------------------------------------------

    def receive(
        self,
        identity: Identity,
        frames: Sequence[bytes],
        now: float,
        peer: str = "",
        unsent: int = 0,
    ) -> list[Outgoing]:
        """Handle one multipart message from `identity` (the ROUTER identity frame removed).

        `peer` is the sender's network address, when known (joins are limited per address);
        `unsent` the bytes sent to it that still wait in the network to be read, when known
        (FETCH and USERS are answered only to a client that reads).
        """
        session = self._by_identity.get(identity)
        if session is not None:
            # Any traffic counts as a heartbeat.
            session.last_heard = now
            session.unsent_bytes = unsent
        try:
            command = decode_command(frames)
        except ProtocolError as exc:
            log.info("bad message from %s: %s", self._who(identity), exc)
            return [(identity, ev.Error(exc.code, message_ref(frames), exc.reason))]
        return self.handle(identity, command, now, peer)

    def handle(
        self, identity: Identity, command: cmd.ClientCommand, now: float, peer: str = ""
    ) -> list[Outgoing]:
        """Handle one decoded command from `identity`, sent from network address `peer`."""
        if self.stopped:
            return []
        session = self._by_identity.get(identity)
        try:
            if session is None:
                return self._unregistered(identity, command, now, peer)
            return self._registered(session, command, now)
        except ProtocolError as exc:
            return [(identity, ev.Error(exc.code, _ref(command), exc.reason))]
        except StoreError as exc:
            # The store cannot be read: the command fails, the broker goes on. (Every
            # command reads before it changes anything.)
            reason = truncate_utf8(f"the server cannot do this now: {exc}", MAX_REASON_BYTES)
            return [(identity, ev.Error(ErrorCode.INSUFFICIENT_STORAGE, _ref(command), reason))]

    def _unregistered(
        self, identity: Identity, command: cmd.ClientCommand, now: float, peer: str
    ) -> list[Outgoing]:
        match command:
            case cmd.Hello(nick, token, stream):
                self.challenges.discard(identity)
                address = address_key(peer)
                self._addresses.check_join(address, now)
                return self._register(identity, nick, token, stream, now, address)
            case cmd.Prove(public_key, signature):
                return self._prove(identity, public_key, signature, now)
            case cmd.Quit():  # nothing to undo
                return []
        # PING too: a client that lost its session must learn it from its heartbeat.
        why = self._departed.get(identity)
        reason = "register first: send HELLO with your nick"
        if why is not None:
            reason = truncate_utf8(
                f"you were disconnected ({why}): send HELLO to come back", MAX_REASON_BYTES
            )
        raise ProtocolError(ErrorCode.NOT_REGISTERED, reason)

    def _registered(
        self, session: Session, command: cmd.ClientCommand, now: float
    ) -> list[Outgoing]:
        me = session.identity
        if isinstance(command, _CHAT) and session.seen(command.msg_id):
            # A resend of what we already passed on (its ACK was lost): acknowledge again,
            # deliver nothing, and charge nothing against the flood limit.
            return [(me, ev.Ack((command.msg_id,)))]
        if isinstance(command, _METERED):
            if not session.messages.take(now):
                return self._refuse_flood(session, now)
            if not self._addresses.take_message(session.address, now):
                return self._refuse_flood(session, now, whole_address=True)
        if self.cluster is not None and isinstance(command, _ROOM_CHANGES):
            return self._room_change(self.cluster, session, command)
        match command:
            case cmd.Hello(nick, token, stream):
                if token == session.token and nick_key(nick) == nick_key(session.nick):
                    # The client thought it lost us: same session (its stream choice aside).
                    self._set_stream(session, stream)
                    return self._welcome(session)
                raise ProtocolError(
                    ErrorCode.ALREADY_REGISTERED, f"already registered as {session.nick}"
                )
            case cmd.Say(msg_id, text) if self.cluster is not None:
                # Numbered by the cluster's stream, which delivers it to every broker (this
                # one too); the ACK waits for the stream to keep it (`Published`).
                message = ev.Message(0, msg_id, session.nick, text, self._now_ms())
                self.cluster.publish_broadcast(message, session.token_hash, session.nick, msg_id)
                return []
            case cmd.Tell(msg_id, recipient, text) if self.cluster is not None:
                return self._tell_cluster(self.cluster, session, msg_id, recipient, text)
            case cmd.Say(msg_id, text):
                seq = self.history.next_seq()
                message = ev.Message(seq, msg_id, session.nick, text, self._now_ms())
                stored = self._store_chat(self.store.add_broadcast, message)
                session.accept(msg_id)
                if not stored:
                    return [(me, ev.Ack((msg_id,)))]
                return [*self._broadcast(message, stored=True), (me, ev.Ack((msg_id,)))]
            case cmd.Tell(msg_id, recipient, text):
                target = self.find(recipient)
                if target is None:
                    return self._tell_offline(session, msg_id, recipient, text)
                private = ev.PrivateMessage(msg_id, session.nick, target.nick, text, self._now_ms())
                size = self._room_for(target, private)
                stored = self._store_chat(
                    self.store.add_private, private, session.token_hash, target.token_hash
                )
                session.accept(msg_id)
                if not stored:
                    return [(me, ev.Ack((msg_id,)))]
                self.unconfirmed_bytes += target.await_receipt(private, session.token_hash, size)
                # The sender already has the text: the ACK is all it needs.
                out: list[Outgoing] = [(target.identity, private), (me, ev.Ack((msg_id,)))]
                if target is not session and target.tell_away(session.token_hash):
                    out.append((me, ev.AwayReply(target.nick, target.away)))
                return out
            case cmd.Received(msg_id, sender):
                return self._confirm(session, sender, msg_id)
            case cmd.Fetch(from_seq):
                return self._replay(session, from_seq, now)
            case cmd.ListUsers(after):
                return self._users_page(session, after, now)
            case cmd.History():
                return self._history(session, command, now)
            case cmd.Search(_, words, limit):
                # Private messages only for the nick's owner: a guest holding a nick now was
                # not necessarily who held it when they were sent.
                viewer = session.nick if session.owns_nick else None
                # And the posts of the rooms it is in.
                rooms = [room.name for room in self.rooms.of(session)]
                return self._page(
                    session, command, now, lambda: self.store.search(viewer, words, limit, rooms)
                )
            case cmd.Ping():
                return [(me, ev.Pong())]
            case cmd.Quit(reason):
                return self.remove(me, reason or "quit", departed=False)
            case cmd.Admin(token):
                return self._admin(session, token, now)
            case cmd.Kick(nick, seconds, reason):
                self._require_operator(session)
                return self.kick(nick, session.nick, reason, now, seconds)
            case cmd.Ban(nick, seconds, reason):
                self._require_operator(session)
                return self.ban(nick, session.nick, reason, now, seconds)
            case cmd.Unban(nick):
                self._require_operator(session)
                return self.unban(nick, session.nick, now)
            case cmd.Wall(text):
                self._require_operator(session)
                return self.wall(text, session.nick)
            case cmd.Shutdown(reason):
                self._require_operator(session)
                return self.shutdown(reason or f"shutdown by {session.nick}")
            case cmd.Register(public_key, signature):
                return self._own(session, public_key, signature)
            case cmd.Unregister():
                return self._disown(session)
            case cmd.ListNicks(after):
                return self._owned_page(session, after, now)
            case cmd.Away(away):
                return self._set_away(session, away)
            case cmd.Nick(nick):
                return self._rename(session, nick, now)
            case cmd.Prove():
                raise ProtocolError(
                    ErrorCode.MALFORMED, "no challenge is pending: you are registered"
                )
            case cmd.Post(room_name, msg_id, text):
                room = self.rooms.require_member(room_name, session)
                post = ev.Posted(
                    room.name, room.log.next_seq(), msg_id, session.nick, text, self._now_ms()
                )
                stored = self._store_chat(self.store.add_room_event, post)
                session.accept(msg_id)
                if not stored:
                    return [(me, ev.Ack((msg_id,)))]
                return [*self._to_room(room, post, stored=True), (me, ev.Ack((msg_id,)))]
            case cmd.Enter(room_name):
                return self._enter(session, session, room_name)
            case cmd.Part(room_name, reason):
                room = self.rooms.require_member(room_name, session)
                return self._part(room, session, reason or "left")
            case cmd.SetTopic(room_name, topic):
                return self._set_topic(session, room_name, topic)
            case cmd.ListRooms(after):
                return self._rooms_page(session, after, now)
            case cmd.ListMembers(room_name, after):
                return self._members_page(session, room_name, after, now)
            case cmd.SetMode(room_name, mode):
                return self._set_mode(session, room_name, mode)
            case cmd.Invite(room_name, nick):
                return self._invite(session, room_name, nick)
            case cmd.Evict(room_name, nick, reason):
                return self._evict(session, room_name, nick, _evicted(session, reason))
            case cmd.FetchRoom(room_name, from_seq):
                room = self.rooms.require_member(room_name, session)
                return self._room_replay(session, room, from_seq, now)
        raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover

    # -- registration and presence -------------------------------------------------

    def _register(
        self,
        identity: Identity,
        nick: str,
        token: str,
        stream: bool,
        now: float,
        address: str,
        proven: bool = False,
    ) -> list[Outgoing]:
        """HELLO from an unregistered connection; `proven`: it answered a CHALLENGE for an
        owned nick with the right key."""
        nick = normalize_nick(nick)
        self._refuse_reserved(nick)
        renamed = self._renamed.get(token_hash(token))
        if renamed is not None:
            # Its session took another nick (NICK) since: the client's HELLO may predate it.
            return self._resume(renamed, identity, stream, now, address)
        holder = self.find(nick)
        if holder is not None and hmac.compare_digest(holder.token.encode(), token.encode()):
            # A session that exists was not kicked: a bar on a look-alike does not end it.
            return self._resume(holder, identity, stream, now, address)
        self._refuse_if_barred(nick, token, now)
        if holder is not None:
            raise ProtocolError(ErrorCode.NICK_TAKEN, f"nick {holder.nick} is taken")
        skeleton = nick_skeleton(nick)
        lookalike = self._by_skeleton.get(skeleton)
        if lookalike is not None:
            raise ProtocolError(
                ErrorCode.NICK_TAKEN, f"nick {nick} looks like {lookalike.nick}, who is here"
            )
        self._refuse_if_like_owned(nick)
        self._addresses.check_new_session(address)
        if not proven and self.cluster is not None:
            self._check_owned_in_cluster(self.cluster, nick)
        if not proven and self.store.owner(nick) is not None:
            # Owned: only the holder of its key may take it. No session before the PROVE.
            nonce = self.challenges.challenge(identity, nick, token, stream, address, now)
            return [(identity, ev.Challenge(nonce))]
        # Private messages the store kept: through a restart for this session's token, and
        # for the owner of the nick, every one that waits for it. (Read before anything
        # changes: a store that cannot be read fails the HELLO, not half of it.)
        hashed = token_hash(token)
        kept = self.store.pending_for(nick, None if proven else hashed)
        resumed = False
        if self.cluster is not None:
            # The cluster's check last: a claim made is a nick taken everywhere.
            resumed = self._claim(self.cluster, nick, hashed)
            self._forget_remote(nick)
            # What the cluster keeps for it comes after the WELCOME, as `PrivateIn`s.
            self.cluster.redeliver(nick, hashed, owner=proven)
        flood = self.flood
        session = Session(
            identity,
            nick,
            token,
            now,
            messages=flood.message_bucket(),
            strikes=flood.strike_bucket(),
            admin_tries=flood.admin_bucket(),
            replies=flood.reply_bucket(),
            stream=stream,
            address=address,
            token_hash=hashed,
            owns_nick=proven,
        )
        self._addresses.add_session(address)
        self._by_identity[identity] = session
        if not stream:
            self._direct[identity] = None
        self._by_key[nick_key(nick)] = session
        self._roster.add(nick)
        self._by_skeleton[skeleton] = session
        self._own_claims(session, True)
        self._departed.pop(identity, None)
        for outcome in self._away_outcomes.pop(session.token_hash, ()):
            self._away_count -= 1
            session.outcomes.append(outcome)
        for private, sender_token in kept:
            size = private_bytes(private)
            self.unconfirmed_bytes += session.await_receipt(private, sender_token, size)
        # Back in the rooms it was in before a restart (the client enters them again too).
        self.rooms.come_back(session)
        if resumed:
            # Its session comes from another broker of the cluster: nobody saw it leave.
            log.info("%s went on here (%d users here)", nick, len(self._by_key))
            return self._welcome(session)
        log.info("%s joined (%d users)", nick, len(self._by_key))
        joined = ev.Joined(self.history.next_seq(), nick)
        return [*self._broadcast(joined, skip=identity), *self._welcome(session)]

    # -- owned nicks -------------------------------------------------------------------

    def _prove(
        self, identity: Identity, public_key: str, signature: str, now: float
    ) -> list[Outgoing]:
        """PROVE: the HELLO pending on `identity` goes on if the key that owns its nick
        signed the challenge."""
        pending = self.challenges.take(identity, now)
        owner = self.store.owner(pending.nick)
        signed = prove_payload(pending.nonce, pending.nick, pending.token)
        if owner is not None and not (
            from_b64url(public_key) == owner and signed_by(owner, signature, signed)
        ):
            log.warning("%s: a proof for %s failed", self._who(identity), pending.nick)
            raise ProtocolError(
                ErrorCode.NICK_TAKEN, f"nick {pending.nick} is registered to another identity"
            )
        return self._register(
            identity,
            pending.nick,
            pending.token,
            pending.stream,
            now,
            pending.address,
            proven=owner is not None,
        )

    def _own(self, session: Session, public_key: str, signature: str) -> list[Outgoing]:
        """REGISTER: the session's nick belongs to `public_key` from now on."""
        key = from_b64url(public_key)
        if not signed_by(key, signature, register_payload(session.nick, session.token)):
            raise ProtocolError(
                ErrorCode.MALFORMED, "the signature does not verify with this public key"
            )
        owner = self.store.owner(session.nick)
        if owner is not None and owner != key:
            raise ProtocolError(
                ErrorCode.NICK_TAKEN, f"nick {session.nick} is registered to another identity"
            )
        if owner is None:
            self._refuse_if_like_owned(session.nick)
            if self.cluster is not None:
                # Registered in the whole cluster first (atomically, by name and look).
                _granted(self.cluster.own(session.nick, key))
            try:
                self.store.set_owner(session.nick, key)
            except StoreError as exc:
                raise ProtocolError(
                    ErrorCode.INSUFFICIENT_STORAGE,
                    truncate_utf8(f"nick {session.nick} not registered: {exc}", MAX_REASON_BYTES),
                ) from None
            self._owned_lookalikes.add(session.nick)
            log.info("%s registered its nick", session.nick)
        session.owns_nick = True
        return [(session.identity, ev.Registered(session.nick, True))]

    def _disown(self, session: Session) -> list[Outgoing]:
        """UNREGISTER: the session's nick is free again."""
        if self.store.owner(session.nick) is None:
            raise ProtocolError(ErrorCode.NO_SUCH_NICK, f"nick {session.nick} is not registered")
        if not session.owns_nick:
            raise ProtocolError(
                ErrorCode.FORBIDDEN, f"this session has not proved it owns {session.nick}"
            )
        self._drop(session.nick)
        log.info("%s unregistered its nick", session.nick)
        return [(session.identity, ev.Registered(session.nick, False))]

    def drop_owner(self, nick: str) -> tuple[bool, list[Outgoing]]:
        """The operator frees `nick`: whether it was registered, and the REGISTERED for
        its holder, if present. Raises StoreError."""
        if not self.store.drop_owner(nick):
            return False, []
        if self.cluster is not None:
            self.cluster.disown(nick)
        self._owned_lookalikes.remove(nick)
        holder = self.find(nick)
        log.warning("the registration of %s was dropped", nick)
        if holder is None:
            # What was kept for its owner has no one to wait for now: back to the senders.
            out: list[Outgoing] = []
            why = f"the registration of {nick} was dropped before they came back"
            for private, sender_token in self.store.pending_for(nick, None):
                self.store.private_done(private.sender, private.msg_id)
                out += self._undelivered(private, sender_token, why)
            return True, out
        holder.owns_nick = False
        return True, [(holder.identity, ev.Registered(holder.nick, False))]

    def _drop(self, nick: str) -> None:
        if self.cluster is not None:
            self.cluster.disown(nick)
        try:
            self.store.drop_owner(nick)
        except StoreError as exc:
            raise ProtocolError(
                ErrorCode.INSUFFICIENT_STORAGE,
                truncate_utf8(f"nick {nick} not unregistered: {exc}", MAX_REASON_BYTES),
            ) from None
        self._owned_lookalikes.remove(nick)

    @staticmethod
    def _refuse_reserved(nick: str) -> None:
        """ERROR 422 if `nick` is one the broker signs with, or looks like one."""
        if nick_key(nick) in RESERVED_NICKS or nick_skeleton(nick) in _RESERVED_SKELETONS:
            raise ProtocolError(ErrorCode.INVALID_NICK, f"nick {nick} is reserved")

    def _refuse_if_like_owned(self, nick: str) -> None:
        """ERROR 409 if `nick` looks like an owned nick (another one)."""
        owned = self._owned_lookalikes.like(nick)
        if owned is not None:
            raise ProtocolError(
                ErrorCode.NICK_TAKEN, f"nick {nick} looks like {owned}, which is registered"
            )

    def owned_page(self, after: str, max_bytes: int) -> tuple[list[str], bool]:
        """The owned nicks sorted after `after` that fit in `max_bytes` as UTF-8 joined by
        spaces (one at least), and whether more follow."""
        page: list[str] = []
        size = -1  # no space before the first
        for nick in owned_nicks(self.store, after):
            cost = len(nick.encode()) + 1
            if page and size + cost > max_bytes:
                return page, True
            size += cost
            page.append(nick)
        return page, False

    def _owned_page(self, session: Session, after: str, now: float) -> list[Outgoing]:
        nicks, more = self.owned_page(after, self.users_page_bytes)
        # Charged like a USERS page: by the bytes of its nick list.
        self._charge_reply(session, "NICKS", len(" ".join(nicks).encode()), now)
        return [(session.identity, ev.NickList(tuple(nicks), after, more))]

    def _resume(
        self, session: Session, identity: Identity, stream: bool, now: float, address: str
    ) -> list[Outgoing]:
        """The client of `session` is back on a new connection (`identity`), from `address`."""
        del self._by_identity[session.identity]
        self._direct.pop(session.identity, None)
        session.identity = identity
        session.last_heard = now
        self._addresses.remove_session(session.address)
        self._addresses.add_session(address)
        session.address = address
        self._by_identity[identity] = session
        session.stream = stream
        if not stream:
            self._direct[identity] = None
        log.info("%s resumed its session", session.nick)
        return self._welcome(session)

    def _welcome(self, session: Session) -> list[Outgoing]:
        """WELCOME, then every private message the client has not confirmed yet."""
        welcome = ev.Welcome(
            session.nick,
            self.heartbeat_ms,
            self.epoch,
            self.history.last_seq,
            command_verbs(),
            self.stream_port,
        )
        me = session.identity
        # Then what it may have missed: private messages it has not confirmed, and what
        # became of its own (it drops those it already knows).
        return [
            (me, welcome),
            *((me, private) for private, *_ in session.unconfirmed.values()),
            *((me, outcome) for outcome in session.outcomes),
        ]

    def remove(
        self, identity: Identity, reason: str, departed: bool = True, moved: bool = False
    ) -> list[Outgoing]:
        """Forget the session of `identity` and tell everyone else it left.

        Used for QUIT, kicks, expiry, and by the socket loop when `identity` stopped
        reading. Unless it left by its own choice (`departed=False`), the identity's next
        message learns `reason`. A session that `moved` to another broker of the cluster
        goes silently: it has not left, and what waits for it waits there.
        """
        session = self._by_identity.pop(identity, None)
        if session is None:
            return []
        if self.cluster is not None:
            self._own_claims(session, False)
            self.cluster.unfollow(session.nick)
            if not moved:
                self.cluster.release(session.nick, session.token_hash)
        self._direct.pop(identity, None)
        self.unconfirmed_bytes -= session.unconfirmed_bytes
        del self._by_key[nick_key(session.nick)]
        if self._renamed.get(session.token_hash) is session:
            del self._renamed[session.token_hash]
        self._roster.remove(session.nick)
        del self._by_skeleton[nick_skeleton(session.nick)]
        self._addresses.remove_session(session.address)
        if departed:
            self._departed[identity] = reason
            if len(self._departed) > DEPARTED_LIMIT:
                self._departed.popitem(last=False)
        log.info("%s left: %s (%d users)", session.nick, reason, len(self._by_key))
        if moved:
            session.unconfirmed.clear()
            session.unconfirmed_bytes = 0
            self.rooms.went_away(session)
            return []
        left = self._broadcast(
            ev.Left(self.history.next_seq(), session.nick, truncate_utf8(reason, MAX_REASON_BYTES))
        )
        left += self._leave_rooms(session, reason)
        # Its unconfirmed private messages wait in the store for an owner, who comes back
        # for them; a guest's go with it: each sender still here learns so, rather than
        # taking its ACK for a delivery to come.
        try:
            owned = session.owns_nick and self.store.owner(session.nick) is not None
        except StoreError:
            owned = session.owns_nick  # kept, rather than lost, while the store is unreadable
        why = f"{session.nick} left before receiving it ({reason})"
        for private, sender_token, _ in session.unconfirmed.values():
            if owned:
                left += self._tell_sender(
                    private, sender_token, ev.Stored(private.msg_id, session.nick)
                )
                continue
            self.store.private_done(private.sender, private.msg_id)
            if self.cluster is not None:
                # Done with in the cluster too: no later holder of the nick reads it.
                self.cluster.confirmed(session.nick, private.sender, private.msg_id)
            left += self._undelivered(private, sender_token, why)
        session.unconfirmed.clear()
        session.unconfirmed_bytes = 0
        return left

    def expire(self, now: float) -> list[Outgoing]:
        """Remove every client silent for longer than `expiry_seconds`."""
        deadline = now - self.expiry_seconds
        silent = [s.identity for s in self._by_identity.values() if s.last_heard < deadline]
        reason = f"no heartbeat for {self.expiry_seconds:g} s"
        self._addresses.sweep(now)
        self.bans.sweep(now)
        self.challenges.sweep(now)
        out = [out for identity in silent for out in self.remove(identity, reason)]
        return out + self._sweep_orphans(now)

    def _sweep_orphans(self, now: float) -> list[Outgoing]:
        """Once, a session's lifetime after the broker started: the private messages the
        store kept through a restart whose recipient did not come back go back to their
        senders as ERROR 504, like those of a session that expired."""
        if self._orphans_swept:
            return []
        if self._orphans_due is None:
            self._orphans_due = now + self.expiry_seconds
        if now < self._orphans_due:
            return []
        out: list[Outgoing] = []
        # (In a cluster, absent members are on other brokers.)
        absent = self.rooms.absent_members() if self.cluster is None else []
        for room, token, nick in absent:
            # Like a session that expired: its nick leaves, as absent members do not count
            # as sessions, with the reason.
            why = "did not come back after the server restarted"
            out += self._to_room(room, ev.Parted(room.name, room.log.next_seq(), nick, why))
            self._left_room(room, token, self.rooms.forget_absent(room, token))
        try:
            waiting = self.store.pending(ORPHAN_SWEEP_LIMIT)
            # One look at the store per recipient, not per message.
            recipients = {private.recipient for private, *_ in waiting}
            owned = {nick for nick in recipients if self.store.owner(nick) is not None}
        except StoreError as exc:
            log.error("private messages kept through the restart not looked at: %s", exc)
            self._orphans_due = now + self.expiry_seconds  # again later
            return out
        self._orphans_swept = True
        for private, sender_token, recipient_token in waiting:
            recipient = self.find(private.recipient)
            if recipient is not None and recipient.token_hash == recipient_token:
                continue  # it came back: the message waits in its session
            if private.recipient in owned:
                continue  # it waits for its owner
            self.store.private_done(private.sender, private.msg_id)
            why = f"{private.recipient} did not come back after the server restarted"
            out += self._undelivered(private, sender_token, why)
        return out

    def tick(self) -> list[Outgoing]:
        """The stream's periodic TICK: the last broadcast number, for gap detection."""
        if self.stopped:
            return []
        ticks: list[Outgoing] = [(STREAM, ev.Tick(self.history.last_seq))]
        # Each room on the stream too: a subscriber that missed a room's last events (or
        # subscribed to it a moment after them) learns so within a heartbeat.
        ticks += [
            (STREAM, ev.RoomTick(room.name, room.last_seq))
            for room in self.rooms
            if not room.invite_only and room.last_seq
        ]
        return ticks

    # -- receipts and gaps ---------------------------------------------------------------

    def _confirm(self, session: Session, sender_nick: str, msg_id: str) -> list[Outgoing]:
        waiting = session.confirmed(receipt_key(sender_nick, msg_id))
        if waiting is None:
            return []  # a repeated or unknown receipt: nothing left to do
        private, sender_token, size = waiting
        self.unconfirmed_bytes -= size
        self.store.private_done(private.sender, msg_id)
        if self.cluster is not None:
            session.note_confirmed(receipt_key(sender_nick, msg_id))
            # Kept where any broker finds it: this session may go on on another.
            self.cluster.confirmed(session.nick, private.sender, msg_id)
        return self._tell_sender(private, sender_token, ev.Delivered(msg_id, session.nick))

    def _tell_sender(
        self, private: ev.PrivateMessage, sender_token: str, outcome: Outcome
    ) -> list[Outgoing]:
        """`outcome` of `private` for the session that sent it (`sender_token` is its
        token's hash): sent now if it is here, else kept for when it registers again with
        that token."""
        sender = self.find(private.sender)
        if sender is None or sender.token_hash != sender_token:
            # It may have taken another nick since (NICK).
            sender = self._renamed.get(sender_token)
        if sender is None and self.cluster is not None:
            remote = self._remote.get(nick_key(private.sender))
            if remote is not None and remote.token_hash == sender_token:
                self.cluster.send_outcome(remote.nick, sender_token, outcome)
                return []
        if sender is None:
            # Away (its laptop slept, say); someone else may hold the nick meanwhile.
            self._away_outcomes.setdefault(sender_token, []).append(outcome)
            self._away_count += 1
            while self._away_count > AWAY_OUTCOMES_LIMIT:
                _, forgotten = self._away_outcomes.popitem(last=False)
                self._away_count -= len(forgotten)
            return []
        sender.outcomes.append(outcome)
        return [(sender.identity, outcome)]

    def _undelivered(
        self, private: ev.PrivateMessage, sender_token: str, reason: str
    ) -> list[Outgoing]:
        """ERROR 504 about `private`, which is dropped unconfirmed, for the session that
        sent it (the holder of its sender's nick with `sender_token`)."""
        reason = truncate_utf8(reason, MAX_REASON_BYTES)
        error = ev.Error(ErrorCode.UNDELIVERED, private.msg_id, reason)
        return self._tell_sender(private, sender_token, error)

    def _replay(self, session: Session, from_seq: int, now: float) -> list[Outgoing]:
        from_seq = max(from_seq, 1)  # broadcasts are numbered from 1
        replay = self.history.since(from_seq, FETCH_LIMIT, FETCH_REPLY_BYTES, event_bytes)
        if replay.gone_until and self.store.durable:
            # Older than what memory keeps: the store may have it.
            replay = self._stored_replay(from_seq)
        return self._replayed(session, "FETCH", "broadcasts", from_seq, replay, now)

    def _replayed(
        self,
        session: Session,
        what: str,
        events: str,
        from_seq: int,
        replay: Replay[Any],
        now: float,
    ) -> list[Outgoing]:
        """The answer to a FETCH or ROOMFETCH (`what`) of `events` from `from_seq`: ERROR
        410 first if some are no longer kept, then `replay`'s events; charged to the
        session's reply budget."""
        self._charge_reply(session, what, replay.size, now)
        me = session.identity
        out: list[Outgoing] = []
        if replay.gone_until:
            reason = (
                f"{events} {from_seq} to {replay.gone_until - 1} are no longer kept; "
                f"the oldest kept is {replay.gone_until}"
            )
            out.append((me, ev.Error(ErrorCode.HISTORY_GONE, "", reason)))
        return out + [(me, event) for event in replay.events]

    def _tell_offline(
        self, session: Session, msg_id: str, recipient: str, text: str
    ) -> list[Outgoing]:
        """TELL to a nick nobody holds: kept for its owner if it is owned (ACK, then
        STORED), else ERROR 404."""
        owned = self.store.registered_as(recipient)
        if owned is None:
            raise ProtocolError(ErrorCode.NO_SUCH_NICK, f"no such nick: {recipient}")
        waiting = self.store.waiting_for(owned)
        if waiting >= OFFLINE_LIMIT:
            raise ProtocolError(
                ErrorCode.INSUFFICIENT_STORAGE,
                f"{owned} is away with {waiting} private messages waiting; try again once "
                "they have read them",
            )
        private = ev.PrivateMessage(msg_id, session.nick, owned, text, self._now_ms())
        if self.cluster is not None:
            # Kept by the cluster for its owner, whichever broker it comes back on; the
            # ACK and STORED follow (`Published`).
            self.cluster.send_private(private, session.token_hash, "", stored_for=owned)
            return []
        stored = self._store_chat(self.store.add_private, private, session.token_hash, "")
        session.accept(msg_id)
        ack: Outgoing = (session.identity, ev.Ack((msg_id,)))
        if not stored:
            return [ack]
        log.debug("a private message for %s is kept until they come back", owned)
        return [ack, *self._tell_sender(private, session.token_hash, ev.Stored(msg_id, owned))]

    def _stored_replay(self, from_seq: int) -> Replay[BroadcastEvent]:
        """What a FETCH from `from_seq` gets from the store."""
        first = self.store.first_seq()
        stored = self.store.broadcasts(max(from_seq, first), FETCH_LIMIT)
        events, total = within(stored, FETCH_REPLY_BYTES, event_bytes)
        return Replay(events, first if from_seq < first else 0, total)

    def _room_for(self, target: Session, private: ev.PrivateMessage) -> int:
        """The size of `private` in bytes, if `target` may keep it until it confirms; else
        ERROR 507: a recipient that reads but never confirms pins no more memory."""
        size = private_bytes(private)
        if len(target.unconfirmed) >= UNCONFIRMED_LIMIT or (
            target.unconfirmed_bytes + size > self.unconfirmed_limit_bytes
        ):
            why = (
                f"{target.nick} has not confirmed {len(target.unconfirmed)} private messages "
                f"({target.unconfirmed_bytes} bytes); try again once they have"
            )
        elif self.unconfirmed_bytes + size > self.total_unconfirmed_limit_bytes:
            why = "the server holds too many unconfirmed private messages; try again later"
        else:
            return size
        raise ProtocolError(ErrorCode.INSUFFICIENT_STORAGE, truncate_utf8(why, MAX_REASON_BYTES))

    def _users_page(self, session: Session, after: str, now: float) -> list[Outgoing]:
        users, more = self._roster.page(after, self.users_page_bytes)
        page = ev.UserList(self.history.last_seq, tuple(users), after, more)
        # A page costs the bytes of its nick list (at most users_page_bytes).
        self._charge_reply(session, "USERS", len(" ".join(users).encode()), now)
        # Who of them is away comes first, so that the page completes the snapshot.
        here = [self._by_key.get(nick_key(nick)) for nick in users]
        me = session.identity
        out: list[Outgoing] = [(me, ev.IsAway(s.nick, s.away)) for s in here if s and s.away]
        return [*out, (me, page)]

    # -- away and nick changes ---------------------------------------------------------

    def _set_away(self, session: Session, away: str) -> list[Outgoing]:
        """AWAY: everyone learns the session is away with `away` (empty: back)."""
        if away == session.away:
            return []  # nothing changes: nothing to tell
        session.set_away(away)
        log.info("%s is %s", session.nick, f"away: {away}" if away else "back")
        return self._broadcast(ev.AwayChanged(self.history.next_seq(), session.nick, away))

    def _rename(self, session: Session, nick: str, now: float) -> list[Outgoing]:
        """NICK: the session takes `nick`, on the terms a HELLO gets it; everyone learns."""
        new, old = normalize_nick(nick), session.nick
        if new == old:
            raise ProtocolError(ErrorCode.MALFORMED, f"you are {old} already")
        self._refuse_reserved(new)
        self._refuse_if_barred(new, session.token, now)
        holder = self.find(new)
        if holder is not None and holder is not session:
            raise ProtocolError(ErrorCode.NICK_TAKEN, f"nick {holder.nick} is taken")
        lookalike = self._by_skeleton.get(nick_skeleton(new))
        if lookalike is not None and lookalike is not session:
            raise ProtocolError(
                ErrorCode.NICK_TAKEN, f"nick {new} looks like {lookalike.nick}, who is here"
            )
        self._refuse_if_like_owned(new)
        owner = self.store.owner(new)
        # An owned nick goes only to a session that proved the same identity (for its
        # current nick): there is no challenge mid-session.
        if owner is not None and (not session.owns_nick or self.store.owner(old) != owner):
            raise ProtocolError(
                ErrorCode.NICK_TAKEN, f"nick {new} is registered to another identity"
            )
        if self.cluster is not None:
            self._claim(self.cluster, new, session.token_hash)
        # Private messages it has yet to confirm reach it under the new nick after a
        # restart too. (Written before anything changes: a store that fails fails the NICK.)
        pending = [(private.sender, private.msg_id) for private, *_ in session.unconfirmed.values()]
        try:
            self.store.readdress(pending, new)
        except StoreError as exc:
            if self.cluster is not None:
                self.cluster.release(new, session.token_hash, keep=old)
            raise ProtocolError(
                ErrorCode.INSUFFICIENT_STORAGE,
                truncate_utf8(f"nick not changed: {exc}", MAX_REASON_BYTES),
            ) from None
        if self.cluster is not None:
            # (What the new nick shares with the old one, a case or a look, stays claimed.)
            self.cluster.release(old, session.token_hash, keep=new)
            self.cluster.unfollow(old)
            self.cluster.follow(new)
            self._own_claims(session, False)
        del self._by_key[nick_key(old)]
        self._roster.remove(old)
        del self._by_skeleton[nick_skeleton(old)]
        session.nick = new
        self._renamed[session.token_hash] = session
        # An owned old nick stays owned, by the same identity, and is free to come back to.
        session.owns_nick = owner is not None
        self._by_key[nick_key(new)] = session
        self._roster.add(new)
        self._by_skeleton[nick_skeleton(new)] = session
        self._own_claims(session, True)
        log.info("%s is now known as %s", old, new)
        return self._broadcast(ev.Renamed(self.history.next_seq(), old, new))

    def _history(self, session: Session, command: cmd.History, now: float) -> list[Outgoing]:
        """A page of the room's broadcasts (no target) or of the privates between the
        session's nick and the target: LOG events, then PAGE."""
        target, before, limit = command.target, command.before, command.limit

        if is_room_name(target):
            # A room's posts are its members' (an invite-only room's above all).
            room = self.rooms.require_member(target, session)
            return self._page(
                session, command, now, lambda: self.store.room_history(room.name, before, limit)
            )

        def read() -> Page:
            if target and not session.owns_nick:
                # Private history is its owner's: a guest holding the nick now was not
                # necessarily who held it before.
                return Page([], 0)
            if target:
                return self.store.conversation(session.nick, target, before, limit)
            return self.store.history(before, limit)

        return self._page(session, command, now, read)

    def _page(
        self,
        session: Session,
        command: cmd.History | cmd.Search,
        now: float,
        read: Callable[[], Page],
    ) -> list[Outgoing]:
        """The answer to `command`: the page `read` from the store, as LOG events and a PAGE,
        charged to the session's reply budget."""
        what = command.VERB.decode()
        self._require_reading(session, what)
        page = read()  # (a StoreError is an ERROR 507 with the ref: see `handle`)
        ref = command.ref
        logs = [
            ev.LogEntry(ref, e.id, e.sender, e.recipient, e.text, e.time_ms) for e in page.entries
        ]
        self._charge_reply(session, what, sum(map(event_bytes, logs)), now)
        me = session.identity
        out: list[Outgoing] = [(me, entry) for entry in logs]
        out.append((me, ev.Page(ref, len(logs), page.next_before)))
        return out

    def _require_reading(self, session: Session, what: str) -> None:
        """ERROR 429 unless the client reads what is sent to it."""
        if session.unsent_bytes > UNSENT_LIMIT_BYTES:
            # Answers to a client that does not read would pile up in the broker's memory.
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"{what} refused: {session.unsent_bytes} bytes sent to you are still unread; "
                "read them first",
            )

    def _charge_reply(self, session: Session, what: str, size: int, now: float) -> None:
        """Take an answer of `size` bytes from the session's reply budget, or refuse it."""
        self._require_reading(session, what)
        # Answers are metered by their bytes: a few bytes of request must not buy megabytes.
        # (A policy whose burst is smaller than one answer lets one through when full.)
        cost = min(max(size, MIN_REPLY_CHARGE_BYTES), session.replies.capacity)
        if not session.replies.take(now, cost):
            flood = self.flood
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"{what} answers are limited to {flood.reply_burst_bytes} bytes at once, "
                f"{flood.reply_bytes_per_second:g} bytes per second; this one "
                f"({size} bytes) in {session.replies.wait(now, cost):.1f} s",
            )

    # -- rooms -----------------------------------------------------------------------

    def _to_room(
        self, room: Room, event: RoomEvent, stored: bool = False, direct: bool = False
    ) -> list[Outgoing]:
        """Number `event` in `room`'s log (and the store, unless `stored` already) and
        address it to every member: on the stream (under the room's topic) for those who
        read it, unless the room is invite-only (or `direct`), and on their connections for
        the others."""
        numbered(room, event)
        if not stored and self.cluster is None:
            self.store.keep_room_event(event)
        members = room.members
        if room.invite_only or direct:
            return [(member.identity, event) for member in members.values()]
        out: list[Outgoing] = [(STREAM, event)]
        if len(self._direct) < len(members):
            # Few clients do not read the stream: look at those rather than at every member
            # (a room of a thousand costs as little as #general).
            by_identity = self._by_identity
            for identity in self._direct:
                if by_identity[identity].token_hash in members:
                    out.append((identity, event))
        else:
            out += [(m.identity, event) for m in members.values() if not m.stream]
        return out

    def _enter(
        self, actor: Actor, here: Session | None, name: str, epoch: str = ""
    ) -> list[Outgoing]:
        """`actor` enters room `name` (made under `epoch` if new); `here` is its session, if
        it is on this broker, which is told the room's state."""
        room, entered, made = self.rooms.enter(name, actor, here, epoch)
        out: list[Outgoing] = []
        if made:
            self._persist(self.store.save_room, room.stored())
        if entered:
            self._persist(self.store.add_member, room.name, actor.token_hash, actor.nick)
            if room.invite_only:
                self._persist(self.store.set_invited, room.name, actor.nick, False)
            log.info("%s entered %s (%d members)", actor.nick, room.name, len(room.members))
            out = self._to_room(room, ev.Entered(room.name, room.log.next_seq(), actor.nick))
        return out if here is None else [*out, (here.identity, room.state())]

    def _part(self, room: Room, member: Actor, reason: str) -> list[Outgoing]:
        """`member` leaves `room`: every member (itself included) is told."""
        reason = truncate_utf8(reason, MAX_REASON_BYTES)
        out = self._to_room(room, ev.Parted(room.name, room.log.next_seq(), member.nick, reason))
        self._left_room(room, member.token_hash, self.rooms.part_token(room, member.token_hash))
        return out

    def _left_room(self, room: Room, token: str, gone: bool) -> None:
        """Store that the session of `token` left `room`, and the room too if it went."""
        if gone:
            self._persist(self.store.drop_room, room.name)
        else:
            self._persist(self.store.drop_member, room.name, token)

    def _persist(self, write: Callable[..., None], *args: object) -> None:
        """Store a change of rooms (membership, topic, mode) with `write(*args)`; if the
        store fails, the change holds in memory, and the log says it will not survive a
        restart (chat messages, refused meanwhile, tell their senders)."""
        if self.cluster is not None:
            return  # the cluster's rooms are its stream's, on every broker
        try:
            write(*args)
        except StoreError as exc:
            log.warning("a change of rooms is not stored: %s", exc)

    def _set_mode(self, session: Actor, name: str, mode: str) -> list[Outgoing]:
        room = self.rooms.require_member(name, session)
        room.require_run_by(session, "sets its mode")
        if mode not in ("+i", "-i"):
            raise ProtocolError(
                ErrorCode.MALFORMED, f"no mode {mode!r}: +i (invite-only) or -i (open)"
            )
        event = ev.ModeSet(room.name, room.log.next_seq(), session.nick, mode)
        # The change itself goes to every member on its connection, whichever way it goes:
        # those reading the stream follow the room's topic only once they know.
        out = self._to_room(room, event, direct=True)
        room.invite_only = mode == "+i"
        if not room.invite_only:
            self._persist(self.store.clear_invited, room.name)
            room.invited.clear()
        self._persist(self.store.save_room, room.stored())
        return out

    def _invite(self, actor: Actor, name: str, nick: str, guest: str = "") -> list[Outgoing]:
        """`actor` invites `nick` to room `name`: the guest and `actor` are told, if here.
        (In a cluster, the broker `actor` is on found the guest's session, `guest`.)"""
        room = self.rooms.require_member(name, actor)
        if room.invite_only:
            room.require_run_by(actor, "invites to it")
        if not guest:
            found = self._require(nick)
            nick, guest = found.nick, found.token_hash
        if room.has_token(guest):
            raise ProtocolError(ErrorCode.NICK_TAKEN, f"{nick} is in {room.name} already")
        room.invited.add(nick_key(nick))
        self._persist(self.store.set_invited, room.name, nick, True)
        invited = ev.Invited(room.name, nick, actor.nick)
        told = (self.find(nick), self._session_of(actor.nick, actor.token_hash))
        return [(session.identity, invited) for session in told if session is not None]

    def _set_topic(self, actor: Actor, name: str, topic: str) -> list[Outgoing]:
        room = self.rooms.require_member(name, actor)
        room.require_run_by(actor, "sets its topic")
        room.topic = topic
        self._persist(self.store.save_room, room.stored())
        return self._to_room(room, ev.TopicSet(room.name, room.log.next_seq(), actor.nick, topic))

    def _evict(
        self, actor: Actor, name: str, nick: str, why: str, member: str = ""
    ) -> list[Outgoing]:
        """`actor` takes `nick` (in a cluster: the session `member`, as the broker `actor`
        is on found it) out of room `name`, telling its members `why`."""
        room = self.rooms.require_member(name, actor)
        room.require_run_by(actor, "removes its members")
        holder = room.holder_of(nick) if not member else (member, nick)
        if holder is None or not room.has_token(holder[0]):
            raise ProtocolError(ErrorCode.NO_SUCH_NICK, f"{nick} is not in {room.name}")
        return self._part(room, RemoteActor(*holder), why)

    def _leave_rooms(self, session: Session, reason: str) -> list[Outgoing]:
        """`session` ends: out of every room it is in (in a cluster, through the rooms'
        stream, for every broker)."""
        if self.cluster is None:
            return [
                out for room in self.rooms.of(session) for out in self._part(room, session, reason)
            ]
        self._parting(self.cluster, session, reason)
        return []

    def _parting(self, cluster: Backplane, member: Actor, reason: str) -> None:
        """Have `member` leave every room it is in, through the rooms' stream: every room
        it is in when the change is applied (one it is entering meanwhile too)."""
        actor = RemoteActor(member.token_hash, member.nick)
        reason = truncate_utf8(reason, MAX_REASON_BYTES)
        cluster.publish_room(ev.Left(0, member.nick, reason), actor)

    def _room_change(
        self, cluster: Backplane, session: Session, command: cmd.ClientCommand
    ) -> list[Outgoing]:
        """In a cluster, a change of a room is published to the rooms' stream and applied
        when it comes back (`_room_op`), on every broker in the stream's order: the same
        changes in the same order make the same rooms everywhere. Only what the stream
        cannot check is checked here."""
        actor = RemoteActor(session.token_hash, session.nick, session.owns_nick, session.operator)
        msg_id = target = ""
        event: RoomChange
        match command:
            case cmd.Enter(name):
                room = self.rooms.get(check_room_name(name))
                if room is not None and room.has(session):
                    return [(session.identity, room.state())]
                event = ev.Entered(name, 0, session.nick)
            case cmd.Part(name, reason):
                why = truncate_utf8(reason or "left", MAX_REASON_BYTES)
                room = self.rooms.require_member(name, session)
                event = ev.Parted(room.name, 0, session.nick, why)
            case cmd.Post(name, msg_id, text):
                # Its ACK says it will be posted: a member's post.
                room = self.rooms.require_member(name, session)
                event = ev.Posted(room.name, 0, msg_id, session.nick, text, self._now_ms())
            case cmd.SetTopic(name, topic):
                event = ev.TopicSet(name, 0, session.nick, topic)
            case cmd.SetMode(name, mode):
                event = ev.ModeSet(name, 0, session.nick, mode)
            case cmd.Invite(name, nick):
                # Who exists is the claims', not the rooms' stream's: checked here, and the
                # guest named by session, whatever nick other brokers know it by yet.
                guest = self.find(nick) or self._remote.get(nick_key(nick))
                if guest is None:
                    raise ProtocolError(ErrorCode.NO_SUCH_NICK, f"no such nick: {nick}")
                event, target = ev.Invited(name, guest.nick, session.nick), guest.token_hash
            case cmd.Evict(name, nick, reason):
                holder = self.rooms.require_member(name, session).holder_of(nick)
                if holder is None:
                    raise ProtocolError(ErrorCode.NO_SUCH_NICK, f"{nick} is not in {name}")
                target, nick = holder
                event = ev.Parted(name, 0, nick, _evicted(session, reason))
            case _:  # pragma: no cover
                raise AssertionError(f"not a change of a room: {command!r}")
        cluster.publish_room(event, actor, msg_id, target)
        return []

    def _room_op(self, op: RoomOp) -> list[Outgoing]:
        """Apply a change of a room from the rooms' stream (see `_room_change`); an error
        goes to the session that asked, if it is here."""
        actor = op.actor
        here = self._session_of(actor.nick, actor.token_hash)
        try:
            match op.event:
                case ev.Entered(name):
                    return self._enter(actor, here, name, f"{self.epoch}.{op.seq}")
                case ev.Parted(name, _, nick, reason) if not op.target:
                    return self._part(self.rooms.require_member(name, actor), actor, reason)
                case ev.Parted(name, _, nick, reason):
                    return self._evict(actor, name, nick, reason, op.target)
                case ev.Left(_, _, reason):
                    rooms = self.rooms.of(actor)
                    return [out for room in rooms for out in self._part(room, actor, reason)]
                case ev.Posted(name) as post:
                    room = self.rooms.require_member(name, actor)
                    numbered_post = replace(post, room=room.name, seq=room.log.next_seq())
                    return self._to_room(room, numbered_post)
                case ev.TopicSet(name, _, _, topic):
                    return self._set_topic(actor, name, topic)
                case ev.ModeSet(name, _, _, mode):
                    return self._set_mode(actor, name, mode)
                case ev.Invited(name, nick):
                    return self._invite(actor, name, nick, op.target)
        except ProtocolError as exc:
            if here is None:
                return []
            ref = op.event.msg_id if isinstance(op.event, ev.Posted) else ""
            return [(here.identity, ev.Error(exc.code, ref, exc.reason))]
        raise AssertionError(f"unhandled change of a room {op!r}")  # pragma: no cover

    def _rooms_page(self, session: Session, after: str, now: float) -> list[Outgoing]:
        rooms, more = self.rooms.page(after, ROOMS_PAGE_ROOMS)
        states = [room.state() for room in rooms]
        self._charge_reply(session, "ROOMS", sum(map(event_bytes, states)), now)
        last = rooms[-1].name if rooms else after
        me = session.identity
        return [*((me, state) for state in states), (me, ev.RoomList(last, more))]

    def _members_page(self, session: Session, name: str, after: str, now: float) -> list[Outgoing]:
        room = self.rooms.require(name)
        if room.invite_only:
            # Who is in an invite-only room is its members' business.
            room = self.rooms.require_member(name, session)
        nicks = room.nicks()
        page, more = page_of(list(map(nick_key, nicks)), nicks, after, self.users_page_bytes)
        # A page costs the bytes of its nick list, as a USERS page does.
        self._charge_reply(session, "MEMBERS", len(" ".join(page).encode()), now)
        event = ev.MemberList(room.name, room.last_seq, tuple(page), after, more)
        return [(session.identity, event)]

    def _room_replay(
        self, session: Session, room: Room, from_seq: int, now: float
    ) -> list[Outgoing]:
        from_seq = max(from_seq, 1)
        replay = room.log.since(from_seq, FETCH_LIMIT, FETCH_REPLY_BYTES, event_bytes)
        if replay.gone_until and self.store.durable and self.cluster is None:
            # Older than what memory keeps (or from before a restart): the store may have it.
            stored = self.store.room_events(room.name, from_seq, FETCH_LIMIT)
            kept, size = within(stored, FETCH_REPLY_BYTES, event_bytes)
            first = kept[0].seq if kept else room.last_seq + 1
            replay = Replay(kept, first if first > from_seq else 0, size)
        events = f"{room.name}: events"
        return self._replayed(session, "ROOMFETCH", events, from_seq, replay, now)

    # -- the cluster (docs/CLUSTER.md) ------------------------------------------------------

    def from_cluster(self, event: ClusterEvent) -> list[Outgoing]:
        """Handle what came from the other brokers of the cluster (through the backplane)."""
        if self.stopped:
            return []
        match event:
            case Numbered(numbered):
                if numbered.seq <= self.history.last_seq:
                    return []  # delivered again (the link reconnected): seen already
                if numbered.seq != self.history.next_seq():
                    # The stream lost some (its limits): what is gone is gone for FETCH too.
                    log.warning("#general jumps from %d to %d", self.history.last_seq, numbered.seq)
                    self.history.resume([], numbered.seq - 1)
                if isinstance(numbered, ev.Renamed):
                    self.rooms.renamed(numbered.nick, numbered.new_nick)
                self.store.mirror_broadcast(numbered)
                return self._deliver_broadcast(numbered)
            case Published(token, nick, msg_id, ok, reason):
                sender = self._session_of(nick, token)
                if sender is None:
                    return []  # it resends to wherever it is now: the stream keeps it once
                if ok and not msg_id:
                    return []
                if ok:
                    # Only now a repeat is one: sent again after a failure, it is published
                    # again (and one sent again meanwhile is kept once by the stream).
                    sender.accept(msg_id)
                    out: list[Outgoing] = [(sender.identity, ev.Ack((msg_id,)))]
                    if event.stored_for:
                        stored = ev.Stored(msg_id, event.stored_for)
                        sender.outcomes.append(stored)
                        out.append((sender.identity, stored))
                    return out
                what = "not sent" if msg_id else "not done"
                why = truncate_utf8(f"{what}: {reason}; try again", MAX_REASON_BYTES)
                return [(sender.identity, ev.Error(ErrorCode.UNAVAILABLE, msg_id, why))]
            case PrivateIn(private, sender_token, recipient_token):
                return self._private_in(private, sender_token, recipient_token)
            case OutcomeIn(sender_nick, sender_token, outcome):
                sender = self._session_of(sender_nick, sender_token)
                if sender is None:
                    return []
                sender.outcomes.append(outcome)
                return [(sender.identity, outcome)]
            case ClaimSet(claim):
                return self._claim_set(claim)
            case ClaimGone(key):
                return self._claim_gone(key)
            case Reaped(claim):
                self._forget_remote(claim.nick)
                why = "its server stopped answering"
                assert self.cluster is not None
                self._parting(self.cluster, RemoteActor(claim.token_hash, claim.nick), why)
                return self._broadcast(ev.Left(self.history.next_seq(), claim.nick, why))
            case LinkChanged(up, detail):
                log.warning("cluster: %s", detail)
                if up:
                    # Private messages published for them while the link was down reached
                    # no subscription here: read again.
                    assert self.cluster is not None
                    for session in self._by_identity.values():
                        self.cluster.redeliver(session.nick, session.token_hash)
                    return []
                why = (
                    "this server lost its link to the rest of the chat: what you send waits "
                    "until it is back"
                )
                error = ev.Error(ErrorCode.UNAVAILABLE, "", why)
                return [(identity, error) for identity in self._by_identity]
            case RoomOp():
                return self._room_op(event)
            case OwnerSet(nick, public_key):
                self._mirror_owner(nick, public_key)
                return []
            case OwnerGone(nick):
                return self._mirror_owner(nick, None)
            case ConsoleIn():
                return []  # the socket loop runs operator lines
        raise AssertionError(f"unhandled cluster event {event!r}")  # pragma: no cover

    def _mirror_owners(self, owners: list[tuple[str, bytes]]) -> None:
        """The cluster's registrations are this broker's (its store keeps a copy, which the
        rules of owned nicks read): those it had alone give way to them."""
        registered = {nick_key(nick): nick for nick, _ in owners}
        for nick in list(owned_nicks(self.store)):
            if nick_key(nick) not in registered:
                self._mirror_owner(nick, None)
        for nick, public_key in owners:
            self._mirror_owner(nick, public_key)

    def _mirror_owner(self, nick: str, public_key: bytes | None) -> list[Outgoing]:
        """Keep `nick` owned by `public_key` (None: not owned) in the store, as the cluster
        has it; a session here that held it as its owner is told if it is no more."""
        try:
            if public_key is not None:
                if self.store.owner(nick) != public_key:
                    self.store.set_owner(nick, public_key)
                    self._owned_lookalikes.add(nick)
                return []
            if not self.store.drop_owner(nick):
                return []
        except StoreError as exc:
            log.error("the registration of %s is not kept here: %s", nick, exc)
            return []
        self._owned_lookalikes.remove(nick)
        holder = self.find(nick)
        if holder is None or not holder.owns_nick:
            return []
        holder.owns_nick = False
        return [(holder.identity, ev.Registered(holder.nick, False))]

    def _check_owned_in_cluster(self, cluster: Backplane, nick: str) -> None:
        """Whether `nick` (or one like it) was registered on another broker a moment ago,
        which this broker's copy of the registrations may not show yet: asked of the
        cluster itself. ERROR 409 for a look-alike; an owned nick is copied here, to be
        challenged."""
        if self.store.owner(nick) is not None:
            return
        registered = cluster.registration(nick)
        if registered is None:
            return
        owned, public_key = registered
        self._mirror_owner(owned, public_key)
        if nick_key(owned) != nick_key(nick):
            raise ProtocolError(
                ErrorCode.NICK_TAKEN, f"nick {nick} looks like {owned}, which is registered"
            )

    def broker_of(self, nick: str) -> str | None:
        """The broker of the cluster that holds `nick`, if another one does."""
        claim = self._remote.get(nick_key(nick))
        return claim.broker if claim is not None else None

    def _claim(self, cluster: Backplane, nick: str, hashed: str) -> bool:
        """Claim `nick` in the cluster for the session with `hashed`: whether the session
        held it already (it comes from another broker). ERROR 409 or 503 if not."""
        return _granted(cluster.claim(nick, hashed))

    def _claim_set(self, claim: Claim, starting: bool = False) -> list[Outgoing]:
        """A nick was claimed in the cluster, or its claim moved: another broker's is in the
        roster; a session here whose claim moved away goes on there."""
        assert self.cluster is not None
        if claim.broker == self.cluster.broker_id and not starting:
            return []  # this broker's doing
        key = nick_key(claim.nick)
        out: list[Outgoing] = []
        here = self._by_key.get(key)
        if here is not None:
            if here.token_hash != claim.token_hash:
                log.error("%s is held here and on %s", claim.nick, claim.broker)
                return []
            out = self.remove(here.identity, "went on on another server", False, moved=True)
        known = self._remote.get(key)
        if known is not None and known.nick != claim.nick:
            self._roster.remove(known.nick)  # the same nick, spelled anew (NICK)
        if known is None or known.nick != claim.nick:
            self._roster.add(claim.nick)
        self._remote[key] = claim
        for claimed in claim_keys(claim.nick):
            self._remote_keys[claimed] = key
        return out

    def _claim_gone(self, key: str) -> list[Outgoing]:
        """A claim was released: another broker's nick leaves the roster. One of a session
        here was taken away (this broker was cut off from NATS long enough for the others
        to give its users up): the session ends, and its client, told why at its next
        message, registers again."""
        nick = self._remote_keys.get(key)
        if nick is not None:
            self._forget_remote(nick)
            return []
        session = self._own_keys.get(key)
        assert self.cluster is not None
        if session is None or self.cluster.holds(key):
            return []  # (gone before this session claimed it again: an old deletion)
        why = "this server was cut off from the rest of the chat"
        log.warning("%s: %s", session.nick, why)
        return self.remove(session.identity, why, moved=True)

    def _forget_remote(self, nick: str) -> None:
        claim = self._remote.pop(nick_key(nick), None)
        if claim is not None:
            self._roster.remove(claim.nick)
            for key in claim_keys(claim.nick):
                self._remote_keys.pop(key, None)

    def _own_claims(self, session: Session, held: bool) -> None:
        """Index (or not) the claims' keys of `session`, here (see `_claim_gone`)."""
        if self.cluster is None:
            return
        for key in claim_keys(session.nick):
            if held:
                self._own_keys[key] = session
            elif self._own_keys.get(key) is session:
                del self._own_keys[key]

    def _session_of(self, nick: str, hashed: str) -> Session | None:
        """The session here of `nick` with token hash `hashed` (it may have taken another
        nick since)."""
        session = self.find(nick)
        if session is None or session.token_hash != hashed:
            session = self._renamed.get(hashed)
        return session

    def _tell_cluster(
        self, cluster: Backplane, session: Session, msg_id: str, recipient: str, text: str
    ) -> list[Outgoing]:
        """TELL in a cluster: through the cluster, which keeps it until its recipient
        confirms it (on whichever broker it is by then); the ACK follows (`Published`)."""
        target = self.find(recipient)
        remote = None if target is not None else self._remote.get(nick_key(recipient))
        if target is None and remote is None:
            return self._tell_offline(session, msg_id, recipient, text)
        holder: Session | Claim | None = target or remote
        assert holder is not None
        nick, token = holder.nick, holder.token_hash
        private = ev.PrivateMessage(msg_id, session.nick, nick, text, self._now_ms())
        if target is not None:
            self._room_for(target, private)
        cluster.send_private(private, session.token_hash, token)
        if target is not None and target is not session and target.tell_away(session.token_hash):
            return [(session.identity, ev.AwayReply(target.nick, target.away))]
        return []

    def _private_in(
        self, private: ev.PrivateMessage, sender_token: str, recipient_token: str
    ) -> list[Outgoing]:
        """A private message through the cluster, for a session here."""
        target = self.find(private.recipient)
        if target is None or (target.token_hash != recipient_token and not target.owns_nick):
            # Not this session's (its owner's, who proved it, gets every one): kept in the
            # cluster for the one it is for.
            return []
        key = receipt_key(private.sender, private.msg_id)
        if key in target.unconfirmed or target.was_confirmed(key):
            return []  # again (sent again, or read again on resuming): the client has it
        try:
            size = self._room_for(target, private)
        except ProtocolError as exc:
            # It stays kept in the cluster: read again at the session's next resumption.
            log.warning("a private message for %s waits: %s", target.nick, exc.reason)
            return []
        self.unconfirmed_bytes += target.await_receipt(private, sender_token, size)
        return [(target.identity, private)]

    # -- operator actions (from an operator client or the broker's terminal) ------------

    def _admin(self, session: Session, token: str, now: float) -> list[Outgoing]:
        # However many sessions guess, together they get no more tries than the global
        # bucket holds.
        wait = max(session.admin_tries.wait(now), self._admin_failures.wait(now))
        if wait > 0:
            log.warning("operator login by %s refused: too many failures", session.nick)
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"too many failed operator logins: try again in {math.ceil(wait)} s",
            )
        if not hmac.compare_digest(token.encode(), self.admin_token.encode()):
            session.admin_tries.take(now)
            self._admin_failures.take(now)
            log.warning("failed operator login by %s", session.nick)
            raise ProtocolError(ErrorCode.FORBIDDEN, "wrong operator token")
        session.operator = True
        log.info("%s is now an operator", session.nick)
        return [(session.identity, ev.Operator())]

    def kick(
        self,
        nick: str,
        by: str,
        reason: str,
        now: float,
        seconds: int = DEFAULT_KICK_BAR_SECONDS,
        verb: str = "kicked",
    ) -> list[Outgoing]:
        """Disconnect `nick`: it gets KICKED, everyone else a LEAVE naming `by`. Its session
        ends for good (its token resumes nothing), and the nick stays barred for `seconds`."""
        target = self._require(nick)
        _check_bar(seconds)
        why = truncate_utf8(reason or "no reason given", MAX_REASON_BYTES)
        kicked = f"{verb} by {by}: {why}"
        self.bans.end_session(target.token, kicked)
        if seconds:
            self.bans.bar(target.nick, seconds, kicked, now, self._wall_clock())
        out: list[Outgoing] = [(target.identity, ev.Kicked(by, why))]
        return out + self.remove(target.identity, kicked)

    def ban(self, nick: str, by: str, reason: str, now: float, seconds: int) -> list[Outgoing]:
        """Bar `nick` (present or not) for `seconds`, telling everyone; kick it if present."""
        nick = normalize_nick(nick)
        _check_bar(seconds)
        if not seconds:
            raise ProtocolError(ErrorCode.MALFORMED, "a ban lasts at least 1 s")
        present = self.find(nick)
        nick = present.nick if present is not None else nick
        why = truncate_utf8(reason or "no reason given", MAX_REASON_BYTES)
        bar = self.bans.bar(nick, seconds, f"banned by {by}: {why}", now, self._wall_clock())
        out: list[Outgoing] = []
        if present is not None:
            # Barred above already: the kick only ends the session.
            out = self.kick(nick, by, why, now, seconds=0, verb="banned")
        text = f"{by} barred {nick} until {bar.until_text()} ({format_duration(seconds)}): {why}"
        log.warning("%s", text)
        return out + self._notice(text)

    def unban(self, nick: str, by: str, now: float) -> list[Outgoing]:
        """Lift the bar on `nick` (or a nick it looks like), telling everyone."""
        bar = self.bans.lift(nick, now)
        if bar is None:
            raise ProtocolError(ErrorCode.NO_SUCH_NICK, f"nick {nick} is not barred")
        text = f"{by} lifted the bar on {bar.nick}"
        log.warning("%s", text)
        return self._notice(text)

    def wall(self, text: str, by: str = CONSOLE_OPERATOR) -> list[Outgoing]:
        """A notice to everyone, signed by `by`."""
        return self._notice(f"{by}: {text}")

    def _notice(self, text: str) -> list[Outgoing]:
        text = truncate_utf8(text, MAX_TEXT_BYTES)
        return self._broadcast(ev.Notice(self.history.next_seq(), text))

    def _refuse_if_barred(self, nick: str, token: str, now: float) -> None:
        """ERROR 403 for a HELLO of a barred nick, or with the token of a kicked session."""
        bar = self.bans.barred(nick, now)
        if bar is not None:
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                truncate_utf8(
                    f"nick {nick} is barred until {bar.until_text()} ({bar.why})",
                    MAX_REASON_BYTES,
                ),
            )
        ended = self.bans.ended(token)
        if ended is not None:
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                truncate_utf8(
                    f"this session was ended ({ended}): a new session needs a new token",
                    MAX_REASON_BYTES,
                ),
            )

    def shutdown(self, reason: str) -> list[Outgoing]:
        """Tell everyone the broker stops, forget them all, and stop handling commands."""
        if self.stopped:
            return []
        notice = ev.ServerShutdown(truncate_utf8(reason, MAX_REASON_BYTES))
        out: list[Outgoing] = [(identity, notice) for identity in self._by_identity]
        log.warning("shutting down: %s", reason)
        self._by_identity.clear()
        self._direct.clear()
        self._by_key.clear()
        self._roster.clear()
        self._by_skeleton.clear()
        self.unconfirmed_bytes = 0
        self.stopped = True
        return out

    # -- flood control -----------------------------------------------------------------

    def _refuse_flood(
        self, session: Session, now: float, whole_address: bool = False
    ) -> list[Outgoing]:
        if not session.strikes.take(now):
            log.warning("%s kicked for flooding", session.nick)
            # The session ends (its token resumes nothing) but the nick is not barred: the
            # limits per address stop whoever floods again.
            return self.kick(
                session.nick, FLOOD_CONTROL, "flooding: too many messages refused", now, seconds=0
            )
        if whole_address:
            burst, rate = self.flood.address_limits
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"slow down: at most {burst:g} messages at once, {rate:g} per second from "
                f"{session.address}, all sessions together; next one in "
                f"{self._addresses.message_wait(session.address, now):.1f} s",
            )
        flood = self.flood
        raise ProtocolError(
            ErrorCode.RATE_LIMITED,
            f"slow down: at most {flood.burst} messages at once, {flood.per_second:g} per "
            f"second; next one in {session.messages.wait(now):.1f} s",
        )

    # -- helpers ---------------------------------------------------------------------

    def _store_chat(self, write: Callable[..., None], *args: object) -> bool:
        """Write a chat message with `write(*args)`: False if the store has it already (a
        resend from before a restart), ERROR 507 if it cannot be written."""
        try:
            write(*args)
        except AlreadyStored:
            return False
        except StoreError as exc:
            log.error("a message was refused: %s", exc)
            raise ProtocolError(
                ErrorCode.INSUFFICIENT_STORAGE,
                truncate_utf8(f"not sent: {exc}; try again later", MAX_REASON_BYTES),
            ) from exc
        return True

    def _broadcast(
        self, event: BroadcastEvent, skip: Identity | None = None, stored: bool = False
    ) -> list[Outgoing]:
        """Number `event` into the broadcast log (and the store, unless `stored` already)
        and address it to the stream and to every client that does not read the stream (but
        `skip`)."""
        if self.cluster is not None:
            # Numbered by the cluster's stream: it comes back to every broker (`Numbered`).
            self.cluster.publish_broadcast(event)
            return []
        if not stored:
            self.store.keep_broadcast(event)
        return self._deliver_broadcast(event, skip)

    def _deliver_broadcast(
        self, event: BroadcastEvent, skip: Identity | None = None
    ) -> list[Outgoing]:
        """Log `event` and address it to the stream and every client that does not read
        the stream (but `skip`)."""
        self.history.append(event)
        out: list[Outgoing] = [(STREAM, event)]
        out.extend((identity, event) for identity in self._direct if identity != skip)
        return out

    def _set_stream(self, session: Session, stream: bool) -> None:
        if stream == session.stream:
            return
        session.stream = stream
        if stream:
            self._direct.pop(session.identity, None)
        else:
            self._direct[session.identity] = None

    def _require(self, nick: str) -> Session:
        session = self.find(nick)
        if session is None:
            raise ProtocolError(ErrorCode.NO_SUCH_NICK, f"no such nick: {nick}")
        return session

    def _require_operator(self, session: Session) -> None:
        if not session.operator:
            raise ProtocolError(ErrorCode.FORBIDDEN, "operator only: use /admin TOKEN first")

    def _now_ms(self) -> int:
        return int(self._wall_clock() * 1000)

    def _who(self, identity: Identity) -> str:
        session = self._by_identity.get(identity)
        return session.nick if session else f"identity {identity.hex()}"


def _ref(command: cmd.ClientCommand) -> str:
    """What an ERROR about `command` names in its ref."""
    if isinstance(command, _CHAT):
        return command.msg_id
    if isinstance(command, _REFERRED):
        return command.ref
    return ""


def _granted(result: ClaimResult) -> bool:
    """Whether the cluster granted a claim (or registration) `result` already held: ERROR
    409 if another holds it, 503 if the cluster could not be asked."""
    if result.outcome is ClaimOutcome.TAKEN:
        raise ProtocolError(ErrorCode.NICK_TAKEN, result.reason)
    if result.outcome is ClaimOutcome.UNAVAILABLE:
        raise ProtocolError(ErrorCode.UNAVAILABLE, result.reason)
    return result.outcome is ClaimOutcome.RESUMED


def _evicted(by: Session, reason: str) -> str:
    """The PARTED reason of a member `by` removed from a room."""
    why = f"removed by {by.nick}" + (f": {reason}" if reason else "")
    return truncate_utf8(why, MAX_REASON_BYTES)


def _check_bar(seconds: int) -> None:
    if seconds > MAX_BAR_SECONDS:
        raise ProtocolError(
            ErrorCode.MALFORMED, f"a nick is barred for {format_duration(MAX_BAR_SECONDS)} at most"
        )
