"""actors/metrics/handler.py: the handler side of the response-time metric."""

from __future__ import annotations

import time

import pytest

import actors.metrics.handler as handler_module
from actors.cluster.rpc import ClusterUnavailable
from actors.errors import BadRequest, PitayaError, RouteNotFound, RpcTimeout
from actors.metrics.handler import HANDLER, ForwardedRoutes, report_handler_time
from actors.metrics.names import RESPONSE_TIME, UNKNOWN_ROUTE
from actors.metrics.reporter import Metrics
from tests.actors.metrics.recorder import Recorder


def _metrics() -> tuple[Metrics, Recorder]:
    metrics, recorder = Metrics(), Recorder()
    metrics.add(recorder)
    return metrics, recorder


def test_a_success_is_reported_ok_with_no_code_and_the_time_since_arrival() -> None:
    metrics, recorder = _metrics()
    received = time.monotonic_ns() - 2_000_000  # 2 ms ago
    report_handler_time(metrics, "room.join", received, None)
    [call] = recorder.calls
    assert (call.method, call.metric) == ("summary", RESPONSE_TIME)
    assert call.tags == {"route": "room.join", "status": "ok", "type": HANDLER, "code": ""}
    assert 2_000_000 <= call.value < 2_000_000_000


def test_a_failure_carries_its_pitaya_code() -> None:
    metrics, recorder = _metrics()
    report_handler_time(metrics, "room.join", time.monotonic_ns(), BadRequest("no"))
    report_handler_time(metrics, "unknown", time.monotonic_ns(), RouteNotFound("x.y"))
    report_handler_time(metrics, "room.boom", time.monotonic_ns(), ValueError("plain"))
    assert [(c.tags["status"], c.tags["code"], c.tags["route"]) for c in recorder.calls] == [
        ("failed", "PIT-400", "room.join"),
        ("failed", "PIT-404", "unknown"),
        ("failed", "PIT-500", "room.boom"),
    ]


def test_a_forwarded_route_is_its_own_label_once_a_server_took_it() -> None:
    """A client names any route: one that no server took (PIT-404 from the server, or a
    call that failed here: no server, a timeout, the cluster down, none of which says the
    route exists) is ``unknown``, so made-up routes open no time series of their own."""
    routes = ForwardedRoutes()
    assert routes.label("room.made.up", RpcTimeout()) == UNKNOWN_ROUTE  # a failed call
    assert routes.label("room.made.up", ClusterUnavailable("down")) == UNKNOWN_ROUTE
    assert routes.label("room.made.up", PitayaError("PIT-404", "route not found")) == (
        UNKNOWN_ROUTE
    )
    assert routes.label("room.room.join", None) == "room.room.join"  # answered
    assert routes.label("room.room.join", RpcTimeout()) == "room.room.join"  # known since
    # An error the server answered (its handler's): the server took the route.
    assert routes.label("room.room.full", PitayaError("PIT-403", "full")) == "room.room.full"


def test_forwarded_route_labels_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handler_module, "FORWARDED_ROUTES_KEPT", 2)
    routes = ForwardedRoutes()
    assert [routes.label(f"room.r.m{i}", None) for i in range(3)] == [
        "room.r.m0",
        "room.r.m1",
        UNKNOWN_ROUTE,
    ]
    assert routes.label("room.r.m0", None) == "room.r.m0"
