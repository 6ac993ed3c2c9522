"""Modules across real server processes, nats-server and etcd: unique session, binding storage,
and a graceful SIGTERM that loses no request in flight; over both RPC transports (gRPC servers
always run the binding storage, which that transport requires)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.cluster.harness import Node, both_transports
from tests.services import EtcdServer, NatsServer
from transport.client import Client, Push, RequestError
from transport.etcd import EtcdClient


class ModuleNode(Node):
    module = "tests.actors.modules.server"


async def start(
    nodes: list[Node], role: str, server_id: str, nats: NatsServer, etcd: EtcdServer, **env: str
) -> Node:
    if os.environ.get("PITAYA_RPC_TRANSPORT") == "grpc":
        env = {"BINDING_STORAGE": "1", **env}
    node = ModuleNode(role, server_id, nats, etcd, **env)
    nodes.append(node)
    return await node.start()


async def connect(node: Node) -> Client:
    return await Client.connect("127.0.0.1", node.ports["tcp"], request_timeout=10)


async def login(client: Client, uid: str) -> dict[str, Any]:
    reply: dict[str, Any] = await client.request("connector.auth.login", {"uid": uid})
    return reply


async def next_push(client: Client, route: str, timeout: float = 10) -> Push:
    async def find() -> Push:
        async for push in client.pushes():
            if push.route == route:
                return push
        raise AssertionError("connection closed before the push")

    return await asyncio.wait_for(find(), timeout)


class BindNotices:
    """The bind notices on ``pitaya/connector/bindings``, as Pitaya's ``BindMsg``."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.arrived = asyncio.Event()

    def add(self, uid: str, fid: str) -> None:
        self.seen.append((uid, fid))
        self.arrived.set()

    async def wait_for(self, uid: str, fid: str, timeout: float = 10) -> None:
        async def seen() -> None:
            while (uid, fid) not in self.seen:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(seen(), timeout)


@contextlib.asynccontextmanager
async def bind_notices(rpc_transport: str, nats_server: NatsServer) -> AsyncIterator[Any]:
    """Over NATS, the bind notices as they go out; over gRPC (no broadcast: a frontend asks
    the binding storage at bind time) nothing to wait for."""
    if rpc_transport != "nats":

        class Nothing:
            async def wait_for(self, uid: str, fid: str, timeout: float = 10) -> None:
                return None

        yield Nothing()
        return
    import nats

    from transport.protos import pitaya_pb2

    notices = BindNotices()

    async def on_notice(msg: Any) -> None:
        notice = pitaya_pb2.BindMsg.FromString(msg.data)
        notices.add(notice.uid, notice.fid)

    nc = await nats.connect(nats_server.url)
    try:
        await nc.subscribe("pitaya/connector/bindings", cb=on_notice)
        await nc.flush()
        yield notices
    finally:
        await nc.close()


async def etcd_value_becomes(etcd: EtcdClient, key: str, value: bytes | None) -> None:
    """Bounded poll of etcd itself (the state under test lives there)."""

    async def poll() -> None:
        while await etcd.get(key) != value:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), 10)


@pytest.fixture
async def etcd(etcd_server: EtcdServer) -> Any:
    client = EtcdClient([etcd_server.endpoint])
    await client.connect()
    try:
        yield client
    finally:
        await client.close()


@both_transports
async def test_unique_session_kicks_the_old_session_across_frontends(
    rpc_transport: str, nats_server: NatsServer, etcd_server: EtcdServer, nodes: list[Node]
) -> None:
    c1 = await start(nodes, "connector", "c-1", nats_server, etcd_server, UNIQUE_SESSION="kick")
    c2 = await start(nodes, "connector", "c-2", nats_server, etcd_server, UNIQUE_SESSION="kick")
    ann, bob, carl = await connect(c1), await connect(c2), await connect(c2)
    async with bind_notices(rpc_transport, nats_server) as notices:
        assert await login(ann, "u1") == {"uid": "u1", "server_id": "c-1"}
        # Over NATS, c-1 broadcasts the bind; bob binds only once it is out, as a later
        # player would (a notice still in flight when a newer bind lands kicks the newer
        # session: a race of Pitaya's broadcast design, Go's included).
        await notices.wait_for("u1", "c-1")
    # The same uid binds on another frontend: the old session there gets a kick packet.
    assert await login(bob, "u1") == {"uid": "u1", "server_id": "c-2"}
    await ann.wait_closed(timeout=10)
    assert ann.kicked
    await c1.wait_for_log("kicking session 1: uid u1 bound on c-2")
    # And on the same frontend: the local check kicks the older session.
    assert (await login(carl, "u1"))["server_id"] == "c-2"
    await bob.wait_closed(timeout=10)
    assert bob.kicked
    assert not carl.closed
    assert (await carl.request("connector.me.show"))["uid"] == "u1"


@both_transports
async def test_unique_session_refuses_a_second_bind_with_binding_storage(
    rpc_transport: str,
    nats_server: NatsServer,
    etcd_server: EtcdServer,
    nodes: list[Node],
    etcd: EtcdClient,
) -> None:
    env = {"UNIQUE_SESSION": "refuse", "BINDING_STORAGE": "1"}
    c1 = await start(nodes, "connector", "c-1", nats_server, etcd_server, **env)
    c2 = await start(nodes, "connector", "c-2", nats_server, etcd_server, **env)
    ann, bob, carl = await connect(c1), await connect(c2), await connect(c1)
    await login(ann, "u1")
    for other in (bob, carl):  # on another frontend, then on the same one
        with pytest.raises(RequestError) as info:
            await login(other, "u1")
        assert info.value.code == "PIT-409"
    assert not ann.closed
    assert (await bob.request("connector.me.show"))["uid"] is None
    # Once the holder leaves, its binding is removed and the uid is free again.
    await ann.close()
    await etcd_value_becomes(etcd, "pitaya/bindings/connector/u1", None)
    assert (await login(bob, "u1"))["server_id"] == "c-2"


@both_transports
async def test_binding_storage_routes_push_and_kick_and_expires_with_the_frontend(
    rpc_transport: str,
    nats_server: NatsServer,
    etcd_server: EtcdServer,
    nodes: list[Node],
    etcd: EtcdClient,
) -> None:
    room = await start(nodes, "room", "room-1", nats_server, etcd_server, BINDING_STORAGE="1")
    c1 = await start(nodes, "connector", "c-1", nats_server, etcd_server, BINDING_STORAGE="1")
    c2 = await start(nodes, "connector", "c-2", nats_server, etcd_server, BINDING_STORAGE="1")
    for connector in ("c-1", "c-2"):  # the room sends to them by id: it must know them
        await room.wait_for_log(f"server added {connector} (connector)")
    ann, bob = await connect(c1), await connect(c2)
    await login(ann, "ann")
    await login(bob, "bob")
    ann_key, bob_key = "pitaya/bindings/connector/ann", "pitaya/bindings/connector/bob"
    assert await etcd.get(ann_key) == b"c-1"
    assert await etcd.get(bob_key) == b"c-2"

    # A push from the backend reaches bob on c-2; a uid bound nowhere fails at once.
    reply = await ann.request("room.ops.push_to", {"uids": ["bob", "ghost"]})
    assert reply == {"failed": ["ghost"]}
    assert (await next_push(bob, "onPoke")).body == {"from": "room-1"}
    # The storage is what routes it: point bob at the wrong frontend and the push fails
    # (the default per-uid subject would still have found him).
    await etcd.put(bob_key, b"c-1")
    assert await ann.request("room.ops.push_to", {"uids": ["bob"]}) == {"failed": ["bob"]}
    await etcd.put(bob_key, b"c-2")
    assert await ann.request("room.ops.push_to", {"uids": ["bob"]}) == {"failed": []}
    assert (await next_push(bob, "onPoke")).body == {"from": "room-1"}

    # A kick by uid goes the same way; the closed session's binding is removed.
    assert await ann.request("room.ops.kick", {"uids": ["bob"]}) == {"failed": []}
    await bob.wait_closed(timeout=10)
    assert bob.kicked
    await etcd_value_becomes(etcd, bob_key, None)

    # A frontend that dies leaves no binding behind once its lease (2 s here) expires.
    await c1.kill()
    await etcd_value_becomes(etcd, ann_key, None)


@both_transports
async def test_sigterm_loses_no_request_in_flight(
    rpc_transport: str, nats_server: NatsServer, etcd_server: EtcdServer, nodes: list[Node]
) -> None:
    env = {"PITAYA_RPC_TIMEOUT": "10"}  # longer than the slow requests
    room1 = await start(nodes, "room", "room-1", nats_server, etcd_server, **env)
    await start(nodes, "room", "room-2", nats_server, etcd_server, **env)
    connector = await start(nodes, "connector", "c-1", nats_server, etcd_server, **env)
    clients = [await connect(connector) for _ in range(4)]
    # The sample's router pins these to room-1 (the smallest id) while it is registered.
    pending = [
        asyncio.ensure_future(c.request("room.work.slow", {"seconds": 2.0, "tag": f"r{i}"}))
        for i, c in enumerate(clients)
    ]
    for i in range(len(clients)):
        await room1.wait_for_log(f"slow request r{i} started")
    assert room1.process is not None
    room1.process.terminate()
    # room-1 leaves discovery first: new requests go to room-2 while room-1 drains.
    spare = await connect(connector)

    async def served_by_room2() -> None:
        while True:
            reply = await spare.request("room.work.slow", {"seconds": 0, "tag": "new"})
            if reply["server_id"] == "room-2":
                return

    await asyncio.wait_for(served_by_room2(), 10)
    replies = await asyncio.wait_for(asyncio.gather(*pending), 15)
    assert replies == [{"server_id": "room-1"}] * len(clients)
    assert await asyncio.wait_for(room1.process.wait(), 15) == 0

    # A frontend stopped with requests in flight answers them, then kicks its clients.
    pending = [
        asyncio.ensure_future(c.request("room.work.slow", {"seconds": 1.0, "tag": f"f{i}"}))
        for i, c in enumerate(clients)
    ]
    for i in range(len(clients)):
        await asyncio.wait_for(_room2_started(nodes, f"f{i}"), 10)
    assert connector.process is not None
    connector.process.terminate()
    replies = await asyncio.wait_for(asyncio.gather(*pending), 15)
    assert replies == [{"server_id": "room-2"}] * len(clients)
    for client in clients:
        await client.wait_closed(timeout=10)
        assert client.kicked
    assert await asyncio.wait_for(connector.process.wait(), 15) == 0


async def _room2_started(nodes: list[Node], tag: str) -> None:
    room2 = next(n for n in nodes if n.server_id == "room-2")
    await room2.wait_for_log(f"slow request {tag} started")
