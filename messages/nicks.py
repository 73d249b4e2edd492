"""Nickname rules: what a valid nick is and when two nicks are the same."""

import unicodedata

from .errors import ErrorCode, ProtocolError
from .limits import MAX_NICK_CHARS

_EXTRA_NICK_CHARS = frozenset("_-")


def _is_nick_char(char: str) -> bool:
    category = unicodedata.category(char)
    # Letters of any script (L*), decimal digits of any script (Nd), and `_` `-`.
    return category.startswith("L") or category == "Nd" or char in _EXTRA_NICK_CHARS


def normalize_nick(nick: str) -> str:
    """Return `nick` in NFC form if it is a valid nickname; raise ProtocolError if not.

    A valid nick is 1 to MAX_NICK_CHARS characters, each a letter of any script, a decimal
    digit, `_` or `-`.
    """
    nick = unicodedata.normalize("NFC", nick)
    if not nick:
        raise ProtocolError(ErrorCode.INVALID_NICK, "nick is empty")
    if len(nick) > MAX_NICK_CHARS:
        raise ProtocolError(
            ErrorCode.INVALID_NICK,
            f"nick is {len(nick)} characters long; the limit is {MAX_NICK_CHARS}",
        )
    for char in nick:
        if not _is_nick_char(char):
            shown = char if char.isprintable() else f"U+{ord(char):04X}"
            raise ProtocolError(
                ErrorCode.INVALID_NICK,
                f"nick may not contain {shown!r}: use letters, digits, '_' and '-'",
            )
    return nick


def nick_key(nick: str) -> str:
    """The identity of a nick for uniqueness: `Alice`, `alice` and `ＡＬＩＣＥ` share one key."""
    # NFKC_Casefold, approximated as the Unicode standard's toNFKC_Casefold recipe.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", nick).casefold())
