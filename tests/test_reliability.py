"""Nothing lost, nothing doubled: line-mode clients keep talking while the broker is killed
(SIGKILL) and started again on the same port; every message is counted at every recipient."""

import re
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.processes import BrokerProcess, LineClients, free_port

#: Clients in the conversation, and lines each one sends.
CLIENTS = 3
LINES_PER_CLIENT = 24
#: Seconds between two rounds of lines (one line per client per round).
ROUND_PAUSE_S = 0.1
#: The broker is killed before this round and restarted after DOWNTIME_S.
KILL_BEFORE_ROUND = 8
DOWNTIME_S = 0.8
#: A short heartbeat so that clients notice the dead broker quickly (ms).
HEARTBEAT_MS = 200
#: Bound on every client being registered and seeing the others, in seconds.
JOIN_TIMEOUT_S = 40
#: Bound on everything finishing after the last line, in seconds.
FINISH_TIMEOUT_S = 40

LINE = re.compile(r"<(?P<sender>[^>]+)> (?P<text>u\d+ \d+)\s*$")


@pytest.fixture
def broker() -> Iterator[BrokerProcess]:
    running = BrokerProcess(f"tcp://127.0.0.1:{free_port()}", heartbeat_ms=HEARTBEAT_MS)
    running.start()
    yield running
    running.stop()


@pytest.mark.timeout(120)
def test_broker_killed_and_restarted_mid_conversation(broker: BrokerProcess) -> None:
    nicks = [f"u{i}" for i in range(CLIENTS)]
    expected = {
        recipient: Counter(
            (sender, f"{sender} {n}")
            for sender in nicks
            if sender != recipient
            for n in range(LINES_PER_CLIENT)
        )
        for recipient in nicks
    }
    clients = LineClients(broker.endpoint, nicks)
    try:
        # A user who joins later is not sent what was said before: everyone must be in
        # before the first line, and the first broker must be the one they joined (a
        # client process can take seconds to start on a busy machine).
        joined = clients.wait_until_all_present(JOIN_TIMEOUT_S)
        assert joined, f"not everyone joined: {clients.outputs}"
        for line_number in range(LINES_PER_CLIENT):
            if line_number == KILL_BEFORE_ROUND:
                broker.kill()
                time.sleep(DOWNTIME_S)  # clients keep typing into a dead broker meanwhile
                broker.start()
            for nick in nicks:
                clients.type(nick, f"{nick} {line_number}")
            time.sleep(ROUND_PAUSE_S)
        # Leave only once everyone has everything: a client that QUITs early cannot
        # receive what the others send after it left.
        clients.wait_for(expected, FINISH_TIMEOUT_S)
        codes = clients.finish(FINISH_TIMEOUT_S)
    finally:
        clients.kill()

    for recipient in nicks:
        seen = clients.chat_seen(recipient)
        missing = expected[recipient] - seen
        doubled = {key: count for key, count in seen.items() if count > 1}
        assert not missing, f"{recipient} never saw {sorted(missing)}"
        assert not doubled, f"{recipient} saw twice: {doubled}"
    assert codes == dict.fromkeys(nicks, 0), {nick: clients.stderr(nick) for nick in nicks}
