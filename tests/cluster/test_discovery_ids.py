"""Server ids are unique, and the etcd prefix is configurable (real etcd, real servers).

* A server started beside a live server with the same id refuses to start, with one line, and
  leaves the live one's entry alone (an etcd transaction creates the entry only if absent).
* A running server whose entry vanishes (deleted, or its lease revoked) puts it back.
* ``etcd_prefix`` moves every key (servers, binding storage, groups); clusters with
  different prefixes on one etcd do not see each other.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from actors.app import App
from actors.modules.binding_storage import BindingStorage
from actors.startup import EXIT_ID_HELD
from tests.cluster.harness import NODE_ENV, Node, start_node
from tests.services import EtcdServer, NatsServer
from transport.etcd import EtcdClient, KeyEvent


@asynccontextmanager
async def etcd_client(etcd_server: EtcdServer) -> AsyncIterator[EtcdClient]:
    etcd = EtcdClient([etcd_server.endpoint])
    await etcd.connect()
    try:
        yield etcd
    finally:
        await etcd.close()


async def value_becomes(
    etcd: EtcdClient, key: str, wanted: bool, timeout: float = 10
) -> bytes | None:
    """Poll etcd until ``key`` exists (``wanted``) or not; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await etcd.get(key)
        if (value is not None) == wanted:
            return value
        assert time.monotonic() < deadline, f"{key} {'never appeared' if wanted else 'stayed'}"
        await asyncio.sleep(0.05)


async def run_to_exit(
    role: str, server_id: str, nats: NatsServer, etcd: EtcdServer, **env: str
) -> tuple[int, list[str], float]:
    """Run a test server process expected to exit; (exit code, stderr lines, seconds)."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.cluster.node", role, "--id", server_id,
        "--nats", nats.url, "--etcd", etcd.endpoint,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **NODE_ENV, **env},
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, err.decode(errors="replace").splitlines(), time.monotonic() - started


async def test_a_second_server_with_a_live_servers_id_refuses_to_start(
    nats_server: NatsServer, etcd_server: EtcdServer, nodes: list[Node]
) -> None:
    room = await start_node(nodes, "room", "room-1", nats_server, etcd_server)
    async with etcd_client(etcd_server) as etcd:
        before = await etcd.get_with_lease("pitaya/servers/room/room-1")
        assert before is not None
        code, lines, took = await run_to_exit("room", "room-1", nats_server, etcd_server)
        assert code == EXIT_ID_HELD, lines  # 75, not 1: a supervisor retries, no crash
        assert lines[-1].startswith(
            "room-1 cannot start: server id 'room-1' is already registered by a live server on "
        ), lines
        assert (
            "(pitaya/servers/room/room-1; if that server is gone, the id is free in " in (lines[-1])
        )
        assert lines[-1].endswith(" s): give each server its own id"), lines[-1]
        assert not any("Traceback" in line for line in lines), lines
        print(f"duplicate refused in {took:.2f} s (process start included)")
        # The live server's entry is untouched (same value, same lease) and it still serves.
        assert await etcd.get_with_lease("pitaya/servers/room/room-1") == before
        assert room.process is not None and room.process.returncode is None
        # A different type with the same id is refused as well (ids are unique).
        code, lines, _ = await run_to_exit("connector", "room-1", nats_server, etcd_server)
        assert code == EXIT_ID_HELD, lines
        assert lines[-1].startswith(
            "room-1 cannot start: server id 'room-1' is already registered by a 'room' server on "
        ), lines
        assert await etcd.get("pitaya/servers/connector/room-1") is None


async def test_a_server_puts_its_vanished_entry_back(
    nats_server: NatsServer, etcd_server: EtcdServer, nodes: list[Node]
) -> None:
    room = await start_node(nodes, "room", "room-1", nats_server, etcd_server)
    key = "pitaya/servers/room/room-1"
    async with etcd_client(etcd_server) as etcd:
        entry = await etcd.get_with_lease(key)
        assert entry is not None
        value, lease = entry
        # Deleted by hand: back at once (the server watches its own key), same lease.
        started = time.monotonic()
        assert await etcd.delete(key)
        assert await value_becomes(etcd, key, True) == value
        print(f"deleted entry back in {time.monotonic() - started:.2f} s")
        await room.wait_for_log("[room-1] this server's discovery entry vanished; registered again")
        again = await etcd.get_with_lease(key)
        assert again is not None and again[1] == lease
        # Its lease revoked (the entry goes with it): back under a new lease.
        started = time.monotonic()
        await etcd.revoke(lease)
        assert await value_becomes(etcd, key, True) == value
        print(f"entry of a revoked lease back in {time.monotonic() - started:.2f} s")
        await room.wait_for_log("[room-1] discovery lease lost; registered again")
        again = await etcd.get_with_lease(key)
        assert again is not None and again[1] != lease
        assert not any("Traceback" in line for line in room.log), room.log


async def test_after_a_refused_duplicate_stops_the_original_stays_registered(
    nats_server: NatsServer, etcd_server: EtcdServer, nodes: list[Node]
) -> None:
    """The issue's scenario: before, the duplicate's stop deleted the shared key and the
    original vanished from discovery for good."""
    await start_node(nodes, "room", "room-1", nats_server, etcd_server)
    async with etcd_client(etcd_server) as etcd:
        code, _, _ = await run_to_exit("room", "room-1", nats_server, etcd_server)
        assert code == EXIT_ID_HELD
        # Longer than a keep-alive period (TTL 2 s in the harness): still there.
        for _ in range(3):
            await asyncio.sleep(1)
            assert await etcd.get("pitaya/servers/room/room-1") is not None


def app(nats_server: NatsServer, etcd_server: EtcdServer, **options: Any) -> App:
    return App(
        mode="cluster",
        nats_url=nats_server.url,
        etcd_endpoints=etcd_server.endpoint,
        **options,
    )


async def test_the_etcd_prefix_moves_every_key(
    nats_server: NatsServer, etcd_server: EtcdServer, monkeypatch: Any
) -> None:
    # From the environment, as any option (Pitaya's PITAYA_ + key).
    monkeypatch.setenv("PITAYA_ETCD_PREFIX", "game-a/")
    a_connector = app(nats_server, etcd_server, server_type="connector", frontend=True)
    a_connector.register_module(BindingStorage(a_connector), "binding_storage")
    a_room = app(nats_server, etcd_server, server_type="room", frontend=False)
    monkeypatch.delenv("PITAYA_ETCD_PREFIX")
    b_room = app(nats_server, etcd_server, server_type="room", frontend=False)
    assert a_room.config.etcd_prefix == "game-a/" and b_room.config.etcd_prefix == "pitaya/"
    async with etcd_client(etcd_server) as etcd:
        for server in (a_connector, a_room, b_room):
            await server.start()
        try:
            assert a_connector.cluster is not None and b_room.cluster is not None
            a_key = f"game-a/servers/room/{a_room.server_id}"
            b_key = f"pitaya/servers/room/{b_room.server_id}"
            assert json.loads(await etcd.get(a_key) or b"null")["id"] == a_room.server_id
            assert json.loads(await etcd.get(b_key) or b"null")["id"] == b_room.server_id
            # Each cluster sees its own servers only.
            a_discovery = a_connector.cluster.discovery
            deadline = time.monotonic() + 10
            while not a_discovery.servers("room"):  # the room started after the connector
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            assert [s.id for s in a_discovery.servers("room")] == [a_room.server_id]
            assert b_room.cluster.discovery.server(a_room.server_id) is None
            assert b_room.cluster.discovery.server(a_connector.server_id) is None
            # Groups: Go Pitaya's layout under the prefix (empty values).
            await a_room.groups.create("lobby")
            await a_room.groups.add("lobby", "ann")
            items, _ = await etcd.get_prefix("game-a/groups/")
            assert items == {"game-a/groups/lobby": b"", "game-a/groups/lobby/uids/ann": b""}
            assert await b_room.groups.exists("lobby") is False
            await a_room.groups.delete("lobby")
            # Binding storage: read (and written) under the prefix.
            storage = a_connector.get_module("binding_storage")
            assert isinstance(storage, BindingStorage)
            await etcd.put("pitaya/bindings/connector/ann", b"elsewhere")
            assert await storage.frontend_of("ann", ["connector"]) is None
            await etcd.put("game-a/bindings/connector/ann", a_connector.server_id.encode())
            assert await storage.frontend_of("ann", ["connector"]) == a_connector.server_id
        finally:
            for server in (b_room, a_room, a_connector):
                await server.stop()


async def test_a_restarted_server_takes_over_the_entry_of_its_crashed_self(
    nats_server: NatsServer, etcd_server: EtcdServer, nodes: list[Node]
) -> None:
    """A server killed with SIGKILL leaves its entry until its lease expires (a whole TTL);
    started again with the same id, it is refused while the entry may be live, then takes it
    over once the lease has gone unrefreshed for longer than a keep-alive period (TTL/3 + 2 s),
    before the lease expires. The take-over deletes the old entry, then writes its own: Go
    Pitaya's discovery ignores a changed entry of a server it knows (its gRPC clients kept
    dialling the dead server's port), and sees a delete and a put as a restart."""
    ttl = {"PITAYA_ETCD_LEASE_TTL": "15"}  # refreshed every 5 s; stale after 7 s unrefreshed
    room = await start_node(nodes, "room", "room-1", nats_server, etcd_server, **ttl)
    key = "pitaya/servers/room/room-1"
    async with etcd_client(etcd_server) as etcd:
        entry = await etcd.get_with_lease(key)
        assert entry is not None
        _, revision = await etcd.get_prefix(key)
        events: asyncio.Queue[KeyEvent] = asyncio.Queue()

        async def watch() -> None:
            async for event in etcd.watch_prefix(key, revision + 1):
                events.put_nowait(event)

        watching = asyncio.ensure_future(watch())
        await room.kill()
        killed = time.monotonic()
        code, lines, _ = await run_to_exit("room", "room-1", nats_server, etcd_server, **ttl)
        assert code == EXIT_ID_HELD and ", the id is free in " in lines[-1], lines
        free_in = int(lines[-1].split(", the id is free in ")[1].split(" s)")[0])
        assert 0 < free_in <= 8, lines[-1]
        while True:  # what a launcher does: start it again (with a backoff) until it runs
            again = Node("room", "room-1", nats_server, etcd_server, **ttl)
            try:
                await again.start()
            except RuntimeError:
                assert time.monotonic() - killed < 12, "not taken over before the lease expired"
                await asyncio.sleep(0.5)
                continue
            nodes.append(again)
            break
        took = time.monotonic() - killed
        print(f"restarted {took:.1f} s after the SIGKILL (lease TTL 15 s)")
        assert took < 15
        await again.wait_for_log("took over the discovery entry of a server with this id")
        held = await etcd.get_with_lease(key)
        assert held is not None and held[1] != entry[1]  # under the new server's lease
        deleted, put = [await asyncio.wait_for(events.get(), 5) for _ in range(2)]
        watching.cancel()
        assert (deleted.value, put.value) == (None, held[0])  # a delete, then a put
