"""The worker on a real redis-server: jobs run, and a Redis restart mid-run is ridden out
(the pool's broken connections replaced, one warning, fetching again once it is back)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.actors.cluster.test_worker import Harness, Watch, outcome_of
from tests.services import RedisServer
from transport.jobstore import JobKeys, RedisJobStore


async def test_the_worker_rides_out_a_redis_restart(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    harness = Harness()
    store = RedisJobStore(redis_server.address, keys=JobKeys("", "host-1"))
    worker = harness.worker(store=store)
    try:
        first = await worker.enqueue("room.grants.grant", None)
        await worker.start()
        await worker.until(outcome_of(worker, first))
        down = asyncio.Event()
        watch = Watch("cannot reach its job store", down)
        logging.getLogger("actors.cluster.worker").addHandler(watch)
        try:
            redis_server.stop()  # SIGTERM by PID: every pooled connection breaks
            await asyncio.wait_for(down.wait(), 10)  # the blocked fetch noticed
        finally:
            logging.getLogger("actors.cluster.worker").removeHandler(watch)
        redis_server.start()  # same port, empty (no persistence)
        second = await worker.enqueue("room.grants.grant", None)
        await worker.until(outcome_of(worker, second), timeout=15)
        assert [o for _, o in worker.outcomes] == ["ok", "ok"]
        assert len(harness.calls.made) == 2
        assert "reached its job store again" in caplog.text
    finally:
        await worker.stop()
        await worker.shutdown()
