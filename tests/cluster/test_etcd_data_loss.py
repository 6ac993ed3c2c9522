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

from tests.cluster.harness import Node, start_node
from tests.services import EtcdServer, NatsServer
from transport.client import Client
from transport.etcd import EtcdClient

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
    mark = len(connector.log)
    await asyncio.to_thread(etcd_server.start)
    await connector.wait_for_log("server removed room-1", timeout=15, start=mark)
    await connector.wait_for_log("server added room-1", timeout=15, start=mark)
    client = await Client.connect("127.0.0.1", connector.ports["tcp"], request_timeout=10)
    try:
        assert (await client.request("room.room.whoami"))["server_id"] == "room-1"
    finally:
        await client.close()
    assert room.process is not None and room.process.returncode is None
