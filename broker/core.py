"""The broker's routing core: sans-IO, no sockets.

The core takes what one client sent (its ROUTER identity and the message frames) and returns
the events to send, as a list of (identity, event) pairs; the socket loop in
`broker.server` does the sending. Everything the broker knows about its users lives here,
so every rule (registration, routing, presence, operators, expiry) can be tested without a
socket.
"""

import hmac
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from messages import (
    HEARTBEAT_INTERVAL_MS,
    HEARTBEAT_LIVENESS,
    MAX_REASON_BYTES,
    MAX_TEXT_BYTES,
    ErrorCode,
    ProtocolError,
    command_verbs,
    decode_command,
    nick_key,
    nick_skeleton,
    normalize_nick,
    truncate_utf8,
)
from messages import commands as cmd
from messages import events as ev

from .ratelimit import FloodPolicy, TokenBucket

log = logging.getLogger(__name__)

Identity = bytes
Outgoing = tuple[Identity, ev.BrokerEvent]

#: Who a kick or notice comes from when the broker's own terminal issues it.
CONSOLE_OPERATOR: Final = "operator"
#: Who kicks a client for flooding.
FLOOD_CONTROL: Final = "flood-control"
#: Commands a client may send before HELLO succeeds.
_ALLOWED_UNREGISTERED: Final = (cmd.Hello, cmd.Ping, cmd.Quit)
#: Commands that draw on a client's flood-control bucket.
_METERED: Final = (cmd.Say, cmd.Tell, cmd.ListUsers, cmd.Wall, cmd.Kick)


@dataclass
class Session:
    """One registered client."""

    identity: Identity
    nick: str
    last_heard: float
    #: Flood control: chat commands, refusals, failed operator logins.
    messages: TokenBucket
    strikes: TokenBucket
    admin_tries: TokenBucket
    operator: bool = False


class ChatCore:
    """Nick registry and router: `receive` in, (identity, event) pairs out.

    `now` arguments are monotonic seconds (for liveness); message times are stamped from
    `wall_clock`.
    """

    def __init__(
        self,
        admin_token: str,
        heartbeat_ms: int = HEARTBEAT_INTERVAL_MS,
        flood: FloodPolicy | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not admin_token:
            raise ValueError("the operator token must not be empty")
        self.admin_token = admin_token
        self.heartbeat_ms = heartbeat_ms
        self.flood = flood or FloodPolicy()
        self._wall_clock = wall_clock
        self._joins_by_peer: dict[str, TokenBucket] = {}
        self._by_identity: dict[Identity, Session] = {}
        self._by_key: dict[str, Session] = {}
        # What each present nick looks like: no one may take a look-alike.
        self._by_skeleton: dict[str, Session] = {}
        self.stopped = False

    # -- what the broker knows -------------------------------------------------------

    @property
    def expiry_seconds(self) -> float:
        """A client silent for this long is removed."""
        return HEARTBEAT_LIVENESS * self.heartbeat_ms / 1000

    def users(self) -> tuple[str, ...]:
        """Every registered nick, sorted case-insensitively."""
        return tuple(sorted((s.nick for s in self._by_key.values()), key=nick_key))

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
        self, identity: Identity, frames: Sequence[bytes], now: float, peer: str = ""
    ) -> list[Outgoing]:
        """Handle one multipart message from `identity` (the ROUTER identity frame removed).

        `peer` is the sender's network address, when known (joins are limited per address).
        """
        session = self._by_identity.get(identity)
        if session is not None:
            # Any traffic counts as a heartbeat.
            session.last_heard = now
        try:
            command = decode_command(frames)
        except ProtocolError as exc:
            log.info("bad message from %s: %s", self._who(identity), exc)
            return [(identity, ev.Error(exc.code, exc.reason))]
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
                if not isinstance(command, _ALLOWED_UNREGISTERED):
                    raise ProtocolError(
                        ErrorCode.NOT_REGISTERED, "register first: send HELLO with your nick"
                    )
                return self._unregistered(identity, command, now, peer)
            return self._registered(session, command, now)
        except ProtocolError as exc:
            return [(identity, ev.Error(exc.code, exc.reason))]

    def _unregistered(
        self, identity: Identity, command: cmd.ClientCommand, now: float, peer: str
    ) -> list[Outgoing]:
        match command:
            case cmd.Hello(nick):
                self._limit_joins(peer, now)
                return self._register(identity, nick, now)
            case cmd.Ping():
                return [(identity, ev.Pong())]
            case _:  # QUIT before registering: nothing to undo.
                return []

    def _registered(
        self, session: Session, command: cmd.ClientCommand, now: float
    ) -> list[Outgoing]:
        me = session.identity
        if isinstance(command, _METERED) and not session.messages.take(now):
            return self._refuse_flood(session, now)
        match command:
            case cmd.Hello():
                raise ProtocolError(
                    ErrorCode.ALREADY_REGISTERED, f"already registered as {session.nick}"
                )
            case cmd.Say(text):
                message = ev.Message(session.nick, text, self._now_ms())
                return self._to_all(message)
            case cmd.Tell(recipient, text):
                target = self._require(recipient)
                private = ev.PrivateMessage(session.nick, target.nick, text, self._now_ms())
                if target is session:
                    return [(me, private)]
                return [(target.identity, private), (me, private)]
            case cmd.ListUsers():
                return [(me, ev.UserList(self.users()))]
            case cmd.Ping():
                return [(me, ev.Pong())]
            case cmd.Quit(reason):
                return self.remove(me, reason or "quit")
            case cmd.Admin(token):
                wait = session.admin_tries.wait(now)
                if wait > 0:
                    log.warning("operator login by %s refused: too many failures", session.nick)
                    raise ProtocolError(
                        ErrorCode.RATE_LIMITED,
                        f"too many failed operator logins: try again in {math.ceil(wait)} s",
                    )
                if not hmac.compare_digest(token.encode(), self.admin_token.encode()):
                    session.admin_tries.take(now)
                    log.warning("failed operator login by %s", session.nick)
                    raise ProtocolError(ErrorCode.FORBIDDEN, "wrong operator token")
                session.operator = True
                log.info("%s is now an operator", session.nick)
                return [(me, ev.Operator())]
            case cmd.Kick(nick, reason):
                self._require_operator(session)
                return self.kick(nick, session.nick, reason)
            case cmd.Wall(text):
                self._require_operator(session)
                return self.wall(text, session.nick)
            case cmd.Shutdown(reason):
                self._require_operator(session)
                return self.shutdown(reason or f"shutdown by {session.nick}")
        raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover

    # -- registration and presence -------------------------------------------------

    def _register(self, identity: Identity, nick: str, now: float) -> list[Outgoing]:
        nick = normalize_nick(nick)
        holder = self.find(nick)
        if holder is not None:
            raise ProtocolError(ErrorCode.NICK_TAKEN, f"nick {holder.nick} is taken")
        skeleton = nick_skeleton(nick)
        lookalike = self._by_skeleton.get(skeleton)
        if lookalike is not None:
            raise ProtocolError(
                ErrorCode.NICK_TAKEN, f"nick {nick} looks like {lookalike.nick}, who is here"
            )
        flood = self.flood
        session = Session(
            identity,
            nick,
            now,
            messages=flood.message_bucket(),
            strikes=flood.strike_bucket(),
            admin_tries=flood.admin_bucket(),
        )
        self._by_identity[identity] = session
        self._by_key[nick_key(nick)] = session
        self._by_skeleton[skeleton] = session
        log.info("%s joined (%d users)", nick, len(self._by_key))
        welcome = ev.Welcome(nick, self.heartbeat_ms, command_verbs(), self.users())
        return [(identity, welcome), *self._to_all(ev.Joined(nick), skip=identity)]

    def remove(self, identity: Identity, reason: str) -> list[Outgoing]:
        """Forget the session of `identity` and tell everyone else it left.

        Used for QUIT, for expiry, and by the socket loop when `identity` is unreachable.
        """
        session = self._by_identity.pop(identity, None)
        if session is None:
            return []
        del self._by_key[nick_key(session.nick)]
        del self._by_skeleton[nick_skeleton(session.nick)]
        log.info("%s left: %s (%d users)", session.nick, reason, len(self._by_key))
        return self._to_all(ev.Left(session.nick, truncate_utf8(reason, MAX_REASON_BYTES)))

    def expire(self, now: float) -> list[Outgoing]:
        """Remove every client silent for longer than `expiry_seconds`."""
        deadline = now - self.expiry_seconds
        silent = [s.identity for s in self._by_identity.values() if s.last_heard < deadline]
        reason = f"no heartbeat for {self.expiry_seconds:g} s"
        # Join buckets that have refilled hold nothing worth remembering.
        for peer in [p for p, bucket in self._joins_by_peer.items() if bucket.full(now)]:
            del self._joins_by_peer[peer]
        return [out for identity in silent for out in self.remove(identity, reason)]

    # -- operator actions (from an operator client or the broker's terminal) ------------

    def kick(self, nick: str, by: str, reason: str) -> list[Outgoing]:
        """Disconnect `nick`: it gets KICKED, everyone else a LEAVE naming `by`."""
        target = self._require(nick)
        why = truncate_utf8(reason or "no reason given", MAX_REASON_BYTES)
        out: list[Outgoing] = [(target.identity, ev.Kicked(by, why))]
        return out + self.remove(target.identity, f"kicked by {by}: {why}")

    def wall(self, text: str, by: str = CONSOLE_OPERATOR) -> list[Outgoing]:
        """A notice to everyone, signed by `by`."""
        return self._to_all(ev.Notice(truncate_utf8(f"{by}: {text}", MAX_TEXT_BYTES)))

    def shutdown(self, reason: str) -> list[Outgoing]:
        """Tell everyone the broker stops, forget them all, and stop handling commands."""
        if self.stopped:
            return []
        out = self._to_all(ev.ServerShutdown(truncate_utf8(reason, MAX_REASON_BYTES)))
        log.warning("shutting down: %s", reason)
        self._by_identity.clear()
        self._by_key.clear()
        self._by_skeleton.clear()
        self.stopped = True
        return out

    # -- flood control -----------------------------------------------------------------

    def _refuse_flood(self, session: Session, now: float) -> list[Outgoing]:
        if not session.strikes.take(now):
            log.warning("%s kicked for flooding", session.nick)
            return self.kick(session.nick, FLOOD_CONTROL, "flooding: too many messages refused")
        flood = self.flood
        raise ProtocolError(
            ErrorCode.RATE_LIMITED,
            f"slow down: at most {flood.burst} messages at once, {flood.per_second:g} per "
            f"second; next one in {session.messages.wait(now):.1f} s",
        )

    def _limit_joins(self, peer: str, now: float) -> None:
        if not self.flood.joins_limited(peer):
            return
        bucket = self._joins_by_peer.setdefault(peer, self.flood.join_bucket())
        if not bucket.take(now):
            log.warning("too many joins from %s", peer)
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"too many joins from {peer}: try again in {bucket.wait(now):.1f} s",
            )

    # -- helpers ---------------------------------------------------------------------

    def _to_all(self, event: ev.BrokerEvent, skip: Identity | None = None) -> list[Outgoing]:
        return [(identity, event) for identity in self._by_identity if identity != skip]

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
