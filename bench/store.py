"""The store at scale: a broker's start, history pages and searches on a large database.

    python -m bench.store [--messages 1000000] [--privates 100000] [--repeat 200]

Fills a new database (in a temporary directory) with `--messages` broadcasts and
`--privates` private messages, all indexed for search, then measures:

- how long `python -m broker` takes to start on it (until it prints that it listens), and
  the same with no store (`--db :memory:`) in the same run, as the baseline;
- a history page of 100 (the newest, one from the middle, the oldest), a conversation page
  and searches (a rare word, a common one), each the median and the worst of `--repeat`.
"""

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from broker.store import Store
from messages import nick_key

#: Words the messages are made of; the last one is rare (one message in RARE_EVERY has it).
WORDS = [
    *("the", "deploy", "is", "done", "we", "ship", "on", "friday", "lunch", "coffee"),
    *("review", "the", "build", "broke", "again", "who", "has", "the", "keys", "meeting"),
    *("moved", "to", "three"),
]
RARE = "zanzibar"
RARE_EVERY = 10_000
COMMON = "deploy friday"
NICKS = [f"user{n}" for n in range(200)]
PAGE = 100


def fill(path: str, messages: int, privates: int) -> None:
    """A store at `path` with `messages` broadcasts and `privates` private messages."""
    Store(path).close()  # the schema
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = OFF")
    rng = random.Random(7)
    start_ms = int(time.time() * 1000) - messages * 100
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO broadcasts VALUES (?, '', 1, ?, ?, ?, ?, ?)",
        (
            (
                seq,
                f"id-{seq}",
                nick,
                nick_key(nick),
                " ".join(rng.choices(WORDS, k=8)) + (f" {RARE}" if seq % RARE_EVERY == 0 else ""),
                start_ms + seq * 100,
            )
            for seq in range(1, messages + 1)
            for nick in (NICKS[seq % len(NICKS)],)
        ),
    )
    db.executemany(
        "INSERT INTO privates (msg_id, sender, sender_key, recipient, recipient_key, text, "
        "time_ms, sender_token, recipient_token) VALUES (?, ?, ?, ?, ?, ?, ?, '', '')",
        (
            (f"p-{n}", a, a, b, b, " ".join(rng.choices(WORDS, k=8)), start_ms + n * 1000)
            for n in range(1, privates + 1)
            for a, b in ((NICKS[n % 7], NICKS[(n + 1) % 7]),)
        ),
    )
    db.execute("DELETE FROM waiting")  # all of them confirmed
    db.execute(
        "INSERT INTO conversations (pair, id) SELECT min(sender_key, recipient_key) || "
        "char(10) || max(sender_key, recipient_key), id FROM privates"
    )
    db.execute("INSERT INTO broadcasts_text (rowid, text) SELECT seq, text FROM broadcasts")
    db.execute("INSERT INTO privates_text (rowid, text) SELECT id, text FROM privates")
    db.execute("UPDATE meta SET value = ? WHERE key = 'indexed_broadcasts'", (str(messages),))
    db.execute("UPDATE meta SET value = ? WHERE key = 'indexed_privates'", (str(privates),))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def broker_start_s(db: str) -> float:
    """Seconds from starting `python -m broker --db DB` until it says it listens."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "broker", "--bind", "tcp://127.0.0.1:*", "--db", db],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "ZMQ_CHAT_ADMIN_TOKEN": "bench-operator-token-0123456789"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    took = time.perf_counter() - start
    proc.terminate()
    proc.wait(10)
    if "listening" not in line:
        raise RuntimeError(f"the broker did not start: {line!r}")
    return took


def timed(call: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median and worst of `repeat` calls, in ms."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--privates", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    where = tempfile.mkdtemp(prefix="zmq-chat-bench-store-")
    try:
        path = os.path.join(where, "chat.db")
        began = time.perf_counter()
        fill(path, args.messages, args.privates)
        size_mb = os.path.getsize(path) / 1e6
        print(
            f"store: {args.messages:,} broadcasts, {args.privates:,} privates, "
            f"{size_mb:.0f} MB, filled in {time.perf_counter() - began:.0f} s"
        )
        starts = [broker_start_s(path) for _ in range(3)]
        baselines = [broker_start_s(":memory:") for _ in range(3)]
        start, baseline = statistics.median(starts), statistics.median(baselines)
        print(
            f"broker start on it: {start:.2f} s (median of 3); with no store: {baseline:.2f} s "
            f"({start / baseline:.2f}x)"
        )
        store = Store(path)
        middle = args.messages // 2
        rows = [
            ("history page of 100, newest", lambda: store.history(0, PAGE)),
            ("history page of 100, middle", lambda: store.history(middle, PAGE)),
            ("history page of 100, oldest", lambda: store.history(PAGE + 1, PAGE)),
            ("conversation page of 100", lambda: store.conversation("user1", "user2", 0, PAGE)),
            (f"search '{RARE}' (rare)", lambda: store.search("user1", RARE, PAGE)),
            (
                "search 'deploy friday' (common)",
                lambda: store.search("user1", "deploy friday", PAGE),
            ),
        ]
        print(f"| query | median ms | worst ms (of {args.repeat}) |")
        print("|---|---|---|")
        for label, call in rows:
            median, worst = timed(call, args.repeat)
            print(f"| {label} | {median:.2f} | {worst:.2f} |")
        store.close()
    finally:
        shutil.rmtree(where, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
