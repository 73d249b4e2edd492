"""The chat remembers, end to end, as a user would try it: a real broker process killed
with SIGKILL and started again on its state directory, and real line-mode clients, each
with its state directory on disk (its identity, its input history)."""

from collections import Counter
from pathlib import Path

import pytest

from tests.processes import BrokerProcess, LineClients, free_port

#: A short heartbeat: clients notice the killed broker quickly (ms).
HEARTBEAT_MS = 300
#: Bound on each thing a client is waited for, in seconds: generous for a busy machine.
WAIT_S = 30.0


@pytest.mark.timeout(150)
def test_alice_owns_her_nick_and_her_mail_waits_through_a_sigkill(tmp_path: Path) -> None:
    broker = BrokerProcess(f"tcp://127.0.0.1:{free_port()}", HEARTBEAT_MS)
    broker.start()
    homes = str(tmp_path / "homes")
    clients: list[LineClients] = []

    def join(nick: str, *args: str, home: str = homes) -> LineClients:
        client = LineClients(broker.endpoint, [nick], home, args)
        clients.append(client)
        return client

    try:
        alice, bob = join("alice"), join("bob")
        alice.type("alice", "/register")
        assert alice.wait_for_line("alice", "is registered to your identity", WAIT_S)
        assert bob.wait_for_line("bob", "alice", WAIT_S)
        assert alice.wait_for_line("alice", "bob", WAIT_S)
        alice.type("alice", "the launch code is pineapple")
        assert bob.wait_for_line("bob", "<alice> the launch code is pineapple", WAIT_S)
        bob.type("bob", "noted")
        assert alice.wait_for_line("alice", "<bob> noted", WAIT_S)
        assert alice.finish(WAIT_S) == {"alice": 0}
        assert bob.wait_for_line("bob", "alice left", WAIT_S)

        # bob tells alice, who is away: kept for her.
        bob.type("bob", "/msg alice see you tomorrow")
        assert bob.wait_for_line("bob", "kept for alice until they are back", WAIT_S)

        broker.kill()
        broker.start()

        # carol joins and sees the earlier conversation as history.
        carol = join("carol", "--history", "20")
        assert carol.wait_for_line("carol", "<alice> the launch code is pineapple", WAIT_S)
        assert carol.wait_for_line("carol", "<bob> noted", WAIT_S)

        # alice comes back from her state directory and gets bob's message, once.
        back = join("alice")
        assert back.wait_for_privates("alice", Counter({("bob", "see you tomorrow"): 1}), WAIT_S)
        assert bob.wait_for_line("bob", "delivered to alice: see you tomorrow", WAIT_S)
        # /search finds a word said before the restart (once the broker has indexed it).
        for _ in range(int(WAIT_S)):
            back.type("alice", "/search pineapple")
            if back.wait_for_line("alice", "<alice> the launch code is pineapple", 1.0):
                break
        else:
            pytest.fail(f"/search found nothing: {back.outputs['alice'][-5:]}")
        assert back.privates_seen("alice")[("bob", "see you tomorrow")] == 1
        assert back.finish(WAIT_S) == {"alice": 0}

        # Nobody takes the nick alice from another state directory, while she is away.
        mallory = join("alice", home=str(tmp_path / "elsewhere"))
        codes = mallory.finish(WAIT_S)
        assert codes["alice"] != 0
        assert "registered" in mallory.stderr("alice"), mallory.stderr("alice")
    finally:
        for client in clients:
            client.kill()
        broker.stop()
