"""The job store's contract, on the in-memory fake and on a real redis-server alike: the
go-workers layout (keys and moves), atomic outcomes, and a clear error when Redis is gone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from tests.services import RedisServer
from transport.jobstore import JobKeys, JobStats, JobStore, JobStoreUnavailable, RedisJobStore
from transport.jobstore_memory import MemoryJobData, MemoryJobStore

KEYS = JobKeys("ns", "host-1")


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[JobStore]:
    if request.param == "memory":
        yield MemoryJobStore(MemoryJobData(), KEYS)
        return
    redis_server: RedisServer = request.getfixturevalue("redis_server")
    real = RedisJobStore(redis_server.address, keys=KEYS)
    try:
        yield real
    finally:
        await real.close()


def test_the_keys_are_go_workers() -> None:
    assert KEYS.queues == "ns:queues"
    assert KEYS.queue("rpc") == "ns:queue:rpc"
    assert KEYS.in_progress("rpc") == "ns:queue:rpc:host-1:inprogress"
    assert (KEYS.due("goretry"), KEYS.due("schedule")) == ("ns:goretry", "ns:schedule")
    assert (KEYS.stat("processed"), KEYS.stat("failed", "2026-01-02")) == (
        "ns:stat:processed",
        "ns:stat:failed:2026-01-02",
    )
    # No namespace: no prefix at all (go-workers' rule), not a lone ":".
    assert JobKeys("", "h").queue("rpc") == "queue:rpc"


async def test_jobs_come_out_oldest_first_through_the_in_progress_list(store: JobStore) -> None:
    await store.push("rpc", b"first")
    await store.push("rpc", b"second")
    assert await store.fetch("rpc", 1) == b"first"
    assert await store.in_progress("rpc") == [b"first"]
    assert await store.fetch("rpc", 1) == b"second"
    assert await store.in_progress("rpc") == [b"second", b"first"]
    await store.acknowledge("rpc", b"first")
    assert await store.in_progress("rpc") == [b"second"]
    assert await store.fetch("rpc", 0.1) is None  # empty: waits, then nothing
    stats = await store.stats(["rpc"])
    assert stats.enqueued == {"rpc": 0}


async def test_a_retry_is_scheduled_and_the_job_acknowledged_in_one_step(
    store: JobStore,
) -> None:
    await store.push("rpc", b"job")
    job = await store.fetch("rpc", 1)
    assert job == b"job"
    await store.retry_at("rpc", job, 100.0, b"job, retried")
    assert await store.in_progress("rpc") == []
    assert (await store.stats(["rpc"])).retries == 1
    # Not due yet at 99; due at 100: back into its queue as the rewrite says.
    assert await store.requeue_due(99.0, lambda raw: ("rpc", raw + b"!")) == 0
    assert await store.requeue_due(100.0, lambda raw: ("rpc", raw + b"!")) == 1
    assert await store.fetch("rpc", 1) == b"job, retried!"
    assert (await store.stats(["rpc"])).retries == 0


async def test_a_job_that_cannot_run_goes_to_the_dead_set(store: JobStore) -> None:
    await store.push("rpc", b"{not json")
    job = await store.fetch("rpc", 1)
    assert job is not None
    await store.bury("rpc", job, 5.0)
    assert await store.in_progress("rpc") == []
    await store.retry_at("rpc", b"absent", 1.0, b"unreadable")
    assert await store.requeue_due(2.0, lambda raw: None) == 0  # also dead, not requeued
    assert await _dead(store) == {b"{not json": 5.0, b"unreadable": 2.0}  # when each died


async def _dead(store: JobStore) -> dict[bytes, float]:
    """The dead set, each job with its score (when it died)."""
    if isinstance(store, MemoryJobStore):
        return dict(store.data.zsets.get(KEYS.dead, {}))
    assert isinstance(store, RedisJobStore)
    found = await store._call("ZRANGE", KEYS.dead, 0, -1, "WITHSCORES")  # [job, score] pairs
    return {bytes(job): float(at) for job, at in found}


async def _queues(store: JobStore) -> set[str]:
    if isinstance(store, MemoryJobStore):
        return set(store.data.sets.get(KEYS.queues, set()))
    assert isinstance(store, RedisJobStore)
    return {bytes(name).decode() for name in await store._call("SMEMBERS", KEYS.queues)}


async def _counter(store: JobStore, key: str) -> int:
    if isinstance(store, MemoryJobStore):
        return store.data.counters.get(key, 0)
    assert isinstance(store, RedisJobStore)
    return int(await store._call("GET", key) or 0)


async def test_counters_are_go_workers_stats(store: JobStore) -> None:
    await store.count("processed", "2026-01-02")
    await store.count("processed", "2026-01-02")
    await store.count("failed", "2026-01-02")
    await store.push("rpc", b"waiting")
    stats = await store.stats(["rpc"])
    assert (stats.processed, stats.failed, stats.enqueued) == (2, 1, {"rpc": 1})
    await store.count("processed", "2026-01-03")
    day = [await _counter(store, KEYS.stat("processed", d)) for d in ("2026-01-02", "2026-01-03")]
    assert day == [2, 1] and await _counter(store, KEYS.stat("processed")) == 3


async def test_a_new_store_has_zero_counters_and_empty_queues(store: JobStore) -> None:
    assert await store.stats(["rpc", "other"]) == JobStats(0, 0, 0, {"rpc": 0, "other": 0})


async def test_a_push_names_its_queue_in_the_set_of_queues(store: JobStore) -> None:
    await store.push("rpc", b"a")
    await store.push("mail", b"b")
    await store.push("rpc", b"c")
    assert await _queues(store) == {"rpc", "mail"}


async def test_acknowledging_removes_the_copy_nearest_the_tail_as_lrem_minus_1(
    store: JobStore,
) -> None:
    for job in (b"same", b"other", b"same", b"last"):
        await store.push("rpc", job)
    for _ in range(4):
        await store.fetch("rpc", 1)
    assert await store.in_progress("rpc") == [b"last", b"same", b"other", b"same"]
    await store.acknowledge("rpc", b"same")
    assert await store.in_progress("rpc") == [b"last", b"same", b"other"]
    await store.acknowledge("rpc", b"same")  # one step from the tail
    assert await store.in_progress("rpc") == [b"last", b"other"]
    await store.acknowledge("rpc", b"absent")
    assert await store.in_progress("rpc") == [b"last", b"other"]


async def test_due_jobs_go_back_in_the_order_they_fell_due_past_an_unreadable_one(
    store: JobStore,
) -> None:
    # Scores against the jobs' byte order: "b" is due first.
    for job, at in ((b"b", 1.0), (b"x-unreadable", 2.0), (b"a", 3.0), (b"c", 9.0)):
        await store.push("rpc", job)
        await store.fetch("rpc", 1)
        await store.retry_at("rpc", job, at, job)

    def rewrite(job: bytes) -> tuple[str, bytes] | None:
        return None if job.startswith(b"x") else ("rpc", job)

    assert await store.requeue_due(1.5, rewrite) == 1
    assert await store.requeue_due(5.0, rewrite) == 1  # "a"; the unreadable one dies
    assert await _dead(store) == {b"x-unreadable": 5.0}
    assert [await store.fetch("rpc", 1) for _ in range(2)] == [b"b", b"a"]
    assert (await store.stats(["rpc"])).retries == 1  # "c", not due yet
    assert await store.requeue_due(10.0, rewrite) == 1


async def test_several_due_jobs_are_counted(store: JobStore) -> None:
    for job in (b"a", b"b", b"c"):
        await store.push("rpc", job)
        await store.fetch("rpc", 1)
        await store.retry_at("rpc", job, 1.0, job)
    assert await store.requeue_due(1.0, lambda raw: ("rpc", raw)) == 3


async def test_redis_keeps_go_workers_layout(redis_server: RedisServer) -> None:
    store = RedisJobStore(redis_server.address, keys=KEYS)
    try:
        await store.push("rpc", json.dumps({"jid": "a"}).encode())
        assert await store._call("SMEMBERS", "ns:queues") == {b"rpc"}
        assert await store._call("LRANGE", "ns:queue:rpc", 0, -1) == [b'{"jid": "a"}']
        await store.count("processed", "2026-01-02")
        assert await store._call("GET", "ns:stat:processed:2026-01-02") == b"1"
    finally:
        await store.close()


async def test_redis_down_is_a_clear_error_without_the_password() -> None:
    server = RedisServer(password="hunter2-secret")
    server.start()
    address = server.address
    server.close()  # nothing listens there now
    store = RedisJobStore(f"redis://:hunter2-secret@{address}", password="hunter2-secret")
    try:
        with pytest.raises(JobStoreUnavailable) as caught:
            await store.push("rpc", b"job")
        text = str(caught.value)
        assert "hunter2" not in text
        assert text.startswith(f"Redis at redis://***@{address}:")
        with pytest.raises(JobStoreUnavailable):
            await store.fetch("rpc", 1)
    finally:
        await store.close()


async def test_a_wrong_password_is_a_clear_error() -> None:
    server = RedisServer(password="the-password")
    server.start()
    store = RedisJobStore(server.address, password="not-the-password")
    try:
        with pytest.raises(JobStoreUnavailable, match=r"Redis at redis://127\.0\.0\.1") as caught:
            await store.push("rpc", b"job")
        assert "not-the-password" not in str(caught.value)
    finally:
        await store.close()
        server.close()


async def test_the_memory_store_stands_alone_says_so_when_down_and_records_close() -> None:
    store = MemoryJobStore()  # its own data and go-workers' keys with no namespace
    assert store.address == "memory" and store.closed is False
    await store.push("rpc", b"job")
    assert store.data.lists == {"queue:rpc": [b"job"]}
    await store.data.set_available(False)
    with pytest.raises(JobStoreUnavailable) as caught:
        await store.stats(["rpc"])
    assert str(caught.value) == "memory: connection refused"
    await store.close()
    assert store.closed


async def test_the_memory_store_goes_down_and_wakes_a_blocked_fetch() -> None:
    data = MemoryJobData()
    store = MemoryJobStore(data, KEYS)
    fetching = asyncio.ensure_future(store.fetch("rpc", 30))
    await asyncio.sleep(0)
    await data.set_available(False)
    with pytest.raises(JobStoreUnavailable):
        await fetching


async def test_close_hands_back_every_connection_to_redis(redis_server: RedisServer) -> None:
    store = RedisJobStore(redis_server.address, pool_size=4, keys=KEYS)
    # Several connections at once: a blocked fetch holds one while the others push.
    fetching = asyncio.ensure_future(store.fetch("rpc", 1))
    await asyncio.gather(*(store.push("other", b"job") for _ in range(3)))
    await fetching
    await store.close()
    watcher = RedisJobStore(redis_server.address, keys=KEYS)
    try:
        clients = bytes(await watcher._call("CLIENT", "LIST")).decode().strip().splitlines()
    finally:
        await watcher.close()
    # Only the watcher's own connection: the store's are closed, not left to the GC.
    assert len(clients) == 1, clients
