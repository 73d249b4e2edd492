"""What the broker remembers: broadcasts, private messages and owned nicks, in SQLite.

The store is an adapter, not part of the routing rules: the core calls it to write and
read, the socket loop decides when a batch of writes is committed (`commit`, once per
receive batch, before anything of the batch is sent) and when old messages are pruned
(`prune`, a bounded slice at a time). With the path `:memory:` nothing outlives the
process, as before the broker had a store.

Rows are gathered in memory and written together at `commit` (SQLite's executemany: most
of the cost of a row is the call that writes it), and the tables carry no index but their
keys: a message costs one row insert. What reads need besides, the search index and the
conversations, is built a slice at a time by `index`.

A failed commit raises `StoreError`; the socket loop tells the senders of the batch. Its
rows are kept (up to `RETRY_ROWS`) and written again with the next commit, so that a
broadcast that was sent is not lost from the log once the disk has room again, and its
number is not given twice; until a commit succeeds, `failing` says why, and the core
refuses new chat messages (ERROR 507).
"""

import contextlib
import functools
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar, cast

from messages import events as ev
from messages import nick_key, room_key

from .history import BroadcastEvent

log = logging.getLogger(__name__)

#: The room every broadcast belongs to, today the only one: everyone's.
MAIN_ROOM: Final = ""
#: The path that keeps everything in memory, for this run only.
IN_MEMORY: Final = ":memory:"
#: What the broker keeps by default: a year, and a million messages of each kind.
DEFAULT_RETAIN_DAYS: Final = 365.0
DEFAULT_RETAIN_MESSAGES: Final = 1_000_000
#: Most rows one `prune` deletes: pruning a large backlog takes many turns of the loop,
#: each a few milliseconds, never one long stall.
PRUNE_BATCH: Final = 1000
#: SQLite's synchronous setting: with WAL, NORMAL syncs the log at checkpoints, not at each
#: commit; what a process crash leaves is intact, a power loss may take the last second.
SYNCHRONOUS: Final = "NORMAL"
#: How long a write waits for a lock another process holds, in ms, before it fails: the
#: loop must not stall behind someone's open transaction on our file.
BUSY_TIMEOUT_MS: Final = 50
#: Rows of failed commits kept to be written again; past this, the oldest are dropped
#: (logged): a disk that stays full must not fill the broker's memory instead.
RETRY_ROWS: Final = 10_000
#: After a failed commit, how long until the rows it kept are tried again with no new
#: ones, in seconds.
RETRY_INTERVAL_S: Final = 1.0
#: Messages added to the search index per `index` call, at most: a few milliseconds.
INDEX_BATCH: Final = 1000
#: How often the checkpointing thread moves the write-ahead log into the database, in s.
CHECKPOINT_INTERVAL_S: Final = 1.0
#: Chat messages whose (sender, id) the store recognizes when they are sent again.
RECENT_IDS: Final = 20_000
#: Words of a search used, at most; the rest are ignored.
MAX_SEARCH_WORDS: Final = 16
#: Hex digits of a new epoch.
_EPOCH_BYTES: Final = 4

# Broadcast kinds, as stored.
_MESSAGE: Final = 1
_NOTICE: Final = 2
_JOIN: Final = 3
_LEAVE: Final = 4
# (sender: the nick; text: the away message, or the new nick.)
_AWAY: Final = 5
_RENAMED: Final = 6

#: Each step brings a database from the version before it (PRAGMA user_version) to its
#: own; a newer broker upgrades an older file on open, in one transaction.
MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: the log, private messages (and which of them wait for a recipient), owned nicks.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE broadcasts (
        seq INTEGER PRIMARY KEY,
        room TEXT NOT NULL,
        kind INTEGER NOT NULL,
        msg_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        sender_key TEXT NOT NULL,
        text TEXT NOT NULL,
        time_ms INTEGER NOT NULL
    );
    CREATE TABLE privates (
        id INTEGER PRIMARY KEY,
        msg_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        sender_key TEXT NOT NULL,
        recipient TEXT NOT NULL,
        recipient_key TEXT NOT NULL,
        text TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        sender_token TEXT NOT NULL,
        recipient_token TEXT NOT NULL
    );
    CREATE TABLE waiting (id INTEGER PRIMARY KEY);
    CREATE TRIGGER privates_wait AFTER INSERT ON privates BEGIN
        INSERT INTO waiting (id) VALUES (new.id);
    END;
    CREATE TRIGGER privates_forget AFTER DELETE ON privates BEGIN
        DELETE FROM waiting WHERE id = old.id;
    END;
    CREATE TABLE conversations (
        pair TEXT NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (pair, id)
    ) WITHOUT ROWID;
    CREATE TABLE owners (
        nick_key TEXT PRIMARY KEY,
        nick TEXT NOT NULL,
        public_key BLOB NOT NULL,
        since_ms INTEGER NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('indexed_broadcasts', '0'), ('indexed_privates', '0');
    """,
    # 2: full-text search over chat messages (not joins, leaves or notices), built by
    # `Store.index` like the conversations: one insert into the index costs more than the
    # message itself. `indexed_*` in meta says how far both are built.
    """
    CREATE VIRTUAL TABLE broadcasts_text USING fts5(
        text, content='broadcasts', content_rowid='seq'
    );
    CREATE TRIGGER broadcasts_text_remove AFTER DELETE ON broadcasts
    WHEN old.kind = 1
        AND old.seq <= (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'indexed_broadcasts')
    BEGIN
        INSERT INTO broadcasts_text (broadcasts_text, rowid, text)
        VALUES ('delete', old.seq, old.text);
    END;
    CREATE VIRTUAL TABLE privates_text USING fts5(
        text, content='privates', content_rowid='id'
    );
    CREATE TRIGGER privates_text_remove AFTER DELETE ON privates
    WHEN old.id <= (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'indexed_privates')
    BEGIN
        INSERT INTO privates_text (privates_text, rowid, text)
        VALUES ('delete', old.id, old.text);
        DELETE FROM conversations
        WHERE pair = min(old.sender_key, old.recipient_key) || char(10) ||
                     max(old.sender_key, old.recipient_key)
            AND id = old.id;
    END;
    INSERT INTO broadcasts_text (rowid, text) SELECT seq, text FROM broadcasts
    WHERE kind = 1
        AND seq <= (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'indexed_broadcasts');
    INSERT INTO privates_text (rowid, text) SELECT id, text FROM privates
    WHERE id <= (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'indexed_privates');
    """,
    # 3: rooms (see broker.rooms): each with its members (by session token hash, as
    # private messages are tied to sessions), invitations and numbered events.
    """
    CREATE TABLE rooms (
        room_key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        epoch TEXT NOT NULL,
        topic TEXT NOT NULL,
        invite_only INTEGER NOT NULL,
        creator_token TEXT NOT NULL,
        creator_owned_key TEXT NOT NULL
    );
    CREATE TABLE room_members (
        room_key TEXT NOT NULL, token TEXT NOT NULL, nick TEXT NOT NULL,
        PRIMARY KEY (room_key, token)
    ) WITHOUT ROWID;
    CREATE TABLE room_invited (
        room_key TEXT NOT NULL, nick_key TEXT NOT NULL, PRIMARY KEY (room_key, nick_key)
    ) WITHOUT ROWID;
    CREATE TABLE room_events (
        id INTEGER PRIMARY KEY,
        room_key TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        msg_id TEXT NOT NULL,
        nick TEXT NOT NULL,
        text TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        UNIQUE (room_key, seq)
    );
    """,
    # 4: full-text search over rooms' posts too, built by `Store.index` like the others.
    """
    CREATE VIRTUAL TABLE room_events_text USING fts5(
        text, content='room_events', content_rowid='id'
    );
    CREATE TRIGGER room_events_text_remove AFTER DELETE ON room_events
    WHEN old.kind = 3
        AND old.id <= (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'indexed_room_events')
    BEGIN
        INSERT INTO room_events_text (room_events_text, rowid, text)
        VALUES ('delete', old.id, old.text);
    END;
    INSERT INTO meta (key, value) VALUES ('indexed_room_events', '0');
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


class StoreError(Exception):
    """A write failed (disk full, database locked or corrupt); str() says why, for users."""


class AlreadyStored(Exception):
    """A chat message from the same sender with the same id is stored already: a resend."""


class StoreUnusable(Exception):
    """The database cannot be opened or upgraded: the broker cannot start on it."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One message of history: a broadcast (recipient "") or a private."""

    #: A broadcast's seq; a private's number in the store. Both grow with time.
    id: int
    #: "" for a notice.
    sender: str
    #: "" for a broadcast.
    recipient: str
    text: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class Page:
    """Entries oldest first, and where the next older page ends."""

    entries: list[Entry]
    #: Pass as `before` for the next older page; 0: nothing older.
    next_before: int


@dataclass(frozen=True, slots=True)
class StoredRoom:
    """A room as the store keeps it (see broker.rooms.Room)."""

    name: str
    epoch: str
    topic: str
    invite_only: bool
    creator_token: str
    creator_owned_key: str
    #: The number of its last stored event (0: none).
    last_seq: int = 0
    #: (session token hash, nick) of each member.
    members: list[tuple[str, str]] = field(default_factory=list)
    #: Nick keys invited.
    invited: list[str] = field(default_factory=list)


RoomEvent = ev.RoomEvent


def new_epoch() -> str:
    """A random epoch: names a numbering (a database's broadcasts, a room's life)."""
    return secrets.token_hex(_EPOCH_BYTES)


def pair_key(one: str, other: str) -> str:
    """What names the conversation between two nicks, whichever sent."""
    return _pair(nick_key(one), nick_key(other))


def _pair(one_key: str, other_key: str) -> str:
    """`pair_key` of two nick keys."""
    first, second = sorted((one_key, other_key))
    return f"{first}\n{second}"


def search_query(words: str) -> str:
    """`words` as an FTS5 query that matches them all, each taken literally: user text is
    never FTS5 syntax (quotes, operators, column filters)."""
    terms = words.split()[:MAX_SEARCH_WORDS]
    return " ".join('"' + term.replace('"', '""') + '"' for term in terms)


_Read = TypeVar("_Read", bound=Callable[..., Any])


def _reading(method: _Read) -> _Read:
    """A read of the store that raises StoreError, saying why for users, where sqlite3
    fails (a damaged file, a lock held too long): callers handle one kind of failure."""

    @functools.wraps(method)
    def read(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            log.error("reading the store failed: %s", exc)
            raise StoreError(_why(exc)) from exc

    return cast(_Read, read)


def _why(exc: sqlite3.Error) -> str:
    """A reason a user can read for a failed write."""
    text = str(exc)
    if "full" in text:
        return "the server's disk is full"
    if "locked" in text or "busy" in text:
        return "the server's database is locked by another process"
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return "the server's database is damaged"
    return f"the server's database failed ({text})"


class Store:
    """The broker's SQLite database at `path` (`:memory:` for none that lasts).

    `retain_days` and `retain_messages` bound what `prune` keeps; `max_pages` caps the
    file's size in database pages (SQLite's max_page_count), which makes a full disk for
    tests. Raises StoreUnusable if the file cannot be used.
    """

    def __init__(
        self,
        path: str = IN_MEMORY,
        retain_days: float = DEFAULT_RETAIN_DAYS,
        retain_messages: int = DEFAULT_RETAIN_MESSAGES,
        max_pages: int | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.durable = path != IN_MEMORY
        self.retain_days = retain_days
        self.retain_messages = retain_messages
        self._wall_clock = wall_clock
        # Rows for the next commit (those of failed commits included).
        self._rows = _Rows()
        #: Why the last commit failed; None once one succeeds (then chat messages are
        #: taken again).
        self.failing: str | None = None
        self._retry_at = 0.0
        # (sender's nick key, msg_id) of the last RECENT_IDS chat messages: a resend of one
        # is recognized (a client resends what was not acknowledged, which is recent).
        self._recent: dict[tuple[str, str], None] = {}
        # The numbers and recipients' nick keys of the private messages waiting for their
        # RECEIVED, by (sender's nick key, msg_id); how many wait for each recipient.
        self._waiting: dict[tuple[str, str], tuple[int, str]] = {}
        self._waiting_for: Counter[str] = Counter()
        if self.durable:
            _create_private(path)
        try:
            # Autocommit mode: the store begins and commits its own transactions.
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if self.durable:
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
                # A checkpoint syncs the file to disk, milliseconds that would fall on the
                # commit that crossed the threshold: a thread of its own does them.
                self._db.execute("PRAGMA wal_autocheckpoint = 0")
            if max_pages is not None:
                self._db.execute(f"PRAGMA max_page_count = {int(max_pages)}")
            self._upgrade()
            self.epoch = self._epoch()
            row = self._db.execute("SELECT max(seq) FROM broadcasts").fetchone()
            self.last_seq: int = row[0] or 0
            self._last_private_id = self._max_private_id()
            self._load_recent()
        except sqlite3.Error as exc:
            raise StoreUnusable(f"{path}: {exc}") from exc
        self._checkpoints = _Checkpoints(path) if self.durable else None

    def _load_recent(self) -> None:
        for table, column, kind in (("broadcasts", "seq", "kind = 1"), ("privates", "id", "1")):
            rows = self._db.execute(
                f"SELECT sender_key, msg_id FROM {table} WHERE {kind} "
                f"ORDER BY {column} DESC LIMIT ?",
                (RECENT_IDS // 2,),
            ).fetchall()
            self._recent.update((tuple(row), None) for row in reversed(rows))
        posts = self._db.execute(
            "SELECT nick, msg_id FROM room_events WHERE kind = ? ORDER BY id DESC LIMIT ?",
            (_POSTED, RECENT_IDS // 2),
        ).fetchall()
        self._recent.update(((nick_key(nick), msg_id), None) for nick, msg_id in reversed(posts))
        for number, sender_key, msg_id, recipient_key in self._db.execute(
            "SELECT id, sender_key, msg_id, recipient_key FROM waiting JOIN privates USING (id) "
            "ORDER BY id"
        ):
            self._waiting[(sender_key, msg_id)] = (number, recipient_key)
            self._waiting_for[recipient_key] += 1

    # -- schema ----------------------------------------------------------------------

    def _upgrade(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreUnusable(
                f"{self.path} was written by a newer broker (schema {version}; this one "
                f"knows up to {SCHEMA_VERSION}): run that broker, or name another --db"
            )
        if version == SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for step in range(version, SCHEMA_VERSION):
                for statement in _statements(MIGRATIONS[step]):
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except sqlite3.Error:
            self._db.execute("ROLLBACK")
            raise
        if version:
            log.warning("upgraded %s from schema %d to %d", self.path, version, SCHEMA_VERSION)

    def _epoch(self) -> str:
        """The epoch of this database: made once, when the file is made."""
        if not self.durable:
            return new_epoch()
        row = self._db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        if row is not None:
            return str(row[0])
        epoch = new_epoch()
        self._db.execute("INSERT INTO meta (key, value) VALUES ('epoch', ?)", (epoch,))
        return epoch

    # -- writing -----------------------------------------------------------------------

    def add_broadcast(self, event: BroadcastEvent, room: str = MAIN_ROOM) -> None:
        """Write `event` (numbered `last_seq + 1`) with the next commit. Raises StoreError
        while commits fail, AlreadyStored for a chat message stored before (its sender and
        id): then nothing is written."""
        if event.seq != self.last_seq + 1:
            raise ValueError(f"broadcast {event.seq} out of order after {self.last_seq}")
        if self.failing is not None:
            raise StoreError(self.failing)
        if isinstance(event, ev.Message):
            self._remember(nick_key(event.sender), event.msg_id)
        self.keep_broadcast(event, room)

    def keep_broadcast(self, event: BroadcastEvent, room: str = MAIN_ROOM) -> None:
        """Write `event` with the next commit, even while commits fail (it is kept to write
        again): for events that happen whether or not they are stored (joins, leaves,
        notices)."""
        if event.seq != self.last_seq + 1:
            raise ValueError(f"broadcast {event.seq} out of order after {self.last_seq}")
        self._rows.broadcasts.rows.append(_broadcast_row(event, room, self._now_ms()))
        self.last_seq = event.seq

    def follow_cluster(self, epoch: str, first_seq: int, last_seq: int) -> int:
        """Keep #general as a cluster numbers it (under `epoch`, whose stream holds events
        `first_seq` to `last_seq`): the number of the first event to mirror next. What this
        store kept under another numbering (alone, or another cluster) gives way. Raises
        StoreError."""
        if epoch == self.epoch and self.last_seq <= last_seq:
            return self.last_seq + 1  # it goes on where it stopped
        log.warning("the broadcasts kept here give way to the cluster's (epoch %s)", epoch)
        self.commit()
        try:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM broadcasts")
            if self.durable:
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'epoch'", (epoch,))
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('cluster', ?)", (epoch,)
                )
            self._db.execute(
                "UPDATE meta SET value = ? WHERE key = 'indexed_broadcasts'", (first_seq - 1,)
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StoreError(_why(exc)) from exc
        self.epoch = epoch
        self.last_seq = first_seq - 1
        return first_seq

    def go_alone(self) -> str:
        """The epoch to number broadcasts under for a broker alone: this store's, or a new
        one if it kept a cluster's #general (whose numbers go on without it)."""
        if self.durable and self._meta("cluster"):
            try:
                self.epoch = new_epoch()
                self._db.execute("BEGIN")
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'epoch'", (self.epoch,))
                self._db.execute("DELETE FROM meta WHERE key = 'cluster'")
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(_why(exc)) from exc
            log.warning("this store kept a cluster's chat: alone, it numbers anew (%s)", self.epoch)
        return self.epoch

    def mirror_broadcast(self, event: BroadcastEvent) -> None:
        """Keep `event`, numbered by the cluster (a gap before it is what the cluster's
        stream no longer holds), with a later commit: the cluster keeps it already."""
        if event.seq <= self.last_seq:
            return
        self._rows.mirrored.rows.append(_broadcast_row(event, MAIN_ROOM, self._now_ms()))
        self.last_seq = event.seq

    def add_private(
        self, private: ev.PrivateMessage, sender_token: str, recipient_token: str
    ) -> None:
        """Write `private` with the next commit, as waiting for its RECEIVED; it was sent
        from the session whose token hashes to `sender_token` to the one of
        `recipient_token`. Raises StoreError while commits fail, AlreadyStored if it is
        stored already (a resend)."""
        if self.failing is not None:
            raise StoreError(self.failing)
        sender, recipient = nick_key(private.sender), nick_key(private.recipient)
        self._remember(sender, private.msg_id)
        self._last_private_id += 1
        self._waiting[(sender, private.msg_id)] = (self._last_private_id, recipient)
        self._waiting_for[recipient] += 1
        if not recipient_token:
            # Kept for an owner who is away: the STORED that says so must wait for a commit.
            self._rows.kept_for_later += 1
        self._rows.privates.rows.append(
            (
                self._last_private_id,
                private.msg_id,
                private.sender,
                sender,
                private.recipient,
                recipient,
                private.text,
                private.time_ms,
                sender_token,
                recipient_token,
            )
        )

    def private_done(self, sender: str, msg_id: str) -> None:
        """`sender`'s private `msg_id` is no longer waiting (confirmed, or given up)."""
        waiting = self._waiting.pop((nick_key(sender), msg_id), None)
        if waiting is not None:
            number, recipient = waiting
            self._rows.done.rows.append((number,))
            self._waiting_for[recipient] -= 1
            if not self._waiting_for[recipient]:
                del self._waiting_for[recipient]

    def readdress(self, messages: Sequence[tuple[str, str]], recipient: str) -> None:
        """The private messages `messages` (each its sender and msg_id), still waiting for
        their RECEIVED, are for `recipient` from now on: their recipient took that nick
        (NICK), and gets them again after a restart under it. Raises StoreError."""
        key = nick_key(recipient)
        numbers = []
        for sender, msg_id in messages:
            waiting = self._waiting.get((nick_key(sender), msg_id))
            if waiting is not None:
                numbers.append(waiting[0])
        if not numbers:
            return
        marks = ", ".join("?" * len(numbers))
        self._write(
            f"UPDATE privates SET recipient = ?, recipient_key = ? WHERE id IN ({marks})",
            (recipient, key, *numbers),
        )
        for sender, msg_id in messages:
            sender_key = nick_key(sender)
            waiting = self._waiting.get((sender_key, msg_id))
            if waiting is None:
                continue
            number, old = waiting
            self._waiting[(sender_key, msg_id)] = (number, key)
            self._waiting_for[key] += 1
            self._waiting_for[old] -= 1
            if not self._waiting_for[old]:
                del self._waiting_for[old]

    def waiting_for(self, recipient: str) -> int:
        """How many private messages to `recipient` wait for its RECEIVED."""
        return self._waiting_for.get(nick_key(recipient), 0)

    def _remember(self, sender_key: str, msg_id: str) -> None:
        """Note a chat message's (sender, id); AlreadyStored if it was noted before."""
        key = (sender_key, msg_id)
        if key in self._recent:
            raise AlreadyStored(msg_id)
        self._recent[key] = None
        if len(self._recent) > RECENT_IDS:
            del self._recent[next(iter(self._recent))]

    def set_owner(self, nick: str, public_key: bytes) -> None:
        """`nick` belongs to the holder of `public_key` from now on. Raises StoreError."""
        self._write(
            "INSERT OR REPLACE INTO owners (nick_key, nick, public_key, since_ms) "
            "VALUES (?, ?, ?, ?)",
            (nick_key(nick), nick, public_key, self._now_ms()),
        )

    def drop_owner(self, nick: str) -> bool:
        """Free `nick`; True if it was registered. Raises StoreError."""
        if self.owner(nick) is None:
            return False
        self._write("DELETE FROM owners WHERE nick_key = ?", (nick_key(nick),))
        return True

    def _write(self, sql: str, values: Sequence[Any]) -> int:
        """Run one statement now, in the batch's transaction (after the rows gathered so
        far); how many rows it changed. Raises StoreError."""
        self._flush()
        if self.failing is not None:
            raise StoreError(self.failing)
        try:
            if not self._db.in_transaction:
                self._db.execute("BEGIN")
            changed = self._db.execute(sql, values).rowcount
        except sqlite3.Error as exc:
            self._failed(exc)
            raise StoreError(_why(exc)) from exc
        statements = self._rows.statements
        statements.rows.append((sql, values))
        statements.flushed += 1
        return changed

    def _flush(self) -> None:
        """Write the rows gathered since the last flush into the open transaction (opening
        one), so that reads see them. A failure is kept in `failing`."""
        rows = self._rows
        if not rows.unflushed():
            return
        try:
            if not self._db.in_transaction:
                self._db.execute("BEGIN")
            for kind in rows.kinds:
                kind.flush(self._db)
        except sqlite3.Error as exc:
            self._failed(exc)

    def _failed(self, exc: sqlite3.Error) -> None:
        """A write or the commit failed: roll back; every row of the batch is written again
        by the next commit."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        self._rows.unflush()
        self._rows.bound(RETRY_ROWS)
        self.failing = _why(exc)
        self._retry_at = time.monotonic() + RETRY_INTERVAL_S
        log.error("the store failed: %s (%s)", self.failing, exc)

    def commit(self) -> None:
        """Make what was written since the last commit durable. Raises StoreError, having
        kept the batch to write again with the next commit."""
        rows = self._rows
        if not rows.any():
            return
        failed_before = self.failing
        if failed_before is not None:
            if time.monotonic() < self._retry_at:
                raise StoreError(failed_before)
            self.failing = None  # try again
        self._flush()
        if self.failing is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._failed(exc)
            else:
                if failed_before is not None:
                    log.warning("the store writes again (%d rows kept meanwhile)", rows.count())
                rows.clear()
                return
        raise StoreError(self.failing or "the store failed")

    @property
    def dirty(self) -> bool:
        """Whether rows wait for a commit."""
        return self._rows.any()

    @property
    def owes_commit(self) -> bool:
        """Whether an ACK about to be sent needs a commit first: messages, joins, leaves and
        owners written to a file. (Receipts may wait for a later commit: one lost in a crash
        only brings its message again, which the recipient drops as a repeat. And nothing
        of a store in memory outlives the process anyway.)"""
        rows = self._rows
        return self.durable and bool(
            rows.broadcasts.rows
            or rows.privates.rows
            or rows.room_events.rows
            or rows.statements.rows
        )

    @property
    def owes_commit_to_send(self) -> bool:
        """Whether events about to be sent need a commit first: as `owes_commit`, but a
        private message to someone present may reach them before it is committed (its ACK
        may not). If a crash loses it, its sender, never ACKed, sends it again, and the
        recipient drops the second copy as a repeat."""
        rows = self._rows
        return self.durable and bool(
            rows.broadcasts.rows
            or rows.room_events.rows
            or rows.statements.rows
            or rows.kept_for_later
        )

    # -- rooms -------------------------------------------------------------------------

    def save_room(self, room: StoredRoom) -> None:
        """Write `room`'s name, epoch, topic, mode and maker (not its members or events)
        with the next commit. Raises StoreError."""
        self._write(
            "INSERT OR REPLACE INTO rooms VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                room_key(room.name),
                room.name,
                room.epoch,
                room.topic,
                int(room.invite_only),
                room.creator_token,
                room.creator_owned_key,
            ),
        )

    def drop_room(self, name: str) -> None:
        """Forget room `name`, its members, invitations and events. Raises StoreError."""
        for table in ("rooms", "room_members", "room_invited", "room_events"):
            self._write(f"DELETE FROM {table} WHERE room_key = ?", (room_key(name),))

    def add_member(self, room: str, token: str, nick: str) -> None:
        """The session of token hash `token` (as `nick`) is in `room`. Raises StoreError."""
        self._write(
            "INSERT OR REPLACE INTO room_members VALUES (?, ?, ?)", (room_key(room), token, nick)
        )

    def drop_member(self, room: str, token: str) -> None:
        """The session of token hash `token` is no longer in `room`. Raises StoreError."""
        self._write(
            "DELETE FROM room_members WHERE room_key = ? AND token = ?", (room_key(room), token)
        )

    def clear_invited(self, room: str) -> None:
        """Nobody is invited to `room` any more (it is open). Raises StoreError."""
        self._write("DELETE FROM room_invited WHERE room_key = ?", (room_key(room),))

    def set_invited(self, room: str, nick: str, invited: bool) -> None:
        """`nick` may (or no longer may) enter the invite-only `room`. Raises StoreError."""
        if invited:
            sql = "INSERT OR IGNORE INTO room_invited VALUES (?, ?)"
        else:
            sql = "DELETE FROM room_invited WHERE room_key = ? AND nick_key = ?"
        self._write(sql, (room_key(room), nick_key(nick)))

    def add_room_event(self, event: RoomEvent) -> None:
        """Write a room's numbered event with the next commit. Raises StoreError while
        commits fail, AlreadyStored for a POSTED stored before (its sender and id)."""
        if self.failing is not None:
            raise StoreError(self.failing)
        if isinstance(event, ev.Posted):
            self._remember(nick_key(event.sender), event.msg_id)
        self.keep_room_event(event)

    def keep_room_event(self, event: RoomEvent) -> None:
        """Write a room's numbered event with the next commit, even while commits fail:
        for events that happen whether or not they are stored (leaving, ...)."""
        self._rows.room_events.rows.append(_room_event_row(event, self._now_ms()))

    @_reading
    def rooms(self) -> list[StoredRoom]:
        """Every stored room, with its members, invitations and last event's number."""
        self._flush()
        db = self._db
        members: dict[str, list[tuple[str, str]]] = {}
        for key, token, nick in db.execute("SELECT room_key, token, nick FROM room_members"):
            members.setdefault(key, []).append((token, nick))
        invited: dict[str, list[str]] = {}
        for key, nick in db.execute("SELECT room_key, nick_key FROM room_invited"):
            invited.setdefault(key, []).append(nick)
        last = dict(db.execute("SELECT room_key, max(seq) FROM room_events GROUP BY room_key"))
        return [
            StoredRoom(
                name,
                epoch,
                topic,
                bool(mode),
                token,
                owned,
                int(last.get(key) or 0),
                members.get(key, []),
                invited.get(key, []),
            )
            for key, name, epoch, topic, mode, token, owned in db.execute(
                "SELECT room_key, name, epoch, topic, invite_only, creator_token, "
                "creator_owned_key FROM rooms"
            )
        ]

    @_reading
    def room_events(self, name: str, from_seq: int, limit: int) -> list[RoomEvent]:
        """`name`'s stored events numbered `from_seq` or later, oldest first, at most
        `limit`."""
        self._flush()
        rows = self._db.execute(
            "SELECT seq, kind, msg_id, nick, text, time_ms FROM room_events "
            "WHERE room_key = ? AND seq >= ? ORDER BY seq LIMIT ?",
            (room_key(name), from_seq, limit),
        )
        return [_room_event(name, *row) for row in rows]

    # -- reading -----------------------------------------------------------------------

    @_reading
    def broadcasts(self, from_seq: int, limit: int) -> list[BroadcastEvent]:
        """Stored broadcasts numbered `from_seq` or later, oldest first, at most `limit`."""
        self._flush()
        rows = self._db.execute(
            "SELECT seq, kind, msg_id, sender, text, time_ms FROM broadcasts "
            "WHERE seq >= ? ORDER BY seq LIMIT ?",
            (from_seq, limit),
        )
        return [_broadcast_event(*row) for row in rows]

    @_reading
    def recent(self, count: int) -> list[BroadcastEvent]:
        """The last `count` stored broadcasts, oldest first."""
        return self.broadcasts(max(self.last_seq - count + 1, 1), count)

    @_reading
    def first_seq(self) -> int:
        """The number of the oldest stored broadcast (`last_seq + 1` if none is)."""
        row = self._db.execute("SELECT min(seq) FROM broadcasts").fetchone()
        return int(row[0]) if row[0] is not None else self.last_seq + 1

    @_reading
    def history(self, before: int, limit: int, room: str = MAIN_ROOM) -> Page:
        """The chat messages and notices of `room` numbered below `before` (0: the latest),
        the newest `limit` of them."""
        before = before or self.last_seq + 1
        self._flush()
        rows = self._db.execute(
            "SELECT seq, sender, '', text, time_ms FROM broadcasts "
            "WHERE room = ? AND kind <= 2 AND seq < ? ORDER BY seq DESC LIMIT ?",
            (room, before, limit + 1),
        ).fetchall()
        return _page(rows, limit)

    @_reading
    def room_history(self, name: str, before: int, limit: int) -> Page:
        """The posts of room `name` numbered below `before` (0: the latest), the newest
        `limit` of them; each entry's recipient is the room."""
        before = before or _NO_LIMIT
        self._flush()
        rows = self._db.execute(
            "SELECT seq, nick, ?, text, time_ms FROM room_events "
            "WHERE room_key = ? AND kind = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (name, room_key(name), _POSTED, before, limit + 1),
        ).fetchall()
        return _page(rows, limit)

    @_reading
    def conversation(self, me: str, other: str, before: int, limit: int) -> Page:
        """The private messages between `me` and `other`, either way, numbered below
        `before` (0: the latest), the newest `limit` of them."""
        before = before or _NO_LIMIT
        pair = pair_key(me, other)
        one, other_key = pair.split("\n")
        self._flush()
        # The conversations table lists the messages `index` has got to; the newer ones
        # are looked through (a few at most, unless indexing lags behind a flood).
        indexed = int(self._meta("indexed_privates") or 0)
        rows = self._db.execute(
            "SELECT id, sender, recipient, text, time_ms FROM privates "
            "WHERE id > ? AND id < ? AND ((sender_key = ? AND recipient_key = ?) "
            "OR (sender_key = ? AND recipient_key = ?)) ORDER BY id DESC LIMIT ?",
            (indexed, before, one, other_key, other_key, one, limit + 1),
        ).fetchall()
        if len(rows) <= limit:
            rows += self._db.execute(
                "SELECT id, sender, recipient, text, time_ms FROM conversations "
                "CROSS JOIN privates USING (id) WHERE conversations.pair = ? AND id < ? "
                "ORDER BY id DESC LIMIT ?",
                (pair, min(before, indexed + 1), limit + 1 - len(rows)),
            ).fetchall()
        return _page(rows, limit)

    @_reading
    def pending_for(self, recipient: str, token: str | None) -> list[tuple[ev.PrivateMessage, str]]:
        """The private messages to `recipient` still waiting for its RECEIVED, oldest first,
        each with its sender's token hash: those sent to the session of `token` (a hash), or
        all of them for None (the nick's owner)."""
        self._flush()
        rows = self._db.execute(
            "SELECT msg_id, sender, recipient, text, time_ms, sender_token, recipient_token "
            "FROM waiting CROSS JOIN privates USING (id) WHERE recipient_key = ? ORDER BY id",
            (nick_key(recipient),),
        )
        return [
            (ev.PrivateMessage(*row[:5]), row[5])
            for row in rows
            if token is None or row[6] == token
        ]

    @_reading
    def pending(self, limit: int) -> list[tuple[ev.PrivateMessage, str, str]]:
        """The oldest `limit` private messages still waiting for their RECEIVED, each with
        the token hashes of its sender's and its recipient's sessions."""
        self._flush()
        rows = self._db.execute(
            "SELECT msg_id, sender, recipient, text, time_ms, sender_token, recipient_token "
            "FROM waiting CROSS JOIN privates USING (id) ORDER BY id LIMIT ?",
            (limit,),
        )
        return [(ev.PrivateMessage(*row[:5]), row[5], row[6]) for row in rows]

    @_reading
    def search(self, viewer: str | None, words: str, limit: int, rooms: Sequence[str] = ()) -> Page:
        """The newest `limit` chat messages that contain all of `words`, among the
        broadcasts, the private messages `viewer` sent or received (None: broadcasts
        only) and the posts of `rooms` (each hit's recipient the room's name); oldest
        first."""
        query = search_query(words)
        if not query:
            return Page([], 0)
        key = nick_key(viewer) if viewer is not None else None
        self._flush()
        # The index walked newest first (its rowid order): the newest hits come first
        # and the walk stops at `limit`, however many older messages match.
        public = self._db.execute(
            "SELECT seq, sender, '', broadcasts.text, time_ms FROM broadcasts_text "
            "CROSS JOIN broadcasts ON broadcasts.seq = broadcasts_text.rowid "
            "WHERE broadcasts_text MATCH ? ORDER BY broadcasts_text.rowid DESC LIMIT ?",
            (query, limit),
        ).fetchall()
        private = []
        if key is not None:
            private = self._db.execute(
                "SELECT id, sender, recipient, privates.text, time_ms FROM privates_text "
                "CROSS JOIN privates ON privates.id = privates_text.rowid "
                "WHERE privates_text MATCH ? AND (sender_key = ? OR recipient_key = ?) "
                "ORDER BY privates_text.rowid DESC LIMIT ?",
                (query, key, key, limit),
            ).fetchall()
        posted = []
        if rooms:
            keys = [room_key(room) for room in rooms]
            posted = self._db.execute(
                "SELECT room_events.seq, nick, rooms.name, room_events.text, time_ms "
                "FROM room_events_text "
                "CROSS JOIN room_events ON room_events.id = room_events_text.rowid "
                "JOIN rooms ON rooms.room_key = room_events.room_key "
                f"WHERE room_events_text MATCH ? AND room_events.room_key IN "
                f"({', '.join('?' * len(keys))}) "
                "ORDER BY room_events_text.rowid DESC LIMIT ?",
                (query, *keys, limit),
            ).fetchall()
        rows = public + private + posted
        hits = sorted(rows, key=lambda row: (row[4], bool(row[2]), row[0]))[-limit:]
        return Page([Entry(*row) for row in hits], 0)

    @_reading
    def registered_as(self, nick: str) -> str | None:
        """The owned nick `nick` stands for, as it was registered; None if not owned."""
        self._flush()
        row = self._db.execute(
            "SELECT nick FROM owners WHERE nick_key = ?", (nick_key(nick),)
        ).fetchone()
        return str(row[0]) if row is not None else None

    @_reading
    def owner(self, nick: str) -> bytes | None:
        """The public key that owns `nick`, if it is registered."""
        self._flush()
        row = self._db.execute(
            "SELECT public_key FROM owners WHERE nick_key = ?", (nick_key(nick),)
        ).fetchone()
        return bytes(row[0]) if row is not None else None

    @_reading
    def owners(self, after: str, limit: int) -> list[str]:
        """Registered nicks sorted by their uniqueness key, those after `after`'s."""
        self._flush()
        rows = self._db.execute(
            "SELECT nick FROM owners WHERE nick_key > ? ORDER BY nick_key LIMIT ?",
            (nick_key(after) if after else "", limit),
        )
        return [str(row[0]) for row in rows]

    # -- upkeep --------------------------------------------------------------------------

    def prune(self) -> int:
        """Delete at most PRUNE_BATCH of the oldest messages past retention, of each kind;
        how many. Committed with the next `commit`. Costs a row read or two per kind when
        nothing is due."""
        cutoff_ms = self._now_ms() - int(self.retain_days * 86_400_000)
        deleted = 0
        try:
            newest_post = self._db.execute("SELECT max(id) FROM room_events").fetchone()[0]
        except sqlite3.Error as exc:
            log.error("pruning room_events failed: %s", exc)
            newest_post = None
        for table, column, newest in (
            ("broadcasts", "seq", self.last_seq),
            ("privates", "id", self._last_private_id),
            # Rooms' events, all rooms together (a room's own numbering goes on).
            ("room_events", "id", newest_post or 0),
        ):
            by_count = newest - self.retain_messages

            def due(row: tuple[int, int], by_count: int = by_count) -> bool:
                return row[0] <= by_count or row[1] < cutoff_ms

            try:
                select = f"SELECT {column}, time_ms FROM {table} ORDER BY {column} LIMIT ?"
                first = self._db.execute(select, (1,)).fetchall()
                if not first or not due(first[0]):
                    continue
                doomed = [row[0] for row in self._db.execute(select, (PRUNE_BATCH,)) if due(row)]
                deleted += self._write(f"DELETE FROM {table} WHERE {column} <= ?", (doomed[-1],))
            except (StoreError, sqlite3.Error) as exc:
                log.error("pruning %s failed: %s", table, exc)
        return deleted

    def index(self) -> int:
        """Add at most INDEX_BATCH of the chat messages written since the last call to the
        search index, in a transaction of its own; how many. Searches find a message once
        it is indexed: within a turn or two of the loop's upkeep."""
        if self._db.in_transaction or self._rows.any():
            return 0  # a batch is open: next time
        done = 0
        db = self._db
        try:
            db.execute("BEGIN")
            for table, column, kind, chat_kind in (
                ("broadcasts", "seq", "kind", _MESSAGE),
                ("privates", "id", "1", 1),
                ("room_events", "id", "kind", _POSTED),
            ):
                key = f"indexed_{table}"
                upto = int(self._meta(key) or 0)
                extra = ", sender_key, recipient_key" if table == "privates" else ""
                rows = db.execute(
                    f"SELECT {column}, {kind}, text{extra} FROM {table} WHERE {column} > ? "
                    f"ORDER BY {column} LIMIT ?",
                    (upto, INDEX_BATCH),
                ).fetchall()
                if not rows:
                    continue
                chat = [(row[0], row[2]) for row in rows if row[1] == chat_kind]
                db.executemany(f"INSERT INTO {table}_text (rowid, text) VALUES (?, ?)", chat)
                if extra:
                    db.executemany(
                        "INSERT INTO conversations (pair, id) VALUES (?, ?)",
                        [(_pair(row[3], row[4]), row[0]) for row in rows],
                    )
                db.execute("UPDATE meta SET value = ? WHERE key = ?", (str(rows[-1][0]), key))
                done += len(chat)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            log.error("indexing for search failed: %s", exc)
            return 0
        return done

    def _meta(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row is not None else ""

    def _max_private_id(self) -> int:
        row = self._db.execute("SELECT max(id) FROM privates").fetchone()
        return int(row[0] or 0)

    def close(self) -> None:
        """Commit what is pending (if it can) and close the file."""
        try:
            self.commit()
        except StoreError as exc:
            log.error("closing the store: last writes lost: %s", exc)
        if self._checkpoints is not None:
            self._checkpoints.stop()
        self._db.close()

    def _now_ms(self) -> int:
        return int(self._wall_clock() * 1000)


#: A `before` above every number.
_NO_LIMIT: Final = 2**62

_INSERT_BROADCAST: Final = (
    "INSERT INTO broadcasts (seq, room, kind, msg_id, sender, sender_key, text, time_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_PRIVATE: Final = "INSERT INTO privates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_DONE: Final = "DELETE FROM waiting WHERE id = ?"
_INSERT_ROOM_EVENT: Final = (
    "INSERT INTO room_events (room_key, seq, kind, msg_id, nick, text, time_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# Room event kinds, as stored.
_ENTERED: Final = 1
_PARTED: Final = 2
_POSTED: Final = 3
_TOPIC: Final = 4
_MODE: Final = 5


@dataclass(slots=True)
class _Pending:
    """Rows of one kind for the next commit, and how many of them are in the open
    transaction already (flushed)."""

    name: str
    #: The statement each row is written with; "" for rows that carry their own
    #: (statement, values).
    sql: str
    rows: list[Any] = field(default_factory=list)
    flushed: int = 0

    def flush(self, db: sqlite3.Connection) -> None:
        """Write the rows not flushed yet into `db`'s open transaction."""
        new = self.rows[self.flushed :]
        if not new:
            return  # even an empty executemany costs a statement's call
        if self.sql:
            db.executemany(self.sql, new)
        else:
            for sql, values in new:
                db.execute(sql, values)
        self.flushed = len(self.rows)


class _Rows:
    """The rows of the next commit, by kind, written in this order."""

    def __init__(self) -> None:
        self.broadcasts = _Pending("broadcasts", _INSERT_BROADCAST)
        #: #general's events as a cluster numbered them: no commit is owed for them.
        self.mirrored = _Pending("mirrored broadcasts", _INSERT_BROADCAST)
        self.privates = _Pending("privates", _INSERT_PRIVATE)
        self.done = _Pending("receipts", _DONE)
        self.room_events = _Pending("room events", _INSERT_ROOM_EVENT)
        #: Statements run at once (owners, rooms, pruning), in order.
        self.statements = _Pending("statements", "")
        self.kinds = (
            self.broadcasts,
            self.mirrored,
            self.privates,
            self.done,
            self.room_events,
            self.statements,
        )
        #: How many of `privates` are kept for an owner who is away (not sent to anyone).
        self.kept_for_later = 0

    def unflush(self) -> None:
        """Nothing is in the transaction (it was rolled back)."""
        for kind in self.kinds:
            kind.flushed = 0

    def unflushed(self) -> bool:
        return any(len(kind.rows) > kind.flushed for kind in self.kinds)

    def any(self) -> bool:
        return any(kind.rows for kind in self.kinds)

    def count(self) -> int:
        return sum(len(kind.rows) for kind in self.kinds)

    def clear(self) -> None:
        for kind in self.kinds:
            kind.rows, kind.flushed = [], 0
        self.kept_for_later = 0

    def bound(self, limit: int) -> None:
        """Keep at most `limit` rows of each kind, the newest: a disk that stays full must
        not fill the broker's memory instead."""
        for kind in self.kinds:
            excess = len(kind.rows) - limit
            if excess > 0:
                log.error("the store dropped %d unwritten %s rows", excess, kind.name)
                del kind.rows[:excess]


class _Checkpoints:
    """A thread that checkpoints the database at `path` every CHECKPOINT_INTERVAL_S, on a
    connection of its own: the loop's commits only append to the write-ahead log, and the
    disk syncs of a checkpoint happen here, outside the GIL (sqlite3 releases it)."""

    def __init__(self, path: str) -> None:
        self._stopping = threading.Event()
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._thread = threading.Thread(target=self._run, name="checkpoints", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(CHECKPOINT_INTERVAL_S):
            try:
                # PASSIVE: copies what no reader needs, never waits for the writer.
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                log.warning("checkpoint failed: %s", exc)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        try:
            # The last one truncates the log: a stopped broker leaves one file behind.
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.warning("checkpoint failed: %s", exc)
        self._db.close()


def _create_private(path: str) -> None:
    """Make the file at `path` if it does not exist, readable by its owner only: it holds
    private messages. (SQLite gives its journal files the same mode.)"""
    try:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise StoreUnusable(f"{path}: {exc.strerror}") from exc


def _statements(script: str) -> list[str]:
    """The statements of a migration, one at a time (executescript would commit)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return [s for s in statements if s]


def _broadcast_row(event: BroadcastEvent, room: str, now_ms: int) -> tuple[Any, ...]:
    match event:
        case ev.Message(seq, msg_id, sender, text, time_ms):
            return (seq, room, _MESSAGE, msg_id, sender, nick_key(sender), text, time_ms)
        case ev.Notice(seq, text):
            return (seq, room, _NOTICE, "", "", "", text, now_ms)
        case ev.Joined(seq, nick):
            return (seq, room, _JOIN, "", nick, nick_key(nick), "", now_ms)
        case ev.Left(seq, nick, reason):
            return (seq, room, _LEAVE, "", nick, nick_key(nick), reason, now_ms)
        case ev.AwayChanged(seq, nick, away):
            return (seq, room, _AWAY, "", nick, nick_key(nick), away, now_ms)
        case ev.Renamed(seq, nick, new_nick):
            return (seq, room, _RENAMED, "", nick, nick_key(nick), new_nick, now_ms)
    raise TypeError(f"not a broadcast: {event!r}")  # pragma: no cover


def _broadcast_event(
    seq: int, kind: int, msg_id: str, sender: str, text: str, time_ms: int
) -> BroadcastEvent:
    if kind == _MESSAGE:
        return ev.Message(seq, msg_id, sender, text, time_ms)
    if kind == _NOTICE:
        return ev.Notice(seq, text)
    if kind == _JOIN:
        return ev.Joined(seq, sender)
    if kind == _AWAY:
        return ev.AwayChanged(seq, sender, text)
    if kind == _RENAMED:
        return ev.Renamed(seq, sender, text)
    return ev.Left(seq, sender, text)


def _page(rows: list[Any], limit: int) -> Page:
    """Rows newest first, one more than `limit` if older ones exist, as a Page."""
    more = len(rows) > limit
    rows = rows[:limit]
    entries = [Entry(*row) for row in reversed(rows)]
    return Page(entries, entries[0].id if more and entries else 0)


def _room_event_row(event: RoomEvent, now_ms: int) -> tuple[Any, ...]:
    key = room_key(event.room)
    match event:
        case ev.Entered(seq=seq, nick=nick):
            return (key, seq, _ENTERED, "", nick, "", now_ms)
        case ev.Parted(seq=seq, nick=nick, reason=reason):
            return (key, seq, _PARTED, "", nick, reason, now_ms)
        case ev.Posted(seq=seq, msg_id=msg_id, sender=sender, text=text, time_ms=time_ms):
            return (key, seq, _POSTED, msg_id, sender, text, time_ms)
        case ev.TopicSet(seq=seq, nick=nick, topic=topic):
            return (key, seq, _TOPIC, "", nick, topic, now_ms)
        case ev.ModeSet(seq=seq, nick=nick, mode=mode):
            return (key, seq, _MODE, "", nick, mode, now_ms)
    raise ValueError(f"not a room event: {event!r}")  # pragma: no cover


def _room_event(
    room: str, seq: int, kind: int, msg_id: str, nick: str, text: str, time_ms: int
) -> RoomEvent:
    if kind == _ENTERED:
        return ev.Entered(room, seq, nick)
    if kind == _PARTED:
        return ev.Parted(room, seq, nick, text)
    if kind == _POSTED:
        return ev.Posted(room, seq, msg_id, nick, text, time_ms)
    if kind == _TOPIC:
        return ev.TopicSet(room, seq, nick, text)
    return ev.ModeSet(room, seq, nick, text)
