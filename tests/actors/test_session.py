"""Session API, app callbacks, pipelines, docs, compression and serializers, end to end."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import pytest

from actors.app import App
from actors.errors import PitayaError
from actors.handler import Handler, handler
from actors.session import Session, SessionAlreadyBound, SessionClosed
from actors.testing import TestSession, serve
from tests.rawclient import RawClient
from transport.client import RequestError
from transport.message import (
    FLAG_DATA_COMPRESSED,
    FLAG_ROUTE_COMPRESSED,
    RouteDictionary,
    decode_message,
)
from transport.serializers import MsgpackSerializer


@dataclass(frozen=True, slots=True)
class Login:
    uid: str


class Account(Handler):
    service = "account"

    @handler
    async def login(self, session: Session, body: Login) -> dict[str, Any]:
        await session.bind(body.uid)
        return {"uid": session.uid, "id": session.id}

    @handler
    async def login_twice(self, session: Session, body: Login) -> dict[str, str]:
        await session.bind(body.uid)
        try:
            await session.bind(body.uid + "-again")
        except SessionAlreadyBound as exc:
            return {"error": str(exc)}
        return {"error": ""}

    @handler
    def store(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        for key, value in body.items():
            session.set(key, value)
        return dict(session.data)

    @handler
    def read(self, session: Session) -> dict[str, Any]:
        try:
            wrong: Any = session.get_int("name")
        except TypeError as exc:
            wrong = str(exc)
        result = {
            "level": session.get_int("level"),
            "name": session.get_str("name"),
            "ratio": session.get_float("level"),
            "missing": session.get_str("missing", "dflt"),
            "has_name": session.has("name"),
            "wrong": wrong,
            "handshake_platform": session.handshake.platform if session.handshake else None,
        }
        session.remove("name")
        result["after_remove"] = session.has("name")
        session.clear()
        result["after_clear"] = dict(session.data)
        return result

    @handler
    def echo(self, session: Session, body: Any) -> Any:
        return body


def make_app(**options: Any) -> App:
    app = App(server_type="acct", **options)
    app.register(Account)
    return app


async def test_bind_lookup_and_double_bind() -> None:
    async with serve(make_app()) as server:
        app = server.app
        client = await server.connect()
        answer = await client.request("account.login", {"uid": "u1"})
        assert answer["uid"] == "u1"
        session = app.sessions.by_uid("u1")
        assert session is not None and session.id == answer["id"]
        assert app.sessions.get(answer["id"]) is session
        other = await server.connect()
        reply = await other.request("account.login_twice", {"uid": "u2"})
        assert "already bound" in reply["error"]


async def test_session_data_and_typed_getters() -> None:
    async with serve(make_app()) as server:
        client = await server.connect(handshake_sys={"platform": "ios"})
        stored = await client.request("account.store", {"level": 3, "name": "ann"})
        assert stored == {"level": 3, "name": "ann"}
        result = await client.request("account.read")
        assert result["level"] == 3 and result["name"] == "ann" and result["ratio"] == 3.0
        assert result["missing"] == "dflt" and result["has_name"] is True
        assert "holds str" in result["wrong"]
        assert result["handshake_platform"] == "ios"
        assert result["after_remove"] is False and result["after_clear"] == {}


async def test_bind_and_close_callbacks() -> None:
    app = make_app()
    events: list[str] = []
    closed = asyncio.Event()

    async def refuse_banned(session: Session) -> None:
        if session.uid == "banned":
            raise PitayaError("PIT-403", "banned")
        events.append(f"bind {session.uid}")

    app.on_session_bind(refuse_banned)
    app.on_after_session_bind(lambda s: events.append(f"after {s.uid}"))

    def on_close(session: Session) -> None:
        events.append(f"close {session.uid}")
        closed.set()

    app.on_session_close(on_close)
    async with serve(app) as server:
        banned = await server.connect()
        with pytest.raises(RequestError) as info:
            await banned.request("account.login", {"uid": "banned"})
        assert info.value.code == "PIT-403"
        assert app.sessions.by_uid("banned") is None
        client = await server.connect()
        await client.request("account.login", {"uid": "ok"})
        assert events == ["bind ok", "after ok"]
        await client.close()
        await asyncio.wait_for(closed.wait(), 5)
        assert events[-1] == "close ok"
        assert app.sessions.by_uid("ok") is None


async def test_a_close_callback_given_after_the_close_is_refused() -> None:
    """A handler that awaited while its client left learns it at ``on_close``: the close
    callbacks ran already, and the one it gives would never run (a member left in a room)."""
    ran: list[str] = []
    session = TestSession(1)
    session.on_close(lambda s: ran.append("before"))
    await session.disconnect()
    with pytest.raises(SessionClosed, match="session 1 is closed: its close callbacks ran"):
        session.on_close(lambda s: ran.append("after"))
    assert ran == ["before"]


async def test_pipeline_transforms_and_rejects() -> None:
    app = make_app()
    seen: list[str] = []

    async def before(session: Session, route: str, body: Any) -> Any:
        seen.append(route)
        if isinstance(body, dict) and body.get("forbidden"):
            raise PitayaError("PIT-401", "not allowed")
        if isinstance(body, dict):
            return {**body, "stamped": True}
        return body

    def after(
        session: Session, route: str, response: Any, error: PitayaError | None
    ) -> tuple[Any, PitayaError | None]:
        if error is not None and error.code == "PIT-401":
            return None, PitayaError("PIT-401", "login first", {"hint": "account.login"})
        if isinstance(response, dict):
            response = {**response, "after": True}
        return response, error

    app.pipeline.before(before)
    app.pipeline.after(after)
    async with serve(app) as server:
        client = await server.connect()
        assert await client.request("account.echo", {"a": 1}) == {
            "a": 1,
            "stamped": True,
            "after": True,
        }
        with pytest.raises(RequestError) as info:
            await client.request("account.echo", {"forbidden": True})
        assert (info.value.code, info.value.msg, info.value.metadata) == (
            "PIT-401",
            "login first",
            {"hint": "account.login"},
        )
        assert seen == ["account.echo", "account.echo"]


async def test_docs_route_lists_routes_with_shapes() -> None:
    async with serve(make_app()) as server:
        client = await server.connect()
        docs = await client.request("sys.docs")
        handlers = docs["handlers"]
        assert handlers["account.login"]["input"] == {"uid": "string"}
        assert handlers["account.read"]["input"] is None
        assert handlers["account.store"]["output"] == {"<key>": "any"}
        assert "sys.docs" in handlers


@pytest.mark.parametrize("websocket", [False, True])
async def test_compressed_payloads_round_trip(websocket: bool) -> None:
    async with serve(make_app(compress_data=True)) as server:
        client = await server.connect(websocket=websocket)
        big = {"text": "pitaya " * 500}
        assert await client.request("account.echo", big) == big
        # On the wire the response carries the deflate flag and is much smaller.
        raw = await RawClient.connect(*server.app.address("tcp"))
        await raw.handshake()
        await raw.send_request("account.echo", json.dumps(big).encode())
        packet = await raw.read_packet()
        assert packet.body[0] & FLAG_DATA_COMPRESSED
        assert len(packet.body) < len(json.dumps(big)) // 10
        assert json.loads(decode_message(packet.body).data) == big
        await raw.close()


async def test_route_dictionary_is_announced_and_used() -> None:
    async with serve(make_app()) as server:
        client = await server.connect()
        routes = client.handshake_response.routes
        assert "account.echo" in routes and "acct.account.echo" in routes
        assert await client.request("account.echo", [1]) == [1]
        plain = await server.connect(use_route_dict=False)
        assert await plain.request("account.echo", [2]) == [2]


class Pusher(Handler):
    service = "pusher"

    @handler
    def poke(self, session: Session) -> str:
        session.push("onPoke", {"n": 1})
        return "ok"


async def test_a_given_dictionary_is_announced_with_the_own_routes_above_it() -> None:
    """Pitaya's SetDictionary: the codes a Go sibling announces, and codes for routes served
    elsewhere or pushed (here onPoke), which then travel as 2 bytes."""
    app = make_app()
    app.register(Pusher)
    app.set_dictionary({"room.room.join": 7, "onPoke": 9})
    async with serve(app) as server:
        raw = await RawClient.connect(*app.address("tcp"))
        routes = (await raw.handshake()).routes
        assert routes is not None
        assert (routes["room.room.join"], routes["onPoke"]) == (7, 9)
        own = sorted(route for route in routes if route not in ("room.room.join", "onPoke"))
        assert own and "pusher.poke" in own and "acct.account.echo" in own
        assert [routes[route] for route in own] == list(range(10, 10 + len(own)))
        await raw.send_request("pusher.poke", b"")
        push = await raw.read_packet()
        assert push.body[0] & FLAG_ROUTE_COMPRESSED  # the push's route as its 2-byte code
        assert decode_message(push.body, routes=RouteDictionary(routes)).route == "onPoke"
        await raw.close()
        client = await server.connect()  # the client codec uses the codes both ways
        assert await client.request("pusher.poke") == "ok"


async def test_with_route_dictionary_off_only_the_given_codes_are_announced() -> None:
    app = make_app(route_dictionary=False)
    app.set_dictionary({"account.echo": 3})
    async with serve(app) as server:
        client = await server.connect()
        assert client.handshake_response.routes == {"account.echo": 3}
        assert await client.request("account.echo", [1]) == [1]
    with pytest.raises(RuntimeError, match="before the app starts"):
        async with serve(make_app()) as started:
            started.app.set_dictionary({"a.b": 1})
    with pytest.raises(ValueError, match=r"codes are 1\.\.65535"):
        make_app().set_dictionary({"a.b": 0})


async def test_msgpack_serializer_is_announced_and_used() -> None:
    app = make_app()
    app.set_serializer("msgpack")
    async with serve(app) as server:
        client = await server.connect(serializer=MsgpackSerializer())
        assert client.handshake_response.serializer == "msgpack"
        assert await client.request("account.echo", {"b": b"\x00\x01", "n": 1}) == {
            "b": b"\x00\x01",
            "n": 1,
        }
        with pytest.raises(RequestError) as info:
            await client.request("account.nope", {})
        assert info.value.code == "PIT-404"
