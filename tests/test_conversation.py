"""End to end over loopback: a real broker and real DEALER peers, read as conversations."""

from collections.abc import Callable

import zmq

from broker.server import endpoint_port
from messages import MAX_WIRE_FRAME_BYTES, SIGNATURE, ErrorCode, decode_event
from messages import commands as cmd
from messages import events as ev
from tests.conftest import RunningBroker, start_broker
from tests.peers import Peer

Connect = Callable[..., Peer]


def test_broadcast_reaches_everyone(connect: Connect) -> None:
    alice, bob, carol = connect("alice"), connect("bob"), connect("carol")
    alice.say("hello everyone")
    for peer in (alice, bob, carol):
        message = peer.expect_after_presence(ev.Message)
        assert (message.sender, message.text) == ("alice", "hello everyone")


def test_private_reaches_only_its_recipient(connect: Connect) -> None:
    alice, bob, carol = connect("alice"), connect("bob"), connect("carol")
    bob.sync()
    carol.sync()
    alice.tell("bob", "psst, bob")
    alice.say("and now for everyone")
    private = bob.expect_after_presence(ev.PrivateMessage)
    assert (private.sender, private.recipient, private.text) == ("alice", "bob", "psst, bob")
    # alice already has her text: she gets an ACK for it, never a copy.
    seen = [alice.next_event()]
    while not (isinstance(seen[-1], ev.Ack) and private.msg_id in seen[-1].msg_ids):
        seen.append(alice.next_event())
    assert not any(isinstance(event, ev.PrivateMessage) for event in seen)
    # carol's next chat event is the broadcast sent after the private one: nothing leaked.
    assert carol.expect_after_presence(ev.Message).text == "and now for everyone"


def test_private_to_unknown_nick_is_refused(connect: Connect) -> None:
    alice = connect("alice")
    alice.tell("nobody", "hello?")
    alice.expect(ev.Error, code=ErrorCode.NO_SUCH_NICK)


def test_duplicate_nick_is_refused_with_reason(connect: Connect) -> None:
    connect("alice")
    impostor = connect()
    impostor.send(cmd.Hello("ALICE", impostor.token))
    error = impostor.expect(ev.Error, code=ErrorCode.NICK_TAKEN)
    assert "taken" in error.reason
    impostor.register("alice2")
    assert impostor.users() == ("alice", "alice2")


def test_join_and_leave_are_announced_and_lists_stay_right(connect: Connect) -> None:
    alice = connect("alice")
    bob = connect("bob")
    alice.expect(ev.Joined, nick="bob")
    bob.send(cmd.Quit("see you"))
    alice.expect(ev.Left, nick="bob", reason="see you")
    alice.send(cmd.ListUsers())
    alice.expect_after_presence(ev.UserList, users=("alice",))
    # The nick is free again at once.
    assert connect("bob").users() == ("alice", "bob")


def test_a_client_back_on_a_new_connection_resumes_and_gets_what_it_missed(
    connect: Connect, context: zmq.Context[zmq.Socket[bytes]], broker: RunningBroker
) -> None:
    alice, bob = connect("alice"), connect("bob")
    alice.expect(ev.Joined, nick="bob")
    bob.close()  # the link drops: no QUIT
    alice.tell("bob", "while you were away")
    alice.say("everyone, bob dropped")
    alice.expect_after_presence(ev.Message)
    # bob's client reconnects (a new DEALER, so a new identity) with the same session token.
    back = Peer(context, broker.endpoint)
    back.token = bob.token
    welcome = back.register("bob")
    private = back.expect(ev.PrivateMessage, sender="alice", text="while you were away")
    assert back.users() == ("alice", "bob")
    back.send(cmd.Received(private.msg_id, private.sender))
    alice.expect_after_presence(ev.Delivered, recipient="bob")
    # The broadcast it missed is still in the log.
    back.send(cmd.Fetch(welcome.seq))
    assert back.expect(ev.Message).text == "everyone, bob dropped"
    # And alice saw no LEAVE or JOIN for bob meanwhile.
    alice.say("barrier")
    seen = [alice.next_event()]
    while not isinstance(seen[-1], ev.Message):
        seen.append(alice.next_event())
    assert seen[-1].text == "barrier"
    assert not any(isinstance(event, ev.Joined | ev.Left) for event in seen)


def test_vanished_client_expires_after_heartbeat_bound(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    fast = start_broker(heartbeat_ms=100)
    try:
        # Watched from the stream, which needs no session: nobody but the ghost can expire,
        # however long this process waits for its turn on a busy machine.
        watcher = Peer(context, fast.endpoint)
        watcher.open_stream(endpoint_port(fast.server.stream_endpoint))
        ghost = Peer(context, fast.endpoint)
        ghost.register("ghost")  # and never PINGs (as after kill -9)
        left = watcher.expect_after_presence(ev.Left)
        assert (left.nick, left.reason) == ("ghost", "no heartbeat for 0.3 s")
        alice = Peer(context, fast.endpoint)
        alice.register("alice")
        assert alice.users() == ("alice",)
    finally:
        fast.stop()


def test_operator_kicks_a_user(connect: Connect, broker: RunningBroker) -> None:
    alice, bob, carol = connect("alice"), connect("bob"), connect("carol")
    alice.send(cmd.Kick("bob", 60, "no reason"))
    alice.expect_after_presence(ev.Error, code=ErrorCode.FORBIDDEN)
    alice.send(cmd.Admin(broker.admin_token))
    alice.expect(ev.Operator)
    alice.send(cmd.Kick("bob", 60, "spamming"))
    bob.expect_after_presence(ev.Kicked, by="alice", reason="spamming")
    carol.expect_after_presence(ev.Left, nick="bob", reason="kicked by alice: spamming")
    bob.say("let me back in")
    bob.expect(ev.Error, code=ErrorCode.NOT_REGISTERED)


def test_shutdown_notifies_every_user_before_the_broker_exits(
    connect: Connect, broker: RunningBroker
) -> None:
    peers = [connect(nick) for nick in ("alice", "bob", "carol")]
    peers[0].send(cmd.Admin(broker.admin_token))
    peers[0].expect_after_presence(ev.Operator)
    peers[0].send(cmd.Shutdown("maintenance"))
    for peer in peers:
        peer.expect_after_presence(ev.ServerShutdown, reason="maintenance")
    broker.thread.join(10)
    assert not broker.thread.is_alive()


def test_shutdown_request_from_a_signal_handler_or_thread(
    connect: Connect, broker: RunningBroker
) -> None:
    alice = connect("alice")
    broker.stop("broker stopped (SIGTERM)")
    alice.expect(ev.ServerShutdown, reason="broker stopped (SIGTERM)")


def test_bad_input_leaves_the_broker_serving(connect: Connect) -> None:
    alice = connect("alice")
    rogue = connect()
    rogue.send_raw([b"junk"])
    rogue.expect(ev.Error, code=ErrorCode.MALFORMED)
    rogue.send_raw([SIGNATURE, b"SAY", b"\xff\xfe"])
    rogue.expect(ev.Error, code=ErrorCode.MALFORMED)
    rogue.send_raw([SIGNATURE, b"EXPLODE"])
    rogue.expect(ev.Error, code=ErrorCode.UNKNOWN_COMMAND)
    rogue.send_raw([b"ZCHAT99", b"HELLO", b"x"])
    rogue.expect(ev.Error, code=ErrorCode.UNSUPPORTED_VERSION)
    rogue.say("before registering")
    rogue.expect(ev.Error, code=ErrorCode.NOT_REGISTERED)
    rogue.register("rogue")
    rogue.say("x" * 5000)
    rogue.expect(ev.Error, code=ErrorCode.TOO_LARGE)
    # A frame over MAXMSGSIZE: libzmq drops the connection before the broker sees it.
    giant = connect()
    giant.send_raw([SIGNATURE, b"SAY", b"x" * (MAX_WIRE_FRAME_BYTES + 1)])
    assert not giant.socket.poll(300)
    # Through all that, a normal conversation still works.
    bob = connect("bob")
    bob.say("all good?")
    assert alice.expect_after_presence(ev.Message).text == "all good?"


def test_a_routing_id_chosen_by_the_client_is_refused(
    context: zmq.Context[zmq.Socket[bytes]], broker: RunningBroker
) -> None:
    # Whoever reconnected with the same chosen id would speak for the session it names.
    chooser = Peer(context, broker.endpoint, routing_id=b"alice")
    chooser.send(cmd.Hello("alice", chooser.token))
    error = chooser.expect(ev.Error, code=ErrorCode.MALFORMED)
    assert "routing id" in error.reason


def test_nothing_follows_shutdown_not_even_the_ack_of_a_message_before_it(
    broker: RunningBroker, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    alice = Peer(context, broker.endpoint)
    alice.register("alice", stream=True)
    alice.send(cmd.Admin(broker.admin_token))
    alice.on_connection(ev.Operator)
    msg_id = alice.say("last words")  # sent in one burst with the SHUTDOWN
    alice.send(cmd.Shutdown("maintenance"))
    acked: list[str] = []
    while True:
        assert alice.socket.poll(5000)
        event = alice.socket.recv_multipart()
        decoded = decode_event(event)
        if isinstance(decoded, ev.ServerShutdown):
            break
        if isinstance(decoded, ev.Ack):
            acked.extend(decoded.msg_ids)
    assert acked == [msg_id]
    assert not alice.socket.poll(200)
