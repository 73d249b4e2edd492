"""What the broker remembers: broadcasts, private messages and owned nicks, in SQLite.

The store is an adapter, not part of the routing rules: the core calls it to write and
read, the socket loop decides when a batch of writes is committed (`commit`, once per
receive batch, before anything of the batch is sent) and when old messages are pruned
(`prune`, a bounded slice at a time). With the path `:memory:` nothing outlives the
process, as before the broker had a store.

Writes never raise into the loop but as `StoreError`: a chat message that cannot be
written is refused (ERROR 507), and the socket loop tells the senders of a batch whose
commit failed. Rows of a failed commit are kept (up to `RETRY_ROWS`) and written again
with the next commit, so that a broadcast that was sent is not lost from the log once
the disk has room again, and its number is not given twice.
"""

import contextlib
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from messages import events as ev
from messages import nick_key

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
#: How long a write waits for a lock another process holds, in ms, before it fails: the
#: loop must not stall behind someone's open transaction on our file.
BUSY_TIMEOUT_MS: Final = 50
#: Rows of failed commits kept to be written again; past this, the oldest are dropped
#: (logged): a disk that stays full must not fill the broker's memory instead.
RETRY_ROWS: Final = 10_000
#: After a failed commit, how long until the rows it kept are tried again with no new
#: ones, in seconds.
RETRY_INTERVAL_S: Final = 1.0
#: Words of a search used, at most; the rest are ignored.
MAX_SEARCH_WORDS: Final = 16
#: Hex digits of a new epoch.
_EPOCH_BYTES: Final = 4

# Broadcast kinds, as stored.
_MESSAGE: Final = 1
_NOTICE: Final = 2
_JOIN: Final = 3
_LEAVE: Final = 4

#: Each step brings a database from the version before it (PRAGMA user_version) to its
#: own; a newer broker upgrades an older file on open, in one transaction.
MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: the log, private messages and owned nicks.
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
    CREATE INDEX broadcasts_history ON broadcasts (room, seq) WHERE kind <= 2;
    CREATE UNIQUE INDEX broadcasts_msg_id ON broadcasts (sender_key, msg_id) WHERE kind = 1;
    CREATE TABLE privates (
        id INTEGER PRIMARY KEY,
        msg_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        sender_key TEXT NOT NULL,
        recipient TEXT NOT NULL,
        recipient_key TEXT NOT NULL,
        pair TEXT NOT NULL,
        text TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        sender_token TEXT NOT NULL,
        recipient_token TEXT NOT NULL,
        pending INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX privates_msg_id ON privates (sender_key, msg_id);
    CREATE INDEX privates_pair ON privates (pair, id);
    CREATE INDEX privates_pending ON privates (recipient_key, id) WHERE pending = 1;
    CREATE INDEX privates_waiting ON privates (id) WHERE pending = 1;
    CREATE TABLE owners (
        nick_key TEXT PRIMARY KEY,
        nick TEXT NOT NULL,
        public_key BLOB NOT NULL,
        since_ms INTEGER NOT NULL
    );
    """,
    # 2: full-text search over chat messages (not joins, leaves or notices).
    """
    CREATE VIRTUAL TABLE broadcasts_text USING fts5(
        text, content='broadcasts', content_rowid='seq'
    );
    CREATE TRIGGER broadcasts_text_add AFTER INSERT ON broadcasts WHEN new.kind = 1 BEGIN
        INSERT INTO broadcasts_text (rowid, text) VALUES (new.seq, new.text);
    END;
    CREATE TRIGGER broadcasts_text_remove AFTER DELETE ON broadcasts WHEN old.kind = 1 BEGIN
        INSERT INTO broadcasts_text (broadcasts_text, rowid, text)
        VALUES ('delete', old.seq, old.text);
    END;
    INSERT INTO broadcasts_text (rowid, text) SELECT seq, text FROM broadcasts WHERE kind = 1;
    CREATE VIRTUAL TABLE privates_text USING fts5(
        text, content='privates', content_rowid='id'
    );
    CREATE TRIGGER privates_text_add AFTER INSERT ON privates BEGIN
        INSERT INTO privates_text (rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER privates_text_remove AFTER DELETE ON privates BEGIN
        INSERT INTO privates_text (privates_text, rowid, text)
        VALUES ('delete', old.id, old.text);
    END;
    INSERT INTO privates_text (rowid, text) SELECT id, text FROM privates;
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


class StoreError(Exception):
    """A write failed (disk full, database locked or corrupt); str() says why, for users."""


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


def pair_key(one: str, other: str) -> str:
    """What names the conversation between two nicks, whichever sent."""
    first, second = sorted((nick_key(one), nick_key(other)))
    return f"{first}\n{second}"


def search_query(words: str) -> str:
    """`words` as an FTS5 query that matches them all, each taken literally: user text is
    never FTS5 syntax (quotes, operators, column filters)."""
    terms = words.split()[:MAX_SEARCH_WORDS]
    return " ".join('"' + term.replace('"', '""') + '"' for term in terms)


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
        synchronous: str = "NORMAL",
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.durable = path != IN_MEMORY
        self.retain_days = retain_days
        self.retain_messages = retain_messages
        self._wall_clock = wall_clock
        # Rows written since the last commit, and those of failed commits: (sql, values).
        self._batch: list[tuple[str, Sequence[Any]]] = []
        self._retry: list[tuple[str, Sequence[Any]]] = []
        self._retry_at = 0.0
        if self.durable:
            _create_private(path)
        try:
            # Autocommit mode: the store begins and commits its own transactions.
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if self.durable:
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute(f"PRAGMA synchronous = {synchronous}")
            if max_pages is not None:
                self._db.execute(f"PRAGMA max_page_count = {int(max_pages)}")
            self._upgrade()
            self.epoch = self._epoch()
            row = self._db.execute("SELECT max(seq) FROM broadcasts").fetchone()
            self.last_seq: int = row[0] or 0
        except sqlite3.Error as exc:
            raise StoreUnusable(f"{path}: {exc}") from exc

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
            return secrets.token_hex(_EPOCH_BYTES)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        if row is not None:
            return str(row[0])
        epoch = secrets.token_hex(_EPOCH_BYTES)
        self._db.execute("INSERT INTO meta (key, value) VALUES ('epoch', ?)", (epoch,))
        return epoch

    # -- writing -----------------------------------------------------------------------

    def _write(self, sql: str, values: Sequence[Any]) -> sqlite3.Cursor:
        """Run one write in the open transaction (opening one if none is)."""
        try:
            if not self._db.in_transaction:
                self._db.execute("BEGIN")
            cursor = self._db.execute(sql, values)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            self._failed_statement()
            raise StoreError(_why(exc)) from exc
        self._batch.append((sql, values))
        return cursor

    def _failed_statement(self) -> None:
        # SQLite may have rolled the whole transaction back (a full disk, a lock): then
        # what this batch wrote before is gone too, and is written again at commit.
        if not self._db.in_transaction and self._batch:
            self._keep_for_retry(self._batch)
            self._batch = []

    def add_broadcast(self, event: BroadcastEvent, room: str = MAIN_ROOM) -> None:
        """Write `event` (numbered `last_seq + 1`). Raises StoreError: nothing written."""
        if event.seq != self.last_seq + 1:
            raise ValueError(f"broadcast {event.seq} out of order after {self.last_seq}")
        self._write(_INSERT_BROADCAST, _broadcast_row(event, room, self._now_ms()))
        self.last_seq = event.seq

    def keep_broadcast(self, event: BroadcastEvent, room: str = MAIN_ROOM) -> None:
        """Write `event` like `add_broadcast`, but if that fails keep it to write again with
        the next commit: for events that happen whether or not they are stored (joins,
        leaves, notices)."""
        try:
            self.add_broadcast(event, room)
        except StoreError as exc:
            log.error("broadcast %d not stored yet: %s", event.seq, exc)
            self._keep_for_retry([(_INSERT_BROADCAST, _broadcast_row(event, room, self._now_ms()))])
            self.last_seq = event.seq

    def has_message(self, sender: str, msg_id: str) -> bool:
        """True if a chat message (broadcast or private) from `sender` with `msg_id` is
        stored: a resend from before a restart."""
        key = nick_key(sender)
        row = self._db.execute(
            "SELECT 1 FROM broadcasts WHERE sender_key = ? AND msg_id = ? AND kind = 1 "
            "UNION ALL SELECT 1 FROM privates WHERE sender_key = ? AND msg_id = ? LIMIT 1",
            (key, msg_id, key, msg_id),
        ).fetchone()
        return row is not None

    def add_private(
        self, private: ev.PrivateMessage, sender_token: str, recipient_token: str
    ) -> None:
        """Write `private`, sent from the session whose token hashes to `sender_token` to
        the one of `recipient_token`, as waiting for its RECEIVED. Raises StoreError, or
        sqlite3.IntegrityError if it is stored already (a resend)."""
        sender, recipient = nick_key(private.sender), nick_key(private.recipient)
        values = (
            private.msg_id,
            private.sender,
            sender,
            private.recipient,
            recipient,
            pair_key(private.sender, private.recipient),
            private.text,
            private.time_ms,
            sender_token,
            recipient_token,
            1,
        )
        self._write(_INSERT_PRIVATE, values)

    def private_done(self, sender: str, msg_id: str) -> None:
        """`sender`'s private `msg_id` is no longer waiting (confirmed, or failed)."""
        try:
            self._write(
                "UPDATE privates SET pending = 0 WHERE sender_key = ? AND msg_id = ?",
                (nick_key(sender), msg_id),
            )
        except StoreError as exc:
            log.error("private %s of %s not marked done: %s", msg_id, sender, exc)

    def pending_for(self, recipient: str, token: str | None) -> list[tuple[ev.PrivateMessage, str]]:
        """The private messages to `recipient` still waiting for its RECEIVED, oldest first,
        each with its sender's token hash: those sent to the session of `token` (a hash), or
        all of them for None (the nick's owner)."""
        rows = self._db.execute(
            "SELECT msg_id, sender, recipient, text, time_ms, sender_token, recipient_token "
            "FROM privates WHERE recipient_key = ? AND pending = 1 ORDER BY id",
            (nick_key(recipient),),
        )
        return [
            (ev.PrivateMessage(*row[:5]), row[5])
            for row in rows
            if token is None or row[6] == token
        ]

    def pending(self, limit: int) -> list[tuple[ev.PrivateMessage, str, str]]:
        """The oldest `limit` private messages still waiting for their RECEIVED, each with
        the token hashes of its sender's and its recipient's sessions."""
        rows = self._db.execute(
            "SELECT msg_id, sender, recipient, text, time_ms, sender_token, recipient_token "
            "FROM privates WHERE pending = 1 ORDER BY id LIMIT ?",
            (limit,),
        )
        return [(ev.PrivateMessage(*row[:5]), row[5], row[6]) for row in rows]

    def set_owner(self, nick: str, public_key: bytes) -> None:
        """`nick` belongs to the holder of `public_key` from now on. Raises StoreError."""
        try:
            self._write(
                "INSERT OR REPLACE INTO owners (nick_key, nick, public_key, since_ms) "
                "VALUES (?, ?, ?, ?)",
                (nick_key(nick), nick, public_key, self._now_ms()),
            )
        except sqlite3.IntegrityError as exc:  # pragma: no cover - no constraint to break
            raise StoreError(str(exc)) from exc

    def drop_owner(self, nick: str) -> bool:
        """Free `nick`; True if it was registered. Raises StoreError."""
        if self.owner(nick) is None:
            return False
        self._write("DELETE FROM owners WHERE nick_key = ?", (nick_key(nick),))
        return True

    def commit(self) -> None:
        """Make what was written since the last commit durable. Raises StoreError, having
        kept the batch to write again with the next commit."""
        if not self._db.in_transaction and (not self._retry or time.monotonic() < self._retry_at):
            self._batch = []
            return
        try:
            if self._retry:
                if not self._db.in_transaction:
                    self._db.execute("BEGIN")
                for sql, values in self._retry:
                    self._db.execute(sql, values)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._keep_for_retry(self._batch)
            self._batch = []
            self._retry_at = time.monotonic() + RETRY_INTERVAL_S
            raise StoreError(_why(exc)) from exc
        if self._retry:
            log.warning("stored %d rows that an earlier commit failed to", len(self._retry))
        self._retry = []
        self._batch = []

    def _keep_for_retry(self, rows: Iterable[tuple[str, Sequence[Any]]]) -> None:
        # Written again in order; an insert already done is replaced, not doubled.
        self._retry.extend((_retryable(sql), values) for sql, values in rows)
        excess = len(self._retry) - RETRY_ROWS
        if excess > 0:
            log.error("the store dropped %d unwritten rows: the disk stays full", excess)
            del self._retry[:excess]

    # -- reading -----------------------------------------------------------------------

    def broadcasts(self, from_seq: int, limit: int) -> list[BroadcastEvent]:
        """Stored broadcasts numbered `from_seq` or later, oldest first, at most `limit`."""
        rows = self._db.execute(
            "SELECT seq, kind, msg_id, sender, text, time_ms FROM broadcasts "
            "WHERE seq >= ? ORDER BY seq LIMIT ?",
            (from_seq, limit),
        )
        return [_broadcast_event(*row) for row in rows]

    def recent(self, count: int) -> list[BroadcastEvent]:
        """The last `count` stored broadcasts, oldest first."""
        return self.broadcasts(max(self.last_seq - count + 1, 1), count)

    def first_seq(self) -> int:
        """The number of the oldest stored broadcast (`last_seq + 1` if none is)."""
        row = self._db.execute("SELECT min(seq) FROM broadcasts").fetchone()
        return int(row[0]) if row[0] is not None else self.last_seq + 1

    def history(self, before: int, limit: int, room: str = MAIN_ROOM) -> Page:
        """The chat messages and notices of `room` numbered below `before` (0: the latest),
        the newest `limit` of them."""
        before = before or self.last_seq + 1
        rows = self._db.execute(
            "SELECT seq, sender, '', text, time_ms FROM broadcasts "
            "WHERE room = ? AND kind <= 2 AND seq < ? ORDER BY seq DESC LIMIT ?",
            (room, before, limit + 1),
        ).fetchall()
        return _page(rows, limit)

    def conversation(self, me: str, other: str, before: int, limit: int) -> Page:
        """The private messages between `me` and `other`, either way, numbered below
        `before` (0: the latest), the newest `limit` of them."""
        before = before or _NO_LIMIT
        rows = self._db.execute(
            "SELECT id, sender, recipient, text, time_ms FROM privates "
            "WHERE pair = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (pair_key(me, other), before, limit + 1),
        ).fetchall()
        return _page(rows, limit)

    def search(self, viewer: str, words: str, limit: int) -> Page:
        """The newest `limit` chat messages that contain all of `words`, among the
        broadcasts and the private messages `viewer` sent or received; oldest first."""
        query = search_query(words)
        if not query:
            return Page([], 0)
        key = nick_key(viewer)
        try:
            public = self._db.execute(
                "SELECT seq, sender, '', broadcasts.text, time_ms FROM broadcasts "
                "JOIN broadcasts_text ON broadcasts_text.rowid = broadcasts.seq "
                "WHERE broadcasts_text MATCH ? ORDER BY seq DESC LIMIT ?",
                (query, limit),
            ).fetchall()
            private = self._db.execute(
                "SELECT id, sender, recipient, privates.text, time_ms FROM privates "
                "JOIN privates_text ON privates_text.rowid = privates.id "
                "WHERE privates_text MATCH ? AND (sender_key = ? OR recipient_key = ?) "
                "ORDER BY id DESC LIMIT ?",
                (query, key, key, limit),
            ).fetchall()
        except sqlite3.Error as exc:
            log.warning("search for %r failed: %s", words, exc)
            return Page([], 0)
        hits = sorted(public + private, key=lambda row: (row[4], bool(row[2]), row[0]))[-limit:]
        return Page([Entry(*row) for row in hits], 0)

    def owner(self, nick: str) -> bytes | None:
        """The public key that owns `nick`, if it is registered."""
        row = self._db.execute(
            "SELECT public_key FROM owners WHERE nick_key = ?", (nick_key(nick),)
        ).fetchone()
        return bytes(row[0]) if row is not None else None

    def owners(self, after: str, limit: int) -> list[str]:
        """Registered nicks sorted by their uniqueness key, those after `after`'s."""
        rows = self._db.execute(
            "SELECT nick FROM owners WHERE nick_key > ? ORDER BY nick_key LIMIT ?",
            (nick_key(after) if after else "", limit),
        )
        return [str(row[0]) for row in rows]

    # -- upkeep --------------------------------------------------------------------------

    def prune(self) -> int:
        """Delete at most PRUNE_BATCH of the oldest messages past retention, of each kind;
        how many. Committed with the next `commit`."""
        cutoff_ms = self._now_ms() - int(self.retain_days * 86_400_000)
        deleted = 0
        for table, column, newest in (
            ("broadcasts", "seq", self.last_seq),
            ("privates", "id", self._last_private_id()),
        ):
            oldest = self._db.execute(
                f"SELECT {column}, time_ms FROM {table} ORDER BY {column} LIMIT ?",
                (PRUNE_BATCH,),
            ).fetchall()
            by_count = newest - self.retain_messages
            doomed = [row[0] for row in oldest if row[0] <= by_count or row[1] < cutoff_ms]
            if not doomed:
                continue
            try:
                cursor = self._write(f"DELETE FROM {table} WHERE {column} <= ?", (doomed[-1],))
            except StoreError as exc:
                log.error("pruning %s failed: %s", table, exc)
                continue
            deleted += cursor.rowcount
        return deleted

    def _last_private_id(self) -> int:
        row = self._db.execute("SELECT max(id) FROM privates").fetchone()
        return int(row[0] or 0)

    def close(self) -> None:
        """Commit what is pending (if it can) and close the file."""
        try:
            self.commit()
        except StoreError as exc:
            log.error("closing the store: last writes lost: %s", exc)
        self._db.close()

    def _now_ms(self) -> int:
        return int(self._wall_clock() * 1000)


#: A `before` above every number.
_NO_LIMIT: Final = 2**62

_INSERT_BROADCAST: Final = (
    "INSERT INTO broadcasts (seq, room, kind, msg_id, sender, sender_key, text, time_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_PRIVATE: Final = (
    "INSERT INTO privates (msg_id, sender, sender_key, recipient, recipient_key, pair, text, "
    "time_ms, sender_token, recipient_token, pending) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _create_private(path: str) -> None:
    """Make the file at `path` if it does not exist, readable by its owner only: it holds
    private messages. (SQLite gives its journal files the same mode.)"""
    try:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise StoreUnusable(f"{path}: {exc.strerror}") from exc


def _retryable(sql: str) -> str:
    """`sql` made safe to run again after some of a batch may have been written."""
    if sql.startswith("INSERT INTO"):
        return "INSERT OR IGNORE INTO" + sql[len("INSERT INTO") :]
    return sql


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
    return ev.Left(seq, sender, text)


def _page(rows: list[Any], limit: int) -> Page:
    """Rows newest first, one more than `limit` if older ones exist, as a Page."""
    more = len(rows) > limit
    rows = rows[:limit]
    entries = [Entry(*row) for row in reversed(rows)]
    return Page(entries, entries[0].id if more and entries else 0)
