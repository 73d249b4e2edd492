"""What the full-screen client leaves out: ignored nicks, and weechat's smart filter of joins
and leaves.

- `/ignore nick`: nothing nick says, to everyone or privately, is shown (the session still
  confirms their private messages with RECEIVED, so the sender is not left waiting, and
  nobody is told). Kept for the run, in this client only.
- `/filter joins`: join and leave lines are hidden, except those of someone who spoke in
  the SMART_FILTER_MS before (whose leaving matters to the conversation). As in weechat, each
  line is judged when it arrives (`quiet`), filter on or off, and the switch shows or hides
  the quiet ones, those already shown included.

Sans-IO: times are given, in milliseconds since the epoch like entries' times.
"""

from typing import Final

from messages import nick_key

from .state import Entry, EntryKind

#: A join or leave stays shown, with the smart filter on, for someone who spoke within this
#: long (ms): weechat's `irc.look.smart_filter_delay`, 5 minutes.
SMART_FILTER_MS: Final = 5 * 60 * 1000
#: Speakers remembered before those silent past SMART_FILTER_MS are forgotten.
SPEAKERS_KEPT: Final = 1000


class Filters:
    """The ignored nicks, the smart filter's switch, and who spoke when."""

    def __init__(self) -> None:
        #: Hide joins and leaves of those who did not speak lately.
        self.smart = False
        # nick_key -> nick as typed, in order of ignoring.
        self._ignored: dict[str, str] = {}
        # nick_key -> when they last said something (ms).
        self._spoke: dict[str, int] = {}

    @property
    def ignored(self) -> list[str]:
        """The ignored nicks, in the order they were ignored."""
        return list(self._ignored.values())

    def ignore(self, nick: str) -> bool:
        """Ignore `nick`; False if it was already."""
        key = nick_key(nick)
        if key in self._ignored:
            return False
        self._ignored[key] = nick
        return True

    def unignore(self, nick: str) -> bool:
        """Stop ignoring `nick`; False if it was not."""
        return self._ignored.pop(nick_key(nick), None) is not None

    def ignores(self, entry: Entry, now_ms: int) -> bool:
        """Whether `entry`, arriving at `now_ms`, is from an ignored nick (and so left out);
        notes who speaks."""
        if entry.kind not in (EntryKind.MESSAGE, EntryKind.PRIVATE) or entry.own:
            return False
        key = nick_key(entry.sender)
        if key in self._ignored:
            return True
        if not entry.history:
            self._spoke[key] = now_ms
            if len(self._spoke) > SPEAKERS_KEPT:
                self._forget_before(now_ms - SMART_FILTER_MS)
        return False

    def quiet(self, entry: Entry, now_ms: int) -> bool:
        """Whether `entry`, arriving at `now_ms`, is a join or leave the smart filter hides
        when on: of someone who did not speak in the SMART_FILTER_MS before."""
        if not entry.presence:
            return False
        spoke = self._spoke.get(nick_key(entry.sender))
        return spoke is None or now_ms - spoke > SMART_FILTER_MS

    def _forget_before(self, time_ms: int) -> None:
        self._spoke = {key: when for key, when in self._spoke.items() if when >= time_ms}
