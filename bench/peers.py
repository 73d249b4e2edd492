"""The IRC servers compared against: ngIRCd and InspIRCd, on loopback, flood limits off.

    python -m bench.peers --check     start each installed server, register one client,
                                      stop it, and say which are usable

bench/ngircd.conf and bench/inspircd.conf are the configurations (see their comments);
each run gets a copy with its pid and log files moved into a private temporary
directory. `make bench-peers` installs the servers (Debian/Ubuntu: apt, as root).
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .systems import Server

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
PEERS = {
    # name: (executable, config file, port, version command)
    "ngircd": ("ngircd", "ngircd.conf", 16667, ["--version"]),
    "inspircd": ("inspircd", "inspircd.conf", 16668, ["--version"]),
}


def executable(name: str) -> str | None:
    binary = PEERS[name][0]
    return shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.path.exists(p)), None
    )


def installed() -> list[str]:
    return [name for name in PEERS if executable(name)]


def version(name: str) -> str:
    path = executable(name)
    if path is None:
        return "not installed"
    out = subprocess.run(
        [path, *PEERS[name][3]], capture_output=True, text=True, timeout=10, check=False
    )
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0] if first else "unknown version"


def _config(name: str, workdir: str) -> str:
    """The server's configuration with pid and log files moved into `workdir`."""
    text = (HERE / PEERS[name][1]).read_text()
    if name == "ngircd":
        text = re.sub(r"PidFile = .*", f"PidFile = {workdir}/ngircd.pid", text)
    else:
        text = re.sub(r'<pid file="[^"]*">', f'<pid file="{workdir}/inspircd.pid">', text)
        text = re.sub(r'target="[^"]*inspircd-bench.log"', f'target="{workdir}/inspircd.log"', text)
    path = os.path.join(workdir, PEERS[name][1])
    with open(path, "w") as f:
        f.write(text)
    return path


def start(name: str) -> Server:
    path = executable(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (make bench-peers)")
    workdir = tempfile.mkdtemp(prefix=f"bench-{name}-")
    os.chmod(workdir, 0o777)  # ngIRCd drops to its own user before writing its pid file
    config = _config(name, workdir)
    port = PEERS[name][2]
    if name == "ngircd":
        argv = [path, "-n", "-f", config]
    else:
        argv = [path, "--nofork", f"--config={config}"]
        if os.geteuid() == 0:
            argv.insert(1, "--runasroot")
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                shutil.rmtree(workdir, ignore_errors=True)
                raise RuntimeError(f"{name} did not start listening on {HOST}:{port}") from None
            time.sleep(0.05)
    server = Server(name, proc, f"{HOST}:{port}", "irc")
    server.cleanup_dirs.append(workdir)
    return server


def check(name: str) -> str:
    server = start(name)
    try:
        with socket.create_connection((HOST, PEERS[name][2]), timeout=5) as sock:
            sock.sendall(b"NICK check\r\nUSER check 0 * :check\r\n")
            data = b""
            deadline = time.monotonic() + 5
            while b" 001 " not in data and time.monotonic() < deadline:
                data += sock.recv(65536)
        return "ok" if b" 001 " in data else "no welcome"
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers")
    parser.add_argument("--check", action="store_true", help="start, register, stop each")
    args = parser.parse_args()
    failed = False
    for name in PEERS:
        if not executable(name):
            print(f"{name}: not installed; the benchmark skips it (make bench-peers)")
            continue
        line = f"{name}: {version(name)}"
        if args.check:
            try:
                line += f": {check(name)}"
            except RuntimeError as exc:
                line += f": {exc}"
                failed = True
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
