"""A local nats-server with JetStream, for the cluster's benchmark and tests.

`make nats-server` installs Debian's package (`make test` and `make bench-cluster` ask for
it first); `make nats` runs one for people.
"""

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Final

#: Where Debian puts nats-server (not on a normal user's PATH).
DEBIAN_PATH: Final = Path("/usr/sbin/nats-server")
#: How long nats-server may take to listen, in s.
START_S: Final = 10.0
#: How often a wait for it to listen looks again, in s: a port that is not open yet has
#: no event to wait on.
LISTEN_POLL_S: Final = 0.02


def find_nats_server() -> str | None:
    """The nats-server program, if it is installed."""
    found = shutil.which("nats-server")
    if found is None and DEBIAN_PATH.exists():
        found = str(DEBIAN_PATH)
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def start_nats(
    program: str, data_dir: str, port: int | None = None
) -> tuple["subprocess.Popen[bytes]", str]:
    """nats-server (`program`) with JetStream on loopback port `port` (a free one if None),
    its data in `data_dir`, once it accepts connections: the process and its URL. Raises
    RuntimeError if it does not start."""
    port = port or free_port()
    proc = subprocess.Popen(
        [program, "-js", "-sd", data_dir, "-a", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + START_S
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, f"nats://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"nats-server did not start on port {port}") from None
            time.sleep(LISTEN_POLL_S)
