"""An app with the protobuf serializer, end to end through real sockets.

Handlers declare protobuf classes as body and return types; the client passes
``response_type=`` for responses and ``push_types=`` for pushes, and reads error responses
from Pitaya's ``protos.Error`` message.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from actors.app import App
from actors.handler import Handler, handler
from actors.session import Session
from actors.testing import serve
from tests.pbmessages import ChatPush, JoinRequest, JoinResponse
from transport.client import RequestError
from transport.protobuf import ErrorMessage


class PbRoom(Handler):
    service = "room"

    @handler
    def join(self, session: Session, body: JoinRequest) -> JoinResponse:
        session.push("onJoined", ChatPush(name=body.name, content="welcome"))
        return JoinResponse(result="success", members=["bot", body.name])

    @handler
    def untyped(self, session: Session, body: dict) -> JoinResponse:  # type: ignore[type-arg]
        return JoinResponse(result="unreachable with protobuf")

    @handler
    def wrong_reply(self, session: Session) -> dict:  # type: ignore[type-arg]
        return {"result": "a dict, not a message"}


def make_app() -> App:
    app = App(server_type="pbtest")
    app.set_serializer("protobuf")
    app.register(PbRoom)
    return app


async def test_request_and_push_with_protobuf_messages(websocket: bool) -> None:
    async with serve(make_app()) as server:
        client = await server.connect(websocket=websocket, push_types={"onJoined": ChatPush})
        assert client.handshake_response.serializer == "protobuf"
        pushes = client.pushes()
        reply = await client.request(
            "room.join", JoinRequest(name="ann"), response_type=JoinResponse
        )
        assert isinstance(reply, JoinResponse)
        assert (reply.result, list(reply.members)) == ("success", ["bot", "ann"])
        push = await asyncio.wait_for(anext(pushes), 5)
        assert push.route == "onJoined"
        assert push.body == ChatPush(name="ann", content="welcome")


async def test_untyped_response_and_push_are_raw_bytes() -> None:
    async with serve(make_app()) as server:
        client = await server.connect()
        received: list[object] = []
        client.on_push("onJoined", received.append)
        data = await client.request("room.join", JoinRequest(name="bo"))
        assert JoinResponse.FromString(data).members == ["bot", "bo"]
        push = await asyncio.wait_for(anext(client.pushes()), 5)
        assert push.body == ChatPush(name="bo", content="welcome").SerializeToString()
        assert received == [push.body]


async def test_unknown_route_is_pit_404_from_a_protos_error(websocket: bool) -> None:
    async with serve(make_app()) as server:
        client = await server.connect(websocket=websocket)
        with pytest.raises(RequestError) as info:
            await client.request("room.nothing", JoinRequest(name="x"), response_type=JoinResponse)
        assert (info.value.code, info.value.metadata) == ("PIT-404", {"route": "room.nothing"})
        # The bytes on the wire are Pitaya's protos.Error, not JSON.
        raw = await client.request_raw("nope.nothing")
        assert raw.error
        error = ErrorMessage.FromString(raw.data)
        assert (error.code, dict(error.metadata)) == ("PIT-404", {"route": "nope.nothing"})


async def test_malformed_protobuf_body_is_pit_400_and_session_stays_usable() -> None:
    async with serve(make_app()) as server:
        client = await server.connect()
        raw = await client.request_raw("room.join", b"\xff\xff\xff")
        assert raw.error
        error = ErrorMessage.FromString(raw.data)
        assert error.code == "PIT-400"
        assert "testchat.JoinRequest" in error.msg
        # Well-framed, but field 1 (a string) is not UTF-8: also a decode error.
        raw = await client.request_raw("room.join", b"\x0a\x02\xff\xfe")
        assert ErrorMessage.FromString(raw.data).code == "PIT-400"
        reply = await client.request(
            "room.join", JoinRequest(name="ok"), response_type=JoinResponse
        )
        assert reply.result == "success"


async def test_handler_without_a_protobuf_type_is_pit_400() -> None:
    async with serve(make_app()) as server:
        client = await server.connect()
        with pytest.raises(RequestError) as info:
            await client.request("room.untyped", JoinRequest(name="x"))
        assert info.value.code == "PIT-400"
        assert "message class" in info.value.msg


async def test_handler_returning_a_non_message_is_an_error() -> None:
    async with serve(make_app()) as server:
        client = await server.connect()
        with pytest.raises(RequestError) as info:
            await client.request("room.wrong_reply")
        assert info.value.code == "PIT-500"
        assert "encodes protobuf messages, not dict" in info.value.msg


async def test_docs_route_works_under_protobuf_and_names_field_types() -> None:
    async with serve(make_app()) as server:
        client = await server.connect()
        raw = await client.request("sys.docs")  # untyped protobuf response: raw bytes
        docs = json.loads(raw)
        join = next(v for k, v in docs["handlers"].items() if k.endswith(".join"))
        assert join["input"]["$protobuf"].endswith("JoinRequest")
        assert "string" in join["input"].values()
