"""actors/metrics/handler.py: the handler side of the response-time metric."""

from __future__ import annotations

import time

from actors.errors import BadRequest, RouteNotFound
from actors.metrics.handler import HANDLER, report_handler_time
from actors.metrics.names import RESPONSE_TIME
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
