"""Tracing: one trace across a forwarded request, against real nats-server and etcd.

Both servers run in this process (a connector frontend with a TCP listener and a room
backend) so one in-memory span exporter sees the spans of both; they still talk only
through NATS and discover each other through etcd.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from actors.app import App
from actors.handler import Handler, handler
from actors.session import Session
from actors.testing import TestServer, serve
from actors.tracing import RPC_SPAN_NAME, TracingUnavailable
from tests.cluster.probe import Probe, ProbeRemote
from tests.services import EtcdServer, NatsServer
from transport.client import RequestError


class Entry(Handler):
    """``connector.entry.*`` on the frontend: a user RPC, and a span of the user's own."""

    service = "entry"

    def __init__(self, provider: TracerProvider) -> None:
        self.tracer = provider.get_tracer("user-code")

    @handler
    async def ask(self, session: Session) -> dict[str, Any]:
        return {"room": await self.app.rpc("room.proberemote.ping", {})}

    @handler
    def work(self, session: Session) -> dict[str, bool]:
        with self.tracer.start_as_current_span("user-work"):
            return {"done": True}


class Seat(Handler):
    """``room.seat.take`` on the backend: binds the session on its frontend, then sends its
    data there (two control RPCs from the room to the connector)."""

    service = "seat"

    @handler
    async def take(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        await session.bind(body["uid"])
        session.set("seat", 3)
        await session.push_to_front()  # type: ignore[attr-defined]
        return {"uid": session.uid}


BANNED = "mallory"


def refuse_banned(session: Session) -> None:
    """The connector's bind callback: a failing callback fails the bind."""
    if session.uid == BANNED:
        raise PermissionError(f"{BANNED} is banned")


class Started(SpanProcessor):
    """Every span started, ended or not (the exporter sees only the ended ones)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.names.append(span.name)


STARTED = Started()


def tracer_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    STARTED.names.clear()
    provider.add_span_processor(STARTED)
    return provider, exporter


@asynccontextmanager
async def cluster(
    nats: NatsServer, etcd: EtcdServer, provider: TracerProvider, *, tracing: bool = True
) -> AsyncIterator[TestServer]:
    """A started room backend and connector frontend; yields the frontend's test server."""
    common: dict[str, Any] = {
        "mode": "cluster",
        "nats_url": nats.url,
        "etcd_endpoints": etcd.endpoint,
        "etcd_lease_ttl": 5,
    }
    room = App(server_type="room", server_id="room-1", **common)
    room.register(Probe)
    room.register(Seat)
    room.register_remote(ProbeRemote)
    connector = App(server_type="connector", server_id="connector-1", **common)
    connector.register(Entry, provider)
    connector.on_session_bind(refuse_banned)
    if tracing:
        room.enable_tracing(provider)
        connector.enable_tracing(provider)
    async with room, serve(connector) as server:
        yield server


def by_name(spans: tuple[ReadableSpan, ...], name: str, server_id: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name and (s.attributes or {})["local.id"] == server_id]
    assert len(found) == 1, [(s.name, s.attributes) for s in spans]
    return found[0]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_forwarded_request_is_one_trace_across_servers(
    nats_server: NatsServer, etcd_server: EtcdServer
) -> None:
    provider, exporter = tracer_provider()
    async with cluster(nats_server, etcd_server, provider) as server:
        client = await server.connect()
        assert await client.request("room.probe.whoami") == {"server_id": "room-1"}
        spans = exporter.get_finished_spans()
    assert len(spans) == 3, [s.name for s in spans]
    assert len(STARTED.names) == 3, STARTED.names  # none started and left open
    front = by_name(spans, "room.probe.whoami", "connector-1")
    call = by_name(spans, RPC_SPAN_NAME, "connector-1")
    back = by_name(spans, "room.probe.whoami", "room-1")
    assert front.context is not None and call.context is not None and back.context is not None
    # One trace: the frontend started it (clients send no context), the backend continued it.
    assert {front.context.trace_id, call.context.trace_id, back.context.trace_id} == {
        front.context.trace_id
    }
    assert front.parent is None
    assert parent_of(call) == front.context.span_id
    assert parent_of(back) == call.context.span_id
    assert back.parent is not None and back.parent.is_remote
    assert (front.kind, call.kind, back.kind) == (SpanKind.SERVER, SpanKind.CLIENT, SpanKind.SERVER)
    assert front.attributes is not None and call.attributes is not None
    assert back.attributes is not None
    assert front.attributes["route"] == "room.probe.whoami"
    assert front.attributes["local.serverType"] == "connector"
    assert front.attributes["msg.type"] == "request"
    assert isinstance(front.attributes["session.id"], int)
    assert call.attributes["peer.id"] == "room-1"
    assert call.attributes["peer.serverType"] == "room"
    assert call.attributes["route"] == "room.probe.whoami"
    assert back.attributes["local.serverType"] == "room"
    assert back.attributes["peer.id"] == "connector-1"
    assert back.attributes["session.id"] == front.attributes["session.id"]
    assert all(s.status.status_code is StatusCode.UNSET for s in spans)


async def test_each_client_request_starts_its_own_trace_and_errors_carry_the_code(
    nats_server: NatsServer, etcd_server: EtcdServer
) -> None:
    provider, exporter = tracer_provider()
    async with cluster(nats_server, etcd_server, provider) as server:
        client = await server.connect()
        await client.request("room.probe.whoami")
        first = {s.context.trace_id for s in exporter.get_finished_spans() if s.context}
        exporter.clear()
        with pytest.raises(RequestError):
            await client.request("room.probe.fail")
        spans = exporter.get_finished_spans()
    assert len(spans) == 3
    assert len({s.context.trace_id for s in spans if s.context} | first) == 2
    for span in spans:
        assert span.status.status_code is StatusCode.ERROR, span.name
        assert span.attributes is not None and span.attributes["error.code"] == "PIT-403"


async def test_user_rpc_from_a_handler_is_a_child_of_the_handler_span(
    nats_server: NatsServer, etcd_server: EtcdServer
) -> None:
    provider, exporter = tracer_provider()
    async with cluster(nats_server, etcd_server, provider) as server:
        client = await server.connect()
        assert await client.request("connector.entry.ask") == {"room": {"pong": True}}
        assert await client.request("connector.entry.work") == {"done": True}
        spans = exporter.get_finished_spans()
    ask = by_name(spans, "connector.entry.ask", "connector-1")
    call = by_name(spans, RPC_SPAN_NAME, "connector-1")
    remote = by_name(spans, "room.proberemote.ping", "room-1")
    assert ask.context is not None and call.context is not None
    assert parent_of(call) == ask.context.span_id
    assert parent_of(remote) == call.context.span_id
    assert remote.attributes is not None and remote.attributes["rpc.type"] == "user"
    # A span the handler starts itself is a child of the handler's span.
    work = by_name(spans, "connector.entry.work", "connector-1")
    user = next(s for s in spans if s.name == "user-work")
    assert work.context is not None and parent_of(user) == work.context.span_id


async def test_a_backend_session_control_continues_the_trace_on_the_frontend(
    nats_server: NatsServer, etcd_server: EtcdServer
) -> None:
    """Go Pitaya starts a SERVER span for every RPC a server receives, the frontend's
    sys.bindsession and sys.pushsession included: the bind a backend handler makes is part
    of the client request's trace."""
    provider, exporter = tracer_provider()
    async with cluster(nats_server, etcd_server, provider) as server:
        client = await server.connect()
        assert await client.request("room.seat.take", {"uid": "ann"}) == {"uid": "ann"}
        spans = exporter.get_finished_spans()
    take = by_name(spans, "room.seat.take", "room-1")
    controls = [by_name(spans, route, "connector-1") for route in CONTROLS]
    calls = {parent_of(c) for c in controls}
    room_calls = [
        s for s in spans if s.name == RPC_SPAN_NAME and (s.attributes or {})["local.id"] == "room-1"
    ]
    assert take.context is not None
    assert len(room_calls) == 2, [s.attributes for s in room_calls]
    assert calls == {c.context.span_id for c in room_calls if c.context is not None}
    assert all(parent_of(c) == take.context.span_id for c in room_calls)
    assert {s.context.trace_id for s in spans if s.context is not None} == {take.context.trace_id}
    for span in controls:
        assert span.kind is SpanKind.SERVER
        assert span.attributes is not None and span.attributes["peer.id"] == "room-1"
        assert span.status.status_code is StatusCode.UNSET
    assert len(STARTED.names) == len(spans), STARTED.names  # none left open


CONTROLS = ("sys.bindsession", "sys.pushsession")


async def test_a_refused_control_span_carries_the_error(
    nats_server: NatsServer, etcd_server: EtcdServer
) -> None:
    provider, exporter = tracer_provider()
    async with cluster(nats_server, etcd_server, provider) as server:
        client = await server.connect()
        with pytest.raises(RequestError):
            await client.request("room.seat.take", {"uid": BANNED})
        spans = exporter.get_finished_spans()
    bind = by_name(spans, "sys.bindsession", "connector-1")
    assert bind.status.status_code is StatusCode.ERROR
    assert bind.attributes is not None and bind.attributes["error.code"]


async def test_no_spans_when_tracing_is_off(
    nats_server: NatsServer, etcd_server: EtcdServer
) -> None:
    provider, exporter = tracer_provider()
    async with cluster(nats_server, etcd_server, provider, tracing=False) as server:
        client = await server.connect()
        await client.request("room.probe.whoami")
        await client.request("connector.entry.ask")
        assert exporter.get_finished_spans() == ()
        # The user's own span is a root: the framework set no current span.
        await client.request("connector.entry.work")
        (user,) = exporter.get_finished_spans()
    assert user.name == "user-work" and user.parent is None


class Solo(Handler):
    service = "solo"

    @handler
    def current(self, session: Session) -> dict[str, bool]:
        return {"recording": trace.get_current_span().is_recording()}


async def test_tracing_enabled_option_uses_the_global_provider() -> None:
    app = App(server_type="solo", tracing_enabled=True)
    app.register(Solo)
    assert not app.tracing.enabled
    async with serve(app) as server:
        assert app.tracing.enabled
        client = await server.connect()
        # No global provider configured: spans are non-recording; requests work as usual.
        assert await client.request("solo.current") == {"recording": False}


def test_tracing_without_opentelemetry_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    app = App(server_type="solo")
    with pytest.raises(TracingUnavailable, match=r"pitaya-actors\[tracing\]"):
        app.enable_tracing()
    assert not app.tracing.enabled
