"""Groups through real sockets: membership, broadcast, multicast, TTL, leaving on disconnect."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from actors.app import App
from actors.groups import (
    GroupAlreadyExists,
    GroupNotFound,
    MemberAlreadyExists,
    MemberNotFound,
)
from actors.handler import Handler, handler
from actors.session import Session
from actors.testing import serve
from transport.client import Client


class Lobby(Handler):
    service = "lobby"

    @handler
    async def login(self, session: Session, body: dict[str, Any]) -> dict[str, str]:
        await session.bind(body["uid"])
        return {"uid": body["uid"]}


def make_app(**options: Any) -> App:
    app = App(server_type="groups", **options)
    app.register(Lobby)
    return app


async def login(server: Any, uid: str, *, websocket: bool = False) -> Client:
    client: Client = await server.connect(websocket=websocket)
    assert await client.request("lobby.login", {"uid": uid}) == {"uid": uid}
    return client


async def test_membership_operations_and_typed_errors() -> None:
    async with serve(make_app()) as server:
        groups = server.app.groups
        await groups.create("g")
        assert await groups.exists("g")
        with pytest.raises(GroupAlreadyExists):
            await groups.create("g")
        await groups.add("g", "a")
        await groups.add("g", "b")
        with pytest.raises(MemberAlreadyExists):
            await groups.add("g", "a")
        assert await groups.contains("g", "a")
        assert not await groups.contains("g", "zz")
        assert await groups.members("g") == ["a", "b"]
        assert await groups.count("g") == 2
        await groups.remove("g", "a")
        with pytest.raises(MemberNotFound):
            await groups.remove("g", "a")
        await groups.remove_all("g")
        assert await groups.count("g") == 0
        await groups.delete("g")
        assert not await groups.exists("g")
        with pytest.raises(GroupNotFound):
            await groups.add("g", "a")
        with pytest.raises(GroupNotFound):
            await groups.delete("g")


async def test_broadcast_reaches_200_clients_once_each() -> None:
    async with serve(make_app()) as server:
        groups = server.app.groups
        await groups.create("all")
        uids = [f"u{i}" for i in range(200)]
        clients = await asyncio.gather(
            *(login(server, uid, websocket=i % 2 == 1) for i, uid in enumerate(uids))
        )
        for uid in uids:
            await groups.add("all", uid)
        received: Counter[str] = Counter()
        done = asyncio.Event()

        def counter(uid: str) -> Any:
            def on_push(body: Any) -> None:
                received[uid] += 1
                assert body == {"n": 1}
                if len(received) == len(uids):
                    done.set()

            return on_push

        for uid, client in zip(uids, clients, strict=True):
            client.on_push("onNews", counter(uid))
        markers = asyncio.Queue[str]()
        for uid, client in zip(uids, clients, strict=True):
            client.on_push("marker", lambda body, uid=uid: markers.put_nowait(uid))
        assert await groups.broadcast("all", "onNews", {"n": 1}) == []
        await asyncio.wait_for(done.wait(), 10)
        # A marker pushed after the broadcast arrives after any duplicate would have.
        assert await server.app.send_push_to_users("marker", {}, uids) == []
        seen = {await asyncio.wait_for(markers.get(), 10) for _ in uids}
        assert seen == set(uids)
        assert set(received) == set(uids)
        assert set(received.values()) == {1}


async def test_multicast_by_uid_list_and_predicate_and_unreached() -> None:
    async with serve(make_app()) as server:
        groups = server.app.groups
        await groups.create("team")
        clients = {uid: await login(server, uid) for uid in ("a", "b", "c")}
        for uid in ("a", "b", "c", "offline"):
            await groups.add("team", uid)
        iterators = {uid: c.pushes() for uid, c in clients.items()}
        assert await groups.multicast("team", "onPick", {"x": 1}, uids=["a", "offline"]) == [
            "offline"
        ]
        assert await groups.multicast("team", "onPick", {"x": 2}, where=lambda u: u != "a") == [
            "offline"
        ]
        first_a = await asyncio.wait_for(anext(iterators["a"]), 5)
        assert first_a.body == {"x": 1}
        assert (await asyncio.wait_for(anext(iterators["b"]), 5)).body == {"x": 2}
        assert (await asyncio.wait_for(anext(iterators["c"]), 5)).body == {"x": 2}
        # "a" got nothing from the second multicast: its next push is this marker.
        await server.app.send_push_to_users("marker", {}, ["a"])
        assert (await asyncio.wait_for(anext(iterators["a"]), 5)).route == "marker"


async def test_disconnected_member_leaves_every_group() -> None:
    app = make_app()
    left = asyncio.Event()
    app.on_session_close(lambda session: left.set())
    async with serve(app) as server:
        await app.groups.create("g1")
        await app.groups.create("g2")
        client = await login(server, "gone")
        await login(server, "stays")
        for group in ("g1", "g2"):
            await app.groups.add(group, "gone")
            await app.groups.add(group, "stays")
        await client.close()
        await asyncio.wait_for(left.wait(), 5)
        assert await app.groups.members("g1") == ["stays"]
        assert await app.groups.members("g2") == ["stays"]


async def test_group_with_ttl_expires_when_idle() -> None:
    async with serve(make_app()) as server:
        groups = server.app.groups
        expired = asyncio.Queue[str]()
        groups.on_group_expired(expired.put_nowait)
        await groups.create("short", ttl=0.05)
        await groups.create("forever")
        await groups.add("short", "a")
        assert await asyncio.wait_for(expired.get(), 5) == "short"
        assert not await groups.exists("short")
        assert await groups.exists("forever")
        with pytest.raises(GroupNotFound):
            await groups.members("short")


async def test_push_and_kick_by_uid_report_unreached_users() -> None:
    async with serve(make_app()) as server:
        app = server.app
        alice = await login(server, "alice")
        bob = await login(server, "bob", websocket=True)
        pushes = alice.pushes()
        assert await app.send_push_to_users("onHi", {"to": "you"}, ["alice", "nobody"]) == [
            "nobody"
        ]
        push = await asyncio.wait_for(anext(pushes), 5)
        assert (push.route, push.body) == ("onHi", {"to": "you"})
        assert await app.send_kick_to_users(["bob", "ghost"]) == ["ghost"]
        await bob.wait_closed(timeout=5)
        assert bob.kicked
        assert not alice.closed
