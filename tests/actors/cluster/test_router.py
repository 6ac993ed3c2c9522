"""The router: which server of a type serves a route (default random, or a custom choice)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from actors.cluster.discovery import ServerInfo
from actors.cluster.router import NoServersAvailable, Router
from actors.errors import InternalError, PitayaError


class Servers:
    """The one thing the router reads from discovery: the live servers of a type."""

    def __init__(self, *servers: ServerInfo) -> None:
        self.table = list(servers)
        self.asked: list[str] = []

    def servers(self, server_type: str) -> list[ServerInfo]:
        self.asked.append(server_type)
        return [s for s in self.table if s.type == server_type]


def room(n: int) -> ServerInfo:
    return ServerInfo(id=f"room-{n}", type="room", hostname="h")


def router_over(*servers: ServerInfo) -> tuple[Router, Servers]:
    discovery = Servers(*servers)
    return Router(discovery), discovery  # type: ignore[arg-type]


def test_no_server_of_the_type_is_pitayas_pit_500() -> None:
    router, _ = router_over(ServerInfo(id="chat-1", type="chat", hostname="h"))
    with pytest.raises(NoServersAvailable) as caught:
        router.pick("room", "room.room.join", None)
    error = caught.value
    assert isinstance(error, InternalError) and isinstance(error, PitayaError)
    assert error.code == "PIT-500"
    assert error.msg == "no servers available of type room"
    assert error.metadata["server_type"] == "room"


def test_the_only_server_is_picked_without_randomness(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_random(servers: Any) -> Any:
        raise AssertionError("random.choice called for a single server")

    monkeypatch.setattr(random, "choice", no_random)
    router, discovery = router_over(room(1))
    assert router.pick("room", "room.room.join", None) == room(1)
    assert discovery.asked == ["room"]


def test_default_choice_spreads_over_every_live_server() -> None:
    random.seed(7)
    router, _ = router_over(room(1), room(2), room(3))
    picked = Counter(router.pick("room", "room.room.join", None).id for _ in range(300))
    assert set(picked) == {"room-1", "room-2", "room-3"}
    assert min(picked.values()) > 50  # uniform: ~100 each


def test_the_table_is_read_at_every_pick() -> None:
    router, discovery = router_over(room(1))
    assert router.pick("room", "r.s.m", None).id == "room-1"
    discovery.table = [room(2)]
    assert router.pick("room", "r.s.m", None).id == "room-2"
    discovery.table = []
    with pytest.raises(NoServersAvailable):
        router.pick("room", "r.s.m", None)


def test_a_custom_route_sees_session_route_and_a_copy_of_the_candidates() -> None:
    router, discovery = router_over(room(1), room(2), room(3))
    seen: list[tuple[object, str, list[str]]] = []

    def last(session: Any, route: str, servers: list[ServerInfo]) -> ServerInfo:
        seen.append((session, route, [s.id for s in servers]))
        servers.clear()  # the router hands out a copy: the table is not touched
        return room(3)

    router.add_route("room", last)
    session = object()
    assert router.pick("room", "room.room.join", session) == room(3)  # type: ignore[arg-type]
    assert router.pick("room", "room.room.leave", None) == room(3)
    assert seen == [
        (session, "room.room.join", ["room-1", "room-2", "room-3"]),
        (None, "room.room.leave", ["room-1", "room-2", "room-3"]),
    ]
    assert len(discovery.servers("room")) == 3


def test_a_custom_route_applies_to_its_server_type_only() -> None:
    chat = ServerInfo(id="chat-1", type="chat", hostname="h")
    router, _ = router_over(room(1), room(2), chat)
    router.add_route("room", lambda session, route, servers: servers[-1])
    assert {router.pick("room", "room.r.m", None).id for _ in range(20)} == {"room-2"}
    assert router.pick("chat", "chat.r.m", None) == chat


def test_a_later_custom_route_replaces_the_earlier_one() -> None:
    router, _ = router_over(room(1), room(2))
    router.add_route("room", lambda session, route, servers: servers[0])
    router.add_route("room", lambda session, route, servers: servers[1])
    assert router.pick("room", "room.r.m", None).id == "room-2"


def test_a_custom_route_is_not_asked_when_no_server_is_alive() -> None:
    router, _ = router_over()
    called = []
    router.add_route("room", lambda *args: called.append(args) or room(1))
    with pytest.raises(NoServersAvailable):
        router.pick("room", "room.r.m", None)
    assert called == []


@pytest.mark.parametrize("returned", [None, "room-1", {"id": "room-1"}])
def test_a_custom_route_returning_no_server_info_is_an_internal_error(returned: object) -> None:
    router, _ = router_over(room(1))
    router.add_route("room", lambda session, route, servers: returned)
    with pytest.raises(InternalError) as caught:
        router.pick("room", "room.r.m", None)
    assert caught.value.code == "PIT-500"
    assert "custom route for room returned" in caught.value.msg


def test_an_error_raised_by_a_custom_route_reaches_the_caller() -> None:
    router, _ = router_over(room(1))

    def refuse(session: Any, route: str, servers: list[ServerInfo]) -> ServerInfo:
        raise PitayaError("PIT-403", "closed for maintenance")

    router.add_route("room", refuse)
    with pytest.raises(PitayaError) as caught:
        router.pick("room", "room.r.m", None)
    assert caught.value.code == "PIT-403"
