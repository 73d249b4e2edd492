"""What the client keeps of the past: the stored history it asks the broker for (HISTORY and
SEARCH requests and their answers), the last broadcast the user saw (for the unread marker
of the next run), the rooms the user was in (entered again by the next run) and the input
history (Up/Down), all three in the client's state directory.

No sockets here: the session sends the commands and hands in the LOG and PAGE events.
"""

import contextlib
import enum
import itertools
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from prompt_toolkit.history import FileHistory

from messages import HISTORY_PAGE_LIMIT, is_room_name
from messages.commands import History, Search
from messages.events import LogEntry, Page

log = logging.getLogger(__name__)

#: Broadcasts shown when the client joins, unless told otherwise (--history).
DEFAULT_HISTORY_LINES: Final = 50
#: Entries of one page fetched by scrolling up past the top of the pane.
OLDER_PAGE_LINES: Final = 50
#: Messages shown by `/query NICK` (the conversation so far).
QUERY_HISTORY_LINES: Final = 20
#: Hits shown by `/search`.
SEARCH_HITS: Final = 50
#: Lines typed that the input history keeps (Up/Down), across runs.
INPUT_HISTORY_LINES: Final = 1000
#: The input history file in the state directory.
INPUT_HISTORY_FILE: Final = "input-history"
#: The file in the state directory that names, per server, the last broadcast shown.
SEEN_FILE: Final = "seen.json"
#: Servers remembered in SEEN_FILE; the ones least recently used go first.
SEEN_SERVERS: Final = 100
#: The rooms the user was in, per server (`{server: ["#dev", ...]}`).
ROOMS_FILE: Final = "rooms.json"
#: Typed lines that hold a secret (the operator token): never written to the input history.
_SECRET_LINE: Final = re.compile(r"\s*/(admin|oper)\b", re.IGNORECASE)
#: Mode of the files the client writes in its state directory: the owner's only.
PRIVATE_FILE_MODE: Final = 0o600


class Purpose(enum.Enum):
    """What an answer is for, hence where and how it is shown."""

    #: The history shown on joining, above everything else, then where now begins.
    BACKLOG = "backlog"
    #: An older page, fetched by scrolling up past the top: inserted above.
    OLDER = "older"
    #: `/history N` or `/query NICK`: shown at the bottom of the pane, like news.
    SHOW = "show"
    #: `/search WORDS`: hits shown with their date.
    SEARCH = "search"
    #: A room's last posts, shown in it when the user joins it.
    ROOM = "room"
    #: An older page of a room's posts, fetched by scrolling up past the top of its buffer.
    OLDER_ROOM = "older room"


@dataclass
class Request:
    """A HISTORY or SEARCH sent, and the LOG events of its answer so far."""

    purpose: Purpose
    command: History | Search
    logs: list[LogEntry] = field(default_factory=list)


class Requests:
    """The HISTORY and SEARCH requests awaiting their PAGE, by ref."""

    def __init__(self) -> None:
        self._numbers = itertools.count(1)
        self._pending: dict[str, Request] = {}

    def history(self, purpose: Purpose, target: str, before: int, limit: int) -> History:
        """A HISTORY command for `purpose`, its answer awaited from now on."""
        command = History(self._ref(), target, before, min(limit, HISTORY_PAGE_LIMIT))
        self._pending[command.ref] = Request(purpose, command)
        return command

    def search(self, words: str, limit: int = SEARCH_HITS) -> Search:
        """A SEARCH command, its answer awaited from now on."""
        command = Search(self._ref(), words, min(limit, HISTORY_PAGE_LIMIT))
        self._pending[command.ref] = Request(Purpose.SEARCH, command)
        return command

    def _ref(self) -> str:
        return f"h{next(self._numbers)}"

    def __contains__(self, ref: str) -> bool:
        return ref in self._pending

    def awaiting(self, *purposes: Purpose) -> bool:
        """Whether an answer for one of `purposes` is on its way."""
        return any(request.purpose in purposes for request in self._pending.values())

    def add(self, entry: LogEntry) -> None:
        """One entry of an answer (ignored if nothing awaits it, or more than asked for)."""
        request = self._pending.get(entry.ref)
        if request is not None and len(request.logs) < request.command.limit:
            request.logs.append(entry)

    def finish(self, page: Page) -> Request | None:
        """The request `page` completes, with its entries; None if none awaited it."""
        return self._pending.pop(page.ref, None)

    def fail(self, ref: str) -> Request | None:
        """The request an ERROR with `ref` refused, if any."""
        return self._pending.pop(ref, None)

    def clear(self) -> list[Request]:
        """Forget every request (the link is gone: no answer comes); return them."""
        lost = list(self._pending.values())
        self._pending.clear()
        return lost


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only, atomically: a temporary file in
    the same directory, made private, then renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), PRIVATE_FILE_MODE)
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class _PerServer:
    """A JSON file of one value per server, the most recent last, SEEN_SERVERS at most,
    readable by the user only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("%s unreadable, starting afresh: %s", self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def _store(self, server: str, value: object) -> None:
        data = self._load()
        data.pop(server, None)
        data[server] = value  # the most recent last
        for stale in list(data)[:-SEEN_SERVERS]:
            del data[stale]
        try:
            write_private(self.path, json.dumps(data, indent=1))
        except OSError as exc:
            log.warning("could not write %s: %s", self.path, exc)


class SeenFile(_PerServer):
    """The last broadcast shown, per server: `{server: [epoch, seq]}` in a JSON file. A
    broadcast number means something only within its epoch (one broker database)."""

    def last_seen(self, server: str, epoch: str) -> int | None:
        """The last broadcast number shown from `server` in `epoch`; None if unknown."""
        match self._load().get(server):
            case [str(seen_epoch), int(seq)] if seen_epoch == epoch and seq >= 0:
                return seq
        return None

    def save(self, server: str, epoch: str, seq: int) -> None:
        """Remember `seq` as the last broadcast shown from `server` in `epoch`."""
        self._store(server, [epoch, seq])


class RoomsFile(_PerServer):
    """The rooms the user was in, per server: the next run enters them again (weechat's
    autojoin, kept up to date by /join and /part)."""

    def rooms(self, server: str) -> list[str]:
        """The rooms to enter on `server` (well-formed names only)."""
        match self._load().get(server):
            case list(names):
                return [name for name in names if isinstance(name, str) and is_room_name(name)]
        return []

    def save(self, server: str, rooms: list[str]) -> None:
        """The user is in `rooms` on `server` now."""
        self._store(server, rooms)


class InputHistory(FileHistory):
    """The lines typed, kept in a file across runs (prompt_toolkit's FileHistory), private to
    the user (they include private messages) and bounded: at most `limit` lines, the file
    rewritten with the newest when it holds many more. `/admin TOKEN` is not kept."""

    def __init__(self, path: Path, limit: int = INPUT_HISTORY_LINES) -> None:
        self.limit = limit
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created private before anything is written to it.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE))
        os.chmod(path, PRIVATE_FILE_MODE)
        super().__init__(path)
        self.path = path

    def store_string(self, string: str) -> None:
        # An operator token is a secret: Up brings it back in this run only.
        if _SECRET_LINE.match(string):
            return
        super().store_string(string)

    def load_history_strings(self) -> Iterable[str]:
        newest_first = list(super().load_history_strings())
        kept = newest_first[: self.limit]
        if len(newest_first) > 2 * self.limit:
            self._rewrite(reversed(kept))
        return kept

    def _rewrite(self, oldest_first: Iterable[str]) -> None:
        # FileHistory's format: a line that does not start with `+` between entries, then
        # each line of the entry after a `+`.
        text = "".join(
            "#\n" + "".join(f"+{line}\n" for line in string.split("\n")) for string in oldest_first
        )
        try:
            write_private(self.path, text)
        except OSError as exc:
            log.warning("could not rewrite %s: %s", self.path, exc)
