"""Owned nicks, the broker's side: HELLOs waiting for their PROVE, and signature checks.

A HELLO for a registered nick (one that resumes no session) is kept here with a fresh
nonce until its connection answers CHALLENGE with PROVE. There is at most one per
connection, each for CHALLENGE_SECONDS, and at most PENDING_CHALLENGES_LIMIT in all (the
oldest forgotten first), so that a peer that says HELLO and never proves costs no more
than its connection does. A nonce serves one PROVE, right or wrong: a recorded PROVE
proves nothing later.
"""

import secrets
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey

from messages import (
    CHALLENGE_SECONDS,
    NONCE_BYTES,
    ErrorCode,
    ProtocolError,
    b64url,
    from_b64url,
    nick_key,
    nick_skeleton,
)

from .session import Identity
from .store import Store

#: Challenged HELLOs kept in all; beyond, the oldest is forgotten (its PROVE gets 401).
PENDING_CHALLENGES_LIMIT: Final = 10_000
#: Owned nicks read from the store at a time.
_OWNERS_BATCH: Final = 256


def owned_nicks(store: Store, after: str = "") -> Iterator[str]:
    """The owned nicks sorted after `after` (by uniqueness key), read in batches."""
    while True:
        batch = store.owners(after, _OWNERS_BATCH)
        yield from batch
        if len(batch) < _OWNERS_BATCH:
            return
        after = batch[-1]


class OwnedLookalikes:
    """What each owned nick looks like (its skeleton): nobody may take a nick that looks
    like one whose owner is away, as nobody may take one that looks like someone here."""

    def __init__(self, store: Store) -> None:
        self._by_skeleton = {nick_skeleton(nick): nick for nick in owned_nicks(store)}

    def like(self, nick: str) -> str | None:
        """The owned nick other than `nick` that looks like it, if any."""
        owned = self._by_skeleton.get(nick_skeleton(nick))
        return owned if owned is not None and nick_key(owned) != nick_key(nick) else None

    def add(self, nick: str) -> None:
        self._by_skeleton[nick_skeleton(nick)] = nick

    def remove(self, nick: str) -> None:
        skeleton = nick_skeleton(nick)
        owned = self._by_skeleton.get(skeleton)
        if owned is not None and nick_key(owned) == nick_key(nick):
            del self._by_skeleton[skeleton]


@dataclass(frozen=True, slots=True)
class PendingHello:
    """A HELLO waiting for its PROVE: what it asked for, where from, and its nonce."""

    nick: str
    token: str
    stream: bool
    address: str
    nonce: str
    deadline: float


class Challenges:
    """The pending HELLOs, by the identity of their connection."""

    def __init__(
        self, limit: int = PENDING_CHALLENGES_LIMIT, seconds: float = CHALLENGE_SECONDS
    ) -> None:
        self.limit = limit
        self.seconds = seconds
        # Oldest first: all live as long, so the first to expire are at the front.
        self._pending: OrderedDict[Identity, PendingHello] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def challenge(
        self, identity: Identity, nick: str, token: str, stream: bool, address: str, now: float
    ) -> str:
        """Keep this HELLO of `identity` (replacing any before) under a new nonce; the nonce."""
        self._pending.pop(identity, None)
        nonce = b64url(secrets.token_bytes(NONCE_BYTES))
        self._pending[identity] = PendingHello(
            nick, token, stream, address, nonce, now + self.seconds
        )
        while len(self._pending) > self.limit:
            self._pending.popitem(last=False)
        return nonce

    def discard(self, identity: Identity) -> None:
        """Forget the HELLO `identity` left pending, if any."""
        self._pending.pop(identity, None)

    def take(self, identity: Identity, now: float) -> PendingHello:
        """The pending HELLO of `identity`, forgotten here: its nonce serves once. Raises
        ERROR 401 if there is none, or it expired."""
        pending = self._pending.pop(identity, None)
        if pending is None:
            raise ProtocolError(
                ErrorCode.NOT_REGISTERED, "no challenge is pending: send HELLO first"
            )
        if now > pending.deadline:
            raise ProtocolError(ErrorCode.NOT_REGISTERED, "the challenge expired: send HELLO again")
        return pending

    def sweep(self, now: float) -> None:
        """Forget the pending HELLOs whose time is up."""
        while self._pending:
            identity, oldest = next(iter(self._pending.items()))
            if oldest.deadline >= now:
                return
            del self._pending[identity]


def signed_by(public_key: bytes, signature: str, payload: bytes) -> bool:
    """Whether `signature` (base64url, checked by the codec) is `public_key`'s Ed25519
    signature of `payload`."""
    try:
        VerifyKey(public_key).verify(payload, from_b64url(signature))
    except (CryptoError, ValueError):
        return False
    return True
