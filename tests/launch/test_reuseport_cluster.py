"""Two connector processes on one port (the launcher's ``reuse_port``), real NATS and etcd.

The kernel spreads clients across the two processes; sessions, the chat room (pushes by uid
from the room server's actor), a group broadcast and a push by uid all reach clients
whichever process holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import NODE_ENV, etcd_server, nats_server, rpc_transport
from tests.launch.harness import LauncherProcess
from tests.services import EtcdServer, NatsServer, free_port
from transport.client import Client

__all__ = ["etcd_server", "nats_server", "rpc_transport"]  # fixtures used by name

NODE = "tests.launch.reuseport_node"
CONNECTORS = ("connector-1", "connector-2")
TIMEOUT = 20.0


@pytest.fixture
async def launcher(
    tmp_path: Path, nats_server: NatsServer, etcd_server: EtcdServer
) -> AsyncIterator[LauncherProcess]:
    config = tmp_path / "cluster.toml"
    env = "\n".join(f'{key} = "{value}"' for key, value in NODE_ENV.items())
    config.write_text(
        f"""
        [vars]
        nats = "{nats_server.url}"
        etcd = "{etcd_server.endpoint}"

        [env]
        {env}

        [[servers]]
        name = "connector-{{n}}"
        module = "{NODE}"
        args = ["connector", "--id", "connector-{{n}}", "--nats", "{{nats}}", "--etcd", "{{etcd}}",
                "--tcp-port", "{{tcp}}", "--ws-port", "{{ws}}"]
        count = 2
        ports = {{ tcp = {free_port()}, ws = {free_port()} }}
        reuse_port = true

        [[servers]]
        name = "room-1"
        module = "{NODE}"
        args = ["room", "--id", "room-1", "--nats", "{{nats}}", "--etcd", "{{etcd}}"]
        """
    )
    process = await LauncherProcess(config).start()
    try:
        yield process
    finally:
        await process.close()


async def spread_clients(port: int, per_process: int) -> dict[str, list[Client]]:
    """Connect until each connector holds ``per_process`` clients (extra ones are closed)."""
    held: dict[str, list[Client]] = {name: [] for name in CONNECTORS}
    for _ in range(200):
        if all(len(clients) >= per_process for clients in held.values()):
            return held
        client = await Client.connect("127.0.0.1", port, request_timeout=TIMEOUT)
        server_id = (await client.request("connector.me.show"))["server_id"]
        if len(held[server_id]) < per_process:
            held[server_id].append(client)
        else:
            await client.close()
    raise AssertionError(f"200 connections did not reach both processes: {held}")


async def next_push(client: Client, route: str) -> Any:
    async def first() -> Any:
        async for push in client.pushes():
            if push.route == route:
                return push.body
        raise AssertionError(f"closed before a push on {route}")

    return await asyncio.wait_for(first(), TIMEOUT)


async def test_two_connectors_share_a_port_and_pushes_reach_both(
    launcher: LauncherProcess,
) -> None:
    for name in (*CONNECTORS, "room-1"):
        await launcher.wait_line(rf"\[{name}\] started \(", timeout=60)
    for name in CONNECTORS:  # each side routes to the other once its discovery has seen it
        await launcher.wait_line(rf"\[{name}\] server added room-1 ", timeout=60)
        await launcher.wait_line(rf"\[room-1\] server added {name} ", timeout=60)
    ports = set()
    for name in CONNECTORS:
        found = await launcher.wait_line(rf"\[{name}\] tcp listening on [\d.]+:(\d+)")
        ports.add(int(found.group(1)))
    assert len(ports) == 1, ports  # one port, two processes
    port = ports.pop()

    held = await spread_clients(port, per_process=2)
    clients = [client for name in CONNECTORS for client in held[name]]
    try:
        # Everyone joins the chat room (bound on its own frontend, added to the group).
        uids: dict[Client, str] = {}
        for index, client in enumerate(clients):
            reply = await client.request("room.room.join", {"name": f"player-{index}"})
            assert reply["result"] == "success"
            uids[client] = (await client.request("connector.me.show"))["uid"]
        assert all(uids.values())

        # A chat message: the room actor pushes by uid to every member, on both processes.
        waiting = [asyncio.ensure_future(next_push(c, "onMessage")) for c in clients]
        await held["connector-1"][0].request("room.room.message", {"content": "hello"})
        for body in await asyncio.gather(*waiting):
            assert body == {"name": "player-0", "content": "hello"}

        # A group broadcast from the room server reaches members on both processes.
        waiting = [asyncio.ensure_future(next_push(c, "onFanout")) for c in clients]
        reply = await held["connector-2"][0].request("room.fanout.group", {"n": 7})
        assert reply["unreached"] == []
        assert await asyncio.gather(*waiting) == [{"n": 7}] * len(clients)

        # Push by uid, asked through connector-1, to the users held by connector-2.
        targets = held["connector-2"]
        waiting = [asyncio.ensure_future(next_push(c, "onPoke")) for c in targets]
        reply = await held["connector-1"][1].request(
            "room.ops.push_to", {"uids": [uids[c] for c in targets]}
        )
        assert reply["failed"] == []
        assert await asyncio.gather(*waiting) == [{"from": "room-1"}] * len(targets)
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
