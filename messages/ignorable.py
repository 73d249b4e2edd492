"""Unicode's default-ignorable code points: characters that display as nothing at all.

Python's unicodedata does not expose the property, so the table is copied here.
"""

import re
from typing import Final

#: The code point ranges (first, last) with the Default_Ignorable_Code_Point property, from
#: the Unicode Character Database file DerivedCoreProperties.txt, Unicode 14.0 (the version
#: of Python 3.11's unicodedata; later versions list the same ranges).
DEFAULT_IGNORABLE_RANGES: Final = (
    (0x00AD, 0x00AD),  # SOFT HYPHEN
    (0x034F, 0x034F),  # COMBINING GRAPHEME JOINER
    (0x061C, 0x061C),  # ARABIC LETTER MARK
    (0x115F, 0x1160),  # HANGUL CHOSEONG FILLER..HANGUL JUNGSEONG FILLER
    (0x17B4, 0x17B5),  # KHMER VOWEL INHERENT AQ..KHMER VOWEL INHERENT AA
    (0x180B, 0x180F),  # MONGOLIAN FREE VARIATION SELECTORS, MONGOLIAN VOWEL SEPARATOR
    (0x200B, 0x200F),  # ZERO WIDTH SPACE..RIGHT-TO-LEFT MARK
    (0x202A, 0x202E),  # LEFT-TO-RIGHT EMBEDDING..RIGHT-TO-LEFT OVERRIDE
    (0x2060, 0x206F),  # WORD JOINER..NOMINAL DIGIT SHAPES (2065 reserved)
    (0x3164, 0x3164),  # HANGUL FILLER
    (0xFE00, 0xFE0F),  # VARIATION SELECTOR-1..VARIATION SELECTOR-16
    (0xFEFF, 0xFEFF),  # ZERO WIDTH NO-BREAK SPACE
    (0xFFA0, 0xFFA0),  # HALFWIDTH HANGUL FILLER
    (0xFFF0, 0xFFF8),  # reserved
    (0x1BCA0, 0x1BCA3),  # SHORTHAND FORMAT LETTER OVERLAP..SHORTHAND FORMAT UP STEP
    (0x1D173, 0x1D17A),  # MUSICAL SYMBOL BEGIN BEAM..MUSICAL SYMBOL END PHRASE
    (0xE0000, 0xE0FFF),  # tags (LANGUAGE TAG, TAG SPACE..CANCEL TAG), VARIATION SELECTOR-17
    # ..VARIATION SELECTOR-256, and reserved code points around them
)

_DEFAULT_IGNORABLE: Final = re.compile(
    "[" + "".join(f"\\U{first:08x}-\\U{last:08x}" for first, last in DEFAULT_IGNORABLE_RANGES) + "]"
)


def first_default_ignorable(text: str) -> str | None:
    """The first default-ignorable character in `text`, or None if there is none."""
    found = _DEFAULT_IGNORABLE.search(text)
    return found.group() if found else None


def without_default_ignorables(text: str) -> str:
    """`text` with every default-ignorable character removed, as NFKC_Casefold removes them."""
    return _DEFAULT_IGNORABLE.sub("", text)
