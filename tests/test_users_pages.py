"""The user list comes in pages (issue 10, finding 9): however many users there are, no
answer to USERS is larger than a client accepts, and the client follows the pages."""

import asyncio
import random

import pytest
import zmq

from broker import BrokerConfig, BrokerServer
from broker.core import ChatCore
from broker.ratelimit import FloodPolicy
from client.state import ChatState
from client.userpages import UserListPages
from messages import (
    MAX_EVENT_WIRE_FRAME_BYTES,
    MAX_NICK_CHARS,
    USERS_PAGE_BYTES,
    decode_event,
    encode,
    nick_key,
)
from messages import commands as cmd
from messages import events as ev
from tests.client_helpers import bot_client, eventually
from tests.conftest import ADMIN_TOKEN, RANDOM_LOOPBACK, serve
from tests.peers import Peer

#: The smallest page a broker allows: one longest nick.
SMALL_PAGE = 4 * MAX_NICK_CHARS
#: Flood control that never refuses: these tests are about what the pages hold.
UNLIMITED = FloodPolicy(burst=10**6, per_second=1e6, reply_burst_bytes=10**9)
#: The issue's figure: this many users with nicks of the most bytes made USERS too large.
MANY_USERS = 16_500


def registered(nicks: list[str], page_bytes: int = USERS_PAGE_BYTES) -> ChatCore:
    core = ChatCore(ADMIN_TOKEN, flood=UNLIMITED, epoch="e0", users_page_bytes=page_bytes)
    for n, nick in enumerate(nicks):
        # Stream readers: a join is published once, not sent to everyone registered so far.
        core.receive(b"\0%d" % n, encode(cmd.Hello(nick, f"session-{n:016d}", True)), 0.0)
    return core


def users_page(core: ChatCore, after: str = "", identity: bytes = b"\0" + b"0") -> ev.UserList:
    [(_, page)] = core.receive(identity, encode(cmd.ListUsers(after)), 0.0)
    assert isinstance(page, ev.UserList), page
    return page


def all_pages(core: ChatCore) -> list[ev.UserList]:
    pages = [users_page(core)]
    while pages[-1].more:
        pages.append(users_page(core, pages[-1].users[-1]))
    return pages


@pytest.mark.parametrize(
    ("nicks", "pages"),
    [
        # A short list is one page, as before.
        (["bob", "alice", "carol"], [(["alice", "bob", "carol"], False)]),
        # 32-byte nicks: three and their two spaces fit in 128 bytes, four do not.
        (
            [c * 32 for c in "gfedcba"],
            [([c * 32 for c in "abc"], True), ([c * 32 for c in "def"], True), (["g" * 32], False)],
        ),
        # 32 + 1 + 32 + 1 + 32 + 1 + 29 bytes fill a page exactly.
        (
            ["a" * 32, "b" * 32, "c" * 32, "d" * 29],
            [(["a" * 32, "b" * 32, "c" * 32, "d" * 29], False)],
        ),
        (
            ["a" * 32, "b" * 32, "c" * 32, "d" * 29, "e"],
            [(["a" * 32, "b" * 32, "c" * 32, "d" * 29], True), (["e"], False)],
        ),
        # Pages follow the uniqueness key, not the spelling.
        (["Bob", "alice", "CAROL"], [(["alice", "Bob", "CAROL"], False)]),
    ],
)
def test_pages_hold_what_fits_in_order(
    nicks: list[str], pages: list[tuple[list[str], bool]]
) -> None:
    core = registered(nicks, SMALL_PAGE)
    got = all_pages(core)
    assert [(list(page.users), page.more) for page in got] == pages
    assert [page.after for page in got] == ["", *(page.users[-1] for page in got[:-1])]
    assert {page.seq for page in got} == {len(nicks)}  # as of the last join


def test_a_page_after_a_nick_that_left_goes_on_from_where_it_was() -> None:
    core = registered([c * 32 for c in "abcdefg"], SMALL_PAGE)
    first = users_page(core)
    assert first.users[-1] == "c" * 32
    # c leaves between the pages: the next page starts after its place all the same.
    core.receive(b"\0" + b"2", encode(cmd.Quit("bye")), 0.0)
    second = users_page(core, "c" * 32)
    assert second.users[0] == "d" * 32


def test_the_issues_user_list_comes_in_pages_a_client_accepts() -> None:
    rng = random.Random(10)
    # 32 characters of 3 UTF-8 bytes: 16,500 of them took over 1.5 MB in one USERS.
    nicks = [
        "".join(chr(rng.randrange(0x4E00, 0x9FA0)) for _ in range(MAX_NICK_CHARS))
        for _ in range(MANY_USERS)
    ]
    core = registered(nicks)
    pages = all_pages(core)
    for page in pages:
        frames = encode(page)
        assert max(map(len, frames)) <= USERS_PAGE_BYTES < MAX_EVENT_WIRE_FRAME_BYTES
        assert decode_event(frames) == page  # within every limit of the client's decoder
    listed = [nick for page in pages for nick in page.users]
    assert listed == sorted(core.users(), key=nick_key)
    assert len(listed) == len(set(listed)) == MANY_USERS


def test_the_client_puts_pages_together_with_what_changed_meanwhile() -> None:
    state = ChatState("zed", "server")
    # Page 1 as of broadcast 10; then dave (in page 1's range) leaves and bob (in page 2's)
    # joins; page 2, as of broadcast 12, already has bob.
    state.apply(ev.Left(11, "dave", "quit"))
    state.apply(ev.Joined(12, "bob"))
    state.apply(ev.Left(13, "erin", "quit"))  # in page 2's range, after it
    first = ev.UserList(10, ("alice", "dave"), "", more=True)
    second = ev.UserList(12, ("bob", "erin", "zed"), "dave")
    state.user_list(first, second)
    assert state.users == ["alice", "bob", "zed"]


def test_pages_of_an_answer_given_up_are_left_out() -> None:
    pages = UserListPages()
    first = ev.UserList(1, ("a",), "", more=True)
    assert pages.add(first) == (None, "a")
    # A newer answer starts: the old one's next page no longer fits.
    newer = ev.UserList(2, ("a", "b"), "", more=True)
    assert pages.add(newer) == (None, "b")
    assert pages.add(ev.UserList(1, ("b",), "a", more=False)) == (None, None)
    last = ev.UserList(2, ("c",), "b")
    assert pages.add(last) == ([newer, last], None)
    assert not pages.in_progress


def test_a_real_client_follows_the_pages_of_a_real_broker() -> None:
    config = BrokerConfig(
        bind=RANDOM_LOOPBACK, admin_token=ADMIN_TOKEN, users_page_bytes=SMALL_PAGE
    )
    broker = serve(BrokerServer(config))
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    nicks = [f"user{n:02d}-" + "x" * 25 for n in range(30)]
    try:
        peers = []
        for nick in nicks:
            peer = Peer(context, broker.endpoint)
            peer.register(nick)
            peers.append(peer)
        # What a raw peer sees: pages no larger than the broker's limit.
        pages = [peers[0].users_page()]
        while pages[-1].more:
            pages.append(peers[0].users_page(pages[-1].users[-1]))
        assert len(pages) > 1
        assert all(len(" ".join(page.users).encode()) <= SMALL_PAGE for page in pages)

        async def scenario() -> None:
            async with bot_client(broker.endpoint, "bob") as bob:
                everyone = sorted([*nicks, "bob"], key=nick_key)
                await eventually(lambda: bob.session.state.users == everyone, "every user")
                # Shown once, whole, when the last page is in.
                shown = [line for line in bob.lines() if "users: " in line]
                assert shown == [f"-!- 31 users: {' '.join(everyone)}"]

        asyncio.run(scenario())
    finally:
        broker.stop()
        context.destroy(linger=0)


def test_a_refused_page_is_asked_for_again() -> None:
    # A reply budget that holds one page at a time: the client's next page is refused
    # until it refills.
    flood = FloodPolicy(reply_burst_bytes=1500, reply_bytes_per_second=1500.0)
    config = BrokerConfig(
        bind=RANDOM_LOOPBACK, admin_token=ADMIN_TOKEN, flood=flood, users_page_bytes=SMALL_PAGE
    )
    broker = serve(BrokerServer(config))
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    nicks = [f"user{n:02d}-" + "x" * 25 for n in range(12)]
    try:
        for nick in nicks:
            Peer(context, broker.endpoint).register(nick)

        async def scenario() -> None:
            async with bot_client(broker.endpoint, "bob") as bob:
                everyone = sorted([*nicks, "bob"], key=nick_key)
                await eventually(lambda: bob.session.state.users == everyone, "every user", 15)
                refusals = [line for line in bob.lines() if "USERS answers are limited" in line]
                assert refusals  # it was refused on the way, and went on

        asyncio.run(scenario())
    finally:
        broker.stop()
        context.destroy(linger=0)
