"""An in-memory :class:`~transport.jobstore.JobStore`: the Redis layout as Python containers.

For fast tests of the worker: the same keys (``keys``, ``lists``, ``zsets``, ``counters``
are readable, so a test checks what a Redis would hold), the same atomic steps, and an
outage switch (``available = False``: every call raises
:class:`~transport.jobstore.JobStoreUnavailable`, a blocked fetch too), as Redis going down.
Several stores with the same ``data`` share one "server" (two processes, a restart)::

    data = MemoryJobData()
    first = MemoryJobStore(data, JobKeys("", "host-1"))
    again = MemoryJobStore(data, JobKeys("", "host-1"))  # the same process id, restarted
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from transport.jobstore import (
    DUE_KEYS,
    RETRY_KEY,
    JobKeys,
    JobStats,
    JobStoreUnavailable,
    Rewrite,
)

__all__ = ["MemoryJobData", "MemoryJobStore"]


@dataclass(slots=True)
class MemoryJobData:
    """What a Redis server would hold (lists have their head at index 0, as LPUSH puts it)."""

    lists: dict[str, list[bytes]] = field(default_factory=dict)
    zsets: dict[str, dict[bytes, float]] = field(default_factory=dict)
    sets: dict[str, set[str]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    available: bool = True
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    """Notified on every push and on a change of ``available`` (wakes blocked fetches)."""

    async def set_available(self, available: bool) -> None:
        self.available = available
        async with self.changed:
            self.changed.notify_all()


class MemoryJobStore:
    """A :class:`~transport.jobstore.JobStore` over :class:`MemoryJobData`."""

    def __init__(self, data: MemoryJobData | None = None, keys: JobKeys | None = None) -> None:
        self.data = data if data is not None else MemoryJobData()
        self.keys = keys or JobKeys()
        self.address = "memory"
        self.closed = False

    def _check(self) -> None:
        if not self.data.available:
            raise JobStoreUnavailable(f"{self.address}: connection refused")

    def _list(self, key: str) -> list[bytes]:
        return self.data.lists.setdefault(key, [])

    def _zset(self, key: str) -> dict[bytes, float]:
        return self.data.zsets.setdefault(key, {})

    def _lrem_last(self, key: str, job: bytes) -> None:
        items = self._list(key)
        for index in range(len(items) - 1, -1, -1):  # LREM key -1: the one nearest the tail
            if items[index] == job:
                del items[index]
                return

    async def push(self, queue: str, job: bytes) -> None:
        self._check()
        self.data.sets.setdefault(self.keys.queues, set()).add(queue)
        self._list(self.keys.queue(queue)).insert(0, job)
        async with self.data.changed:
            self.data.changed.notify_all()

    async def fetch(self, queue: str, timeout: float) -> bytes | None:
        source = self._list(self.keys.queue(queue))

        def ready() -> bool:
            return bool(source) or not self.data.available

        async with self.data.changed:
            try:
                await asyncio.wait_for(self.data.changed.wait_for(ready), timeout)
            except TimeoutError:
                return None
        self._check()
        if not source:
            return None
        job = source.pop()
        self._list(self.keys.in_progress(queue)).insert(0, job)
        return job

    async def in_progress(self, queue: str) -> list[bytes]:
        self._check()
        return list(self._list(self.keys.in_progress(queue)))

    async def acknowledge(self, queue: str, job: bytes) -> None:
        self._check()
        self._lrem_last(self.keys.in_progress(queue), job)

    async def retry_at(self, queue: str, job: bytes, at: float, retried: bytes) -> None:
        self._check()
        self._zset(self.keys.due(RETRY_KEY))[retried] = at
        self._lrem_last(self.keys.in_progress(queue), job)

    async def bury(self, queue: str, job: bytes, at: float) -> None:
        self._check()
        self._lrem_last(self.keys.in_progress(queue), job)
        self._zset(self.keys.dead)[job] = at

    async def requeue_due(self, now: float, rewrite: Rewrite) -> int:
        self._check()
        moved = 0
        for kind in DUE_KEYS:
            waiting = self._zset(self.keys.due(kind))
            for job, at in sorted(waiting.items(), key=lambda item: item[1]):
                if at > now:
                    break
                del waiting[job]
                target = rewrite(job)
                if target is None:
                    self._zset(self.keys.dead)[job] = now
                    continue
                queue, rewritten = target
                self._list(self.keys.queue(queue)).insert(0, rewritten)
                moved += 1
        if moved:
            async with self.data.changed:
                self.data.changed.notify_all()
        return moved

    async def count(self, outcome: str, day: str) -> None:
        self._check()
        for key in (self.keys.stat(outcome), self.keys.stat(outcome, day)):
            self.data.counters[key] = self.data.counters.get(key, 0) + 1

    async def stats(self, queues: Sequence[str]) -> JobStats:
        self._check()
        return JobStats(
            processed=self.data.counters.get(self.keys.stat("processed"), 0),
            failed=self.data.counters.get(self.keys.stat("failed"), 0),
            retries=len(self._zset(self.keys.due(RETRY_KEY))),
            enqueued={q: len(self._list(self.keys.queue(q))) for q in queues},
        )

    async def close(self) -> None:
        self.closed = True
