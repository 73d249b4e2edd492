"""How long an operator bars a nick: the duration syntax of `/kick` and `/ban`, no I/O.

A duration is one word of whole numbers each followed by a unit: `s` (seconds), `m`
(minutes), `h` (hours), `d` (days) or `w` (weeks), largest unit first, such as `90s`, `10m`,
`1h30m` or `7d`; `0s` bars for no time at all. At most MAX_BAR_SECONDS.
"""

import re
from typing import Final

from .limits import MAX_BAR_SECONDS

#: Seconds in each unit, largest first (the order units must come in).
UNIT_SECONDS: Final = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION: Final = re.compile(r"(?:\d{1,9}w)?(?:\d{1,9}d)?(?:\d{1,9}h)?(?:\d{1,9}m)?(?:\d{1,9}s)?")
_PART: Final = re.compile(r"(\d+)([wdhms])")


def parse_duration(word: str) -> int | None:
    """The seconds `word` names, or None if it is not a duration; raises ValueError for a
    duration over MAX_BAR_SECONDS."""
    word = word.lower()
    if not word or not _DURATION.fullmatch(word):
        return None
    seconds = sum(int(count) * UNIT_SECONDS[unit] for count, unit in _PART.findall(word))
    if seconds > MAX_BAR_SECONDS:
        raise ValueError(f"{word} is longer than {format_duration(MAX_BAR_SECONDS)}")
    return seconds


def split_duration(rest: str, default: int) -> tuple[int, str]:
    """`[DURATION] [REASON]` as typed after a nick: the seconds (`default` if the first word
    is not a duration) and the reason. Raises ValueError for a duration too long."""
    first, _, after = rest.strip().partition(" ")
    seconds = parse_duration(first)
    if seconds is None:
        return default, rest.strip()
    return seconds, after.strip()


def format_duration(seconds: int) -> str:
    """`seconds` in the duration syntax, in days and smaller units: 90 -> `1m30s`."""
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in UNIT_SECONDS.items():
        if unit == "w":
            continue  # 365d reads better than 52w1d
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
