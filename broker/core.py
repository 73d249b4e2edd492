"""The broker's routing core: sans-IO, no sockets.

The core takes what one client sent (its ROUTER identity and the message frames) and returns
the events to send, as a list of (identity, event) pairs; the socket loop in
`broker.server` does the sending. Everything the broker knows about its users lives here,
so every rule (registration, routing, presence, operators, expiry) can be tested without a
socket.
"""

import hmac
import logging
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
    normalize_nick,
    truncate_utf8,
)
from messages import commands as cmd
from messages import events as ev

log = logging.getLogger(__name__)

Identity = bytes
Outgoing = tuple[Identity, ev.BrokerEvent]

#: Who a kick or notice comes from when the broker's own terminal issues it.
CONSOLE_OPERATOR: Final = "operator"
#: Commands a client may send before HELLO succeeds.
_ALLOWED_UNREGISTERED: Final = (cmd.Hello, cmd.Ping, cmd.Quit)


@dataclass
class Session:
    """One registered client."""

    identity: Identity
    nick: str
    last_heard: float
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
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not admin_token:
            raise ValueError("the operator token must not be empty")
        self.admin_token = admin_token
        self.heartbeat_ms = heartbeat_ms
        self._wall_clock = wall_clock
        self._by_identity: dict[Identity, Session] = {}
        self._by_key: dict[str, Session] = {}
        self.stopped = False

    # -- what the broker knows -------------------------------------------------------

    @property
    def expiry_seconds(self) -> float:
        """A client silent for this long is removed."""
        return HEARTBEAT_LIVENESS * self.heartbeat_ms / 1000

    def users(self) -> tuple[str, ...]:
        """Every registered nick, sorted case-insensitively."""
        return tuple(sorted((s.nick for s in self._by_key.values()), key=nick_key))

    def session(self, identity: Identity) -> Session | None:
        """The session registered from `identity`, if any."""
        return self._by_identity.get(identity)

    def find(self, nick: str) -> Session | None:
        """The session whose nick matches `nick` case-insensitively, if any."""
        return self._by_key.get(nick_key(nick))

    # -- input -------------------------------------------------------------------------

    def receive(self, identity: Identity, frames: Sequence[bytes], now: float) -> list[Outgoing]:
        """Handle one multipart message from `identity` (the ROUTER identity frame removed)."""
        session = self._by_identity.get(identity)
        if session is not None:
            # Any traffic counts as a heartbeat.
            session.last_heard = now
        try:
            command = decode_command(frames)
        except ProtocolError as exc:
            log.info("bad message from %s: %s", self._who(identity), exc)
            return [(identity, ev.Error(exc.code, exc.reason))]
        return self.handle(identity, command, now)

    def handle(self, identity: Identity, command: cmd.ClientCommand, now: float) -> list[Outgoing]:
        """Handle one decoded command from `identity`."""
        if self.stopped:
            return []
        session = self._by_identity.get(identity)
        try:
            if session is None:
                if not isinstance(command, _ALLOWED_UNREGISTERED):
                    raise ProtocolError(
                        ErrorCode.NOT_REGISTERED, "register first: send HELLO with your nick"
                    )
                return self._unregistered(identity, command, now)
            return self._registered(session, command)
        except ProtocolError as exc:
            return [(identity, ev.Error(exc.code, exc.reason))]

    def _unregistered(
        self, identity: Identity, command: cmd.ClientCommand, now: float
    ) -> list[Outgoing]:
        match command:
            case cmd.Hello(nick):
                return self._register(identity, nick, now)
            case cmd.Ping():
                return [(identity, ev.Pong())]
            case _:  # QUIT before registering: nothing to undo.
                return []

    def _registered(self, session: Session, command: cmd.ClientCommand) -> list[Outgoing]:
        me = session.identity
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
                if not hmac.compare_digest(token.encode(), self.admin_token.encode()):
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
        session = Session(identity, nick, now)
        self._by_identity[identity] = session
        self._by_key[nick_key(nick)] = session
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
        log.info("%s left: %s (%d users)", session.nick, reason, len(self._by_key))
        return self._to_all(ev.Left(session.nick, truncate_utf8(reason, MAX_REASON_BYTES)))

    def expire(self, now: float) -> list[Outgoing]:
        """Remove every client silent for longer than `expiry_seconds`."""
        deadline = now - self.expiry_seconds
        silent = [s.identity for s in self._by_identity.values() if s.last_heard < deadline]
        reason = f"no heartbeat for {self.expiry_seconds:g} s"
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
        self.stopped = True
        return out

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
