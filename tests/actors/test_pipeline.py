"""The handler pipeline (``actors.pipeline``): before- and after-hooks in registration order,
sync or async, and what a failing hook becomes.

Where the invocation path calls the pipeline (and skips it when inactive) is in
test_invocation.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.errors import BadRequest, InternalError, PitayaError
from actors.pipeline import Pipeline
from actors.testing import TestSession

SESSION = TestSession(1)


def test_a_pipeline_is_active_once_any_hook_is_registered() -> None:
    empty, before, after = Pipeline(), Pipeline(), Pipeline()
    assert not empty.active

    def hook(*args: Any) -> Any: ...

    assert before.before(hook) is hook  # usable as a decorator
    assert after.after(hook) is hook
    assert before.active and after.active


async def test_without_hooks_body_and_outcome_pass_unchanged() -> None:
    pipeline = Pipeline()
    body = {"a": 1}
    assert await pipeline.run_before(SESSION, "r.m", body) is body
    error = BadRequest()
    assert await pipeline.run_after(SESSION, "r.m", "resp", error) == ("resp", error)


# -- before ----------------------------------------------------------------------------------


async def test_before_hooks_run_in_order_each_on_the_previous_body() -> None:
    pipeline = Pipeline()
    seen: list[tuple[str, Any]] = []

    @pipeline.before
    def first(session: Any, route: str, body: Any) -> Any:
        seen.append(("first", (session.id, route, body)))
        return [*body, "first"]

    @pipeline.before
    async def second(session: Any, route: str, body: Any) -> Any:
        await asyncio.sleep(0)
        seen.append(("second", body))
        return [*body, "second"]

    @pipeline.before
    def third(session: Any, route: str, body: Any) -> Any:
        seen.append(("third", body))
        return [*body, "third"]

    assert await pipeline.run_before(SESSION, "room.join", []) == ["first", "second", "third"]
    assert seen == [
        ("first", (1, "room.join", [])),
        ("second", ["first"]),
        ("third", ["first", "second"]),
    ]


async def test_a_before_hook_that_raises_stops_the_rest_and_the_error_reaches_the_caller() -> None:
    pipeline = Pipeline()
    ran: list[str] = []

    @pipeline.before
    async def refuse(session: Any, route: str, body: Any) -> Any:
        ran.append("refuse")
        raise PitayaError("PIT-401", "login first")

    @pipeline.before
    def never(session: Any, route: str, body: Any) -> Any:
        ran.append("never")
        return body

    with pytest.raises(PitayaError, match="PIT-401: login first"):
        await pipeline.run_before(SESSION, "room.join", {})
    assert ran == ["refuse"]

    broken = Pipeline()
    broken.before(lambda session, route, body: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # left to the caller to map (PIT-500 there)
        await broken.run_before(SESSION, "room.join", {})


async def test_a_before_hook_may_return_none_as_the_body() -> None:
    pipeline = Pipeline()
    pipeline.before(lambda session, route, body: None)
    pipeline.before(lambda session, route, body: ("saw", body))
    assert await pipeline.run_before(SESSION, "r.m", {"x": 1}) == ("saw", None)


# -- after -----------------------------------------------------------------------------------


async def test_after_hooks_run_in_order_each_on_the_previous_outcome() -> None:
    pipeline = Pipeline()
    seen: list[Any] = []

    @pipeline.after
    async def stamp(session: Any, route: str, response: Any, error: Any) -> Any:
        await asyncio.sleep(0)
        seen.append(("stamp", session.id, route, response, error))
        return {**response, "served_by": "eu-1"}, error

    @pipeline.after
    def count(session: Any, route: str, response: Any, error: Any) -> Any:
        seen.append(("count", response))
        return {**response, "n": len(response)}, None

    assert await pipeline.run_after(SESSION, "room.join", {"ok": True}, None) == (
        {"ok": True, "served_by": "eu-1", "n": 2},
        None,
    )
    assert seen == [
        ("stamp", 1, "room.join", {"ok": True}, None),
        ("count", {"ok": True, "served_by": "eu-1"}),
    ]


async def test_an_after_hook_may_turn_an_error_into_a_response_and_back() -> None:
    pipeline = Pipeline()
    original = InternalError("db down")
    pipeline.after(lambda s, r, response, error: ({"fallback": error.msg}, None))
    assert await pipeline.run_after(SESSION, "r.m", None, original) == (
        {"fallback": "db down"},
        None,
    )

    refusing = Pipeline()
    denied = PitayaError("PIT-403", "no")
    refusing.after(lambda s, r, response, error: (None, denied))
    assert await refusing.run_after(SESSION, "r.m", {"ok": 1}, None) == (None, denied)


async def test_an_after_hook_raising_a_pitaya_error_makes_it_the_outcome_for_the_next() -> None:
    pipeline = Pipeline()
    seen: list[Any] = []
    refused = PitayaError("PIT-403", "not yours")

    @pipeline.after
    async def refuse(session: Any, route: str, response: Any, error: Any) -> Any:
        raise refused

    @pipeline.after
    def look(session: Any, route: str, response: Any, error: Any) -> Any:
        seen.append((response, error))
        return response, error

    assert await pipeline.run_after(SESSION, "r.m", {"ok": 1}, None) == (None, refused)
    assert seen == [(None, refused)]


async def test_an_after_hook_failing_otherwise_is_an_internal_error_naming_it() -> None:
    pipeline = Pipeline()
    seen: list[Any] = []

    @pipeline.after
    def broken(session: Any, route: str, response: Any, error: Any) -> Any:
        raise KeyError("missing")

    @pipeline.after
    def look(session: Any, route: str, response: Any, error: Any) -> Any:
        seen.append((response, error))
        return response, error

    response, error = await pipeline.run_after(SESSION, "r.m", {"ok": 1}, None)
    assert response is None
    assert isinstance(error, InternalError)
    assert (error.code, error.msg) == ("PIT-500", "after-hook failed: 'missing'")
    assert seen == [(None, error)]


async def test_an_after_hook_returning_no_pair_is_an_internal_error() -> None:
    pipeline = Pipeline()
    pipeline.after(lambda s, r, response, error: response)  # forgot the error
    response, error = await pipeline.run_after(SESSION, "r.m", 5, None)
    assert response is None and isinstance(error, InternalError)
    assert error.msg.startswith("after-hook failed: ")


async def test_cancelling_an_after_hook_is_not_swallowed() -> None:
    pipeline = Pipeline()

    async def cancelled(session: Any, route: str, response: Any, error: Any) -> Any:
        raise asyncio.CancelledError

    pipeline.after(cancelled)
    with pytest.raises(asyncio.CancelledError):
        await pipeline.run_after(SESSION, "r.m", 1, None)
