"""The NATS thread hands events to the broker's loop through a queue and one wake-up byte
per burst: none may be left in the queue without a byte to say so."""

import select
import threading

import pytest

from broker.backplane import NatsBackplane
from broker.cluster import LinkChanged

#: Events handed over, and the longest the loop waits for the next wake-up (s): far more
#: than any hand-over takes; a lost wake-up leaves the loop waiting this long, and fails.
EVENTS = 20_000
WAKE_TIMEOUT_S = 10.0


@pytest.mark.parametrize("round_", range(3))
def test_every_event_handed_over_wakes_the_loop(round_: int) -> None:
    link = NatsBackplane(["nats://127.0.0.1:1"], "A", liveness_s=1.0)  # never started
    try:

        def nats_thread() -> None:
            for number in range(EVENTS):
                link._put(LinkChanged(True, str(number)))

        producer = threading.Thread(target=nats_thread)
        producer.start()
        received: list[str] = []
        while len(received) < EVENTS:
            readable, _, _ = select.select([link.wake_fd], [], [], WAKE_TIMEOUT_S)
            assert readable, f"no wake-up with {len(received)} of {EVENTS} events received"
            received += [event.detail for event in link.events() if isinstance(event, LinkChanged)]
        producer.join()
        assert received == [str(number) for number in range(EVENTS)]
    finally:
        link.close()
