"""The worker on the in-memory job store: jobs run through the cluster's RPC, retries with
go-workers' rules, malformed jobs moved aside, Redis outages ridden out without losing a job,
graceful stops that leave unfinished jobs for the next start, and concurrency."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest

from actors.cluster.jobs import RetryOptions
from actors.cluster.rpcjob import RpcJob
from actors.cluster.worker import Worker, WorkerOptions, worker_options
from actors.config import Config
from actors.errors import PitayaError
from actors.metrics.reporter import Metrics
from transport.jobstore import JobKeys, JobStoreUnavailable, RedisJobStore
from transport.jobstore_memory import MemoryJobData, MemoryJobStore
from transport.protos.pitaya_pb2 import KickMsg

KEYS = JobKeys("", "host-1")
FAST = RetryOptions(enabled=True, max=2, exponential=1, min_delay=0, max_delay=0)


class Calls:
    """The cluster's RPCs as the worker sees them: recorded; ``fail`` raises for a route,
    ``gate`` holds a route's calls until set."""

    def __init__(self) -> None:
        self.made: list[tuple[str, str, Any, Any]] = []
        self.fail: dict[str, int] = {}
        """route -> how many more calls fail (-1: all)."""
        self.gates: dict[str, asyncio.Event] = {}
        self.entered = asyncio.Condition()

    async def _call(self, server_id: str, route: str, arg: Any, reply: Any) -> bytes:
        self.made.append((server_id, route, arg, reply))
        async with self.entered:
            self.entered.notify_all()
        if route in self.gates:
            await self.gates[route].wait()
        left = self.fail.get(route, 0)
        if left:
            self.fail[route] = left - 1 if left > 0 else left
            raise PitayaError("PIT-500", f"{route} failed")
        return b""

    async def rpc(self, route: str, arg: Any = None, *, reply: type[Any] | None = None) -> Any:
        return await self._call("", route, arg, reply)

    async def rpc_to(
        self, server_id: str, route: str, arg: Any = None, *, reply: type[Any] | None = None
    ) -> Any:
        return await self._call(server_id, route, arg, reply)

    async def until_entered(self, route: str, times: int = 1) -> None:
        async with self.entered:
            await asyncio.wait_for(
                self.entered.wait_for(lambda: [c[1] for c in self.made].count(route) >= times),
                10,
            )


class Harness:
    def __init__(self) -> None:
        self.data = MemoryJobData()
        self.calls = Calls()
        self.workers: list[Worker] = []

    def worker(self, store: Any = None, metrics: Metrics | None = None, **options: Any) -> Worker:
        options.setdefault("retry", FAST)
        options.setdefault("poll_interval", 0.01)
        worker = Worker(
            WorkerOptions(**options),
            server_id="room-1",
            metrics=metrics or Metrics(),
            caller=lambda: self.calls,
            store=store if store is not None else MemoryJobStore(self.data, KEYS),
        )
        self.workers.append(worker)
        return worker

    @property
    def queue(self) -> list[bytes]:
        return self.data.lists.get(KEYS.queue("rpc"), [])

    @property
    def in_progress(self) -> list[bytes]:
        return self.data.lists.get(KEYS.in_progress("rpc"), [])

    def counter(self, outcome: str) -> int:
        return self.data.counters.get(KEYS.stat(outcome), 0)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    try:
        yield h
    finally:
        for worker in h.workers:
            await worker.stop()


class Watch(logging.Handler):
    """Sets ``event`` when a record's message contains ``text``."""

    def __init__(self, text: str, event: asyncio.Event) -> None:
        super().__init__()
        self.text = text
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


def outcome_of(worker: Worker, jid: str) -> Callable[[], bool]:
    return lambda: any(j == jid for j, _ in worker.outcomes)


async def test_a_job_runs_through_the_cluster_rpc_with_its_argument_class(
    harness: Harness,
) -> None:
    worker = harness.worker()
    worker.register_job(RpcJob(arg_types={"room.grants.grant": KickMsg}))
    jid = await worker.enqueue("room.grants.grant", KickMsg(userId="ann"))
    assert len(harness.queue) == 1
    await worker.start()
    await worker.until(outcome_of(worker, jid))
    assert worker.outcomes == [(jid, "ok")]
    assert harness.calls.made == [("", "room.grants.grant", KickMsg(userId="ann"), None)]
    assert harness.in_progress == [] and harness.queue == []
    assert (harness.counter("processed"), harness.counter("failed")) == (1, 0)


async def test_the_registered_job_chooses_the_server_from_the_metadata(harness: Harness) -> None:
    class ByMetadata(RpcJob):
        def server_discovery(self, route: str, metadata: Mapping[str, Any]) -> str:
            return str(metadata["server"])

    worker = harness.worker()
    worker.register_job(ByMetadata())
    with pytest.raises(RuntimeError, match="already registered"):
        worker.register_job(RpcJob())
    jid = await worker.enqueue("room.grants.grant", {"n": 1}, metadata={"server": "room-7"})
    await worker.start()
    await worker.until(outcome_of(worker, jid))
    # No argument class: the JSON value as it is (a dict reaches our servers as msgpack).
    assert harness.calls.made == [("room-7", "room.grants.grant", {"n": 1}, None)]


async def test_a_failing_job_is_retried_then_given_up_as_go_workers_does(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.calls.fail["room.grants.grant"] = -1
    worker = harness.worker()
    jid = await worker.enqueue("room.grants.grant", None)
    await worker.start()
    await worker.until(lambda: (jid, "dropped") in worker.outcomes)
    # retry_max 2: four runs (retry counts 0, 0, 1, 2), then dropped.
    assert [o for _, o in worker.outcomes] == ["retry", "retry", "retry", "dropped"]
    assert len(harness.calls.made) == 4
    assert harness.counter("failed") == 4 and harness.counter("processed") == 0
    assert harness.in_progress == [] and harness.queue == []
    assert harness.data.zsets[KEYS.due("goretry")] == {}
    assert "giving up" in caplog.text and "PIT-500: room.grants.grant failed" in caplog.text


async def test_a_retried_job_carries_go_workers_fields_and_succeeds(harness: Harness) -> None:
    harness.calls.fail["room.grants.grant"] = 1
    worker = harness.worker(retry=RetryOptions(min_delay=3600, max_delay=3600))
    jid = await worker.enqueue("room.grants.grant", None)
    await worker.start()
    await worker.until(outcome_of(worker, jid))
    retry_set = harness.data.zsets[KEYS.due("goretry")]
    ((raw, due),) = retry_set.items()
    job = json.loads(raw)
    assert job["retry_count"] == 0 and job["queue"] == "rpc" and "failed_at" in job
    assert job["error_message"] == "PIT-500: room.grants.grant failed"
    assert 3590 < due - time.time() <= 3600  # min_delay 3600, capped by max_delay 3600
    # Due now: the poller puts it back in its queue, and it runs.
    retry_set[raw] = 0.0
    await worker.until(lambda: (jid, "ok") in worker.outcomes)
    assert [o for _, o in worker.outcomes] == ["retry", "ok"]


async def test_a_malformed_job_is_logged_and_moved_aside_and_the_loop_goes_on(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryJobStore(harness.data, KEYS)
    await store.push("rpc", b"{not json")
    await store.push("rpc", b'{"args": {"Route": 7}}')
    worker = harness.worker()
    jid = await worker.enqueue("room.grants.grant", None)
    await worker.start()
    await worker.until(outcome_of(worker, jid))
    assert [o for _, o in worker.outcomes] == ["dead", "dead", "ok"]
    assert set(harness.data.zsets[KEYS.dead]) == {b"{not json", b'{"args": {"Route": 7}}'}
    assert harness.in_progress == []
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and all("malformed job in queue rpc" in r.message for r in errors)
    assert all("[room-1]" in r.message and "moved to dead" in r.message for r in errors)


async def test_odd_but_valid_json_neither_kills_the_poller_nor_sticks_in_progress(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # A lone surrogate escape (valid JSON; Go reads it as U+FFFD), then a job nested deeper
    # than Python's recursion limit (Go reads up to 10000 levels), both due for a retry,
    # ahead of an ordinary job due after them.
    lone = b'{"queue":"rpc","jid":"lone","args":{"Route":"room.a.b","Arg":"\\ud800"}}'
    deep = b'{"queue":"rpc","jid":"deep","args":{"Route":"room.a.b","Arg":%s}}' % (
        b"[" * 5000 + b"]" * 5000
    )
    harness.data.zsets[KEYS.due("goretry")] = {lone: 1.0, deep: 2.0}
    worker = harness.worker()
    later = await worker.enqueue("room.grants.grant", None)
    harness.data.zsets[KEYS.due("goretry")][harness.queue.pop()] = 3.0
    await MemoryJobStore(harness.data, KEYS).push("rpc", deep)  # and one fetched as it is
    await worker.start()
    await worker.until(lambda: ("lone", "ok") in worker.outcomes and outcome_of(worker, later)())
    assert [o for j, o in worker.outcomes if j == ""] == ["dead"]  # the fetched deep one
    assert set(harness.data.zsets[KEYS.dead]) == {deep}
    assert harness.in_progress == []


async def test_a_number_too_large_for_a_float_is_a_malformed_job_wherever_it_is_read(
    harness: Harness,
) -> None:
    # Valid JSON that Python reads as an infinity, which no job written back can hold (nor
    # Go read): due for a retry ahead of an ordinary job, it killed the poller (retries and
    # scheduled jobs stopped for good, unlogged); fetched and failed, its retry could not be
    # written and it stuck in progress.
    huge = b'{"queue":"rpc","jid":"huge","retry":true,"args":{"Route":"room.a.b","Arg":1e400}}'
    harness.data.zsets[KEYS.due("goretry")] = {huge: 1.0}
    harness.calls.fail["room.a.b"] = -1
    worker = harness.worker()
    later = await worker.enqueue("room.grants.grant", None)
    harness.data.zsets[KEYS.due("goretry")][harness.queue.pop()] = 3.0
    await MemoryJobStore(harness.data, KEYS).push("rpc", huge)  # and one fetched as it is
    await worker.start()
    await worker.until(lambda: outcome_of(worker, later)() and ("", "dead") in worker.outcomes)
    assert harness.data.zsets[KEYS.due("goretry")] == {}
    assert set(harness.data.zsets[KEYS.dead]) == {huge}
    assert harness.in_progress == []


async def test_a_long_running_worker_keeps_a_bounded_record_of_outcomes(
    harness: Harness,
) -> None:
    worker = harness.worker(concurrency=50)
    jids = [await worker.enqueue("room.grants.grant", None) for _ in range(1500)]
    await worker.start()
    await worker.until(lambda: harness.counter("processed") == len(jids), timeout=60)
    # Recent outcomes only: a server that runs jobs for weeks must not grow without bound.
    assert 0 < len(worker.outcomes) <= 1000
    assert worker.outcomes[-1][1] == "ok"


async def test_one_slow_job_does_not_hold_the_others(harness: Harness) -> None:
    harness.calls.gates["room.slow.wait"] = asyncio.Event()
    worker = harness.worker(concurrency=2)
    slow = await worker.enqueue("room.slow.wait", None)
    quick = [await worker.enqueue("room.quick.go", None) for _ in range(3)]
    await worker.start()
    await worker.until(lambda: all(outcome_of(worker, jid)() for jid in quick))
    assert not outcome_of(worker, slow)()  # still running, the others done meanwhile
    harness.calls.gates["room.slow.wait"].set()
    await worker.until(outcome_of(worker, slow))


async def test_concurrency_bounds_the_jobs_at_once(harness: Harness) -> None:
    harness.calls.gates["room.slow.wait"] = asyncio.Event()
    worker = harness.worker(concurrency=2)
    for _ in range(3):
        await worker.enqueue("room.slow.wait", None)
    await worker.start()
    await harness.calls.until_entered("room.slow.wait", 2)
    assert len(harness.in_progress) == 2 and len(harness.queue) == 1  # the third not fetched
    harness.calls.gates["room.slow.wait"].set()
    await worker.until(lambda: len(worker.outcomes) == 3)


async def test_a_stop_lets_jobs_finish_and_leaves_the_cut_ones_for_the_next_start(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.calls.gates["room.slow.wait"] = asyncio.Event()  # never set while the first runs
    worker = harness.worker(concurrency=2, stop_timeout=0.05)
    slow = await worker.enqueue("room.slow.wait", None)
    await worker.start()
    await harness.calls.until_entered("room.slow.wait")
    await worker.stop()
    assert "1 job(s) still running" in caplog.text
    late = await worker.enqueue("room.quick.go", None)
    assert len(harness.queue) == 1  # no fetching after the stop
    assert len(harness.in_progress) == 1 and json.loads(harness.in_progress[0])["jid"] == slow
    # The next start (same process id) runs the job left in progress first, then the queue.
    harness.calls.gates["room.slow.wait"].set()
    again = harness.worker(concurrency=1)
    await again.start()
    await again.until(lambda: len(again.outcomes) == 2)
    assert again.outcomes == [(slow, "ok"), (late, "ok")]
    assert harness.in_progress == [] and harness.queue == []


async def test_a_stop_waits_for_a_job_that_finishes_in_time(harness: Harness) -> None:
    gate = harness.calls.gates["room.slow.wait"] = asyncio.Event()
    worker = harness.worker(stop_timeout=10)
    jid = await worker.enqueue("room.slow.wait", None)
    await worker.start()
    await harness.calls.until_entered("room.slow.wait")
    stopping = asyncio.ensure_future(worker.stop())
    await asyncio.sleep(0)  # the stop is under way, waiting for the job
    assert not stopping.done()
    gate.set()
    await stopping
    assert worker.outcomes == [(jid, "ok")] and harness.in_progress == []


async def test_a_stop_cut_short_by_the_app_takes_the_jobs_under_way_with_it(
    harness: Harness,
) -> None:
    gate = harness.calls.gates["room.slow.wait"] = asyncio.Event()
    worker = harness.worker(stop_timeout=30)
    await worker.enqueue("room.slow.wait", None)
    await worker.start()
    await harness.calls.until_entered("room.slow.wait")
    # The app gives each module's stop shutdown_timeout (here shorter than stop_timeout).
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(worker.stop(), 0.1)
    gate.set()  # the job would finish now, after its worker (and the cluster) stopped
    for _ in range(5):
        await asyncio.sleep(0)
    assert worker.outcomes == []  # it did not run on: cancelled with the stop
    assert len(harness.in_progress) == 1  # and left for the next start


class Counting(MemoryJobStore):
    """Counts the fetch loop's attempts, with their times."""

    def __init__(self, data: MemoryJobData) -> None:
        super().__init__(data, KEYS)
        self.attempts: list[float] = []
        self.tried = asyncio.Condition()

    async def in_progress(self, queue: str) -> list[bytes]:
        self.attempts.append(time.monotonic())
        async with self.tried:
            self.tried.notify_all()
        return await super().in_progress(queue)


async def test_redis_down_at_start_is_tried_again_with_growing_pauses(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    harness.data.available = False
    store = Counting(harness.data)
    worker = harness.worker(store=store)
    await worker.start()  # does not fail: Redis may come back
    async with store.tried:
        await asyncio.wait_for(store.tried.wait_for(lambda: len(store.attempts) >= 4), 10)
    gaps = [b - a for a, b in zip(store.attempts, store.attempts[1:], strict=False)]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and gaps[2] >= 0.39  # 0.1, 0.2, 0.4: no busy loop
    warnings = [r for r in caplog.records if "cannot reach its job store" in r.message]
    assert len(warnings) == 1  # once per outage, not per attempt
    with pytest.raises(JobStoreUnavailable):
        await worker.enqueue("room.grants.grant", None)
    await harness.data.set_available(True)
    jid = await worker.enqueue("room.grants.grant", None)
    await worker.until(outcome_of(worker, jid))
    assert "reached its job store again" in caplog.text


async def test_redis_down_mid_job_loses_nothing_and_records_the_outcome_later(
    harness: Harness,
) -> None:
    gate = harness.calls.gates["room.slow.wait"] = asyncio.Event()
    worker = harness.worker()
    jid = await worker.enqueue("room.slow.wait", None)
    await worker.start()
    await harness.calls.until_entered("room.slow.wait")
    await harness.data.set_available(False)
    gate.set()
    await worker.until(lambda: (jid, "unrecorded") in worker.outcomes)
    assert len(harness.in_progress) == 1  # still in Redis: a crash now would run it again
    await harness.data.set_available(True)
    await worker.until(lambda: harness.in_progress == [] and harness.counter("processed") == 1)
    assert len(harness.calls.made) == 1  # run once, recorded once


async def test_the_password_never_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    from tests.services import free_port

    port = free_port()  # nothing listens there
    store = RedisJobStore(
        f"redis://:pw-in-url-secret@127.0.0.1:{port}", password="pw-in-url-secret"
    )
    seen = asyncio.Event()
    watch = Watch("cannot reach its job store", seen)
    logging.getLogger("actors.cluster.worker").addHandler(watch)
    harness = Harness()
    worker = harness.worker(store=store)
    try:
        await worker.start()
        await asyncio.wait_for(seen.wait(), 10)
        with pytest.raises(JobStoreUnavailable) as caught:
            await worker.enqueue("room.grants.grant", None)
    finally:
        logging.getLogger("actors.cluster.worker").removeHandler(watch)
        await worker.stop()
        await worker.shutdown()
    assert "pw-in-url-secret" not in caplog.text and "pw-in-url-secret" not in str(caught.value)
    assert f"redis://***@127.0.0.1:{port}" in caplog.text


def test_the_password_in_the_redis_url_is_not_in_a_repr() -> None:
    config = Config(worker_redis_url="redis://:url-secret@redis-1:6379/0")
    assert "redis://***@redis-1:6379/0" in repr(config)
    for shown in (repr(config), repr(worker_options(config))):
        assert "url-secret" not in shown


class Gauges:
    def __init__(self) -> None:
        self.gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.reported = asyncio.Event()

    def report_count(self, metric: str, tags: Mapping[str, str], value: float = 1.0) -> None:
        pass

    def report_gauge(self, metric: str, tags: Mapping[str, str], value: float) -> None:
        self.gauges[(metric, tuple(sorted(tags.items())))] = value
        if metric == "worker_jobs_total" and value >= 1:
            self.reported.set()

    def report_summary(self, metric: str, tags: Mapping[str, str], value: float) -> None:
        pass


async def test_the_worker_reports_pitayas_gauges(harness: Harness) -> None:
    gauges = Gauges()
    metrics = Metrics()
    metrics.add(gauges)
    harness.calls.gates["room.slow.wait"] = asyncio.Event()  # holds the queue
    worker = harness.worker(metrics=metrics, metrics_period=0.01)
    jid = await worker.enqueue("room.grants.grant", None)
    await worker.enqueue("room.slow.wait", None)
    await worker.enqueue("room.slow.wait", None)
    await worker.start()
    await worker.until(outcome_of(worker, jid))
    gauges.reported.clear()
    await asyncio.wait_for(gauges.reported.wait(), 10)
    assert gauges.gauges[("worker_jobs_total", (("status", "ok"),))] == 1
    assert gauges.gauges[("worker_jobs_total", (("status", "failed"),))] == 0
    assert gauges.gauges[("worker_jobs_retry_total", ())] == 0
    assert gauges.gauges[("worker_queue_size", (("queue", "rpc"),))] == 1
    harness.calls.gates["room.slow.wait"].set()


def test_the_worker_options_defaults_are_the_worker_options_of_a_default_config() -> None:
    assert WorkerOptions() == worker_options(Config())


def _today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


async def test_each_failure_is_one_line_naming_the_job_its_route_and_the_error(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.calls.fail["room.grants.grant"] = -1
    worker = harness.worker(retry=RetryOptions(enabled=True, max=1, min_delay=0, max_delay=0))
    jid = await worker.enqueue("room.grants.grant", None)
    await worker.start()
    await worker.until(lambda: (jid, "dropped") in worker.outcomes)
    error = "PIT-500: room.grants.grant failed"
    assert messages(caplog, logging.WARNING) == [
        f"[room-1] job {jid} (room.grants.grant) failed: {error}; retry 0 in 0s",
        f"[room-1] job {jid} (room.grants.grant) failed: {error}; retry 1 in 0s",
    ]
    assert messages(caplog, logging.ERROR) == [
        f"[room-1] job {jid} (room.grants.grant) failed: {error}; giving up"
    ]


async def test_an_error_that_is_no_pitaya_error_is_logged_as_its_repr(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    class NoServer(RpcJob):
        def server_discovery(self, route: str, metadata: Mapping[str, Any]) -> str:
            raise LookupError("no room server")

    worker = harness.worker(retry=RetryOptions(enabled=False, max=0))
    worker.register_job(NoServer())
    jid = await worker.enqueue("room.grants.grant", None)
    await worker.start()
    await worker.until(outcome_of(worker, jid))
    assert worker.outcomes == [(jid, "dropped")] and harness.calls.made == []
    assert messages(caplog, logging.ERROR) == [
        f"[room-1] job {jid} (room.grants.grant) failed: LookupError('no room server'); giving up"
    ]


async def test_a_malformed_job_is_logged_by_its_first_200_bytes_timed_and_counted(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    long = b"[" + b"1," * 150 + b"1]"  # JSON, but no object: 303 bytes
    await MemoryJobStore(harness.data, KEYS).push("rpc", long)
    worker = harness.worker()
    before, day = time.time(), _today()
    await worker.start()
    await worker.until(lambda: len(worker.outcomes) == 1)
    after = time.time()
    assert worker.outcomes == [("", "dead")]
    ((error,),) = [messages(caplog, logging.ERROR)]
    assert error.startswith("[room-1] malformed job in queue rpc (")
    assert error.endswith(f"), moved to dead: {long[:200]!r}")
    ((buried, at),) = harness.data.zsets[KEYS.dead].items()
    assert buried == long and before <= at <= after  # when it died
    assert harness.counter("failed") == 1 and harness.counter("processed") == 0
    days = {day, _today()}  # the run may cross midnight (UTC)
    assert sum(harness.data.counters.get(KEYS.stat("failed", d), 0) for d in days) == 1


async def test_reporting_rides_out_an_outage_and_says_so_at_debug(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="actors.cluster.worker")
    gauges = Gauges()
    metrics = Metrics()
    metrics.add(gauges)
    worker = harness.worker(metrics=metrics, metrics_period=0.01)
    seen = asyncio.Event()
    watch = Watch("cannot read the worker's stats", seen)
    logging.getLogger("actors.cluster.worker").addHandler(watch)
    try:
        await harness.data.set_available(False)
        await worker.start()
        await asyncio.wait_for(seen.wait(), 10)
        await harness.data.set_available(True)
        jid = await worker.enqueue("room.grants.grant", None)
        await worker.until(outcome_of(worker, jid))
        gauges.reported.clear()
        await asyncio.wait_for(gauges.reported.wait(), 10)  # reporting again
    finally:
        logging.getLogger("actors.cluster.worker").removeHandler(watch)
    assert "[room-1] cannot read the worker's stats: memory: connection refused" in messages(
        caplog, logging.DEBUG
    )


def test_each_worker_option_comes_from_its_own_config_option() -> None:
    config = Config(
        worker_redis_url="redis://redis-9:6379/1",
        worker_redis_password="pw",
        worker_redis_pool=7,
        worker_namespace="ns",
        worker_concurrency=3,
        worker_retry_enabled=False,
        worker_retry_max=4,
        worker_retry_exponential=3,
        worker_retry_min_delay=2,
        worker_retry_max_delay=60,
        worker_retry_max_random=6,
        worker_poll_interval=1.5,
        worker_process_id="proc-1",
        worker_stop_timeout=9.0,
        metrics_period=2.5,
    )
    assert worker_options(config) == WorkerOptions(
        redis_url="redis://redis-9:6379/1",
        redis_password="pw",
        redis_pool=7,
        namespace="ns",
        concurrency=3,
        retry=RetryOptions(
            enabled=False, max=4, exponential=3, min_delay=2, max_delay=60, max_random=6
        ),
        poll_interval=1.5,
        process_id="proc-1",
        stop_timeout=9.0,
        metrics_period=2.5,
    )


async def test_start_stop_and_a_restart_with_jobs_left_each_say_so_in_one_line(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="actors.cluster.worker")
    harness.data.lists[KEYS.in_progress("rpc")] = [b"{left 1", b"{left 2"]
    worker = harness.worker(concurrency=3)
    await worker.start()
    await worker.until(lambda: len(worker.outcomes) == 2)
    await worker.stop()
    assert messages(caplog, logging.INFO) == [
        "[room-1] worker started: queue rpc at memory, 3 at a time",
        "[room-1] running 2 job(s) a previous run left in progress",
        "[room-1] worker stopped",
    ]
