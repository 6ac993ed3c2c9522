"""Groups through real sockets: membership, broadcast, multicast, TTL, leaving on disconnect."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import pytest

from actors.app import App
from actors.groups import (
    GroupAlreadyExists,
    GroupNotFound,
    MemberAlreadyExists,
    MemberNotFound,
    MemoryGroupService,
    select_members,
)
from actors.handler import Handler, handler
from actors.session import Session
from actors.testing import TestClient, serve
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


async def test_a_uid_still_connected_on_another_session_stays_in_its_groups() -> None:
    app = make_app()  # no unique session module: one uid may be bound by two sessions
    left = asyncio.Event()
    app.on_session_close(lambda session: left.set())
    async with serve(app) as server:
        await app.groups.create("g")
        first = await login(server, "ann")
        await login(server, "ann")
        await app.groups.add("g", "ann")
        await first.close()
        await asyncio.wait_for(left.wait(), 5)
        # The uid left the group with its first session, though its second one is open.
        assert await app.groups.members("g") == ["ann"]
        assert await app.groups.broadcast("g", "onHi", {}) == []


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


# -- rules pinned by mutation testing (tests/README.md) -------------------------------------


def test_group_errors_carry_codes_texts_and_the_group() -> None:
    cases = [
        (GroupNotFound("g"), "PIT-404", "group 'g' not found"),
        (GroupAlreadyExists("g"), "PIT-409", "group 'g' already exists"),
        (MemberAlreadyExists("g", "u"), "PIT-409", "uid 'u' is already in group 'g'"),
        (MemberNotFound("g", "u"), "PIT-404", "uid 'u' is not in group 'g'"),
    ]
    for error, code, msg in cases:
        assert (error.code, error.msg, error.metadata) == (code, msg, {"group": "g"})


def test_select_members_by_uids_and_predicate() -> None:
    members = ["a", "b", "c", "d"]
    assert select_members(members, None, None) == members
    assert select_members(iter(members), None, None) == members  # always a list
    assert select_members(members, ["d", "b", "x"], None) == ["b", "d"]  # members' order
    assert select_members(members, frozenset({"a", "c"}), None) == ["a", "c"]
    assert select_members(members, {"a"}, None) == ["a"]
    assert select_members(members, None, lambda uid: uid > "b") == ["c", "d"]
    assert select_members(members, ["a", "b", "c"], lambda uid: uid != "b") == ["a", "c"]
    assert select_members(members, [], None) == []


async def test_membership_is_indexed_by_uid_both_ways() -> None:
    app = make_app()
    async with TestClient(app):
        groups = app.groups
        assert isinstance(groups, MemoryGroupService)
        for name in ("g1", "g2", "g3"):
            await groups.create(name)
        for name in ("g2", "g1"):
            await groups.add(name, "u")
        await groups.add("g3", "v")
        assert await groups.groups_of("u") == ["g1", "g2"]
        assert await groups.groups_of("nobody") == []
        await groups.remove("g1", "u")
        assert await groups.groups_of("u") == ["g2"]
        await groups.add("g3", "u")
        await groups.remove_all("g3")
        assert await groups.groups_of("u") == ["g2"]
        assert await groups.groups_of("v") == []
        await groups.add("g3", "u")
        await groups.delete("g3")
        assert await groups.groups_of("u") == ["g2"]
        await groups.renew_ttl("g2")
        await groups.leave_all("u")
        assert await groups.groups_of("u") == []
        assert await groups.members("g2") == []
        await groups.leave_all("u")  # nothing left: nothing to do


async def test_a_ttl_must_be_positive_and_a_deleted_group_is_gone() -> None:
    app = make_app()
    async with TestClient(app):
        groups = app.groups
        for ttl in (0, -1.0):
            with pytest.raises(ValueError, match=r"^ttl must be positive$"):
                await groups.create("bad", ttl=ttl)
        assert not await groups.exists("bad")
        await groups.create("g")
        ref = groups._groups["g"]  # type: ignore[attr-defined]
        await ref.stop()  # stopped behind the service's back (as by an expiry)
        with pytest.raises(GroupNotFound) as gone:
            await groups.contains("g", "u")
        assert gone.value.msg == "group 'g' not found"
        await groups.create("h")
        await groups.members("h")  # started and idle
        pending = asyncio.ensure_future(groups.members("h"))
        await asyncio.sleep(0)  # the ask is in the group's mailbox...
        await groups.delete("h")  # ...when the group is deleted
        with pytest.raises(GroupNotFound) as info:
            await pending
        assert info.value.msg == "group 'h' not found"


async def test_multicast_reaches_the_selected_members_and_reports_the_rest() -> None:
    app = make_app()
    test = TestClient(app)
    async with test as ann:
        await ann.request("lobby.login", {"uid": "ann"})
        bob = await test.connect()
        await bob.request("lobby.login", {"uid": "bob"})
        groups = app.groups
        await groups.create("g")
        for uid in ("ann", "bob", "gone"):
            await groups.add("g", uid)
        pushes = {"ann": ann.pushes(), "bob": bob.pushes()}
        assert await groups.multicast("g", "onA", {"n": 1}, uids=["bob", "gone"]) == ["gone"]
        assert await groups.multicast("g", "onB", {"n": 2}, where=lambda u: u == "ann") == []
        assert await groups.broadcast("g", "onC", {"n": 3}) == ["gone"]
        got = {
            uid: [(p.route, p.body) for p in [await anext(it), await anext(it)]]
            for uid, it in pushes.items()
        }
        assert got == {
            "ann": [("onB", {"n": 2}), ("onC", {"n": 3})],
            "bob": [("onA", {"n": 1}), ("onC", {"n": 3})],
        }


async def test_an_expiry_listener_that_fails_is_logged_and_the_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="actors.groups")
    app = make_app()
    async with TestClient(app):
        groups = app.groups
        heard: asyncio.Queue[str] = asyncio.Queue()

        def broken(name: str) -> None:
            raise RuntimeError("listener bug")

        groups.on_group_expired(broken)
        groups.on_group_expired(heard.put_nowait)
        await groups.create("short", ttl=0.02)
        await groups.add("short", "u")
        assert await asyncio.wait_for(heard.get(), 5) == "short"
        assert await groups.groups_of("u") == []
        (record,) = [
            r for r in caplog.records if r.getMessage() == "group expiry listener failed for short"
        ]
        assert record.exc_info is not None and str(record.exc_info[1]) == "listener bug"
        expired = [r.getMessage() for r in caplog.records if "expired after" in r.getMessage()]
        assert expired == [f"[{app.server_id}] group short expired after 0.02s idle"]


@pytest.mark.looptime
@pytest.mark.parametrize(
    ("ttl", "expires_at"),
    [
        (10.0, 10.0),  # checked every ttl / 2: idle for exactly the ttl at the second check
        (100.0, 120.0),  # checked every 30 s at most: the first check past 100 s
    ],
)
async def test_a_group_expires_at_the_first_check_after_its_ttl(
    ttl: float, expires_at: float
) -> None:
    app = make_app()
    async with TestClient(app):
        loop = asyncio.get_running_loop()
        expired: asyncio.Future[float] = loop.create_future()
        app.groups.on_group_expired(lambda name: expired.set_result(loop.time()))
        start = loop.time()
        await app.groups.create("g", ttl=ttl)
        assert await expired - start == pytest.approx(expires_at)


@pytest.mark.looptime
async def test_a_group_is_checked_every_half_ttl() -> None:
    app = make_app()
    async with TestClient(app):
        loop = asyncio.get_running_loop()
        expired: asyncio.Future[float] = loop.create_future()
        app.groups.on_group_expired(lambda name: expired.set_result(loop.time()))
        start = loop.time()
        await app.groups.create("g", ttl=4.0)
        await asyncio.sleep(1)
        await app.groups.renew_ttl("g")
        # Checks at 2, 4 and 6 s; idle for 4 s since 1 s only at the third.
        assert await expired - start == pytest.approx(6.0)


async def test_errors_name_the_group_and_the_uid() -> None:
    app = make_app()
    async with TestClient(app):
        groups = app.groups
        await groups.create("g")
        await groups.add("g", "u")
        with pytest.raises(GroupAlreadyExists) as exists:
            await groups.create("g")
        with pytest.raises(MemberAlreadyExists) as member:
            await groups.add("g", "u")
        with pytest.raises(MemberNotFound) as missing:
            await groups.remove("g", "nobody")
        assert [exists.value.msg, member.value.msg, missing.value.msg] == [
            "group 'g' already exists",
            "uid 'u' is already in group 'g'",
            "uid 'nobody' is not in group 'g'",
        ]


async def test_leaving_tolerates_a_stale_index(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()
    async with TestClient(app):
        groups = app.groups
        assert isinstance(groups, MemoryGroupService)
        await groups.create("g")
        groups._of_uid["ghost"] = {"g"}  # as if it had left in between
        await groups.leave_all("ghost")
        assert await groups.members("g") == []  # the group handled the removal first
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert await groups.groups_of("ghost") == []


@pytest.mark.looptime
async def test_any_use_of_a_group_puts_off_its_expiry() -> None:
    app = make_app()
    async with TestClient(app):
        loop = asyncio.get_running_loop()
        groups = app.groups
        expired: asyncio.Future[float] = loop.create_future()
        groups.on_group_expired(lambda name: expired.set_result(loop.time()))
        start = loop.time()
        await groups.create("g", ttl=10.0)
        uses = [
            groups.add("g", "u"),
            groups.contains("g", "u"),
            groups.members("g"),
            groups.renew_ttl("g"),
            groups.broadcast("g", "onX", {}),
            groups.remove("g", "u"),
            groups.remove_all("g"),
        ]
        for use in uses:  # one use every 4 s: never idle for 10 s
            await asyncio.sleep(4)
            await use
        # Last use at 28 s; checks every 5 s: idle 7 s at 35, 12 s at 40.
        assert await expired - start == pytest.approx(40.0)
