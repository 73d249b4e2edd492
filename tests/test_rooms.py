"""Rooms end to end, as users try them: a real broker and real line-mode clients.

alice and bob /join #dev, carol does not; alice's line in #dev reaches bob and not carol;
carol's /rooms lists #dev with its 2 members; /part leaves."""

import pytest

from tests.conftest import RunningBroker
from tests.processes import LineClients

#: Bound on each thing a client is waited for, in seconds: generous for a busy machine.
WAIT_S = 30.0


@pytest.mark.timeout(90)
def test_a_room_is_heard_by_its_members_only(broker: RunningBroker) -> None:
    clients = LineClients(broker.endpoint, ["alice", "bob", "carol"])
    try:
        assert clients.wait_until_all_present(WAIT_S)
        clients.type("alice", "/join #dev")
        assert clients.wait_for_line("alice", "#dev -!- you joined #dev (1 member)", WAIT_S)
        clients.type("bob", "/join #Dev")
        assert clients.wait_for_line("alice", "#dev -!- bob joined #dev", WAIT_S)
        assert clients.wait_for_line("bob", "#dev -!- you joined #dev (2 members)", WAIT_S)

        # Plain lines go to the room joined last.
        clients.type("alice", "the build is green")
        assert clients.wait_for_line("bob", "#dev <alice> the build is green", WAIT_S)
        clients.type("bob", "/msg #dev shipping it")
        assert clients.wait_for_line("alice", "#dev <bob> shipping it", WAIT_S)
        # Everyone's room still works for everyone.
        clients.type("carol", "anyone around?")
        assert clients.wait_for_line("alice", "<carol> anyone around?", WAIT_S)

        clients.type("carol", "/rooms")
        assert clients.wait_for_line("carol", "#dev (2 members)", WAIT_S)
        clients.type("carol", "/msg #dev let me in")
        assert clients.wait_for_line("carol", "error 403", WAIT_S)

        clients.type("bob", "/part #dev lunch")
        assert clients.wait_for_line("alice", "#dev -!- bob left #dev (lunch)", WAIT_S)
        clients.type("alice", "still here")
        assert clients.wait_for_line("alice", "#dev <alice> still here", WAIT_S)
    finally:
        codes = clients.finish(WAIT_S)
    assert codes == {"alice": 0, "bob": 0, "carol": 0}
    # carol never saw a byte of #dev, and bob nothing of it after he left.
    assert not [line for line in clients.outputs["carol"] if "build is green" in line]
    assert not [line for line in clients.outputs["bob"] if "still here" in line]


@pytest.mark.timeout(90)
def test_an_invite_only_room_takes_in_whom_its_maker_invites(broker: RunningBroker) -> None:
    clients = LineClients(broker.endpoint, ["alice", "carol"])
    try:
        assert clients.wait_until_all_present(WAIT_S)
        clients.type("alice", "/join #ops")
        assert clients.wait_for_line("alice", "you joined #ops", WAIT_S)
        clients.type("alice", "/mode +i")
        assert clients.wait_for_line("alice", "#ops -!- alice made #ops invite-only", WAIT_S)
        clients.type("carol", "/join #ops")
        assert clients.wait_for_line("carol", "error 403: #ops is invite-only", WAIT_S)
        clients.type("alice", "/invite carol")
        assert clients.wait_for_line("carol", "alice invites you to #ops: /join #ops", WAIT_S)
        clients.type("carol", "/join #ops")
        assert clients.wait_for_line("alice", "#ops -!- carol joined #ops", WAIT_S)
        clients.type("alice", "/kick #ops carol enough")
        assert clients.wait_for_line(
            "carol", "#ops -!- you left #ops (removed by alice: enough)", WAIT_S
        )
    finally:
        codes = clients.finish(WAIT_S)
    assert codes == {"alice": 0, "carol": 0}
