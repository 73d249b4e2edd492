"""Property tests: arbitrary frames never break the decoder or the broker core."""

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core import STREAM, ChatCore
from broker.ratelimit import FloodPolicy
from messages import SIGNATURE, ProtocolError, decode_command, decode_event, encode, nick_key
from messages import commands as cmd

IDENTITIES = [b"id-%d" % i for i in range(4)]
NICKS = ["alice", "Alice", "bob", "Боб", "рор", "pop", "x" * 33, "", "a b", "mikе"]
TOKEN = "operator-token-0123456789"

texts = st.text(max_size=30)
msg_ids = st.sampled_from(["m1", "m2", "m3"]) | st.text("ab.-_1", min_size=1, max_size=4)
# Long enough to be taken (MIN_SESSION_TOKEN_BYTES), and one that is not.
sessions = st.sampled_from(["s1-session-token-000000", "s2-session-token-000000", "s3"])
bar_seconds = st.sampled_from([0, 1, 60, 10**9])
nicks = st.sampled_from(NICKS) | texts
valid_commands = st.one_of(
    st.builds(cmd.Hello, nicks, sessions),
    st.builds(cmd.Say, msg_ids, texts),
    st.builds(cmd.Tell, msg_ids, nicks, texts),
    st.builds(cmd.Received, msg_ids),
    st.builds(cmd.Fetch, st.integers(0, 50)),
    st.just(cmd.ListUsers()),
    st.just(cmd.Ping()),
    st.builds(cmd.Quit, texts),
    st.builds(cmd.Admin, st.sampled_from([TOKEN, "wrong"])),
    st.builds(cmd.Kick, nicks, bar_seconds, texts),
    st.builds(cmd.Ban, nicks, bar_seconds, texts),
    st.builds(cmd.Unban, nicks),
    st.builds(cmd.Wall, texts),
).map(encode)
verbs = st.sampled_from(
    [
        b"HELLO",
        b"SAY",
        b"TELL",
        b"USERS",
        b"PING",
        b"QUIT",
        b"ADMIN",
        b"KICK",
        b"BAN",
        b"UNBAN",
        b"WALL",
        b"SHUTDOWN",
        b"RECEIVED",
        b"FETCH",
        b"WELCOME",
        b"",
    ]
) | st.binary(max_size=8)
junk = st.lists(st.binary(max_size=40), max_size=10)
near_miss = st.tuples(st.sampled_from([SIGNATURE, b"ZCHAT02", b""]), verbs, junk).map(
    lambda t: [t[0], t[1], *t[2]]
)
frames = st.one_of(valid_commands, near_miss, junk)


@given(frames)
def test_decoders_raise_only_protocol_errors(message: list[bytes]) -> None:
    for decode in (decode_command, decode_event):
        try:
            decode(message)
        except ProtocolError as exc:
            assert 400 <= exc.code <= 499
            assert exc.reason


def check_invariants(core: ChatCore) -> None:
    sessions = core.sessions()
    assert len({s.identity for s in sessions}) == len(sessions)
    assert len({nick_key(s.nick) for s in sessions}) == len(sessions)
    for session in sessions:
        # each nick maps to one identity and back
        assert core.session(session.identity) is session
        assert core.find(session.nick) is session
    # presence matches the map
    assert sorted(core.users()) == sorted(s.nick for s in sessions)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(IDENTITIES), frames, st.floats(0, 3)),
        max_size=60,
    )
)
def test_core_survives_any_sequence_and_keeps_its_invariants(
    steps: list[tuple[bytes, list[bytes], float]],
) -> None:
    core = ChatCore(TOKEN, heartbeat_ms=1000, flood=FloodPolicy(burst=5, strikes_to_kick=3))
    now = 0.0
    for identity, message, delay in steps:
        now += delay
        for recipient, event in core.receive(identity, message, now) + core.expire(now):
            assert recipient in IDENTITIES or recipient == STREAM
            # Whatever the core emits is a valid event, within every protocol limit.
            assert decode_event(encode(event)) == event
        check_invariants(core)
