"""The launcher running the cluster sample (1 connector + 2 rooms) against real NATS and etcd:
a server killed with SIGKILL comes back and rejoins; SIGTERM stops all of them cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cluster.harness import NODE_ENV
from tests.launch.harness import LauncherProcess, wait_pids_gone, wait_port_closed
from tests.services import EtcdServer, NatsServer, free_port
from transport.client import Client, RequestError

SERVERS = ("connector-1", "room-1", "room-2")


@pytest.fixture
async def launcher_process(
    tmp_path: Path, nats_server: NatsServer, etcd_server: EtcdServer
) -> AsyncIterator[LauncherProcess]:
    config = tmp_path / "cluster.toml"
    env = "\n".join(f'{key} = "{value}"' for key, value in NODE_ENV.items())
    config.write_text(
        f"""
        [launcher]
        backoff_initial = 0.2

        [vars]
        nats = "{nats_server.url}"
        etcd = "{etcd_server.endpoint}"

        [env]
        {env}

        [[servers]]
        name = "connector-{{n}}"
        module = "samples.cluster"
        args = ["connector", "--id", "connector-{{n}}", "--nats", "{{nats}}", "--etcd", "{{etcd}}",
                "--tcp-port", "{{tcp}}", "--ws-port", "{{ws}}"]
        ports = {{ tcp = {free_port()}, ws = {free_port()} }}

        [[servers]]
        name = "room-{{n}}"
        module = "samples.cluster"
        args = ["room", "--id", "room-{{n}}", "--nats", "{{nats}}", "--etcd", "{{etcd}}"]
        count = 2
        """
    )
    process = await LauncherProcess(config).start()
    try:
        yield process
    finally:
        await process.close()


async def test_launcher_restarts_a_killed_server_and_stops_all_gracefully(
    launcher_process: LauncherProcess,
) -> None:
    launcher = launcher_process
    pids = {name: await launcher.server_pid(name) for name in SERVERS}
    for name in SERVERS:
        await launcher.wait_line(rf"\[{name}\] started \(")
    # The connector routes to the rooms once its discovery has seen them (etcd's watch).
    await launcher.wait_line(r"\[connector-1\] server added room-")
    listening = await launcher.wait_line(r"\[connector-1\] tcp listening on [\d.]+:(\d+)")
    port = int(listening.group(1))
    client = await Client.connect("127.0.0.1", port, request_timeout=10)
    assert (await client.request("room.room.whoami"))["server_id"] in ("room-1", "room-2")

    # kill -9 one room server by PID: it is restarted and rejoins the cluster.
    os.kill(pids["room-1"], signal.SIGKILL)
    found = await launcher.wait_line(rf"room-1 killed by SIGKILL \(pid {pids['room-1']}\)")
    index = launcher.lines.index(found.string)
    new_pid = await launcher.server_pid("room-1", index)
    assert new_pid != pids["room-1"]
    await launcher.wait_line(r"\[room-1\] started \(", index)

    # The chat is pinned to the smallest room id: room-1 serves it again once the connector
    # sees it back in discovery (each try is a real request).
    async def served_by_room1() -> None:
        while True:
            try:
                reply = await client.request("connector.entry.info")
            except RequestError:  # still routed to the dead process: PIT-408, try again
                continue
            if reply["room"]["server_id"] == "room-1":
                return

    await asyncio.wait_for(served_by_room1(), 15)

    # SIGTERM to the launcher: every server stops gracefully (clients get a kick), exit 0.
    admin_port = await launcher.admin_port()
    launcher.signal(signal.SIGTERM)
    await client.wait_closed(timeout=20)
    assert client.kicked
    assert await launcher.wait(timeout=40) == 0
    for name in SERVERS:
        assert any(f"[{name}] stopped" in line for line in launcher.lines), name
        assert any(f"{name} stopped (exited with code 0)" in line for line in launcher.lines)
    await wait_pids_gone([new_pid, pids["room-2"], pids["connector-1"]])
    await wait_port_closed(admin_port)
