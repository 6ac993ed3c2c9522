"""Pushes by uid that a peer on NATS forges (real nats-server and etcd).

A frontend takes ``protos.Push`` on ``pitaya/<type>/user/<uid>/push`` from anyone on NATS.
Found in review: a push whose route cannot travel to a client (over 255 bytes) raised out of
the frontend's NATS bridge, an ERROR traceback per message, and an acknowledged one (a
request) was never answered. It is now refused as a bad request, at warning once per 10 s,
and the client and the bridge carry on.
"""

from __future__ import annotations

import logging

import nats
import pytest

from actors.app import App
from actors.testing import serve
from tests.actors.cluster.test_carry import Account
from tests.cluster.test_concurrency import cluster_options
from tests.reliability.support import until
from tests.services import EtcdServer, NatsServer
from transport.protos import pitaya_pb2 as pb

SUBJECT = "pitaya/connector/user/ann/push"


async def test_a_forged_push_with_a_route_no_client_can_take_is_refused(
    nats_server: NatsServer, etcd_server: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    connector = App(
        server_type="connector", server_id="c-1", **cluster_options(nats_server, etcd_server)
    )
    connector.register(Account)
    async with serve(connector) as server:
        client = await server.connect()
        pushes = client.pushes()
        assert await client.request("account.login", {"uid": "ann"}) == {"uid": "ann"}
        peer = await nats.connect(nats_server.url)
        try:
            bad = pb.Push(route="r" * 300, uid="ann", data=b"{}").SerializeToString()
            for _ in range(3):
                await peer.publish(SUBJECT, bad)
            answer = await peer.request(SUBJECT, bad, timeout=5)
            error = pb.Response.FromString(answer.data).error
            assert error.code == "PIT-400"
            assert "route" in error.msg
            good = pb.Push(route="onPoke", uid="ann", data=b'{"n":1}').SerializeToString()
            await peer.publish(SUBJECT, good)
            push = await anext(pushes)
            assert (push.route, push.body) == ("onPoke", {"n": 1})
        finally:
            await peer.close()
        assert await client.request("account.whoami") == {"uid": "ann", "data": {}}
        await until(lambda: len([r for r in caplog.records if "route" in r.getMessage()]) >= 1)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
