"""What the client knows about the chat, and the display entries each change produces.

`ChatState` is updated only by `apply(event)` (broker events) and a few local actions
(`set_target`, `cycle_target`, `mark_reconnecting`, `mark_lost`, own messages); each returns
the `Entry` objects to show. It does no I/O, so the full-screen UI, line mode and tests share
it as is. Ordering and deduplication of broadcasts happen before events get here
(`client.stream`), and own messages' delivery states live in `client.outbox`.
"""

import enum
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Final

from messages import is_room_name, nick_key, room_key
from messages.events import (
    Ack,
    AwayChanged,
    AwayReply,
    BrokerEvent,
    Challenge,
    Delivered,
    Entered,
    Error,
    Invited,
    IsAway,
    Joined,
    Kicked,
    Left,
    LogEntry,
    Message,
    ModeSet,
    NickList,
    Notice,
    Operator,
    Parted,
    Pong,
    Posted,
    PrivateMessage,
    Registered,
    Renamed,
    RoomState,
    ServerShutdown,
    Stored,
    Tick,
    TopicSet,
    UserList,
    Welcome,
)
from messages.limits import HEARTBEAT_INTERVAL_MS, MIN_HEARTBEAT_MS

from .outbox import Delivery, OutgoingMessage
from .rooms import JoinedRooms, RoomEvent

#: Joins and leaves remembered (with their numbers) to bring a user list up to date: a USERS
#: answer names everyone as of some broadcast, and the joins and leaves after it that were
#: applied before the answer arrived must be applied again on top of it.
PRESENCE_LOG_LIMIT: Final = 1000
#: What starts the text of an action (`/me waves`), on the wire as typed.
ACTION_PREFIX: Final = "/me "


def now_ms() -> int:
    """Wall-clock time in milliseconds since the Unix epoch, like the broker's timestamps."""
    return time.time_ns() // 1_000_000


class LinkState(enum.Enum):
    """How the client stands with the broker, as the status line shows it."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    #: The link was lost; the session registers again by itself.
    RECONNECTING = "reconnecting"
    #: The session is over and cannot come back (the nick went to someone else).
    LOST = "lost"
    CLOSED = "closed"


class EntryKind(enum.Enum):
    """What kind of line an entry is; renderers style each kind differently."""

    #: Chat text to everyone.
    MESSAGE = "message"
    #: Chat text between two users.
    PRIVATE = "private"
    #: Something that happened: joins, leaves, answers to local commands.
    SYSTEM = "system"
    #: A notice from the broker or an operator, to everyone.
    NOTICE = "notice"
    #: A failure: an ERROR event or a command that could not be sent.
    ERROR = "error"
    #: An own message (`msg_id`) changed delivery state: the line shown for it is updated.
    DELIVERY = "delivery"
    #: A line across the pane that marks a place: a new day in the history, where the
    #: unread part begins, where now begins.
    MARKER = "marker"


#: A private message received more than this long after it was sent (ms) is marked as
#: delivered later: the broker kept it while its recipient was away.
LATE_DELIVERY_MS: Final = 60_000


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the message pane (or of line-mode output). Text is raw, not sanitized."""

    kind: EntryKind
    text: str
    time_ms: int
    sender: str = ""
    recipient: str = ""
    #: Sent by this client's user.
    own: bool = False
    #: Mentions this client's nick as a whole word.
    highlight: bool = False
    #: The ERROR event's code, 0 for local errors.
    code: int = 0
    #: The message id of a MESSAGE, PRIVATE or own message.
    msg_id: str = ""
    #: Set on own messages as typed (and on DELIVERY entries): their delivery state.
    #: None on messages the broker sent, own echoes included.
    delivery: Delivery | None = None
    #: Why delivery FAILED.
    reason: str = ""
    #: From the broker's stored history (HISTORY, SEARCH), not live: drawn dimmed.
    history: bool = False
    #: Shown with its date as well as its time (search hits).
    dated: bool = False
    #: A private message that reached this client long after it was sent: the broker
    #: kept it while its recipient was away.
    late: bool = False
    #: The room it happened in (`#dev`); empty for #general and private messages.
    room: str = ""
    #: A join or leave of `sender` (a filter may hide it).
    presence: bool = False


@dataclass(frozen=True, slots=True)
class Ending:
    """Why the session ended, and the process exit code that goes with it."""

    reason: str
    exit_code: int


def day(time_ms: int) -> str:
    """The local date of `time_ms`, as a date line says it: `Tuesday 1 December 2026`."""
    moment = time.localtime(time_ms / 1000)
    return time.strftime(f"%A {moment.tm_mday} %B %Y", moment)


def action(text: str) -> str | None:
    """What the sender does, if `text` is an action (`/me waves`: `waves`); else None."""
    return text[len(ACTION_PREFIX) :] if text.startswith(ACTION_PREFIX) else None


def mentions(text: str, nick: str) -> bool:
    """Whether `nick` occurs in `text` as a whole word, ignoring case."""
    # Nick characters are letters, digits, `_` and `-`, so those delimit a word here.
    pattern = rf"(?<![\w-]){re.escape(nick)}(?![\w-])"
    return re.search(pattern, text, re.IGNORECASE) is not None


class ChatState:
    """The live state of one chat session: own nick, users, recent speakers, message target,
    operator flag and link state."""

    def __init__(
        self, nick: str, server: str, clock: Callable[[], int] = now_ms, secure: bool = False
    ) -> None:
        self.nick = nick
        #: The server of the current connection (the session changes it on a failover).
        self.server = server
        # The server that last welcomed us: another one that does not know the session is
        # not a restart.
        self._welcomed_on = server
        #: The link is encrypted with CurveZMQ.
        self.secure = secure
        #: While RECONNECTING: which attempt this is (1, 2, ...).
        self.reconnect_attempt = 0
        #: Where plain lines go: None for everyone, else a nick (as the broker spells it).
        #: It stays while that nick is away: only the user turns a query public.
        self.target: str | None = None
        #: Rooms heard of (ROOM answers), by key: for completion. A room the client is not
        #: in may be gone since.
        self.rooms_known: dict[str, str] = {}
        #: The rooms this session is in, each with its numbering (kept by the session).
        self.rooms = JoinedRooms()
        # The members of the rooms this session is in, by room key, then nick key (the
        # MEMBERS answer, brought up to date by ENTERED and PARTED).
        self._room_members: dict[str, dict[str, str]] = {}
        # The user was told the query target is not here (told once until it is back).
        self._target_gone_told = False
        self.operator = False
        self.link = LinkState.CONNECTING
        self.heartbeat_ms = HEARTBEAT_INTERVAL_MS
        #: Set once the broker has ended the session (kick, shutdown) or stopped answering.
        self.ending: Ending | None = None
        #: Set once this client sent QUIT: its own LEAVE may still come back.
        self.quitting = False
        self._clock = clock
        #: Whether `users` is everyone (a USERS answer came), not just who was seen joining.
        self.users_known = False
        # nick_key -> nick as the broker spells it, in order of arrival.
        self._users: dict[str, str] = {}
        # The last joins and leaves applied: (broadcast number, nick_key, nick or None for a
        # leave), oldest first.
        self._presence: deque[tuple[int, str, str | None]] = deque(maxlen=PRESENCE_LOG_LIMIT)
        # nick_key -> sequence number of the user's last message / of their join.
        self._spoke: dict[str, int] = {}
        self._joined: dict[str, int] = {}
        self._sequence = 0
        # nick_key -> nick of every owned nick (NICKS), present or away.
        self._owned: dict[str, str] = {}
        # nick_key -> away message of the present users who are away (AWAY, ISAWAY).
        self._away: dict[str, str] = {}
        # The last AWAY broadcasts applied, (number, nick_key, message), oldest first: they
        # bring a USERS answer up to date, as the presence log does.
        self._away_log: deque[tuple[int, str, str]] = deque(maxlen=PRESENCE_LOG_LIMIT)
        # The ISAWAY events of the USERS answer coming in (they precede its pages).
        self._away_snapshot: dict[str, str] = {}
        # The keys of the nicks this session had before it took its current one (NICK):
        # private messages sent to them are still ours to confirm.
        self._former: set[str] = set()
        #: The broker run (epoch) and the last broadcast number applied in it: what the user
        #: has seen, kept across runs of the client for the unread marker.
        self.epoch = ""
        self.last_seq = 0
        #: Broadcasts in the history shown on joining that came after what the user saw
        #: last time (the status line shows them until the user scrolls or types); with
        #: `unread_more`, the history shown did not reach back that far.
        self.unread = 0
        self.unread_more = False

    # -- queries -------------------------------------------------------------------------

    @property
    def users(self) -> list[str]:
        """Everyone present (self included), in case-insensitive alphabetical order."""
        return sorted(self._users.values(), key=nick_key)

    @property
    def away_users(self) -> list[str]:
        """The owners of owned nicks who are not here (self never), in case-insensitive
        alphabetical order: they may be told things, and come back as only they can."""
        own = nick_key(self.nick)
        return sorted(
            (nick for key, nick in self._owned.items() if key not in self._users and key != own),
            key=nick_key,
        )

    def owned_list(self, *pages: NickList, announce: bool = False) -> list[Entry]:
        """The owned nicks, from the pages of a NICKS answer in order; with `announce`, the
        entry saying who of them is away (if anyone is)."""
        self._owned = {nick_key(nick): nick for page in pages for nick in page.nicks}
        away = self.away_users
        if not announce or not away:
            return []
        return [self.info(f"{len(away)} away (registered nicks): {' '.join(away)}")]

    def find_user(self, nick: str) -> str | None:
        """The present user whose nick matches `nick` ignoring case, as the broker spells it."""
        return self._users.get(nick_key(nick))

    def is_self(self, nick: str) -> bool:
        """Whether `nick` is this client's own nick (ignoring case)."""
        return nick_key(nick) == nick_key(self.nick)

    def ranked_rooms(self) -> list[str]:
        """Room names for completion: the rooms this session is in (the last joined
        first), then the others heard of, alphabetically."""
        joined = list(reversed(self.rooms.names()))
        others = sorted(
            (name for name in self.rooms_known.values() if name not in self.rooms),
            key=str.casefold,
        )
        return joined + others

    def was_self(self, nick: str) -> bool:
        """Whether `nick` is this session's own nick, now or before a nick change."""
        return self.is_self(nick) or nick_key(nick) in self._former

    def away_of(self, nick: str) -> str | None:
        """The away message of the present user `nick`, or None if they are here."""
        return self._away.get(nick_key(nick))

    def forget_away_snapshot(self) -> None:
        """The USERS answer in progress was given up: its ISAWAY events go with it."""
        self._away_snapshot.clear()

    def members_of(self, room: str) -> list[str] | None:
        """The members of `room` (one this session is in), sorted; None until known."""
        members = self._room_members.get(room_key(room))
        return None if members is None else sorted(members.values(), key=nick_key)

    def set_members(self, room: str, nicks: Iterable[str], first_page: bool) -> None:
        """A page of the MEMBERS answer for `room` (the first one starts the list anew)."""
        key = room_key(room)
        members = {} if first_page else self._room_members.get(key, {})
        members.update((nick_key(nick), nick) for nick in nicks)
        self._room_members[key] = members

    def ranked_nicks(self, away: bool = False) -> list[str]:
        """Other users for completion: in a room, its members first; then most recent
        speaker first, then users seen joining (latest first), then everyone else
        alphabetically; with `away`, then the owners of owned nicks who are not here. Never
        includes self."""
        here = self._room_members.get(room_key(self.target)) if self.target else None

        def rank(nick: str) -> tuple[int, int, int, str]:
            key = nick_key(nick)
            outside = int(here is not None and key not in here)
            if key in self._spoke:
                return (outside, 0, -self._spoke[key], key)
            if key in self._joined:
                return (outside, 1, -self._joined[key], key)
            return (outside, 2, 0, key)

        own = nick_key(self.nick)
        present = sorted((n for k, n in self._users.items() if k != own), key=rank)
        return present + self.away_users if away else present

    # -- local entries -------------------------------------------------------------------

    def info(self, text: str) -> Entry:
        """A system entry stamped now."""
        return Entry(EntryKind.SYSTEM, text, self._clock())

    def _presence_entry(self, text: str, nick: str) -> Entry:
        return Entry(EntryKind.SYSTEM, text, self._clock(), nick, presence=True)

    def error(self, text: str, code: int = 0) -> Entry:
        """An error entry stamped now."""
        return Entry(EntryKind.ERROR, text, self._clock(), code=code)

    # -- changes -------------------------------------------------------------------------

    def set_target(self, nick: str | None) -> list[Entry]:
        """Send plain lines to `nick` (or to a room, `#dev`) from now on (None: to
        everyone)."""
        self._target_gone_told = False
        if nick is None:
            self.target = None
            return [self.info("messages go to everyone")]
        if is_room_name(nick):
            self.target = nick
            return [self.info(f"messages go to {nick}; /all to talk to everyone")]
        present = self.find_user(nick)
        if present is None and not self.users_known:
            # Who is present is not known yet: take the nick as typed. The user list puts it
            # right (or drops it) when it comes, and the broker refuses messages to nobody.
            present = nick
        if present is None:
            return [self.error(f"no such nick {nick}")]
        self.target = present
        return [self.info(f"messages go to {present} only; /all to talk to everyone")]

    def focus(self, nick: str | None) -> None:
        """Send plain lines to `nick` (None: to everyone) from now on, without a word: the
        user switched to the buffer of that conversation."""
        self.target = nick
        self._target_gone_told = False

    def cycle_target(self, step: int) -> list[Entry]:
        """Move the target `step` places through [everyone, other users alphabetically]."""
        own = nick_key(self.nick)
        choices: list[str | None] = [None, *(n for n in self.users if nick_key(n) != own)]
        current = choices.index(self.target) if self.target in choices else 0
        return self.set_target(choices[(current + step) % len(choices)])

    def mark_reconnecting(self, why: str) -> list[Entry]:
        """The link is lost (`why`); the session is registering again."""
        self.link = LinkState.RECONNECTING
        self.reconnect_attempt = 1
        return [self.info(f"connection lost ({why}): reconnecting")]

    def mark_lost(self, reason: str, exit_code: int) -> list[Entry]:
        """The session is over for `reason` and cannot come back."""
        self.link = LinkState.LOST
        self.ending = Ending(reason, exit_code)
        return [self.error(reason)]

    def outgoing(self, message: OutgoingMessage) -> Entry:
        """The line of an own message as typed (shown at once, in its delivery state)."""
        recipient = message.recipient
        if recipient is not None and is_room_name(recipient):
            return Entry(
                EntryKind.MESSAGE,
                message.text,
                self._clock(),
                self.nick,
                own=True,
                msg_id=message.msg_id,
                delivery=message.state,
                room=recipient,
            )
        kind = EntryKind.MESSAGE if recipient is None else EntryKind.PRIVATE
        if recipient is not None and not self.is_self(recipient):
            self._spoke[nick_key(recipient)] = self._next()
        return Entry(
            kind,
            message.text,
            self._clock(),
            self.nick,
            recipient or "",
            own=True,
            msg_id=message.msg_id,
            delivery=message.state,
        )

    def room_event(self, event: RoomEvent) -> list[Entry]:
        """What to show for an event of a joined room (in order, once: see
        `client.rooms`)."""
        room = event.room
        match event:
            case Posted(msg_id=msg_id, sender=sender, text=text, time_ms=time_ms):
                return [self._said(sender, text, time_ms, msg_id, room)]
            case Entered(nick=nick):
                self._room_members.setdefault(room_key(room), {})[nick_key(nick)] = nick
                if self.is_self(nick):
                    return [replace(self.info(f"you joined {room}"), room=room)]
                # A join like any other: /filter joins may hide it.
                return [replace(self._presence_entry(f"{nick} joined {room}", nick), room=room)]
            case Parted(nick=nick, reason=reason) if self.is_self(nick):
                self._room_members.pop(room_key(room), None)
                return [replace(self.info(_with_reason(f"you left {room}", reason)), room=room)]
            case Parted(nick=nick, reason=reason):
                self._room_members.get(room_key(room), {}).pop(nick_key(nick), None)
                what = _with_reason(f"{nick} left {room}", reason)
                return [replace(self._presence_entry(what, nick), room=room)]
            case TopicSet(nick=nick, topic=topic):
                what = f"{nick} set the topic: {topic}" if topic else f"{nick} cleared the topic"
            case ModeSet(nick=nick, mode=mode):
                what = (
                    f"{nick} made {room} invite-only"
                    if mode == "+i"
                    else f"{nick} opened {room} to all"
                )
        return [replace(self.info(what), room=room)]

    def invited(self, event: Invited) -> list[Entry]:
        """An invitation, to us or by us."""
        if self.is_self(event.nick):
            text = f"{event.by} invites you to {event.room}: /join {event.room}"
        else:
            text = f"{event.nick} may enter {event.room} now, and was told"
        return [self.info(text)]

    def room_state(self, state: RoomState, entered: bool) -> list[Entry]:
        """A ROOM state: for a room just entered (`entered`), what it is; else one line of
        a /rooms listing."""
        people = "member" if state.members == 1 else "members"
        topic = f": {state.topic}" if state.topic else ""
        if entered:
            what = f"you joined {state.room} ({state.members} {people}){topic}"
            return [replace(self.info(what), room=state.room)]
        return [self.info(f"{state.room} ({state.members} {people}){topic}")]

    def delivery(self, message: OutgoingMessage) -> Entry:
        """A change in the delivery state of an own message."""
        recipient = message.recipient or ""
        room = recipient if is_room_name(recipient) else ""
        return Entry(
            EntryKind.DELIVERY,
            message.text,
            self._clock(),
            self.nick,
            "" if room else recipient,
            room=room,
            own=True,
            code=message.code,
            msg_id=message.msg_id,
            delivery=message.state,
            reason=message.reason,
        )

    def welcome(self, event: Welcome, restarted: bool = False) -> list[Entry]:
        """Registered (first or again) with WELCOME `event`; `restarted`: the broker was
        restarted meanwhile and forgot everything (operator status included). Who is
        present comes separately (`user_list`)."""
        first = self.link is LinkState.CONNECTING
        self.nick = event.nick
        # A broker asking for less would have us flood it with PINGs.
        self.heartbeat_ms = max(event.heartbeat_ms, MIN_HEARTBEAT_MS)
        self.link = LinkState.CONNECTED
        self.reconnect_attempt = 0
        self._users.setdefault(nick_key(self.nick), self.nick)
        lost_rights = restarted and self.operator
        if event.epoch != self.epoch:
            self.epoch, self.last_seq = event.epoch, 0
        # Everything before it is history, shown on joining (as much as asked for).
        self.last_seq = max(self.last_seq, event.seq)
        if restarted:
            self.operator = False
            # The new run numbers its broadcasts from 1 again.
            self._presence.clear()
        moved, self._welcomed_on = self._welcomed_on != self.server, self.server
        if first:
            return [self.info(f"connected to {self.server} as {self.nick}")]
        restart = ""
        if restarted:
            restart = "; it did not know this session" if moved else "; the server was restarted"
        entries = [self.info(f"reconnected to {self.server} as {self.nick}{restart}")]
        if lost_rights:
            entries.append(
                self._operator_lost("the server changed" if moved else "the server restarted")
            )
        return entries

    def user_list(self, *pages: UserList, announce: bool = True) -> list[Entry]:
        """Everyone present, from the pages of a USERS answer in order (one for a short
        list), each as of its broadcast `seq`: the user list from now on, with the joins and
        leaves numbered after each page that were applied already. Returns the entries for
        it: the list itself unless not `announce`, and a note if the query target is gone."""
        users: dict[str, str] = {}
        for page in pages:
            users.update((nick_key(n), n) for n in page.users)
            # The page names everyone whose key is after its `after` and up to its last nick
            # (to the end, on the last page).
            low = nick_key(page.after) if page.after else None
            high = nick_key(page.users[-1]) if page.more and page.users else None
            # Presence broadcasts after the page's number were applied to the old list
            # before the page arrived: they come on top of it. Those numbered up to it are in
            # it (and any not applied yet change nothing when they are: the page already
            # shows them).
            for seq, key, nick in self._presence:
                if seq <= page.seq or (low is not None and key <= low):
                    continue
                if high is not None and key > high:
                    continue
                if nick is None:
                    users.pop(key, None)
                else:
                    users[key] = nick
        self._set_users(users.values())
        self._set_away(pages[0].seq if pages else 0)
        self.users_known = True
        entries = [self._users_entry(), *self._away_entries()] if announce else []
        return entries + self._check_target()

    def history(
        self, logs: Iterable[LogEntry], day_before: str = "", dated: bool = False
    ) -> list[Entry]:
        """Stored entries as history lines, oldest first: a date line first and wherever
        the day changes (none before the first if it is `day_before`'s); with `dated`, each
        line shows its date too (and no date lines come between them)."""
        entries: list[Entry] = []
        previous = day_before
        for log in logs:
            if not dated and (today := day(log.time_ms)) != previous:
                entries.append(self.marker(today, log.time_ms))
                previous = today
            entries.append(self._history_entry(log, dated))
        return entries

    def backlog(self, logs: list[LogEntry], seen: int | None, more: bool) -> list[Entry]:
        """The history shown on joining (`logs`, oldest first): history lines, a line where
        the unread part begins (the broadcasts after `seen`, the last number the user saw
        last time, if known), then a line where now begins. `more`: older entries exist."""
        if not logs:
            return []
        unread = [log for log in logs if seen is not None and log.id > seen]
        # (Private messages kept while the user was away may have come before and counted.)
        self.unread += len(unread)
        self.unread_more = more and len(unread) == len(logs)
        entries = self.history(logs[: len(logs) - len(unread)])
        if unread:
            last_day = day(logs[len(logs) - len(unread) - 1].time_ms) if entries else ""
            entries.append(self.marker(f"{self.unread_count()} unread", unread[0].time_ms))
            entries += self.history(unread, last_day)
        return [*entries, self.marker("now")]

    def unread_count(self) -> str:
        """The unread count as shown: `12`, or `50+` if history did not reach back far
        enough to count them all."""
        return f"{self.unread}+" if self.unread_more else str(self.unread)

    def marker(self, text: str, time_ms: int | None = None) -> Entry:
        """A line across the pane saying `text` (stamped now unless `time_ms`)."""
        return Entry(EntryKind.MARKER, text, self._clock() if time_ms is None else time_ms)

    def _history_entry(self, log: LogEntry, dated: bool) -> Entry:
        own = bool(log.sender) and self.is_self(log.sender)
        # A post of a room: HISTORY and SEARCH name the room as its recipient.
        room = log.recipient if is_room_name(log.recipient) else ""
        if room:
            kind = EntryKind.MESSAGE
        elif not log.sender:
            kind = EntryKind.NOTICE
        elif log.recipient:
            kind = EntryKind.PRIVATE
        else:
            kind = EntryKind.MESSAGE
        return Entry(
            kind,
            log.text,
            log.time_ms,
            log.sender,
            "" if room else log.recipient,
            own=own,
            history=True,
            dated=dated,
            room=room,
        )

    def apply(self, event: BrokerEvent) -> list[Entry]:
        """Take in one broker event; return what to show for it."""
        if isinstance(event, Joined | Left | Message | Notice | AwayChanged | Renamed):
            self.last_seq = max(self.last_seq, event.seq)
        match event:
            case Welcome():
                return self.welcome(event)
            case Joined(seq=seq, nick=nick):
                if self.is_self(nick):
                    return []
                self._presence.append((seq, nick_key(nick), nick))
                self._users[nick_key(nick)] = nick
                self._joined[nick_key(nick)] = self._next()
                entries = [self._presence_entry(f"{nick} joined", nick)]
                if self.is_target(nick):
                    self.target = nick
                    if self._target_gone_told:
                        self._target_gone_told = False
                        entries.append(self.info(f"your lines go to {nick} again"))
                return entries
            case Left(seq=seq, nick=nick, reason=reason):
                if self.is_self(nick) and self.quitting:
                    return []  # our own QUIT, coming back on the stream
                if self.is_self(nick):
                    # Seen in a replay: the broker dropped our earlier session, and with it
                    # whatever it knew about us (we are registered again by now).
                    entries = [self.info(_with_reason("the server dropped your session", reason))]
                    if self.operator:
                        self.operator = False
                        entries.append(self._operator_lost("it dropped your session"))
                    return entries
                self._presence.append((seq, nick_key(nick), None))
                return self._left(nick, reason)
            case Message(msg_id=msg_id, sender=sender, text=text, time_ms=time_ms):
                return [self._said(sender, text, time_ms, msg_id)]
            case PrivateMessage(
                msg_id=msg_id, sender=sender, recipient=recipient, text=text, time_ms=time_ms
            ):
                own = self.is_self(sender)
                # Whoever is on the other end of a private conversation is "recent" either way.
                partner = recipient if own else sender
                if not self.is_self(partner):
                    self._spoke[nick_key(partner)] = self._next()
                late = not own and self._clock() - time_ms > LATE_DELIVERY_MS
                if late:
                    self.unread += 1  # kept for us while we were away: not read yet
                return [
                    Entry(
                        EntryKind.PRIVATE,
                        text,
                        time_ms,
                        sender,
                        recipient,
                        own=own,
                        highlight=not own,
                        late=late,
                        msg_id=msg_id,
                    )
                ]
            case UserList():
                return self.user_list(event)
            case AwayChanged(seq=seq, nick=nick, away=away):
                self._away_log.append((seq, nick_key(nick), away))
                self._mark_away(nick_key(nick), away)
                who = "you are" if self.is_self(nick) else f"{nick} is"
                return [self.info(f"{who} away: {away}" if away else f"{who} back")]
            case Renamed(seq=seq, nick=old, new_nick=new):
                return self._renamed(seq, old, new)
            case IsAway(nick=nick, away=away):
                self._away_snapshot[nick_key(nick)] = away
                return []
            case AwayReply(nick=nick, away=away):
                return [self.info(f"{nick} is away: {away}")]
            case Notice(text=text):
                return [Entry(EntryKind.NOTICE, text, self._clock())]
            case Error(code=code, reason=reason):
                return [self.error(reason, code)]
            case Ack() | Delivered() | Stored():
                return []  # delivery states are the outbox's business
            case Pong() | Tick() | Challenge() | NickList():
                return []  # the session's business
            case Registered(nick=nick, state=True):
                return [
                    self.info(
                        f"{nick} is registered to your identity: while you are away, nobody "
                        "else may take it"
                    )
                ]
            case Registered(nick=nick):
                return [self.info(f"{nick} is no longer registered: anyone may take it")]
            case Operator():
                self.operator = True
                return [self.info("you are now an operator")]
            case Kicked(by=by, reason=reason):
                self.link = LinkState.CLOSED
                self.ending = Ending(_with_reason(f"you were kicked by {by}", reason), 1)
                return [self.error(self.ending.reason)]
            case ServerShutdown(reason=reason):
                self.link = LinkState.CLOSED
                self.ending = Ending(_with_reason("the server is shutting down", reason), 1)
                return [self.error(self.ending.reason)]
        return []  # pragma: no cover - every event type is matched above

    def _said(self, sender: str, text: str, time_ms: int, msg_id: str, room: str = "") -> Entry:
        """The line of a message to everyone, or to a `room`."""
        own = self.is_self(sender)
        if not own:
            self._spoke[nick_key(sender)] = self._next()
        # In an action, what the sender does: `/me` itself mentions nobody.
        highlight = not own and mentions(action(text) or text, self.nick)
        return Entry(
            EntryKind.MESSAGE,
            text,
            time_ms,
            sender,
            own=own,
            highlight=highlight,
            msg_id=msg_id,
            room=room,
        )

    def _renamed(self, seq: int, old: str, new: str) -> list[Entry]:
        """RENAMED: `old` is `new` from now on, in everything known about them."""
        old_key, new_key = nick_key(old), nick_key(new)
        # For the user list: `old` left and `new` joined.
        self._presence.append((seq, old_key, None))
        self._presence.append((seq, new_key, new))
        if self._users.pop(old_key, None) is not None or self.is_self(old):
            self._users[new_key] = new
        for ranks in (self._spoke, self._joined):
            if old_key in ranks:
                ranks[new_key] = ranks.pop(old_key)
        if old_key in self._away:
            self._away[new_key] = self._away.pop(old_key)
        for members in self._room_members.values():
            if members.pop(old_key, None) is not None:
                members[new_key] = new
        if self.is_target(old):
            self.target = new
        if self.is_self(old):
            if old_key != new_key:
                self._former.add(old_key)
            self.nick = new
            return [self.info(f"you are now known as {new}")]
        return [self.info(f"{old} is now known as {new}")]

    def _mark_away(self, key: str, away: str) -> None:
        if away:
            self._away[key] = away
        else:
            self._away.pop(key, None)

    def _set_away(self, since: int) -> None:
        """Who is away: the ISAWAY events of the USERS answer just in, then the AWAY
        broadcasts numbered after its first page (applied already, before it came)."""
        self._away = self._away_snapshot
        self._away_snapshot = {}
        for seq, key, away in self._away_log:
            if seq > since:
                self._mark_away(key, away)
        for key in [k for k in self._away if k not in self._users]:
            del self._away[key]

    def _operator_lost(self, why: str) -> Entry:
        # The status line loses its "operator" mark too, but that is easy to miss.
        return self.error(f"operator rights were lost when {why}: /admin TOKEN again")

    def _next(self) -> int:
        self._sequence += 1
        return self._sequence

    def _left(self, nick: str, reason: str) -> list[Entry]:
        key = nick_key(nick)
        self._users.pop(key, None)
        self._spoke.pop(key, None)
        self._joined.pop(key, None)
        self._away.pop(key, None)
        entries = [self._presence_entry(_with_reason(f"{nick} left", reason), nick)]
        if self.is_target(nick):
            entries.append(self._target_gone_entry())
        return entries

    def is_target(self, nick: str) -> bool:
        """Whether `nick` is the current private target (case-insensitively)."""
        return self.target is not None and nick_key(self.target) == nick_key(nick)

    def _check_target(self) -> list[Entry]:
        if self.target is None or is_room_name(self.target):
            return []
        present = self.find_user(self.target)
        if present is not None:
            self.target = present  # as the broker spells it
            self._target_gone_told = False
            return []
        if self._target_gone_told:
            return []
        return [self._target_gone_entry()]

    def _target_gone_entry(self) -> Entry:
        # A private conversation never turns public by itself: the target stays (lines to it
        # fail with "no such nick" until it is back), and the user decides.
        self._target_gone_told = True
        return self.info(
            f"{self.target} is not here; your lines still go to {self.target} only "
            "(they fail until it is back): /all to talk to everyone"
        )

    def _set_users(self, users: Iterable[str]) -> None:
        self._users = {nick_key(n): n for n in users}
        self._users.setdefault(nick_key(self.nick), self.nick)
        for ranks in (self._spoke, self._joined):
            for key in [k for k in ranks if k not in self._users]:
                del ranks[key]

    def _users_entry(self) -> Entry:
        users = self.users
        noun = "user" if len(users) == 1 else "users"
        return self.info(f"{len(users)} {noun}: {' '.join(users)}")

    def _away_entries(self) -> list[Entry]:
        """The line naming who of those present is away, if anyone is."""
        away = [
            f"{nick} ({self._away[nick_key(nick)]})" for nick in self.users if self.away_of(nick)
        ]
        return [self.info(f"{len(away)} of them away: {', '.join(away)}")] if away else []


def _with_reason(what: str, reason: str) -> str:
    return f"{what} ({reason})" if reason else what
