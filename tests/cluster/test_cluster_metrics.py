"""Cluster metrics against real nats-server and etcd: servers by type, RPC response times
(Pitaya's ``type="rpc"``, measured by the caller) and the RPC server's dropped messages.

The servers are Apps in this process, each with its own recording reporter; they talk only
through NATS and find each other through etcd, as separate processes would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import nats
import pytest

from actors.app import App
from actors.handler import Handler, handler
from actors.metrics import PrometheusReporter
from actors.metrics.names import COUNT_SERVERS, DROPPED_MESSAGES, PROCESS_DELAY, RESPONSE_TIME
from actors.session import Session
from actors.testing import serve
from tests.actors.metrics.recorder import Call, Recorder, is_, sample, scrape
from tests.cluster.probe import Probe, ProbeRemote
from tests.services import EtcdServer, NatsServer
from transport.client import RequestError


class Entry(Handler):
    service = "entry"

    @handler
    async def ask(self, session: Session) -> dict[str, Any]:
        return {"room": await self.app.rpc("room.proberemote.ping", {})}


def options(nats_server: NatsServer, etcd_server: EtcdServer) -> dict[str, Any]:
    return {
        "mode": "cluster",
        "nats_url": nats_server.url,
        "etcd_endpoints": etcd_server.endpoint,
        "etcd_lease_ttl": 5,
        "metrics_period": 0.05,
        "rpc_timeout": 0.5,
    }


def room(server_id: str, nats_server: NatsServer, etcd_server: EtcdServer) -> App:
    app = App(server_type="room", server_id=server_id, **options(nats_server, etcd_server))
    app.register(Probe)
    app.register_remote(ProbeRemote)
    return app


def gauge(metric: str, value: float, **tags: str) -> Any:
    def predicate(call: Call) -> bool:
        return is_("gauge", metric, **tags)(call) and call.value == value

    return predicate


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


async def test_servers_by_type_follow_discovery(
    nats_server: NatsServer, etcd_server: EtcdServer, stack: AsyncExitStack
) -> None:
    recorder = Recorder()
    connector = App(server_type="connector", **options(nats_server, etcd_server))
    connector.register(Entry)
    connector.add_metrics_reporter(recorder)
    await stack.enter_async_context(room("room-1", nats_server, etcd_server))
    await stack.enter_async_context(serve(connector))
    await recorder.wait_for(gauge(COUNT_SERVERS, 1.0, type="room"))
    await recorder.wait_for(gauge(COUNT_SERVERS, 1.0, type="connector"))

    async with room("room-2", nats_server, etcd_server):
        await recorder.wait_for(gauge(COUNT_SERVERS, 2.0, type="room"), since=len(recorder.calls))
    # Stopping revokes room-2's lease: discovery sees it leave at once.
    await recorder.wait_for(gauge(COUNT_SERVERS, 1.0, type="room"), since=len(recorder.calls))


async def test_rpc_response_times_are_reported_by_the_caller(
    nats_server: NatsServer, etcd_server: EtcdServer, stack: AsyncExitStack
) -> None:
    recorder = Recorder()
    backend_recorder = Recorder()
    prometheus = PrometheusReporter(host="127.0.0.1", port=0, process_metrics=False)
    backend = room("room-1", nats_server, etcd_server)
    backend.add_metrics_reporter(backend_recorder)
    connector = App(server_type="connector", **options(nats_server, etcd_server))
    connector.register(Entry)
    connector.add_metrics_reporter(recorder)
    connector.add_metrics_reporter(prometheus)
    await stack.enter_async_context(backend)
    server = await stack.enter_async_context(serve(connector))
    client = await server.connect(request_timeout=10)

    def rpc(route: str, status: str, code: str) -> Any:
        def predicate(call: Call) -> bool:
            return call == Call(
                "summary",
                RESPONSE_TIME,
                {"route": route, "status": status, "type": "rpc", "code": code},
                call.value,
            )

        return predicate

    assert await client.request("room.probe.whoami") == {"server_id": "room-1"}
    ok = await recorder.wait_for(rpc("room.probe.whoami", "ok", ""))
    assert ok.value > 0
    # The client request itself is the frontend's handler timing, as in Pitaya.
    await recorder.wait_for(
        is_("summary", RESPONSE_TIME, route="room.probe.whoami", type="handler")
    )

    with pytest.raises(RequestError):
        await client.request("room.probe.fail")
    await recorder.wait_for(rpc("room.probe.fail", "failed", "PIT-403"))
    with pytest.raises(RequestError):
        await client.request("room.probe.made_up")
    await recorder.wait_for(rpc("unknown", "failed", "PIT-404"))  # clients pick these routes
    with pytest.raises(RequestError) as timeout:
        await client.request("room.probe.slow")
    assert timeout.value.code == "PIT-408"
    await recorder.wait_for(rpc("room.probe.slow", "failed", "PIT-408"))

    # A user RPC made by a frontend handler.
    assert await client.request("connector.entry.ask") == {"room": {"pong": True}}
    await recorder.wait_for(rpc("room.proberemote.ping", "ok", ""))
    # The backend answered RPCs but sent none: it reports no rpc timing.
    assert not backend_recorder.find(is_("summary", RESPONSE_TIME, type="rpc"))
    # But the load it served is visible on it: the handlers it ran, timed where they ran,
    # by route and outcome (user RPCs as "remote"), and the delay before each started.
    served = backend_recorder.find(is_("summary", RESPONSE_TIME, type="handler"))
    assert {(c.tags["route"], c.tags["status"], c.tags["code"]) for c in served} >= {
        ("room.probe.whoami", "ok", ""),
        ("room.probe.fail", "failed", "PIT-403"),
    }
    assert all(c.value > 0 for c in served)
    assert not [c for c in served if c.tags["route"] == "room.probe.made_up"]  # not served
    await backend_recorder.wait_for(
        is_("summary", RESPONSE_TIME, route="room.proberemote.ping", type="remote", status="ok")
    )
    await backend_recorder.wait_for(
        is_("summary", PROCESS_DELAY, route="room.probe.whoami", type="remote")
    )

    # The same values through the real Prometheus endpoint.
    await recorder.wait_for(gauge(COUNT_SERVERS, 1.0, type="room"))
    text = await scrape(prometheus.address)
    assert sample(text, "pitaya_service_discovery_count_servers", type="room") == 1.0
    count = "pitaya_handler_response_time_ns_count"
    assert sample(text, count, route="room.probe.whoami", type="rpc", status="ok") == 1.0
    assert sample(text, count, route="room.probe.slow", type="rpc", code="PIT-408") == 1.0
    assert sample(text, "pitaya_rpc_server_dropped_messages") == 0.0


async def test_malformed_rpc_messages_are_counted_as_dropped(
    nats_server: NatsServer, etcd_server: EtcdServer, stack: AsyncExitStack
) -> None:
    recorder = Recorder()
    backend = room("room-1", nats_server, etcd_server)
    backend.add_metrics_reporter(recorder)
    await stack.enter_async_context(backend)
    await recorder.wait_for(gauge(DROPPED_MESSAGES, 0.0))
    nc = await nats.connect(nats_server.url)
    try:
        subject = "pitaya/servers/room/room-1"
        await nc.publish(subject, b"not an envelope")
        answer = await nc.request(subject, b"\x93\x01\x02\x03", timeout=5)  # not protobuf
        assert b"PIT-400" in answer.data  # a caller waiting for an answer still gets one
    finally:
        await nc.close()
    await recorder.wait_for(gauge(DROPPED_MESSAGES, 2.0))
