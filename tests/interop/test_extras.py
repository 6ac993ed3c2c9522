"""What our servers add to Pitaya's protocol between themselves (extra metadata keys, extra
sys routes) never reaches a Go server: checked on the Go server's own NATS subject."""

from __future__ import annotations

import json
from typing import Any

import nats

from tests.interop.harness import GoClient, GoServer, wait_known
from tests.services import EtcdServer, NatsServer
from transport.protos import pitaya_pb2 as pb


async def requests_to(go: GoServer, nats_url: str, scenario: Any) -> list[pb.Request]:
    """The requests that reach ``go`` over NATS while ``scenario()`` runs."""
    seen: list[pb.Request] = []

    async def record(msg: Any) -> None:
        seen.append(pb.Request.FromString(msg.data))

    tap = await nats.connect(nats_url)
    try:
        await tap.subscribe(f"pitaya/servers/{go.role}/{go.server_id}", cb=record)
        await tap.flush()
        await scenario()
        await tap.flush()
    finally:
        await tap.close()
    assert seen
    return seen


def ours(request: pb.Request) -> list[str]:
    """Our extras in a request: pysys.* routes, py.* metadata keys."""
    found = [request.msg.route] if request.msg.route.startswith("pysys.") else []
    metadata = json.loads(request.metadata or b"{}")
    return found + [key for key in metadata if key.startswith("py.")]


async def session_life(client: GoClient) -> None:
    await client.request("room.room.bind", {"uid": "zed"})
    await client.request("room.room.setdata", {"data": {"a": 1}})
    await client.request("room.room.push", {"body": 1})
    await client.request("room.room.rpc", {"route": "connector.connectorremote.echo", "msg": "x"})
    await client.request("connector.me.rpc", {"route": "room.roomremote.echo", "msg": "x"})


async def test_a_go_backend_gets_no_metadata_of_ours(
    nats_server: NatsServer,
    etcd_server: EtcdServer,
    go_servers: Any,
    py_nodes: Any,
    go_clients: Any,
) -> None:
    room = await go_servers("room", "room-go-1", nats_server, etcd_server)
    connector = await py_nodes("connector", "connector-py-1", nats_server, etcd_server)
    client = go_clients()
    await client.connect(("127.0.0.1", connector.ports["tcp"]))
    await wait_known(client, "room.room.servers", "connector-py-1")

    seen = await requests_to(room, nats_server.url, lambda: session_life(client))
    assert [ours(r) for r in seen if ours(r)] == []


async def test_a_go_frontend_gets_no_metadata_or_route_of_ours(
    nats_server: NatsServer,
    etcd_server: EtcdServer,
    go_servers: Any,
    py_nodes: Any,
    go_clients: Any,
) -> None:
    await py_nodes("room", "room-py-1", nats_server, etcd_server)
    connector = await go_servers("connector", "connector-go-1", nats_server, etcd_server)
    client = go_clients()
    await client.connect(connector.address("tcp"))
    await wait_known(client, "room.room.servers", "connector-go-1")

    async def life_and_close() -> None:
        await session_life(client)
        await client.disconnect()

    seen = await requests_to(connector, nats_server.url, life_and_close)
    assert {r.msg.route for r in seen} >= {"sys.bindsession", "sys.pushsession"}
    assert [ours(r) for r in seen if ours(r)] == []
