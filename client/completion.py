"""Tab completion of command names and nicks, from the live chat state.

- `/` then letters at the start of the line: command names;
- after `/msg `, `/query `, `/kick `, `/ban `, `/unban `, `/ignore ` and `/unignore `: nicks,
  followed by a space;
- a word starting with `@`: `@nick `;
- after `/msg ` and `/query `, and after `@`, the owners of owned nicks who are away too,
  after those present (to send them private messages);
- a word starting with `#`: room names, those the user is in first;
- the first word of a line: `nick: ` (addressing someone, weechat style);
- any other word (in a plain line, `/msg`, `/wall` or `/me`): `nick `.

Nicks match case-insensitively by prefix (`nick_key`, so any script works) and come most
recent speaker first (`ChatState.ranked_nicks`); the user's own nick is never offered.
"""

import re
from collections.abc import Iterable
from typing import Final

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from messages import nick_key, room_key

from .commands import COMMANDS
from .state import ChatState

_LAST_WORD: Final = re.compile(r"\S*\Z")
#: Commands whose nick may be away (an owner of an owned nick who is not here).
_PRIVATE_COMMAND: Final = re.compile(r"^/(?:msg|tell|query)\s+\Z", re.IGNORECASE)
_NICK_COMMAND: Final = re.compile(
    "^/(?:" + "|".join(info.name for info in COMMANDS if info.takes_nick) + r")\s+\Z",
    re.IGNORECASE,
)


class ChatCompleter(Completer):
    """Completes commands and nicks; reads `state` afresh on every call."""

    def __init__(self, state: ChatState) -> None:
        self._state = state

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        before = document.text_before_cursor
        if before.startswith("/") and not before.startswith("//") and " " not in before:
            yield from self._commands(before)
            return
        match = _LAST_WORD.search(before)
        word = match.group() if match else ""
        head = before[: len(before) - len(word)]
        if word.startswith("#"):
            yield from self._rooms(word)
        elif word.startswith("@"):
            yield from self._nicks(word[1:], len(word), "@", " ", away=True)
        elif _NICK_COMMAND.match(head):
            away = _PRIVATE_COMMAND.match(head) is not None
            yield from self._nicks(word, len(word), "", " ", away=away)
        elif not head.strip() and not word.startswith("/"):
            yield from self._nicks(word, len(word), "", ": ")
        elif not head.startswith("/") or head.lower().startswith(("/wall ", "/msg ", "/me ")):
            yield from self._nicks(word, len(word), "", " ")

    def _commands(self, before: str) -> Iterable[Completion]:
        prefix = before[1:].lower()
        for info in COMMANDS:
            if info.name.startswith(prefix):
                suffix = " " if info.args else ""
                yield Completion(
                    f"/{info.name}{suffix}",
                    start_position=-len(before),
                    display=f"/{info.name}",
                    display_meta=info.summary,
                )

    def _rooms(self, word: str) -> Iterable[Completion]:
        key = room_key(word)
        for name in self._state.ranked_rooms():
            if room_key(name).startswith(key):
                yield Completion(f"{name} ", start_position=-len(word), display=name)

    def _nicks(
        self, prefix: str, replace: int, lead: str, suffix: str, away: bool = False
    ) -> Iterable[Completion]:
        key = nick_key(prefix)
        for nick in self._state.ranked_nicks(away):
            if nick_key(nick).startswith(key):
                yield Completion(
                    f"{lead}{nick}{suffix}", start_position=-replace, display=f"{lead}{nick}"
                )
