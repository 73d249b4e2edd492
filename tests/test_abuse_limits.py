"""Flood control, operator-login throttling, join limits and look-alike nicks (core, no sockets)."""

import itertools

import pytest

from broker.addresses import address_key
from broker.core import FLOOD_CONTROL, ChatCore, Outgoing
from broker.ratelimit import FloodPolicy
from messages import ErrorCode, TokenBucket, encode, nick_skeleton, normalize_nick
from messages import commands as cmd
from messages import events as ev

TOKEN = "operator-token-0123456789"
#: A session token of the required length (MIN_SESSION_TOKEN_BYTES).
SESS = "session-token-of-128-bits"
ALICE, BOB, MALLORY = b"\0alice", b"\0bob", b"\0mallory"
T0 = 500.0
_ids = itertools.count(1)


def next_id() -> str:
    return f"m{next(_ids)}"


POLICY = FloodPolicy(burst=5, per_second=2.0, strikes_to_kick=3, strikes_forgiven_per_second=0.5)


def send(
    core: ChatCore, identity: bytes, command: cmd.ClientCommand, now: float, peer: str = ""
) -> list[Outgoing]:
    return core.receive(identity, encode(command), now, peer)


def codes(out: list[Outgoing]) -> list[int]:
    return [event.code for _, event in out if isinstance(event, ev.Error)]


@pytest.fixture
def chat() -> ChatCore:
    core = ChatCore(TOKEN, heartbeat_ms=1000, flood=POLICY)
    send(core, ALICE, cmd.Hello("alice", SESS), T0)
    send(core, MALLORY, cmd.Hello("mallory", SESS), T0)
    return core


def test_token_bucket_allows_a_burst_then_the_sustained_rate() -> None:
    bucket = TokenBucket(capacity=3, per_second=2.0)
    assert [bucket.take(10.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.wait(10.0) == pytest.approx(0.5)
    assert bucket.take(10.5)
    assert not bucket.take(10.5)
    assert not bucket.full(10.6)
    assert bucket.full(12.0)


def test_a_burst_passes_and_the_excess_gets_429(chat: ChatCore) -> None:
    for i in range(POLICY.burst):
        assert codes(send(chat, MALLORY, cmd.Say(next_id(), f"msg {i}"), T0)) == []
    out = send(chat, MALLORY, cmd.Say(next_id(), "one too many"), T0)
    assert out[0][0] == MALLORY
    assert codes(out) == [ErrorCode.RATE_LIMITED]
    assert "slow down" in out[0][1].reason  # type: ignore[union-attr]
    # Refused means delivered nowhere: alice got nothing from it.
    assert all(identity == MALLORY for identity, _ in out)


def test_sustained_rate_is_allowed(chat: ChatCore) -> None:
    now = T0
    for i in range(40):  # exactly the sustained rate, long after the burst is spent
        now += 1 / POLICY.per_second
        assert codes(send(chat, ALICE, cmd.Say(next_id(), f"{i}"), now)) == []


def test_heartbeats_are_never_limited(chat: ChatCore) -> None:
    for _ in range(100):
        assert send(chat, ALICE, cmd.Ping(), T0) == [(ALICE, ev.Pong())]


def test_sustained_flooding_gets_the_client_kicked(chat: ChatCore) -> None:
    for i in range(POLICY.burst):
        send(chat, MALLORY, cmd.Say(next_id(), f"{i}"), T0)
    for _ in range(POLICY.strikes_to_kick):
        assert codes(send(chat, MALLORY, cmd.Say(next_id(), "spam"), T0)) == [
            ErrorCode.RATE_LIMITED
        ]
    out = send(chat, MALLORY, cmd.Say(next_id(), "spam"), T0)
    assert out[0] == (MALLORY, ev.Kicked(FLOOD_CONTROL, "flooding: too many messages refused"))
    assert (
        ALICE,
        ev.Left(8, "mallory", f"kicked by {FLOOD_CONTROL}: flooding: too many messages refused"),
    ) in out
    assert chat.users() == ("alice",)


def test_failed_operator_logins_are_throttled(chat: ChatCore) -> None:
    for _ in range(FloodPolicy().admin_attempts):
        assert codes(send(chat, MALLORY, cmd.Admin("guess"), T0)) == [ErrorCode.FORBIDDEN]
    # Even the right token is refused while throttled: guessing gains nothing.
    assert codes(send(chat, MALLORY, cmd.Admin(TOKEN), T0 + 1)) == [ErrorCode.RATE_LIMITED]
    later = T0 + FloodPolicy().admin_retry_seconds
    assert send(chat, MALLORY, cmd.Admin(TOKEN), later) == [(MALLORY, ev.Operator())]


def test_joins_from_one_address_are_limited() -> None:
    core = ChatCore(TOKEN, flood=FloodPolicy(join_burst=3, joins_per_second=1.0))
    results = [
        codes(send(core, f"id-{i}".encode(), cmd.Hello(f"user{i}", SESS), T0, peer="203.0.113.7"))
        for i in range(4)
    ]
    assert results == [[], [], [], [ErrorCode.RATE_LIMITED]]
    # Another address is not affected; the first one may join again after a second.
    assert codes(send(core, b"id-x", cmd.Hello("other", SESS), T0, peer="198.51.100.1")) == []
    assert codes(send(core, b"id-3", cmd.Hello("user3", SESS), T0 + 1.0, peer="203.0.113.7")) == []


def test_loopback_joins_are_limited_too() -> None:
    core = ChatCore(TOKEN, flood=FloodPolicy(join_burst=2, joins_per_second=0.001))
    results = [
        codes(send(core, f"id-{i}".encode(), cmd.Hello(f"u{i}", SESS), T0, peer="127.0.0.1"))
        for i in range(3)
    ]
    assert results == [[], [], [ErrorCode.RATE_LIMITED]]
    # An address that libzmq cannot name (none over inproc) is not limited.
    assert codes(send(core, b"id-9", cmd.Hello("u9", SESS), T0)) == []


@pytest.mark.parametrize(
    ("present", "lookalike"),
    [
        ("pop", "рор"),  # Cyrillic р, о
        ("xoxo", "хохо"),  # Cyrillic х, о
        ("ace", "асе"),
        ("рор", "pop"),  # and the other way round
    ],
)
def test_a_nick_that_looks_like_a_present_user_is_refused(present: str, lookalike: str) -> None:
    core = ChatCore(TOKEN)
    send(core, ALICE, cmd.Hello(present, SESS), T0)
    out = send(core, BOB, cmd.Hello(lookalike, SESS), T0)
    assert codes(out) == [ErrorCode.NICK_TAKEN]
    assert f"looks like {present}" in out[0][1].reason  # type: ignore[union-attr]
    # Once the original leaves, the look-alike is free.
    send(core, ALICE, cmd.Quit(""), T0)
    assert isinstance(send(core, BOB, cmd.Hello(lookalike, SESS), T0)[-1][1], ev.Welcome)


@pytest.mark.parametrize("nick", ["аlice", "mikе", "Aнна", "pаypal"])
def test_mixed_script_nicks_are_refused(nick: str) -> None:
    core = ChatCore(TOKEN)
    out = send(core, ALICE, cmd.Hello(nick, SESS), T0)
    assert codes(out) == [ErrorCode.INVALID_NICK]
    assert "mixes scripts" in out[0][1].reason  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "nick", ["Анна", "вася_2", "東京たろう", "タロウ", "김철수", "alice-99", "Ζωή"]
)
def test_single_script_nicks_of_any_alphabet_are_welcome(nick: str) -> None:
    assert normalize_nick(nick) == nick


def test_distinct_real_names_keep_distinct_skeletons() -> None:
    assert nick_skeleton("vasya") != nick_skeleton("вася")
    assert nick_skeleton("alice") != nick_skeleton("alicia")


def test_addresses_are_limited_as_hosts_ipv6_by_its_64_network() -> None:
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("localhost:1000:1000:42") == "localhost:1000:1000:42"
    core = ChatCore(TOKEN, flood=FloodPolicy(sessions_per_address=2))
    for i, peer in enumerate(["2001:db8::1", "2001:db8::2:1", "2001:db8::3:1"]):
        out = send(core, f"id-{i}".encode(), cmd.Hello(f"v6user{i}", f"{SESS}{i}"), T0, peer)
        assert codes(out) == ([] if i < 2 else [ErrorCode.RATE_LIMITED])
    # A session that leaves frees its place.
    send(core, b"id-0", cmd.Quit(""), T0)
    out = send(core, b"id-2", cmd.Hello("v6user2", f"{SESS}2"), T0, "2001:db8::3:1")
    assert codes(out) == []
