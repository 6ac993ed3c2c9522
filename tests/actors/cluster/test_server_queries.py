"""The servers of the cluster, as an app and its handlers see them (Pitaya's ``GetServer``,
``GetServers``, ``GetServersByType``, ``GetServerByID``): ``App.server``, ``servers``,
``servers_by_type``, ``server_by_id``. Cluster apps here share a :class:`MemoryCluster`; the
same table follows etcd in a real cluster (``tests/cluster``).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from actors.app import App
from actors.handler import Handler, handler
from actors.session import Session
from actors.testing import MemoryCluster, TestClient, cluster_app
from tests.reliability.support import until


class Lobby(Handler):
    """A connector route that picks a room server the way a Pitaya handler would."""

    service = "lobby"

    @handler
    def rooms(self, session: Session) -> dict[str, Any]:
        rooms = self.app.servers_by_type("room")
        return {
            "me": self.app.server().id,
            "rooms": sorted(rooms),
            "hosts": sorted({s.hostname for s in rooms.values()}),
            "first": self.app.server_by_id(min(rooms)).type if rooms else None,
        }


async def test_an_app_sees_every_server_of_the_cluster_itself_included() -> None:
    network = MemoryCluster()
    connector = cluster_app(network, "connector", server_id="c-1", frontend=True)
    rooms = [
        cluster_app(network, "room", server_id=f"r-{n}", metadata={"region": f"eu-{n}"})
        for n in (2, 1)
    ]
    async with AsyncExitStack() as stack:
        for app in (connector, *rooms):
            await stack.enter_async_context(app)
        await until(lambda: len(connector.servers()) == 3)

        assert [(s.type, s.id) for s in connector.servers()] == [
            ("connector", "c-1"),
            ("room", "r-1"),
            ("room", "r-2"),
        ]
        by_type = connector.servers_by_type("room")
        assert sorted(by_type) == ["r-1", "r-2"]
        assert by_type["r-2"].metadata["region"] == "eu-2"
        assert not by_type["r-1"].frontend
        assert connector.servers_by_type("shop") == {}
        assert connector.server_by_id("r-1") is by_type["r-1"]
        assert connector.server_by_id("nobody") is None
        me = connector.server()
        assert (me.id, me.type, me.frontend) == ("c-1", "connector", True)
        assert connector.server_by_id("c-1") is me

        await rooms[0].stop()
        await until(lambda: "r-2" not in connector.servers_by_type("room"))
        assert sorted(connector.servers_by_type("room")) == ["r-1"]
        assert connector.server_by_id("r-2") is None


async def test_a_handler_queries_the_servers_through_self_app() -> None:
    network = MemoryCluster()
    connector = cluster_app(network, "connector", server_id="c-1", frontend=True)
    connector.register(Lobby)
    room = cluster_app(network, "room", server_id="r-1")
    async with room, TestClient(connector) as client:
        await until(lambda: "r-1" in connector.servers_by_type("room"))
        answer = await client.request("connector.lobby.rooms", {})
    assert answer == {
        "me": "c-1",
        "rooms": ["r-1"],
        "hosts": [room.server().hostname],
        "first": "room",
    }


async def test_standalone_the_server_is_alone() -> None:
    app = App(server_type="chat", server_id="chat-1", metadata={"zone": "a"})
    app.listen_tcp("127.0.0.1", 0)
    me = app.server()
    assert (me.id, me.type, me.frontend, me.metadata) == ("chat-1", "chat", True, {"zone": "a"})
    assert [s.id for s in app.servers()] == ["chat-1"]
    assert list(app.servers_by_type("chat")) == ["chat-1"]
    assert app.servers_by_type("room") == {}
    assert app.server_by_id("chat-1") == me
    assert app.server_by_id("room-1") is None
