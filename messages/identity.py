"""Owned nicks: what a client signs to prove it holds the key a nick is registered to, and
the base64url fields that carry keys, signatures and nonces. No keys and no signing here:
the broker verifies (`broker.owners`), the client signs (`client.identity`).

A field of raw bytes travels as base64url without padding (RFC 4648 section 5): only
`A-Z a-z 0-9 - _`, of exactly the length its byte count gives, in canonical form.
"""

import base64
import binascii
from dataclasses import dataclass
from typing import Annotated, Final

from .errors import ErrorCode, ProtocolError
from .limits import NONCE_BYTES, PUBLIC_KEY_BYTES, SIGNATURE, SIGNATURE_BYTES
from .nicks import nick_key

_B64URL_CHARS: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)


def b64url_length(size: int) -> int:
    """Characters of `size` bytes in base64url without padding."""
    return (4 * size + 2) // 3


def b64url(data: bytes) -> str:
    """`data` in base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def from_b64url(text: str) -> bytes:
    """The bytes of base64url `text` (without padding); ValueError if it is not that."""
    padded = text + "=" * (-len(text) % 4)
    try:
        data = base64.urlsafe_b64decode(padded.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("not base64url") from None
    if b64url(data) != text:
        raise ValueError("not canonical base64url")
    return data


@dataclass(frozen=True, slots=True)
class Base64Of:
    """The kind of a field that carries `size` raw bytes as base64url (see the codec)."""

    size: int

    def decode(self, name: str, frame: bytes) -> str:
        """The field's text, checked; raises ProtocolError as the codec's decoders do."""
        length = b64url_length(self.size)
        if len(frame) > length:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"{name} is {len(frame)} bytes long; the limit is {length}"
            )
        text = frame.decode("ascii", "replace")
        if len(frame) != length or not _B64URL_CHARS.issuperset(frame):
            raise ProtocolError(
                ErrorCode.MALFORMED,
                f"{name} must be {self.size} bytes in base64url without padding "
                f"({length} characters of A-Z a-z 0-9 - _)",
            )
        try:
            from_b64url(text)
        except ValueError:
            raise ProtocolError(ErrorCode.MALFORMED, f"{name} is not canonical base64url") from None
        return text


#: An Ed25519 public key (32 bytes), as base64url.
PublicKey = Annotated[str, Base64Of(PUBLIC_KEY_BYTES)]
#: An Ed25519 signature (64 bytes), as base64url.
Signature = Annotated[str, Base64Of(SIGNATURE_BYTES)]
#: A challenge's random nonce (32 bytes), as base64url.
Nonce = Annotated[str, Base64Of(NONCE_BYTES)]


def register_payload(nick: str, session: str) -> bytes:
    """What REGISTER signs: the nick's uniqueness key and the session token, so that a
    signature made for one session and nick is worth nothing for another."""
    return b"%s REGISTER\n%s\n%s" % (SIGNATURE, nick_key(nick).encode(), session.encode())


def prove_payload(nonce: str, nick: str, session: str) -> bytes:
    """What PROVE signs: the CHALLENGE's nonce as sent (base64url text), the nick's
    uniqueness key and the session token of the HELLO it answers."""
    return b"%s PROVE\n%s\n%s\n%s" % (
        SIGNATURE,
        nonce.encode("ascii"),
        nick_key(nick).encode(),
        session.encode(),
    )
