"""Acknowledgements held back while a batch of messages is handled, then sent together.

A client that sends fast gets one ACK naming many of its messages instead of one ACK per
message: for the broker, one send instead of many.
"""

from messages import MAX_ACK_IDS
from messages import events as ev

from .core import Outgoing
from .session import Identity


class PendingAcks:
    """ACKs taken out of the outgoing events, by client, until `flush`."""

    __slots__ = ("_ids",)

    def __init__(self) -> None:
        self._ids: dict[Identity, list[str]] = {}

    def __bool__(self) -> bool:
        return bool(self._ids)

    def hold(self, outgoing: list[Outgoing]) -> list[Outgoing]:
        """`outgoing` without its ACKs, which are kept for `flush`."""
        rest: list[Outgoing] = []
        for identity, event in outgoing:
            if type(event) is ev.Ack:
                self._ids.setdefault(identity, []).extend(event.msg_ids)
            else:
                rest.append((identity, event))
        return rest

    def flush(self) -> list[Outgoing]:
        """One ACK per client (more past MAX_ACK_IDS ids) for everything held; forgets them."""
        out: list[Outgoing] = [
            (identity, ev.Ack(tuple(ids[start : start + MAX_ACK_IDS])))
            for identity, ids in self._ids.items()
            for start in range(0, len(ids), MAX_ACK_IDS)
        ]
        self._ids.clear()
        return out
