"""Reliable RPCs between Go Pitaya's worker (``pkg/worker`` on go-workers) and ours, through a
real redis-server, both ways:

* Go's ``EnqueueRPC`` writes a job (argument ``protos.Push`` as Go's JSON of its struct) and
  our worker, in a cluster on real nats-server and etcd, runs it against a Python remote;
* our ``app.reliable_rpc`` writes a job and Go's worker (``RegisterRPCJob`` + ``Start``) runs
  it: its RPCJob prints the route, the metadata and the argument it decoded.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

from actors.app import App
from actors.cluster.rpcjob import RpcJob
from actors.handler import Remote, handler
from actors.session import Session
from tests.interop.harness import GoProcess
from tests.services import EtcdServer, NatsServer, RedisServer
from transport.jobstore import JobKeys, RedisJobStore
from transport.protos.pitaya_pb2 import Push


class Grants(Remote):
    """``room.grants.push``: what our remote received, for the test to read."""

    service = "grants"
    received: asyncio.Queue[Push]

    @handler
    async def push(self, caller: Session | None, arg: Push) -> Push:
        Grants.received.put_nowait(arg)
        return arg


def cluster_app(nats: NatsServer, etcd: EtcdServer, server_type: str, **options: Any) -> App:
    return App(
        server_type=server_type,
        mode="cluster",
        nats_url=nats.url,
        etcd_endpoints=etcd.endpoint,
        **options,
    )


async def test_a_job_go_enqueues_runs_on_our_worker_against_a_python_remote(
    go_programs: dict[str, Path],
    nats_server: NatsServer,
    etcd_server: EtcdServer,
    redis_server: RedisServer,
) -> None:
    Grants.received = asyncio.Queue()
    room = cluster_app(nats_server, etcd_server, "room")
    room.register_remote(Grants)
    jobs = cluster_app(
        nats_server,
        etcd_server,
        "jobs",
        worker_redis_url=redis_server.address,
        worker_process_id="py-worker",
    )
    jobs.register_rpc_job(RpcJob(arg_types={"room.grants.push": Push}))
    jobs.start_worker()
    go = GoProcess(
        go_programs["worker"],
        ["-redis", redis_server.address, "-mode", "enqueue", "-uid", "ann", "-data", "hi!"],
    )
    async with room, jobs:
        await go.spawn()
        try:
            enqueued = await go.wait_event(lambda e: e.get("event") == "enqueued")
        finally:
            await go.stop()
        received = await asyncio.wait_for(Grants.received.get(), 15)
        assert received == Push(route="chat", uid="ann", data=b"hi!")
        worker = jobs.worker
        await worker.until(lambda: (enqueued["jid"], "ok") in worker.outcomes)
    store = RedisJobStore(redis_server.address, keys=JobKeys("", "py-worker"))
    try:
        stats = await store.stats(["rpc"])
        assert (stats.processed, stats.failed, stats.enqueued) == (1, 0, {"rpc": 0})
        assert await store.in_progress("rpc") == []
    finally:
        await store.close()


async def test_a_job_we_enqueue_runs_on_go_pitayas_worker(go_programs: dict[str, Path]) -> None:
    redis = RedisServer(password="go-and-py")
    redis.start()
    go = GoProcess(
        go_programs["worker"],
        ["-redis", redis.address, "-password", "go-and-py", "-namespace", "game", "-mode", "work"],
    )
    app = App(
        server_type="connector",
        worker_redis_url=redis.address,
        worker_redis_password="go-and-py",
        worker_namespace="game",
    )
    try:
        await go.spawn()
        await go.wait_event(lambda e: e.get("event") == "ready")
        async with app:
            jid = await app.reliable_rpc(
                "room.grants.push",
                Push(route="chat", uid="bob", data=b"\x00\x01"),
                metadata={"from": "py", "n": 1},
            )
        job = await go.wait_event(lambda e: e.get("event") == "job", timeout=20)
    finally:
        await go.stop()
        redis.close()
    assert len(jid) == 24
    assert job["route"] == "room.grants.push"
    assert job["metadata"] == {"from": "py", "n": 1}
    assert job["arg"] == {
        "route": "chat",
        "uid": "bob",
        "data": base64.b64encode(b"\x00\x01").decode(),
    }
