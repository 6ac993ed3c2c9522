"""Waiting a bounded time for an ``asyncio.Event`` (knowing whether it came), and a future
awaited for an answer that comes to a callback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def set_within(event: asyncio.Event, seconds: float) -> bool:
    """Whether ``event`` is set within ``seconds``: at once if it is set already, even with no
    time left (``asyncio.wait_for`` with a timeout of 0 does not look on Python 3.11)."""
    if event.is_set():
        return True
    if seconds <= 0:
        return False
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True


def settles(future: asyncio.Future[bytes]) -> Callable[[bytes | None, BaseException | None], None]:
    """An answer callback that settles ``future`` with the answer (``b""`` for none) or the
    error, unless its awaiter gave up meanwhile (the future is done: cancelled)."""

    def answer(data: bytes | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(data or b"")

    return answer
