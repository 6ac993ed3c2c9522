"""The cluster sample's chat room when a client leaves while its join is on its way.

The join (on a room server) binds on the frontend, then adds the member to the etcd group
and to the room actor; the client's close (on the connector) tells the room it left. When
the close comes between the two, the leave reached the room first and the join added a
member nobody would ever remove: the room now remembers who left before joining.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from actors.session import SessionClosed
from actors.system import ActorSystem
from actors.testing import MemoryCluster, TestClient
from samples.chat import room as room_module
from samples.chat.room import GONE_FOR, GROUP, ChatRoom, CountMembers, Join, MemberLeft
from samples.cluster.servers import ROOM_ACTOR, build_connector, build_room
from tests.reliability.support import until


async def test_a_client_that_leaves_while_its_join_is_on_its_way_is_no_member() -> None:
    network = MemoryCluster()
    room = build_room("room-1", "nats://unused", "unused:1", **seams(network))
    connector = build_connector(
        "c-1", "nats://unused", "unused:1", tcp_port=0, ws_port=0, **seams(network)
    )
    adding, added, removing = asyncio.Event(), asyncio.Event(), asyncio.Event()
    async with room, TestClient(connector) as ann:
        add, remove = room.groups.add, room.groups.remove

        async def slow_add(group: str, uid: str) -> None:  # etcd, slow this time
            adding.set()
            await added.wait()
            await add(group, uid)

        async def told_remove(group: str, uid: str) -> None:  # the leave, after the room's
            removing.set()
            await remove(group, uid)

        room.groups.add = slow_add  # type: ignore[method-assign]
        room.groups.remove = told_remove  # type: ignore[method-assign]
        joining = asyncio.ensure_future(ann.request("room.room.join", {"name": "ann"}))
        await asyncio.wait_for(adding.wait(), 5)
        await ann.close()
        await until(lambda: connector.connection_count == 0)
        await asyncio.wait_for(removing.wait(), 5)  # the connector's leave reached the room
        added.set()
        await asyncio.gather(joining, return_exceptions=True)
        await until(lambda: room.invoker.running == 0)
        room_actor = room.system.lookup(ROOM_ACTOR)
        assert room_actor is not None
        assert await room_actor.ask(CountMembers()) == 0
        assert await room.groups.members(GROUP) == []


async def test_a_uid_left_in_the_group_by_a_crashed_frontend_or_a_lost_group_still_joins() -> None:
    """A connector killed with SIGKILL leaves its members in etcd (no close callback ran);
    restarted, it numbers its sessions from 1 again, and the new session's join got PIT-409.
    A group lost with etcd's data made every join PIT-404 until a room server restarted."""
    network = MemoryCluster()
    room = build_room("room-1", "nats://unused", "unused:1", **seams(network))
    connector = build_connector(
        "c-1", "nats://unused", "unused:1", tcp_port=0, ws_port=0, **seams(network)
    )
    test = TestClient(connector)
    async with room:
        await test.start()
        try:
            ann = await test.connect()
            [session] = connector.sessions
            ghost = f"c-1:{session.id}"  # what the crashed run left under this uid
            await room.groups.add(GROUP, ghost)
            assert (await ann.request("room.room.join", {"name": "ann"}))["result"] == "success"
            assert await room.groups.members(GROUP) == [ghost]
            await room.groups.delete(GROUP)  # etcd lost its data
            bob = await test.connect()
            assert (await bob.request("room.room.join", {"name": "bob"}))["result"] == "success"
            bob_uid = (await bob.request("room.room.session_data"))["uid"]
            assert await room.groups.members(GROUP) == [bob_uid]
        finally:
            await test.stop()


async def test_a_uid_that_left_before_joining_is_refused_a_while_not_for_good(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The room remembers a uid whose leave overtook its join. For good, a uid used again
    (a connector restarted after a crash numbers its sessions from 1 again) was refused."""
    pushes: list[Any] = []
    async with ActorSystem() as system:
        room = system.spawn(ChatRoom, lambda *push: pushes.append(push))
        await room.ask(MemberLeft("c-1:1"))
        with pytest.raises(SessionClosed):
            await room.ask(Join("c-1:1", "ann"))
        await room.ask(MemberLeft("c-1:2"))
        later = time.monotonic() + GONE_FOR + 1
        monkeypatch.setattr(room_module, "time", SimpleNamespace(monotonic=lambda: later))
        assert await room.ask(Join("c-1:2", "bob")) == ["bob"]


def seams(network: MemoryCluster) -> dict[str, Any]:
    return {"discovery": network.discovery(), "rpc": network.rpc()}
