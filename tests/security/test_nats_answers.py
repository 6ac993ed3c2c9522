"""Answers larger than NATS takes (real nats-server and etcd; max payload 1 MiB).

Found in review: a backend handler whose answer was over NATS's max payload (a client asks
for a large state, or its body grows in the handler) could not be sent: nats-py refused it,
a warning was logged per request, and the client waited the whole RPC timeout for a
``PIT-408`` that said nothing of why. The caller now gets ``PIT-500`` at once, saying why,
and one warning per 10 s.
"""

from __future__ import annotations

import logging

import pytest

from actors.app import App
from actors.handler import Handler, handler
from actors.session import Session
from actors.testing import serve
from tests.cluster.test_concurrency import cluster_options
from tests.reliability.support import until
from tests.services import EtcdServer, NatsServer
from transport.client import RequestError


class Large(Handler):
    service = "large"

    @handler
    def answer(self, session: Session, body: int) -> str:
        return "x" * body


async def test_an_answer_over_nats_max_payload_is_a_pit_500_at_once(
    nats_server: NatsServer, etcd_server: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="actors.cluster.nats_rpc")
    # An RPC timeout longer than the test's: a PIT-408 cannot come in time.
    common = {**cluster_options(nats_server, etcd_server), "rpc_timeout": 300.0}
    room = App(server_type="room", server_id="room-1", frontend=False, **common)
    room.register(Large)
    connector = App(server_type="connector", server_id="c-1", **common)
    async with room, serve(connector) as server:
        cluster = connector.cluster
        assert cluster is not None
        await until(lambda: len(cluster.discovery.servers("room")) == 1)
        client = await server.connect()
        for _ in range(3):
            with pytest.raises(RequestError) as refused:
                await client.request("room.large.answer", 2_000_000, timeout=30)
            assert refused.value.code == "PIT-500"
            assert "exceeds NATS's max payload of 1048576 bytes" in refused.value.msg
        assert await client.request("room.large.answer", 3, timeout=30) == "xxx"
    told = [r for r in caplog.records if "max payload" in r.getMessage()]
    assert [r.levelno for r in told] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert [r for r in caplog.records if "answer to _INBOX" in r.getMessage()] == []
