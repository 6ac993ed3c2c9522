"""actors.testing: the in-memory TestClient, TestSession with Call, and serve()."""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass
from typing import Any

import pytest

from actors.app import App
from actors.errors import PitayaError, RouteNotFound
from actors.handler import Call, Handler, handler
from actors.session import Session, SessionAlreadyBound
from actors.sessions.registry import SessionRegistry
from actors.system import ActorSystem
from actors.testing import Push, TestClient, TestSession, serve, spawn_handler
from tests.reliability.support import until
from transport.client import Client, HandshakeRejected, RequestError
from transport.errors import ConnectionClosed, SerializationError
from transport.handshake import HandshakeRequest, decode_handshake_response
from transport.memory import MemoryAcceptor
from transport.packet import PacketDecoder, PacketType, encode_packet

TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Join:
    name: str


class Room(Handler):
    service = "room"

    def __init__(self) -> None:
        self.members: list[str] = []
        self.said: list[str] = []
        self.gate = asyncio.Event()

    @handler
    async def join(self, session: Session, body: Join) -> dict[str, Any]:
        await session.bind(body.name)
        self.members.append(body.name)
        session.push("onJoined", {"members": self.members})
        return {"members": self.members}

    @handler
    def say(self, session: Session, body: dict[str, Any]) -> None:  # notify only
        self.said.append(body["text"])
        session.push("onSaid", {"from": session.uid, "text": body["text"]})

    @handler
    def whoami(self, session: Session) -> dict[str, Any]:
        return {"uid": session.uid, "id": session.id, "room": session.get("room")}

    @handler
    def leave(self, session: Session) -> dict[str, str]:
        session.kick("bye")
        return {"left": "yes"}

    @handler
    def forbidden(self, session: Session) -> dict[str, str]:
        raise PitayaError("PIT-403", "not your turn", {"turn": "b"})

    @handler
    def boom(self, session: Session) -> dict[str, str]:
        raise RuntimeError("the dragon ate it")

    @handler
    def nothing(self, session: Session) -> dict[str, str]:
        return None  # type: ignore[return-value]

    @handler
    async def wait(self, session: Session, body: str) -> str:
        await self.gate.wait()
        return body

    @handler
    def open_gate(self, session: Session) -> None:
        self.gate.set()


def make_app(**options: Any) -> App:
    app = App(server_type="game", **options)
    app.register(Room)
    return app


# -- TestClient: the protocol in memory ---------------------------------------------------


async def test_handshake_announces_the_apps_settings() -> None:
    async with TestClient(make_app(heartbeat_interval=7)) as client:
        response = client.handshake_response
        assert response.ok and response.code == 200
        assert response.heartbeat == 7
        assert response.serializer == "json"
        assert "room.join" in (response.routes or {})


async def test_request_notify_and_push() -> None:
    async with TestClient(make_app()) as client:
        pushes = client.pushes()
        assert await client.request("room.join", {"name": "ann"}) == {"members": ["ann"]}
        assert await anext(pushes) == Push("onJoined", {"members": ["ann"]})
        await client.notify("room.say", {"text": "hi"})
        assert await asyncio.wait_for(anext(pushes), TIMEOUT) == Push(
            "onSaid", {"from": "ann", "text": "hi"}
        )
        assert await client.request("game.room.whoami") == {"uid": "ann", "id": 1, "room": None}


async def test_error_answers_carry_pitaya_codes() -> None:
    async with TestClient(make_app()) as client:
        cases = [
            ("room.nope", {}, "PIT-404"),
            ("room.join", {"nom": "x"}, "PIT-400"),
            ("room.say", {"text": "a request to a notify-only route"}, "PIT-400"),
            ("room.forbidden", None, "PIT-403"),
            ("room.boom", None, "PIT-500"),
            ("room.nothing", None, "PIT-000"),
        ]
        for route, body, code in cases:
            with pytest.raises(RequestError) as caught:
                await client.request(route, body)
            assert caught.value.code == code, route
        # The session survives its errors.
        assert await client.request("room.join", {"name": "ann"}) == {"members": ["ann"]}


async def test_a_request_answered_with_none_is_logged_with_its_route(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with TestClient(make_app()) as client:
        with (
            caplog.at_level(logging.WARNING, logger="actors.invocation"),
            pytest.raises(RequestError) as caught,
        ):
            await client.request("room.nothing")
    assert (caught.value.code, caught.value.msg) == ("PIT-000", "reply must not be null")
    [line] = [r.getMessage() for r in caplog.records if "returned None" in r.getMessage()]
    assert "] handler room.nothing returned None to a request: answered PIT-000" in line


async def test_error_metadata_reaches_the_client() -> None:
    async with TestClient(make_app()) as client:
        with pytest.raises(RequestError) as caught:
            await client.request("room.forbidden")
        assert (caught.value.msg, caught.value.metadata) == ("not your turn", {"turn": "b"})


async def test_a_kick_closes_the_client() -> None:
    async with TestClient(make_app()) as client:
        # The kick is ordered before the response, so the request sees the connection end.
        with pytest.raises(ConnectionClosed):
            await client.request("room.leave")
        await client.wait_closed(TIMEOUT)
        assert client.kicked
        assert client.close_reason == "kicked by the server"
        assert client.kick_reason == "bye"  # what the handler's session.kick("bye") said
        with pytest.raises(ConnectionClosed):
            await client.request("room.whoami")


async def test_several_clients_at_once_each_with_its_session() -> None:
    app = make_app()
    test = TestClient(app)
    async with test as ann:
        bob = await test.connect()
        carl = await test.connect()
        assert len(test.clients) == 3
        await ann.request("room.join", {"name": "ann"})
        await bob.request("room.join", {"name": "bob"})
        assert await carl.request("room.whoami") == {"uid": None, "id": 3, "room": None}
        assert await bob.request("room.whoami") == {"uid": "bob", "id": 2, "room": None}
        assert sorted(s.uid or "" for s in app.sessions) == ["", "ann", "bob"]
        # Push by uid reaches only that client.
        assert await app.send_push_to_users("onHello", {"to": "bob"}, ["bob", "zed"]) == ["zed"]
        pushes = [p async for p in _until(bob, "onHello")]
        assert pushes[-1] == Push("onHello", {"to": "bob"})


async def test_a_slow_request_holds_no_other_client() -> None:
    test = TestClient(make_app())
    async with test as slow:
        fast = await test.connect()
        waiting = asyncio.create_task(slow.request("room.wait", "done"))
        assert await fast.request("room.whoami") == {"uid": None, "id": 2, "room": None}
        assert not waiting.done()
        await fast.notify("room.open_gate")
        assert await asyncio.wait_for(waiting, TIMEOUT) == "done"


async def test_groups_broadcast_to_every_member() -> None:
    app = make_app()
    test = TestClient(app)
    async with test as ann:
        bob = await test.connect()
        await ann.request("room.join", {"name": "ann"})
        await bob.request("room.join", {"name": "bob"})
        await app.groups.create("lobby")
        for uid in ("ann", "bob"):
            await app.groups.add("lobby", uid)
        assert await app.groups.broadcast("lobby", "onNews", {"n": 1}) == []
        for client in (ann, bob):
            pushes = [p async for p in _until(client, "onNews")]
            assert pushes[-1] == Push("onNews", {"n": 1})


async def _until(client: Client, route: str) -> Any:
    async with asyncio.timeout(TIMEOUT):
        async for push in client.pushes():
            yield push
            if push.route == route:
                return


async def test_client_options_apply_to_every_client_and_connect_may_override() -> None:
    app = make_app(serializer="msgpack")
    seen: list[dict[str, Any]] = []
    app.add_handshake_validator("record", lambda hs: seen.append(dict(hs.user)))
    test = TestClient(app, handshake_user={"name": "ann"}, request_timeout=2.0)
    async with test as ann:
        bob = await test.connect(handshake_user={"name": "bob"})
        assert ann.serializer.name == bob.serializer.name == "msgpack"
        assert await bob.request("room.join", {"name": "bob"}) == {"members": ["bob"]}
    assert seen == [{"name": "ann"}, {"name": "bob"}]


async def test_a_refused_handshake_raises_and_stops_the_app() -> None:
    app = make_app()

    def only_ann(handshake: HandshakeRequest) -> None:
        if handshake.user.get("name") != "ann":
            raise ValueError("ann only")

    app.add_handshake_validator("ann-only", only_ann)
    with pytest.raises(HandshakeRejected) as caught:
        async with TestClient(app, handshake_user={"name": "bob"}):
            raise AssertionError("not reached")
    assert caught.value.code == 400 and "ann only" in caught.value.message
    assert app.system.actor_count == 0


async def test_the_raw_protocol_through_the_acceptor() -> None:
    # Data before the handshake closes the connection (Pitaya's rule), seen byte by byte.
    test = TestClient(make_app())
    async with test:
        channel = await test.acceptor.connect()
        await channel.send(encode_packet(PacketType.DATA, b"\x00\x01x"))
        assert await asyncio.wait_for(channel.receive(), TIMEOUT) == b""
        # A handshake answered by hand.
        channel = await test.acceptor.connect()
        await channel.send(encode_packet(PacketType.HANDSHAKE, b'{"sys": {}, "user": {}}'))
        [packet] = PacketDecoder().feed(await asyncio.wait_for(channel.receive(), TIMEOUT))
        assert packet.type is PacketType.HANDSHAKE
        assert decode_handshake_response(packet.body).code == 200
        await channel.close()


async def test_everything_is_cleaned_up_on_exit() -> None:
    gc.collect()
    before = asyncio.all_tasks()
    app = make_app(shutdown_timeout=0.1)  # a request still in flight is not waited for long
    test = TestClient(app)
    async with test as ann:
        bob = await test.connect()
        await ann.request("room.join", {"name": "ann"})
        pending = asyncio.create_task(bob.request("room.wait", "never"))
        await asyncio.sleep(0)
        assert app.system.actor_count > 0
    assert ann.closed and bob.closed and test.clients == []
    with pytest.raises(ConnectionClosed):
        await pending
    assert app.system.actor_count == 0
    assert test.acceptor.connections == set()
    assert test.acceptor.stats.active == 0
    assert len(app.sessions) == 0
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set()


async def test_the_app_listens_in_memory_only() -> None:
    app = make_app()
    test = TestClient(app)
    async with test:
        assert app.addresses == [("memory", *test.acceptor.address)]
        assert isinstance(test.acceptor, MemoryAcceptor)
        with pytest.raises(RuntimeError, match="already started"):
            await test.start()


async def test_the_app_is_stopped_when_the_body_raises() -> None:
    app = make_app()
    with pytest.raises(KeyError):
        async with TestClient(app):
            raise KeyError("in the test")
    assert app.system.actor_count == 0


async def test_an_app_that_ran_says_so_when_it_is_used_again() -> None:
    # One app shared by two tests (made at module level, say): the second test's use of it
    # must say that an app runs once, not that it should be set up "before the app starts".
    app = make_app(server_id="game-1")
    async with TestClient(app) as client:
        await client.request("room.whoami")
    ran = "game-1 has run and stopped: an App starts once; make a new one (in tests, one per test)"
    with pytest.raises(RuntimeError) as caught:
        async with TestClient(app):
            pass
    assert str(caught.value) == ran
    with pytest.raises(RuntimeError) as caught:
        await app.start()
    assert str(caught.value) == ran
    with pytest.raises(RuntimeError) as caught:
        app.register(Room)
    assert str(caught.value) == ran


# -- TestSession and Call: a handler alone, no app ----------------------------------------


async def test_call_runs_a_route_method_with_a_test_session() -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room)
        session = TestSession(1)
        assert await room.ask(Call("join", session, Join("ann"))) == {"members": ["ann"]}
        assert session.uid == "ann"
        assert session.pushes == [Push("onJoined", {"members": ["ann"]})]
        assert await room.ask(Call("say", session, {"text": "hi"})) is None
        assert session.pushes[-1] == Push("onSaid", {"from": "ann", "text": "hi"})


async def test_call_raises_what_the_method_raises() -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room)
        session = TestSession()
        with pytest.raises(PitayaError) as caught:
            await room.ask(Call("forbidden", session))
        assert caught.value.code == "PIT-403"
        with pytest.raises(RuntimeError, match="dragon"):
            await room.ask(Call("boom", session))
        with pytest.raises(RouteNotFound):
            await room.ask(Call("nope", session))
        # The handler actor keeps running after its errors.
        assert await room.ask(Call("whoami", session)) == {"uid": None, "id": 1, "room": None}


async def test_a_test_session_records_kicks() -> None:
    async with ActorSystem() as system:
        room = system.spawn(Room)
        session = TestSession(3, uid="ann", data={"room": "lobby"})
        assert await room.ask(Call("whoami", session)) == {"uid": "ann", "id": 3, "room": "lobby"}
        assert not session.kicked and session.kick_reason is None
        await room.ask(Call("leave", session))
        assert session.kicked and session.kick_reason == "bye"


async def test_a_kicked_test_session_closes_as_on_a_server() -> None:
    """A server closes a kicked session's connection, and its close callbacks run: a test
    session only recorded the kick, so a room's cleanup on close never ran in tests."""
    async with ActorSystem() as system:
        room = system.spawn(Room)
        session = TestSession(3, uid="ann")
        closed: list[int] = []
        session.on_close(lambda s: closed.append(s.id))
        await room.ask(Call("leave", session))
        assert session.kicked
        await session.disconnect()  # the close the kick started, done
        assert session.closed and closed == [3]
        await session.disconnect()  # once, as on a server
        assert closed == [3]
        other = TestSession(4)
        other.on_close(lambda s: closed.append(s.id))
        await room.ask(Call("leave", other))
        await until(lambda: closed == [3, 4])  # without waiting: in a task of its own


async def test_a_test_session_binds_through_its_registry() -> None:
    registry = SessionRegistry()
    bound: list[str] = []
    registry.on_session_bind(lambda s: bound.append(s.uid or ""))
    ann, bob = TestSession(1, registry=registry), TestSession(2, registry=registry)
    await ann.bind("ann")
    await bob.bind("bob")
    assert bound == ["ann", "bob"]
    assert registry.by_uid("bob") is bob and registry.get(1) is ann
    with pytest.raises(SessionAlreadyBound):
        await ann.bind("again")


async def test_a_test_session_disconnects_with_its_close_callbacks() -> None:
    session = TestSession()
    closed: list[int] = []
    session.on_close(lambda s: closed.append(s.id))
    await session.bind("ann")
    await session.disconnect()
    assert session.closed and closed == [1]
    assert session.registry.by_uid("ann") is None


async def test_a_test_session_runs_its_close_callbacks_once_as_a_server_does() -> None:
    """A connection goes away once: a second disconnect (a test tearing down a session its
    body already closed) ran every close callback again, which no server does."""
    session = TestSession()
    closed: list[int] = []
    session.on_close(lambda s: closed.append(s.id))
    session.registry.on_session_close(lambda s: closed.append(-s.id))
    await session.disconnect()
    await session.disconnect()
    assert closed == [1, -1]


async def test_a_test_session_decodes_pushes_with_its_serializer() -> None:
    session = TestSession(serializer="msgpack")
    session.push("onBytes", {"raw": b"\x00\x01"})
    assert session.pushes == [Push("onBytes", {"raw": b"\x00\x01"})]
    with pytest.raises(SerializationError, match="cannot encode"):
        TestSession().push("onBad", object())  # what the app would fail to send, too


async def test_a_test_session_records_group_broadcasts() -> None:
    # Groups write a frame encoded once for many sessions to the session's ref.
    app = make_app()
    session = TestSession(registry=app.sessions)
    await session.bind("ann")
    await app.groups.create("lobby")
    await app.groups.add("lobby", "ann")
    assert await app.groups.broadcast("lobby", "onNews", {"n": 1}) == []
    assert session.pushes == [Push("onNews", {"n": 1})]
    await app.system.shutdown()


async def test_a_test_session_is_a_session() -> None:
    session = TestSession(9)
    assert isinstance(session, Session)
    assert session.id == 9 and session.remote_address == "test"
    assert session.ref.alive


class Seats(Handler):
    """A handler written for a backend: it writes the session's data back to the frontend."""

    service = "seats"

    @handler
    async def sit(self, session: Session, body: dict[str, int]) -> dict[str, int]:
        session.set("seat", body["seat"])
        await session.push_to_front()
        return {"seat": body["seat"]}

    @handler
    def seat(self, session: Session) -> dict[str, Any]:
        return {"seat": session.get("seat")}


async def test_a_backend_handler_pushes_its_data_to_front_from_a_test_session() -> None:
    """A backend handler's push_to_front failed with AttributeError on a TestSession (and on
    any session but a backend's): its data is recorded as it reached the frontend."""
    async with ActorSystem() as system:
        seats = system.spawn(Seats)
        session = TestSession(1, uid="ann")
        assert await seats.ask(Call("sit", session, {"seat": 2})) == {"seat": 2}
        assert session.pushed_to_front == [{"seat": 2}]


async def test_a_handler_that_pushes_to_front_serves_standalone_too() -> None:
    """On the frontend (a standalone server) the session's data is the frontend's already:
    push_to_front sends nothing, and the route works as it does behind a frontend."""
    app = App(server_type="game")
    app.register(Seats)
    async with TestClient(app) as client:
        assert await client.request("seats.sit", {"seat": 3}) == {"seat": 3}
        assert await client.request("seats.seat") == {"seat": 3}


# -- serve(): real sockets ----------------------------------------------------------------


async def test_serve_gives_tcp_and_websocket_clients(websocket: bool) -> None:
    app = make_app()
    async with serve(app) as server:
        client = await server.connect(websocket=websocket)
        assert await client.request("room.join", {"name": "ann"}) == {"members": ["ann"]}
        assert {kind for kind, _, _ in app.addresses} == {"tcp", "ws"}
    assert client.closed and server.clients == []
    assert app.system.actor_count == 0


class Notifier(Handler):
    """Reaches players by uid through its app, as a room or a match does."""

    service = "notifier"

    @handler
    async def tell(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        self.app.push_to_users("onTold", {"n": 1}, body["uids"])
        unreached = await self.app.send_push_to_users("onSent", {"n": 2}, body["uids"])
        return {"unreached": unreached}


async def test_pushes_by_uid_reach_the_test_sessions_of_a_handler_spawned_with_an_app() -> None:
    """spawn_handler's promise: sessions sharing the app's registry get its pushes by uid.
    The app of a handler test has no listeners, and pushes by uid looked for local sessions
    only on frontends (an app with listeners): every uid was unreached, while the same
    app's group broadcasts did reach the sessions."""
    app = App(server_type="game")
    async with ActorSystem() as system:
        notifier = spawn_handler(system, Notifier, app=app)
        ann = TestSession(1, registry=app.sessions)
        await ann.bind("ann")
        reply = await notifier.ask(Call("tell", ann, {"uids": ["ann", "nobody"]}))
        assert reply == {"unreached": ["nobody"]}
        assert ann.pushes == [Push("onTold", {"n": 1}), Push("onSent", {"n": 2})]
        assert await app.send_kick_to_users(["ann", "nobody"]) == ["nobody"]
        assert ann.kicked


async def test_a_test_session_made_bound_is_found_by_its_uid() -> None:
    """``TestSession(uid=...)`` arrives bound: sharing the app's registry, it receives the
    app's pushes by uid and group broadcasts as a session bound with ``bind`` does. It was
    never indexed by uid, so both silently missed it."""
    app = make_app()
    ann = TestSession(1, uid="ann", registry=app.sessions)
    assert app.sessions.by_uid("ann") is ann
    await app.groups.create("lobby")
    await app.groups.add("lobby", "ann")
    assert await app.groups.broadcast("lobby", "onNews", {"n": 1}) == []
    assert ann.pushes == [Push("onNews", {"n": 1})]
    await ann.disconnect()
    assert app.sessions.by_uid("ann") is None
    await app.system.shutdown()
