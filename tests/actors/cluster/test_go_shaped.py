"""Our servers answer Go Pitaya's messages as a Go server does, in one process.

A bare in-memory RPC client plays the Go peer: it sends ``protos.Request`` bytes built by hand
as Go Pitaya builds them (no ``py.*`` metadata, Go's controls, protobuf user RPC arguments)
to a Python connector and room of a :class:`MemoryCluster`, and reads the answers with
``pitaya_pb2``. The same against real Go servers is ``tests/interop``.
"""

from __future__ import annotations

import asyncio
import json

from google.protobuf.wrappers_pb2 import StringValue

from actors.cluster.discovery import ServerInfo
from actors.cluster.memory import MemoryRpc
from actors.session import Session
from tests.actors.cluster.test_in_memory_cluster import Net, cluster, next_push
from transport.protos import pitaya_pb2 as pb

GO_METADATA = json.dumps(
    {"peer.id": "go-1", "peer.service": "gate", "reqTimeout": "5s", "request.id": "x"}
).encode()


async def go_peer(net: Net) -> MemoryRpc:
    rpc = net.network.rpc().client
    assert isinstance(rpc, MemoryRpc)
    await rpc.connect()
    return rpc


def server(net: Net, server_id: str) -> ServerInfo:
    return net.network.servers[server_id]


def only_session(net: Net) -> Session:
    (session,) = list(net.connectors[0].sessions)
    return session


def user_rpc(route: str, data: bytes) -> bytes:
    return bytes(
        pb.Request(
            type=pb.User, msg=pb.Msg(route=route, data=data), metadata=GO_METADATA
        ).SerializeToString()
    )


async def test_a_go_frontends_forwarded_request_and_notify() -> None:
    async with cluster() as net:
        go = await go_peer(net)
        request = pb.Request(
            type=pb.Sys,
            session=pb.Session(id=42, uid="gopher", data=b'{"ipversion":"ipv4"}'),
            msg=pb.Msg(id=3, route="room.ops.show", type=pb.MsgRequest),
            frontendID="go-1",
            metadata=GO_METADATA,
        )
        answer = pb.Response.FromString(
            await go.call(server(net, "room-1"), request.SerializeToString(), 5)
        )
        assert not answer.HasField("error")
        assert json.loads(answer.data) == {"uid": "gopher", "data": {"ipversion": "ipv4"}}

        request.msg.type = pb.MsgNotify
        request.msg.route = "room.ops.note"
        request.msg.data = b'{"text":"from go"}'
        answer = pb.Response.FromString(
            await go.call(server(net, "room-1"), request.SerializeToString(), 5)
        )
        assert answer.data == b"ack"  # as Go's handler pool answers a forwarded notify
        assert net.notes == ["from go"]

        request.msg.type = pb.MsgRequest
        request.msg.route = "room.ops.nothing"
        answer = pb.Response.FromString(
            await go.call(server(net, "room-1"), request.SerializeToString(), 5)
        )
        assert answer.error.code == "PIT-404"


async def test_go_backend_controls_on_our_frontend() -> None:
    async with cluster() as net:
        go = await go_peer(net)
        connector = server(net, "c-1")
        client = await net.client()
        sid = only_session(net).id

        bind = pb.Session(id=sid, uid="gopher").SerializeToString()
        answer = pb.Response.FromString(
            await go.call(connector, user_rpc("sys.bindsession", bind), 5)
        )
        # Go's Sys remote returns Response{"ack"}, marshalled into the answer's data.
        assert pb.Response.FromString(answer.data).data == b"ack"

        data = pb.Session(id=sid, uid="gopher", data=b'{"level":9}').SerializeToString()
        answer = pb.Response.FromString(
            await go.call(connector, user_rpc("sys.pushsession", data), 5)
        )
        assert pb.Response.FromString(answer.data).data == b"ack"
        assert await client.request("connector.entry.me", {}) == {
            "uid": "gopher",
            "data": {"level": 9},
        }

        push = pb.Push(route="onGo", uid="gopher", data=b'{"hi":1}').SerializeToString()
        answer = pb.Response.FromString(
            await go.call(connector, user_rpc("pysys.pushuser", push), 5)
        )
        assert answer.data == b"ack"

        kick = pb.KickMsg(userId="gopher").SerializeToString()
        answer = pb.Response.FromString(await go.call(connector, user_rpc("sys.kick", kick), 5))
        assert pb.KickAnswer.FromString(answer.data).kicked is True
        await client.wait_closed(5)
        assert client.kicked

        answer = pb.Response.FromString(await go.call(connector, user_rpc("sys.kick", kick), 5))
        assert answer.error.code == "PIT-404"  # nobody bound to gopher any more


async def test_a_go_push_and_kick_on_a_uid_subject() -> None:
    async with cluster() as net:
        go = await go_peer(net)
        client = await net.client()
        await client.request("connector.entry.login", {"uid": "gopher"})
        push = pb.Push(route="onGo", uid="gopher", data=b'{"hi":1}').SerializeToString()
        go.publish_user("connector", "gopher", "push", push)  # Go publishes; no answer
        assert (await next_push(client, "onGo")).body == {"hi": 1}
        kick = pb.KickMsg(userId="gopher").SerializeToString()
        go.publish_user("connector", "gopher", "kick", kick)
        await client.wait_closed(5)
        assert client.kicked


async def test_a_go_user_rpc_takes_and_gets_protobuf() -> None:
    async with cluster() as net:
        go = await go_peer(net)
        room = server(net, "room-1")
        arg = StringValue(value="gopher").SerializeToString()
        answer = pb.Response.FromString(await go.call(room, user_rpc("room.counts.upper", arg), 5))
        assert StringValue.FromString(answer.data).value == "GOPHER"

        # A remote that takes a dict is not for a Go caller: a clear PIT-400, not garbage.
        answer = pb.Response.FromString(await go.call(room, user_rpc("room.counts.caller", arg), 5))
        assert answer.error.code == "PIT-400"
        assert "declare the remote's parameter as a protobuf message class" in answer.error.msg


async def test_our_backend_reaches_a_go_frontend_the_go_way() -> None:
    """A session forwarded by a Go frontend has no py.session: the backend pushes to it by
    uid on the uid's subject and kicks it with sys.kick, as Go's backends do."""
    async with cluster() as net:
        go = await go_peer(net)
        # The Go frontend "go-1" is in discovery, without our pitayaActors key.
        me = ServerInfo("go-1", "gate", frontend=True)
        await net.network.discovery().start(me)
        received: asyncio.Queue[tuple[str, bytes, object]] = asyncio.Queue()
        await go.start(me, lambda kind, data, respond: received.put_nowait((kind, data, respond)))
        request = pb.Request(
            type=pb.Sys,
            session=pb.Session(id=42, uid="gopher"),
            msg=pb.Msg(route="room.ops.leave_me"),
            frontendID="go-1",
            metadata=GO_METADATA,
        )
        answer = await go.call(server(net, "room-1"), request.SerializeToString(), 5)
        assert not pb.Response.FromString(answer).HasField("error")
        kind, data, respond = await asyncio.wait_for(received.get(), 5)
        assert kind == "request"
        kick = pb.Request.FromString(data)
        assert (kick.type, kick.msg.route) == (pb.User, "sys.kick")
        assert pb.KickMsg.FromString(kick.msg.data).userId == "gopher"
        assert "py.session" not in json.loads(kick.metadata)
        assert respond is not None  # a call: Go answers every request


async def test_push_by_uid_where_a_go_frontend_may_hold_it_is_gos_publish() -> None:
    """Go never answers on a uid's subject: with a Go frontend of the type in discovery, a
    push by uid is published (counted as reached); with none, ours are asked as before."""
    async with cluster() as net:
        room = net.rooms[0]
        assert await room.send_push_to_users("onX", {}, ["nobody"]) == ["nobody"]
        assert await room.send_push_to_users("onX", {}, ["ann"], frontend_type="ghost") == ["ann"]

        go = await go_peer(net)
        me = ServerInfo("go-1", "connector", frontend=True)
        await net.network.discovery().start(me)
        received: asyncio.Queue[tuple[str, bytes, object]] = asyncio.Queue()
        await go.start(me, lambda kind, data, respond: received.put_nowait((kind, data, respond)))
        await go.listen_user("gopher")
        assert await room.send_push_to_users("onX", {"n": 1}, ["gopher", "nobody"]) == []
        kind, data, respond = await asyncio.wait_for(received.get(), 5)
        assert (kind, respond) == ("push", None)  # a publish, as Go's
        push = pb.Push.FromString(data)
        assert (push.uid, push.route, json.loads(push.data)) == ("gopher", "onX", {"n": 1})
