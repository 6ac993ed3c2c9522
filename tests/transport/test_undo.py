"""``undo_fully``: an undo runs to its end whatever cancellation comes meanwhile, and the
cancellation is raised afterwards, never lost."""

from __future__ import annotations

import asyncio

import pytest

from transport.undo import undo_fully, undoing


class Undo:
    """An undo that waits for ``go`` (set ``reached`` on the way) and records its end."""

    def __init__(self, fails: bool = False) -> None:
        self.reached = asyncio.Event()
        self.go = asyncio.Event()
        self.done = False
        self.fails = fails

    async def run(self) -> str:
        self.reached.set()
        await self.go.wait()
        self.done = True
        if self.fails:
            raise OSError("could not close")
        return "undone"


async def test_a_cancellation_waits_for_the_undo_then_is_raised() -> None:
    undo = Undo()
    task = asyncio.ensure_future(undo_fully(undo.run()))
    await undo.reached.wait()
    task.cancel()
    await asyncio.sleep(0)  # (a turn for the cancellation to land)
    task.cancel()  # twice, as a stop and a cancelled caller
    await asyncio.sleep(0)
    assert not task.done() and not undo.done
    undo.go.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert undo.done


async def test_the_undo_s_outcome_is_returned_or_raised() -> None:
    undo = Undo()
    undo.go.set()
    assert await undo_fully(undo.run()) == "undone"
    failing = Undo(fails=True)
    failing.go.set()
    with pytest.raises(OSError, match="could not close"):
        await undo_fully(failing.run())


async def test_the_undo_s_own_error_comes_before_a_cancellation() -> None:
    undo = Undo(fails=True)
    task = asyncio.ensure_future(undo_fully(undo.run()))
    await undo.reached.wait()
    task.cancel()
    await asyncio.sleep(0)
    undo.go.set()
    with pytest.raises(OSError, match="could not close"):
        await task


async def test_a_task_is_undoing_while_it_waits_for_an_undo_nested_or_not() -> None:
    undo = Undo()
    seen: list[bool] = []

    async def nested() -> None:
        async def inner() -> None:
            await undo_fully(undo.run())

        await undo_fully(inner())
        seen.append(undoing(task))

    task = asyncio.ensure_future(nested())
    await undo.reached.wait()
    assert undoing(task)
    undo.go.set()
    await task
    assert seen == [False] and not undoing(task)
