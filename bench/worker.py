"""Load-generator processes and how the orchestrator drives them.

A worker is a long-lived process (`python -m bench.load` or `python -m bench.irc`) that
reads one JSON request per line on stdin and answers one JSON line on stdout. A request
names an operation of the current job:

    {"op": "setup", "job": NAME, ...}  build the job's clients (connect, register)
    {"op": "go", "start": T, ...}      run it; T is a time.monotonic() instant, the same
                                       clock in every process on Linux
    {"op": "quiet", "seconds": S}      keep reading until nothing arrived for S seconds
    {"op": "close"}                    drop every client
    {"op": "exit"}

Between requests the job keeps draining its clients, so a backlog never builds up in
libzmq or in the kernel while the orchestrator measures something.
"""

import json
import os
import select
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

C = TypeVar("C")

#: Bytes asked for per read by the raw receivers (IRC, and ZMTP in bench.zmtp). Kept
#: below glibc's mmap threshold (128 KiB): Python allocates the buffer before the read,
#: and a larger one costs an mmap, an mremap and a munmap per read, ~8 us (measured),
#: more than the rest of a read that finds one delivery.
READ_BYTES = 1 << 16


def count_in(tail: bytes, data: bytes, pattern: bytes) -> int:
    """Occurrences of `pattern` in `data`, and those that straddle `tail` (the end of the
    previous read, at least len(pattern) - 1 bytes unless the reads began with it) and
    `data`: each occurrence is counted once, in the read where it ends."""
    n = data.count(pattern)
    if tail:
        n += (tail[1 - len(pattern) :] + data[: len(pattern) - 1]).count(pattern)
    return n


class Job(Protocol):
    def setup(self) -> dict[str, Any]: ...
    def go(self, request: dict[str, Any]) -> dict[str, Any]: ...
    def pump(self, timeout: float) -> int:
        """Read whatever arrived within `timeout` seconds; the number of messages read."""
        ...

    def close(self) -> None: ...


def serve(make_job: Callable[[dict[str, Any]], Job]) -> None:
    """The worker's side: answer requests from stdin until "exit" or end of input."""
    job: Job | None = None
    buffer = b""
    stdin = sys.stdin.fileno()
    while True:
        while b"\n" not in buffer:
            if job is None:
                select.select([stdin], [], [])
            else:
                # Keep the clients drained while waiting for the next request.
                while not select.select([stdin], [], [], 0)[0]:
                    job.pump(0.05)
            data = os.read(stdin, 65536)
            if not data:
                return
            buffer += data
        line, buffer = buffer.split(b"\n", 1)
        request = json.loads(line)
        op = request["op"]
        try:
            if op == "exit":
                return
            if op == "setup":
                if job is not None:
                    job.close()
                job = make_job(request)
                reply = job.setup()
            elif op == "go":
                assert job is not None
                reply = job.go(request)
            elif op == "quiet":
                assert job is not None
                reply = quiet(job, request["seconds"], request.get("limit", 60.0))
            elif op == "close":
                if job is not None:
                    job.close()
                job = None
                reply = {}
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception:  # noqa: BLE001 - reported to the orchestrator, which stops
            reply = {"error": traceback.format_exc()}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def quiet(job: Job, seconds: float, limit: float) -> dict[str, Any]:
    """Drain until `seconds` pass with nothing read (at most `limit` seconds)."""
    start = time.monotonic()
    last = start
    total = 0
    while True:
        now = time.monotonic()
        if now - last >= seconds or now - start >= limit:
            return {"read": total, "waited": now - start}
        got = job.pump(0.05)
        if got:
            total += got
            last = time.monotonic()


def wait_until(instant: float) -> None:
    delay = instant - time.monotonic()
    if delay > 0:
        time.sleep(delay)


class Result(Protocol):
    def result(self, **fields: Any) -> dict[str, Any]:
        """The job's answer: `fields` with its error count and first error."""
        ...


class LoadJob(Job, Result, Protocol):
    pass


def run_load(
    job: LoadJob,
    request: dict[str, Any],
    delivered: Callable[[], int],
    top_up: Callable[[], None],
    also: Callable[[], int] | None = None,
) -> dict[str, Any]:
    """From request["start"], call `top_up` and read until the warm-up and the window are
    over; count `delivered()` within the window (and `also()`, as "also_count"), and the
    worker's CPU time."""
    also = also or (lambda: 0)
    start = request["start"]
    count_from = start + request["warm"]
    end = count_from + request["window"]
    wait_until(start)
    first = cpu0 = None
    also0 = 0
    pump = job.pump
    while True:
        now = time.monotonic()
        if first is None and now >= count_from:
            first, also0, cpu0 = delivered(), also(), time.process_time()
        if now >= end:
            break
        top_up()
        pump(0.002)
    assert first is not None and cpu0 is not None
    return job.result(
        count=delivered() - first,
        also_count=also() - also0,
        cpu=time.process_time() - cpu0,
        seconds=now - count_from,
    )


#: After the load, how long a job must read nothing for the stragglers to count as all in
#: (seconds), and the most it waits for that.
TRAILING_QUIET, TRAILING_LIMIT = 0.1, 3.0


def trail(job: Job) -> None:
    """Read what is still on its way after the load stopped."""
    last = start = time.monotonic()
    while (now := time.monotonic()) - last < TRAILING_QUIET and now - start < TRAILING_LIMIT:
        if job.pump(0.01):
            last = time.monotonic()


class PacedJob(Job, Protocol):
    #: True while samples count (the measurement window, after the warm-up).
    recording: bool


def run_paced(
    job: PacedJob, request: dict[str, Any], rate: float, send_one: Callable[[], None]
) -> int:
    """Call `send_one` `rate` times a second from request["start"] through the warm-up and
    the window, pumping the job's receivers in between; how many were sent."""
    start = request["start"]
    count_from = start + request["warm"]
    end = count_from + request["window"]
    wait_until(start)
    sent = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        job.recording = now >= count_from
        due = int((now - start) * rate) + 1
        while sent < due:
            send_one()
            sent += 1
        # Poll until the next send is due; a delivery wakes the poll at once.
        job.pump(max(0.0, start + sent / rate - time.monotonic()))
    job.recording = False
    return sent


def register_all(
    job: Job,
    request: dict[str, Any],
    nicks: Sequence[str],
    concurrency: int,
    connect: Callable[[str], C],
    registered: Callable[[C], bool],
) -> tuple[int, float]:
    """Register `nicks`, `concurrency` at a time, until all are in or request["limit"]
    seconds have passed: (how many registered, seconds taken)."""
    limit: float = request.get("limit", 120.0)
    wait_until(request["start"])
    t0 = time.monotonic()
    pending: list[C] = []
    done = 0
    todo = iter(nicks)
    exhausted = False
    while True:
        while not exhausted and len(pending) < concurrency:
            nick = next(todo, None)
            if nick is None:
                exhausted = True
                break
            pending.append(connect(nick))
        if (exhausted and not pending) or time.monotonic() - t0 > limit:
            break
        job.pump(0.01)
        still = [c for c in pending if not registered(c)]
        done += len(pending) - len(still)
        pending = still
    return done, time.monotonic() - t0


class WorkerError(RuntimeError):
    pass


class Worker:
    """The orchestrator's handle on one worker process."""

    def __init__(self, module: str, index: int) -> None:
        self.index = index
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._buffer = b""

    def send(self, request: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise WorkerError(f"worker {self.index} did not answer in {timeout:.0f} s")
            data = os.read(fd, 65536)
            if not data:
                raise WorkerError(f"worker {self.index} exited")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise WorkerError(f"worker {self.index} failed:\n{reply['error']}")
        return reply

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send({"op": "exit"})
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def call_all(
    workers: Sequence[Worker], requests: Sequence[dict[str, Any]], timeout: float
) -> list[dict[str, Any]]:
    """Send each worker its request at once, then collect every answer."""
    for worker, request in zip(workers, requests, strict=True):
        worker.send(request)
    return [worker.receive(timeout) for worker in workers]
