"""The link to NATS: the only module that touches it.

The broker's loop is synchronous (it polls ZeroMQ sockets); nats-py is asyncio. The link
runs its own event loop in a thread of its own. The loop calls it two ways:

- **asks** that need an answer before the broker can answer its client (a nick claim, the
  private messages a resumed session has not confirmed): they block the loop, at most
  `ASK_TIMEOUT_S`, and are refused at once while NATS is unreachable, never risked;
- **tells** (publish a broadcast, a private message, a receipt; release a claim; say the
  broker is alive): queued, in order, and answered later if at all.

What comes from NATS (numbered broadcasts, private messages for sessions here, claims that
changed, what became of a publish) is queued for the loop as `broker.cluster` events; a
byte on `wake_fd` says there is something to read.
"""

import asyncio
import concurrent.futures
import contextlib
import datetime
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any, Final, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api
from nats.js.kv import KeyValue

from messages import ProtocolError, nick_key
from messages import events as ev

from .cluster import (
    BROKERS_BUCKET,
    BY_NAME,
    CLAIMS_BUCKET,
    CONSOLE_SUBJECT,
    EPOCH_KEY,
    GENERAL_STREAM,
    GENERAL_SUBJECT,
    META_BUCKET,
    MSG_ID_HEADER,
    OUTCOME,
    OWNERS_BUCKET,
    PRIVATE,
    RECEIPT,
    ROOMS_STREAM,
    ROOMS_SUBJECT,
    USERS_STREAM,
    Claim,
    ClaimGone,
    ClaimOutcome,
    ClaimResult,
    ClaimSet,
    ClusterEvent,
    ConsoleIn,
    LinkChanged,
    OwnerGone,
    OwnerSet,
    PrivateIn,
    Published,
    Reaped,
    RemoteActor,
    RoomChange,
    claim_keys,
    dedup_id,
    every_user_subject,
    numbered,
    outcome_in,
    owner_record,
    pack_event,
    pack_owner,
    pack_room_op,
    private_in,
    receipt,
    receipt_of,
    room_op,
    unconfirmed,
    user_subject,
    user_token,
)
from .history import HISTORY_EVENTS, BroadcastEvent
from .session import Outcome

log = logging.getLogger(__name__)

#: Why a claim is refused while NATS cannot be asked.
UNREACHABLE: Final = "the server cannot check the nick with the rest of the chat now; try again"

T = TypeVar("T")

#: The longest the broker's loop waits for NATS to answer an ask (a claim), in s.
ASK_TIMEOUT_S: Final = 2.0
#: The longest a publish waits for JetStream to say it is stored, in s: then its sender is
#: told it failed (it sends it again).
PUBLISH_TIMEOUT_S: Final = 5.0
#: How long to keep trying to reach NATS at start, in s.
CONNECT_TIMEOUT_S: Final = 10.0
#: Events of #general the cluster's stream keeps, and for how long (s): the cluster's
#: history, as the store keeps a lone broker's.
GENERAL_MAX_EVENTS: Final = 1_000_000
GENERAL_MAX_AGE_S: Final = 365 * 24 * 3600
#: How long the users' stream keeps a private message or receipt, in s: a session that
#: comes back later than this has long expired.
USERS_MAX_AGE_S: Final = 7 * 24 * 3600
#: JetStream's window for recognising a message sent again (Nats-Msg-Id), in s: longer
#: than any failover.
DUPLICATE_WINDOW_S: Final = 120.0
#: How often JetStream tells the broker that #general's (quiet) stream is still followed, in
#: s: after a few missed, the broker follows it again.
ORDERED_HEARTBEAT_S: Final = 1.0
#: How far back a resumed session's private messages and receipts are read, in s: a
#: failover leaves at most a few liveness bounds unread (an owner's look back further).
REDELIVER_WINDOW_S: Final = 15 * 60
#: Most private messages (and receipts) read for one resumed session.
PENDING_READ_LIMIT: Final = 10_000
#: How long a broker that stopped beating keeps its claims, in multiples of its heartbeat
#: liveness: its clients fail over within one liveness and resume their sessions elsewhere,
#: without a LEAVE and a JOIN; past this, they are gone.
REAP_AFTER_LIVENESS: Final = 2


class BackplaneError(Exception):
    """NATS could not be reached, or its streams and buckets could not be made."""


class NatsBackplane:
    """One broker's link to the cluster's NATS servers (`servers`), as `broker_id`."""

    def __init__(
        self, servers: list[str], broker_id: str, liveness_s: float, replicas: int = 1
    ) -> None:
        self.servers = servers
        self.broker_id = broker_id
        #: Copies JetStream keeps of each stream and bucket the broker makes (on as many
        #: servers of a NATS cluster); those already made keep theirs.
        self.replicas = replicas
        #: A broker silent this long (s) has its claims removed.
        self.reap_after_s = REAP_AFTER_LIVENESS * liveness_s
        #: The cluster's epoch (names the numbering of #general), once started.
        self.epoch = ""
        #: The first #general event worth following from for a broker that has none: the
        #: last ones that fit the core's memory.
        self.first_seq = 1
        #: The last #general event when the link started: the broker serves once it has it.
        self.last_seq = 0
        #: The last #general event received (whether it could be read or not).
        self.received_seq = 0
        #: The same for the rooms' stream: the broker serves once it has applied every
        #: change of a room made before it started.
        self.rooms_last_seq = 0
        self.rooms_received_seq = 0
        #: Every claim in the cluster when the link started, by key.
        self.start_claims: dict[str, Claim] = {}
        #: Whether NATS is reachable right now.
        self.up = False
        self._events: queue.SimpleQueue[ClusterEvent] = queue.SimpleQueue()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="nats", daemon=True)
        self._nc: NatsClient | None = None
        self._js: Any = None
        self._claims: KeyValue | None = None
        self._brokers: KeyValue | None = None
        self._owners: KeyValue | None = None
        # The owned nicks by their bucket key by name, as the watcher saw them.
        self._owners_seen: dict[str, tuple[str, bytes]] = {}
        # When each was registered (ms): its owner reads what was sent since, not before.
        self._owned_since: dict[str, int] = {}
        #: Every owned nick in the cluster when the link started: nick and public key, by
        #: bucket key.
        self.start_owners: dict[str, tuple[str, bytes]] = {}
        # Per nick key of each session here: its subscriptions (private messages, outcomes).
        self._followed: dict[str, list[Subscription]] = {}
        # Every claim and each broker's last beat (monotonic s), as the watchers saw them.
        self._claims_seen: dict[str, Claim] = {}
        self._beats: dict[str, float] = {}
        self._started_at = time.monotonic()
        # The claims this process made or took over: a claim in this broker's name that is
        # not one of them is from before its restart, and goes if nobody resumes it.
        self._mine: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # What the broker's loop asked to be done, not started yet (see `_tell`).
        self._tells: list[Coroutine[Any, Any, None]] = []
        self._tells_lock = threading.Lock()
        # Whether the wake-up byte for queued events is written and not read yet.
        self._woken = False

    @property
    def wake_fd(self) -> int:
        """Readable when `events` has something."""
        return self._wake_reader.fileno()

    # -- life -----------------------------------------------------------------------

    def start(self) -> None:
        """Connect, make the streams and buckets if they are not there, read the epoch and
        every claim, and follow #general from its last event on. Raises BackplaneError."""
        self._thread.start()
        try:
            self._ask(self._start(), CONNECT_TIMEOUT_S + ASK_TIMEOUT_S)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            self.close()
            raise BackplaneError(f"cannot reach NATS at {', '.join(self.servers)}: {exc}") from exc

    def close(self) -> None:
        """Drain and close the connection (what is queued is sent first), then the thread."""
        if self._thread.is_alive():
            with contextlib.suppress(TimeoutError, nats.errors.Error, OSError):
                self._ask(self._close(), ASK_TIMEOUT_S)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(ASK_TIMEOUT_S)
        self._wake_reader.close()
        self._wake_writer.close()

    def events(self) -> list[ClusterEvent]:
        """What came from the cluster since the last call, in order."""
        with contextlib.suppress(BlockingIOError, OSError):
            while self._wake_reader.recv(4096):
                pass
        # After the byte is read, before the queue is: an event queued from now on writes
        # a byte again (one queued before is read below).
        self._woken = False
        out: list[ClusterEvent] = []
        with contextlib.suppress(queue.Empty):
            while True:
                out.append(self._events.get_nowait())
        return out

    # -- asks (block the caller) ----------------------------------------------------------

    def claim(self, nick: str, token_hash: str) -> ClaimResult:
        """Claim `nick` for the session with `token_hash` on this broker: a new claim, the
        session's own claim moved here (it comes from another broker), or a refusal."""
        if not self.up:
            return ClaimResult(ClaimOutcome.UNAVAILABLE, UNREACHABLE)
        future = asyncio.run_coroutine_threadsafe(self._claim(nick, token_hash), self._loop)
        try:
            return future.result(ASK_TIMEOUT_S)
        except TimeoutError:
            # Not cancelled half-way (a key made, the other not): it finishes, and what it
            # took is given back, since the client was told no.
            log.warning("a claim of %s took longer than %.0f s: refused", nick, ASK_TIMEOUT_S)
            self._tell(self._undo_claim(future, nick, token_hash))
        except (nats.errors.Error, OSError) as exc:
            log.warning("a claim of %s could not be checked: %s", nick, exc)
        return ClaimResult(ClaimOutcome.UNAVAILABLE, UNREACHABLE)

    def redeliver(self, nick: str, token_hash: str, owner: bool = False) -> None:
        """Receive the private messages for `nick` (see `follow`), and again those for its
        session with `token_hash` (for its `owner`: for any session, and kept for the owner
        while away) that it has not confirmed (as `PrivateIn`s: some may be ones it has)."""
        self._tell(self._redeliver(nick, token_hash, owner))

    def registration(self, nick: str) -> tuple[str, bytes] | None:
        """The registered nick `nick` is, or looks like, and its owner's key, as the
        owners bucket has it now; None if none (or NATS cannot say: then the claim that
        follows is refused anyway)."""
        if not self.up:
            return None
        try:
            return self._ask(self._registration(nick), ASK_TIMEOUT_S)
        except (TimeoutError, nats.errors.Error, OSError, ValueError) as exc:
            log.warning("the registration of %s could not be read: %s", nick, exc)
            return None

    async def _registration(self, nick: str) -> tuple[str, bytes] | None:
        assert self._owners is not None
        for key in claim_keys(nick):
            try:
                entry = await self._owners.get(key)
            except nats.js.errors.KeyNotFoundError:
                continue
            owned, public_key, _ = owner_record(entry.value or b"")
            return owned, public_key
        return None

    def holds(self, key: str) -> bool:
        """Whether this broker holds claim `key` now (for one of its sessions)."""
        return key in self._mine

    def follow_general(self, from_seq: int) -> None:
        """Receive #general's events from number `from_seq` on, as `Numbered`s, in order."""
        self._tell(self._consume(GENERAL_SUBJECT, self._on_general, from_seq))

    def own(self, nick: str, public_key: bytes) -> ClaimResult:
        """Register `nick` to `public_key` in the whole cluster: CLAIMED, RESUMED (it was
        already), TAKEN (to another key, or a look-alike is) or UNAVAILABLE."""
        if not self.up:
            return ClaimResult(ClaimOutcome.UNAVAILABLE, UNREACHABLE)
        try:
            return self._ask(self._own(nick, public_key), ASK_TIMEOUT_S)
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            log.warning("%s not registered: %s", nick, exc)
            return ClaimResult(ClaimOutcome.UNAVAILABLE, UNREACHABLE)

    def disown(self, nick: str) -> None:
        """`nick` is owned no more, in the whole cluster."""
        self._tell(self._disown(nick))

    # -- tells (queued) ---------------------------------------------------------------

    def publish_broadcast(
        self, event: BroadcastEvent, token_hash: str = "", nick: str = "", msg_id: str = ""
    ) -> None:
        """Publish `event` to #general's stream; for a chat message (`msg_id` of `nick`'s
        session with `token_hash`), a `Published` follows."""
        headers = {MSG_ID_HEADER: dedup_id("say", token_hash, msg_id)} if msg_id else None
        published = Published(token_hash, nick, msg_id, True) if msg_id else None
        self._tell(self._publish(GENERAL_SUBJECT, pack_event(event), headers, published))

    def send_private(
        self,
        private: ev.PrivateMessage,
        sender_token: str,
        recipient_token: str,
        stored_for: str = "",
    ) -> None:
        """Publish `private` for its recipient's session (`recipient_token`; none for an
        owned nick that is away, `stored_for`); a `Published` follows for its sender."""
        headers = {MSG_ID_HEADER: dedup_id("pm", sender_token, private.msg_id)}
        payload = pack_event(private, sender_token, recipient_token)
        subject = user_subject(private.recipient, PRIVATE)
        published = Published(sender_token, private.sender, private.msg_id, True, "", stored_for)
        self._tell(self._publish(subject, payload, headers, published))

    def publish_room(
        self, event: RoomChange, actor: RemoteActor, msg_id: str = "", target: str = ""
    ) -> None:
        """Publish a change of a room by `actor` to the rooms' stream; a `Published` follows
        (with the `msg_id` of a post)."""
        headers = {MSG_ID_HEADER: dedup_id("post", actor.token_hash, msg_id)} if msg_id else None
        # (Without a msg_id too: its author learns if the cluster did not take the change.)
        published = Published(actor.token_hash, actor.nick, msg_id, True)
        payload = pack_room_op(event, actor, target)
        self._tell(self._publish(ROOMS_SUBJECT, payload, headers, published))

    def confirmed(self, recipient: str, sender: str, msg_id: str) -> None:
        """Keep that `recipient` confirmed `sender`'s private message `msg_id`."""
        payload = receipt(sender, msg_id)
        # The users' stream keeps it all the same: no need to wait for its answer.
        self._tell(self._publish_core(user_subject(recipient, RECEIPT), payload))

    def send_outcome(self, sender: str, sender_token: str, outcome: Outcome) -> None:
        """Tell the broker holding `sender` what became of one of its private messages."""
        payload = pack_event(outcome, sender, sender_token)
        self._tell(self._publish_core(user_subject(sender, OUTCOME), payload))

    def follow(self, nick: str) -> None:
        """Receive the private messages and outcomes for `nick`, held here."""
        self._tell(self._follow(nick))

    def unfollow(self, nick: str) -> None:
        """Stop receiving those of `nick` (it left, or holds another nick now)."""
        self._tell(self._unfollow(nick))

    def release(self, nick: str, token_hash: str, keep: str = "") -> None:
        """Free `nick`, if the session with `token_hash` still holds it here (but what it
        shares with `keep`, the nick the session takes instead)."""
        self._tell(self._release(nick, token_hash, keep))

    def beat(self) -> None:
        """Say this broker is alive, and remove the claims of brokers that are not."""
        self._tell(self._beat())

    def console(self, line: str, broker: str = "") -> None:
        """Have every other broker (or `broker`) run operator line `line`."""
        record = json.dumps({"line": line, "broker": broker, "from": self.broker_id}).encode()
        self._tell(self._publish_core(CONSOLE_SUBJECT, record))

    # -- the thread's side ------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _ask(self, coroutine: Coroutine[Any, Any, T], timeout_s: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise

    def _tell(self, coroutine: Coroutine[Any, Any, None]) -> None:
        # Queued, and started in order by one call on the loop for a whole burst (waking
        # the loop costs a system call): each starts before the next and sends before its
        # first wait, so publishes leave in order.
        with self._tells_lock:
            self._tells.append(coroutine)
            if len(self._tells) > 1:
                return  # a start is on its way already
        self._loop.call_soon_threadsafe(self._start_tells)

    def _start_tells(self) -> None:
        with self._tells_lock:
            tells, self._tells = self._tells, []
        for coroutine in tells:
            self._spawn(coroutine)

    def _put(self, event: ClusterEvent) -> None:
        self._events.put(event)
        if not self._woken:
            # One byte until the loop reads: it takes every event queued by then.
            self._woken = True
            with contextlib.suppress(BlockingIOError, OSError):
                self._wake_writer.send(b"\0")

    async def _start(self) -> None:
        self._nc = await nats.connect(
            servers=self.servers,
            name=f"zmq-chat broker {self.broker_id}",
            connect_timeout=2,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
            disconnected_cb=self._disconnected,
            reconnected_cb=self._reconnected,
            error_cb=self._error,
        )
        self.up = True
        js = self._js = self._nc.jetstream()
        await self._stream(
            name=GENERAL_STREAM,
            subjects=[GENERAL_SUBJECT],
            max_msgs=GENERAL_MAX_EVENTS,
            max_age=GENERAL_MAX_AGE_S,
        )
        await self._stream(name=ROOMS_STREAM, subjects=[ROOMS_SUBJECT])
        await self._stream(
            name=USERS_STREAM,
            subjects=[every_user_subject(PRIVATE), every_user_subject(RECEIPT)],
            max_age=USERS_MAX_AGE_S,
        )
        self._claims = await self._bucket(CLAIMS_BUCKET)
        self._brokers = await self._bucket(BROKERS_BUCKET)
        self._owners = await self._bucket(OWNERS_BUCKET)
        meta = await self._bucket(META_BUCKET)
        epoch = f"c{int(time.time() * 1000):x}".encode()
        with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
            await meta.create(EPOCH_KEY, epoch)
        self.epoch = (await meta.get(EPOCH_KEY)).value.decode()  # type: ignore[union-attr]
        info = await js.stream_info(GENERAL_STREAM)
        self.last_seq = info.state.last_seq
        self.rooms_last_seq = (await js.stream_info(ROOMS_STREAM)).state.last_seq
        self.first_seq = max(1, self.last_seq - HISTORY_EVENTS + 1)
        await self._watch(self._claims, self._on_claim)
        self.start_claims = dict(self._claims_seen)
        await self._watch(self._brokers, self._on_beat)
        await self._watch(self._owners, self._on_owner)
        self.start_owners = dict(self._owners_seen)
        await self._beat()
        await self._nc.subscribe(CONSOLE_SUBJECT, cb=self._on_console)
        # Every change of every room, from the first: the rooms are what they add up to.
        await self._consume(ROOMS_SUBJECT, self._on_room, 1)

    async def _consume(
        self, subject: str, on_msg: Callable[[Msg], Awaitable[None]], from_seq: int
    ) -> None:
        """Have `on_msg` every event of `subject`'s stream from `from_seq` on, in order."""
        await self._js.subscribe(
            subject,
            cb=on_msg,
            ordered_consumer=True,
            # Missed heartbeats are how it notices a NATS server that restarted, and
            # follows again from the last event it got.
            idle_heartbeat=ORDERED_HEARTBEAT_S,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            config=api.ConsumerConfig(opt_start_seq=from_seq),
        )

    async def _stream(self, **config: Any) -> None:
        """Make a stream, unless it is there already (as the first broker made it)."""
        try:
            await self._js.add_stream(
                duplicate_window=DUPLICATE_WINDOW_S,
                storage=api.StorageType.FILE,
                num_replicas=self.replicas,
                **config,
            )
        except nats.js.errors.BadRequestError:
            await self._js.stream_info(config["name"])  # there, made otherwise: fine

    async def _bucket(self, name: str) -> KeyValue:
        """A key-value bucket (one value per key), made unless it is there already."""
        try:
            bucket: KeyValue = await self._js.create_key_value(
                bucket=name, history=1, replicas=self.replicas
            )
        except nats.js.errors.BadRequestError:
            bucket = await self._js.key_value(name)
        return bucket

    async def _close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.drain()

    async def _watch(self, bucket: KeyValue, on_entry: Callable[[Any], None]) -> None:
        """Follow every key of `bucket`: its present values first (read before this
        returns), then every change."""
        watcher = await bucket.watchall()
        while True:
            entry = await watcher.updates(timeout=ASK_TIMEOUT_S)  # type: ignore[no-untyped-call]
            if entry is None:
                break  # the present values are all read
            on_entry(entry)

        async def follow() -> None:
            async for entry in watcher:
                if entry is not None:
                    on_entry(entry)

        self._spawn(follow())

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_claim(self, entry: Any) -> None:
        key = entry.key
        known = self._claims_seen.get(key)
        if known is not None and (entry.revision or 0) <= known.revision:
            return  # older than what this broker did since (a claim taken again, say)
        if entry.operation in ("DEL", "PURGE") or entry.value is None:
            self._mine.discard(key)
            if self._claims_seen.pop(key, None) is not None:
                self._put(ClaimGone(key))
            return
        try:
            claim = Claim.from_bytes(entry.value, entry.revision)
        except ValueError as exc:
            log.error("a claim that is not one (%s): %s", key, exc)
            return
        self._claims_seen[key] = claim
        if claim.broker != self.broker_id:
            self._mine.discard(key)  # it went on on another broker
        self._put(ClaimSet(claim))

    def _on_owner(self, entry: Any) -> None:
        key = entry.key
        if not key.startswith(BY_NAME):
            return  # (the key by look says nothing more)
        if entry.operation in ("DEL", "PURGE") or entry.value is None:
            self._owned_since.pop(key, None)
            gone = self._owners_seen.pop(key, None)
            if gone is not None:
                self._put(OwnerGone(gone[0]))
            return
        try:
            nick, public_key, since = owner_record(entry.value)
        except ValueError as exc:
            log.error("an owner that is not one (%s): %s", key, exc)
            return
        self._owners_seen[key] = (nick, public_key)
        self._owned_since[key] = since
        self._put(OwnerSet(nick, public_key))

    async def _own(self, nick: str, public_key: bytes) -> ClaimResult:
        assert self._owners is not None
        by_name, by_look = claim_keys(nick)
        record = pack_owner(nick, public_key, int(time.time() * 1000))
        made: list[str] = []
        for key in (by_name, by_look):
            try:
                await self._owners.create(key, record)
                made.append(key)
                continue
            except nats.js.errors.KeyWrongLastSequenceError:
                pass
            entry = await self._owners.get(key)
            held, key_of_holder, _ = owner_record(entry.value or b"")
            if key_of_holder == public_key and nick_key(held) == nick_key(nick):
                continue  # registered to this key already
            for undo in made:
                with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
                    await self._owners.delete(undo)
            if key == by_name:
                why = f"nick {held} is registered to another identity"
            else:
                why = f"nick {nick} looks like {held}, which is registered"
            return ClaimResult(ClaimOutcome.TAKEN, why)
        return ClaimResult(ClaimOutcome.CLAIMED if made else ClaimOutcome.RESUMED)

    async def _disown(self, nick: str) -> None:
        assert self._owners is not None
        for key in claim_keys(nick):
            with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
                await self._owners.delete(key)

    def _on_beat(self, entry: Any) -> None:
        if entry.operation in ("DEL", "PURGE"):
            self._beats.pop(entry.key, None)
        else:
            self._beats[entry.key] = time.monotonic()

    async def _on_general(self, msg: Msg) -> None:
        self.received_seq = msg.metadata.sequence.stream
        try:
            self._put(numbered(msg.data, msg.metadata.sequence.stream))
        except (ValueError, ProtocolError) as exc:
            log.error("#general's stream holds what is not an event: %s", exc)

    async def _on_room(self, msg: Msg) -> None:
        seq = self.rooms_received_seq = msg.metadata.sequence.stream
        try:
            self._put(room_op(msg.data, seq))
        except (ValueError, ProtocolError) as exc:
            log.error("the rooms' stream holds what is not a change of a room: %s", exc)

    async def _on_private(self, msg: Msg) -> None:
        try:
            self._put(private_in(msg.data))
        except (ValueError, ProtocolError) as exc:
            log.error("a private message that is not one: %s", exc)

    async def _on_outcome(self, msg: Msg) -> None:
        try:
            self._put(outcome_in(msg.data))
        except (ValueError, ProtocolError) as exc:
            log.error("an outcome that is not one: %s", exc)

    async def _on_console(self, msg: Msg) -> None:
        try:
            record = json.loads(msg.data)
            line, broker, sender = record["line"], record["broker"], record["from"]
        except (ValueError, KeyError, TypeError) as exc:
            log.error("an operator action that is not one: %s", exc)
            return
        if sender != self.broker_id and broker in ("", self.broker_id):
            self._put(ConsoleIn(str(line), str(broker)))

    async def _disconnected(self) -> None:
        if self.up:
            self.up = False
            self._put(LinkChanged(False, "NATS unreachable"))

    async def _reconnected(self) -> None:
        # While the link was down nobody's beats could be heard: every broker (this one's
        # claims from before a restart too) gets a whole window again before it is given up.
        now = time.monotonic()
        self._started_at = now
        for broker in self._beats:
            self._beats[broker] = now
        self.up = True
        url = self._nc.connected_url if self._nc is not None else None
        self._put(LinkChanged(True, f"NATS back at {url.netloc if url else '?'}"))

    async def _error(self, exc: Exception) -> None:
        log.warning("NATS: %s", exc)

    async def _claim(self, nick: str, token_hash: str) -> ClaimResult:
        by_name, by_look = claim_keys(nick)
        named = await self._take(by_name, nick, token_hash)
        if isinstance(named, Claim):
            return ClaimResult(ClaimOutcome.TAKEN, f"nick {named.nick} is taken")
        looked = await self._take(by_look, nick, token_hash)
        if isinstance(looked, Claim):
            if named is ClaimOutcome.CLAIMED:
                await self._release_key(by_name, token_hash)
            return ClaimResult(
                ClaimOutcome.TAKEN, f"nick {nick} looks like {looked.nick}, who is here"
            )
        revisions = tuple(self._claims_seen[key].revision for key in (by_name, by_look))
        if ClaimOutcome.RESUMED in (named, looked):
            return ClaimResult(ClaimOutcome.RESUMED, revisions=revisions)
        return ClaimResult(ClaimOutcome.CLAIMED, revisions=revisions)

    async def _take(self, key: str, nick: str, token_hash: str) -> ClaimOutcome | Claim:
        """Claim `key` for `nick`'s session with `token_hash`: CLAIMED, RESUMED (it held it
        already, maybe on another broker), or the claim that holds it."""
        assert self._claims is not None
        mine = Claim(nick, token_hash, self.broker_id)
        try:
            revision = await self._claims.create(key, mine.to_bytes())
            outcome = ClaimOutcome.CLAIMED
        except nats.js.errors.KeyWrongLastSequenceError:
            entry = await self._claims.get(key)
            held = Claim.from_bytes(entry.value or b"", entry.revision or 0)
            if held.token_hash != token_hash:
                return held
            # The session's own claim: it moves here (its client failed over, or came back).
            try:
                revision = await self._claims.update(key, mine.to_bytes(), last=held.revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                return held  # changed meanwhile: the client tries again
            outcome = ClaimOutcome.RESUMED
        self._claims_seen[key] = replace(mine, revision=revision)
        self._mine.add(key)
        return outcome

    async def _undo_claim(
        self, claiming: "concurrent.futures.Future[ClaimResult]", nick: str, token_hash: str
    ) -> None:
        with contextlib.suppress(nats.errors.Error, OSError):
            result = await asyncio.wrap_future(claiming)
            if result.outcome is ClaimOutcome.CLAIMED:
                # Only the revisions it made: the client may have claimed again since.
                for key, revision in zip(claim_keys(nick), result.revisions, strict=False):
                    await self._release_key(key, token_hash, revision)

    async def _release(self, nick: str, token_hash: str, keep: str = "") -> None:
        # (A nick it takes in place of this one may share a key with it: that one stays.)
        kept = claim_keys(keep) if keep else ()
        for key in claim_keys(nick):
            if key not in kept:
                await self._release_key(key, token_hash)

    async def _release_key(self, key: str, token_hash: str, revision: int = 0) -> None:
        assert self._claims is not None
        held = self._claims_seen.get(key)
        if held is None or held.broker != self.broker_id or held.token_hash != token_hash:
            return  # it moved to another broker (or was never this session's)
        if revision and held.revision != revision:
            return  # taken again since (the session's client tried again)
        # Forgotten first: this broker's own release must not come back as a claim taken
        # from one of its sessions (the key may be claimed again before its deletion is
        # seen).
        del self._claims_seen[key]
        self._mine.discard(key)
        with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
            await self._claims.delete(key, last=held.revision)

    async def _beat(self) -> None:
        if self._brokers is None or self._claims is None or not self.up:
            return
        with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
            await self._brokers.put(self.broker_id, str(time.time()).encode())
        now = time.monotonic()
        for key, claim in list(self._claims_seen.items()):
            if key in self._mine:
                continue
            # (A claim in this broker's name from before its restart: as old as the start.)
            last = self._beats.get(claim.broker, self._started_at)
            if claim.broker == self.broker_id:
                last = self._started_at
            if now - last < self.reap_after_s:
                continue
            # Compare-and-delete: of all the brokers that find it dead, one removes it.
            try:
                await self._claims.delete(key, last=claim.revision)
            except (nats.errors.Error, nats.js.errors.Error):
                continue
            if key == claim_keys(claim.nick)[0]:  # (once per nick: it has two keys)
                log.info("%s was on %s, silent for %.0f s", claim.nick, claim.broker, now - last)
                self._put(Reaped(claim))

    async def _publish(
        self,
        subject: str,
        payload: bytes,
        headers: dict[str, str] | None,
        published: Published | None,
    ) -> None:
        """Publish to JetStream; then `published`, or what went wrong instead."""
        ok, reason = True, ""
        try:
            if self._js is None or not self.up:
                raise nats.errors.ConnectionClosedError
            ack = await self._js.publish(
                subject, payload, timeout=PUBLISH_TIMEOUT_S, headers=headers
            )
            del ack
        except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
            ok, reason = False, f"the cluster did not keep it ({type(exc).__name__})"
            log.warning("a publish to %s failed: %s", subject, reason)
        if published is not None:
            self._put(published if ok else replace(published, ok=False, reason=reason))

    async def _publish_core(self, subject: str, payload: bytes) -> None:
        if self._nc is None:
            return
        with contextlib.suppress(nats.errors.Error, OSError):
            await self._nc.publish(subject, payload)

    async def _follow(self, nick: str) -> None:
        if self._nc is None or user_token(nick) in self._followed:
            return
        self._followed[user_token(nick)] = [
            await self._nc.subscribe(user_subject(nick, PRIVATE), cb=self._on_private),
            await self._nc.subscribe(user_subject(nick, OUTCOME), cb=self._on_outcome),
        ]

    async def _unfollow(self, nick: str) -> None:
        for subscription in self._followed.pop(user_token(nick), []):
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()

    async def _redeliver(self, nick: str, token_hash: str, owner: bool) -> None:
        try:
            for waiting in await self._pending_for(nick, token_hash, owner):
                self._put(waiting)
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            # They stay kept: the next resumption or reconnection reads them again.
            log.warning("private messages for %s not read again: %s", nick, exc)

    async def _pending_for(self, nick: str, token_hash: str, owner: bool) -> list[PrivateIn]:
        # Subscribed first, then read: what is published meanwhile comes both ways, and
        # the second copy is dropped.
        await self._follow(nick)
        since_ms = self._owned_since.get(claim_keys(nick)[0]) if owner else None
        # A session looks back as far as a failover may have left something unread; its
        # owner, to when the nick was registered (within what the stream keeps).
        look_back_s = USERS_MAX_AGE_S if since_ms is not None else REDELIVER_WINDOW_S
        start = max(time.time() - look_back_s, (since_ms or 0) / 1000)
        privates = await self._read(user_subject(nick, PRIVATE), start)
        receipts = await self._read(user_subject(nick, RECEIPT), start)
        kept: list[PrivateIn] = []
        for msg in privates:
            with contextlib.suppress(ValueError, ProtocolError):
                kept.append(private_in(msg.data))
        confirmed: set[tuple[str, str]] = set()
        for msg in receipts:
            with contextlib.suppress(ValueError):
                confirmed.add(receipt_of(msg.data))
        return list(unconfirmed(kept, confirmed, token_hash, since_ms))

    async def _read(self, subject: str, since: float) -> list[Msg]:
        """The messages the users' stream keeps on `subject` from time `since` (s since
        the epoch) on, PENDING_READ_LIMIT at most."""
        js = self._js
        try:
            last = await js.get_last_msg(USERS_STREAM, subject)
        except nats.js.errors.NotFoundError:
            return []
        subscription = await js.subscribe(
            subject,
            ordered_consumer=True,
            deliver_policy=api.DeliverPolicy.BY_START_TIME,
            config=api.ConsumerConfig(
                opt_start_time=datetime.datetime.fromtimestamp(since, datetime.UTC)
            ),
        )
        messages: list[Msg] = []
        try:
            while len(messages) < PENDING_READ_LIMIT:
                msg = await subscription.next_msg(timeout=ASK_TIMEOUT_S)
                messages.append(msg)
                if msg.metadata.sequence.stream >= last.seq:
                    break
        except nats.errors.TimeoutError:
            pass  # nothing (more) since then
        finally:
            await subscription.unsubscribe()
        return messages
