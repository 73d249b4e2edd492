"""Limits per network address: what all the sessions from one address may do together.

Sessions cost nothing to make, so limits per session alone let one host multiply them by
opening more sessions. Here, every address (an IPv4 address, an IPv6 /64 network, loopback
included) has a cap on its sessions, a bucket of chat commands that all of its sessions
draw on besides their own, and a bucket of HELLOs. A connection whose address is unknown
(`""`: not over TCP or IPC) is not limited here. Sans-IO: times are passed in.
"""

import ipaddress
import logging
from typing import Final

from messages import ErrorCode, ProtocolError, TokenBucket

from .ratelimit import FloodPolicy

log = logging.getLogger(__name__)

#: IPv6 addresses are limited by network: one host commonly holds a whole /64.
IPV6_NETWORK_BITS: Final = 64


def address_key(peer: str) -> str:
    """What `peer` (a network address as libzmq reports it) is limited as: an IPv4 address
    (also when mapped into IPv6), an IPv6 /64 network, or else `peer` itself."""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return peer  # IPC peers, or an empty address
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_NETWORK_BITS), strict=False))
    return str(address)


class AddressLimits:
    """Sessions, chat commands and HELLOs per address, under `policy`."""

    def __init__(self, policy: FloodPolicy) -> None:
        self.policy = policy
        self._sessions: dict[str, int] = {}
        self._messages: dict[str, TokenBucket] = {}
        self._joins: dict[str, TokenBucket] = {}

    def sessions(self, address: str) -> int:
        """How many sessions `address` holds."""
        return self._sessions.get(address, 0)

    def check_join(self, address: str, now: float) -> None:
        """A HELLO from `address` that would start a session: ERROR 429 if over the join
        limit."""
        if not address:
            return
        bucket = self._joins.setdefault(address, self.policy.join_bucket())
        if not bucket.take(now):
            log.warning("too many joins from %s", address)
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"too many joins from {address}: try again in {bucket.wait(now):.1f} s",
            )

    def check_new_session(self, address: str) -> None:
        """ERROR 429 if `address` already holds as many sessions as it may."""
        cap = self.policy.sessions_per_address
        if address and self.sessions(address) >= cap:
            log.warning("too many sessions from %s", address)
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"too many sessions from {address}: at most {cap} at once; one must leave "
                "before another joins",
            )

    def add_session(self, address: str) -> None:
        if address:
            self._sessions[address] = self.sessions(address) + 1

    def remove_session(self, address: str) -> None:
        count = self.sessions(address) - 1
        if count > 0:
            self._sessions[address] = count
        else:
            self._sessions.pop(address, None)

    def take_message(self, address: str, now: float) -> bool:
        """Take a token from `address`'s bucket of chat commands; False: over the limit."""
        if not address:
            return True
        bucket = self._messages.get(address)
        if bucket is None:
            bucket = self._messages[address] = self.policy.address_message_bucket()
        return bucket.take(now)

    def message_wait(self, address: str, now: float) -> float:
        """Seconds until `address` may send a chat command again."""
        bucket = self._messages.get(address)
        return 0.0 if bucket is None else bucket.wait(now)

    def sweep(self, now: float) -> None:
        """Forget the buckets that have refilled: they hold nothing worth remembering."""
        for buckets in (self._messages, self._joins):
            for address in [a for a, bucket in buckets.items() if bucket.full(now)]:
                del buckets[address]
