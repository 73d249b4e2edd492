"""How bench.failover counts what a failover lost or doubled, and when a client came back:
the figures `make bench-cluster` reports as 0 must be able to say otherwise."""

from collections import Counter

import pytest
import zmq

from bench.failover import FailoverClient, Tally, count_losses, failed_over


def tally(privates: dict[str, int], broadcasts: dict[str, set[int]]) -> Tally:
    got = Tally("sender", Counter(privates))
    got.broadcasts.update(broadcasts)
    return got


@pytest.mark.parametrize(
    ("sent", "privates", "broadcasts", "expected"),
    [
        # Everything once: nothing lost, repeated or doubled.
        (2, {"p1": 1, "p2": 1}, {"b1": {1}, "b2": {2}}, (0, 0, 0, 0)),
        # p2 never came, p1 came three times (the same id: the client shows it once).
        (2, {"p1": 3}, {"b1": {1}, "b2": {2}}, (1, 2, 0, 0)),
        # b1 under two numbers (a client would show it twice); b2 and b3 never came.
        (3, {"p1": 1, "p2": 1, "p3": 1}, {"b1": {1, 5}}, (0, 0, 2, 1)),
        # Nothing came at all.
        (2, {}, {}, (2, 0, 2, 0)),
    ],
)
def test_losses_and_doubles_are_counted(
    sent: int,
    privates: dict[str, int],
    broadcasts: dict[str, set[int]],
    expected: tuple[int, int, int, int],
) -> None:
    figures = count_losses(sent, tally(privates, broadcasts))
    assert (
        figures["privates lost"],
        figures["privates repeated"],
        figures["broadcasts lost"],
        figures["broadcasts doubled"],
    ) == expected


@pytest.mark.parametrize(
    ("hellos", "welcomes", "expected"),
    [
        # Welcomed by A at 0; killed at 1; HELLO to A (in vain) at 2.5, to B at 4, WELCOME 4.2.
        ([(0.0, 0), (2.5, 0), (4.0, 1)], [(0.1, 0), (4.2, 1)], (4.0, 4.2)),
        # Straight to B after the kill.
        ([(0.0, 0), (2.5, 1)], [(0.1, 0), (2.6, 1)], (2.5, 2.6)),
        # Never welcomed by B.
        ([(0.0, 0), (2.5, 1)], [(0.1, 0)], None),
    ],
)
def test_the_time_of_failing_over_is_the_first_welcome_from_b_after_the_kill(
    hellos: list[tuple[float, int]],
    welcomes: list[tuple[float, int]],
    expected: tuple[float, float] | None,
) -> None:
    client = FailoverClient(zmq.Context.instance(), "alice", ["tcp://a:1", "tcp://b:1"], 0.5)
    client.hellos, client.welcomes = hellos, welcomes
    assert failed_over(client, killed_at=1.0) == expected
