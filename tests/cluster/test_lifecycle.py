"""Session lifecycle extras through real processes: validators, readiness, draining,
backend observers of session events, the caller's session on user RPCs."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from actors.app import App
from tests.cluster.harness import Node, both_transports, start_node
from tests.services import EtcdServer, NatsServer
from transport.client import Client, HandshakeRejected, RequestError


async def http_get(port: int, path: str) -> int:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return int(status_line.split()[1])


async def test_validator_rejects_old_clients_and_backends_read_the_handshake(
    nats_server: NatsServer, etcd_server: EtcdServer, nodes: list[Node]
) -> None:
    await start_node(nodes, "room", "room-1", nats_server, etcd_server)
    connector = await start_node(
        nodes, "connector", "c-1", nats_server, etcd_server, REQUIRE_CLIENT_VERSION="2.0"
    )
    port = connector.ports["tcp"]
    with pytest.raises(HandshakeRejected) as info:
        await Client.connect("127.0.0.1", port, handshake_sys={"clientVersion": "1.9"})
    assert info.value.code == 400 and "too old" in info.value.message
    client = await Client.connect(
        "127.0.0.1", port, handshake_sys={"clientVersion": "2.1"}, handshake_user={"locale": "pt"}
    )
    seen = await client.request("room.ops.handshake")
    assert seen == {"client_version": "2.1", "user": {"locale": "pt"}}
    await client.close()


@both_transports
async def test_backend_observes_bind_and_close_of_sessions_it_served(
    rpc_transport: str, nats_server: NatsServer, etcd_server: EtcdServer, nodes: list[Node]
) -> None:
    await start_node(nodes, "room", "room-1", nats_server, etcd_server)
    connector = await start_node(nodes, "connector", "c-1", nats_server, etcd_server)
    port = connector.ports["tcp"]
    player = await Client.connect("127.0.0.1", port)
    joined = await player.request("room.room.join", {"name": "p"})  # binds on the frontend
    assert joined["result"] == "success"
    uid = (await player.request("connector.me.show"))["uid"]
    observer = await Client.connect("127.0.0.1", port)

    async def events() -> list[list[object]]:
        return list(await observer.request("room.ops.events"))

    async def until(kind: str) -> list[list[object]]:
        # The backend's record is only visible through a request: poll it, bounded.
        while not any(e[0] == kind and e[1] == uid for e in await events()):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return await events()

    await asyncio.wait_for(until("bind"), 10)
    await player.close()
    recorded = await asyncio.wait_for(until("close"), 10)
    # The route-filtered subscription fired too: this session used room.room.join here.
    assert any(e[0] == "close-join" and e[1] == uid for e in recorded)
    await observer.close()


async def test_readiness_flips_with_nats(nats_server: NatsServer, etcd_server: EtcdServer) -> None:
    app = App(
        server_type="probe",
        mode="cluster",
        frontend=False,
        nats_url=nats_server.url,
        etcd_endpoints=etcd_server.endpoint,
    )
    assert not await app.is_ready()
    await app.start()
    try:
        assert await app.is_ready()
        await asyncio.to_thread(nats_server.stop)

        async def until(value: bool) -> None:
            # NATS notices the loss on its own clock: poll the probe, bounded by wait_for.
            while await app.is_ready() is not value:  # noqa: ASYNC110
                await asyncio.sleep(0.05)

        await asyncio.wait_for(until(False), 10)
        await asyncio.to_thread(nats_server.start)
        await asyncio.wait_for(until(True), 20)
    finally:
        await app.stop()
    assert not await app.is_ready()


async def test_ready_endpoint_on_the_metrics_port(
    nats_server: NatsServer, etcd_server: EtcdServer, nodes: list[Node]
) -> None:
    room = await start_node(
        nodes,
        "room",
        "room-1",
        nats_server,
        etcd_server,
        PITAYA_METRICS_PROMETHEUS_ENABLED="1",
        PITAYA_METRICS_PROMETHEUS_HOST="127.0.0.1",
        PITAYA_METRICS_PROMETHEUS_PORT="0",
    )
    port = room.ports["metrics"]
    assert await http_get(port, "/ready") == 200
    await asyncio.to_thread(nats_server.stop)

    async def until(status: int) -> None:
        # What a load balancer does: poll the probe (bounded by wait_for).
        while await http_get(port, "/ready") != status:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    await asyncio.wait_for(until(503), 10)
    await asyncio.to_thread(nats_server.start)
    await asyncio.wait_for(until(200), 20)


@both_transports
async def test_draining_keeps_serving_connected_clients_until_they_leave(
    rpc_transport: str, nats_server: NatsServer, etcd_server: EtcdServer, nodes: list[Node]
) -> None:
    await start_node(nodes, "room", "room-1", nats_server, etcd_server)
    connector = await start_node(
        nodes,
        "connector",
        "c-1",
        nats_server,
        etcd_server,
        PITAYA_DRAIN_SESSIONS="1",
        PITAYA_DRAIN_TIMEOUT="30",
    )
    port = connector.ports["tcp"]
    client = await Client.connect("127.0.0.1", port)
    os.kill(connector.pid, signal.SIGTERM)

    await connector.wait_for_log("draining:")
    # Still serving the connected client, through the cluster too, both ways: the backend
    # reaches the frontend, which has left discovery, to bind and push.
    assert (await client.request("room.room.whoami"))["server_id"] == "room-1"
    pushes = client.pushes()
    reply = await client.request("room.ops.bind_and_store", {"uid": "drained-1"})
    assert reply == {"uid": "drained-1", "server_id": "room-1"}
    push = await asyncio.wait_for(anext(pushes), 10)
    assert (push.route, push.body) == ("onStored", {"uid": "drained-1"})
    # ...but no longer accepting new ones.
    with pytest.raises(OSError):
        await Client.connect("127.0.0.1", port, timeout=2)
    assert connector.process is not None and connector.process.returncode is None
    await client.close()
    assert await asyncio.wait_for(connector.process.wait(), 20) == 0
    assert any("drained" in line for line in connector.log)


async def draining_connector(
    nodes: list[Node], nats_server: NatsServer, etcd_server: EtcdServer
) -> Node:
    """A connector whose SIGTERM drains its sessions (for up to a minute)."""
    return await start_node(
        nodes,
        "connector",
        "c-1",
        nats_server,
        etcd_server,
        PITAYA_DRAIN_SESSIONS="1",
        PITAYA_DRAIN_TIMEOUT="60",
    )


async def test_a_draining_frontend_still_follows_the_servers_that_come_and_go(
    nats_server: NatsServer, etcd_server: EtcdServer, nodes: list[Node]
) -> None:
    """Leaving discovery used to stop its watch too: a draining connector kept the table it
    had, and sent every message to a room that had gone (PIT-408) for the whole drain."""
    room_1 = await start_node(nodes, "room", "room-1", nats_server, etcd_server)
    connector = await draining_connector(nodes, nats_server, etcd_server)
    client = await Client.connect("127.0.0.1", connector.ports["tcp"])
    assert (await client.request("room.room.whoami"))["server_id"] == "room-1"
    os.kill(connector.pid, signal.SIGTERM)
    await connector.wait_for_log("draining:")
    await start_node(nodes, "room", "room-2", nats_server, etcd_server)
    os.kill(room_1.pid, signal.SIGTERM)
    assert room_1.process is not None
    assert await asyncio.wait_for(room_1.process.wait(), 20) == 0

    async def served_by_room_2() -> None:
        # Until the connector's watch reports the change (bounded by wait_for).
        while True:
            try:
                answer = await client.request("room.room.whoami")
            except RequestError:
                continue
            if answer["server_id"] == "room-2":
                return

    await asyncio.wait_for(served_by_room_2(), 10)
    await client.close()
    assert connector.process is not None
    assert await asyncio.wait_for(connector.process.wait(), 20) == 0


async def test_second_signal_skips_the_drain(
    nats_server: NatsServer, etcd_server: EtcdServer, nodes: list[Node]
) -> None:
    connector = await draining_connector(nodes, nats_server, etcd_server)
    client = await Client.connect("127.0.0.1", connector.ports["tcp"])
    os.kill(connector.pid, signal.SIGTERM)

    await connector.wait_for_log("draining:")
    os.kill(connector.pid, signal.SIGTERM)
    assert connector.process is not None
    assert await asyncio.wait_for(connector.process.wait(), 20) == 0
    await client.wait_closed(timeout=5)
    assert client.kicked


async def test_a_second_sigterm_while_stopping_does_not_cut_the_stop_short(
    nats_server: NatsServer, etcd_server: EtcdServer, nodes: list[Node]
) -> None:
    """A supervisor's SIGTERM and then its own, or systemd's to the whole process group:
    the second one used to meet the default action and kill the server halfway (exit 143,
    requests in flight lost, its discovery entry left to expire)."""
    room = await start_node(nodes, "room", "room-1", nats_server, etcd_server)
    connector = await start_node(nodes, "connector", "c-1", nats_server, etcd_server)
    client = await Client.connect("127.0.0.1", connector.ports["tcp"])
    answer = asyncio.ensure_future(
        client.request("room.load.wait", {"seconds": 1.0, "tag": "in-flight"})
    )
    await room.wait_for_log("load in-flight arrived")
    os.kill(room.pid, signal.SIGTERM)
    await room.wait_for_log("stopping")
    os.kill(room.pid, signal.SIGTERM)
    await room.wait_for_log("SIGTERM while stopping: the stop goes on")
    assert await asyncio.wait_for(answer, 10) == {"server_id": "room-1", "tag": "in-flight"}
    assert room.process is not None
    assert await asyncio.wait_for(room.process.wait(), 20) == 0
    await client.close()
