"""A request leaves no reference cycles behind, at either end of a forward: its objects are
freed by reference counting (why it matters: ``tests.cycles``). In one process, on the
in-memory seams; the NATS pipe's own part is checked against nats-server in
``tests/transport/test_nats.py``."""

from __future__ import annotations

from typing import Any

from actors.app import App
from actors.errors import PitayaError
from actors.handler import Handler, handler
from actors.session import Session
from actors.testing import TestClient
from tests.actors.cluster.test_in_memory_cluster import cluster
from tests.cycles import Work, left_per_extra_run
from transport.client import Client, RequestError


def requests(client: Client, route: str) -> Work:
    async def work(count: int) -> None:
        for _ in range(count):
            await client.request(route, {})

    return work


def refused(client: Client, route: str) -> Work:
    """Requests answered with an error (``PIT-403``, the handler's own)."""

    async def work(count: int) -> None:
        for _ in range(count):
            try:
                await client.request(route, {})
            except RequestError as exc:
                assert exc.code == "PIT-403"
            else:
                raise AssertionError(f"{route} answered without an error")

    return work


class Refusing(Handler):
    service = "no"

    @handler
    def now(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        raise PitayaError("PIT-403", "not your turn")

    @handler
    async def later(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        raise PitayaError("PIT-403", "not your turn")


async def test_a_forwarded_request_leaves_no_cycles_at_either_end() -> None:
    async with cluster() as net:
        client = await net.client()
        assert await left_per_extra_run(requests(client, "room.ops.whoami")) < 1


async def test_a_local_request_leaves_no_cycles() -> None:
    async with cluster() as net:
        client = await net.client()
        assert await left_per_extra_run(requests(client, "connector.entry.me")) < 1


async def test_a_user_rpc_leaves_no_cycles() -> None:
    async with cluster() as net:
        connector = net.connectors[0]

        async def work(count: int) -> None:
            for _ in range(count):
                await connector.rpc("room.counts.caller", {"n": 1})

        assert await left_per_extra_run(work) < 1


async def test_an_awaiting_forwarded_handler_leaves_no_cycles() -> None:
    """``room.ops.ask_front`` awaits a user RPC back to the frontend: a task on the
    backend, an RPC each way."""
    async with cluster() as net:
        client = await net.client()

        async def work(count: int) -> None:
            for i in range(count):
                answer = await client.request("room.ops.ask_front", {"n": i})
                assert answer["n"] == i

        assert await left_per_extra_run(work) < 1


async def test_a_forwarded_error_leaves_no_cycles() -> None:
    """The backend's error is decoded on the frontend: without the traceback of where."""
    async with cluster() as net:
        client = await net.client()
        assert await left_per_extra_run(refused(client, "room.ops.refuse")) < 1


async def test_a_handlers_error_leaves_no_cycles() -> None:
    """A handler's PitayaError is answered without its traceback, whose frames hold the
    session's entry (which holds the error)."""
    app = App(server_type="connector", server_id="c-1")
    app.register(Refusing)
    async with TestClient(app) as client:
        assert await left_per_extra_run(refused(client, "no.now")) < 1
        assert await left_per_extra_run(refused(client, "no.later")) < 1
