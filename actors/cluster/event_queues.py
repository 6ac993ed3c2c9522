"""Session events waiting for their server: in order per server, bounded, a bind overtaken
by its close dropped (the queues of ``actors.cluster.held_events``).

Per server, the events not delivered yet, oldest first: appended as they are held, put back
in their place (by number: their order of making) when one sent at once found nobody, taken
from the front in rounds, and put back at the front when a round did not reach the server.
At most ``limit`` in all: past it the oldest of all servers is dropped, and counted in
:attr:`EventQueues.dropped`. Each method that removes events says how many.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

from actors.cluster.session_events import BIND


@dataclass(slots=True)
class Event:
    """One encoded session event for one server."""

    number: int
    """Its place in the order of all events (oldest first)."""
    data: bytes
    session: int | None
    """The session's id (None: never dropped for a close that overtook it)."""
    kind: str
    """``bind`` or ``close`` (``actors.cluster.session_events``)."""


class EventQueues:
    """The held events of every server; see the module docstring."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._queues: dict[str, deque[Event]] = {}
        self._held = 0
        self.dropped = 0
        """Events dropped past ``limit`` since the owner last took the count."""

    def __len__(self) -> int:
        return self._held

    def __contains__(self, server_id: object) -> bool:
        """``server_id`` has events held: a new one goes behind them."""
        return server_id in self._queues

    def servers(self) -> list[str]:
        return list(self._queues)

    def append(self, server_id: str, event: Event) -> int:
        """``event`` behind ``server_id``'s; the events dropped to make room (0 or 1)."""
        dropped = self._make_room()
        self._queue(server_id).append(event)
        self._held += 1
        return dropped

    def put_back(self, server_id: str, event: Event) -> int:
        """``event`` (sent at once, not received) in its place among ``server_id``'s: behind
        those made before it, before those made after it; the events dropped for room."""
        dropped = self._make_room()
        queue = self._queue(server_id)
        queue.insert(bisect.bisect(queue, event.number, key=_number), event)
        self._held += 1
        return dropped

    def front(self, server_id: str, count: int) -> list[Event]:
        """The first ``count`` events of ``server_id`` (they stay held until settled)."""
        return list(islice(self._queues.get(server_id, ()), count))

    def take(self, server_id: str, batch: list[Event]) -> list[Event]:
        """Out of ``server_id``'s queue: the events of ``batch`` (its first ones) still in it,
        which the caller settles or puts back with :meth:`put_front` (dropped meanwhile: not
        returned)."""
        queue = self._queues.get(server_id)
        taken: list[Event] = []
        if queue is None or not batch:
            return taken
        last = batch[-1].number
        while queue and queue[0].number <= last:
            taken.append(queue.popleft())
        if not queue:
            del self._queues[server_id]
        self._held -= len(taken)
        return taken

    def put_front(self, server_id: str, events: list[Event]) -> None:
        """``events`` (taken, not received) back at the front of ``server_id``'s, in order."""
        if events:
            self._queue(server_id).extendleft(reversed(events))
            self._held += len(events)

    def drop_binds(self, server_id: str, sessions: Iterable[int | None]) -> int:
        """Drop the held binds of ``sessions``, whose close ``server_id`` acknowledged (run
        after it, a bind would bring back a player who left); how many."""
        queue = self._queues.get(server_id)
        closed = set(sessions)
        if not queue or not closed:
            return 0
        kept = deque(e for e in queue if not (e.kind == BIND and e.session in closed))
        dropped = len(queue) - len(kept)
        if dropped:
            self._held -= dropped
            if kept:
                self._queues[server_id] = kept
            else:
                del self._queues[server_id]
        return dropped

    def forget(self, server_id: str) -> int:
        """Drop every event of ``server_id``; how many."""
        queue = self._queues.pop(server_id, None)
        if queue is None:
            return 0
        self._held -= len(queue)
        return len(queue)

    def clear(self) -> None:
        self._queues.clear()
        self._held = 0
        self.dropped = 0

    def _queue(self, server_id: str) -> deque[Event]:
        queue = self._queues.get(server_id)
        if queue is None:
            queue = self._queues[server_id] = deque()
        return queue

    def _make_room(self) -> int:
        """Past ``limit``: the oldest event of all servers dropped (1), else 0."""
        if self._held < self.limit or not self._queues:
            return 0
        server_id = min(self._queues, key=lambda key: self._queues[key][0].number)
        queue = self._queues[server_id]
        queue.popleft()
        if not queue:
            del self._queues[server_id]
        self._held -= 1
        self.dropped += 1
        return 1


def _number(event: Event) -> int:
    return event.number
