"""Garbage in etcd: discovery skips the entry, warns once, and keeps following the cluster.

Over a real etcd: whoever can write under ``pitaya/servers/`` can put anything there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import pytest

from actors.app import App
from actors.cluster.discovery import ServerInfo
from tests.cluster.harness import etcd_server, nats_server, rpc_transport
from tests.services import EtcdServer, NatsServer
from transport.etcd import EtcdClient

__all__ = ["etcd_server", "nats_server", "rpc_transport"]

# Unique keys per run: "warned once" is per key and per process.
_RUN = uuid.uuid4().hex[:8]
GARBAGE = {
    f"pitaya/servers/room/metadata-list-{_RUN}": json.dumps(
        {"id": "x", "metadata": [1, 2]}
    ).encode(),
    f"pitaya/servers/room/metadata-str-{_RUN}": json.dumps({"id": "y", "metadata": "abc"}).encode(),
    f"pitaya/servers/room/deep-{_RUN}": b'{"id": "z", "metadata": {"k": '
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}}",
    f"pitaya/servers/room/deep-value-{_RUN}": b"[" * 100_000 + b"]" * 100_000,
    f"pitaya/servers/room/not-json-{_RUN}": b"\xff\xfe",
}


async def test_garbage_entries_are_skipped_and_warned_once(
    nats_server: NatsServer, etcd_server: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    etcd = EtcdClient([etcd_server.endpoint])
    await etcd.connect()
    try:
        for key, value in GARBAGE.items():  # present at the first sync
            await etcd.put(key, value)
        app = App(
            server_type="watcher",
            mode="cluster",
            frontend=False,
            nats_url=nats_server.url,
            etcd_endpoints=etcd_server.endpoint,
            server_sync_interval=0.2,  # several resyncs during the test
        )
        caplog.set_level(logging.WARNING, logger="actors.cluster.discovery")
        await app.start()
        try:
            assert app.cluster is not None
            discovery = app.cluster.discovery
            # Seen by the watch too, then a good entry still gets through.
            for key, value in GARBAGE.items():
                await etcd.put(key, value + b" ")
            good = ServerInfo("room-ok", "room", metadata={"a": "b"})
            await etcd.put(good.key(), good.to_json())
            deadline = asyncio.get_running_loop().time() + 10
            while discovery.server("room-ok") is None:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.5)  # a few resyncs: no new warnings
            assert [s.id for s in discovery.servers("room")] == ["room-ok"]
        finally:
            await app.stop()
    finally:
        await etcd.close()
    warned = [r.getMessage() for r in caplog.records if "malformed discovery" in r.getMessage()]
    for key in GARBAGE:
        assert sum(f" {key}:" in line for line in warned) == 1, (key, warned)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
