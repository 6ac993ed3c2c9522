"""One server's budget for the bytes its clients have sent and not finished.

A connection holds what a client sent of a packet (or of a WebSocket frame or fragmented
message) that is not whole yet. Each such buffer is bounded on its own (``max_packet_size``)
and lasts at most two heartbeats, but across connections only ``max_connections`` bounded
them: 300 clients each sending most of a 1 MiB packet, and never its end, held 300 MB.

Every connection reports what it holds to the server's one :class:`PartialBudget`; when the
total goes over the limit, the connections holding the most are dropped until it is back
under. A client that finishes its packets holds bytes only for the moment a read splits
one, so the ones dropped are, in practice, those that hold large packets open::

    budget = PartialBudget(64 * 1024 * 1024)
    held = budget.hold(connection.abort, "tcp peer 10.0.0.7:53122")
    held.set(decoder.buffered)   # after every read
    held.set(0)                  # when the connection goes away
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from transport.logs import ServerLog, Throttle

__all__ = ["PartialBudget", "PartialHold"]

logger = logging.getLogger(__name__)


class PartialBudget:
    """Bytes of unfinished packets held by all of one server's connections, and its limit.

    ``held``: the total now; ``dropped``: connections dropped to keep it within ``limit``.
    Sans-I/O apart from the drop callbacks: it runs on the event loop, without a lock. The
    app checks ``limit`` (``max_partial_bytes``) when it starts.
    """

    __slots__ = ("_holders", "_log", "_throttle", "dropped", "held", "limit")

    def __init__(self, limit: int, log: ServerLog | None = None) -> None:
        self.limit = limit
        self.held = 0
        self.dropped = 0
        self._holders: dict[PartialHold, None] = {}
        """The holds with bytes held, to choose from when the total is over the limit."""
        self._log = log if log is not None else ServerLog(logger, "")
        self._throttle = Throttle()

    def hold(self, drop: Callable[[], None], peer: str) -> PartialHold:
        """A new connection's share: ``drop`` closes it when it must go; ``peer`` names it
        in the log line."""
        return PartialHold(self, drop, peer)

    def _shed(self) -> None:
        """Drop the largest holders until the total is within the limit."""
        while self.held > self.limit and self._holders:
            largest = max(self._holders, key=_held_bytes)
            held = largest.bytes
            self.held -= held
            largest.bytes = 0
            largest.dropped = True
            del self._holders[largest]
            self.dropped += 1
            more = self._throttle.allow(time.monotonic())
            if more is not None:
                self._log.warning(
                    "clients hold %d bytes of unfinished packets, over max_partial_bytes "
                    "(%d): dropping %s, which held %d%s",
                    self.held + held,
                    self.limit,
                    largest.peer,
                    held,
                    more,
                )
            largest.drop()


class PartialHold:
    """What one connection holds of the budget: :meth:`set` it after each read, and to 0
    when the connection goes."""

    __slots__ = ("_budget", "bytes", "drop", "dropped", "peer")

    def __init__(self, budget: PartialBudget, drop: Callable[[], None], peer: str) -> None:
        self._budget = budget
        self.drop = drop
        self.peer = peer
        self.bytes = 0
        self.dropped = False
        """Dropped for the budget: what its connection still reports counts no more (bytes
        read before the drop took effect, still on their way)."""

    def set(self, held: int) -> None:
        """This connection now holds ``held`` bytes of unfinished packets; over the limit,
        the largest holders (this one, perhaps) are dropped before this returns."""
        if self.dropped:
            return
        budget = self._budget
        budget.held += held - self.bytes
        self.bytes = held
        if held:
            budget._holders[self] = None
        else:
            budget._holders.pop(self, None)
        # Every set leaves the total within the limit: only one that grew can put it over.
        if budget.held > budget.limit:
            budget._shed()


def _held_bytes(hold: PartialHold) -> int:
    return hold.bytes
