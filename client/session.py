"""A chat session that outlives its connections: registration, the receive loop with its
liveness check, reconnection, the heartbeat, the outbox pump and carrying out typed lines.

The full-screen UI and line mode both run a `Session`; they differ only in where entries are
shown (`show`) and in how the session ends.

Liveness and reconnection (the "Lazy Pirate" pattern): the session PINGs every heartbeat
interval and counts any event from the broker as life. After one liveness bound
(HEARTBEAT_LIVENESS heartbeat intervals) of silence the link is lost: the session closes its
DEALER, opens a fresh one (so that no stale HELLO is queued anywhere), sends HELLO with the
same nick and session token and waits for WELCOME; each further attempt waits longer
(`backoff_s`), forever, until WELCOME or until the nick turns out to be taken by someone else.
ERROR 401 while registered (the broker restarted, or dropped the session) registers again at
once on the same socket. A HELLO with our token resumes our session on the broker.

Several servers (the brokers of one cluster, say): the first registration tries each in
turn, one registration bound each, until one answers. A lost link moves on to the next one,
round-robin, with the same HELLO, so that a broker of the same cluster resumes the session
(an unrelated broker takes it as a new registration). Each server is tried once before the
attempts back off: a round of attempts is one per server, and the backoff grows per round.

Broadcasts come on the broker's stream (see `client.connection`) when the server is a TCP
endpoint: HELLO says so, and after each WELCOME the session subscribes to the port it names
(again only if the broker restarted or the port changed: a resumed session keeps its
subscription). Once the stream says it is ready, one FETCH picks up what was published
before. Gaps in the numbers, or a TICK naming a number not seen, are fetched over the
DEALER (`client.stream` orders and deduplicates); only what comes over the DEALER counts as
a sign of life. A stream that never gets ready within a liveness bound (its port
unreachable, say) is given up: a HELLO without the stream has the broker send broadcasts
over the DEALER instead. After each WELCOME a USERS request fetches who is present.

Events are handled in batches: whatever has arrived, then one `show` for all of it, then the
other tasks (the UI) get their turn.
"""

import asyncio
import contextlib
import logging
import math
import secrets
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

from messages import (
    FETCH_REPLY_BYTES,
    MAX_ID_BYTES,
    MAX_NICK_CHARS,
    MAX_TEXT_BYTES,
    REPLY_BURST_BYTES,
    REPLY_BYTES_PER_SECOND,
    USERS_PAGE_BYTES,
    ErrorCode,
    ProtocolError,
    TokenBucket,
    room_key,
)
from messages.commands import (
    Away,
    Ban,
    ClientCommand,
    Enter,
    Evict,
    Fetch,
    FetchRoom,
    Hello,
    History,
    Invite,
    Kick,
    ListMembers,
    ListNicks,
    ListRooms,
    ListUsers,
    Nick,
    Part,
    Ping,
    Quit,
    Received,
    Register,
    Search,
    SetMode,
    SetTopic,
    Unban,
    Unregister,
    Wall,
)
from messages.events import (
    Ack,
    AwayChanged,
    BrokerEvent,
    Challenge,
    Delivered,
    Entered,
    Error,
    Invited,
    Joined,
    Left,
    LogEntry,
    MemberList,
    Message,
    ModeSet,
    NickList,
    Notice,
    Page,
    Parted,
    Pong,
    Posted,
    PrivateMessage,
    Registered,
    Renamed,
    RoomList,
    RoomState,
    RoomTick,
    Stored,
    Tick,
    TopicSet,
    UserList,
    Welcome,
)

from .commands import (
    Hint,
    JoinRoom,
    Leave,
    Nothing,
    Post,
    RegisterNick,
    SearchHistory,
    Send,
    SetTarget,
    ShowHelp,
    ShowHistory,
    ShowTopic,
    View,
    help_lines,
    parse_line,
)
from .connection import (
    Connection,
    CurveKeys,
    HandshakeFailure,
    StreamBuffers,
    StreamItem,
    StreamReady,
)
from .history import OLDER_PAGE_LINES, QUERY_HISTORY_LINES, Purpose, Request, Requests
from .identity import Identity
from .outbox import Outbox, OutgoingMessage, liveness_bound_s
from .rooms import RoomEvent
from .state import ChatState, Ending, Entry
from .stream import BroadcastEvent, BroadcastStream
from .userpages import NickListPages, UserListPages

log = logging.getLogger(__name__)

#: The list of rooms Tab completes is asked for again after this many seconds, at most.
ROOM_LIST_REFRESH_S: Final = 10.0
#: How long to wait for WELCOME on the first registration, in seconds.
REGISTRATION_TIMEOUT_S: Final = 5.0
#: Reconnect attempt 2 waits this much longer for WELCOME than one liveness bound, in
#: seconds; each further attempt doubles it, up to RECONNECT_BACKOFF_MAX_S.
RECONNECT_BACKOFF_INITIAL_S: Final = 1.0
RECONNECT_BACKOFF_MAX_S: Final = 8.0
#: Bytes of randomness in the session token (URL-safe base64: 22 characters for 16 bytes,
#: as long as the broker requires, MIN_SESSION_TOKEN_BYTES).
SESSION_TOKEN_BYTES: Final = 16
#: ERROR codes that refuse a nick for good (as opposed to "try again later").
NICK_REFUSED: Final = frozenset({ErrorCode.NICK_TAKEN, ErrorCode.INVALID_NICK})
#: The ERROR code that refuses a HELLO because an operator kicked the session or barred the
#: nick: the session is over, and trying again would only be refused again.
BARRED: Final = ErrorCode.FORBIDDEN
#: Commands the broker's flood control counts (chat text aside): paced like chat text.
_METERED: Final = (
    Enter,
    Part,
    SetMode,
    SetTopic,
    Evict,
    Invite,
    ListRooms,
    ListMembers,
    ListUsers,
    ListNicks,
    Register,
    Unregister,
    Kick,
    Ban,
    Unban,
    Wall,
    History,
    Search,
    Away,
    Nick,
)
#: Commands whose answers the broker meters by their bytes (REPLY_BURST_BYTES, then
#: REPLY_BYTES_PER_SECOND): paced to that budget too.
_REPLY_METERED: Final = (
    Fetch,
    FetchRoom,
    ListUsers,
    ListNicks,
    History,
    Search,
    ListRooms,
    ListMembers,
)
#: The most one LOG event weighs (its frames), for pacing HISTORY and SEARCH: a page of
#: them may outweigh the largest answer below.
_LOG_BYTES: Final = MAX_TEXT_BYTES + 2 * 4 * MAX_NICK_CHARS + MAX_ID_BYTES + 64
#: The most one answer to them costs: a FETCH answer or a USERS page.
_LARGEST_REPLY_BYTES: Final = max(FETCH_REPLY_BYTES, USERS_PAGE_BYTES)
#: Such commands sent at once, then per second: counting each as the largest answer, the
#: client is never refused; one answer's worth is kept in hand for requests the network
#: bunches together.
REPLY_PACING_BURST: Final = REPLY_BURST_BYTES // _LARGEST_REPLY_BYTES - 1
REPLY_PACING_PER_SECOND: Final = REPLY_BYTES_PER_SECOND / _LARGEST_REPLY_BYTES

Show = Callable[[list[Entry]], None]


def backoff_s(attempt: int) -> float:
    """How much longer than one liveness bound reconnect attempt `attempt` (1, 2, ...) waits
    for WELCOME: 0 for the first, then 1, 2, 4, 8, 8, ... seconds."""
    if attempt <= 1:
        return 0.0
    return float(min(RECONNECT_BACKOFF_MAX_S, RECONNECT_BACKOFF_INITIAL_S * 2 ** (attempt - 2)))


def reconnect_round(attempt: int, servers: int) -> int:
    """Which round (1, 2, ...) reconnect attempt `attempt` (1, 2, ...) is in, with `servers`
    servers tried in turn: each round tries each server once, and backs off as one attempt
    did with a single server (`backoff_s` of the round)."""
    return (attempt - 1) // servers + 1


def new_session_token() -> str:
    """A random session token, chosen once per run of the client."""
    return secrets.token_urlsafe(SESSION_TOKEN_BYTES)


class RegistrationError(Exception):
    """Registration failed; `exit_code` is 2 if the nick was refused, 1 otherwise."""

    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code


def _discard(entries: list[Entry]) -> None:
    pass


def _reply_cost(command: ClientCommand) -> float:
    """How many of the largest answers the answer to `command` may weigh, at most: more
    than one for a long page of history."""
    if isinstance(command, History | Search):
        return float(max(1, math.ceil(command.limit * _LOG_BYTES / _LARGEST_REPLY_BYTES)))
    return 1.0


class Session:
    """One chat session of `nick` on `server` (one endpoint, or several to fail over
    between, in order), across as many connections as it takes.

    `register` makes the first registration (and fails if it cannot); `run` then applies
    broker events to `state`, shows the resulting entries through `show`, keeps the link
    alive and reconnects, until the session ends. `handle_line` carries out typed lines.
    """

    def __init__(
        self,
        server: str | Sequence[str],
        nick: str,
        show: Show = _discard,
        *,
        keys: CurveKeys | None = None,
        token: str | None = None,
        stream_buffers: StreamBuffers | None = None,
        history_lines: int = 0,
        last_seen: Callable[[str], int | None] | None = None,
        identity: Identity | None = None,
    ) -> None:
        #: The servers, in the order they are tried (see the module docstring).
        self.servers: tuple[str, ...] = (server,) if isinstance(server, str) else tuple(server)
        if not self.servers:
            raise ValueError("no server to connect to")
        # Which of them the current connection goes to.
        self._server_index = 0
        self.keys = keys
        #: The key that owns our registered nicks: it answers CHALLENGE and signs REGISTER.
        #: Without one, a registered nick cannot be taken and none can be registered.
        self.identity = identity
        #: How much of the broadcast stream may wait unread (default: plenty).
        self.stream_buffers = stream_buffers
        #: Repeated on every HELLO: the broker resumes the session that has it.
        self.token = token or new_session_token()
        self.state = ChatState(nick, self.servers[0], secure=keys is not None)
        #: Where entries go; may be replaced before `run` (the UI is built after `register`).
        self.show = show
        #: Where history goes that is older than everything shown (the history on joining,
        #: older pages): above it all in the UI. None: shown like anything else.
        self.show_above: Show | None = None
        #: Carries out the commands about what the full-screen client shows (`View`); None
        #: where there is no such thing to show (line mode).
        self.on_view: Callable[[View], None] | None = None
        #: Broadcasts of the stored history shown on joining (0: none).
        self.history_lines = history_lines
        #: The last broadcast number the user saw in a given epoch, on an earlier run (for
        #: the unread marker); None: unknown.
        self.last_seen = last_seen
        #: HISTORY and SEARCH requests awaiting their answers.
        self.requests = Requests()
        #: `before` of the next older page of the room's history (0: nothing older; None:
        #: not known before the first WELCOME).
        self.older_before: int | None = None
        # The history shown on joining is shown (or was not asked for).
        self._backlog_shown = history_lines <= 0
        # Some of the room's history is on top of the pane.
        self._history_on_top = False
        # Message ids are seen by every recipient: they must not reveal the session token,
        # which is all it takes to resume (take over) this session.
        self.outbox = Outbox(new_session_token())
        #: Paces FETCH and USERS to the broker's byte budget for their answers.
        self.reply_pacer = TokenBucket(REPLY_PACING_BURST, REPLY_PACING_PER_SECOND)
        self.stream = BroadcastStream()
        #: The rooms this session is in (entered again after each registration).
        self.rooms = self.state.rooms
        # Rooms asked for with /join whose ROOM answer has not come yet, by key.
        self._joining: set[str] = set()
        # When the rooms were last asked for completion (monotonic s).
        self._rooms_asked_at = -math.inf
        # Rooms entered again as the last run left them (shown, but lines stay where they go).
        self._rejoining: set[str] = set()
        #: Told the names of the rooms this session is in whenever they change.
        self.on_rooms_changed: Callable[[list[str]], None] | None = None
        # Where each room's shown history begins (`next_before` of its last page), by key.
        self._room_older: dict[str, int] = {}
        # Rooms whose member list is being asked for quietly, by key.
        self._members_wanted: set[str] = set()
        # Rooms whose topic the SUB socket of the stream follows.
        self._followed: set[str] = set()
        # A /rooms listing is coming (its ROOM events are lines of it): how many so far.
        self._rooms_listed: int | None = None
        self.connection: Connection | None = None
        #: Registered on the current connection (WELCOME received, no 401 since).
        self.registered = False
        #: Connections opened so far (1 after `register`).
        self.connections = 0
        self._first_welcome: Welcome | None = None
        # A HELLO on the current connection awaits WELCOME until then (after a 401).
        self._hello_deadline: float | None = None
        self._last_heard = 0.0
        # When the link was last known good, for resending after a broker restart.
        self._lost_at: float | None = None
        # Wakes the pump: something to send, or registered again.
        self._wake = asyncio.Event()
        # Set on progress (an acknowledgement, a failure, a registration): `drain` watches.
        self._progress = asyncio.Event()
        self._progress_at = 0.0
        # Commands of our own making (FETCH, USERS after lost broadcasts): sent first.
        self._controls: deque[ClientCommand] = deque()
        # Typed commands the broker meters, each after the messages typed before it:
        # (number of the last message typed before it, command).
        self._typed: deque[tuple[int, ClientCommand]] = deque()
        self._pings_sent = 0
        self._pongs_received = 0
        self._pong_waiters: list[tuple[int, asyncio.Future[None]]] = []
        #: Whether HELLO asks for broadcasts on the stream (else they come on the DEALER).
        #: Cleared for good if the stream turns out unreachable.
        self.streaming = True
        # The current SUB socket: when it was opened, and whether it said it is ready.
        self._subscribed_at: float | None = None
        self._stream_ready = False
        # The PONG (by number) that follows the answer to the FETCH in flight; 0: none.
        self._fetch_pong = 0
        # The stream (re)connected while we were registered: until our connection answers
        # the FETCH sent then, its broadcasts may be a restarted broker's, numbered anew.
        self._stream_unconfirmed = False
        # When the stream last said anything (monotonic seconds).
        self._last_from_stream = 0.0
        # USERS answers still to come that are not to be shown (asked for after a reconnect).
        self._quiet_user_lists = 0
        # The pages of the USERS answer coming in, and whether to show it once complete.
        self._user_pages = UserListPages()
        self._announce_users = True
        # The pages of the NICKS answer coming in (the owned nicks), and whether to say who
        # is away once it is complete (after a user list that was shown).
        self._nick_pages = NickListPages()
        self._announce_away = False
        # While a batch of events is handled: the entries to show at its end.
        self._batch_entries: list[Entry] | None = None

    # -- properties ------------------------------------------------------------------------

    @property
    def server(self) -> str:
        """The server of the current connection (or the one being tried)."""
        return self.servers[self._server_index]

    @property
    def chat(self) -> str:
        """The servers as given, comma-separated: what names this chat in the state files
        (the server itself when there is one)."""
        return ",".join(self.servers)

    @property
    def liveness_s(self) -> float:
        """How long the broker may stay silent before the link counts as lost."""
        return liveness_bound_s(self.state.heartbeat_ms)

    @property
    def stream_ready(self) -> bool:
        """Whether the broadcast stream is in place (it said so since it was opened)."""
        return self._stream_ready

    @property
    def stream_confirmed(self) -> bool:
        """Whether broadcasts from the stream are applied: it is in place, and since it
        (re)connected our connection has answered, so it is the same broker run's."""
        return self._stream_ready and not self._stream_unconfirmed

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # -- registration ------------------------------------------------------------------------

    async def register(self, timeout_s: float = REGISTRATION_TIMEOUT_S) -> Welcome:
        """Open a connection, send HELLO and wait for WELCOME. Raises RegistrationError if the
        broker refuses the nick (exit code 2, with its reason) or does not answer within
        `timeout_s` seconds (exit code 1); ValueError if the server is not a valid endpoint.
        With several servers, each that does not answer within `timeout_s` is passed for the
        next; the first answer counts, and RegistrationError says none answered.
        """
        failures: list[tuple[str, HandshakeFailure]] = []
        answered = False
        for index, server in enumerate(self.servers):
            if index and not answered:
                # As irssi cycling its server list: the user sees where it goes next.
                log.warning(
                    "no answer from %s within %g s: trying %s", self.server, timeout_s, server
                )
            self._server_index = index
            self._open(watch_handshakes=True)
            answer = await self._hello(timeout_s)
            connection = self.connection
            assert connection is not None
            # Only a HELLO that got no answer needs to know how the handshake went.
            failure = connection.handshake_failure() if answer is None else None
            connection.stop_watching_handshakes()
            if isinstance(answer, Welcome):
                self._first_welcome = answer
                return answer
            if (
                answer is not None
                and answer.code == ErrorCode.UNAVAILABLE
                and index + 1 < len(self.servers)
            ):
                # That broker cannot check the nick now (its cluster's NATS is out of reach):
                # another of the chat's may.
                log.warning(
                    "%s cannot register us now (%s): trying the next", server, answer.reason
                )
                self._close_connection()
                answered = True
                continue
            answered = False
            if answer is not None:
                code = 2 if answer.code in NICK_REFUSED or answer.code == BARRED else 1
                raise RegistrationError(
                    f"nick {self.state.nick!r} refused ({answer.code}): {answer.reason}", code
                )
            if failure is not None:
                failures.append((server, failure))
        raise RegistrationError(self._no_answer(timeout_s, failures), 1)

    def _no_answer(self, timeout_s: float, failures: list[tuple[str, HandshakeFailure]]) -> str:
        """Why registration got no answer (`failures`: the servers whose handshake failed,
        and how), with a hint at what to do."""
        # A failed handshake says more than silence: the first one is explained.
        where, failure = failures[0] if failures else (", ".join(self.servers), None)
        match failure, self.keys:
            case HandshakeFailure(), None:
                # Without a key only the mechanism can fail (however libzmq reports it).
                return (
                    f"{where} requires encryption (its broker runs with --secure): "
                    "connect with SECURE=1 (--secure), or give the public key the broker "
                    "printed with --server-key=KEY"
                )
            case HandshakeFailure.ENCRYPTION_MISMATCH, _:
                return f"{where} does not use encryption: connect without SECURE=1/--server-key"
            case HandshakeFailure.REFUSED, _:
                # libzmq does not always tell a wrong key from a broker without --secure.
                return (
                    f"{where} refused the encrypted handshake: is the server key right (the "
                    "broker prints its public key when it starts), and does it run with "
                    "--secure?"
                )
        verb = "is it" if len(self.servers) == 1 else "are they"
        hint = f": {verb} running, and is the key right?" if self.keys else f": {verb} running?"
        return f"no answer from {where} within {timeout_s:g} s{hint}"

    def _open(self, watch_handshakes: bool = False) -> None:
        """A fresh connection in place of the current one."""
        self._close_connection()
        # The status line and "reconnected to ..." name the server of this connection.
        self.state.server = self.server
        self.connection = Connection(
            self.server,
            self.keys,
            stream_buffers=self.stream_buffers,
            watch_handshakes=watch_handshakes,
        )
        self.streaming = self.streaming and self.connection.can_stream
        self.connections += 1

    def _close_connection(self) -> None:
        if self.connection is not None:
            self.connection.close()
        self.registered = False
        self._hello_deadline = None
        self._subscribed_at = None
        self._stream_ready = False
        self._forget_requests()

    def _forget_requests(self) -> None:
        """Nothing sent on the link so far will be answered (it is gone, or the broker
        forgot us): drop what was waiting to be sent and every answer awaited."""
        self._controls.clear()
        self._typed.clear()
        # Every PING sent so far goes unanswered (or is answered with 401): count afresh.
        self._pings_sent = self._pongs_received = 0
        self._fetch_pong = 0
        self._quiet_user_lists = 0
        self._user_pages.reset()
        self.state.forget_away_snapshot()
        self._nick_pages.reset()
        # (The history on joining is asked for again after the next WELCOME.)
        self.requests.clear()
        self._fail_waiters()

    async def _hello(self, timeout_s: float) -> Welcome | Error | None:
        """HELLO on the current (fresh) connection; WELCOME, the refusing ERROR, or None if
        nothing came within `timeout_s`."""
        assert self.connection is not None
        await self._send_now(self._hello_command())
        deadline = self._now() + timeout_s
        while True:
            # One at a time: what follows WELCOME is the receive loop's.
            batch = await self.connection.receive(deadline - self._now(), limit=1)
            if not batch:
                return None
            for event in batch.direct:
                match event:
                    case Welcome() | Error():
                        return event
                    case Challenge():
                        # Our nick is owned: the HELLO goes on once we prove it is ours.
                        refusal = await self._prove(event)
                        if refusal is not None:
                            return refusal
                    case _:
                        # Nothing else can belong to a session on a fresh connection.
                        log.debug("ignored before registration: %r", event)

    def _hello_command(self) -> Hello:
        return Hello(self.state.nick, self.token, self.streaming)

    async def _prove(self, challenge: Challenge) -> Error | None:
        """Answer `challenge` to our HELLO with PROVE, signed by our identity; without an
        identity, the refusal the broker would send (we cannot have the nick)."""
        if self.identity is None:
            return Error(
                ErrorCode.NICK_TAKEN,
                "",
                f"nick {self.state.nick} is registered, and this client has no identity",
            )
        await self._send_now(self.identity.prove(challenge.nonce, self.state.nick, self.token))
        return None

    # -- the session's life --------------------------------------------------------------

    async def run(self) -> Ending:
        """Apply events and keep the session registered until it ends (kicked, shut down,
        the nick lost); return why. Cancel it to stop it from outside (the user leaves)."""
        if self._first_welcome is not None:
            self._welcomed(self._first_welcome, self._now())
            self._first_welcome = None
        try:
            async with asyncio.TaskGroup() as tasks:
                helpers = [tasks.create_task(self._heartbeat()), tasks.create_task(self._pump())]
                try:
                    await self._receive_loop()
                finally:
                    for helper in helpers:
                        helper.cancel()
        finally:
            self._fail_waiters()
            self._progress.set()
        assert self.state.ending is not None
        return self.state.ending

    async def _receive_loop(self) -> None:
        while self.state.ending is None:
            if self.connection is None or (not self.registered and self._hello_deadline is None):
                await self._reconnect()
                continue
            now = self._now()
            if self.registered:
                deadline = self._last_heard + self.liveness_s
            else:
                assert self._hello_deadline is not None
                deadline = self._hello_deadline
            wake = min(deadline, self._stream_deadline())
            batch = await self.connection.receive(wake - now)
            now = self._now()
            if batch.direct:
                self._last_heard = now
            await self._handle_batch(batch.stream, batch.direct, now)
            if not batch.direct and now >= deadline and self.state.ending is None:
                self._link_lost(now)
            self._check_stream(now)
            self._ask_for_gaps(now)
            # However fast events come, the UI (typing, redrawing) gets its turn between
            # batches.
            await asyncio.sleep(0)

    async def _handle_batch(
        self,
        stream: list[StreamItem],
        direct: list[BrokerEvent | ProtocolError],
        now: float,
    ) -> None:
        """Apply a batch of events, showing what they produce at once at the end."""
        self._batch_entries = []
        try:
            # The stream's first: what the old SUB still held when a WELCOME in `direct`
            # replaces it belongs to the connection before.
            for item in stream:
                self._from_stream(item, now)
            for event in direct:
                if self.state.ending is not None:
                    break
                await self._dispatch(event, now)
        finally:
            entries, self._batch_entries = self._batch_entries, None
            if entries:
                self.show(entries)

    def _show(self, entries: list[Entry]) -> None:
        """Show `entries`, at the end of the batch being handled if there is one."""
        if self._batch_entries is not None:
            self._batch_entries.extend(entries)
        elif entries:
            self.show(entries)

    def _link_lost(self, now: float) -> None:
        silent = now - self._last_heard
        why = f"no answer from {self.server} for {silent:.1f} s"
        self._lost_at = self._last_heard if self.registered else self._lost_at
        self._close_connection()
        self.connection = None
        self._show(self.state.mark_reconnecting(why))
        # The server may be gone for good: the next attempt goes to the next one, if any.
        self._next_server()

    def _next_server(self) -> None:
        self._server_index = (self._server_index + 1) % len(self.servers)

    async def _reconnect(self) -> None:
        """Register again on fresh connections until WELCOME, one server after the other,
        backing off each round; ends the session if the nick is refused."""
        attempt = 0
        while self.state.ending is None:
            attempt += 1
            # The backoff grows by rounds, so that the other servers are all tried promptly.
            round_ = reconnect_round(attempt, len(self.servers))
            last_of_round = reconnect_round(attempt + 1, len(self.servers)) > round_
            self.state.reconnect_attempt = attempt
            self.show([])  # redraw the status line
            try:
                self._open()
            except ValueError as exc:  # pragma: no cover - the endpoint worked before
                self._show(self.state.mark_lost(str(exc), 1))
                return
            log.info("reconnecting to %s (attempt %d)", self.server, attempt)
            wait = self.liveness_s + backoff_s(round_)
            answer = await self._hello(wait)
            if isinstance(answer, Welcome):
                self._welcomed(answer, self._now())
                return
            if isinstance(answer, Error):
                if self._ended_by(answer):
                    return
                # Refused for now (too many joins, say): wait before the next round.
                log.info("registration refused (%d): %s", answer.code, answer.reason)
                self._close_connection()
                if last_of_round:
                    await asyncio.sleep(max(backoff_s(round_ + 1), RECONNECT_BACKOFF_INITIAL_S))
            self._next_server()

    def _ended_by(self, answer: Error) -> bool:
        """End the session if `answer` to our HELLO refuses it for good (the nick, or a
        kick or bar); True if it did."""
        if answer.code in NICK_REFUSED:
            self._refused(answer)
            return True
        if answer.code == BARRED:
            self._barred(answer)
            return True
        return False

    def _refused(self, error: Error) -> None:
        self._close_connection()
        reason = f"nick {self.state.nick} is no longer yours ({error.code}): {error.reason}"
        self._show(self.state.mark_lost(reason, 2))

    def _barred(self, error: Error) -> None:
        """A HELLO refused because we were kicked (while away, say) or the nick is barred:
        the session is over; it does not try again."""
        self._close_connection()
        self._show(self.state.mark_lost(f"not allowed back ({error.code}): {error.reason}", 1))

    async def _register_again(self, now: float) -> None:
        """ERROR 401 while registered: the broker forgot us. HELLO on the same socket."""
        if not self.registered:
            return  # a HELLO is on its way already
        self._lost_at = self._last_heard
        self.registered = False
        self._forget_requests()
        self._hello_deadline = now + self.liveness_s
        self._show(self.state.mark_reconnecting("the server no longer knows this session"))
        # If it cannot be sent, no WELCOME comes and the deadline opens a fresh connection.
        await self._send_now(self._hello_command())

    def _welcomed(self, welcome: Welcome, now: float) -> None:
        first = self.stream.epoch is None
        restarted = self.stream.on_welcome(welcome.epoch, welcome.seq)
        self.registered = True
        self._stream_unconfirmed = False
        self._hello_deadline = None
        self._last_heard = now
        self.outbox.set_heartbeat(welcome.heartbeat_ms)
        entries = self.state.welcome(welcome, restarted)
        if self.older_before is None or restarted:
            # The history stops where this run's live broadcasts begin.
            self.older_before = welcome.seq + 1
        if not self._backlog_shown and not self.requests.awaiting(Purpose.BACKLOG):
            self._queue(
                self.requests.history(Purpose.BACKLOG, "", self.older_before, self.history_lines)
            )
        again = self.outbox.on_registered(now, restarted, self._lost_at)
        entries += [self.state.delivery(message) for message in again]
        self._show(entries)
        self._subscribe(welcome, restarted, now)
        away = self.state.away_of(self.state.nick)
        if restarted and away:
            # The broker forgot we were away: say it again, before asking who is.
            self._queue(Away(away))
        # Who is present: not in WELCOME. Shown the first time only; after a reconnect the
        # list is just brought up to date.
        if not first:
            self._quiet_user_lists += 1
        self._queue(ListUsers())
        for room in self.rooms.names():
            # Still in it if the session resumed; entered again if the broker restarted.
            self._queue(Enter(room))
        self._made_progress(now)
        self._ask_for_gaps(now)
        self._wake.set()

    # -- the broadcast stream ------------------------------------------------------------

    def _subscribe(self, welcome: Welcome, restarted: bool, now: float) -> None:
        """Read the stream WELCOME names, on a fresh SUB unless the current one still
        serves: the same run of the broker, on the same port."""
        connection = self.connection
        if not self.streaming or connection is None:
            return
        if not restarted and connection.stream_port == welcome.stream_port:
            return
        self._open_stream(connection, welcome.stream_port, now)

    def _open_stream(self, connection: Connection, port: int, now: float) -> None:
        """Subscribe on a fresh SUB to the stream on `port`; watch it until it is ready."""
        try:
            connection.subscribe(port, self.state.heartbeat_ms)
        except ValueError as exc:
            self._stream_unreachable(str(exc))
            return
        # A fresh SUB follows #general only: each room is followed again when its ROOM
        # answer says it exists (the session enters its rooms after each WELCOME).
        self._followed.clear()
        self._subscribed_at = now
        self._stream_ready = False

    def _stream_deadline(self) -> float:
        """When the stream must have said it is ready, or said something again (a TICK
        comes every heartbeat interval); infinite: no need to watch it."""
        if self._subscribed_at is None or not self.registered:
            return float("inf")
        if self._stream_ready:
            return self._last_from_stream + self.liveness_s
        return self._subscribed_at + self.liveness_s

    def _check_stream(self, now: float) -> None:
        if now < self._stream_deadline():
            return
        connection = self.connection
        if self._stream_ready and connection is not None and connection.stream_port:
            # It was working and went silent: subscribe afresh (the new subscription's
            # STREAM_READY brings a FETCH of what was missed), and give up on it if that
            # does not answer either.
            log.warning("broadcast stream silent for %.1f s: subscribing again", self.liveness_s)
            self._open_stream(connection, connection.stream_port, now)
            return
        self._stream_unreachable(f"no answer from it for {self.liveness_s:.1f} s")

    def _stream_unreachable(self, why: str) -> None:
        """Do without the stream from now on: the broker sends broadcasts over the DEALER
        once it has our HELLO saying so (it answers WELCOME)."""
        log.warning("broadcast stream unreachable (%s): using the main connection", why)
        self.streaming = False
        self._subscribed_at = None
        if self.connection is not None:
            self.connection.unsubscribe()
        self._show([self.state.info(f"broadcast stream unreachable ({why}); doing without")])
        if self.registered:
            # The broker learns it from a HELLO on a fresh connection: one that is refused
            # for now is retried there, as after any lost link, and the session resumes.
            self._lost_at = self._last_heard
            self._close_connection()
            self.connection = None

    def _from_stream(self, item: StreamItem, now: float) -> None:
        self._last_from_stream = now
        match item:
            case StreamReady():
                self._stream_ready = True
                if self.registered:
                    # What was published between WELCOME and now did not reach us.
                    self._queue(Fetch(self.stream.resync(now)))
                    for room, from_seq in self.rooms.resync(now):
                        self._queue(FetchRoom(room, from_seq))
                    self._stream_unconfirmed = True
            case ProtocolError():
                self._show([self.state.error(f"ignored a bad message from the server: {item}")])
            case _ if not self.registered:
                # Whose numbers these are is known once WELCOME comes (the broker may have
                # restarted); what they say is fetched then.
                pass
            case Tick(seq=seq):
                self.stream.on_tick(seq)
            case RoomTick(room=room, seq=seq):
                if (fetch_from := self.rooms.on_tick(room, seq, now)) is not None:
                    self._queue(FetchRoom(room, fetch_from))
            case Entered() | Parted() | Posted() | TopicSet():
                # (Ordered per room, under the epoch of the room's last ROOM.)
                self._room_event(item, now)
            case _ if self._stream_unconfirmed:
                # Not applied (it may belong to a broker run we have not been welcomed
                # by), only noted: once the connection answers, the FETCH brings it.
                self.stream.on_tick(item.seq)
            case _:
                self._broadcast(item, now, on_connection=False)

    # -- incoming events ---------------------------------------------------------------

    async def _dispatch(self, event: BrokerEvent | ProtocolError, now: float) -> None:
        match event:
            case ProtocolError():
                self._show([self.state.error(f"ignored a bad message from the server: {event}")])
            case Welcome():
                if not self.registered or event.epoch != self.stream.epoch:
                    self._welcomed(event, now)
                else:
                    # The answer to a HELLO sent while registered (giving the stream up):
                    # broadcasts since its number come over the DEALER; earlier ones missed
                    # are fetched.
                    self.stream.on_welcome(event.epoch, event.seq)
            case Joined() | Left() | Message() | Notice() | AwayChanged() | Renamed():
                self._broadcast(event, now)
            case Tick(seq=seq):
                self.stream.on_tick(seq)
            case Challenge():
                # The answer to a HELLO on this connection (after a 401): our nick is owned.
                refusal = await self._prove(event)
                if refusal is not None:
                    self._ended_by(refusal)
            case PrivateMessage():
                await self._private(event, now)
            case Ack(msg_ids=msg_ids):
                for msg_id in msg_ids:
                    self._settled(self.outbox.on_ack(msg_id, now), now)
            case Delivered(msg_id=msg_id):
                self._settled(self.outbox.on_delivered(msg_id, now), now)
            case Stored(msg_id=msg_id):
                self._settled(self.outbox.on_stored(msg_id, now), now)
            case Error():
                await self._error(event, now)
            case Pong():
                self._pong()
            case UserList():
                self._user_list_page(event)
            case NickList():
                self._nick_list_page(event)
            case Registered():
                self._show(self.state.apply(event))
                # Our nick joined or left the owned ones.
                self._queue(ListNicks())
            case Entered() | Parted() | Posted() | TopicSet() | ModeSet():
                self._room_event(event, now)
            case Invited():
                self._show(self.state.invited(event))
            case RoomState():
                self._room_state(event, now)
            case RoomList(after=after, more=more):
                self._room_list_end(after, more)
            case MemberList():
                self._member_list(event)
            case LogEntry():
                self.requests.add(event)
            case Page():
                if (request := self.requests.finish(event)) is not None:
                    self._history_page(request, event)
            case _:
                self._show(self.state.apply(event))

    # -- rooms -------------------------------------------------------------------------

    def _room_event(self, event: RoomEvent, now: float) -> None:
        released, fetch_from = self.rooms.accept(event, now)
        entries: list[Entry] = []
        for applied in released:
            if isinstance(applied, Posted) and self.state.is_self(applied.sender):
                # Our own post came back: the broker has it, whatever became of the ACK.
                self._settled(self.outbox.on_ack(applied.msg_id, now), now)
            entries += self.state.room_event(applied)
            if isinstance(applied, ModeSet):
                self._follow(applied.room, invite_only=applied.mode == "+i")
            if isinstance(applied, Parted) and self.state.is_self(applied.nick):
                self.rooms.left(applied.room)
                self._rooms_changed()
                self._follow(applied.room, invite_only=True)  # i.e. no longer on the stream
                if self.state.is_target(applied.room):
                    entries += self.state.set_target(None)
        self._show(entries)
        if fetch_from is not None:
            self._queue(FetchRoom(event.room, fetch_from))

    def _room_state(self, state: RoomState, now: float) -> None:
        key = room_key(state.room)
        self.state.rooms_known[key] = state.room
        joining = key in self._joining or key in self._rejoining
        if self._rooms_listed is not None and not joining:
            self._rooms_listed += 1
            self._show(self.state.room_state(state, entered=False))
        if not joining and state.room not in self.rooms:
            return  # a line of a listing, of a room we are not in
        known = self.rooms.get(state.room)
        if known is None or known.stream.epoch != state.epoch:
            # Who is in it, for the side panel and completion (not shown: /who shows it).
            self._members_wanted.add(key)
            self._queue(ListMembers(state.room))
        fetch_from = self.rooms.on_state(state, now)
        self._follow(state.room, state.invite_only)
        if key in self._joining:
            self._joining.discard(key)
            self._show(
                self.state.room_state(state, entered=True) + self.state.set_target(state.room)
            )
            if self.history_lines:
                # What was said there before, as on joining the chat.
                self._queue(self.requests.history(Purpose.ROOM, state.room, 0, self.history_lines))
            self._rooms_changed()
        elif key in self._rejoining:
            self._rejoining.discard(key)
            self._show(self.state.room_state(state, entered=True))
        if fetch_from is not None:
            self._queue(FetchRoom(state.room, fetch_from))

    def _follow(self, room: str, invite_only: bool) -> None:
        """Read `room`'s topic on the stream, unless it is invite-only (then not)."""
        connection = self.connection
        if not self.streaming or connection is None:
            return
        if invite_only and room in self._followed:
            self._followed.discard(room)
            connection.unfollow(room)
        elif not invite_only and room not in self._followed:
            self._followed.add(room)
            connection.follow(room)

    def _room_list_end(self, after: str, more: bool) -> None:
        if self._rooms_listed is None:
            return  # the first page only, asked for completion
        if more:
            self._queue(ListRooms(after))
            return
        if self._rooms_listed == 0:
            self._show([self.state.info("no rooms yet: /join #NAME makes one")])
        self._rooms_listed = None

    def _member_list(self, page: MemberList) -> None:
        key = room_key(page.room)
        if key in self._members_wanted:
            self.state.set_members(page.room, page.nicks, first_page=not page.after)
            if not page.more or not page.nicks:
                self._members_wanted.discard(key)
            self._show([])  # (the side panel)
        else:
            self._show([self.state.info(f"{page.room}: {' '.join(page.nicks) or 'nobody'}")])
        if page.more and page.nicks:
            self._queue(ListMembers(page.room, page.nicks[-1]))

    def request_rooms(self) -> None:
        """The user started typing a room name: refresh the rooms Tab completes (one page,
        not shown; at most every ROOM_LIST_REFRESH_S)."""
        now = self._now()
        if not self.registered or now - self._rooms_asked_at < ROOM_LIST_REFRESH_S:
            return
        self._rooms_asked_at = now
        self._queue(ListRooms())

    def rejoin(self, rooms: list[str]) -> None:
        """Enter `rooms` (those the last run was in), without sending lines there."""
        for room in rooms:
            self._rejoining.add(room_key(room))
            self._queue(Enter(room))

    def _rooms_changed(self) -> None:
        if self.on_rooms_changed is not None:
            self.on_rooms_changed(self.rooms.names())

    def _join(self, room: str) -> None:
        self._joining.add(room_key(room))
        self._queue(Enter(room))

    def _show_topic(self, name: str) -> None:
        room = self.rooms.get(name)
        if room is None:
            self._show([self.state.info(f"you are not in {name}: /join {name}")])
        elif room.topic:
            self._show([self.state.info(f"the topic of {room.name}: {room.topic}")])
        else:
            self._show([self.state.info(f"{room.name} has no topic")])

    # -- stored history ----------------------------------------------------------------

    def _history_page(self, request: Request, page: Page) -> None:
        """Show the answer to a HISTORY or SEARCH, where its purpose says."""
        state, logs = self.state, request.logs
        match request.purpose, request.command:
            case Purpose.BACKLOG, _:
                self._backlog_shown = True
                self.older_before = page.next_before
                seen = self.last_seen(state.epoch) if self.last_seen is not None else None
                self._show_older(state.backlog(logs, seen, more=page.next_before > 0))
                self._history_on_top = bool(logs)
            case Purpose.OLDER, _:
                self.older_before = page.next_before
                entries = state.history(logs)
                self._history_on_top = self._history_on_top or bool(logs)
                if not page.next_before and self._history_on_top:
                    entries.insert(0, state.marker("the history begins here"))
                self._show_older(entries)
            case Purpose.SHOW, History(target=target) if target and not logs:
                pass  # /query NICK with nobody new to talk to: nothing to show
            case Purpose.SHOW, History(target=target):
                with_whom = f" with {target}" if target else ""
                noun = "message" if len(logs) == 1 else "messages"
                header = state.info(f"history: the last {len(logs)} {noun}{with_whom}")
                self._show([header, *state.history(logs), state.marker("end of history")])
            case Purpose.ROOM, History(target=room):
                self._room_older[room_key(room)] = page.next_before
                if logs:
                    self._show([*state.history(logs), state.marker("now")])
            case Purpose.OLDER_ROOM, History(target=room):
                self._room_older[room_key(room)] = page.next_before
                entries = state.history(logs)
                if logs and not page.next_before:
                    entries.insert(0, state.marker("the history begins here"))
                self._show_older(entries)
            case Purpose.SEARCH, Search(words=words):
                noun = "hit" if len(logs) == 1 else "hits"
                header = state.info(f"search {words!r}: {len(logs)} {noun}")
                self._show([header, *state.history(logs, dated=True)])

    def _show_older(self, entries: list[Entry]) -> None:
        """Show `entries` above everything shown so far (or like anything else)."""
        if self.show_above is None:
            self._show(entries)
        elif entries:
            self.show_above(entries)

    def request_older(self) -> None:
        """The user scrolled up past the top: fetch the page of history before it, unless
        one is on its way or there is none."""
        if (
            not self.registered
            or not self.older_before
            or self.requests.awaiting(Purpose.BACKLOG, Purpose.OLDER)
        ):
            return
        self._queue(self.requests.history(Purpose.OLDER, "", self.older_before, OLDER_PAGE_LINES))

    def request_older_room(self, room: str) -> None:
        """The user scrolled up past the top of `room`'s buffer: fetch the page of its
        posts before what it shows, unless one is on its way or there is none."""
        before = self._room_older.get(room_key(room), 0)
        if not self.registered or not before or self.requests.awaiting(Purpose.OLDER_ROOM):
            return
        self._queue(self.requests.history(Purpose.OLDER_ROOM, room, before, OLDER_PAGE_LINES))

    def _history_refused(self, error: Error) -> None:
        request = self.requests.fail(error.ref)
        if request is not None and request.purpose is Purpose.BACKLOG:
            self._backlog_shown = True  # not asked for again
        self._show([self.state.error(f"history not shown: {error.reason}", error.code)])

    def _user_list_page(self, page: UserList) -> None:
        if not page.after:  # an answer starts
            quiet = self._quiet_user_lists > 0
            if quiet:
                self._quiet_user_lists -= 1
            # An answer that replaces one in progress is shown if either was to be.
            shown_before = self._user_pages.in_progress and self._announce_users
            self._announce_users = shown_before or not quiet
        pages, cursor = self._user_pages.add(page)
        if cursor is not None:
            # A long list comes in pages: ask for the next one.
            self._queue(ListUsers(cursor))
        if pages is not None:
            self._show(self.state.user_list(*pages, announce=self._announce_users))
            # Then whose nicks are owned: those not present are shown as away.
            self._announce_away = self._announce_away or self._announce_users
            if not self._nick_pages.in_progress:
                self._queue(ListNicks())

    def _nick_list_page(self, page: NickList) -> None:
        pages, cursor = self._nick_pages.add(page)
        if cursor is not None:
            self._queue(ListNicks(cursor))
        if pages is not None:
            entries = self.state.owned_list(*pages, announce=self._announce_away)
            self._announce_away = False
            if entries:
                self._show(entries)
            else:
                self.show([])  # redraw the user list

    def _broadcast(self, event: BroadcastEvent, now: float, on_connection: bool = True) -> None:
        accepted = self.stream.accept(event, on_connection)
        entries: list[Entry] = []
        if accepted.lost:
            noun = "broadcast was" if accepted.lost == 1 else "broadcasts were"
            entries.append(self.state.info(f"{accepted.lost} {noun} lost"))
            # Presence may have changed in what was lost: ask for the list as it is now.
            self._queue(ListUsers())
        for applied in accepted.events:
            if isinstance(applied, Message) and self.state.is_self(applied.sender):
                # Our own message came back: the broker has it, whatever became of the ACK.
                self._settled(self.outbox.on_ack(applied.msg_id, now), now)
            entries += self.state.apply(applied)
        self._show(entries)

    async def _private(self, event: PrivateMessage, now: float) -> None:
        if self.state.was_self(event.recipient):
            # Confirm every copy, repeats included: the broker resends until we do.
            await self._send_now(Received(event.msg_id, event.sender))
        if not self.stream.first_time(event.sender, event.msg_id):
            return
        if self.state.is_self(event.sender):
            # The broker does not echo TELLs (its ACK says it has them), but a copy to
            # ourselves comes back like any other.
            self._settled(self.outbox.on_ack(event.msg_id, now), now)
        self._show(self.state.apply(event))

    async def _error(self, error: Error, now: float) -> None:
        if error.ref and error.ref in self.requests:
            self._history_refused(error)
            if error.code == ErrorCode.RATE_LIMITED:
                self.outbox.pacer.drain(now)
                self.reply_pacer.drain(now)
            return
        if error.ref and error.ref in self.outbox:
            self._settled(self.outbox.on_error(error.ref, error.code, error.reason, now), now)
            if error.code in (ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE):
                self._wake.set()  # the pump works out when to retry
        match error.code:
            case ErrorCode.NOT_REGISTERED:
                await self._register_again(now)
            case ErrorCode.HISTORY_GONE:
                self.stream.history_gone()
            case code if (code in NICK_REFUSED or code == BARRED) and not self.registered:
                # The answer to our HELLO (nothing else is sent unregistered).
                self._ended_by(error)
            case ErrorCode.RATE_LIMITED:
                self.outbox.pacer.drain(now)
                if not error.ref:
                    self._show(self.state.apply(error))
                    self.reply_pacer.drain(now)
                    if (cursor := self._user_pages.cursor) is not None:
                        # Maybe the next page of the user list was refused: ask again (a
                        # page that comes twice is taken once).
                        self._queue(ListUsers(cursor))
            case _:
                # An error about one of our messages was shown with that message.
                if not (error.ref and self.outbox.owns(error.ref)):
                    self._show(self.state.apply(error))

    def _settled(self, message: OutgoingMessage | None, now: float) -> None:
        """Show a delivery state change (if any) and note the progress."""
        if message is None:
            return
        self._show([self.state.delivery(message)])
        self._made_progress(now)

    def _made_progress(self, now: float) -> None:
        self._progress_at = now
        self._progress.set()

    def _ask_for_gaps(self, now: float) -> None:
        if not self.registered or any(isinstance(c, Fetch) for c in self._controls):
            return  # a FETCH still waiting for its turn asks for the same gap
        from_seq = self.stream.fetch_due(now)
        if from_seq is not None:
            self._queue(Fetch(from_seq))

    # -- outgoing ----------------------------------------------------------------------

    async def _send_now(self, command: ClientCommand) -> bool:
        """Send `command` on the current connection at once (no pacing)."""
        if self.connection is None:
            return False
        sent = await self.connection.send(command)
        if sent and isinstance(command, Ping):
            # Counted only when sent: PONGs are matched to PINGs by number.
            self._pings_sent += 1
        return sent

    def _queue(self, command: ClientCommand) -> None:
        """Send a command the broker's flood control counts, paced with the outbox."""
        self._controls.append(command)
        self._wake.set()

    async def _pump(self) -> None:
        """Send queued commands and due messages while registered, paced."""
        while True:
            self._wake.clear()
            timeout: float | None = None
            if self.registered and self.connection is not None:
                timeout = await self._pump_once(self._now())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _pump_once(self, now: float) -> float | None:
        """Send what is due; return how long until something may be due (None: never)."""
        while self._controls:
            command = self._controls[0]
            if (wait := self._wait_to_send(command, now)) > 0:
                return wait
            self._controls.popleft()
            await self._send_now(command)
            if isinstance(command, Fetch):
                # The broker answers one client's commands in order: this PING's PONG
                # comes once the whole answer to the FETCH has.
                await self._send_now(Ping())
                self._fetch_pong = self._pings_sent
        while self._typed:
            after, command = self._typed[0]
            await self._send_messages(now, after)
            if not self.outbox.all_sent(after):
                return self.outbox.next_wakeup(now)
            if (wait := self._wait_to_send(command, now)) > 0:
                return wait
            self._typed.popleft()
            await self._send_now(command)
            self._made_progress(now)
        await self._send_messages(now, None)
        return self.outbox.next_wakeup(now)

    def _wait_to_send(self, command: ClientCommand, now: float) -> float:
        """0 if metered `command` may go now (its tokens are taken), else seconds to wait."""
        pacer = self.outbox.pacer
        replies = isinstance(command, _REPLY_METERED)
        cost = _reply_cost(command)
        if replies and (wait := self.reply_pacer.wait(now, cost)) > 0:
            return wait
        # FETCH is metered by the bytes of its answers only (it does not slow chat down).
        if not isinstance(command, Fetch | FetchRoom) and not pacer.take(now):
            return pacer.wait(now)
        if replies:
            self.reply_pacer.take(now, cost)
        return 0.0

    async def _send_messages(self, now: float, up_to: int | None) -> None:
        for message in self.outbox.due(now, up_to):
            if not self.registered or not await self._send_now(message.command):
                self.outbox.unsent(message)

    async def _heartbeat(self) -> None:
        """PING every heartbeat interval while registered."""
        while True:
            await asyncio.sleep(self.state.heartbeat_ms / 1000)
            if self.registered:
                await self._send_now(Ping())

    # -- typed lines -------------------------------------------------------------------

    async def handle_line(self, line: str) -> Leave | None:
        """Carry out `line` as typed; return the Leave action if it asks to leave (the
        caller decides how to end), else None."""
        action = parse_line(line, self.state.target)
        match action:
            case Post(text=text, recipient=recipient):
                self.post(text, recipient)
            case Send(command=ListRooms()):
                self._rooms_listed = 0
                await self.handle_command(action.command)
            case Send(command=command):
                await self.handle_command(command)
            case JoinRoom(room=room):
                self._join(room)
            case ShowTopic(room=room):
                self._show_topic(room)
            case SetTarget(nick=nick) if nick is not None and nick.startswith("#"):
                if nick in self.rooms:
                    self.show(self.state.set_target(nick))
                else:
                    self.show([self.state.info(f"you are not in {nick}: /join {nick}")])
            case SetTarget(nick=nick):
                self.show(self.state.set_target(nick))
                if nick is not None and self.registered and self.state.ending is None:
                    # The conversation so far (the nick need not be here).
                    await self.handle_command(
                        self.requests.history(Purpose.SHOW, nick, 0, QUERY_HISTORY_LINES)
                    )
            case ShowHistory(limit=limit):
                # In a room, the room's history; elsewhere #general's.
                here = self.state.target
                room = here if here is not None and here in self.rooms else ""
                await self.handle_command(self.requests.history(Purpose.SHOW, room, 0, limit))
            case SearchHistory(words=words):
                await self.handle_command(self.requests.search(words))
            case ShowHelp():
                self.show([self.state.info(text) for text in help_lines()])
            case RegisterNick():
                if self.identity is None:
                    self.show([self.state.error("not registered: this client has no identity")])
                else:
                    await self.handle_command(self.identity.register(self.state.nick, self.token))
            case Hint(text=text):
                self.show([self.state.info(text)])
            case View(name=name):
                if self.on_view is None:
                    self.show([self.state.info(f"/{name} works in the full-screen client only")])
                    return None
                here = self.state.target
                if name == "close" and here is not None and here in self.rooms:
                    # Closing a room's buffer leaves the room, as in weechat.
                    await self.handle_command(Part(here, ""))
                self.on_view(action)
            case Leave():
                return action
            case Nothing():
                pass
        return None

    async def handle_command(self, command: ClientCommand) -> None:
        """Send `command` as typed: paced, after the messages typed before it, if the broker
        meters it."""
        if not self.registered or self.state.ending is not None:
            if isinstance(command, History | Search):
                self.requests.fail(command.ref)
            self.show([self.state.error(f"not sent: {self.state.link.value}")])
        elif isinstance(command, _METERED):
            self._typed.append((self.outbox.last_number, command))
            self._wake.set()
        else:
            await self._send_now(command)

    def post(self, text: str, recipient: str | None = None) -> OutgoingMessage | None:
        """Put chat text in the outbox (shown at once as pending, sent when possible)."""
        if self.state.ending is not None:
            self.show([self.state.error(f"not sent: {self.state.link.value}")])
            return None
        message = self.outbox.add(text, recipient)
        self.show([self.state.outgoing(message)])
        self._wake.set()
        return message

    @property
    def undelivered(self) -> int:
        """Messages the broker has not acknowledged yet."""
        return len(self.outbox.unacknowledged)

    async def drain(self, stall_s: float) -> bool:
        """Wait until every message is acknowledged, the broker has handled everything
        sent before (PING, then its PONG: the broker handles one client's commands in
        order) and every broadcast made meanwhile has been applied. False if the session
        ended, or nothing moved forward (no acknowledgement, no registration) for `stall_s`
        seconds, the broker being unreachable meanwhile."""
        self._progress_at = max(self._progress_at, self._now())
        while self.state.ending is None:
            remaining = self._progress_at + stall_s - self._now()
            if remaining <= 0:
                return False
            if self.registered and not self.outbox.unacknowledged and not self._typed:
                if self.streaming:
                    # The stream may still be bringing broadcasts (our own MESSAGEs among
                    # them) after the broker has answered on the connection: ask for them
                    # there too, ahead of the PING, so they are in before its PONG.
                    await asyncio.sleep(self.reply_pacer.wait(self._now()))
                    self.reply_pacer.take(self._now())
                    await self._send_now(Fetch(self.stream.resync(self._now())))
                if await self._barrier(min(remaining, self.liveness_s)):
                    return True
                continue
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)
        return False

    async def flush(self) -> bool:
        """Wait for the PONG to a PING sent now (see `drain`). False if none came within
        one liveness bound or the link changed meanwhile."""
        return await self._barrier(self.liveness_s)

    async def _barrier(self, timeout_s: float) -> bool:
        if self.state.ending is not None or not await self._send_now(Ping()):
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pong_waiters.append((self._pings_sent, waiter))
        try:
            await asyncio.wait_for(waiter, timeout_s)
        except (TimeoutError, ConnectionError):
            return False
        return True

    async def quit(self, reason: str) -> bool:
        """Send QUIT if registered (`run` need not have started); True if it was sent."""
        if not self.registered and self._first_welcome is None:
            return False
        self.state.quitting = True
        return await self._send_now(Quit(reason))

    def close(self, linger_ms: int = 0) -> None:
        """Close the connection, giving queued commands up to `linger_ms` to leave."""
        if self.connection is not None:
            self.connection.close(linger_ms)
        self.registered = False

    # -- PONG bookkeeping --------------------------------------------------------------

    def _pong(self) -> None:
        self._pongs_received += 1
        if self._fetch_pong and self._pongs_received >= self._fetch_pong:
            self._fetch_pong = 0
            # The same broker run answered on our connection: the stream is its own.
            self._stream_unconfirmed = False
            self.stream.fetch_answered()
        waiting = []
        for number, waiter in self._pong_waiters:
            if number <= self._pongs_received:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((number, waiter))
        self._pong_waiters = waiting

    def _fail_waiters(self) -> None:
        for _, waiter in self._pong_waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionError("connection closed"))
        self._pong_waiters = []
