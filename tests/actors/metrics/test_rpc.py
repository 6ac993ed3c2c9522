"""The caller's side of an RPC (``actors.metrics.rpc``): ``response_time_ns`` with
``type="rpc"`` and the ``NATS RPC Call`` client span, wrapped around a reply.

A request here is a stand-in with what ``observe_rpc`` reads (route, kind, metadata): the
cluster's own request type is being replaced, and this module only reads those three.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from actors.errors import AskTimeout, PitayaError, RouteNotFound, RpcTimeout
from actors.metrics.names import RESPONSE_TIME
from actors.metrics.reporter import Metrics
from actors.metrics.rpc import RPC, observe_rpc, report_rpc_time
from actors.tracing import Tracing
from tests.actors.metrics.recorder import Recorder


def request(route: str = "room.room.join") -> Any:
    return SimpleNamespace(route=route, kind="user", metadata={})


class Replies:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, BaseException | None]] = []

    def __call__(self, result: Any, error: BaseException | None) -> None:
        self.calls.append((result, error))


def metrics_with(recorder: Recorder | None) -> Metrics:
    metrics = Metrics()
    if recorder is not None:
        metrics.add(recorder)
    return metrics


def traced() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing("fe-1", "connector")
    tracing.enable(provider)
    return tracing, exporter


# -- report_rpc_time -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "route", "status", "code"),
    [
        (None, "room.room.join", "ok", ""),
        (RpcTimeout(), "room.room.join", "failed", "PIT-408"),
        (PitayaError("PIT-403", "no"), "room.room.join", "failed", "PIT-403"),
        (ValueError("x"), "room.room.join", "failed", "PIT-500"),
        (AskTimeout("slow"), "room.room.join", "failed", "PIT-504"),
        # A route the callee does not serve is not a label value (clients make routes up).
        (RouteNotFound("room.room.made_up"), "unknown", "failed", "PIT-404"),
        (PitayaError("PIT-404", "gone"), "unknown", "failed", "PIT-404"),
    ],
)
def test_report_rpc_time_labels_the_outcome(
    error: BaseException | None, route: str, status: str, code: str
) -> None:
    recorder = Recorder()
    started = time.monotonic_ns() - 1_000  # a call sent 1 µs ago
    report_rpc_time(metrics_with(recorder), "room.room.join", started, error)
    elapsed = time.monotonic_ns() - started
    (call,) = recorder.calls
    assert 1_000 <= call.value <= elapsed
    assert (call.method, call.metric) == ("summary", RESPONSE_TIME)
    assert call.tags == {"route": route, "status": status, "type": "rpc", "code": code}
    assert RPC == "rpc"


# -- observe_rpc -------------------------------------------------------------------------------


def test_with_neither_metrics_nor_tracing_the_reply_is_passed_through() -> None:
    replies = Replies()
    tracing = Tracing("fe-1", "connector")
    req = request()
    observed = observe_rpc(Metrics(), tracing, "room-1", "room", req, replies)
    observed({"ok": 1}, None)
    assert replies.calls == [({"ok": 1}, None)]
    assert req.metadata == {}  # no trace context written


def test_the_response_time_is_reported_once_the_reply_comes() -> None:
    recorder = Recorder()
    replies = Replies()
    observed = observe_rpc(
        metrics_with(recorder), Tracing("fe-1", "connector"), "room-1", "room", request(), replies
    )
    assert recorder.calls == []
    error = RpcTimeout()
    observed(None, error)
    assert replies.calls == [(None, error)]
    (call,) = recorder.calls
    assert call.tags == {
        "route": "room.room.join",
        "status": "failed",
        "type": "rpc",
        "code": "PIT-408",
    }


def test_the_client_span_is_started_at_once_and_ended_with_the_reply() -> None:
    tracing, exporter = traced()
    req = request()
    replies = Replies()
    observed = observe_rpc(Metrics(), tracing, "room-1", "room", req, replies)
    assert "otel-span" in req.metadata  # written before the request is encoded
    assert exporter.get_finished_spans() == ()
    observed({"ok": 1}, None)
    (span,) = exporter.get_finished_spans()
    assert span.name == "NATS RPC Call" and span.kind == SpanKind.CLIENT
    assert span.attributes is not None
    assert span.attributes["peer.id"] == "room-1" and span.attributes["route"] == "room.room.join"
    assert span.attributes["peer.serverType"] == "room"
    assert span.status.status_code == StatusCode.UNSET
    assert replies.calls == [({"ok": 1}, None)]


def test_a_failed_call_marks_its_span_with_the_pitaya_code() -> None:
    tracing, exporter = traced()
    observed = observe_rpc(Metrics(), tracing, "room-1", "room", request(), Replies())
    observed(None, RpcTimeout())
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.code"] == "PIT-408"


def test_the_span_has_its_parent() -> None:
    tracing, exporter = traced()
    parent = tracing.start_handler_span("room.join", 1, None, False)
    observed = observe_rpc(Metrics(), tracing, "room-1", "room", request(), Replies(), parent)
    observed(None, None)
    parent.end()
    client, server = exporter.get_finished_spans()
    assert client.parent is not None
    assert client.parent.span_id == server.context.span_id
