"""The client's identity: the Ed25519 key that owns its registered nicks.

The secret is a seed of 32 random bytes, kept in one file (`identity` in the state
directory unless `--identity` names another): one line of base64url, mode 0600. It is made
on first use, written to a temporary file in the same directory and linked into place, so
that no other process ever sees half a key, and two clients starting at once end up with
the same one. To use the same identity on another machine, copy the file there.

The broker sees only the public key and signatures (REGISTER, PROVE), never the seed.
"""

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from nacl.signing import SigningKey

from messages import b64url, from_b64url, prove_payload, register_payload
from messages.commands import Prove, Register

#: The identity's file in the client's state directory.
IDENTITY_FILE: Final = "identity"
#: Bytes of the secret seed.
SEED_BYTES: Final = 32


class IdentityError(Exception):
    """The identity file cannot be used; the message says why and what to do."""


class Identity:
    """An Ed25519 key pair; signs what proves it owns a nick."""

    def __init__(self, seed: bytes) -> None:
        self._key = SigningKey(seed)
        #: The public key as it travels (base64url of 32 bytes).
        self.public_key = b64url(bytes(self._key.verify_key))

    @classmethod
    def generate(cls) -> "Identity":
        """A new identity from fresh random bytes (kept nowhere)."""
        return cls(secrets.token_bytes(SEED_BYTES))

    def register(self, nick: str, session: str) -> Register:
        """REGISTER of `nick` for the session with token `session`."""
        return Register(self.public_key, self._sign(register_payload(nick, session)))

    def prove(self, nonce: str, nick: str, session: str) -> Prove:
        """PROVE answering the CHALLENGE `nonce` to the HELLO of `nick` with `session`."""
        return Prove(self.public_key, self._sign(prove_payload(nonce, nick, session)))

    def _sign(self, payload: bytes) -> str:
        return b64url(self._key.sign(payload).signature)


def load_identity(path: Path, create: bool = True) -> Identity:
    """The identity kept in `path`, made there first if the file does not exist (with
    `create`). Raises IdentityError if it cannot be read, is not an identity, or others may
    read it."""
    try:
        return _read(path)
    except FileNotFoundError:
        if not create:
            raise IdentityError(
                f"no identity file at {path}: copy yours there, or leave --identity out to "
                "use (or make) the one in the state directory"
            ) from None
    try:
        _create(path)
        return _read(path)
    except OSError as exc:
        raise IdentityError(f"cannot write the identity file {path}: {exc.strerror}") from None


def _read(path: Path) -> Identity:
    try:
        with path.open("rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            data = file.read(4 * SEED_BYTES)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise IdentityError(f"cannot read the identity file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IdentityError(
            f"the identity file {path} may be read by others (mode {stat.S_IMODE(mode):04o}): "
            f"whoever reads it owns your nicks; run chmod 600 {path}"
        )
    try:
        seed = from_b64url(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        seed = b""
    if len(seed) != SEED_BYTES:
        raise IdentityError(
            f"{path} is not an identity file (one line: {SEED_BYTES} bytes in base64url)"
        )
    return Identity(seed)


def _create(path: Path) -> None:
    """Write a new seed to `path`, unless another process got there first."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            # Whatever the umask: only the owner may read a secret.
            os.fchmod(file.fileno(), 0o600)
            file.write(b64url(secrets.token_bytes(SEED_BYTES)).encode("ascii") + b"\n")
            file.flush()
            os.fsync(file.fileno())
        # A link, not a rename: it never replaces an identity made meanwhile.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
