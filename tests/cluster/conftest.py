"""Fixtures of the cluster tests (see tests/cluster/harness.py)."""

from tests.cluster.harness import etcd_server, nats_server, nodes, rpc_transport

__all__ = ["etcd_server", "nats_server", "nodes", "rpc_transport"]
