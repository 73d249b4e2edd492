"""What the broker does below ZeroMQ, with the operating system: descriptors and the C library.

libzmq owns its connections' file descriptors. The broker only looks at them (who is at the
other end) and, to cut a peer off, shuts the TCP connection down: libzmq then sees the
connection end as if the peer had closed it, and cleans up (it discards a multipart
message still arriving). The descriptor itself is never closed here.
"""

import array
import contextlib
import ctypes
import ctypes.util
import fcntl
import logging
import os
import resource
import secrets
import socket
import struct
import sys
import termios
from collections.abc import Iterator
from typing import Final

log = logging.getLogger(__name__)

#: getsockopt(IPPROTO_TCP, TCP_INFO): Linux's struct tcp_info, whose u64
#: tcpi_bytes_received (Linux 4.1 and later) sits at this byte offset.
TCP_INFO: Final = getattr(socket, "TCP_INFO", 11)
TCP_INFO_BYTES: Final = 256
TCPI_BYTES_RECEIVED_OFFSET: Final = 128
#: Descriptors kept free of connections: listening sockets, the monitor's, logs, the
#: terminal, libzmq's own mailboxes.
RESERVED_DESCRIPTORS: Final = 64


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


_LIBC: Final = _libc()


@contextlib.contextmanager
def _borrowed(fd: int) -> Iterator[socket.socket]:
    """A socket object on libzmq's descriptor `fd`, detached (never closed) on the way out.

    Raises OSError if `fd` is no socket (any more)."""
    sock = socket.socket(fileno=fd)
    try:
        yield sock
    finally:
        sock.detach()  # the descriptor stays libzmq's


def peer_address(fd: int) -> str:
    """The network address at the other end of connection `fd` ('' if not known)."""
    try:
        with _borrowed(fd) as sock:
            peer = sock.getpeername()
    except OSError:
        return ""
    if isinstance(peer, tuple):
        return str(peer[0])
    return str(peer)


def cut_off(fd: int) -> None:
    """End TCP connection `fd` in both directions; libzmq closes it and frees what it held.

    Abortively: when libzmq closes it, the peer gets a reset at once, and whatever it had
    sent and was still queued is dropped. A plain close would leave a peer that keeps
    sending stuck against a zero window for a minute."""
    with contextlib.suppress(OSError), _borrowed(fd) as sock:  # OSError: already gone
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)


def tcp_bytes_received(fd: int) -> int:
    """Bytes TCP connection `fd` has received so far (Linux's tcp_info), or 0 if unknown."""
    try:
        with _borrowed(fd) as sock:
            info = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, TCP_INFO_BYTES)
    except OSError:
        return 0
    end = TCPI_BYTES_RECEIVED_OFFSET + 8
    if len(info) < end:
        return 0
    return int.from_bytes(info[TCPI_BYTES_RECEIVED_OFFSET:end], sys.byteorder)


def _queued(fd: int, request: int) -> int:
    """The count an ioctl such as FIONREAD fills in for descriptor `fd`, or 0 if unknown."""
    buffer = array.array("i", [0])
    try:
        fcntl.ioctl(fd, request, buffer)
    except OSError:
        return 0
    return buffer[0]


def tcp_bytes_unread(fd: int) -> int:
    """Bytes waiting in the kernel for the reader of connection `fd` (FIONREAD), or 0."""
    return _queued(fd, termios.FIONREAD)


def tcp_bytes_unsent(fd: int) -> int:
    """Bytes the kernel still holds to send on connection `fd` (not yet sent, or not yet
    acknowledged by the peer: a peer that does not read shows as a full buffer), or 0 if
    unknown (TIOCOUTQ)."""
    return _queued(fd, termios.TIOCOUTQ)


def connection_budget() -> int:
    """Connections the broker can hold: its descriptor limit, raised to the hard limit,
    less RESERVED_DESCRIPTORS.

    At the limit libzmq's listener fails to accept and retries at once, forever: a busy
    loop. Keeping connections below it is what prevents that.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
    return max(1, soft - RESERVED_DESCRIPTORS)


def unpredictable_routing_ids() -> None:
    """Seed the C library's rand(), from which libzmq 4.3 starts its routing id counter.

    libzmq never seeds it, so every broker would hand out the same ids in the same order.
    The broker refuses chosen ids anyway (see broker.connections); this keeps a peer from
    knowing which id libzmq will assign next. Call it before the ROUTER socket is made.
    """
    if _LIBC is not None:
        _LIBC.srand(ctypes.c_uint(secrets.randbits(32)))


class ResidentMemory:
    """The process's resident memory, read from /proc/self/statm (Linux)."""

    def __init__(self) -> None:
        self._page = resource.getpagesize()
        try:
            self._fd: int | None = os.open("/proc/self/statm", os.O_RDONLY)
        except OSError:
            self._fd = None
        #: Set when memory is about to be freed (call release_free_memory later).
        self.trim_pending = False

    def rss_bytes(self) -> int:
        if self._fd is None:
            return 0
        fields = os.pread(self._fd, 128, 0).split()
        return int(fields[1]) * self._page

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def release_free_memory() -> None:
    """Give memory the process freed back to the system (glibc's malloc_trim).

    After a peer made libzmq hold a huge message, the freed blocks would otherwise stay
    with the process."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)
