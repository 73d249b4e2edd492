"""Does typing lag while messages pour in? The full-screen client under a broadcast flood.

    python -m bench.typing [--rate 1000] [--seconds 4]

Starts a broker (its own process), runs the real full-screen client in this process (the
prompt_toolkit application on a pipe keyboard and a dummy terminal), and types one key every
`KEY_INTERVAL_S`; the latency of a key is the time until it is in the input line. First
with the chat quiet (the baseline), then while a flooder process broadcasts `--rate`
messages per second. Prints p50 and p99 of both, their ratio, and how many messages the
client took in meanwhile.
"""

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Final

import zmq
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from client.app import InteractiveClient
from client.session import Session, new_session_token
from client.state import Ending
from messages import commands as cmd
from messages import encode

#: Between two keys typed, in seconds (a fast typist: 20 keys a second).
KEY_INTERVAL_S: Final = 0.05
#: How often the typist looks whether its key arrived, in seconds.
LOOK_INTERVAL_S: Final = 0.0002
#: Broker options that keep flood control out of the way.
UNLIMITED: Final = (
    "--flood-burst",
    "1000000000",
    "--flood-rate",
    "1000000000",
    "--max-connections-per-address",
    "1000000",
)
#: The flood's text: a typical chat line.
FLOOD_TEXT: Final = "x" * 64


@contextlib.contextmanager
def broker(port: int) -> Iterator[str]:
    """A broker on loopback `port`, flood limits out of the way, in its own process."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "broker", "--bind", f"tcp://127.0.0.1:{port}", *UNLIMITED],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "listening on": the sockets are bound
        yield f"tcp://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def flood(endpoint: str, rate: float, seconds: float) -> None:
    """Broadcast `rate` messages a second for `seconds`, paced (run as its own process)."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoint)
    dealer.send_multipart(encode(cmd.Hello("flooder", new_session_token(), True)))
    dealer.recv_multipart()
    start = time.monotonic()
    for sent in range(int(rate * seconds)):
        delay = start + sent / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        dealer.send_multipart(encode(cmd.Say(f"f{sent}", FLOOD_TEXT)))
        while dealer.poll(0):
            dealer.recv_multipart()  # ACKs
    context.destroy(linger=0)


async def type_keys(client: InteractiveClient, keyboard: object, seconds: float) -> list[float]:
    """Type a key every KEY_INTERVAL_S for `seconds`: the latency of each, in seconds."""
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        before = len(client.ui.input.text)
        typed = time.perf_counter()
        keyboard.send_text("a")  # type: ignore[attr-defined]
        while len(client.ui.input.text) == before:
            await asyncio.sleep(LOOK_INTERVAL_S)
        latencies.append(time.perf_counter() - typed)
        if len(client.ui.input.text) > 60:
            keyboard.send_text("\x15")  # type: ignore[attr-defined]  # Ctrl-U: clear the line
            await asyncio.sleep(KEY_INTERVAL_S)
        await asyncio.sleep(KEY_INTERVAL_S)
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(endpoint: str, rate: float, seconds: float) -> None:
    with create_pipe_input() as keyboard, create_app_session(input=keyboard, output=DummyOutput()):
        session = Session(endpoint, "typist")
        await session.register()
        client = InteractiveClient(session)
        task = asyncio.create_task(client.run())
        while not client.ui.app.is_running:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        quiet = await type_keys(client, keyboard, seconds)
        before = session.stream.last_seq
        flooder = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.typing",
                "--flood",
                endpoint,
                "--rate",
                str(rate),
                "--seconds",
                str(seconds + 1),
            ]
        )
        await asyncio.sleep(0.5)
        loaded = await type_keys(client, keyboard, seconds)
        flooder.wait(seconds + 30)
        after = session.stream.last_seq
        client.ui.exit(Ending("measured", 0))
        await asyncio.wait_for(task, 10)
        session.close()
    for name, values in (("quiet", quiet), (f"{rate:g} msgs/s", loaded)):
        print(
            f"{name:>14}: {len(values)} keys, p50 {statistics.median(values) * 1e3:.2f} ms, "
            f"p99 {percentile(values, 0.99) * 1e3:.2f} ms"
        )
    print(
        f"ratio loaded/quiet: p50 {statistics.median(loaded) / statistics.median(quiet):.2f}, "
        f"p99 {percentile(loaded, 0.99) / percentile(quiet, 0.99):.2f}; "
        f"broadcasts the client took in meanwhile: {after - before}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.typing", description=__doc__)
    parser.add_argument("--rate", type=float, default=1000, help="broadcasts per second")
    parser.add_argument("--seconds", type=float, default=4, help="typing time in each phase")
    parser.add_argument("--port", type=int, default=5795, help="loopback port of the broker")
    parser.add_argument("--flood", metavar="ENDPOINT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood:
        flood(args.flood, args.rate, args.seconds)
        return 0
    with broker(args.port) as endpoint:
        asyncio.run(measure(endpoint, args.rate, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
