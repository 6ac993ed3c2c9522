"""Fixtures of the interop suite (see tests/interop/harness.py and README.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import etcd_server, nats_server, rpc_transport
from tests.interop.harness import GoClient, GoServer, PyNode, build_programs
from tests.services import EtcdServer, NatsServer

__all__ = ["etcd_server", "nats_server", "rpc_transport"]


@pytest.fixture(scope="session")
def go_programs() -> dict[str, Path]:
    """The Go programs, built once per run (and only when their sources changed)."""
    return build_programs()


StartGo = Callable[..., Coroutine[Any, Any, GoServer]]


@pytest.fixture
async def go_servers(go_programs: dict[str, Path], rpc_transport: str) -> AsyncIterator[StartGo]:
    """``await go_servers(role, server_id, nats, etcd, **options)`` starts a Go server on the
    test's RPC transport; every one is stopped by PID at the end of the test."""
    started: list[GoServer] = []

    async def start(
        role: str, server_id: str, nats: NatsServer, etcd: EtcdServer, **options: Any
    ) -> GoServer:
        options.setdefault("rpc", rpc_transport)
        server = GoServer(go_programs, role, server_id, nats, etcd, **options)
        started.append(server)
        return await server.start()

    try:
        yield start
    finally:
        for server in reversed(started):
            await server.stop()


@pytest.fixture
async def py_nodes() -> AsyncIterator[Callable[..., Coroutine[Any, Any, PyNode]]]:
    """``await py_nodes(role, server_id, nats, etcd, **env)`` starts a Python server of
    tests.interop.pynodes (the RPC transport comes from the environment); stopped at the end."""
    started: list[PyNode] = []

    async def start(
        role: str, server_id: str, nats: NatsServer, etcd: EtcdServer, **env: str
    ) -> PyNode:
        node = PyNode(role, server_id, nats, etcd, **env)
        started.append(node)
        await node.start()
        return node

    try:
        yield start
    finally:
        for node in reversed(started):
            await node.stop()


@pytest.fixture
async def go_clients(go_programs: dict[str, Path]) -> AsyncIterator[Callable[..., GoClient]]:
    """``go_clients()`` makes a driver of Pitaya's Go client; all stopped at the end."""
    made: list[GoClient] = []

    def make(**options: Any) -> GoClient:
        client = GoClient(go_programs, **options)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            await client.stop()
