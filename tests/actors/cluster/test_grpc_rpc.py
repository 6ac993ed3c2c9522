"""The gRPC RPC client's errors, as a game client receives them (``actors.cluster.grpc_rpc``).

A connector and a room, in one process, call each other over real gRPC (discovery is the
in-memory one: no etcd). A failed call reaches the game client as a Pitaya error that names
the backend by id and type, in the same words as over NATS (the in-memory RPC says what
NATS says); the backend's address and gRPC's own text go to the connector's log only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from actors.app import App
from actors.cluster.discovery import ServerInfo
from actors.cluster.grpc_rpc import GrpcRPCClient, GrpcRPCServer, _pitaya_error
from actors.errors import PitayaError
from actors.handler import Handler, handler
from actors.modules.base import ModuleBase
from actors.session import Session
from actors.testing import MemoryCluster, TestClient, cluster_app
from transport.client import Client, RequestError
from transport.grpc_rpc import GrpcCallError


class Room(Handler):
    """``room.room.*``: ``echo`` answers at once, ``stuck`` once the test lets it."""

    service = "room"

    def __init__(self, release: asyncio.Event) -> None:
        self.release = release

    @handler
    def echo(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        return body

    @handler
    async def stuck(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        await self.release.wait()
        return body


class NoBindings(ModuleBase):
    """The binding storage gRPC needs (pushes by uid find their frontend through it), for
    servers whose tests push to nobody."""

    async def push_to_users(
        self, route: str, payload: bytes, uids: list[str], frontend_types: list[str]
    ) -> tuple[list[str], list[str]]:
        return uids, []

    async def kick_users(
        self, reason: str, uids: list[str], frontend_types: list[str]
    ) -> tuple[list[str], list[str]]:
        return uids, []

    async def frontend_of(self, uid: str, frontend_types: list[str]) -> str | None:
        return None


def grpc_app(network: MemoryCluster, server_type: str, server_id: str, **options: Any) -> App:
    discovery = network.discovery()
    client = GrpcRPCClient(discovery, name=server_id, rpc_timeout=options["rpc_timeout"])
    app = App(
        server_type=server_type,
        server_id=server_id,
        mode="cluster",
        discovery=discovery,
        rpc=(client, GrpcRPCServer("127.0.0.1", 0)),
        **options,
    )
    app.register_module(NoBindings(), "binding_storage")
    return app


@asynccontextmanager
async def room_and_connector(
    make: Callable[..., App], rpc_timeout: float = 5.0
) -> AsyncIterator[tuple[App, App, Client, asyncio.Event]]:
    """A started room and connector made by ``make(network, type, id, **options)``, and a
    client of the connector; the event releases ``room.room.stuck``."""
    network = MemoryCluster()
    release = asyncio.Event()
    room = make(network, "room", "room-1", frontend=False, rpc_timeout=rpc_timeout)
    room.register(Room, release)
    async with room:
        connector = make(network, "connector", "c-1", rpc_timeout=rpc_timeout)
        async with TestClient(connector, request_timeout=10) as client:
            try:
                yield room, connector, client, release
            finally:
                release.set()


def in_memory_app(network: MemoryCluster, server_type: str, server_id: str, **options: Any) -> App:
    return cluster_app(network, server_type, server_id=server_id, **options)


async def unreachable_error(make: Callable[..., App]) -> tuple[RequestError, str]:
    """What a client gets for a request to a room whose RPC server stopped (discovery
    still lists it, as etcd does until the lease expires), and the room's gRPC port."""
    async with room_and_connector(make) as (room, _connector, client, _release):
        assert await client.request("room.room.echo", {"n": 1}) == {"n": 1}
        assert room.cluster is not None
        port = room.cluster.rpc_server.metadata.get("grpcPort", "")
        await room.cluster.rpc_server.stop()
        with pytest.raises(RequestError) as caught:
            await client.request("room.room.echo", {"n": 2})
        return caught.value, port


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "actors.cluster.grpc_rpc" and r.levelno == logging.WARNING
    ]


async def test_a_backend_that_refuses_connections_is_named_to_the_client_not_addressed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The client got ``rpc client: server room-1 is unreachable (failed to connect to all
    addresses; last error: UNKNOWN: ipv4:127.0.0.1:<port>: ...)``: the backend's address
    and gRPC's text, where NATS says the server's id."""
    error, port = await unreachable_error(grpc_app)
    assert error.code == "PIT-408"
    assert error.msg == "rpc client: server room-1 (room) is unreachable"
    assert "127.0.0.1" not in str(error) and port not in str(error)
    over_nats, _ = await unreachable_error(in_memory_app)
    assert (over_nats.code, over_nats.msg) == (error.code, error.msg)
    (line,) = warnings_of(caplog)  # the detail is the operator's, with this server's id
    assert line.startswith(
        f"[c-1] gRPC call to server room-1 (room) at 127.0.0.1:{port} failed: UNAVAILABLE: "
        "failed to connect to all addresses"
    )


async def test_a_backend_past_the_deadline_is_a_timeout_as_over_nats(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with room_and_connector(grpc_app, rpc_timeout=0.2) as (room, _, client, _release):
        assert room.cluster is not None
        port = room.cluster.rpc_server.metadata["grpcPort"]
        for _ in range(2):  # the second failure is counted, not logged again
            with pytest.raises(RequestError) as caught:
                await client.request("room.room.stuck", {})
            error = caught.value
            assert (error.code, error.msg) == ("PIT-408", "rpc client: request timeout")
            assert error.metadata["peer.id"] == "room-1"
            assert port not in str(error) and port not in str(error.metadata)
    (line,) = warnings_of(caplog)
    assert line == (
        f"[c-1] gRPC call to server room-1 (room) at 127.0.0.1:{port} failed: "
        "DEADLINE_EXCEEDED: Deadline Exceeded"
    )


ADDRESS = "ipv4:10.1.2.3:4567"


@pytest.mark.parametrize(
    ("code", "details", "expected"),
    [
        (
            grpc.StatusCode.UNAVAILABLE,
            f"failed to connect to all addresses; last error: UNKNOWN: {ADDRESS}: refused",
            ("PIT-408", "rpc client: server room-1 (room) is unreachable"),
        ),
        (
            grpc.StatusCode.UNAVAILABLE,
            f"Stream removed (Socket closed from {ADDRESS})",
            (
                "PIT-408",
                "rpc client: the connection to server room-1 (room) broke before it answered",
            ),
        ),
        (grpc.StatusCode.DEADLINE_EXCEEDED, ADDRESS, ("PIT-408", "rpc client: request timeout")),
        (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"too much from {ADDRESS}",
            ("PIT-500", "rpc client: call to server room-1 (room) failed"),
        ),
    ],
)
def test_no_grpc_error_carries_the_peers_address(
    code: grpc.StatusCode, details: str, expected: tuple[str, str]
) -> None:
    room = ServerInfo(id="room-1", type="room", hostname="h")
    error = _pitaya_error(GrpcCallError(code, details, "10.1.2.3:4567"), room)
    assert isinstance(error, PitayaError)
    assert (error.code, error.msg) == expected
    assert "10.1.2.3" not in str(error) and "4567" not in str(error)
