"""How many objects a run leaves in reference cycles, per extra run of the same work.

The servers hold the collector's young threshold high while they run (``actors.gcthreshold``):
that is only cheap if a request makes no cyclic garbage. A cycle made per request (a closure
that names itself, say) is freed only by a collection, holds everything it reaches until
then, and under load makes the collector run, and walk the whole heap, several times a
second. :func:`left_per_extra_run` drives some work with the collector off and compares what
a collection then finds after a short and a long run: the difference is what the extra runs
left behind (set-up work and caches count in both, so they cancel out).
"""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

Work = Callable[[int], Awaitable[None]]
"""Does the work under test ``count`` times."""

SHORT, EXTRA = 10, 200


@contextmanager
def collector_off() -> Iterator[None]:
    """Collect what is pending, then leave freeing to reference counting alone."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _cyclic_garbage(work: Work, count: int) -> int:
    """Objects a collection finds unreachable after ``work(count)`` with the collector off."""
    await work(5)  # warm: caches filled, lazy imports done
    with collector_off():
        await work(count)
        return gc.collect()


async def left_per_extra_run(work: Work) -> float:
    """Objects left in cycles per run of ``work``, beyond what a short series leaves."""
    short = await _cyclic_garbage(work, SHORT)
    long = await _cyclic_garbage(work, SHORT + EXTRA)
    return (long - short) / EXTRA
