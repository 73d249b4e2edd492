"""Nickname rules: what a valid nick is and when two nicks are the same."""

import unicodedata
from functools import cache

from confusable_homoglyphs import categories, confusables

from .errors import ErrorCode, ProtocolError
from .limits import MAX_NICK_CHARS

_EXTRA_NICK_CHARS = frozenset("_-")
#: Scripts that mix with any other: digits, `_`, `-`, combining marks.
_NEUTRAL_SCRIPTS = frozenset({"COMMON", "INHERITED"})
#: Script sets that are one writing system (UTS #39 "highly restrictive" level).
_SCRIPT_FAMILIES = (
    frozenset({"HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"HAN", "HANGUL"}),
    frozenset({"HAN", "BOPOMOFO"}),
)


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
    scripts = nick_scripts(nick)
    if len(scripts) > 1 and not any(scripts <= family for family in _SCRIPT_FAMILIES):
        names = " and ".join(sorted(name.title() for name in scripts))
        raise ProtocolError(
            ErrorCode.INVALID_NICK, f"nick mixes scripts ({names}): use one alphabet"
        )
    return nick


def nick_scripts(nick: str) -> frozenset[str]:
    """The scripts (LATIN, CYRILLIC, ...) of the letters in `nick`."""
    return frozenset(categories.alias(char) for char in nick) - _NEUTRAL_SCRIPTS


@cache
def _prototype(char: str) -> str:
    # The lowest code point among the characters Unicode lists as confusable with `char`
    # (UTS #39 data): Cyrillic "а" and Latin "a" both become "a".
    lookalikes: list[dict[str, str]] = confusables.confusables_data.get(char, [])
    candidates = [char, *(entry["c"] for entry in lookalikes if len(entry["c"]) == 1)]
    return min(candidates)


def nick_skeleton(nick: str) -> str:
    """What `nick` looks like: nicks with equal skeletons are visually confusable.

    Latin `pop` and Cyrillic `рор` share a skeleton; so do `alice` and `ALICE`.
    """
    folded = "".join(map(_prototype, unicodedata.normalize("NFKC", nick))).casefold()
    return "".join(map(_prototype, folded))


def nick_key(nick: str) -> str:
    """The identity of a nick for uniqueness: `Alice`, `alice` and `ＡＬＩＣＥ` share one key."""
    # NFKC_Casefold, approximated as the Unicode standard's toNFKC_Casefold recipe.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", nick).casefold())
