"""The seams a cluster server gets from its config when the app is given none
(``actors.cluster.defaults``): which RPC pair and discovery each config builds, with what, and
the configs that cannot work. Nothing here connects: the objects are only built."""

from __future__ import annotations

import pytest

from actors.cluster.defaults import default_discovery, default_rpc, grpc_tls, nats_security
from actors.cluster.discovery import EtcdServiceDiscovery
from actors.cluster.grpc_rpc import GrpcRPCClient, GrpcRPCServer
from actors.cluster.nats_rpc import NatsRpc
from actors.config import Config, ConfigError
from actors.system import ActorSystem
from transport.etcd import EtcdOutage
from transport.grpc_rpc import GrpcTls
from transport.nats import NatsSecurity


class Discovery:
    """What the gRPC client is given to find servers (it listens for servers leaving)."""

    def __init__(self) -> None:
        self.listeners: list[object] = []

    def add_listener(self, listener: object) -> None:
        self.listeners.append(listener)


def test_nats_is_one_object_both_client_and_server() -> None:
    dropped: list[int] = []
    config = Config(
        server_id="c-1",
        rpc_transport="nats",
        nats_url="nats://a:4222,nats://b:4222",
        cluster_connect_timeout=1.5,
        nats_user="u",
        nats_password="p",
    )
    client, server = default_rpc(config, Discovery(), on_dropped=lambda: dropped.append(1))  # type: ignore[arg-type]
    assert isinstance(client, NatsRpc) and client is server
    pipe = client.pipe
    assert (pipe.urls, pipe.name, pipe.connect_timeout) == (
        "nats://a:4222,nats://b:4222",
        "c-1",
        1.5,
    )
    assert (pipe.security.user, pipe.security.password) == ("u", "p")
    assert pipe.on_slow_consumer is not None
    pipe.on_slow_consumer()
    assert dropped == [1]


def test_nats_security_carries_every_nats_option() -> None:
    config = Config(
        nats_user="u",
        nats_password="p",
        nats_token="t",
        nats_nkey_seed="seed.nk",
        nats_creds="user.creds",
        nats_tls_ca="ca.pem",
        nats_tls_cert="cert.pem",
        nats_tls_key="key.pem",
    )
    assert nats_security(config) == NatsSecurity(
        user="u",
        password="p",
        token="t",
        nkey_seed_file="seed.nk",
        creds_file="user.creds",
        ca_file="ca.pem",
        cert_file="cert.pem",
        key_file="key.pem",
    )


def test_grpc_is_a_client_on_discovery_and_a_server_on_its_port() -> None:
    discovery = Discovery()
    config = Config(
        server_id="room-1",
        rpc_transport="grpc",
        grpc_host="0.0.0.0",
        grpc_port=3434,
        rpc_timeout=2.5,
        metadata={"region": "eu"},
    )
    client, server = default_rpc(config, discovery)  # type: ignore[arg-type]
    assert isinstance(client, GrpcRPCClient) and isinstance(server, GrpcRPCServer)
    assert (client.discovery, client.server_id, client.rpc_timeout, client.tls) == (
        discovery,
        "room-1",
        2.5,
        None,
    )
    assert (server.host, server.port, server.configured, server.tls) == (
        "0.0.0.0",
        3434,
        {"region": "eu"},
        None,
    )


def test_grpc_mutual_tls_takes_all_three_files_or_none() -> None:
    assert grpc_tls(Config()) is None
    files = {"grpc_tls_ca": "ca.pem", "grpc_tls_cert": "c.pem", "grpc_tls_key": "k.pem"}
    tls = grpc_tls(Config(grpc_tls_server_name="rooms", **files))
    assert tls == GrpcTls("ca.pem", "c.pem", "k.pem", server_name="rooms")
    client, server = default_rpc(Config(rpc_transport="grpc", **files), Discovery())  # type: ignore[arg-type]
    assert client.tls == server.tls == GrpcTls("ca.pem", "c.pem", "k.pem")  # type: ignore[attr-defined]
    for missing in files:
        partial = {k: v for k, v in files.items() if k != missing}
        with pytest.raises(ConfigError) as caught:
            grpc_tls(Config(**partial))
        assert str(caught.value) == (
            "gRPC mutual TLS needs grpc_tls_ca, grpc_tls_cert and grpc_tls_key together"
        )
        with pytest.raises(ConfigError, match="together"):
            default_rpc(Config(rpc_transport="grpc", **partial), Discovery())  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["", "NATS", "tcp", "grpc "])
def test_an_unknown_rpc_transport_is_a_config_error(transport: str) -> None:
    with pytest.raises(ConfigError) as caught:
        default_rpc(Config(rpc_transport=transport), Discovery())  # type: ignore[arg-type]
    assert "nats, grpc" in str(caught.value) and repr(transport) in str(caught.value)


async def test_discovery_is_etcd_on_the_configured_endpoints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Outages are shared per endpoints for the process: start from none.
    monkeypatch.setattr(EtcdOutage, "_by_endpoints", {})
    config = Config(
        etcd_endpoints="e1:2379, e2:2379,",
        cluster_connect_timeout=1.5,
        etcd_lease_ttl=9,
        server_sync_interval=30.0,
        etcd_prefix="game/",
        etcd_user="root",
        etcd_password="pw",
        etcd_outage_log_interval=12.0,
    )
    system = ActorSystem()
    discovery = default_discovery(config, system)
    assert isinstance(discovery, EtcdServiceDiscovery)
    assert discovery.system is system
    assert (discovery.timeout, discovery.lease_ttl, discovery.sync_interval, discovery.prefix) == (
        1.5,
        9,
        30.0,
        "game/",
    )
    etcd = discovery.etcd
    assert (etcd.endpoints, etcd.timeout, etcd.probe_key) == (
        ["e1:2379", "e2:2379"],
        1.5,
        "game/ping",
    )
    assert (etcd.security.user, etcd.security.password) == ("root", "pw")
    assert etcd.outage.summary_interval == 12.0
    assert not discovery.registered
