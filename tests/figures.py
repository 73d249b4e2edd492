"""Reliability figures for docs/RELIABILITY.md: `make reliability` (python -m tests.figures).

Each scenario runs a real broker process on loopback with real clients and prints what it
measured as a Markdown table row. The suite's tests prove the same properties with smaller
numbers; this script gives the figures.
"""

import argparse
import random
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import zmq

from messages import MAX_TEXT_BYTES, SIGNATURE, encode
from messages import commands as cmd
from messages import events as ev
from tests.peers import Peer
from tests.processes import BrokerProcess, LineClients, free_port

Context = zmq.Context[zmq.Socket[bytes]]
LINE = re.compile(r"<(?P<sender>[^>]+)> (?P<text>u\d+ \d+)\s*$")
#: Heartbeat of the broker in the restart scenario (ms): clients notice a dead broker in 3
#: of these.
HEARTBEAT_MS = 200
#: Heartbeat elsewhere (ms): long enough that test peers, which do not PING, stay.
QUIET_HEARTBEAT_MS = 60_000
#: Flood limits for scenarios that are not about flooding.
NO_FLOOD_LIMIT = ("--flood-burst", "1000000", "--flood-rate", "1000000")


@contextmanager
def running_broker(
    *extra_args: str, heartbeat_ms: int = QUIET_HEARTBEAT_MS
) -> Iterator[BrokerProcess]:
    broker = BrokerProcess(f"tcp://127.0.0.1:{free_port()}", heartbeat_ms, *extra_args)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def lines_from_the_others(nicks: list[str], lines: int) -> dict[str, Counter[tuple[str, str]]]:
    """What each of `nicks` must see when each types `lines` numbered lines: the others'."""
    return {
        recipient: Counter((s, f"{s} {n}") for s in nicks if s != recipient for n in range(lines))
        for recipient in nicks
    }


def tally(chat: LineClients, expected: dict[str, Counter[tuple[str, str]]]) -> tuple[int, int, int]:
    """What the clients printed against `expected`: delivered, missing, doubled."""
    delivered = missing = doubled = 0
    for recipient, want in expected.items():
        seen = chat.chat_seen(recipient)
        delivered += sum(min(seen[k], 1) for k in want)
        missing += sum((want - seen).values())
        doubled += sum(count - 1 for count in seen.values() if count > 1)
    return delivered, missing, doubled


def restart_scenario(clients: int, lines: int, restarts: int) -> dict[str, object]:
    """Line-mode clients talk while the broker is SIGKILLed and restarted `restarts` times."""
    nicks = [f"u{i}" for i in range(clients)]
    kill_rounds = {lines * (k + 1) // (restarts + 1) for k in range(restarts)}
    expected = lines_from_the_others(nicks, lines)
    with running_broker(heartbeat_ms=HEARTBEAT_MS) as broker:
        chat = LineClients(broker.endpoint, nicks)
        try:
            # Nobody is sent what was said before they joined: everyone in first.
            assert chat.wait_until_all_present(timeout=60), "not everyone joined"
            for n in range(lines):
                if n in kill_rounds:
                    broker.kill()
                    time.sleep(0.5)
                    broker.start()
                for nick in nicks:
                    chat.type(nick, f"{nick} {n}")
                time.sleep(0.05)
            chat.wait_for(expected, timeout=120)
            exits = chat.finish(timeout=60)
        finally:
            chat.kill()
    delivered, missing, doubled = tally(chat, expected)
    return {
        "clients": clients,
        "lines each": lines,
        "broker kills": restarts,
        "deliveries expected": sum(sum(w.values()) for w in expected.values()),
        "delivered": delivered,
        "missing": missing,
        "doubled": doubled,
        "client exit codes": sorted(set(exits.values())),
    }


def kill_scenario(clients: int, lines: int, kills: int, seed: int = 0) -> dict[str, object]:
    """Line-mode clients talk, and tell dora, an owned nick offline throughout, while the
    broker is SIGKILLed at random moments `kills` times and started again on its store;
    then dora comes back. Every broadcast must reach every other client once, and every
    private message dora once."""
    rng = random.Random(seed)
    nicks = [f"u{i}" for i in range(clients)]
    kill_rounds = sorted(rng.sample(range(1, lines), kills))
    expected = lines_from_the_others(nicks, lines)
    # Every third round each client also tells dora.
    for_dora = Counter((s, f"{s} {n} for dora") for s in nicks for n in range(0, lines, 3))
    with running_broker(heartbeat_ms=HEARTBEAT_MS) as broker:
        dora = LineClients(broker.endpoint, ["dora"])
        dora.type("dora", "/register")
        assert dora.wait_for_line("dora", "is registered to your identity", 30), "no register"
        dora.finish(timeout=30)
        chat = LineClients(broker.endpoint, nicks)
        try:
            assert chat.wait_until_all_present(timeout=60), "not everyone joined"
            for n in range(lines):
                if n in kill_rounds:
                    # At a random moment of the round: between two clients' lines.
                    time.sleep(rng.uniform(0, 0.1))
                    broker.kill()
                    time.sleep(rng.uniform(0.1, 1.0))
                    broker.start()
                for nick in rng.sample(nicks, len(nicks)):
                    chat.type(nick, f"{nick} {n}")
                    if n % 3 == 0:
                        chat.type(nick, f"/msg dora {nick} {n} for dora")
                time.sleep(0.05)
            chat.wait_for(expected, timeout=120)
            exits = chat.finish(timeout=60)
        finally:
            chat.kill()
        back = LineClients(broker.endpoint, ["dora"], state_root=dora.state_root)
        try:
            back.wait_for_privates("dora", for_dora, timeout=60)
            got = back.privates_seen("dora")
            back.finish(timeout=30)
        finally:
            back.kill()
    delivered, missing, doubled = tally(chat, expected)
    return {
        "clients": clients,
        "lines each": lines,
        "broker kills": kills,
        "broadcast deliveries expected": sum(sum(w.values()) for w in expected.values()),
        "delivered": delivered,
        "missing": missing,
        "doubled": doubled,
        "privates to dora (offline) expected": sum(for_dora.values()),
        "dora got": sum(min(got[k], 1) for k in for_dora),
        "dora missing": sum((for_dora - got).values()),
        "dora doubled": sum(count - 1 for count in got.values() if count > 1),
        "client exit codes": sorted(set(exits.values())),
    }


def malformed_scenario(context: Context, count: int) -> dict[str, object]:
    """Fire `count` malformed messages, then hold a normal conversation."""
    rng = random.Random(2026)
    templates: list[Callable[[], list[bytes]]] = [
        lambda: [rng.randbytes(rng.randrange(0, 40))],
        lambda: [SIGNATURE, rng.randbytes(rng.randrange(0, 10))],
        lambda: [SIGNATURE, b"SAY", rng.randbytes(5), rng.randbytes(rng.randrange(1, 50))],
        lambda: [SIGNATURE, b"HELLO", rng.randbytes(rng.randrange(0, 200)), b"s"],
        lambda: [SIGNATURE, b"TELL", *[rng.randbytes(5)] * rng.randrange(0, 9)],
        lambda: [b"ZCHAT" + rng.randbytes(2), b"PING"],
        lambda: encode(cmd.Say("m1", "x" * (MAX_TEXT_BYTES + rng.randrange(1, 100)))),
    ]
    with running_broker(*NO_FLOOD_LIMIT) as broker:
        rogue = Peer(context, broker.endpoint)
        started = time.perf_counter()
        for _ in range(count):
            rogue.send_raw(rng.choice(templates)())
        replies = 0
        while rogue.socket.poll(2000):
            rogue.socket.recv_multipart()
            replies += 1
            elapsed = time.perf_counter() - started
        alice, bob = Peer(context, broker.endpoint), Peer(context, broker.endpoint)
        alice.register("alice")
        bob.register("bob")
        alice.tell("bob", "still standing?")
        bob.expect_after_presence(ev.PrivateMessage, text="still standing?")
        alive = broker.process is not None and broker.process.poll() is None
    return {
        "malformed sent": count,
        "error replies": replies,
        "seconds": round(elapsed, 2),
        "conversation afterwards": "works" if alive else "BROKEN",
    }


def latencies(talker: Peer, listener: Peer, messages: int, rate: float) -> list[float]:
    """Send `messages` broadcasts at `rate`/s; the listener's receive delay of each, in us."""
    result = []
    interval = 1 / rate
    for _ in range(messages):
        sent_at = time.perf_counter()
        msg_id = talker.say("ping " + str(sent_at))
        while True:
            event = listener.next_event()
            if isinstance(event, ev.Message) and event.msg_id == msg_id:
                break
        result.append((time.perf_counter() - sent_at) * 1e6)
        while talker.socket.poll(0):
            talker.socket.recv_multipart()
        time.sleep(max(0.0, interval - (time.perf_counter() - sent_at)))
    return result


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def slow_reader_scenario(context: Context, messages: int) -> dict[str, object]:
    """A listener's latency with and without a client that stopped reading."""
    with running_broker(*NO_FLOOD_LIMIT) as broker:
        talker, listener = Peer(context, broker.endpoint), Peer(context, broker.endpoint)
        talker.register("talker")
        listener.register("listener")
        baseline = latencies(talker, listener, messages, rate=500)
        stalled = Peer(context, broker.endpoint)
        stalled.socket.setsockopt(zmq.RCVHWM, 10)
        stalled.register("stalled")
        filler = "x" * MAX_TEXT_BYTES
        for _ in range(200):  # fill its buffers so that it is truly behind
            talker.say(filler)
        loaded = latencies(talker, listener, messages, rate=500)
    return {
        "p50 without (us)": round(statistics.median(baseline)),
        "p99 without (us)": round(percentile(baseline, 0.99)),
        "p50 with a stalled reader (us)": round(statistics.median(loaded)),
        "p99 with a stalled reader (us)": round(percentile(loaded, 0.99)),
        "p99 ratio": round(percentile(loaded, 0.99) / percentile(baseline, 0.99), 2),
    }


def flood_scenario(context: Context, blasts: int) -> dict[str, object]:
    """One client sends `blasts` messages at once under the default flood limits."""
    with running_broker() as broker:
        flooder, bystander = Peer(context, broker.endpoint), Peer(context, broker.endpoint)
        flooder.register("flooder")
        bystander.register("bystander")
        started = time.perf_counter()
        for _ in range(blasts):
            flooder.say("spam")
        counts: Counter[str] = Counter()
        while flooder.socket.poll(1000):
            elapsed = time.perf_counter() - started
            event = flooder.next_event()
            name = type(event).__name__
            if isinstance(event, ev.Error):
                name = f"Error {event.code}"
            # One ACK may acknowledge several messages: count the messages.
            counts[name] += len(event.msg_ids) if isinstance(event, ev.Ack) else 1
        received = 0
        while bystander.socket.poll(200):
            received += isinstance(bystander.next_event(), ev.Message)
        bystander.say("and I can still talk")
        bystander.expect_after_presence(ev.Message, text="and I can still talk")
    return {
        "sent at once": blasts,
        "accepted (ACK)": counts["Ack"],
        "refused (429)": counts["Error 429"],
        "kicked": "yes" if counts["Kicked"] else "no",
        "refused after the kick (401)": counts["Error 401"],
        "seconds": round(elapsed, 2),
        "bystander received": received,
    }


def table(title: str, row: dict[str, object]) -> str:
    header = " | ".join(row)
    values = " | ".join(str(v) for v in row.values())
    return f"### {title}\n\n| {header} |\n|{'---|' * len(row)}\n| {values} |\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts (a minute)")
    args = parser.parse_args()
    scale = 1 if args.quick else 2
    context: Context = zmq.Context()
    try:
        print(
            table(
                "Broker killed and restarted mid-conversation",
                restart_scenario(clients=3, lines=30 * scale, restarts=scale),
            )
        )
        print(
            table(
                "Broker killed 5 times at random moments, an owned nick offline throughout",
                kill_scenario(clients=3, lines=30 * scale, kills=5),
            )
        )
        print(table("Malformed input", malformed_scenario(context, count=5000 * scale)))
        print(table("A client that stops reading", slow_reader_scenario(context, 500 * scale)))
        print(table("Flood control (defaults: burst 20, 5/s)", flood_scenario(context, 500)))
    finally:
        context.destroy(linger=0)


if __name__ == "__main__":
    main()
