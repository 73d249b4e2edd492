"""A nick list that comes in pages (USERS or NICKS `more`), gathered until the last
(sans-IO)."""

from collections.abc import Callable
from typing import Generic, TypeVar

from messages import nick_key
from messages.events import NickList, UserList

P = TypeVar("P", UserList, NickList)


class ListPages(Generic[P]):
    """The pages of the USERS (or NICKS) answer being received, in order.

    A page whose `after` is empty starts an answer (a newer one replaces any answer in
    progress); a page that continues the answer in progress (its `after` is the last nick of
    the page before) is added; any other page is left out, as part of an answer given up.
    """

    def __init__(self, nicks: Callable[[P], tuple[str, ...]]) -> None:
        self._nicks: Callable[[P], tuple[str, ...]] = nicks
        self._pages: list[P] = []
        # The nick the next page must continue after; None: no answer in progress.
        self._cursor: str | None = None

    @property
    def in_progress(self) -> bool:
        """Whether an answer has started and its last page has not come yet."""
        return self._cursor is not None

    @property
    def cursor(self) -> str | None:
        """The nick the next page is asked after; None: no answer in progress."""
        return self._cursor

    def reset(self) -> None:
        """Give up the answer in progress (its last pages will never come)."""
        self._pages = []
        self._cursor = None

    def add(self, page: P) -> tuple[list[P] | None, str | None]:
        """Take in `page`. Returns the whole answer once its last page is in (else None),
        and the nick to ask the next page after (None: no page to ask for)."""
        if not page.after:
            self._pages = [page]
        elif self._cursor is not None and nick_key(page.after) == nick_key(self._cursor):
            self._pages.append(page)
        else:
            return None, None
        nicks = self._nicks(page)
        if page.more and nicks:
            self._cursor = nicks[-1]
            return None, self._cursor
        pages = self._pages
        self.reset()
        return pages, None


class UserListPages(ListPages[UserList]):
    """The pages of a USERS answer."""

    def __init__(self) -> None:
        super().__init__(lambda page: page.users)


class NickListPages(ListPages[NickList]):
    """The pages of a NICKS answer: the owned nicks."""

    def __init__(self) -> None:
        super().__init__(lambda page: page.nicks)
