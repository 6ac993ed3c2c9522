"""Our frontend's fast failover with Go Pitaya backends: one of two Go rooms killed (SIGKILL,
still in discovery until its lease ends) and every later request is answered by the other,
forwarded client requests and user RPCs by route alike; an RPC to the dead one by id fails
at once with PIT-408."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.cluster.harness import TRANSPORTS
from tests.interop.harness import GoClient, RequestFailed, wait_known
from tests.services import EtcdServer, NatsServer


@pytest.mark.parametrize("rpc_transport", TRANSPORTS, indirect=True)
async def test_a_python_frontend_fails_over_between_go_backends(
    rpc_transport: str,
    nats_server: NatsServer,
    etcd_server: EtcdServer,
    go_servers: Any,
    py_nodes: Any,
    go_clients: Callable[..., GoClient],
) -> None:
    doomed = await go_servers("room", "room-go-1", nats_server, etcd_server)
    await go_servers("room", "room-go-2", nats_server, etcd_server)
    connector = await py_nodes("connector", "connector-py-1", nats_server, etcd_server)
    client = go_clients()
    await client.connect(("127.0.0.1", connector.ports["tcp"]))
    for room in ("room-go-1", "room-go-2"):
        await wait_known(client, "connector.me.servers", room)

    await doomed.kill()
    # The first request may still meet the dying server's connection (NATS or gRPC had not
    # noticed the death yet): it may have run, so it is not resent and answers PIT-408.
    # Every later one is refused at once by the transport and goes to room-go-2.
    try:
        await client.request("room.room.echo", {"first": True})
    except RequestFailed as first:
        assert first.code == "PIT-408", first.body
    for i in range(12):  # the router's random choice would pick the dead one about half
        answer = await client.request("room.room.echo", {"i": i})
        assert answer["server"] == "room-go-2"
        reply = await client.request(
            "connector.me.rpc", {"route": "room.roomremote.echo", "msg": str(i)}
        )
        assert reply["reply"] == f"go:room-go-2:{i}"

    with pytest.raises(RequestFailed) as failed:
        await client.request(
            "connector.me.rpc",
            {"route": "room.roomremote.echo", "msg": "x", "server_id": "room-go-1"},
            timeout=5,
        )
    assert failed.value.code == "PIT-408"
    assert "room-go-1" in failed.value.body["msg"], failed.value.body
