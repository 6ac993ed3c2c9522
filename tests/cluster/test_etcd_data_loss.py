"""etcd restarted without its data (a new, empty etcd on the same address): the servers'
tables are repaired at once, not at the next full sync (real processes, real etcd).

An empty etcd numbers its changes from 1 again. The watch of each server resumed from the
revision it had seen, so it saw none of the entries written again (every server's, as each
lease was gone) until etcd's count caught up: a connector that had read the empty table
first dropped the live room server and routed nothing to it ("no servers available") until
its next full sync (``server_sync_interval``, 120 s by default).
"""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from tests.cluster.harness import Node, start_node
from tests.services import EtcdServer, NatsServer
from transport.client import Client, RequestError
from transport.etcd import EtcdClient, EtcdUnavailable, EtcdWatchBroken

CHURN = 50
"""Changes under the servers' prefix before the loss (servers coming and going)."""


async def test_an_etcd_that_lost_its_data_is_watched_again_from_its_start(
    nats_server: NatsServer, etcd_server: EtcdServer, nodes: list[Node]
) -> None:
    # No full sync during the test: the watch alone must see the room come back.
    env = {"PITAYA_SERVER_SYNC_INTERVAL": "60"}
    # The room renews its lease every 3 s: it registers again after the connector has read
    # the new, empty, table (and dropped it).
    room = await start_node(
        nodes, "room", "room-1", nats_server, etcd_server, PITAYA_ETCD_LEASE_TTL="9", **env
    )
    connector = await start_node(nodes, "connector", "c-1", nats_server, etcd_server, **env)
    etcd = EtcdClient([etcd_server.endpoint], timeout=2)
    await etcd.connect()
    try:
        key = "pitaya/servers/tmp/tmp-1"
        entry = {"id": "tmp-1", "type": "tmp", "metadata": {}, "frontend": False}
        for i in range(CHURN):
            await etcd.put(key, json.dumps({**entry, "hostname": f"h{i}"}).encode())
        await etcd.delete(key)
    finally:
        await etcd.close()
    await connector.wait_for_log("server removed tmp-1")
    await asyncio.to_thread(etcd_server.stop)
    shutil.rmtree(etcd_server.data_dir / "data")
    await asyncio.to_thread(etcd_server.start)
    # The connector reads the new table (empty, or with the room registered again, as the
    # two race) and, either way, routes to the room again within seconds: before, having
    # dropped it, it routed nothing to it until its full sync, 60 s away.
    client = await Client.connect("127.0.0.1", connector.ports["tcp"], request_timeout=10)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    try:
        while True:
            try:
                assert (await client.request("room.room.whoami"))["server_id"] == "room-1"
                break
            except RequestError as exc:  # no servers of the type, for now
                assert loop.time() < deadline, f"still not routed to the room: {exc}"
                await asyncio.sleep(0.2)  # polled: the table is the connector's own
    finally:
        await client.close()
    assert room.process is not None and room.process.returncode is None


async def test_a_watch_through_an_etcd_that_lost_its_data_breaks_even_once_past_it(
    etcd_server: EtcdServer,
) -> None:
    """The watch resumed by itself from the last revision it had seen: an etcd that came
    back empty and had already counted past that revision (its servers registering again)
    was watched from there, and every change below it was missed. The watch now breaks
    with the stream, and its reader reads the prefix again (discovery does)."""
    etcd = EtcdClient([etcd_server.endpoint], timeout=2)
    await etcd.connect()
    try:
        await etcd.put("w/a", b"1")
        _, revision = await etcd.get_prefix("w/")
        events = etcd.watch_prefix("w/", revision + 1)
        await etcd.put("w/a", b"2")
        first = await asyncio.wait_for(anext(events), 10)
        assert (first.key, first.value) == ("w/a", b"2")
        await asyncio.to_thread(etcd_server.stop)
        shutil.rmtree(etcd_server.data_dir / "data")
        await asyncio.to_thread(etcd_server.start)
        await put_once_back(etcd, "w/new0")
        for i in range(1, revision + 5):  # the new etcd counts past the revision seen
            await etcd.put(f"w/new{i}", b"x")
        with pytest.raises(EtcdWatchBroken):
            await asyncio.wait_for(anext(events), 10)
        items, _ = await etcd.get_prefix("w/")  # what the reader does then
        assert "w/a" not in items and "w/new0" in items
    finally:
        await etcd.close()


async def put_once_back(etcd: EtcdClient, key: str) -> None:
    """Put ``key`` as soon as etcd answers again (its client reconnects with a backoff)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        try:
            await etcd.put(key, b"x")
            return
        except EtcdUnavailable:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)  # polled: nothing tells when etcd is back
