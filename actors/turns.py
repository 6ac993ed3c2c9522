"""Decode work per event-loop turn, shared fairly by every session of the loop.

Decoding a client's body runs on the event loop, inline: a synchronous handler is even
answered in the same call. That is what makes a small request cheap, but a client that sends
bodies costly to decode (large, or compressed: 1 KiB on the wire, 1 MiB once inflated)
could keep the loop busy for seconds, answering no one else. So a session hands a large body
over only once it got a share of this loop turn's budget (:data:`BYTES_PER_TURN`); when the
turn's budget is spent, the session waits (its messages stay queued, in order) and is woken
on a later turn, in the order the sessions started waiting. Between two turns the loop polls
its sockets and runs every other ready callback, so the other clients are answered. And a turn
that spent time decoding (:meth:`DecodeTurns.spent`) is followed by a pause as long (up to
:data:`MAX_PAUSE`) before the next one: large bodies get at most about half of the loop's time
while others have work, whatever their number.

Small uncompressed bodies (up to :data:`SMALL_BODY`) never wait: their decode cost is
bounded by the bytes that arrived, like the rest of the work a read causes.

Example (what the session actor does)::

    turns = turns_for(loop)
    if not turns.take(len(message.data), wake=lambda: ref.tell(DecodeTurn())):
        return  # keep the message queued; DecodeTurn (the grant) comes on a later turn
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Callable

__all__ = ["BYTES_PER_TURN", "COMPRESSED_ESTIMATE", "SMALL_BODY", "DecodeTurns", "turns_for"]

BYTES_PER_TURN = 1024 * 1024
"""Body bytes handed to decoders per loop turn, all sessions together (at least one body
per turn, whatever its size). Decoding 1 MiB costs about 10 ms (JSON, collector paused)."""

SMALL_BODY = 4 * 1024
"""Uncompressed bodies up to this size are handed over at once, outside the budget."""

COMPRESSED_ESTIMATE = 1024 * 1024
"""What a compressed body counts for until it is inflated: the most it may inflate to (the
difference is given back once its real size is known). So however many sessions wait with
compressed bodies, one is inflated and decoded per turn."""

MAX_PAUSE = 0.1
"""Longest pause between two turns, seconds."""

WAKE_PER_TURN = 4
"""Waiting sessions granted a share per turn, at most: a grant is spent on the next turn,
when the woken session's actor runs, so the grants of one turn must fit in one turn."""


class DecodeTurns:
    """The budget of one event loop; see the module docstring."""

    __slots__ = ("_busy", "_loop", "_scheduled", "_waiting", "turn", "used")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.used = 0
        """Bytes taken in the current turn."""
        self.turn = 0
        """The current turn's number: bodies handed over under the same number shared one
        turn's budget (a count, for tests and diagnostics)."""
        self._waiting: deque[tuple[int, Callable[[], None]]] = deque()
        self._scheduled = False
        self._busy = 0.0

    @property
    def waiting(self) -> int:
        """Sessions waiting for a later turn."""
        return len(self._waiting)

    def take(self, size: int, wake: Callable[[], None]) -> bool:
        """Take ``size`` bytes of this turn's budget: True if granted, go ahead now.

        False when the turn's budget is spent or others already wait: ``wake()`` is then
        called once, on a later turn, in waiting order, and means *granted*: the caller goes
        ahead then without taking again.
        """
        if self._waiting or not self._fits(size):
            self._waiting.append((size, wake))
            self._schedule()
            return False
        self.used += size
        self._schedule()
        return True

    def _fits(self, size: int) -> bool:
        """The first body of a turn always fits; others only within the budget."""
        return self.used == 0 or self.used + size <= BYTES_PER_TURN

    def charge(self, size: int) -> None:
        """Correct this turn's spending by ``size`` bytes (a body's inflated size, less the
        estimate it was taken for)."""
        self.used = max(0, self.used + size)

    def spent(self, seconds: float) -> None:
        """Report ``seconds`` of loop time spent decoding (and handling) a budgeted body."""
        self._busy += seconds

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._scheduled = False
        if self._busy > 0.0:
            # Pause as long as the turn decoded; until then nothing fits (used is full).
            pause, self._busy = min(self._busy, MAX_PAUSE), 0.0
            self.used = BYTES_PER_TURN
            self._scheduled = True
            self._loop.call_later(pause, self._next_turn)
            return
        self.used = 0
        self.turn += 1
        waiting = self._waiting
        granted = 0
        while waiting and granted < WAKE_PER_TURN and self._fits(waiting[0][0]):
            size, wake = waiting.popleft()
            self.used += size
            granted += 1
            wake()
        if granted or waiting:
            self._schedule()  # runs after the woken sessions: it closes their turn


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, DecodeTurns] = (
    weakref.WeakKeyDictionary()
)


def turns_for(loop: asyncio.AbstractEventLoop) -> DecodeTurns:
    """The budget of ``loop`` (one per loop: it is the loop's time that is shared)."""
    turns = _turns.get(loop)
    if turns is None:
        turns = _turns[loop] = DecodeTurns(loop)
    return turns
