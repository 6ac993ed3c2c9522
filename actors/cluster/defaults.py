"""The seams a cluster server gets when the app is given none: built from the config.

* discovery: :class:`~actors.cluster.discovery.EtcdServiceDiscovery` on ``etcd_endpoints``;
* RPC: ``rpc_transport`` ``"nats"`` gives one :class:`~actors.cluster.nats_rpc.NatsRpc` (client
  and server) on ``nats_url``; ``"grpc"`` gives a
  :class:`~actors.cluster.grpc_rpc.GrpcRPCClient` and a
  :class:`~actors.cluster.grpc_rpc.GrpcRPCServer` on ``grpc_host:grpc_port``.

``App(mode="cluster", discovery=..., rpc=...)`` replaces either one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from actors.cluster.discovery import EtcdServiceDiscovery, etcd_endpoints, etcd_security
from actors.cluster.rpc import GRPC, NATS, TRANSPORTS, RpcPair
from actors.config import ConfigError, groups_prefix

if TYPE_CHECKING:
    from actors.cluster.discovery import ServiceDiscovery
    from actors.config import Config
    from actors.system import ActorSystem
    from transport.grpc_rpc import GrpcTls
    from transport.nats import NatsSecurity


def default_discovery(config: Config, system: ActorSystem) -> EtcdServiceDiscovery:
    """etcd discovery on the configured endpoints, its actor spawned in ``system``."""
    return EtcdServiceDiscovery(
        system,
        etcd_endpoints(config),
        timeout=config.cluster_connect_timeout,
        lease_ttl=config.etcd_lease_ttl,
        sync_interval=config.server_sync_interval,
        prefix=config.etcd_prefix,
        groups_prefix=groups_prefix(config),
        security=etcd_security(config),
        outage_summary_interval=config.etcd_outage_log_interval,
    )


def nats_security(config: Config) -> NatsSecurity:
    """The ``nats_*`` credential and TLS options."""
    from transport.nats import NatsSecurity

    return NatsSecurity(
        user=config.nats_user,
        password=config.nats_password,
        token=config.nats_token,
        nkey_seed_file=config.nats_nkey_seed,
        creds_file=config.nats_creds,
        ca_file=config.nats_tls_ca,
        cert_file=config.nats_tls_cert,
        key_file=config.nats_tls_key,
    )


def grpc_tls(config: Config) -> GrpcTls | None:
    """The ``grpc_tls_*`` options: mutual TLS when set (all three, or none)."""
    from transport.grpc_rpc import GrpcTls

    files = (config.grpc_tls_ca, config.grpc_tls_cert, config.grpc_tls_key)
    if not any(files):
        return None
    if not all(files):
        raise ConfigError(
            "gRPC mutual TLS needs grpc_tls_ca, grpc_tls_cert and grpc_tls_key together"
        )
    return GrpcTls(*files, server_name=config.grpc_tls_server_name)


def default_rpc(
    config: Config,
    discovery: ServiceDiscovery,
    *,
    on_dropped: Callable[[], None] | None = None,
) -> RpcPair:
    """The client and server of the configured ``rpc_transport``; ``on_dropped`` is called
    for each inbound message the transport dropped (NATS's slow consumer)."""
    transport = config.rpc_transport
    if transport == NATS:
        from actors.cluster.nats_rpc import NatsRpc

        nats = NatsRpc(
            config.nats_url,
            name=config.server_id,
            connect_timeout=config.cluster_connect_timeout,
            on_dropped=on_dropped,
            security=nats_security(config),
            outage_log_interval=config.nats_outage_log_interval,
        )
        return RpcPair(nats, nats)
    if transport == GRPC:
        from actors.cluster.grpc_rpc import GrpcRPCClient, GrpcRPCServer

        tls = grpc_tls(config)
        return RpcPair(
            GrpcRPCClient(
                discovery,
                name=config.server_id,
                rpc_timeout=config.rpc_timeout,
                tls=tls,
                region=config.region,
            ),
            GrpcRPCServer(config.grpc_host, config.grpc_port, metadata=config.metadata, tls=tls),
        )
    raise ConfigError(f"rpc_transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
