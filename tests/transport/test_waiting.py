"""``transport.waiting``: an event awaited a bounded time, and a future settled by an answer
callback. On looptime's virtual clock: the waits are exact."""

from __future__ import annotations

import asyncio

import pytest

from transport.waiting import set_within, settles

pytestmark = pytest.mark.looptime


async def test_set_within_says_whether_the_event_came_in_time() -> None:
    loop = asyncio.get_running_loop()
    event = asyncio.Event()
    start = loop.time()
    assert not await set_within(event, 2)
    assert loop.time() - start == pytest.approx(2)
    loop.call_later(1, event.set)
    assert await set_within(event, 5)
    assert loop.time() - start == pytest.approx(3)


async def test_a_set_event_is_seen_even_with_no_time_left() -> None:
    event = asyncio.Event()
    assert not await set_within(event, 0)
    event.set()
    assert await set_within(event, 0)
    assert await set_within(event, -1)


async def test_settles_gives_the_answer_the_error_or_nothing_once_done() -> None:
    loop = asyncio.get_running_loop()
    answered, empty, failed, gone = (loop.create_future() for _ in range(4))
    settles(answered)(b"pong", None)
    settles(empty)(None, None)
    settles(failed)(None, TimeoutError("late"))
    gone.cancel()  # its awaiter gave up
    settles(gone)(b"late", None)
    assert (await answered, await empty) == (b"pong", b"")
    with pytest.raises(TimeoutError, match="late"):
        await failed
    assert gone.cancelled()
