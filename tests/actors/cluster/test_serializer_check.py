"""A frontend and a backend on different serializers: each says so once, at once, instead of
every forwarded request failing with a PIT-400 that blames the client's body."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from actors.handler import Handler, handler
from actors.session import Session
from actors.testing import MemoryCluster, TestClient, cluster_app
from transport.client import RequestError


class Echo(Handler):
    service = "echo"

    @handler
    def say(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        return body


def mismatch_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "same serializer" in r.getMessage()]


async def test_servers_that_forward_with_different_serializers_are_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    network = MemoryCluster()
    room = cluster_app(network, "room", server_id="room-1", frontend=False)
    room.register(Echo)
    other_room = cluster_app(network, "room", server_id="room-2", frontend=False)
    other_room.register(Echo)
    connector = cluster_app(network, "connector", server_id="c-1", serializer="msgpack")
    async with room, other_room, TestClient(connector) as client:
        with pytest.raises(RequestError) as caught:  # what it cannot help
            await client.request("room.echo.say", {"a": 1})
        assert caught.value.code == "PIT-400"
    told = "clients' bodies with %s, this one with %s: client messages forwarded between them"
    assert sorted(mismatch_warnings(caplog)) == [  # once each, by the frontend and backends
        f"[c-1] server room-1 (room) serializes {told % ('json', 'msgpack')}, and pushes "
        "from the backend to the frontend's clients, would not decode; give every server of "
        "the cluster the same serializer",
        f"[c-1] server room-2 (room) serializes {told % ('json', 'msgpack')}, and pushes "
        "from the backend to the frontend's clients, would not decode; give every server of "
        "the cluster the same serializer",
        f"[room-1] server c-1 (connector) serializes {told % ('msgpack', 'json')}, and pushes "
        "from the backend to the frontend's clients, would not decode; give every server of "
        "the cluster the same serializer",
        f"[room-2] server c-1 (connector) serializes {told % ('msgpack', 'json')}, and pushes "
        "from the backend to the frontend's clients, would not decode; give every server of "
        "the cluster the same serializer",
    ]


async def test_servers_on_one_serializer_say_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    network = MemoryCluster()
    room = cluster_app(network, "room", frontend=False, serializer="msgpack")
    room.register(Echo)
    connector = cluster_app(network, "connector", serializer="msgpack")
    async with room, TestClient(connector) as client:
        assert await client.request("room.echo.say", {"a": 1}) == {"a": 1}
    assert mismatch_warnings(caplog) == []
