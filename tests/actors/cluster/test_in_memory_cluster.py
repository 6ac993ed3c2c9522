"""Cluster mode in one process, on the in-memory seams (``actors.cluster.memory``).

Frontends (``connector``) and backends (``room``) are real apps given a
:class:`MemoryCluster`'s discovery and RPC instead of etcd and NATS; clients reach the
frontends through ``TestClient`` (no sockets). Everything above the two seams is the code a
real cluster runs: routing, forwarding, the RPC bridge, backend sessions, push and kick by uid
(Pitaya's per-uid subjects), bind notices, user RPCs, and the etcd group service (on an
in-memory store with etcd's leases). The same behaviour against nats-server and etcd, with
each server in its own process, is in ``tests/cluster``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.actor import Actor
from actors.app import App
from actors.cluster.backend_session import BackendSession
from actors.cluster.bridge import RpcBridge
from actors.cluster.discovery import Registration, ServerInfo
from actors.cluster.memory import MemoryDiscovery, MemoryRpc
from actors.cluster.rpc import ClusterStartupError
from actors.errors import BadRequest, FrontendOnly, PitayaError, RpcTimeout
from actors.groups import GroupAlreadyExists
from actors.handler import Handler, Remote, handler
from actors.invocation import _Lane
from actors.modules.unique_session import UniqueSession
from actors.readiness import Readiness
from actors.session import Session
from actors.testing import MemoryCluster, Push, TestClient, cluster_app
from tests.actors.concurrency_support import Journal, Other, Send, Steps, body
from tests.reliability.support import until
from transport.client import Client, RequestError
from transport.errors import ConnectionClosed

GROUP = "lobby"


class Kicker(Actor):
    """Kicks the sessions it is told, in a turn of its own (as a room ending a match)."""

    def on_session(self, session: Session) -> None:
        session.kick("match over")


class Ops(Handler):
    """A room server's routes (``room.ops.*``), each showing one thing a backend can do."""

    service = "ops"

    def __init__(self, notes: list[str] | None = None) -> None:
        self.notes = notes if notes is not None else []
        self.release = asyncio.Event()

    def started(self) -> None:
        self.kicker = self.spawn(Kicker)

    @handler
    def whoami(self, session: Session) -> dict[str, str]:
        return {"server_id": self.app.server_id}

    @handler
    async def login(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        await session.bind(body["uid"])  # on the frontend, through the RPC
        session.set("level", body.get("level", 1))
        await session.push_to_front()  # type: ignore[attr-defined]
        session.push("onLogin", {"uid": session.uid})
        return {"uid": session.uid, "server_id": self.app.server_id}

    @handler
    def show(self, session: Session) -> dict[str, Any]:
        return {"uid": session.uid, "data": session.data}

    @handler
    def note(self, session: Session, body: dict[str, Any]) -> None:
        self.notes.append(body["text"])

    @handler
    def refuse(self, session: Session) -> dict[str, Any]:
        raise PitayaError("PIT-403", "not your turn", {"why": "test"})

    @handler
    def leave_me(self, session: Session) -> dict[str, Any]:
        session.kick("you asked")
        return {}

    @handler
    def bye(self, session: Session) -> dict[str, Any]:
        self.kicker.tell(session)  # kicked once this answered: in the kicker's next turn
        return {"bye": True}

    @handler
    def frontend_only(self, session: Session) -> dict[str, str]:
        try:
            session.on_close(lambda s: None)
        except FrontendOnly as exc:
            return {"error": type(exc).__name__}
        return {"error": ""}

    @handler
    async def push_to(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        poke = {"from": self.app.server_id}
        return {"failed": await self.app.send_push_to_users("onPoke", poke, body["uids"])}

    @handler
    def tell_push(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        self.app.push_to_users("onTold", {"n": body["n"]}, body["uids"])
        return {}

    @handler
    async def kick(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        return {"failed": await self.app.send_kick_to_users(body["uids"], "by uid")}

    @handler
    async def ask_front(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        front = session.frontend_id  # type: ignore[attr-defined]
        result: dict[str, Any] = await self.app.rpc_to(
            front, "connector.front.echo", body, session=session
        )
        return result

    @handler
    async def wait(self, session: Session) -> dict[str, Any]:
        await self.release.wait()
        return {}

    @handler
    async def join_group(self, session: Session) -> dict[str, Any]:
        assert session.uid is not None
        with suppress(GroupAlreadyExists):  # another room server was first
            await self.app.groups.create(GROUP)
        await self.app.groups.add(GROUP, session.uid)
        return {"members": await self.app.groups.members(GROUP)}

    @handler
    async def shout(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        unreached = await self.app.groups.broadcast(GROUP, "onShout", body)
        return {"unreached": unreached, "server_id": self.app.server_id}


class Counts(Remote):
    """A room server's user RPCs (``room.counts.*``)."""

    service = "counts"

    @handler
    def caller(self, caller: Session | None, body: dict[str, Any]) -> dict[str, Any]:
        read_only = isinstance(caller, BackendSession) and caller.read_only
        return {
            "server_id": self.app.server_id,
            "uid": caller.uid if caller is not None else None,
            "read_only": read_only,
            "body": body,
        }

    @handler
    def refuse(self, caller: Session | None, body: Any) -> dict[str, Any]:
        raise PitayaError("PIT-403", "no")

    @handler
    def timeout(self, caller: Session | None, body: Any) -> dict[str, Any]:
        raise RpcTimeout("rpc client: request timeout", {"from": "room"})

    @handler
    def upper(self, caller: Session | None, body: StringValue) -> StringValue:
        """Pitaya's way: a protobuf message in, one out (what a Go server can call too)."""
        return StringValue(value=body.value.upper())


class Entry(Handler):
    """A connector's own routes (``connector.entry.*``)."""

    service = "entry"

    @handler
    async def login(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        await session.bind(body["uid"])
        return {"uid": session.uid}

    @handler
    async def ask_room(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.app.rpc("room.counts.caller", body, session=session)
        return result

    @handler
    def me(self, session: Session) -> dict[str, Any]:
        return {"uid": session.uid, "data": session.data}


class Front(Remote):
    """A connector's user RPCs (``connector.front.*``): a backend calls back."""

    service = "front"

    @handler
    def echo(self, caller: Session | None, body: dict[str, Any]) -> dict[str, Any]:
        return {"server_id": self.app.server_id, "caller": caller.uid if caller else None, **body}


@dataclass
class Net:
    """A network of started apps and the ``TestClient`` of each connector."""

    network: MemoryCluster
    rooms: list[App]
    connectors: list[App]
    tests: list[TestClient]
    notes: list[str] = field(default_factory=list)

    async def client(self, connector: int = 0, **options: Any) -> Client:
        return await self.tests[connector].connect(**options)


def server(network: MemoryCluster, server_type: str, server_id: str, **options: Any) -> App:
    return cluster_app(network, server_type, server_id=server_id, **options)


@asynccontextmanager
async def cluster(
    rooms: int = 1,
    connectors: int = 1,
    *,
    room_setup: Callable[[App], None] | None = None,
    connector_setup: Callable[[App], None] | None = None,
    **options: Any,
) -> AsyncIterator[Net]:
    network = MemoryCluster()
    notes: list[str] = []
    async with AsyncExitStack() as stack:
        room_apps = []
        for i in range(1, rooms + 1):
            room = server(network, "room", f"room-{i}", frontend=False, **options)
            room.register(Ops, notes)
            room.register_remote(Counts)
            if room_setup is not None:
                room_setup(room)
            await stack.enter_async_context(room)
            room_apps.append(room)
        connector_apps, tests = [], []
        for i in range(1, connectors + 1):
            connector = server(network, "connector", f"c-{i}", **options)
            connector.register(Entry)
            connector.register_remote(Front)
            if connector_setup is not None:
                connector_setup(connector)
            test = TestClient(connector, request_timeout=5)
            await test.start()
            stack.push_async_callback(test.stop)
            connector_apps.append(connector)
            tests.append(test)
        yield Net(network, room_apps, connector_apps, tests, notes)


async def next_push(client: Client, route: str) -> Push:
    async def find() -> Push:
        async for push in client.pushes():
            if push.route == route:
                return push
        raise AssertionError(f"closed before a {route} push")

    return await asyncio.wait_for(find(), 2)


# -- discovery and routing ----------------------------------------------------------------


async def test_servers_see_each_other_at_once_and_forget_who_leaves() -> None:
    network = MemoryCluster()
    room = server(network, "room", "room-1", frontend=False)
    room.register(Ops)
    connector = server(network, "connector", "c-1", frontend=True)
    async with connector:
        assert connector.cluster is not None
        discovery = connector.cluster.discovery
        seen: list[tuple[str, bool]] = []
        discovery.add_listener(lambda s, added: seen.append((s.id, added)))
        assert discovery.servers("room") == []
        async with room:
            (found,) = discovery.servers("room")
            assert (found.id, found.type, found.frontend) == ("room-1", "room", False)
            assert discovery.server_types() == {"room", "connector"}
            assert await discovery.lookup("room", "room-1") == found
            assert connector.ready_now() and room.ready_now()
        assert discovery.servers("room") == []
        assert seen == [("room-1", True), ("room-1", False)]


async def test_readiness_says_which_phase_or_part_is_missing() -> None:
    """Not ready, and why: before the start, with the RPC transport down, once stopped."""
    network = MemoryCluster()
    room = server(network, "room", "room-1", frontend=False)
    assert room.readiness() == Readiness(False, "not started")
    async with room:
        assert room.readiness() == Readiness(True)
        assert room.cluster is not None
        assert room.cluster.registration is Registration.REGISTERED
        await room.cluster.rpc_server.stop()
        assert room.readiness() == Readiness(False, "RPC transport (MemoryRpc) down")
    assert room.readiness() == Readiness(False, "stopped")


class OwnDiscovery(MemoryDiscovery):
    """A discovery of one's own written before ``registration`` existed: ``registered``
    alone decides."""

    registration = None  # type: ignore[assignment]


async def test_a_discovery_without_registration_is_read_through_registered() -> None:
    network = MemoryCluster()
    room = App(
        server_type="room",
        server_id="room-1",
        mode="cluster",
        frontend=False,
        discovery=OwnDiscovery(network),
        rpc=network.rpc(),
    )
    async with room:
        assert room.cluster is not None
        assert room.cluster.registration is Registration.REGISTERED and room.ready_now()
        await room.cluster.discovery.stop()
        assert room.cluster.registration is Registration.UNREGISTERED
        assert room.readiness() == Readiness(False, "not registered in discovery")


async def test_a_server_id_is_taken_once() -> None:
    network = MemoryCluster()
    async with server(network, "room", "room-1", frontend=False):
        twin = server(network, "room", "room-1", frontend=False)
        with pytest.raises(ClusterStartupError, match="room-1"):
            await twin.start()


async def test_random_routing_spreads_and_a_custom_route_pins() -> None:
    def pin(session: Session | None, route: str, servers: list[ServerInfo]) -> ServerInfo:
        return max(servers, key=lambda s: s.id)

    async with cluster(rooms=3) as net:
        client = await net.client()
        seen = Counter([(await client.request("room.ops.whoami"))["server_id"] for _ in range(60)])
        assert set(seen) == {"room-1", "room-2", "room-3"}
        net.connectors[0].add_route("room", pin)
        pinned = {(await client.request("room.ops.whoami"))["server_id"] for _ in range(10)}
        assert pinned == {"room-3"}


async def test_a_stopped_server_is_not_chosen_and_rpcs_to_it_fail_at_once() -> None:
    async with cluster(rooms=2) as net:
        client = await net.client()
        await net.rooms[0].stop()
        servers = {(await client.request("room.ops.whoami"))["server_id"] for _ in range(20)}
        assert servers == {"room-2"}
        with pytest.raises(PitayaError) as caught:
            await net.connectors[0].rpc_to("room-1", "room.counts.caller", {})
        assert caught.value.code == "PIT-500"


async def test_a_backend_s_stop_finishes_the_messages_queued_behind_a_running_one() -> None:
    """A frontend pipelines a session's messages to one service: the backend received the
    second while the first ran, and it waited there for its turn. The stop counted only the
    running one, so it went on to close the cluster and the second ran against it: the
    client got PIT-500 "cluster unavailable" for a request received before the stop."""
    async with cluster(shutdown_timeout=30) as net:
        client = await net.client()
        room = net.rooms[0]
        assert room.cluster is not None and room.cluster.bridge is not None
        bridge = room.cluster.bridge._cell.actor
        assert isinstance(bridge, RpcBridge)
        waiting = asyncio.ensure_future(client.request("room.ops.wait"))
        login = asyncio.ensure_future(client.request("room.ops.login", {"uid": "ann"}))
        await until(lambda: _queued(bridge) == 1)  # the login waits behind the running wait
        stopping = asyncio.ensure_future(room.stop())
        front = net.connectors[0].cluster
        assert front is not None
        await until(lambda: not front.discovery.servers("room"))  # left: the stop waits now
        ops = room.handler_instance("ops")
        assert isinstance(ops, Ops)
        ops.release.set()
        assert await asyncio.wait_for(waiting, 5) == {}
        assert await asyncio.wait_for(login, 5) == {"uid": "ann", "server_id": "room-1"}
        await asyncio.wait_for(stopping, 10)
        assert room.requests_in_flight.count == 0


def _queued(bridge: RpcBridge) -> int:
    """Forwarded messages waiting in the bridge's sequencer for their session's turn."""
    return sum(
        len(lane.jobs) for lane in bridge.sequencer._lanes.values() if isinstance(lane, _Lane)
    )


# -- forwarding ----------------------------------------------------------------------------


async def test_requests_and_notifies_are_forwarded_with_the_backends_errors() -> None:
    async with cluster() as net:
        client = await net.client()
        assert await client.request("room.ops.whoami") == {"server_id": "room-1"}
        await client.notify("room.ops.note", {"text": "hello"})
        assert await client.request("room.ops.whoami") == {"server_id": "room-1"}
        assert net.notes == ["hello"]  # a forwarded notify is acked before the next message
        with pytest.raises(RequestError) as caught:
            await client.request("room.ops.nope")
        assert caught.value.code == "PIT-404"
        assert caught.value.msg == "pitaya/handler: room.ops.nope not found"  # as Go's
        with pytest.raises(RequestError) as caught:  # a service the backend does not have
            await client.request("room.nosuch.thing")
        assert (caught.value.code, caught.value.msg) == (
            "PIT-404",
            "pitaya/handler: room.nosuch.thing not found",
        )
        with pytest.raises(RequestError) as caught:
            await client.request("room.ops.refuse")
        assert (caught.value.code, caught.value.metadata) == ("PIT-403", {"why": "test"})
        with pytest.raises(RequestError) as caught:
            await client.request("chat.room.join", {})
        assert caught.value.code == "PIT-500"  # no server of that type


async def test_an_unanswered_forward_is_pitayas_rpc_timeout() -> None:
    """With the metadata Go Pitaya's RPC client gives its PIT-408."""
    async with cluster(rpc_timeout=0.02) as net:
        client = await net.client()
        with pytest.raises(RequestError) as caught:
            await client.request("room.ops.wait")
        assert (caught.value.code, caught.value.msg) == ("PIT-408", "rpc client: request timeout")
        assert caught.value.metadata == {
            "timeout": "20ms",
            "route": "room.ops.wait",
            "server": "c-1",
            "peer.id": "room-1",
        }
        ops = net.rooms[0].handler_instance("ops")
        assert isinstance(ops, Ops)
        ops.release.set()


# -- backend sessions ----------------------------------------------------------------------


async def test_a_backend_binds_stores_data_and_pushes_through_the_frontend() -> None:
    async with cluster() as net:
        client = await net.client()
        reply = await client.request("room.ops.login", {"uid": "ann", "level": 7})
        assert reply == {"uid": "ann", "server_id": "room-1"}
        assert (await next_push(client, "onLogin")).body == {"uid": "ann"}
        assert await client.request("connector.entry.me") == {"uid": "ann", "data": {"level": 7}}
        # The next forwarded message carries the frontend session as it is now.
        assert await client.request("room.ops.show") == {"uid": "ann", "data": {"level": 7}}
        session = net.connectors[0].sessions.by_uid("ann")
        assert session is not None
        assert await client.request("room.ops.frontend_only") == {"error": "FrontendOnly"}
        with pytest.raises(RequestError) as caught:  # bound once
            await client.request("room.ops.login", {"uid": "bob"})
        assert caught.value.code == "PIT-409"


async def test_a_backend_kicks_its_client() -> None:
    async with cluster() as net:
        client = await net.client()
        # As on a frontend's own handler: the kick is ordered before the response, so the
        # request sees the connection end.
        with pytest.raises(ConnectionClosed):
            await client.request("room.ops.leave_me")
        await client.wait_closed(timeout=2)
        assert client.kicked


async def test_a_kick_made_after_a_backend_answered_reaches_the_client_after_the_answer() -> None:
    """As over NATS: the answer left the backend first, so the client gets it first. The
    frontend took the answer a few turns of the loop after it came (the call was a task of
    the bridge) and the kick, sent later, went past it: the request saw the connection end."""
    async with cluster() as net:
        client = await net.client()
        assert await client.request("room.ops.bye") == {"bye": True}
        await client.wait_closed(timeout=2)
        assert client.kicked


async def test_backends_hear_of_binds_and_closes_of_the_sessions_they_served() -> None:
    events: list[tuple[str, str | None]] = []

    def setup(room: App) -> None:
        room.on_remote_session_bind(lambda s: events.append(("bind", s.uid)))
        room.on_remote_session_close(
            lambda s: events.append(("close", s.uid)), route="room.ops.whoami"
        )

    async with cluster(room_setup=setup) as net:
        client = await net.client()
        await client.request("room.ops.whoami")
        await client.request("connector.entry.login", {"uid": "ann"})
        await client.close()
        await until(lambda: len(events) == 2)
        assert events == [("bind", "ann"), ("close", "ann")]


@pytest.mark.parametrize("route", ["room.whoami", "ops.whoami", "connector.ops.whoami"])
def test_a_session_event_filter_no_forwarded_route_can_match_is_refused(route: str) -> None:
    """A frontend records the routes it forwarded as the client sent them
    (``room.ops.whoami``): a filter naming the route as its own server names it
    (``ops.whoami``), or another server type's, never matched and its callback never ran."""
    room = cluster_app(MemoryCluster(), "room", frontend=False)
    for subscribe in (room.on_remote_session_close, room.on_remote_session_bind):
        with pytest.raises(ValueError, match=r"as room\.<service>\.<method>") as refused:
            subscribe(lambda s: None, route=route)
        assert ("(room.ops.whoami?)" in str(refused.value)) == (route == "ops.whoami")
    room.on_remote_session_close(lambda s: None, route="room.ops.whoami")  # fine


async def close_behind_a_wait(net: Net) -> tuple[RpcBridge, Ops]:
    """A client's ``room.ops.wait`` runs on the room, then the client leaves: its session's
    close waits on the room, behind the wait (until ``ops.release``)."""
    room = net.rooms[0]
    assert room.cluster is not None and room.cluster.bridge is not None
    bridge = room.cluster.bridge._cell.actor
    assert isinstance(bridge, RpcBridge)
    ops = room.handler_instance("ops")
    assert isinstance(ops, Ops)
    client = await net.client()
    waiting = asyncio.ensure_future(client.request("room.ops.wait"))
    await until(lambda: len(bridge.sequencer) == 1)  # the wait runs on the room
    await client.close()
    with pytest.raises(ConnectionClosed):  # the client gave up on it
        await waiting
    await until(lambda: _queued(bridge) == 1)  # the close waits for its turn
    return bridge, ops


async def test_a_close_waits_for_the_messages_of_its_session_the_backend_holds() -> None:
    """Per session, in order, the close too: a close that came while a forwarded message
    still ran (a slow ``join``) was handled first, and the join then added a member that no
    close would ever remove."""
    events: list[str] = []

    def setup(room: App) -> None:
        room.on_remote_session_close(lambda s: events.append("close"))

    async with cluster(room_setup=setup) as net:
        bridge, ops = await close_behind_a_wait(net)
        assert events == []
        ops.release.set()
        await until(lambda: events == ["close"])
        await until(lambda: len(bridge.sequencer) == 0 and len(bridge.carry) == 0)


async def test_a_backend_s_stop_waits_for_a_close_received_before_it() -> None:
    """A close that waited behind its session's running message was not counted in flight:
    once that message answered the count was zero, the stop went on and the actor system's
    shutdown cancelled the close callback (a player's state being saved)."""
    saving, saved = asyncio.Event(), asyncio.Event()
    done: list[int] = []

    async def save(session: Session) -> None:
        saving.set()
        await saved.wait()
        done.append(session.id)

    def setup(room: App) -> None:
        room.on_remote_session_close(save)

    async with cluster(room_setup=setup, shutdown_timeout=30) as net:
        room = net.rooms[0]
        _, ops = await close_behind_a_wait(net)
        stopping = asyncio.ensure_future(room.stop())
        ops.release.set()
        await asyncio.wait_for(saving.wait(), 5)
        assert room.requests_in_flight.count == 1  # the stop waits for the close
        saved.set()
        await asyncio.wait_for(stopping, 10)
        assert len(done) == 1


# -- push and kick by uid across frontends -------------------------------------------------


async def test_push_and_kick_by_uid_reach_users_on_another_frontend() -> None:
    async with cluster(connectors=2) as net:
        ann, bob = await net.client(0), await net.client(1)
        await ann.request("connector.entry.login", {"uid": "ann"})
        await bob.request("connector.entry.login", {"uid": "bob"})
        # A backend pushes to users bound on two frontends; nobody holds "ghost".
        reply = await ann.request("room.ops.push_to", {"uids": ["ann", "bob", "ghost"]})
        assert reply == {"failed": ["ghost"]}
        assert (await next_push(ann, "onPoke")).body == {"from": "room-1"}
        assert (await next_push(bob, "onPoke")).body == {"from": "room-1"}
        # A push as a tell (an actor that must not wait) arrives in the order told.
        for n in range(3):
            await ann.request("room.ops.tell_push", {"n": n, "uids": ["bob"]})
        assert [(await next_push(bob, "onTold")).body["n"] for _ in range(3)] == [0, 1, 2]
        # A frontend pushes to a user on the other frontend, without a backend.
        assert await net.connectors[0].send_push_to_users("onHi", {"x": 1}, ["bob"]) == []
        assert (await next_push(bob, "onHi")).body == {"x": 1}
        # Kick by uid across frontends.
        assert await ann.request("room.ops.kick", {"uids": ["bob", "ghost"]}) == {
            "failed": ["ghost"]
        }
        await bob.wait_closed(timeout=2)
        assert bob.kicked and not ann.closed
        assert bob.kick_reason == "by uid"  # the backend's reason, across servers
        # Gone with its session: unreachable now, answered at once.
        await until(lambda: net.connectors[1].sessions.by_uid("bob") is None)
        assert await net.rooms[0].send_push_to_users("onPoke", {}, ["bob"]) == ["bob"]


async def test_unique_session_kicks_the_older_session_on_another_frontend() -> None:
    def setup(connector: App) -> None:
        connector.register_module(UniqueSession(connector), "unique_session")

    async with cluster(connectors=2, connector_setup=setup) as net:
        first, second = await net.client(0), await net.client(1)
        await first.request("connector.entry.login", {"uid": "ann"})
        await second.request("connector.entry.login", {"uid": "ann"})  # the bind notice
        await first.wait_closed(timeout=2)
        assert first.kicked and not second.closed
        assert await second.request("connector.entry.me") == {"uid": "ann", "data": {}}


async def test_a_bind_refused_after_its_kick_leaves_the_uid_to_the_frontend_holding_it() -> None:
    """A bind of ann kicked her older session on c-1, then a later bind callback refused it:
    the older session's close had left ann's subjects (a bind of ann was under way), and
    nothing dropped them. Logged in on c-2 afterwards, ann was still answered for by c-1,
    as not here: a push by uid reached her but was reported failed."""

    def refuse(session: Session) -> None:
        raise BadRequest("closed for the night")

    async with cluster(connectors=2, unique_session=True) as net:
        old, new, elsewhere = await net.client(0), await net.client(0), await net.client(1)
        await old.request("connector.entry.login", {"uid": "ann"})
        net.connectors[0].sessions.on_session_bind(refuse)  # after the unique session's
        with pytest.raises(RequestError) as refused:
            await new.request("connector.entry.login", {"uid": "ann"})
        assert refused.value.code == "PIT-400"
        await old.wait_closed(timeout=2)
        assert old.kicked
        await elsewhere.request("connector.entry.login", {"uid": "ann"})
        for _ in range(3):
            assert await net.rooms[0].send_push_to_users("onPoke", {}, ["ann"]) == []
            assert (await next_push(elsewhere, "onPoke")).body == {}


async def test_the_unique_session_option_runs_the_module_on_frontends_only() -> None:
    """Go Pitaya's pitaya.session.unique: the module without registering it by hand."""
    async with cluster(connectors=2, unique_session=True) as net:
        assert isinstance(net.connectors[0].get_module("unique_session"), UniqueSession)
        assert not [m for _, m in net.rooms[0].modules if isinstance(m, UniqueSession)]
        first, second = await net.client(0), await net.client(1)
        await first.request("connector.entry.login", {"uid": "ann"})
        await second.request("connector.entry.login", {"uid": "ann"})
        await first.wait_closed(timeout=2)
        assert first.kicked and not second.closed


async def test_without_unique_sessions_a_uid_may_be_bound_twice() -> None:
    async with cluster(connectors=2) as net:
        first, second = await net.client(0), await net.client(1)
        await first.request("connector.entry.login", {"uid": "ann"})
        await second.request("connector.entry.login", {"uid": "ann"})
        for client in (first, second):
            assert await client.request("connector.entry.me") == {"uid": "ann", "data": {}}


async def test_a_unique_session_module_of_your_own_is_not_doubled_by_the_option() -> None:
    def setup(connector: App) -> None:
        connector.register_module(UniqueSession(connector), "mine")

    async with cluster(connector_setup=setup, unique_session=True) as net:
        names = [n for n, m in net.connectors[0].modules if isinstance(m, UniqueSession)]
        assert names == ["mine"]


# -- user RPCs, both ways ------------------------------------------------------------------


async def test_user_rpcs_from_a_frontend_to_a_backend_and_back() -> None:
    async with cluster(connectors=2) as net:
        client = await net.client(1)
        await client.request("connector.entry.login", {"uid": "ann"})
        # Frontend -> backend, with the caller's session (read-only there).
        assert await client.request("connector.entry.ask_room", {"q": 1}) == {
            "server_id": "room-1",
            "uid": "ann",
            "read_only": True,
            "body": {"q": 1},
        }
        # Backend -> the frontend the session is on (c-2, not c-1), by id.
        assert await client.request("room.ops.ask_front", {"n": 2}) == {
            "server_id": "c-2",
            "caller": "ann",
            "n": 2,
        }
        # From outside any session, with the remote's error code; routes must be full.
        room = net.rooms[0]
        reply = await room.rpc("connector.front.echo", {"n": 3})
        assert reply["caller"] is None and reply["server_id"] in ("c-1", "c-2")
        with pytest.raises(PitayaError) as caught:
            await net.connectors[0].rpc("room.counts.refuse")
        assert caught.value.code == "PIT-403"
        with pytest.raises(PitayaError) as caught:
            await net.connectors[0].rpc("room.counts.nope")
        assert caught.value.code == "PIT-404"
        assert caught.value.msg == "route not found"  # as Go answers for a remote
        with pytest.raises(PitayaError) as caught:
            await room.rpc("counts.caller")
        assert caught.value.code == "PIT-400"


async def test_user_rpcs_with_protobuf_messages_as_pitaya_makes_them() -> None:
    async with cluster(connectors=1) as net:
        connector = net.connectors[0]
        arg = StringValue(value="ann")
        # The answer's bytes, as Pitaya returns them, or parsed into the reply class.
        raw = await connector.rpc("room.counts.upper", arg)
        assert StringValue.FromString(raw) == StringValue(value="ANN")
        assert await connector.rpc("room.counts.upper", arg, reply=StringValue) == StringValue(
            value="ANN"
        )
        assert await connector.rpc_to(
            "room-1", "room.counts.upper", arg.SerializeToString(), reply=StringValue
        ) == StringValue(value="ANN")


@dataclass
class Tally:
    server_id: str
    uid: str | None
    read_only: bool
    body: dict[str, Any]


@dataclass
class Upper:
    value: int


async def test_a_remote_s_own_pit_408_keeps_its_metadata() -> None:
    """Only the timeout this server waited out gets Go's metadata; a PIT-408 the remote
    itself answered (its own call timed out) is passed on as it is."""
    async with cluster(connectors=1) as net:
        with pytest.raises(PitayaError) as caught:
            await net.connectors[0].rpc("room.counts.timeout", {})
        assert (caught.value.code, caught.value.metadata) == ("PIT-408", {"from": "room"})


async def test_between_our_servers_a_reply_may_be_a_dataclass() -> None:
    async with cluster(connectors=1) as net:
        connector = net.connectors[0]
        tally = await connector.rpc("room.counts.caller", {"n": 1}, reply=Tally)
        assert tally == Tally("room-1", None, False, {"n": 1})
        with pytest.raises(PitayaError) as caught:
            await connector.rpc("room.counts.caller", {"n": 1}, reply=Upper)
        assert caught.value.code == "PIT-500"
        assert caught.value.msg.startswith("the answer of room.counts.caller is no Upper: ")
        with pytest.raises(TypeError, match="reply must be a protobuf message class"):
            await connector.rpc("room.counts.caller", {"n": 1}, reply=dict)


# -- groups across servers -----------------------------------------------------------------


async def test_groups_are_shared_by_every_server_and_reach_members_anywhere() -> None:
    async with cluster(rooms=2, connectors=2) as net:
        ann, bob = await net.client(0), await net.client(1)
        await ann.request("connector.entry.login", {"uid": "ann"})
        await bob.request("connector.entry.login", {"uid": "bob"})
        # Each joins through whichever room server the router picks: one group for all.
        await ann.request("room.ops.join_group")
        reply = await bob.request("room.ops.join_group")
        assert reply == {"members": ["ann", "bob"]}
        for app in (*net.rooms, *net.connectors):
            assert await app.groups.members(GROUP) == ["ann", "bob"]
        # A broadcast from any server reaches the members on both frontends.
        reply = await ann.request("room.ops.shout", {"text": "hi"})
        assert reply["unreached"] == []
        assert (await next_push(ann, "onShout")).body == {"text": "hi"}
        assert (await next_push(bob, "onShout")).body == {"text": "hi"}
        assert await net.connectors[1].groups.broadcast(GROUP, "onShout", {"text": "2"}) == []
        assert (await next_push(ann, "onShout")).body == {"text": "2"}
        # A member whose client leaves leaves every group (its frontend removes it).
        await bob.close()
        await until(lambda: net.connectors[1].connection_count == 0)  # its teardown is done
        assert await net.rooms[1].groups.members(GROUP) == ["ann"]


async def test_a_uid_still_connected_on_its_frontend_stays_in_its_groups() -> None:
    async with cluster() as net:
        first, second = await net.client(0), await net.client(0)
        for client in (first, second):  # no unique session module: both stay bound
            await client.request("connector.entry.login", {"uid": "ann"})
        await first.request("room.ops.join_group")
        await first.close()
        await until(lambda: net.connectors[0].connection_count == 1)  # its teardown is done
        # The uid left the group with its first session, though its second one is open.
        assert await net.rooms[0].groups.members(GROUP) == ["ann"]
        reply = await second.request("room.ops.shout", {"text": "hi"})
        assert reply["unreached"] == []


@pytest.mark.looptime
async def test_a_group_with_a_ttl_expires_unless_used() -> None:
    async with cluster(rooms=2) as net:
        one, two = net.rooms
        await one.groups.create("short", ttl=5)
        await one.groups.add("short", "ann")
        await asyncio.sleep(4)
        assert await two.groups.members("short") == ["ann"]  # every use renews the lease
        await asyncio.sleep(4)
        assert await two.groups.exists("short")
        await asyncio.sleep(6)
        assert not await two.groups.exists("short")
        assert net.network.store.data == {}


# -- wiring --------------------------------------------------------------------------------


def test_the_seams_belong_to_cluster_mode() -> None:
    network = MemoryCluster()
    with pytest.raises(ValueError, match="mode='cluster'"):
        App(server_type="room", discovery=network.discovery())
    with pytest.raises(ValueError, match="mode='cluster'"):
        App(server_type="room", rpc=network.rpc())


async def test_a_transport_without_user_subjects_needs_the_binding_storage() -> None:
    class NoSubjects:
        """The in-memory RPC, minus Pitaya's per-uid subjects (as gRPC)."""

        def __init__(self, network: MemoryCluster) -> None:
            self.inner = network.rpc().client

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        user_subjects = None

    network = MemoryCluster()
    rpc = NoSubjects(network)
    app = App(
        server_type="room",
        mode="cluster",
        discovery=network.discovery(),
        rpc=(rpc, rpc),  # type: ignore[arg-type]
    )
    with pytest.raises(ClusterStartupError, match="binding storage"):
        await app.start()


async def test_a_discovery_without_groups_needs_a_group_service() -> None:
    class NoGroups:
        def __init__(self, network: MemoryCluster) -> None:
            self.inner = network.discovery()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def group_service(self, push: Any) -> None:
            return None

    network = MemoryCluster()
    app = App(
        server_type="room",
        mode="cluster",
        discovery=NoGroups(network),  # type: ignore[arg-type]
        rpc=network.rpc(),
    )
    with pytest.raises(ClusterStartupError, match="set_group_service"):
        await app.start()
    shared = MemoryCluster().discovery().group_service(app.send_push_to_users)
    assert shared is not None
    app = App(
        server_type="room",
        mode="cluster",
        discovery=NoGroups(network),  # type: ignore[arg-type]
        rpc=network.rpc(),
    )
    app.set_group_service(shared)
    async with app:
        assert app.groups is shared


# -- per-session order across a forwarded hop ----------------------------------------------

FORWARDED = st.builds(
    Send,
    route=st.sampled_from(
        ["room.steps.quick", "room.steps.slow", "room.other.quick", "room.other.slow"]
    ),
    notify=st.booleans(),
    spins=st.integers(0, 3),
    delay=st.sampled_from([0.0, 0.0, 0.001]),
)


async def send_all(client: Client, sends: list[Send], first_n: int) -> list[int]:
    calls = []
    for i, send in enumerate(sends):
        call = client.notify if send.notify else client.request
        calls.append(asyncio.ensure_future(call(send.route, body(first_n + i, send))))
    await asyncio.gather(*calls)
    last = first_n + len(sends)
    assert await client.request("room.steps.quick", {"n": last}) == {"n": last}
    return [*range(first_n, last + 1)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequences=st.lists(st.lists(FORWARDED, min_size=2, max_size=10), min_size=1, max_size=4))
async def test_per_session_order_holds_across_a_forwarded_hop(sequences: list[list[Send]]) -> None:
    journal: Journal = []

    def setup(room: App) -> None:
        room.register(Steps, journal)
        room.register(Other, journal)

    async with cluster(rooms=2, room_setup=setup) as net:
        clients = [await net.client() for _ in sequences]
        sent_lists = await asyncio.gather(
            *(
                send_all(c, seq, 1000 * k)
                for k, (c, seq) in enumerate(zip(clients, sequences, strict=True))
            )
        )
    for numbers in sent_lists:  # a backend session has its frontend session's id
        (session_id,) = {sid for sid, n, _ in journal if n == numbers[0]}
        events = [(n, what) for sid, n, what in journal if sid == session_id]
        assert events == [(n, what) for n in numbers for what in ("start", "end")]


async def test_an_in_memory_call_given_up_by_its_caller_ends_quietly() -> None:
    """The caller cancelled (its own timeout, a stop): the call's timer still fired and set
    the abandoned future, an InvalidStateError in a loop callback."""
    network = MemoryCluster()
    silent, caller = network.rpc().client, network.rpc().client
    assert isinstance(silent, MemoryRpc) and isinstance(caller, MemoryRpc)
    await silent.connect()
    await caller.connect()
    me = ServerInfo(id="silent-1", type="silent", frontend=False)
    await silent.start(me, lambda kind, data, respond: None)  # never answers
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        calling = asyncio.ensure_future(caller.call(me, b"x", timeout=0.05))
        await asyncio.sleep(0)  # sent
        calling.cancel()
        with pytest.raises(asyncio.CancelledError):
            await calling
        timed_out = asyncio.Event()
        loop.call_later(0.1, timed_out.set)  # past the call's timeout
        await timed_out.wait()
        assert errors == []
    finally:
        loop.set_exception_handler(None)
