"""Tracing with OpenTelemetry: a server span per handler call, a client span per RPC.

Off by default. Turn it on with ``app.enable_tracing()`` (optionally passing your own
``TracerProvider``) or the ``tracing_enabled`` option, after ``pip install
'pitaya-actors[tracing]'``. OpenTelemetry is imported only then: an app that does not trace
neither needs it installed nor pays for importing it, and every call site tests one bool
(:attr:`Tracing.enabled`) before doing any tracing work.

The spans, as Pitaya makes them (names and attribute keys are Pitaya's where it has them):

* a SERVER span named by the route for every client message a session actor dispatches (a
  handler here, or a request forwarded to another server); client messages carry no trace
  context (the pomelo protocol has none), so each one starts a new trace;
* a CLIENT span ``"NATS RPC Call"`` for every RPC a server sends (forwarded requests, user
  RPCs, a backend session's bind/push to its frontend); the trace context goes in the
  request's ``metadata`` under ``otel-span`` (Go Pitaya's key), a carrier filled by the
  global propagator (W3C ``traceparent`` by default), so Go and Python servers continue each
  other's traces;
* a SERVER span named by the route on the server that receives an RPC, child of the caller's
  client span, so a forwarded request is one trace across frontend and backend.

While a handler runs, its span is OpenTelemetry's current span: spans the handler starts and
user RPCs it makes (``await self.app.rpc(...)``) become its children. The framework's own
spans never rely on the current context otherwise; parents are passed explicitly, because an
actor's messages do not run in the context of whoever sent them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

INSTRUMENTATION_NAME = "pitaya-actors"
"""The tracer's instrumentation scope name."""
RPC_SPAN_NAME = "NATS RPC Call"
"""Name of the client span of an RPC (Pitaya's)."""

# Attribute keys: Pitaya's tag names where it has one.
ROUTE = "route"
LOCAL_ID = "local.id"
LOCAL_TYPE = "local.serverType"
PEER_ID = "peer.id"
PEER_TYPE = "peer.serverType"
SPAN_CARRIER = "otel-span"
"""Request metadata key of the trace carrier (Go Pitaya's)."""
PEER_SERVICE = "peer.service"
"""Request metadata key of the caller's server type (Go Pitaya's)."""
SESSION_ID = "session.id"
USER_ID = "user.id"
MSG_TYPE = "msg.type"
RPC_TYPE = "rpc.type"
ERROR_CODE = "error.code"


class TracedSession(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def uid(self) -> str | None: ...


class RpcRequest(Protocol):
    """What tracing reads of a cluster request (``actors.cluster.codec.RpcRequest``), and
    writes: the carrier into ``metadata``."""

    @property
    def kind(self) -> str: ...
    @property
    def route(self) -> str: ...
    @property
    def notify(self) -> bool: ...
    @property
    def metadata(self) -> dict[str, Any]: ...
    @property
    def session(self) -> TracedSession | None: ...


class TracingUnavailable(RuntimeError):
    """Tracing was asked for but OpenTelemetry is not installed."""


class Tracing:
    """One server's tracer: starts the framework's spans. See the module docstring.

    ``enabled`` is the hot-path switch: call sites check it before calling anything here.
    """

    __slots__ = ("_tracer", "enabled", "server_id", "server_type")

    def __init__(self, server_id: str, server_type: str) -> None:
        self.server_id = server_id
        self.server_type = server_type
        self.enabled = False
        self._tracer: Any = None

    def enable(self, tracer_provider: TracerProvider | None = None) -> None:
        """Start tracing with ``tracer_provider`` (default: OpenTelemetry's global one).

        With the global provider and none configured, spans are non-recording: cheap, and
        they start recording once the application sets a provider.
        Raises :class:`TracingUnavailable` when OpenTelemetry is not installed.
        """
        try:
            from opentelemetry import trace
        except ImportError as exc:
            raise TracingUnavailable(
                "tracing needs OpenTelemetry: pip install 'pitaya-actors[tracing]'"
            ) from exc
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self._tracer = provider.get_tracer(INSTRUMENTATION_NAME)
        self.enabled = True

    def disable(self) -> None:
        """Stop starting spans (spans already started still end normally)."""
        self.enabled = False

    def start_handler_span(
        self, route: str, session_id: int, uid: str | None, notify: bool
    ) -> Span:
        """The SERVER span of a client message; a new trace (clients send no context)."""
        from opentelemetry.context import Context
        from opentelemetry.trace import SpanKind

        attributes: dict[str, str | int] = {
            ROUTE: route,
            LOCAL_ID: self.server_id,
            LOCAL_TYPE: self.server_type,
            SESSION_ID: session_id,
            MSG_TYPE: "notify" if notify else "request",
        }
        if uid is not None:
            attributes[USER_ID] = uid
        span: Span = self._tracer.start_span(
            route, Context(), SpanKind.SERVER, attributes=attributes
        )
        return span

    def start_rpc_server_span(self, request: RpcRequest) -> Span:
        """The SERVER span of an RPC received over NATS, child of the caller's client span.

        Without trace context in ``request.metadata`` (a caller that does not trace) it
        starts a new trace.
        """
        from opentelemetry import propagate
        from opentelemetry.context import Context
        from opentelemetry.trace import SpanKind

        metadata = request.metadata
        carrier = metadata.get(SPAN_CARRIER)
        parent = propagate.extract(carrier if isinstance(carrier, dict) else {}, Context())
        attributes: dict[str, str | int] = {
            ROUTE: request.route,
            LOCAL_ID: self.server_id,
            LOCAL_TYPE: self.server_type,
            RPC_TYPE: request.kind,
            MSG_TYPE: "notify" if request.notify else "request",
        }
        for key, attribute in ((PEER_ID, PEER_ID), (PEER_SERVICE, PEER_TYPE)):
            value = metadata.get(key)
            if isinstance(value, str):
                attributes[attribute] = value
        session = request.session
        if session is not None:
            attributes[SESSION_ID] = session.id
            if session.uid is not None:
                attributes[USER_ID] = session.uid
        span: Span = self._tracer.start_span(
            request.route, parent, SpanKind.SERVER, attributes=attributes
        )
        return span

    def start_rpc_client_span(
        self, request: RpcRequest, server_id: str, server_type: str, parent: Span | None
    ) -> Span:
        """The CLIENT span of an RPC to ``server_id``; injects its context into the request.

        ``parent``: the span this call is part of (a session's request span); None takes
        OpenTelemetry's current span, which is the handler's while a handler makes a user RPC.
        Call before the request is encoded: it writes ``request.metadata``.
        """
        from opentelemetry import propagate, trace
        from opentelemetry.context import Context
        from opentelemetry.trace import SpanKind

        context = trace.set_span_in_context(parent, Context()) if parent is not None else None
        span: Span = self._tracer.start_span(
            RPC_SPAN_NAME,
            context,
            SpanKind.CLIENT,
            attributes={
                ROUTE: request.route,
                LOCAL_ID: self.server_id,
                LOCAL_TYPE: self.server_type,
                PEER_ID: server_id,
                PEER_TYPE: server_type,
                RPC_TYPE: request.kind,
            },
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, trace.set_span_in_context(span, Context()))
        _level1_flags(carrier)
        # The codec adds peer.id and peer.service (the callee names its caller with them).
        request.metadata[SPAN_CARRIER] = carrier
        return span


def _level1_flags(carrier: dict[str, str]) -> None:
    """Keep only the ``sampled`` bit of a version-00 ``traceparent``'s flags.

    OpenTelemetry Python sets W3C Level 2's ``random`` bit too (flags ``03``); Go Pitaya's
    OpenTelemetry (otel-go 1.28) drops a version-00 traceparent with any flag but
    ``sampled``, so a Go server would start a new trace instead of continuing ours
    (tests/interop/test_tracing.py).
    """
    value = carrier.get("traceparent", "")
    if len(value) == 55 and value.startswith("00-"):
        carrier["traceparent"] = f"{value[:53]}{int(value[53:], 16) & 0x01:02x}"


def end_span(span: Span, error: BaseException | None = None) -> None:
    """End ``span``; a failure marks it as an error with the Pitaya code the caller sees."""
    if error is not None:
        from opentelemetry.trace import Status, StatusCode

        from actors.errors import as_pitaya_error

        pitaya = as_pitaya_error(error)
        span.set_attribute(ERROR_CODE, pitaya.code)
        span.set_status(Status(StatusCode.ERROR, f"{pitaya.code}: {pitaya.msg}"))
    span.end()


def run_in_span(span: Span, function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` with ``span`` as OpenTelemetry's current span.

    A coroutine result (an async handler, or the pipeline) is wrapped so the span is current
    while the coroutine runs too: the kernel runs it later, in a task of its own.
    """
    from opentelemetry import context, trace

    token = context.attach(trace.set_span_in_context(span))
    try:
        result = function(*args)
    finally:
        context.detach(token)
    if type(result) is CoroutineType:
        return _in_span(span, result)
    return result


async def _in_span(span: Span, coroutine: Coroutine[Any, Any, Any]) -> Any:
    from opentelemetry import context, trace

    token = context.attach(trace.set_span_in_context(span))
    try:
        return await coroutine
    finally:
        context.detach(token)
