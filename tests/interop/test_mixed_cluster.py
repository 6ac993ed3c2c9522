"""Mixed clusters on real nats-server and etcd: a Go Pitaya frontend with a Python backend, and
a Python frontend with a Go Pitaya backend, over NATS and over gRPC. Pitaya's Go client plays
the user. Both languages serve the same routes (README.md), so each test runs both ways.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import nats
import pytest

from tests.cluster.harness import TRANSPORTS
from tests.interop.harness import GoClient, GoServer
from tests.interop.mixed import Mixed, Server, direction, mixed
from tests.services import EtcdServer, NatsServer
from transport.protos import pitaya_pb2 as pb

__all__ = ["direction", "mixed"]  # the fixtures, imported

pytestmark = pytest.mark.parametrize("rpc_transport", TRANSPORTS, indirect=True)


async def notified(client: GoClient, tag: str, timeout: float = 10) -> None:
    """Polls ``room.room.notified`` until ``tag`` is there: Go handles one session's
    forwarded messages concurrently, so a notify may finish after the next request."""
    deadline = asyncio.get_running_loop().time() + timeout
    while tag not in (await client.request("room.room.notified"))["tags"]:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"notify {tag} never arrived")
        await asyncio.sleep(0.05)


async def test_request_and_notify(mixed: Mixed, websocket: bool) -> None:
    client = await mixed.client(websocket)
    answer = await client.request("room.room.echo", {"text": "héllo", "n": [1, 2]})
    assert answer == {
        "server": mixed.backend_id,
        "lang": mixed.lang(mixed.backend),
        "uid": "",
        "body": {"text": "héllo", "n": [1, 2]},
    }
    await client.notify("room.room.notify", {"tag": f"t-{websocket}"})
    await notified(client, f"t-{websocket}")


async def test_backend_bind_and_push_to_front(mixed: Mixed) -> None:
    client = await mixed.client()
    bound = await client.request("room.room.bind", {"uid": "ann"})
    assert bound["uid"] == "ann"
    assert (await client.request("connector.me.show"))["uid"] == "ann"
    # The backend sees the bound uid on the next forwarded message.
    assert (await client.request("room.room.echo", {}))["uid"] == "ann"

    stored = await client.request("room.room.setdata", {"data": {"level": 3, "name": "Ann"}})
    assert stored["data"].items() >= {"level": 3, "name": "Ann"}.items()
    shown = await client.request("connector.me.show")
    # A Go frontend puts "ipversion" in every session's data itself; the rest is ours.
    shown["data"].pop("ipversion", None)
    assert shown["data"] == {"level": 3, "name": "Ann"}


async def test_frontend_session_reaches_the_backend(mixed: Mixed) -> None:
    """A uid bound and data set on the frontend travel with every forwarded message (the
    session's data as a JSON object), whatever the languages."""
    client = await mixed.client()
    await client.request("connector.me.bind", {"uid": "cat"})
    data = {"level": 5, "tags": ["a", "b"], "nested": {"x": 1.5}, "name": "Çat"}
    await client.request("connector.me.setdata", {"data": data})
    shown = await client.request("room.room.show")
    assert shown["uid"] == "cat"
    shown["data"].pop("ipversion", None)  # a Go frontend's own key
    assert shown["data"] == data


async def test_backend_push_and_kick(mixed: Mixed) -> None:
    client = await mixed.client()
    await client.request("room.room.bind", {"uid": "bob"})
    mark = len(client.events)
    assert (await client.request("room.room.push", {"body": {"x": 1}}))["pushed"] is True
    push = await client.push("onPush", start=mark)
    assert push == {"from": mixed.backend_id, "lang": mixed.lang(mixed.backend), "body": {"x": 1}}

    await client.notify("room.room.kick")
    await client.kicked()


async def test_user_rpc_both_ways(mixed: Mixed) -> None:
    client = await mixed.client()
    back, front = mixed.lang(mixed.backend), mixed.lang(mixed.frontend)
    # frontend -> backend, by route and by server id
    for target in ("", mixed.backend_id):
        answer = await client.request(
            "connector.me.rpc", {"route": "room.roomremote.echo", "msg": "hi", "server_id": target}
        )
        assert answer["reply"] == f"{back}:{mixed.backend_id}:hi"
    # backend -> frontend, by route and by server id
    for target in ("", mixed.frontend_id):
        answer = await client.request(
            "room.room.rpc",
            {"route": "connector.connectorremote.echo", "msg": "yo", "server_id": target},
        )
        assert answer["reply"] == f"{front}:{mixed.frontend_id}:yo"


async def test_push_and_kick_by_uid(mixed: Mixed) -> None:
    ann = await mixed.client()
    bob = await mixed.client()
    await ann.request("room.room.bind", {"uid": "ann"})
    await bob.request("room.room.bind", {"uid": "bob"})

    reply = await bob.request("room.room.pushto", {"uids": ["ann"], "body": "hi"})
    assert reply["failed"] == []
    push = await ann.push("onPushTo")
    assert push == {"from": mixed.backend_id, "lang": mixed.lang(mixed.backend), "body": "hi"}

    reply = await bob.request("room.room.kickusers", {"uids": ["ann"]})
    assert reply["failed"] == []
    await ann.kicked()
    assert not bob.was_kicked
    assert (await bob.request("room.room.echo", {}))["uid"] == "bob"


async def test_etcd_groups_are_shared(mixed: Mixed) -> None:
    """Groups in etcd under Pitaya's layout: members added by either language are one group,
    and a broadcast from either reaches them all."""
    ann, bob = await mixed.client(), await mixed.client()
    await ann.request("connector.me.bind", {"uid": "ann"})
    await bob.request("connector.me.bind", {"uid": "bob"})
    await ann.request("connector.me.groupadd", {"group": "g", "uid": "ann"})
    await bob.request("room.room.groupadd", {"group": "g", "uid": "bob"})
    for route in ("connector.me.groupmembers", "room.room.groupmembers"):
        assert (await ann.request(route, {"group": "g"}))["members"] == ["ann", "bob"]

    for route, server in (
        ("room.room.groupcast", mixed.backend),
        ("connector.me.groupcast", mixed.frontend),
    ):
        marks = len(ann.events), len(bob.events)
        await ann.request(route, {"group": "g", "body": route})
        expected = {"from": server.server_id, "lang": mixed.lang(server), "body": route}
        assert await ann.push("onGroup", start=marks[0]) == expected
        assert await bob.push("onGroup", start=marks[1]) == expected


async def test_custom_etcd_prefix(
    direction: str,
    rpc_transport: str,
    nats_server: NatsServer,
    etcd_server: EtcdServer,
    go_servers: Any,
    py_nodes: Any,
    go_clients: Callable[..., GoClient],
) -> None:
    """Both languages under the prefix "game-a/" find each other, and not a server that
    registered under Pitaya's default prefix on the same etcd."""
    front, back = direction.split("-")
    prefix = "game-a/"

    async def start_with_prefix(lang: str, role: str, server_id: str) -> Server:
        if lang == "go":
            server: Server = await go_servers(
                role, server_id, nats_server, etcd_server, prefix=prefix
            )
        else:
            server = await py_nodes(
                role, server_id, nats_server, etcd_server, PITAYA_ETCD_PREFIX=prefix
            )
        return server

    await go_servers("room", "room-default-prefix", nats_server, etcd_server)
    backend = await start_with_prefix(back, "room", f"room-{back}-a")
    frontend = await start_with_prefix(front, "connector", f"connector-{front}-a")
    cluster = Mixed(frontend, backend, rpc_transport, go_clients)
    client = await cluster.client()
    assert (await client.request("room.room.echo", {}))["server"] == backend.server_id
    known = (await client.request("connector.me.servers"))["servers"]
    assert "room-default-prefix" not in known


async def test_go_prefix_variables_keep_groups_and_bindings_where_go_has_them(
    direction: str,
    rpc_transport: str,
    nats_server: NatsServer,
    etcd_server: EtcdServer,
    go_servers: Any,
    py_nodes: Any,
    go_clients: Callable[..., GoClient],
) -> None:
    """Go Pitaya has three etcd prefixes (discovery, groups, binding storage), each
    "pitaya/" by default. A cluster that sets only discovery's (its variable
    PITAYA_CLUSTER_SD_ETCD_PREFIX, given to the Python servers too) keeps its groups and
    bindings under "pitaya/": both languages share them there, so groups hold the members
    either adds, and over gRPC a push by uid finds the frontend in the binding storage."""
    front, back = direction.split("-")
    go_only_sd = ["-groups-prefix", "pitaya/", "-bindings-prefix", "pitaya/"]

    async def start_under(lang: str, role: str, server_id: str) -> Server:
        if lang == "go":
            server: Server = await go_servers(
                role, server_id, nats_server, etcd_server, prefix="game-b/", args=go_only_sd
            )
        else:
            server = await py_nodes(
                role, server_id, nats_server, etcd_server, PITAYA_CLUSTER_SD_ETCD_PREFIX="game-b/"
            )
        return server

    backend = await start_under(back, "room", f"room-{back}-b")
    frontend = await start_under(front, "connector", f"connector-{front}-b")
    cluster = Mixed(frontend, backend, rpc_transport, go_clients)
    ann, bob = await cluster.client(), await cluster.client()
    await ann.request("connector.me.bind", {"uid": "ann"})
    await bob.request("connector.me.bind", {"uid": "bob"})
    await ann.request("connector.me.groupadd", {"group": "g", "uid": "ann"})
    await bob.request("room.room.groupadd", {"group": "g", "uid": "bob"})
    for route in ("connector.me.groupmembers", "room.room.groupmembers"):
        assert (await ann.request(route, {"group": "g"}))["members"] == ["ann", "bob"]

    reply = await bob.request("room.room.pushto", {"uids": ["ann"], "body": "hi"})
    assert reply["failed"] == []
    assert (await ann.push("onPushTo"))["body"] == "hi"


async def test_a_go_server_logs_no_error_and_never_sees_our_extras(mixed: Mixed) -> None:
    """A whole session's life (bind from the backend, session data, pushes, user RPCs both
    ways, a disconnect) leaves no error in the Go server's log, and none of our extra routes
    (pysys.*) reaches it (seen on its NATS subject): they go to servers of ours only."""
    go = mixed.frontend if mixed.lang(mixed.frontend) == "go" else mixed.backend
    assert isinstance(go, GoServer)
    seen: list[pb.Request] = []
    tap = None
    if mixed.transport == "nats" and mixed.nats is not None:  # what reaches the Go server
        tap = await nats.connect(mixed.nats.url)
        subject = f"pitaya/servers/{go.role}/{go.server_id}"

        async def record(msg: Any) -> None:
            seen.append(pb.Request.FromString(msg.data))

        await tap.subscribe(subject, cb=record)
        await tap.flush()
    client = await mixed.client()
    await client.request("room.room.bind", {"uid": "zed"})
    await client.request("room.room.setdata", {"data": {"a": 1}})
    await client.request("room.room.push", {"body": 1})
    await client.request("connector.me.rpc", {"route": "room.roomremote.echo", "msg": "x"})
    await client.request("room.room.rpc", {"route": "connector.connectorremote.echo", "msg": "x"})
    await client.disconnect()
    # A later message from the same frontend to the same backend: over NATS it arrives after
    # anything the frontend sent about the closed session.
    other = await mixed.client()
    await other.request("room.room.echo", {})
    await other.request("connector.me.echo", {})
    if tap is not None:
        await tap.flush()
        await tap.close()
        assert seen
        for request in seen:  # (our metadata keys: tests/interop/test_extras.py)
            assert not request.msg.route.startswith("pysys."), request
    assert any("all modules started" in line for line in go.log)  # its log is read
    bad = [
        line
        for line in go.log
        if any(mark in line for mark in ("level=error", "level=fatal", "panic", "pysys", "py."))
    ]
    assert not bad, "\n".join(bad)


async def test_many_sessions_with_pipelined_requests(mixed: Mixed) -> None:
    """Several clients at once, each with requests in flight together: every answer is the one
    to its own request (message ids and sessions kept apart across the languages)."""
    clients = [await mixed.client() for _ in range(6)]

    async def one(n: int, client: GoClient) -> None:
        await client.request("room.room.bind", {"uid": f"user-{n}"})
        answers = await asyncio.gather(
            *(client.request("room.room.echo", {"n": n, "i": i}) for i in range(10))
        )
        assert [a["body"] for a in answers] == [{"n": n, "i": i} for i in range(10)]
        assert {a["uid"] for a in answers} == {f"user-{n}"}

    await asyncio.gather(*(one(n, client) for n, client in enumerate(clients)))
