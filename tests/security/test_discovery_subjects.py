"""A server entry in etcd whose type or id no NATS subject can carry (real nats-server and
etcd).

Whoever can write under ``pitaya/servers/`` can put anything there, and discovery skips what
is not a server entry. Found in review: an entry that was well formed but named a server
``room`` with an id of 5,000 characters was listed; a frontend that routed a client's
request to it sent a command line NATS refuses, NATS ended the frontend's connection for
good, and the frontend stopped: every player was cut off by one write to etcd. Such an
entry is now skipped (and warned of once) like any malformed one.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from actors.app import App
from actors.cluster.memory import MemoryCluster
from actors.cluster.rpc import ClusterStartupError
from actors.handler import Handler, handler
from actors.session import Session
from actors.testing import cluster_app, serve
from tests.cluster.test_concurrency import cluster_options
from tests.reliability.support import until
from tests.services import EtcdServer, NatsServer
from transport.etcd import EtcdClient


class Sizes(Handler):
    service = "sizes"

    @handler
    def of(self, session: Session, body: Any) -> int:
        return len(str(body))


@pytest.mark.parametrize("server_id", ["A" * 5000, "room 2", "room.>"])
async def test_a_server_no_subject_can_carry_is_skipped_and_the_frontend_stays_up(
    server_id: str,
    nats_server: NatsServer,
    etcd_server: EtcdServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    common = cluster_options(nats_server, etcd_server)
    room = App(server_type="room", server_id="room-1", frontend=False, **common)
    room.register(Sizes)
    connector = App(server_type="connector", server_id="c-1", **common)
    etcd = EtcdClient([etcd_server.endpoint])
    await etcd.connect()
    try:
        async with room, serve(connector) as server:
            cluster = connector.cluster
            assert cluster is not None
            await until(lambda: len(cluster.discovery.servers("room")) == 1)
            bad = room.server().__class__(server_id, "room", metadata={})
            await etcd.put(bad.key(), bad.to_json())
            await until(
                lambda: (
                    any(server_id[:50] in r.getMessage() for r in caplog.records)
                    or len(cluster.discovery.servers("room")) == 2
                )
            )
            client = await server.connect()
            for _ in range(20):  # the router picks among the rooms listed
                assert await client.request("room.sizes.of", "xy", timeout=10) == 2
            assert cluster.connected
            assert [s.id for s in cluster.discovery.servers("room")] == ["room-1"]
    finally:
        await etcd.close()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize(
    ("server_type", "server_id"), [("room", "r" * 600), ("room", "room-1."), ("ro om", "room-1")]
)
async def test_a_server_no_subject_can_carry_is_refused_at_its_start(
    server_type: str, server_id: str
) -> None:
    """Every peer's discovery skips a server whose type or id no subject can carry: one
    with such an id (600 characters worked before) registered and served, and no peer
    reached it, each saying so in its own log only; another raised NATS's bare "invalid
    subject". It is refused at its start, saying why."""
    network = MemoryCluster()
    app = cluster_app(network, server_type, server_id=server_id, frontend=False)
    with pytest.raises(ClusterStartupError, match="cannot be in a subject"):
        await app.start()
    assert network.servers == {}
