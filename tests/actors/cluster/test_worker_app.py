"""The worker through the app's API (``reliable_rpc``, ``start_worker``, ``register_rpc_job``)
in an in-memory cluster: a reliable RPC enqueued on one server runs on a remote of another,
its argument decoded into the job's protobuf class; the worker is the app's module."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.app import App
from actors.cluster.rpcjob import RpcJob
from actors.cluster.worker import Worker
from actors.handler import Remote, handler
from actors.session import Session
from actors.testing import MemoryCluster
from transport.jobstore import JobKeys
from transport.jobstore_memory import MemoryJobData, MemoryJobStore
from transport.protos.pitaya_pb2 import KickMsg, Push


class Grants(Remote):
    """``room.grants.*``: records what reliable RPCs brought."""

    service = "grants"
    received: asyncio.Queue[tuple[str, Any]]

    @handler
    async def kick(self, caller: Session | None, arg: KickMsg) -> KickMsg:
        Grants.received.put_nowait((self.app.server_id, arg))
        return arg

    @handler
    async def note(self, caller: Session | None, body: dict[str, Any]) -> dict[str, Any]:
        Grants.received.put_nowait((self.app.server_id, body))
        return body


async def test_a_reliable_rpc_runs_on_a_remote_of_another_server() -> None:
    Grants.received = asyncio.Queue()
    network = MemoryCluster()
    data = MemoryJobData()
    room = App(server_type="room", mode="cluster", discovery=network.discovery(), rpc=network.rpc())
    room.register_remote(Grants)
    worker_app = App(
        server_type="jobs",
        mode="cluster",
        discovery=network.discovery(),
        rpc=network.rpc(),
        job_store=MemoryJobStore(data, JobKeys("", "jobs-1")),
        worker_concurrency=4,
    )
    worker_app.register_rpc_job(RpcJob(arg_types={"room.grants.kick": KickMsg}))
    worker_app.start_worker()
    assert isinstance(worker_app.get_module("worker"), Worker)
    async with room, worker_app:
        jid = await worker_app.reliable_rpc("room.grants.kick", KickMsg(userId="ann"))
        assert await asyncio.wait_for(Grants.received.get(), 10) == (
            room.server_id,
            KickMsg(userId="ann"),
        )
        await worker_app.reliable_rpc("room.grants.note", {"n": 1}, metadata={"why": "test"})
        assert await asyncio.wait_for(Grants.received.get(), 10) == (room.server_id, {"n": 1})
        worker = worker_app.worker
        await worker.until(lambda: len(worker.outcomes) == 2)
        assert worker.outcomes[0] == (jid, "ok")
    assert not worker.running  # stopped with the app


async def test_an_app_enqueues_after_its_start_without_running_a_worker() -> None:
    data = MemoryJobData()
    store = MemoryJobStore(data, JobKeys("ns", "x"))
    app = App(server_type="connector", worker_namespace="ns", job_store=store)
    async with app:
        await app.reliable_rpc("room.grants.kick", Push(route="r", data=b"\x00"))
        assert not app.worker.running  # enqueueing needs no worker here
    assert "queue:rpc" not in data.lists  # the namespace prefixes every key
    (job,) = data.lists[store.keys.queue("rpc")]
    assert b'"Arg":{"route":"r","data":"AA=="}' in job
    assert store.closed  # the app's stop closed the store it adopted after the start


def test_the_worker_needs_cluster_mode_and_starts_before_the_app() -> None:
    with pytest.raises(ValueError, match="cluster"):
        App(server_type="room").start_worker()


def test_worker_options_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PITAYA_WORKER_REDIS_URL", "redis-1:6380")
    monkeypatch.setenv("PITAYA_WORKER_REDIS_PASSWORD", "pw-secret")
    monkeypatch.setenv("PITAYA_WORKER_CONCURRENCY", "8")
    monkeypatch.setenv("PITAYA_WORKER_RETRY_ENABLED", "false")
    monkeypatch.setenv("PITAYA_WORKER_RETRY_MAX_DELAY", "60")
    app = App(server_type="room")
    options = app.worker.options
    assert (options.redis_url, options.redis_password, options.concurrency) == (
        "redis-1:6380",
        "pw-secret",
        8,
    )
    assert (options.retry.enabled, options.retry.max_delay, options.retry.max) == (False, 60, 2)
    assert "pw-secret" not in repr(app.config) and "pw-secret" not in repr(options)
