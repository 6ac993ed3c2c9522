"""A graceful stop waits for the session events sent to backends within its budget
(``Cluster.close(events_within=...)``), but not for those that can no longer go out."""

from __future__ import annotations

import asyncio

import pytest

from actors.testing import MemoryCluster, cluster_app

pytestmark = pytest.mark.timeout(30)


async def test_a_stop_for_a_transport_gone_for_good_does_not_wait_for_held_events() -> None:
    """Nothing held can go out once the transport cannot come back (the very reason the
    server stops): the stop waited for them all the same, the rest of its budget."""
    network = MemoryCluster()
    app = cluster_app(network, "connector", server_id="c-1", frontend=True, shutdown_timeout=5)
    await app.start()
    cluster = app.cluster
    assert cluster is not None
    cluster.users.hold_events(cluster.rpc_client.start_call)  # (NATS's, on this network)
    held = cluster.users.held_events
    assert held is not None
    held.hold("room-1", b"close")  # held while the transport is down
    cluster._transport_lost("NATS closed the connection")
    loop = asyncio.get_running_loop()
    start = loop.time()
    await app.stop()
    assert loop.time() - start < 2.0
    assert len(held) == 0
