"""The invocation path on its own: ``Invoker.invoke`` called directly, and the Sequencer.

The app is started in memory only to build the routes and the invoker the way it always
does; each test then calls ``app.invoker.invoke`` and looks at what ``done`` gets. The same
rules seen from a client are in test_error_codes.py and test_concurrency.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from actors.app import App
from actors.errors import BadRequest, InternalError, PitayaError, TooManyRequests
from actors.handler import Handler, handler
from actors.invocation import FailureLog, Sequencer
from actors.metrics.names import PROCESS_DELAY, RESPONSE_TIME
from actors.session import Session, SessionClosed
from actors.testing import TestClient, TestSession
from tests.actors.metrics.recorder import Recorder
from transport.client import RequestError
from transport.logs import ServerLog
from transport.serializers import MsgpackSerializer


@dataclass(frozen=True, slots=True)
class Point:
    x: int


@dataclass(frozen=True)
class Positive:
    x: int

    def __post_init__(self) -> None:
        if self.x <= 0:
            raise ValueError("x must be positive")


class Inv(Handler):
    service = "inv"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls: list[Any] = []
        self.spans: list[Any] = []

    @handler
    def echo(self, session: Session | None, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("echo", session, body))
        self.spans.append(trace.get_current_span())
        return body

    @handler
    async def aecho(self, session: Session | None, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("aecho", session, body))
        self.spans.append(trace.get_current_span())
        await asyncio.sleep(0)
        return body

    @handler
    async def hold(self, session: Session | None) -> dict[str, str]:
        await self.gate.wait()
        return {"held": "done"}

    @handler
    def point(self, session: Session | None, body: Point) -> dict[str, int]:
        return {"x": body.x}

    @handler
    def positive(self, session: Session | None, body: Positive) -> dict[str, int]:
        return {"x": body.x}

    @handler
    def whose(self, session: Session | None) -> dict[str, Any]:
        self.calls.append(("whose", session))
        return {"id": session.id if session is not None else None}

    @handler
    async def anothing(self, session: Session | None) -> dict[str, Any]:
        await asyncio.sleep(0)
        return None  # type: ignore[return-value]

    @handler
    def note(self, session: Session | None, body: dict[str, Any]) -> None:
        self.calls.append(("note", session, body))

    @handler
    def nothing(self, session: Session | None) -> dict[str, Any]:
        return None  # type: ignore[return-value]

    @handler
    def fail(self, session: Session | None) -> dict[str, Any]:
        raise ValueError("bad input")

    @handler
    async def left(self, session: Session | None) -> dict[str, Any]:
        raise SessionClosed("the client left while this awaited")

    @handler
    def fail_silently(self, session: Session | None) -> dict[str, Any]:
        raise KeyError()

    @handler
    async def afail(self, session: Session | None) -> dict[str, Any]:
        await asyncio.sleep(0)
        raise ValueError("async bad")

    @handler
    async def arefuse(self, session: Session | None) -> dict[str, Any]:
        await asyncio.sleep(0)
        raise PitayaError("PIT-403", "no", {"why": "test"})

    @handler
    def unencodable(self, session: Session | None) -> Any:
        return {"x": object()}

    @handler
    async def aunencodable(self, session: Session | None) -> Any:
        await asyncio.sleep(0)
        return {"x": object()}

    @handler
    def raw(self, session: Session | None) -> bytes:
        return b"\x01\x02"


class Done:
    """A ``done`` callback that records its one call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, BaseException | None]] = []
        self.event = asyncio.Event()

    def __call__(self, payload: Any, error: BaseException | None) -> None:
        self.calls.append((payload, error))
        self.event.set()

    async def result(self) -> tuple[Any, BaseException | None]:
        await asyncio.wait_for(self.event.wait(), 5)
        assert len(self.calls) == 1
        return self.calls[0]


@asynccontextmanager
async def started(setup: Callable[[App], None] | None = None, **options: Any) -> AsyncIterator[App]:
    app = App(server_type="inv", server_id="i1", **options)
    app.register(Inv)
    if setup is not None:
        setup(app)
    test = TestClient(app)
    await test.start()
    try:
        yield app
    finally:
        inv(app).gate.set()
        await test.stop()


def inv(app: App) -> Inv:
    actor = app.handler_ref("inv")._cell.actor
    assert isinstance(actor, Inv)
    return actor


def invoke(
    app: App, route: str, data: bytes = b"{}", *, notify: bool = False, **options: Any
) -> Done:
    done = Done()
    app.invoker.invoke(app.local_routes[route], route, None, data, notify, done, **options)
    return done


# -- synchronous and asynchronous methods ---------------------------------------------------


async def test_a_sync_method_answers_before_invoke_returns() -> None:
    async with started() as app:
        done = invoke(app, "inv.echo", b'{"a":1}')
        assert done.calls == [(b'{"a":1}', None)]
        assert app.invoker.running == 0


async def test_an_async_method_runs_as_a_counted_task() -> None:
    async with started() as app:
        done = invoke(app, "inv.hold")
        assert done.calls == []
        assert (app.invoker.running, app.requests_in_flight.count) == (1, 1)
        assert len(app.invoker._tasks) == 1
        inv(app).gate.set()
        assert await done.result() == (b'{"held":"done"}', None)
        assert (app.invoker.running, app.requests_in_flight.count) == (0, 0)
        assert not app.invoker._tasks


async def test_the_method_gets_the_session_and_the_decoded_body() -> None:
    async with started() as app:
        session = Session(7, None, app.sessions.bind, app.serializer)  # type: ignore[arg-type]
        done = Done()
        route = app.local_routes["inv.aecho"]
        app.invoker.invoke(route, "inv.aecho", session, b'{"k":"v"}', False, done)
        assert await done.result() == (b'{"k":"v"}', None)
        assert inv(app).calls == [("aecho", session, {"k": "v"})]
        done = invoke(app, "inv.point", b'{"x":3}')
        assert done.calls == [(b'{"x":3}', None)]
        assert invoke(app, "inv.raw").calls == [(b"\x01\x02", None)]


async def test_a_notify_is_answered_with_nothing() -> None:
    async with started() as app:
        done = invoke(app, "inv.echo", b'{"a":1}', notify=True)
        assert done.calls == [(None, None)]
        done = invoke(app, "inv.aecho", b'{"a":2}', notify=True)
        assert await done.result() == (None, None)
        assert invoke(app, "inv.note", b'{"n":1}', notify=True).calls == [(None, None)]


async def test_another_serializer_for_one_call() -> None:
    async with started() as app:
        packed = MsgpackSerializer().marshal({"a": 1})
        done = invoke(app, "inv.echo", packed, serializer=MsgpackSerializer())
        assert done.calls == [(packed, None)]


# -- errors ----------------------------------------------------------------------------------


def error_of(done: Done) -> PitayaError:
    ((payload, error),) = done.calls
    assert payload is None and isinstance(error, PitayaError)
    return error


async def test_a_request_to_a_notify_only_route_is_a_bad_request() -> None:
    async with started() as app:
        error = error_of(invoke(app, "inv.note"))
        assert isinstance(error, BadRequest)
        assert (error.code, error.msg, error.metadata) == (
            "PIT-400",
            "route inv.note is notify-only: send a notify, not a request",
            {"route": "inv.note"},
        )
        assert inv(app).calls == []


async def test_bodies_that_do_not_decode() -> None:
    async with started() as app:
        assert error_of(invoke(app, "inv.echo", b"not json")).code == "PIT-400"
        error = error_of(invoke(app, "inv.point", b'{"x":"three"}'))
        assert error.code == "PIT-400"


async def test_a_body_type_that_refuses_its_fields_is_pit_500_naming_the_route() -> None:
    # The decoder checked the shape; the class's own validation raising is the server's error.
    async with started() as app:
        assert invoke(app, "inv.positive", b'{"x":2}').calls == [(b'{"x":2}', None)]
        error = error_of(invoke(app, "inv.positive", b'{"x":0}'))
        assert (error.code, error.msg, error.metadata) == (
            "PIT-500",
            "x must be positive",
            {"route": "inv.positive"},
        )


def with_a_hook(app: App) -> None:
    @app.pipeline.before
    def before(session: Session | None, route: str, body: Any) -> Any:
        return body


@pytest.mark.parametrize(
    ("route", "body", "setup", "why"),
    [
        ("inv.positive", b'{"x":0}', None, "x must be positive"),  # the body's decoding
        ("inv.afail", b"{}", None, "async bad"),
        ("inv.unencodable", b"{}", None, "cannot encode dict as JSON"),
        ("inv.aunencodable", b"{}", None, "cannot encode dict as JSON"),
        ("inv.fail", b"{}", with_a_hook, "bad input"),
    ],
)
async def test_every_failure_of_a_handler_is_logged_with_its_session_and_server(
    caplog: pytest.LogCaptureFixture,
    route: str,
    body: bytes,
    setup: Callable[[App], None] | None,
    why: str,
) -> None:
    """The operator must find which player it was (the answer names only the route): a
    body its type refuses, an async method, a result that does not encode, a pipeline."""
    async with started(setup) as app:
        done = Done()
        session = TestSession(7, uid="ann")
        app.invoker.invoke(app.local_routes[route], route, session, body, False, done)
        await done.result()
        assert error_of(done).code == "PIT-500"
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == f"[i1] handler {route} failed (session 7, uid ann)"
    assert (record.session_id, record.server_id) == (7, "i1")  # type: ignore[attr-defined]
    assert record.exc_info is not None and str(record.exc_info[1]) == why


async def test_a_failing_method_is_logged_and_answered_pit_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with started() as app:
        error = error_of(invoke(app, "inv.fail"))
        assert isinstance(error, InternalError)
        assert (error.code, error.msg, error.metadata) == (
            "PIT-500",
            "bad input",
            {"route": "inv.fail"},
        )
        # Named by its server: an operator reading one log of many servers sees whose.
        (record,) = [r for r in caplog.records if r.getMessage() == "[i1] handler inv.fail failed"]
        assert record.levelno == logging.ERROR
        assert record.server_id == "i1"  # type: ignore[attr-defined]
        assert record.exc_info is not None and str(record.exc_info[1]) == "bad input"
        # No message: the exception's class name is the text.
        assert error_of(invoke(app, "inv.fail_silently")).msg == "KeyError"


async def test_a_failure_names_its_session_and_a_route_failing_again_is_told_once_per_10_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler failing on every request wrote a traceback per request, naming no player."""
    caplog.set_level(logging.DEBUG, logger="actors.invocation")
    async with started() as app:
        session = TestSession(7, uid="ann")
        route = app.local_routes["inv.fail"]
        for _ in range(3):
            done = Done()
            app.invoker.invoke(route, "inv.fail", session, b"{}", False, done)
            assert error_of(done).code == "PIT-500"  # every one is answered
        lines = [
            r
            for r in caplog.records
            if "handler inv.fail failed" in r.getMessage() and r.levelno == logging.ERROR
        ]
        assert [r.getMessage() for r in lines] == [
            "[i1] handler inv.fail failed (session 7, uid ann)"
        ]
        assert lines[0].session_id == 7  # type: ignore[attr-defined]
        assert lines[0].exc_info is not None
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG][-2:] == [
            "[i1] handler inv.fail failed (session 7, uid ann): ValueError('bad input')"
        ] * 2  # each one, at debug
        app.invoker.failures._kinds["inv.fail", ValueError]._last = -100.0  # 10 s later
        app.invoker.invoke(route, "inv.fail", session, b"{}", False, Done())
        last = caplog.records[-1]
        assert last.levelno == logging.ERROR
        assert last.getMessage().endswith("(2 more since the last such line, not logged)")
        # Another kind of failure of the same route (here a KeyError) is told at once.
        other = app.local_routes["inv.fail_silently"]
        app.invoker.invoke(other, "inv.fail", session, b"{}", False, Done())
        assert caplog.records[-1].levelno == logging.ERROR
        assert caplog.records[-1].exc_info is not None
        assert isinstance(caplog.records[-1].exc_info[1], KeyError)


def test_past_4096_kinds_of_failure_the_ones_known_are_forgotten_and_told_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The kinds followed are bounded (a route or exception class per request would grow
    the table for good); a new kind past the bound is still told, and starts afresh."""
    caplog.set_level(logging.DEBUG, logger="actors.invocation")
    failures = FailureLog(ServerLog(logging.getLogger("actors.invocation"), "i1"))

    def told(route: str) -> int:
        """The level ``route`` failing once more is logged at."""
        failures.failed(route, ValueError("bad"), None)
        return caplog.records[-1].levelno

    assert [told(f"r{n}") for n in range(4096)] == [logging.ERROR] * 4096
    assert told("r0") == logging.DEBUG  # 4096 kinds known: all remembered
    assert told("r4096") == logging.ERROR  # one more: told, and the others forgotten
    assert [told("r0"), told("r1"), told("r4096")] == [logging.ERROR, logging.ERROR, logging.DEBUG]


async def test_a_client_that_left_is_no_failure_of_the_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="actors.invocation")
    async with started() as app:
        done = Done()
        route = app.local_routes["inv.left"]
        app.invoker.invoke(route, "inv.left", TestSession(3), b"{}", False, done)
        await done.result()
        assert error_of(done).code == "PIT-500"
        assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
            (logging.INFO, "[i1] handler inv.left stopped: the client left while this awaited")
        ]


async def test_async_failures_are_answered_like_sync_ones() -> None:
    async with started() as app:
        done = invoke(app, "inv.afail")
        await done.result()
        error = error_of(done)
        assert (error.code, error.msg, error.metadata) == (
            "PIT-500",
            "async bad",
            {"route": "inv.afail"},
        )
        done = invoke(app, "inv.arefuse")
        await done.result()
        error = error_of(done)
        assert (error.code, error.msg, error.metadata) == ("PIT-403", "no", {"why": "test"})


async def test_a_request_must_be_answered_with_something() -> None:
    async with started() as app:
        error = error_of(invoke(app, "inv.nothing"))
        assert (error.code, error.msg, error.metadata) == (
            "PIT-000",
            "reply must not be null",
            {"route": "inv.nothing"},
        )
        done = invoke(app, "inv.anothing")
        await done.result()
        assert error_of(done).metadata == {"route": "inv.anothing"}


async def test_a_result_that_does_not_encode_is_pit_500() -> None:
    async with started() as app:
        error = error_of(invoke(app, "inv.unencodable"))
        assert (error.code, error.msg, error.metadata) == (
            "PIT-500",
            "cannot encode dict as JSON",
            {"route": "inv.unencodable"},
        )


# -- the limit on running invocations --------------------------------------------------------


async def test_at_most_limit_async_invocations_run_and_sync_ones_always_do() -> None:
    async with started(max_concurrent_handlers=2) as app:
        first, second = invoke(app, "inv.hold"), invoke(app, "inv.hold")
        assert app.invoker.running == 2
        refused = error_of(invoke(app, "inv.hold"))
        assert isinstance(refused, TooManyRequests)
        assert (refused.code, refused.msg) == (
            "PIT-429",
            "too many handlers running on this server",
        )
        assert invoke(app, "inv.echo", b"{}").calls == [(b"{}", None)]  # sync: never waits
        inv(app).gate.set()
        await first.result()
        await second.result()
        assert app.invoker.running == 0
        done = invoke(app, "inv.aecho", b"{}")
        assert await done.result() == (b"{}", None)


async def test_cancel_answers_every_running_invocation() -> None:
    async with started() as app:
        done = invoke(app, "inv.hold")
        app.invoker.cancel()
        await done.result()
        error = error_of(done)
        assert isinstance(error, InternalError)
        assert error.msg == "handler cancelled (server stopping)"
        assert (app.invoker.running, app.requests_in_flight.count) == (0, 0)


# -- metrics, pipeline, tracing --------------------------------------------------------------


async def test_the_process_delay_is_reported_when_the_arrival_is_known() -> None:
    recorder = Recorder()
    async with started(lambda app: app.add_metrics_reporter(recorder)) as app:
        invoke(app, "inv.echo")  # no arrival time: nothing to report
        assert not recorder.find(lambda c: c.metric == PROCESS_DELAY)
        import time

        invoke(app, "inv.echo", received_ns=time.monotonic_ns())
        (call,) = recorder.find(lambda c: c.metric == PROCESS_DELAY)
        assert call.method == "summary"
        assert call.tags == {"route": "inv.echo", "type": "local"}
        assert 0 < call.value < 5e9


async def test_pipeline_hooks_wrap_sync_methods_as_tasks() -> None:
    seen: list[Any] = []

    def setup(app: App) -> None:
        @app.pipeline.before
        def before(session: Session | None, route: str, body: Any) -> Any:
            seen.append(("before", route, body))
            return {**body, "added": True} if isinstance(body, dict) else body

        @app.pipeline.after
        def after(
            session: Session | None, route: str, result: Any, error: PitayaError | None
        ) -> tuple[Any, PitayaError | None]:
            seen.append(("after", route, result, error and error.code))
            return result, error

    async with started(setup) as app:
        done = invoke(app, "inv.echo", b'{"a":1}')
        assert done.calls == []  # a task, because of the hooks
        assert await done.result() == (b'{"a":1,"added":true}', None)
        done = invoke(app, "inv.fail")
        await done.result()
        assert error_of(done).msg == "bad input"
        done = invoke(app, "inv.arefuse")
        await done.result()
        assert error_of(done).code == "PIT-403"
        done = invoke(app, "inv.raw")
        assert await done.result() == (b"\x01\x02", None)
        # Its result is checked by the xfail test below; here only that the hook saw the error.
        failed_async = seen.pop(5)
        assert (failed_async[0], failed_async[1], failed_async[3]) == (
            "after",
            "inv.arefuse",
            "PIT-403",
        )
        assert seen == [
            ("before", "inv.echo", {"a": 1}),
            ("after", "inv.echo", {"a": 1, "added": True}, None),
            ("before", "inv.fail", None),
            ("after", "inv.fail", None, "PIT-500"),
            ("before", "inv.arefuse", None),
            ("before", "inv.raw", None),
            ("after", "inv.raw", b"\x01\x02", None),
        ]


async def test_after_hooks_see_no_result_when_an_async_method_fails() -> None:
    results: list[Any] = []

    def setup(app: App) -> None:
        @app.pipeline.after
        def after(
            session: Session | None, route: str, result: Any, error: PitayaError | None
        ) -> tuple[Any, PitayaError | None]:
            results.append(result)
            return result, error

    async with started(setup) as app:
        done = invoke(app, "inv.arefuse")
        await done.result()
        assert results == [None]


async def test_hooks_and_methods_get_the_session_on_every_path() -> None:
    seen: list[Any] = []

    def setup(app: App) -> None:
        @app.pipeline.before
        def before(session: Session | None, route: str, body: Any) -> Any:
            seen.append(("before", session))
            return body

        @app.pipeline.after
        def after(
            session: Session | None, route: str, result: Any, error: PitayaError | None
        ) -> tuple[Any, PitayaError | None]:
            seen.append(("after", session, error and error.metadata))
            return result, error

    tracer = TracerProvider().get_tracer("test")
    async with started(setup) as app:
        session = Session(7, None, app.sessions.bind, app.serializer)  # type: ignore[arg-type]
        for route in ("inv.whose", "inv.fail"):
            done = Done()
            app.invoker.invoke(app.local_routes[route], route, session, b"{}", False, done)
            await done.result()
        assert inv(app).calls == [("whose", session)]
        assert seen == [
            ("before", session),
            ("after", session, None),
            ("before", session),
            ("after", session, {"route": "inv.fail"}),
        ]
    async with started() as app:  # no hooks: the synchronous path, with a span
        session = Session(8, None, app.sessions.bind, app.serializer)  # type: ignore[arg-type]
        done = Done()
        span = tracer.start_span("inv.whose")
        app.invoker.invoke(
            app.local_routes["inv.whose"], "inv.whose", session, b"", False, done, span=span
        )
        assert done.calls == [(b'{"id":8}', None)]
        span.end()


async def test_the_span_is_current_while_the_method_runs() -> None:
    tracer = TracerProvider().get_tracer("test")
    async with started() as app:
        for route in ("inv.echo", "inv.aecho"):
            span = tracer.start_span(route)
            done = invoke(app, route, b"{}", span=span)
            await done.result()
            assert inv(app).spans[-1] is span
            span.end()
        done = invoke(app, "inv.aecho", b"{}")
        await done.result()
        assert inv(app).spans[-1] is trace.INVALID_SPAN


# -- the sequencer ---------------------------------------------------------------------------


class HeldJobs:
    """Jobs that log their name when they run and hold their ``finish`` for the test."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.finishers: dict[str, Callable[[], None]] = {}

    def __call__(self, name: str) -> Callable[[Callable[[], None]], None]:
        def run(finish: Callable[[], None]) -> None:
            self.log.append(name)
            self.finishers[name] = finish

        return run


def test_the_sequencer_runs_one_job_per_key_in_order() -> None:
    sequencer = Sequencer()
    job = HeldJobs()
    log, finishers = job.log, job.finishers
    sequencer.submit("a", job("a1"))
    sequencer.submit("a", job("a2"))
    sequencer.submit("b", job("b1"))
    assert log == ["a1", "b1"] and len(sequencer) == 2
    finishers["a1"]()
    assert log == ["a1", "b1", "a2"]
    finishers["a1"]()  # a second finish is ignored
    assert log == ["a1", "b1", "a2"]
    finishers["a2"]()
    assert len(sequencer) == 1  # lane "a" is gone once idle
    finishers["b1"]()
    assert len(sequencer) == 0


def test_a_job_that_ran_alone_holds_the_jobs_that_come_while_it_runs() -> None:
    # The first job of an idle key runs without a lane; one comes while it runs: the lane
    # made then waits for the first, and the first's second finish is still ignored.
    sequencer = Sequencer()
    job = HeldJobs()
    log, finishers = job.log, job.finishers
    sequencer.submit("k", job("k1"))
    sequencer.submit("k", job("k2"))
    sequencer.submit("k", job("k3"))
    assert log == ["k1"]
    finishers["k1"]()
    assert log == ["k1", "k2"]
    finishers["k1"]()  # not k2's finish: k3 waits on
    assert log == ["k1", "k2"] and len(sequencer) == 1
    finishers["k2"]()
    finishers["k3"]()
    assert log == ["k1", "k2", "k3"] and len(sequencer) == 0
    # Alone again, finished twice: the key is free, and a later job runs at once.
    sequencer.submit("k", job("k4"))
    finishers["k4"]()
    finishers["k4"]()
    sequencer.submit("k", job("k5"))
    assert log[-1] == "k5" and len(sequencer) == 1


def test_a_long_queue_of_instant_jobs_runs_without_recursion() -> None:
    # Jobs that finish inside their own call are run by the loop that started them, not by
    # nested calls: 10,000 of them behind a held one must not exhaust the stack.
    sequencer = Sequencer()
    release: list[Callable[[], None]] = []
    ran: list[int] = []
    sequencer.submit("k", release.append)
    for i in range(10_000):
        sequencer.submit("k", lambda finish, i=i: (ran.append(i), finish()))
    release[0]()
    assert ran == list(range(10_000))
    assert len(sequencer) == 0


def test_jobs_that_finish_at_once_run_in_one_pass() -> None:
    sequencer = Sequencer()
    log: list[str] = []

    def instant(name: str) -> Callable[[Callable[[], None]], None]:
        def run(finish: Callable[[], None]) -> None:
            log.append(name)
            finish()

        return run

    def submitting(finish: Callable[[], None]) -> None:
        # A job that submits more work for its own key, then finishes: it queues behind.
        log.append("outer")
        sequencer.submit("k", instant("inner"))
        assert log == ["outer"]
        finish()

    sequencer.submit("k", submitting)
    assert log == ["outer", "inner"]
    assert len(sequencer) == 0
    for name in ("x", "y", "z"):
        sequencer.submit("k", instant(name))
    assert log == ["outer", "inner", "x", "y", "z"]
    assert len(sequencer) == 0


class Admin(Handler):
    service = "admin"

    @handler
    def reset(self, session: Session) -> dict[str, bool]:
        return {"reset": True}

    @handler
    def hello(self, session: Session) -> dict[str, bool]:
        return {"hello": True}


async def test_hooks_see_one_name_per_route_however_the_client_spells_it() -> None:
    """A route is reachable as ``admin.reset`` and ``game.admin.reset``, and hooks saw what
    the client sent: a hook refusing ``admin.reset`` let ``game.admin.reset`` through."""
    seen: list[str] = []
    app = App(server_type="game")
    app.register(Admin)

    @app.pipeline.before
    def admins_only(session: Session, route: str, body: Any) -> Any:
        seen.append(route)
        if route == "admin.reset":
            raise PitayaError("PIT-403", "admins only")
        return body

    async with TestClient(app) as client:
        for spelling in ("admin.reset", "game.admin.reset"):
            with pytest.raises(RequestError) as refused:
                await client.request(spelling)
            assert refused.value.code == "PIT-403"
        assert await client.request("game.admin.hello") == {"hello": True}
    assert seen == ["admin.reset", "admin.reset", "admin.hello"]


async def test_series_and_spans_name_a_route_as_the_client_spelled_it() -> None:
    """Hooks see one name per route, but Pitaya's metrics name a route as the client sent
    it (Go's ``RouteKey`` is the message's route): a cluster's clients spell a frontend's own
    routes in full (``connector.entry.login``), and their series, named so before and by a
    Go frontend beside it, lost the server type."""
    recorder = Recorder()
    seen: list[str] = []
    app = App(server_type="game")
    app.register(Admin)
    app.add_metrics_reporter(recorder)

    @app.pipeline.before
    def note(session: Session, route: str, body: Any) -> Any:
        seen.append(route)
        return body

    async with TestClient(app) as client:
        for spelling in ("game.admin.hello", "admin.hello"):
            mark = len(recorder.calls)
            assert await client.request(spelling) == {"hello": True}
            await recorder.wait_for(lambda c: c.metric == RESPONSE_TIME, since=mark)
    assert seen == ["admin.hello", "admin.hello"]
    for metric in (RESPONSE_TIME, PROCESS_DELAY):
        routes = [c.tags["route"] for c in recorder.find(lambda c, m=metric: c.metric == m)]
        assert routes == ["game.admin.hello", "admin.hello"], metric
