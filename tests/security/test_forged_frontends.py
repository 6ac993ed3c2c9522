"""Requests forged on NATS that name a frontend no subject can carry (real nats-server and
etcd).

A backend answers a frontend it does not know yet (discovery lags) by the id and type the
request names (``frontendID``, the ``py.session`` frontend type): its subject is made of
them. Found in review: one forged request naming a frontend id of 5,000 characters, whose
session's handshake the backend then asks that frontend for, made the backend send a
command line NATS refuses; NATS ended its connection for good and the backend stopped. Such
a frontend is now treated as unknown, and the backend stays up; what its handler then sends
that session (a push) is dropped with one warning per 10 s, the id cut (a line per forged
request, as long as the id, before).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import nats
import pytest

from actors.app import App
from actors.handler import Handler, handler
from actors.session import Session
from actors.testing import serve
from tests.cluster.test_concurrency import cluster_options
from tests.reliability.support import until
from tests.services import EtcdServer, NatsServer
from transport.protos import pitaya_pb2 as pb


class Sizes(Handler):
    service = "sizes"

    @handler
    def of(self, session: Session, body: Any) -> int:
        session.push("onSize", {"size": len(str(body))})  # to its frontend, if any
        return len(str(body))


def forged(frontend_id: str, frontend_type: str) -> bytes:
    """A forwarded request whose session's handshake was "sent before" (omitted): the
    backend asks the frontend for it first."""
    metadata = {
        "peer.id": "forger",
        "peer.service": "connector",
        "reqTimeout": "5s",
        "py.session": {"ftype": frontend_type},
    }
    request = pb.Request(
        type=pb.RPCType.Value("Sys"),
        msg=pb.Msg(id=1, route="room.sizes.of", data=b'"abc"'),
        session=pb.Session(id=7, uid="", data=b"{}"),
        frontendID=frontend_id,
        metadata=json.dumps(metadata).encode(),
    )
    return request.SerializeToString()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("frontend_id", "frontend_type"),
    [("A" * 5000, "connector"), ("c-9", "B" * 5000), ("c 9", "connector"), ("c-9", "con\r\nx")],
)
async def test_a_frontend_no_subject_can_carry_is_unknown_and_the_backend_stays_up(
    frontend_id: str,
    frontend_type: str,
    nats_server: NatsServer,
    etcd_server: EtcdServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="actors.cluster.outbound")
    caplog.set_level(logging.DEBUG, logger="actors.cluster.bridge")
    common = cluster_options(nats_server, etcd_server)
    room = App(server_type="room", server_id="room-1", frontend=False, **common)
    room.register(Sizes)
    connector = App(server_type="connector", server_id="c-1", **common)
    async with room, serve(connector) as server:
        cluster, room_cluster = connector.cluster, room.cluster
        assert cluster is not None and room_cluster is not None
        await until(lambda: len(cluster.discovery.servers("room")) == 1)
        client = await server.connect()
        peer = await nats.connect(nats_server.url)
        try:
            for _ in range(3):
                answer = await peer.request(
                    "pitaya/servers/room/room-1", forged(frontend_id, frontend_type), timeout=10
                )
                assert pb.Response.FromString(answer.data).data == b"3"  # handshake unknown
        finally:
            await peer.close()
        assert room_cluster.connected
        assert await client.request("room.sizes.of", "xy", timeout=10) == 2
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    dropped = [r for r in caplog.records if "unknown; dropping" in r.getMessage()]
    assert [r.levelno for r in dropped] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert all(len(r.getMessage()) < 300 for r in dropped)
    # The handshake the backend could not ask for: a line per forged request, the id in
    # full twice (10 kB each), before.
    unfetched = [r for r in caplog.records if "not fetched" in r.getMessage()]
    assert [r.levelno for r in unfetched] == [logging.INFO, logging.DEBUG, logging.DEBUG]
    assert all(len(r.getMessage()) < 400 for r in unfetched)
