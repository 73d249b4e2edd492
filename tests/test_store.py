"""The broker's store on real SQLite files: what it keeps, for how long, what it does with
a full disk, a damaged file or an older schema, and how it searches hostile words."""

import os
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from broker.core import token_hash
from broker.store import (
    MIGRATIONS,
    PRUNE_BATCH,
    SCHEMA_VERSION,
    AlreadyStored,
    Entry,
    Store,
    StoredRoom,
    StoreError,
    StoreUnusable,
)
from messages import events as ev

ALICE = token_hash("alice-session-token-000000")
BOB = token_hash("bob-session-token-0000000000")


def said(seq: int, sender: str, text: str, time_ms: int = 1_000) -> ev.Message:
    return ev.Message(seq, f"id-{seq}", sender, text, time_ms)


def private(n: int, sender: str, recipient: str, text: str) -> ev.PrivateMessage:
    return ev.PrivateMessage(f"p-{n}", sender, recipient, text, 2_000 + n)


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "chat.db")


def test_numbers_and_epoch_go_on_after_the_file_is_opened_again(path: str) -> None:
    store = Store(path)
    epoch = store.epoch
    store.add_broadcast(ev.Joined(1, "alice"))
    store.add_broadcast(said(2, "alice", "hello"))
    store.commit()
    store.add_broadcast(said(3, "alice", "never committed"))
    # The process dies: no close, no commit.
    del store
    again = Store(path)
    assert (again.epoch, again.last_seq) == (epoch, 2)
    assert again.broadcasts(1, 10) == [ev.Joined(1, "alice"), said(2, "alice", "hello")]


def test_a_store_in_memory_keeps_nothing_and_has_a_new_epoch_each_time() -> None:
    one, two = Store(), Store()
    one.add_broadcast(said(1, "alice", "hi"))
    one.commit()
    assert one.epoch != two.epoch
    assert two.last_seq == 0


def test_the_file_is_readable_by_its_owner_only(path: str) -> None:
    Store(path).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_history_pages_go_back_through_messages_and_notices_only(path: str) -> None:
    store = Store(path)
    store.add_broadcast(ev.Joined(1, "alice"))
    for seq in range(2, 12):
        store.add_broadcast(said(seq, "alice", f"line {seq}"))
    store.add_broadcast(ev.Notice(12, "operator: hello all"))
    store.add_broadcast(ev.Left(13, "alice", "quit"))
    store.commit()
    page = store.history(0, 4)
    assert [e.id for e in page.entries] == [9, 10, 11, 12]
    assert page.entries[-1] == Entry(12, "", "", "operator: hello all", page.entries[-1].time_ms)
    older = store.history(page.next_before, 100)
    assert [e.id for e in older.entries] == list(range(2, 9))
    assert older.next_before == 0


def test_a_conversation_is_both_directions_between_two_nicks_only(path: str) -> None:
    store = Store(path)
    store.add_private(private(1, "alice", "bob", "hi bob"), ALICE, BOB)
    store.add_private(private(2, "Bob", "alice", "hi alice"), BOB, ALICE)
    store.add_private(private(3, "alice", "carol", "hi carol"), ALICE, "")
    store.commit()
    page = store.conversation("ALICE", "bob", 0, 10)
    assert [e.text for e in page.entries] == ["hi bob", "hi alice"]
    assert page.entries[0].recipient == "bob"


def test_search_sees_broadcasts_and_the_viewers_own_privates(path: str) -> None:
    store = Store(path)
    store.add_broadcast(said(1, "alice", "the deploy is done"))
    store.add_private(private(1, "alice", "bob", "deploy secret for bob"), ALICE, BOB)
    store.add_private(private(2, "carol", "dave", "deploy secret for dave"), "", "")
    store.commit()
    assert store.search("bob", "deploy", 10).entries == [], "found before it is indexed"
    assert store.index() == 3
    texts = [e.text for e in store.search("bob", "deploy", 10).entries]
    assert texts == ["the deploy is done", "deploy secret for bob"]
    assert [e.text for e in store.search("bob", "deploy secret", 10).entries] == [
        "deploy secret for bob"
    ]


def test_search_sees_the_posts_of_the_rooms_it_is_asked_about_only(path: str) -> None:
    store = Store(path)
    for name in ("#dev", "#ops"):
        store.save_room(StoredRoom(name, "e1", "", False, ALICE, ""))
    store.add_room_event(ev.Posted("#dev", 1, "d1", "alice", "deploy at noon", 5_000))
    store.add_room_event(ev.Posted("#ops", 1, "o1", "carol", "deploy key rotated", 6_000))
    store.keep_room_event(ev.Entered("#dev", 2, "bob"))
    store.commit()
    assert store.index() == 2
    hits = store.search(None, "deploy", 10, ["#DEV"]).entries
    assert [(e.sender, e.recipient, e.text) for e in hits] == [("alice", "#dev", "deploy at noon")]
    assert store.search(None, "deploy", 10).entries == []
    # A room that goes takes its posts out of the index.
    store.drop_room("#dev")
    store.commit()
    assert store.search(None, "deploy", 10, ["#dev", "#ops"]).entries[0].text == (
        "deploy key rotated"
    )
    assert len(store.search(None, "deploy", 10, ["#dev", "#ops"]).entries) == 1


@pytest.mark.parametrize(
    ("words", "hits"),
    [
        ('"', 0),
        ("NEAR(a b)", 0),
        ("text:deploy", 0),
        ("*", 0),
        ("a OR", 0),
        ("(", 0),
        ("'; DROP TABLE privates; --", 0),
        # Punctuation is not syntax: the word is still found.
        ("-deploy", 1),
        ("DEPLOY!", 1),
    ],
)
def test_search_takes_words_literally_whatever_they_are(path: str, words: str, hits: int) -> None:
    store = Store(path)
    store.add_broadcast(said(1, "alice", "the deploy is done"))
    store.commit()
    store.index()
    assert len(store.search("bob", words, 10).entries) == hits
    assert store.search("bob", "deploy", 10).entries[0].text == "the deploy is done"


def test_pruning_takes_a_bounded_slice_per_call(path: str) -> None:
    store = Store(path, retain_messages=10)
    count = PRUNE_BATCH + 500
    for seq in range(1, count + 1):
        store.add_broadcast(said(seq, "alice", f"line {seq}", time_ms=int(time.time() * 1000)))
    store.commit()
    while store.index():
        pass
    assert store.prune() == PRUNE_BATCH
    store.commit()
    assert store.prune() == count - 10 - PRUNE_BATCH
    store.commit()
    assert store.first_seq() == count - 9
    assert store.search("bob", "line", 100).entries[0].id == count - 9


def test_messages_older_than_the_retention_are_pruned(path: str) -> None:
    now = 10 * 86_400.0
    store = Store(path, retain_days=1, wall_clock=lambda: now)
    store.add_broadcast(said(1, "alice", "old", time_ms=1_000))
    store.add_broadcast(said(2, "alice", "new", time_ms=int(now * 1000)))
    store.commit()
    assert store.prune() == 1
    assert [e.text for e in store.history(0, 10).entries] == ["new"]
    # Rooms' posts too.
    store.save_room(StoredRoom("#dev", "e1", "", False, ALICE, ""))
    store.add_room_event(ev.Posted("#dev", 1, "d1", "alice", "old post", 1_000))
    store.add_room_event(ev.Posted("#dev", 2, "d2", "alice", "new post", int(now * 1000)))
    store.commit()
    assert store.prune() == 1
    assert [e.text for e in store.room_history("#dev", 0, 10).entries] == ["new post"]


def test_a_full_disk_fails_the_commit_keeps_its_rows_and_refuses_chat(path: str) -> None:
    store = Store(path, max_pages=64)
    committed = 0
    with pytest.raises(StoreError, match="disk is full"):
        while True:
            store.add_broadcast(said(committed + 1, "alice", "x" * 2000))
            store.commit()
            committed += 1
    assert store.failing == "the server's disk is full"
    # Chat messages are refused now; a join still happens, and is kept to write later.
    with pytest.raises(StoreError, match="disk is full"):
        store.add_broadcast(said(committed + 2, "alice", "refused"))
    store.keep_broadcast(ev.Joined(committed + 2, "bob"))
    assert store.dirty
    store.close()
    assert Store(path).last_seq == committed


def test_a_damaged_file_is_refused_with_a_clear_reason(path: str) -> None:
    Path(path).write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreUnusable, match="not a database"):
        Store(path)


def test_a_file_of_a_newer_broker_is_refused(path: str) -> None:
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreUnusable, match="newer broker"):
        Store(path)


def test_an_older_schema_is_upgraded_and_its_messages_found(path: str) -> None:
    # A file of the first schema, with a message in it.
    with sqlite3.connect(path) as db:
        db.executescript(MIGRATIONS[0])
        db.execute(
            "INSERT INTO broadcasts VALUES (1, '', 1, 'id-1', 'alice', 'alice', 'kept words', 5)"
        )
        db.execute("PRAGMA user_version = 1")
    store = Store(path)
    assert store.last_seq == 1
    store.index()
    assert [e.text for e in store.search("bob", "kept", 10).entries] == ["kept words"]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_resent_message_is_recognized_as_stored(path: str) -> None:
    store = Store(path)
    store.add_broadcast(said(1, "alice", "once"))
    store.add_private(private(1, "alice", "bob", "once"), ALICE, BOB)
    store.commit()
    again = Store(path)
    with pytest.raises(AlreadyStored):
        again.add_broadcast(ev.Message(2, "id-1", "ALICE", "once", 1))
    with pytest.raises(AlreadyStored):
        again.add_private(private(1, "alice", "bob", "once"), ALICE, BOB)
    assert again.last_seq == 1


@pytest.mark.parametrize(
    ("write", "before_ack", "before_sending"),
    [
        # A private to someone present may reach them before the commit, not its ACK.
        (lambda s: s.add_private(private(1, "alice", "bob", "hi"), ALICE, BOB), True, False),
        # Kept for an owner who is away: its STORED waits like an ACK.
        (lambda s: s.add_private(private(1, "alice", "bob", "hi"), ALICE, ""), True, True),
        (lambda s: s.add_broadcast(said(1, "alice", "hi")), True, True),
        (lambda s: s.set_owner("alice", b"k" * 32), True, True),
        (lambda s: None, False, False),
    ],
)
def test_what_must_be_committed_before_it_is_sent(
    path: str, write: Callable[[Store], None], before_ack: bool, before_sending: bool
) -> None:
    store = Store(path)
    write(store)
    assert (store.owes_commit, store.owes_commit_to_send) == (before_ack, before_sending)
    store.commit()
    assert (store.owes_commit, store.owes_commit_to_send) == (False, False)
    # Nothing of a store in memory outlives the process: nothing to wait for.
    memory = Store(":memory:")
    write(memory)
    assert (memory.owes_commit, memory.owes_commit_to_send) == (False, False)


def test_pending_privates_are_kept_for_their_recipients_session(path: str) -> None:
    store = Store(path)
    store.add_private(private(1, "alice", "bob", "for bob"), ALICE, BOB)
    store.add_private(private(2, "alice", "bob", "confirmed"), ALICE, BOB)
    store.private_done("alice", "p-2")
    store.commit()
    again = Store(path)
    assert [p.text for p, _ in again.pending_for("BOB", BOB)] == ["for bob"]
    assert again.pending_for("bob", ALICE) == []
    assert [p.text for p, sender in again.pending_for("bob", None)] == ["for bob"]
    assert again.pending(10)[0][1:] == (ALICE, BOB)


def test_a_file_damaged_under_a_running_store_fails_reads_with_a_reason(path: str) -> None:
    store = Store(path)
    for seq in range(1, 500):
        store.add_broadcast(said(seq, "alice", "x" * 300))
    store.commit()
    with sqlite3.connect(path) as db:  # everything into the file itself
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(path, "r+b") as file:
        file.seek(3 * 4096)
        file.write(bytes(range(256)) * 320)
    with pytest.raises(StoreError, match="damaged"):
        store.broadcasts(1, 500)
