"""The garbage collector's young-generation threshold while servers run (``gc_threshold``).

Why a server raises it: CPython collects its youngest generation after every 700 net
allocations of container objects (its default). A request allocates a few dozen, so at
50,000 requests a second that is thousands of collections a second. Worse, each collection
promotes whatever is alive at that moment to the older generations: with handlers awaiting
a database or an RPC, that is their tasks, futures and timers. Those generations then fill
up with objects that die young anyway, and trigger full collections that walk every
session's objects again. Async handlers, the ones that await, pay most of it.

Measured with ``python -m tests.bench.bench_slow_handler`` (1,000 clients, uvloop, one
run each): raising the threshold from 700 to 10,000 took a handler awaiting 10 ms from
36,100 to 45,500 requests/s, and the same handler without the await from 44,300 to 50,000.

10,000 keeps a young collection short (a fraction of a millisecond) and cyclic garbage
bounded (a cycle is found within 10,000 more allocations). The older generations keep
Python's thresholds. The setting is process-wide, so it is shared: it is raised while at
least one server of the process runs, never lowered below what the process already had,
and put back when the last one stops, unless something else changed it meanwhile.
"""

from __future__ import annotations

import gc
import threading


class YoungThreshold:
    """Holds the collector's first threshold at least as high as servers ask, while they run."""

    __slots__ = ("_holders", "_lock", "_ours", "_saved")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._saved: tuple[int, int, int] | None = None
        """The thresholds before the first holder raised them."""
        self._ours: tuple[int, int, int] | None = None
        """The thresholds as holders last set them (to tell whether anyone else changed them)."""

    def hold(self, threshold: int) -> None:
        """Raise the young threshold to ``threshold`` unless it is already that high; every
        ``hold`` is paired with one :meth:`release`."""
        with self._lock:
            current = gc.get_threshold()
            if self._holders == 0:
                self._saved = current
            self._holders += 1
            if threshold > current[0]:
                gc.set_threshold(threshold, current[1], current[2])
            self._ours = gc.get_threshold()

    def release(self) -> None:
        """Undo one :meth:`hold`; the last one puts the process's thresholds back."""
        with self._lock:
            if self._holders == 0:
                return
            self._holders -= 1
            if self._holders:
                return
            if self._saved is not None and gc.get_threshold() == self._ours:
                gc.set_threshold(*self._saved)
            self._saved = self._ours = None


YOUNG_THRESHOLD = YoungThreshold()
"""The process's one holder: every server's lifecycle goes through it."""
