"""Undo that runs to its end: what a failed or abandoned start-up step does to take back what
it had done (close a connection, revoke a lease, shut modules down).

A start-up can be abandoned at any await (a stop during the start-up cancels it), and its
caller can be cancelled too (a task group, a ``wait_for`` that times out). An undo that is
itself cancelled stops half-way and leaves things behind: a server registered in etcd (its
id refused to the next start for a lease's TTL), an open NATS connection with its reader
task, modules started and never shut down. So every undo goes through :func:`undo_fully`:
it runs in a task of its own that no cancellation reaches, and a cancellation that comes
meanwhile is raised once the undo is done, so the caller still sees it.

:func:`undoing` tells whether a task is inside such an undo: the life cycle does not
abandon a start-up then (its failure is raised once the undo is done, rather than a
cancellation), whichever layer the undo is in (``actors.lifecycle``).

::

    try:
        await pipe.connect()
    except BaseException:
        await undo_fully(pipe.close())  # all of it, even if a stop comes meanwhile
        raise
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable
from typing import Any, TypeVar

__all__ = ["undo_fully", "undoing"]

T = TypeVar("T")

_undoing: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
"""Tasks waiting for an :func:`undo_fully` to finish."""


def undoing(task: asyncio.Task[Any]) -> bool:
    """``task`` waits for an undo (:func:`undo_fully`) to finish."""
    return task in _undoing


async def undo_fully(undo: Awaitable[T]) -> T:
    """Run ``undo`` to its end even if this task is cancelled meanwhile; return its result
    or raise its error, else, if this task was cancelled meanwhile, raise CancelledError
    once it is done (the cancellation is deferred, never lost)."""
    me = asyncio.current_task()
    mine = me is not None and me not in _undoing  # an outer undo_fully marks it already
    if mine:
        assert me is not None
        _undoing.add(me)
    running = asyncio.ensure_future(undo)
    cancelled = False
    try:
        while not running.done():
            try:
                await asyncio.wait({running})
            except asyncio.CancelledError:
                cancelled = True  # raised once the undo is done
    finally:
        if mine:
            assert me is not None
            _undoing.discard(me)
    if running.cancelled() or running.exception() is not None or not cancelled:
        return running.result()  # the undo's own outcome comes first
    raise asyncio.CancelledError
