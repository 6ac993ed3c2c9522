"""A request leaves no reference cycles behind, at either end of a forward: its objects are
freed by reference counting (why it matters: ``tests.cycles``). In one process, on the
in-memory seams; the NATS pipe's own part is checked against nats-server in
``tests/transport/test_nats.py``."""

from __future__ import annotations

from tests.actors.cluster.test_in_memory_cluster import cluster
from tests.cycles import Work, left_per_extra_run
from transport.client import Client


def requests(client: Client, route: str) -> Work:
    async def work(count: int) -> None:
        for _ in range(count):
            await client.request(route, {})

    return work


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
