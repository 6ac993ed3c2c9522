"""A graceful stop's one budget: ``shutdown_timeout`` from the stop, shared by its steps.

Each step used to wait its own ``shutdown_timeout``: the requests in flight, then the close
callbacks, then each module's ``before_shutdown`` and ``shutdown``. A stop with one request
that would not end, a slow database behind the close callbacks and one module that hung took
three times the option, and a supervisor whose grace period was set from it (the launcher's
``stop_timeout``, Kubernetes' ``terminationGracePeriodSeconds``) killed the server halfway,
its discovery entry left behind. Now a step waits until the stop's deadline, with a floor only
where skipping it would lose work (``STOP_GRACE``, ``MODULE_STEP_WAIT`` per module step).

Run on looptime's virtual clock with the in-memory client: the times are exact, and a stop of
tens of seconds takes milliseconds.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.app import App
from actors.handler import Handler, handler
from actors.lifecycle import CLOSE_WAIT, STOP_GRACE
from actors.modules.base import MODULE_STEP_WAIT, ModuleBase
from actors.session import Session
from actors.testing import TestClient
from transport.client import RequestError

pytestmark = [pytest.mark.looptime, pytest.mark.timeout(10)]

BUDGET = 10.0


class Work(Handler):
    """``work.take``: a request that takes ``seconds`` (forever without)."""

    service = "work"

    def __init__(self) -> None:
        self.taken = asyncio.Event()

    @handler
    async def take(self, session: Session, body: Any) -> str:
        self.taken.set()
        if body is None:
            await asyncio.Event().wait()  # until the stop cancels it
        await asyncio.sleep(body)
        return "done"


class HangsOnShutdown(ModuleBase):
    """A module whose ``shutdown`` never ends (a connection pool waiting on a dead host)."""

    def __init__(self) -> None:
        self.steps: list[str] = []

    async def before_shutdown(self) -> None:
        self.steps.append("before_shutdown")

    async def shutdown(self) -> None:
        self.steps.append("shutdown")
        await asyncio.Event().wait()


def make_app() -> App:
    app = App(server_type="game", shutdown_timeout=BUDGET)
    app.register(Work)
    return app


async def started(app: App) -> None:
    work = app.handler_instance("work")
    assert isinstance(work, Work)
    await asyncio.wait_for(work.taken.wait(), 5)


async def test_the_steps_share_the_budget_past_it_only_by_their_floors() -> None:
    """A request that never ends, a close callback that never ends, a module whose shutdown
    never ends: the stop ends at the budget, plus the close callbacks' and the module's
    floors. It took 30 s here (10 s for each of the three)."""
    app = make_app()
    module = HangsOnShutdown()
    app.register_module(module, "pool")
    closing: list[int] = []

    async def save(session: Session) -> None:
        closing.append(session.id)
        await asyncio.Event().wait()  # a database that does not answer

    app.on_session_close(save)
    loop = asyncio.get_running_loop()
    async with TestClient(app) as client:
        held = asyncio.ensure_future(client.request("work.take", timeout=60))
        await started(app)
        start = loop.time()
        await app.stop()
        elapsed = loop.time() - start
        with pytest.raises(RequestError) as caught:
            await held
    assert caught.value.code == "PIT-500"  # cancelled at the budget, answered before the kick
    assert closing == [1]
    assert module.steps == ["before_shutdown", "shutdown"]  # never skipped
    assert elapsed == pytest.approx(BUDGET + CLOSE_WAIT + MODULE_STEP_WAIT)
    assert elapsed <= BUDGET + STOP_GRACE + 2 * MODULE_STEP_WAIT


async def stop_after(request_seconds: float, save_seconds: float) -> tuple[float, list[int]]:
    """Stop while a request of ``request_seconds`` runs, its session's close callback taking
    ``save_seconds``: how long the stop took, and the sessions whose save finished."""
    app = make_app()
    saved: list[int] = []

    async def save(session: Session) -> None:
        await asyncio.sleep(save_seconds)
        saved.append(session.id)

    app.on_session_close(save)
    loop = asyncio.get_running_loop()
    async with TestClient(app) as client:
        held = asyncio.ensure_future(client.request("work.take", request_seconds, timeout=60))
        await started(app)
        start = loop.time()
        await app.stop()
        elapsed = loop.time() - start
        assert await held == "done"
    return elapsed, saved


async def test_close_callbacks_get_what_the_requests_left_of_the_budget() -> None:
    """A request done at 4 s leaves 6 s: a close callback of 5 s saves its player (it had
    the whole 10 s again before, and the stop took 14 s instead of 9)."""
    assert await stop_after(4, 5) == (pytest.approx(4 + 5), [1])


async def test_a_close_callback_past_what_is_left_is_cancelled_at_the_deadline() -> None:
    assert await stop_after(4, 8) == (pytest.approx(BUDGET), [])


async def test_close_callbacks_get_their_floor_when_the_requests_used_the_budget() -> None:
    """A request done just before the deadline: a short save still happens."""
    elapsed, saved = await stop_after(BUDGET - 0.5, CLOSE_WAIT / 2)
    assert (elapsed, saved) == (pytest.approx(BUDGET - 0.5 + CLOSE_WAIT / 2), [1])
