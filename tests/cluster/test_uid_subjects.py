"""A uid a client chose can never cut a server off NATS (real nats-server and etcd).

A uid goes into Pitaya's per-uid subjects (``pitaya/<frontendType>/user/<uid>/push``). NATS
ends a connection that sends a command line over 4 KiB, or a subject it refuses, and
nats-py does not come back from that: one client binding a 5,000-character name made
every forwarded request of every player fail, for good. Such a uid is now refused at its
bind (``PIT-400``), and a push or kick to one reaches nobody and sends nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from actors.app import App
from actors.handler import Handler, handler
from actors.session import Session
from actors.testing import serve
from tests.actors.cluster.test_carry import Account
from tests.cluster.test_concurrency import cluster_options
from tests.reliability.support import until
from tests.services import EtcdServer, NatsServer
from transport.client import RequestError


class Ops(Handler):
    service = "ops"

    @handler
    async def bind(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        await session.bind(body["uid"])  # a backend's bind: done by the frontend
        return {"uid": session.uid}

    @handler
    async def poke(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        failed = await self.app.send_push_to_users("onPoke", {}, body["uids"])
        self.app.push_to_users("onPoke", {}, body["uids"])  # the tell, too
        return {"failed": failed}

    @handler
    def ping(self, session: Session) -> str:
        return "pong"


LONG = "u" * 5000


@pytest.mark.parametrize("uid", [LONG, "bob.*.x", "ann bob", "a..b"])
async def test_a_uid_no_subject_can_carry_is_refused_and_nats_stays_up(
    uid: str, nats_server: NatsServer, etcd_server: EtcdServer
) -> None:
    common = cluster_options(nats_server, etcd_server)
    room = App(server_type="room", server_id="room-1", frontend=False, **common)
    room.register(Ops)
    connector = App(server_type="connector", server_id="c-1", **common)
    connector.register(Account)  # account.login binds the uid it is given
    async with room, serve(connector) as server:
        cluster, room_cluster = connector.cluster, room.cluster
        assert cluster is not None and room_cluster is not None
        await until(lambda: len(cluster.discovery.servers("room")) == 1)
        await until(lambda: len(room_cluster.discovery.servers("connector")) == 1)
        client = await server.connect()
        for route in ("account.login", "room.ops.bind"):  # bound here, or asked by a backend
            with pytest.raises(RequestError) as refused:
                await client.request(route, {"uid": uid})
            assert refused.value.code == "PIT-400"
            assert "cannot be bound" in refused.value.msg
        # Pushes to it: nobody reached, nothing sent that NATS would refuse.
        assert await client.request("room.ops.poke", {"uids": [uid]}) == {"failed": [uid]}
        assert await client.request("room.ops.ping") == "pong"  # both still on NATS
        assert cluster.connected and room_cluster.connected
        assert await client.request("account.login", {"uid": "ann"}) == {"uid": "ann"}
        assert await client.request("room.ops.poke", {"uids": ["ann"]}) == {"failed": []}


async def test_a_server_whose_nats_connection_is_closed_for_good_stops_and_leaves(
    nats_server: NatsServer, etcd_server: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    """nats-py does not reconnect after the server sent an error (here: a command line over
    4 KiB, sent past every check of ours). The server was left registered in etcd, unable
    to serve, for good; it now stops (as Go Pitaya does) and leaves discovery."""
    common = cluster_options(nats_server, etcd_server)
    room = App(server_type="room", server_id="room-1", frontend=False, **common)
    room.register(Ops)
    connector = App(server_type="connector", server_id="c-1", **common)
    async with room, connector:
        cluster, room_cluster = connector.cluster, room.cluster
        assert cluster is not None and room_cluster is not None
        await until(lambda: len(cluster.discovery.servers("room")) == 1)
        nc = room_cluster.rpc_client.pipe.nc  # type: ignore[attr-defined]
        await nc.publish("x" * 5000, b"")  # NATS answers -ERR and closes the connection
        await until(lambda: room_cluster.lost is not None, timeout=10)
        await until(lambda: not cluster.discovery.servers("room"), timeout=10)
        assert not room.ready_now()
    assert "is closed for good" in caplog.text
    assert "[room-1] stopping: the RPC transport cannot come back" in caplog.text
