"""CurveZMQ: a secure broker talks only to clients that hold its public key."""

from pathlib import Path

import zmq

from broker import BrokerConfig, BrokerServer
from broker.keys import server_key_pair
from messages import events as ev
from tests.conftest import ADMIN_TOKEN, RANDOM_LOOPBACK, RunningBroker, serve
from tests.peers import Peer

Context = zmq.Context[zmq.Socket[bytes]]
#: How long a client without the key waits to see that nothing comes back, in ms.
NO_ANSWER_MS = 500


def test_key_pair_is_created_once_and_kept_private(tmp_path: Path) -> None:
    public, secret = server_key_pair(tmp_path / "state")
    assert server_key_pair(tmp_path / "state") == (public, secret)
    assert len(public) == len(secret) == 40  # Z85 of 32 bytes
    assert (tmp_path / "state" / "server.key_secret").stat().st_mode & 0o077 == 0


def secure_broker(tmp_path: Path) -> tuple[RunningBroker, bytes]:
    public, secret = server_key_pair(tmp_path)
    config = BrokerConfig(bind=RANDOM_LOOPBACK, admin_token=ADMIN_TOKEN, curve_secret_key=secret)
    return serve(BrokerServer(config)), public


def test_a_client_with_the_key_chats_encrypted(context: Context, tmp_path: Path) -> None:
    broker, server_key = secure_broker(tmp_path)
    try:
        alice = Peer(context, broker.endpoint, server_key=server_key)
        bob = Peer(context, broker.endpoint, server_key=server_key)
        alice.register("alice")
        bob.register("bob", stream=True)  # the stream is encrypted with the same key
        alice.tell("bob", "only we can read this")
        bob.expect_after_presence(ev.PrivateMessage, text="only we can read this")
        alice.say("and this")
        bob.expect_after_presence(ev.Message, text="and this")
    finally:
        broker.stop()


def test_a_client_without_the_key_cannot_register(context: Context, tmp_path: Path) -> None:
    broker, server_key = secure_broker(tmp_path)
    try:
        plain = Peer(context, broker.endpoint)
        plain.send_raw([b"ZCHAT01", b"HELLO", b"mallory", b"s1"])
        assert not plain.socket.poll(NO_ANSWER_MS)
        wrong_key, _ = zmq.curve_keypair()
        guesser = Peer(context, broker.endpoint, server_key=wrong_key)
        guesser.send_raw([b"ZCHAT01", b"HELLO", b"mallory", b"s2"])
        assert not guesser.socket.poll(NO_ANSWER_MS)
        # Nor read the broadcast stream.
        carol = Peer(context, broker.endpoint, server_key=server_key)
        port = carol.register("carol").stream_port
        eavesdropper = context.socket(zmq.SUB)
        eavesdropper.setsockopt(zmq.LINGER, 0)
        eavesdropper.setsockopt(zmq.SUBSCRIBE, b"")
        eavesdropper.connect(carol.stream_endpoint(port))
        assert not eavesdropper.poll(NO_ANSWER_MS)
        eavesdropper.close()
        # The broker still serves those who hold the key.
        Peer(context, broker.endpoint, server_key=server_key).register("alice")
    finally:
        broker.stop()
