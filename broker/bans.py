"""What a kick leaves behind: barred nicks, and session tokens that no longer resume.

A kick ends its session for good: the token is remembered, and a HELLO that presents it is
refused, so a client that was away when it was kicked cannot come back by itself. The
kicked nick, and every nick that looks like it, stays barred for as long as the operator
said. Sans-IO: monotonic times (for expiry) and wall-clock times (to tell users until when)
are passed in.
"""

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from messages import nick_key, nick_skeleton

#: Barred nicks kept at most; past that the oldest bar is lifted early.
BARS_LIMIT: Final = 10_000
#: Tokens of kicked sessions remembered at most; past that the oldest is forgotten.
ENDED_SESSIONS_LIMIT: Final = 10_000


@dataclass(frozen=True, slots=True)
class Bar:
    """`nick` may not register until `until` (monotonic seconds), `until_wall` (seconds
    since 1970); `why` says who barred it and why."""

    nick: str
    until: float
    until_wall: float
    why: str

    def until_text(self) -> str:
        """When the bar ends, in UTC, as users are told."""
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.until_wall))


class Bans:
    """Barred nicks (by look-alike skeleton) and ended session tokens."""

    def __init__(self) -> None:
        self._bars: OrderedDict[str, Bar] = OrderedDict()
        self._ended: OrderedDict[str, str] = OrderedDict()

    def bar(self, nick: str, seconds: int, why: str, now: float, wall: float) -> Bar:
        """Bar `nick` and its look-alikes for `seconds` from now (replacing an earlier bar)."""
        skeleton = _look(nick)
        self._bars.pop(skeleton, None)
        bar = self._bars[skeleton] = Bar(nick, now + seconds, wall + seconds, why)
        if len(self._bars) > BARS_LIMIT:
            self._bars.popitem(last=False)
        return bar

    def barred(self, nick: str, now: float) -> Bar | None:
        """The bar on `nick` (or on a nick it looks like) in force at `now`, if any."""
        skeleton = _look(nick)
        bar = self._bars.get(skeleton)
        if bar is not None and bar.until <= now:
            del self._bars[skeleton]
            return None
        return bar

    def lift(self, nick: str, now: float) -> Bar | None:
        """Lift the bar on `nick` (or on a nick it looks like); the bar lifted, if any was
        in force."""
        bar = self._bars.pop(_look(nick), None)
        return bar if bar is not None and bar.until > now else None

    def bars(self, now: float) -> list[Bar]:
        """Every bar in force, the soonest to end first."""
        self.sweep(now)
        return sorted(self._bars.values(), key=lambda bar: bar.until)

    def end_session(self, token: str, why: str) -> None:
        """The session of `token` was ended by a kick: its token resumes nothing again."""
        self._ended.pop(token, None)
        self._ended[token] = why
        if len(self._ended) > ENDED_SESSIONS_LIMIT:
            self._ended.popitem(last=False)

    def ended(self, token: str) -> str | None:
        """Why the session of `token` was ended, if it was."""
        return self._ended.get(token)

    def sweep(self, now: float) -> None:
        """Forget the bars that have ended."""
        for skeleton in [s for s, bar in self._bars.items() if bar.until <= now]:
            del self._bars[skeleton]


def _look(nick: str) -> str:
    """What bars are keyed by: the skeleton of the case-folded nick, so that a bar covers
    the nick in any case and every look-alike."""
    return nick_skeleton(nick_key(nick))
