"""Pitaya's worker: reliable RPCs kept in Redis until a server ran them.

``enqueue`` writes a job as Go Pitaya's ``EnqueueRPC`` does (``actors.cluster.jobs``) into
go-workers' queue ``rpc`` (``transport.jobstore``), so Go and Python servers enqueue for and
run each other's jobs. Once started, the worker:

* first runs the jobs its previous run left in its in-progress list (a crash, a stop that
  cut them short), then fetches new ones, ``concurrency`` at a time (a slow job holds one
  slot, not the others);
* runs each through the cluster's user RPC, to the server its :class:`RPCJob` names or one
  the router picks for the route's server type;
* on a failure, counts it and puts the job in the retry set (go-workers' delay and limit),
  or gives up past the limit; a job that is not even JSON goes to the dead set, logged;
* every ``poll_interval`` moves due retries and scheduled jobs back into their queue;
* every ``metrics_period`` reports Pitaya's gauges ``worker_jobs_total{status}``,
  ``worker_jobs_retry_total`` and ``worker_queue_size{queue}`` from Redis' counters.

Redis down (at start or later): one warning, then attempts with a growing pause (0.1 s to
5 s, never a busy loop), one line when it is back. What could not be recorded meanwhile (a
job's outcome) is recorded then; a job never leaves Redis before its outcome is recorded, so
none is lost. A stop stops fetching, lets the jobs under way finish for ``stop_timeout``, and
leaves the others in the in-progress list for the next start.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from actors.cluster.gojson import from_go_json
from actors.cluster.jobs import (
    RPC_QUEUE,
    MalformedJob,
    RetryOptions,
    RpcJobArgs,
    encode_rpc_job,
    load_job,
    may_retry,
    parse_rpc_job,
    requeued_job,
    retried_job,
    retry_delay,
)
from actors.cluster.rpcjob import RpcCaller, RPCJob, RpcJob
from actors.config import Config, option_default
from actors.errors import PitayaError
from actors.metrics.names import WORKER_JOBS_RETRY, WORKER_JOBS_TOTAL, WORKER_QUEUE_SIZE
from actors.metrics.reporter import Metrics
from transport.jobstore import JobKeys, JobStore, JobStoreUnavailable, RedisJobStore
from transport.logs import ServerLog
from transport.waiting import set_within

log = logging.getLogger(__name__)

__all__ = ["Worker", "WorkerOptions", "worker_options"]

FETCH_WAIT = 1.0
"""Seconds one fetch waits for a job (go-workers' BRPOPLPUSH timeout)."""
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0
"""Pause after a failed attempt to reach Redis, doubled per failure up to the maximum."""
OUTCOMES_KEPT = 1000
"""How many of the latest outcomes :attr:`Worker.outcomes` keeps (a server runs jobs for
weeks: all of them would grow without bound)."""


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """The worker's options (``worker_*`` in :class:`~actors.config.Config`, whose defaults
    these are)."""

    redis_url: str = field(default=option_default("worker_redis_url"), repr=False)
    """May hold the password (``redis://:secret@host``): out of ``repr``, as the password."""
    redis_password: str = field(default=option_default("worker_redis_password"), repr=False)
    redis_pool: int = option_default("worker_redis_pool")
    namespace: str = option_default("worker_namespace")
    concurrency: int = option_default("worker_concurrency")
    retry: RetryOptions = field(default_factory=RetryOptions)
    poll_interval: float = option_default("worker_poll_interval")
    process_id: str = option_default("worker_process_id")
    """Names this process's in-progress list; empty: the host name (go-workers' choice)."""
    stop_timeout: float = option_default("worker_stop_timeout")
    metrics_period: float = option_default("metrics_period")


def worker_options(config: Config) -> WorkerOptions:
    """The worker's options from a server's ``worker_*`` options."""
    return WorkerOptions(
        redis_url=config.worker_redis_url,
        redis_password=config.worker_redis_password,
        redis_pool=config.worker_redis_pool,
        namespace=config.worker_namespace,
        concurrency=config.worker_concurrency,
        retry=RetryOptions(
            enabled=config.worker_retry_enabled,
            max=config.worker_retry_max,
            exponential=config.worker_retry_exponential,
            min_delay=config.worker_retry_min_delay,
            max_delay=config.worker_retry_max_delay,
            max_random=config.worker_retry_max_random,
        ),
        poll_interval=config.worker_poll_interval,
        process_id=config.worker_process_id,
        stop_timeout=config.worker_stop_timeout,
        metrics_period=config.metrics_period,
    )


class Worker:
    """Enqueues reliable RPCs and, once started, runs them; an app module (its ``init``
    starts it if :meth:`enable` was called, its ``before_shutdown`` stops it).

    ``caller`` returns the cluster's RPCs when the worker starts (the cluster exists from
    the app's start on); ``store`` replaces the Redis store (the in-memory one in tests).
    """

    def __init__(
        self,
        options: WorkerOptions,
        *,
        server_id: str,
        metrics: Metrics,
        caller: Callable[[], RpcCaller],
        store: JobStore | None = None,
    ) -> None:
        self.options = options
        self.log = ServerLog(log, server_id)
        self._metrics = metrics
        self._caller = caller
        self._store = store
        self.job: RPCJob = RpcJob()
        self._registered = False
        self.enabled = False
        self.running = False
        self.outcomes: list[tuple[str, str]] = []
        """(jid, ``ok`` | ``retry`` | ``dropped`` | ``dead`` | ``unrecorded``) per job run, the
        latest :data:`OUTCOMES_KEPT`."""
        self.changed = asyncio.Condition()
        """Notified after each outcome (tests wait on it)."""
        self._slots = asyncio.Semaphore(max(1, options.concurrency))
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._jobs: set[asyncio.Task[None]] = set()
        self._unrecorded: list[Callable[[], Awaitable[None]]] = []
        """Outcomes Redis was down for: recorded once it answers (the job stays in progress)."""
        self._outage: str | None = None

    # -- enqueueing --------------------------------------------------------------------------

    @property
    def store(self) -> JobStore:
        if self._store is None:
            process_id = self.options.process_id or socket.gethostname()
            self._store = RedisJobStore(
                self.options.redis_url,
                password=self.options.redis_password,
                pool_size=self.options.redis_pool,
                keys=JobKeys(self.options.namespace, process_id),
            )
        return self._store

    async def enqueue(
        self,
        route: str,
        arg: Any = None,
        *,
        metadata: dict[str, Any] | None = None,
        reply: Any = None,
        options: RetryOptions | None = None,
    ) -> str:
        """Pitaya's ``EnqueueRPC``: the job in queue ``rpc``; returns its jid. Raises
        :class:`~transport.jobstore.JobStoreUnavailable` when Redis cannot take it."""
        jid, job = encode_rpc_job(
            route, arg, metadata=metadata, reply=reply, options=options or self.options.retry
        )
        await self.store.push(RPC_QUEUE, job)
        return jid

    # -- running -----------------------------------------------------------------------------

    def enable(self) -> None:
        """Start with the app (Pitaya's ``StartWorker``)."""
        self.enabled = True

    def register_job(self, job: RPCJob) -> None:
        """Pitaya's ``RegisterRPCJob``: one job for the ``rpc`` queue, set once."""
        if self._registered:
            raise RuntimeError("an RPC job is already registered (Pitaya allows one)")
        self._registered = True
        self.job = job

    async def init(self) -> None:
        if self.enabled:
            await self.start()

    async def after_init(self) -> None:
        return None

    async def before_shutdown(self) -> None:
        await self.stop()

    async def shutdown(self) -> None:
        if self._store is not None:
            await self._store.close()

    async def start(self) -> None:
        """Fetch and run jobs until :meth:`stop` (returns at once; Redis may be down)."""
        if self.running:
            return
        self.running = True
        self._stopping.clear()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._fetch_loop()), loop.create_task(self._poll_loop())]
        if self._metrics.reporters:
            self._tasks.append(loop.create_task(self._report_loop()))
        self.log.info(
            "worker started: queue %s at %s, %d at a time",
            RPC_QUEUE,
            self.store.address,
            self.options.concurrency,
        )

    async def stop(self) -> None:
        """Stop fetching; jobs under way get ``stop_timeout`` to finish, the others stay in
        the in-progress list, run at the next start."""
        if not self.running:
            return
        self.running = False
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._jobs:
            late = set(self._jobs)
            try:
                _, late = await asyncio.wait(late, timeout=self.options.stop_timeout)
            finally:
                # Also when this stop is itself cut short (the app's shutdown_timeout):
                # the jobs must not run on after their worker and the cluster stopped.
                for task in late:
                    task.cancel()
            if late:
                await asyncio.wait(late)
                self.log.warning(
                    "%d job(s) still running after %ss: left in progress for the next start",
                    len(late),
                    self.options.stop_timeout,
                )
        self.log.info("worker stopped")

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the worker stops meanwhile."""
        await set_within(self._stopping, seconds)

    async def _attempt(self, what: Callable[[], Awaitable[Any]]) -> Any:
        """``what()`` until Redis answers it, pausing longer after each failure; None once
        the worker stops (a cancellation can be lost in ``wait_for`` on Python 3.11 when
        the stop event is set at the same moment, so the stop is checked too)."""
        pause = BACKOFF_FIRST
        while not self._stopping.is_set():
            try:
                result = await what()
            except JobStoreUnavailable as exc:
                self._down(exc)
                await self._pause(pause)
                pause = min(pause * 2, BACKOFF_MAX)
                continue
            await self._up()
            return result
        return None

    def _down(self, exc: JobStoreUnavailable) -> None:
        if self._outage is None:
            self.log.warning("worker cannot reach its job store (%s): retrying", exc)
        else:
            self.log.debug("job store still unreachable: %s", exc)
        self._outage = str(exc)

    async def _up(self) -> None:
        if self._outage is not None:
            self._outage = None
            self.log.info("worker reached its job store again")
        if not self._unrecorded:
            return
        while self._unrecorded:
            record = self._unrecorded[0]
            try:
                await record()
            except JobStoreUnavailable as exc:
                self._down(exc)
                return
            self._unrecorded.pop(0)
        self.log.info("recorded the outcomes of jobs run while the job store was down")
        await self._notify()

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _fetch_loop(self) -> None:
        store = self.store
        left = await self._attempt(lambda: store.in_progress(RPC_QUEUE)) or []
        if left:
            self.log.info("running %d job(s) a previous run left in progress", len(left))
        for raw in left:
            await self._slots.acquire()
            self._spawn(raw)
        while not self._stopping.is_set():
            await self._slots.acquire()
            try:
                raw = await self._attempt(lambda: store.fetch(RPC_QUEUE, FETCH_WAIT))
            except BaseException:
                self._slots.release()
                raise
            if raw is None:
                self._slots.release()
            else:
                self._spawn(raw)

    def _spawn(self, raw: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._run(raw))
        self._jobs.add(task)
        task.add_done_callback(self._job_done)

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self._jobs.discard(task)
        self._slots.release()

    async def _run(self, raw: bytes) -> None:
        try:
            job = load_job(raw)
            call = parse_rpc_job(job)
        except MalformedJob as exc:
            await self._bury(raw, exc)
            return
        try:
            await self._call(call)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._failed(raw, job, call, exc)
            return
        await self._record(call.jid, "ok", self._succeeded(raw))

    async def _call(self, call: RpcJobArgs) -> None:
        arg_type, reply_type = self.job.arg_reply(call.route)
        arg = from_go_json(arg_type, call.arg) if arg_type is not None else call.arg
        server_id = self.job.server_discovery(call.route, call.metadata)
        caller = self._caller()
        if server_id:
            await caller.rpc_to(server_id, call.route, arg, reply=reply_type)
        else:
            await caller.rpc(call.route, arg, reply=reply_type)

    def _succeeded(self, raw: bytes) -> Callable[[], Awaitable[None]]:
        async def record() -> None:
            await self.store.acknowledge(RPC_QUEUE, raw)
            await self.store.count("processed", _today())

        return record

    async def _failed(
        self, raw: bytes, job: dict[str, Any], call: RpcJobArgs, exc: Exception
    ) -> None:
        error = f"{exc.code}: {exc.msg}" if isinstance(exc, PitayaError) else repr(exc)
        store = self.store
        if not may_retry(job):
            self.log.error("job %s (%s) failed: %s; giving up", call.jid, call.route, error)

            async def drop() -> None:
                await store.acknowledge(RPC_QUEUE, raw)
                await store.count("failed", _today())

            await self._record(call.jid, "dropped", drop)
            return
        count, retried = retried_job(job, store.keys.prefix + RPC_QUEUE, error)
        delay = retry_delay(count, job.get("retry_options"))
        self.log.warning(
            "job %s (%s) failed: %s; retry %d in %ds", call.jid, call.route, error, count, delay
        )

        async def retry() -> None:
            await store.retry_at(RPC_QUEUE, raw, time.time() + delay, retried)
            await store.count("failed", _today())

        await self._record(call.jid, "retry", retry)

    async def _bury(self, raw: bytes, exc: MalformedJob) -> None:
        store = self.store
        self.log.error(
            "malformed job in queue %s (%s), moved to %s: %r",
            RPC_QUEUE,
            exc,
            store.keys.dead,
            raw[:200],
        )

        async def bury() -> None:
            await store.bury(RPC_QUEUE, raw, time.time())
            await store.count("failed", _today())

        await self._record("", "dead", bury)

    async def _record(self, jid: str, outcome: str, record: Callable[[], Awaitable[None]]) -> None:
        """Record a job's outcome in Redis, or later if it is down (the job stays in the
        in-progress list meanwhile, so nothing is lost)."""
        try:
            await record()
        except JobStoreUnavailable as exc:
            self._down(exc)
            self._unrecorded.append(record)
            outcome = "unrecorded"
        self.outcomes.append((jid, outcome))
        if len(self.outcomes) > OUTCOMES_KEPT:
            del self.outcomes[0]
        await self._notify()

    async def _poll_loop(self) -> None:
        """go-workers' scheduler: due retries and scheduled jobs back into their queue."""
        store = self.store
        prefix = store.keys.prefix
        while not self._stopping.is_set():
            now = time.time()

            def back(raw: bytes, now: float = now) -> tuple[str, bytes] | None:
                return requeued_job(raw, prefix, now)

            try:
                await store.requeue_due(now, back)
            except JobStoreUnavailable as exc:
                self.log.debug("cannot poll the retry set: %s", exc)
            await self._pause(self.options.poll_interval)

    async def _report_loop(self) -> None:
        """Pitaya's ``worker.Report``: gauges from Redis' counters, every metrics period."""
        while not self._stopping.is_set():
            await self._pause(self.options.metrics_period)
            try:
                stats = await self.store.stats([RPC_QUEUE])
            except JobStoreUnavailable as exc:
                self.log.debug("cannot read the worker's stats: %s", exc)
                continue
            metrics = self._metrics
            metrics.report_gauge(WORKER_JOBS_RETRY, {}, float(stats.retries))
            for queue, size in stats.enqueued.items():
                metrics.report_gauge(WORKER_QUEUE_SIZE, {"queue": queue}, float(size))
            metrics.report_gauge(WORKER_JOBS_TOTAL, {"status": "failed"}, float(stats.failed))
            metrics.report_gauge(WORKER_JOBS_TOTAL, {"status": "ok"}, float(stats.processed))

    async def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds after some job's outcome (for tests and tools)."""
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), timeout)


def _today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())
