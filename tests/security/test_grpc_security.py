"""The gRPC transport with mutual TLS: real server processes configured from the environment
serve a client through each other, and a peer without a certificate of the cluster's CA
cannot call them."""

from __future__ import annotations

import json

import grpc
import pytest

from tests.cluster.harness import Node, start_node
from tests.security.conftest import Pki
from tests.services import EtcdServer, NatsServer
from transport.client import Client
from transport.etcd import EtcdClient
from transport.grpc_rpc import GrpcCallError, GrpcChannel, GrpcTls


async def grpc_address(etcd_server: EtcdServer, key: str) -> str:
    etcd = EtcdClient([etcd_server.endpoint])
    await etcd.connect()
    try:
        entry = json.loads(await etcd.get(key) or b"{}")
    finally:
        await etcd.close()
    return f"{entry['metadata']['grpcHost']}:{entry['metadata']['grpcPort']}"


async def call_status(address: str, tls: GrpcTls | None) -> grpc.StatusCode | None:
    """How a ``Call`` with an empty request ends: None if answered, else its status."""
    channel = GrpcChannel(address, tls)
    try:
        await channel.call(b"", timeout=3)
        return None
    except GrpcCallError as exc:
        return exc.code
    finally:
        await channel.close()


@pytest.mark.parametrize("rpc_transport", ["grpc"], indirect=True)
async def test_grpc_with_mutual_tls(
    rpc_transport: str,
    nats_server: NatsServer,
    etcd_server: EtcdServer,
    pki: Pki,
    nodes: list[Node],
) -> None:
    env = {
        "PITAYA_GRPC_TLS_CA": pki.ca,
        "PITAYA_GRPC_TLS_CERT": pki.server_cert,
        "PITAYA_GRPC_TLS_KEY": pki.server_key,
    }
    await start_node(nodes, "room", "room-1", nats_server, etcd_server, **env)
    connector = await start_node(nodes, "connector", "c-1", nats_server, etcd_server, **env)
    client = await Client.connect("127.0.0.1", connector.ports["tcp"], request_timeout=10)
    try:  # forwarded connector -> room and answered, over mutual TLS
        assert (await client.request("room.room.join", {"name": "ann"}))["result"] == "success"
    finally:
        await client.close()
    address = await grpc_address(etcd_server, "pitaya/servers/room/room-1")
    unavailable = grpc.StatusCode.UNAVAILABLE
    assert await call_status(address, None) == unavailable  # plain text
    rogue = GrpcTls(pki.ca, pki.rogue_cert, pki.rogue_key)
    assert await call_status(address, rogue) == unavailable  # a certificate of another CA
    good = GrpcTls(pki.ca, pki.client_cert, pki.client_key)
    assert await call_status(address, good) != unavailable  # let in (the request is empty)
