"""Cluster test harness: real nats-server and etcd, servers in their own processes.

Tests that apply to both RPC transports take them as a parameter (``@both_transports``): the
``rpc_transport`` fixture puts ``PITAYA_RPC_TRANSPORT`` in the environment, which server
processes inherit and in-process apps read. With gRPC, nats-server is not even started: the
cluster must work without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.services import EtcdServer, NatsServer

NODE_ENV = {
    # Short lease: a server killed with SIGKILL leaves discovery within seconds.
    "PITAYA_ETCD_LEASE_TTL": "2",
    "PITAYA_RPC_TIMEOUT": "2",
    "PITAYA_SERVER_SYNC_INTERVAL": "2",
    "PYTHONUNBUFFERED": "1",
}


TRANSPORTS = ["nats", "grpc"]
both_transports = pytest.mark.parametrize("rpc_transport", TRANSPORTS, indirect=True)
"""Run a test once over NATS and once over gRPC."""


@pytest.fixture
def rpc_transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``nats`` unless parametrized (``@both_transports``); exported to every server."""
    transport: str = getattr(request, "param", "nats")
    monkeypatch.setenv("PITAYA_RPC_TRANSPORT", transport)
    return transport


@pytest.fixture
def nats_server(rpc_transport: str) -> Iterator[NatsServer]:
    """A running nats-server; with gRPC one that is never started (nothing listens)."""
    server = NatsServer()
    if rpc_transport == "nats":
        server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def etcd_server() -> Iterator[EtcdServer]:
    server = EtcdServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


class Node:
    """One server process of ``tests.cluster.node`` (or of ``module``, same arguments)."""

    module = "tests.cluster.node"

    def __init__(
        self, role: str, server_id: str, nats: NatsServer, etcd: EtcdServer, **env: str
    ) -> None:
        self.role = role
        self.server_id = server_id
        self.args = ["--id", server_id, "--nats", nats.url, "--etcd", etcd.endpoint]
        self.env = {**os.environ, **NODE_ENV, **env}
        self.process: asyncio.subprocess.Process | None = None
        self.log: list[str] = []
        self.ports: dict[str, int] = {}
        self._pump: asyncio.Task[None] | None = None
        self._logged = asyncio.Condition()

    async def start(self, timeout: float = 30) -> Node:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module, self.role, *self.args,
            stderr=asyncio.subprocess.PIPE, env=self.env,
        )  # fmt: skip
        assert self.process.stderr is not None
        stream = self.process.stderr

        async def until_started() -> None:
            while True:
                raw = await stream.readline()
                if not raw:
                    raise RuntimeError(f"{self.server_id} exited:\n" + "\n".join(self.log[-30:]))
                line = raw.decode(errors="replace").rstrip()
                self.log.append(line)
                found = re.search(r"\] (tcp|ws) listening on [\d.]+:(\d+)", line)
                if found:
                    self.ports[found.group(1)] = int(found.group(2))
                metrics = re.search(r"prometheus metrics on http://[\d.]+:(\d+)/", line)
                if metrics:
                    self.ports["metrics"] = int(metrics.group(1))
                if f"[{self.server_id}] started (" in line:
                    return

        await asyncio.wait_for(until_started(), timeout)
        if self.env.get("PITAYA_RPC_TRANSPORT") == "grpc":  # the parametrization took effect
            assert any("gRPC RPC server on" in line for line in self.log), self.log[-10:]

        async def pump() -> None:
            while raw := await stream.readline():
                self.log.append(raw.decode(errors="replace").rstrip())
                async with self._logged:
                    self._logged.notify_all()

        self._pump = asyncio.get_running_loop().create_task(pump())
        return self

    async def wait_for_log(self, text: str, timeout: float = 10, start: int = 0) -> str:
        """The first log line containing ``text`` from line ``start`` on (``len(node.log)``
        before an action: a line the action causes), waiting for it to be written."""

        def found() -> str | None:
            return next((line for line in self.log[start:] if text in line), None)

        async with self._logged:
            await asyncio.wait_for(self._logged.wait_for(lambda: found() is not None), timeout)
        line = found()
        assert line is not None
        return line

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM and wait; returns the exit code."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._pump is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pump, 5)
        return self.process.returncode

    async def kill(self) -> None:
        """SIGKILL by PID (a crash), then reap."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        await self.process.wait()


@pytest.fixture
async def nodes() -> AsyncIterator[list[Node]]:
    """Collects started nodes and stops every one of them at the end of the test."""
    started: list[Node] = []
    try:
        yield started
    finally:
        for node in reversed(started):
            await node.stop()


async def start_node(
    started: list[Node], role: str, server_id: str, nats: NatsServer, etcd: EtcdServer, **env: str
) -> Node:
    node = Node(role, server_id, nats, etcd, **env)
    started.append(node)
    return await node.start()
