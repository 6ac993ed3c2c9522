"""Go Pitaya's regions over gRPC: a server advertises its ``region`` and, for peers of other
regions, a ``grpc-external-host`` / ``grpc-external-port`` (``pitaya.AddGRPCInfoToMetadata``);
a caller dials the external address when the server is in another region (or names no region
but has one), its ``grpcHost`` otherwise. A Python server given Go's region variable reaches a
Go server of another region the way a Go server does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.interop.harness import GoClient, wait_known
from tests.services import EtcdServer, NatsServer

pytestmark = pytest.mark.parametrize("rpc_transport", ["grpc"], indirect=True)

# The room's internal host resolves nowhere: only its external address reaches it.
OTHER_REGION = [
    "-region",
    "us",
    "-grpc-host",
    "internal.invalid",
    "-grpc-external-host",
    "127.0.0.1",
]


@pytest.mark.parametrize("front", ["go", "py"])
async def test_a_server_of_another_region_is_dialed_on_its_external_host(
    front: str,
    nats_server: NatsServer,
    etcd_server: EtcdServer,
    go_servers: Any,
    py_nodes: Any,
    go_clients: Callable[..., GoClient],
) -> None:
    await go_servers("room", "room-go-us", nats_server, etcd_server, args=OTHER_REGION)
    if front == "go":
        frontend = await go_servers(
            "connector", "connector-go-eu", nats_server, etcd_server, args=["-region", "eu"]
        )
        address = frontend.address("tcp")
    else:
        node = await py_nodes(
            "connector", "connector-py-eu", nats_server, etcd_server,
            PITAYA_CLUSTER_INFO_REGION="eu",
        )  # fmt: skip
        address = ("127.0.0.1", node.ports["tcp"])
    client = go_clients()
    await client.connect(address)
    await wait_known(client, "connector.me.servers", "room-go-us")
    answer = await client.request("room.room.echo", {"n": 1})
    assert answer["server"] == "room-go-us"
