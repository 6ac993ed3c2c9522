"""The Reporter seam: custom reporters, several at once, failing ones, and none at all."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest

from actors.app import App
from actors.metrics import Metrics
from actors.metrics.names import CONNECTED_CLIENTS, PROCESS_DELAY, RESPONSE_TIME, UNKNOWN_ROUTE
from actors.testing import serve
from samples.echo.server import Echo
from tests.actors.metrics.recorder import Recorder, is_
from transport.client import RequestError


def make_app(*reporters: Any, **options: Any) -> App:
    app = App(server_type="echo", metrics_period=0.05, **options)
    app.register(Echo)
    for reporter in reporters:
        app.add_metrics_reporter(reporter)
    return app


class Broken:
    """A reporter that fails on every call."""

    def report_count(self, metric: str, tags: Mapping[str, str], value: float = 1.0) -> None:
        raise RuntimeError("count broke")

    def report_gauge(self, metric: str, tags: Mapping[str, str], value: float) -> None:
        raise RuntimeError("gauge broke")

    def report_summary(self, metric: str, tags: Mapping[str, str], value: float) -> None:
        raise RuntimeError("summary broke")


async def test_custom_reporter_receives_handler_metrics() -> None:
    recorder = Recorder()
    async with serve(make_app(recorder)) as server:
        client = await server.connect()
        assert await client.request("echo.echo", {"a": 1}) == {"a": 1}
        ok = recorder.find(is_("summary", RESPONSE_TIME, route="echo.echo"))
        assert [c.tags for c in ok] == [
            {"route": "echo.echo", "status": "ok", "type": "handler", "code": ""}
        ]
        assert ok[0].value > 0
        delay = recorder.find(is_("summary", PROCESS_DELAY, route="echo.echo"))
        assert [c.tags for c in delay] == [{"route": "echo.echo", "type": "local"}]
        assert 0 <= delay[0].value <= ok[0].value

        with pytest.raises(RequestError):
            await client.request("nope.nothing", {})
        with pytest.raises(RequestError):
            await client.request("echo.hello", {"nom": "x"})
        failed = recorder.find(is_("summary", RESPONSE_TIME, status="failed"))
        assert [(c.tags["route"], c.tags["code"]) for c in failed] == [
            (UNKNOWN_ROUTE, "PIT-404"),
            ("echo.hello", "PIT-400"),
        ]

        # A notify is timed too, once its handler ran.
        pushes = client.pushes()
        await client.notify("echo.count", {})
        await anext(pushes)
        await recorder.wait_for(is_("summary", RESPONSE_TIME, route="echo.count", status="ok"))

        gauge = await recorder.wait_for(lambda c: c.metric == CONNECTED_CLIENTS and c.value == 1.0)
        assert (gauge.method, gauge.tags) == ("gauge", {})


async def test_two_reporters_receive_the_same_reports() -> None:
    first, second = Recorder(), Recorder()
    async with serve(make_app(first, second)) as server:
        client = await server.connect()
        await client.request("echo.echo", 1)
        with pytest.raises(RequestError):
            await client.request("nope.nothing")
    assert first.find(is_("summary", RESPONSE_TIME))
    assert first.calls == second.calls


async def test_a_failing_reporter_breaks_neither_requests_nor_other_reporters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    caplog.set_level(logging.WARNING, logger="actors.metrics.reporter")
    async with serve(make_app(Broken(), recorder)) as server:
        client = await server.connect()
        assert await client.request("echo.echo", 1) == 1
        assert await client.request("echo.echo", 2) == 2
    assert len(recorder.find(is_("summary", RESPONSE_TIME, route="echo.echo"))) == 2
    warnings = [r for r in caplog.records if RESPONSE_TIME in r.getMessage()]
    assert len(warnings) == 1, "a failing reporter is logged once per metric, not per call"


async def test_without_reporters_metrics_are_off_and_nothing_breaks() -> None:
    app = make_app()
    assert not app.metrics.enabled
    async with serve(app) as server:
        client = await server.connect()
        assert await client.request("echo.echo", 1) == 1
        with pytest.raises(RequestError):
            await client.request("nope.nothing")
        assert app.system.lookup("metrics-sampler") is None
    assert app.metrics.reporters == ()


async def test_reporters_are_added_before_start() -> None:
    app = make_app()
    with pytest.raises(TypeError):
        app.add_metrics_reporter(object())  # type: ignore[arg-type]
    async with serve(app):
        with pytest.raises(RuntimeError):
            app.add_metrics_reporter(Recorder())


def test_metrics_fans_out_every_kind_of_report() -> None:
    metrics = Metrics()
    first, second = Recorder(), Recorder()
    metrics.add(first)
    metrics.add(second)
    assert metrics.enabled
    metrics.report_count("c", {"k": "v"})
    metrics.report_gauge("g", {}, 2.5)
    metrics.report_summary("s", {"k": "v"}, 7.0)
    assert [(c.method, c.metric, c.tags, c.value) for c in first.calls] == [
        ("count", "c", {"k": "v"}, 1.0),
        ("gauge", "g", {}, 2.5),
        ("summary", "s", {"k": "v"}, 7.0),
    ]
    assert first.calls == second.calls
