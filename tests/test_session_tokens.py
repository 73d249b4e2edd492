"""Session tokens are bearer secrets: the broker refuses guessable ones, and every client of
ours (the real client, the test peers, the benchmark's) makes them long enough."""

import pytest
import zmq

from bench.load import Dialect
from client.session import new_session_token
from messages import MIN_SESSION_TOKEN_BYTES, ErrorCode, decode_command
from messages import commands as cmd
from messages import events as ev
from tests.conftest import RunningBroker
from tests.peers import Peer

Context = zmq.Context[zmq.Socket[bytes]]
#: Tokens a bot might choose, each of fewer than 128 bits: 1 to 21 characters.
SHORT_TOKENS = ["4711", "a", "x" * (MIN_SESSION_TOKEN_BYTES - 1)]


@pytest.mark.parametrize("token", SHORT_TOKENS)
def test_a_short_session_token_is_refused_and_nothing_is_registered(
    broker: RunningBroker, context: Context, token: str
) -> None:
    bot = Peer(context, broker.endpoint)
    bot.send(cmd.Hello("bot", token))
    error = bot.expect(ev.Error, code=ErrorCode.MALFORMED)
    assert f"shortest allowed is {MIN_SESSION_TOKEN_BYTES}" in error.reason
    assert "128 random bits" in error.reason
    # Nothing was registered: the nick is free for a proper token.
    assert Peer(context, broker.endpoint).register("bot").nick == "bot"


def test_a_token_of_the_minimum_length_is_accepted(broker: RunningBroker, context: Context) -> None:
    peer = Peer(context, broker.endpoint)
    peer.token = "y" * MIN_SESSION_TOKEN_BYTES
    assert peer.register("alice").nick == "alice"


def test_our_clients_make_tokens_long_enough_and_distinct(context: Context) -> None:
    tokens = [new_session_token() for _ in range(100)]
    assert len(set(tokens)) == len(tokens)
    assert all(len(token) >= MIN_SESSION_TOKEN_BYTES for token in tokens)
    # The test peers and the benchmark's clients say HELLO with tokens the broker takes.
    peer = Peer(context, "tcp://127.0.0.1:1")
    try:
        assert len(peer.token) >= MIN_SESSION_TOKEN_BYTES
    finally:
        peer.close()
    hello = decode_command(Dialect("chat").hello("b1"))
    assert isinstance(hello, cmd.Hello)
    assert len(hello.session) >= MIN_SESSION_TOKEN_BYTES
