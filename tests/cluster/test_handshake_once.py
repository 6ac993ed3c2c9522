"""A session's handshake reaches a backend once, not with every forwarded message (issue
18.4; ``actors.cluster.handshakes``): real nats-server (bytes read from its ``/varz``) and
etcd, a connector and a room in this process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from actors.testing import serve
from tests.bench.bench_handshake_bytes import MonitoredNats, cluster_apps, measure
from tests.reliability.support import until
from tests.services import EtcdServer, serving


@pytest.fixture
def monitored_nats() -> Iterator[MonitoredNats]:
    yield from serving(MonitoredNats())


async def test_a_big_handshake_crosses_nats_once_and_every_message_sees_it(
    monitored_nats: MonitoredNats, etcd_server: EtcdServer
) -> None:
    size = 900 * 1024
    figures = await measure(monitored_nats, etcd_server, size=size, notifies=40)
    assert figures.sizes == [size] * 42  # the room saw the whole handshake every time
    assert size < figures.first_request_bytes < size + 4096
    # Before: ~945,000 bytes per notify (the handshake each time), 38.7 MB in all.
    assert figures.per_notify_bytes < 1024


@pytest.mark.parametrize("transport", ["nats", "grpc"])
async def test_a_backend_without_the_handshake_fetches_it_and_forgets_it_at_close(
    monitored_nats: MonitoredNats, etcd_server: EtcdServer, transport: str
) -> None:
    sizes: list[int] = []
    room, connector = cluster_apps(monitored_nats, etcd_server, sizes, transport)
    async with room, serve(connector) as server:
        assert room.cluster is not None and connector.cluster is not None
        discovery = connector.cluster.discovery
        await until(lambda: bool(discovery.servers("room")))
        client = await server.connect(handshake_user={"blob": "y" * 1000})
        kept = room.cluster.handshakes
        assert await client.request("room.seen.size", {}) == {"size": 1000}
        assert len(kept) == 1
        kept.drop("connector-1", next(iter(connector.sessions)).id)  # evicted, or restarted
        before = await asyncio.to_thread(monitored_nats.in_bytes)
        assert await client.request("room.seen.size", {}) == {"size": 1000}  # fetched
        fetched = await asyncio.to_thread(monitored_nats.in_bytes) - before
        if transport == "nats":
            assert 1000 < fetched < 4000  # the handshake crossed once more, for the fetch
        assert len(kept) == 1
        await client.notify("room.seen.tick", {})
        assert await client.request("room.seen.size", {}) == {"size": 1000}
        assert sizes == [1000] * 4
        await client.close()
        await until(lambda: len(kept) == 0)  # the close event dropped it
