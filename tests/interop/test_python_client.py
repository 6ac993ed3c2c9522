"""Our Python client (transport.client) against Go Pitaya servers (the Go connector forwarding
to the Go room), over TCP and WebSocket: handshake, route dictionary (compressed routes both
ways), request, notify, forwarded routes, push, errors and kick."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.interop.harness import GoServer
from tests.services import EtcdServer, NatsServer
from transport.client import Client, RequestError


@pytest.fixture
async def go_connector(
    nats_server: NatsServer, etcd_server: EtcdServer, go_servers: Any
) -> GoServer:
    await go_servers("room", "room-go-1", nats_server, etcd_server)
    connector: GoServer = await go_servers("connector", "connector-go-1", nats_server, etcd_server)
    return connector


async def connect(server: GoServer, websocket: bool) -> Client:
    host, port = server.address("ws" if websocket else "tcp")
    return await Client.connect(host, port, websocket=websocket)


async def test_handshake_request_push(go_connector: GoServer, websocket: bool) -> None:
    async with await connect(go_connector, websocket) as client:
        hs = client.handshake_response
        assert hs.ok and hs.heartbeat == 30 and hs.serializer == "json"
        # Go's dictionary (cmd/connector): we send these routes as 2-byte codes, and read
        # the compressed route of the pushes on "onPush".
        assert hs.routes == {"connector.me.echo": 1, "room.room.echo": 2, "onPush": 3}

        assert (await client.request("connector.me.echo", {"n": 1}))["server"] == "connector-go-1"
        answer = await client.request("room.room.echo", {"n": 2})
        assert answer == {"server": "room-go-1", "lang": "go", "uid": "", "body": {"n": 2}}

        await client.request("room.room.bind", {"uid": "py-client"})
        pushes = client.pushes()
        await client.request("room.room.push", {"body": [1, 2]})
        push = await asyncio.wait_for(anext(pushes), 10)
        assert (push.route, push.body) == (
            "onPush",
            {"from": "room-go-1", "lang": "go", "body": [1, 2]},
        )

        await client.notify("connector.me.notify", {"tag": "py"})
        tags = (await client.request("connector.me.notified"))["tags"]
        for _ in range(100):  # Go runs a session's messages concurrently: poll, bounded
            if "py" in tags:
                break
            tags = (await client.request("connector.me.notified"))["tags"]
        assert "py" in tags


async def test_errors_and_kick(go_connector: GoServer, websocket: bool) -> None:
    async with await connect(go_connector, websocket) as client:
        with pytest.raises(RequestError) as failed:
            await client.request("room.room.fail", {"code": "GAME-7", "msg": "no luck"})
        assert (failed.value.code, failed.value.msg, failed.value.metadata) == (
            "GAME-7",
            "no luck",
            {"lang": "go"},
        )
        with pytest.raises(RequestError) as missing:
            await client.request("connector.me.nothing")
        assert missing.value.code == "PIT-404"

        await client.request("connector.me.bind", {"uid": "kicked"})
        await client.notify("connector.me.kick")
        await client.wait_closed(timeout=10)
        assert client.kicked
