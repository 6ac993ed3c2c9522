"""The caller's side of an RPC: Pitaya's response-time metric with type ``rpc`` and the
``NATS RPC Call`` client span.

Pitaya's NATS RPC client times every call it sends (forwarded client requests, user RPCs,
its own sys RPCs) and reports ``response_time_ns`` with ``type="rpc"``; the server that
handled a forwarded request reports nothing for it, the frontend's session reports the whole
client request with ``type="handler"``. We do the same, from ``Outbound.call``
(``actors.cluster.outbound``), only when a metrics reporter or tracing is on (the call site
checks both flags first).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from actors.errors import RouteNotFound
from actors.metrics.names import RESPONSE_TIME, UNKNOWN_ROUTE
from actors.tracing import end_span

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from actors.kernel import Reply
    from actors.metrics.reporter import Metrics
    from actors.tracing import RpcRequest, Tracing

RPC = "rpc"
"""The ``type`` label of RPC timings (Pitaya's)."""


def observe_rpc(
    metrics: Metrics,
    tracing: Tracing,
    server_id: str,
    server_type: str,
    request: RpcRequest,
    reply: Reply,
    parent: Span | None = None,
) -> Reply:
    """``reply`` wrapped to report the call's response time and end its client span.

    Starts the client span now (and writes its context into ``request.metadata``, so call
    this before encoding the request); ``parent`` is the span the call belongs to, if any.
    """
    span = (
        tracing.start_rpc_client_span(request, server_id, server_type, parent)
        if tracing.enabled
        else None
    )
    started_ns = time.monotonic_ns() if metrics.enabled else 0
    route = request.route

    def observed(result: Any, error: BaseException | None) -> None:
        if span is not None:
            end_span(span, error)
        if started_ns:
            report_rpc_time(metrics, route, started_ns, error)
        reply(result, error)

    return observed


def report_rpc_time(
    metrics: Metrics, route: str, started_ns: int, error: BaseException | None
) -> None:
    """Report ``response_time_ns{type="rpc"}`` for a call sent at ``started_ns``.

    A route the remote server does not serve is labelled ``unknown``: forwarded routes come
    from clients, and made-up ones must not create unbounded time series.
    """
    from actors.errors import as_pitaya_error

    code = "" if error is None else as_pitaya_error(error).code
    if code == RouteNotFound.default_code:
        route = UNKNOWN_ROUTE
    metrics.report_summary(
        RESPONSE_TIME,
        {
            "route": route,
            "status": "ok" if error is None else "failed",
            "type": RPC,
            "code": code,
        },
        time.monotonic_ns() - started_ns,
    )
