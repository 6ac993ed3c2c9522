"""A frontend killed with SIGKILL sends no close events: the room closes its sessions itself.

Real nats-server and etcd; the connector (``tests.cluster.node``) in its own process with a
2 s lease, the room in this one, with close callbacks. A client joins the room through the
connector, then the connector is killed by PID. Its lease expires, the room's discovery drops
it, the room probes it (NATS: "no responders"; gRPC: no connection can be made) and runs the
close callbacks of the session, with the uid the room bound, once.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from actors.app import App
from actors.modules.binding_storage import BindingStorage
from actors.session import Session
from samples.cluster.servers import build_room
from tests.cluster.harness import Node, both_transports, start_node
from tests.reliability.support import until
from tests.services import EtcdServer, NatsServer
from transport.client import Client


@both_transports
async def test_the_room_closes_the_sessions_of_a_frontend_killed_with_sigkill(
    rpc_transport: str,
    nats_server: NatsServer,
    etcd_server: EtcdServer,
    nodes: list[Node],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="actors.cluster.served_sessions")
    room = build_room("room-1", nats_server.url, etcd_server.endpoint, etcd_lease_ttl=2)
    if rpc_transport == "grpc":
        room.register_module(BindingStorage(room), "binding_storage")
    closed: list[tuple[str | None, str]] = []

    def left(session: Session) -> None:
        closed.append((session.uid, getattr(session, "frontend_id", "")))

    room.on_remote_session_close(left, route="room.room.join")
    async with room:
        connector = await start_node(nodes, "connector", "c-1", nats_server, etcd_server)
        client = await Client.connect("127.0.0.1", connector.ports["tcp"], request_timeout=10)
        joined: dict[str, Any] = await client.request("room.room.join", {"name": "ann"})
        assert joined["result"] == "success"
        assert room.cluster is not None and room.cluster.served_sessions is not None
        assert len(room.cluster.served_sessions) == 1
        await connector.kill()
        await until(lambda: closed != [], timeout=20)
        assert closed == [("c-1:1", "c-1")]
        assert "frontend c-1 gone from discovery, and nobody answers for it" in caplog.text
        assert len(room.cluster.served_sessions) == 0
        await client.close()
    assert len(closed) == 1


async def test_a_frontend_that_stops_gracefully_has_its_closes_run_once(
    nats_server: NatsServer,
    etcd_server: EtcdServer,
    nodes: list[Node],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stopping, the frontend leaves discovery first and drains: the room probes it, it
    answers, so the room waits; its close event runs the callbacks, the room none of its own."""
    caplog.set_level(logging.INFO, logger="actors.cluster.served_sessions")
    room: App = build_room("room-1", nats_server.url, etcd_server.endpoint, etcd_lease_ttl=2)
    closed: list[str | None] = []
    room.on_remote_session_close(lambda session: closed.append(session.uid))
    async with room:
        connector = await start_node(nodes, "connector", "c-1", nats_server, etcd_server)
        client = await Client.connect("127.0.0.1", connector.ports["tcp"], request_timeout=10)
        await client.request("room.room.join", {"name": "ann"})
        assert room.cluster is not None and room.cluster.served_sessions is not None
        served = room.cluster.served_sessions
        assert len(served) == 1
        assert await connector.stop() == 0
        await until(lambda: closed != [] and len(served) == 0, timeout=20)
        await client.close()
    assert closed == ["c-1:1"]
    assert "closing here" not in caplog.text  # the frontend's close event ran them
