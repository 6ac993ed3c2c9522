"""A Sidekiq-style job queue in Redis, laid out as go-workers (v1.2.1) lays it out.

Go Pitaya's worker (``pkg/worker``) keeps its reliable RPCs in Redis through go-workers; a
Python server shares that queue with Go servers only if it reads and writes the same keys the
same way. This module knows the keys and moves bytes between them; what a job *means* (its
JSON, its retries) is the worker's business (``actors.cluster.worker``). ``<ns>`` is the
namespace followed by ``:``, or nothing when the namespace is empty (go-workers' rule):

* ``<ns>queues``: a set of queue names (SADD by enqueuers);
* ``<ns>queue:<q>``: the queue, a list: enqueuers LPUSH, workers BRPOPLPUSH from its tail
  into ``<ns>queue:<q>:<process id>:inprogress``, and LREM a job from there once done. A
  process that dies leaves its jobs in that list; the next process with the same id (go-workers
  uses the host name) runs them first, so a crash loses nothing;
* ``<ns>schedule`` and ``<ns>goretry``: sorted sets of jobs by the time they are due
  (go-workers' ``schedule`` and ``RETRY_KEY``), polled and moved back into their queue;
* ``<ns>stat:processed`` / ``<ns>stat:failed`` (and ``:<YYYY-MM-DD>`` per UTC day): counters;
* ``<ns>dead``: a sorted set (by time) of jobs that can never run (not even JSON). go-workers
  has none: it leaves such a job in its in-progress list, read again at every start.

:class:`JobStore` is the seam; :class:`RedisJobStore` the real one (``redis.asyncio``, the
``worker`` extra) and :class:`transport.jobstore_memory.MemoryJobStore` an in-memory fake.
Every failure to reach Redis is a :class:`JobStoreUnavailable` whose text never holds the
password.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from transport.credentials import mask_urls_in
from transport.errors import TransportError

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

__all__ = [
    "DUE_KEYS",
    "RETRY_KEY",
    "SCHEDULE_KEY",
    "JobKeys",
    "JobStats",
    "JobStore",
    "JobStoreUnavailable",
    "RedisJobStore",
    "Rewrite",
    "namespace_prefix",
]

RETRY_KEY = "goretry"
SCHEDULE_KEY = "schedule"
DUE_KEYS = (RETRY_KEY, SCHEDULE_KEY)
"""The sorted sets of jobs waiting for their time, in go-workers' polling order."""

Rewrite = Callable[[bytes], "tuple[str, bytes] | None"]
"""A due job -> (its queue, the job to push there), or None: it cannot run (moved to dead)."""


class JobStoreUnavailable(TransportError):
    """The job store (Redis) cannot be reached, refused us, or timed out. The text names the
    address with any credentials masked, never the password."""


def namespace_prefix(namespace: str) -> str:
    """go-workers' key prefix: ``"ns:"``, or ``""`` for no namespace."""
    return f"{namespace}:" if namespace else ""


@dataclass(frozen=True, slots=True)
class JobKeys:
    """The key names of one namespace and one process (see the module docstring)."""

    namespace: str = ""
    process_id: str = "worker"

    @property
    def prefix(self) -> str:
        return namespace_prefix(self.namespace)

    @property
    def queues(self) -> str:
        return f"{self.prefix}queues"

    def queue(self, name: str) -> str:
        return f"{self.prefix}queue:{name}"

    def in_progress(self, name: str) -> str:
        return f"{self.queue(name)}:{self.process_id}:inprogress"

    def due(self, kind: str) -> str:
        return f"{self.prefix}{kind}"

    @property
    def dead(self) -> str:
        return f"{self.prefix}dead"

    def stat(self, outcome: str, day: str | None = None) -> str:
        return f"{self.prefix}stat:{outcome}" + (f":{day}" if day else "")


@dataclass(frozen=True, slots=True)
class JobStats:
    """What go-workers' ``GetStats`` reads: counters, jobs awaiting a retry, queue lengths."""

    processed: int = 0
    failed: int = 0
    retries: int = 0
    enqueued: dict[str, int] = field(default_factory=dict)


class JobStore(Protocol):
    """The job queue's operations, each one atomic where a crash between two steps would lose
    or duplicate a job. Every method raises :class:`JobStoreUnavailable` when the store
    cannot be reached."""

    keys: JobKeys
    address: str
    """Where the store is, as it may be shown in a log line (no credentials)."""

    async def push(self, queue: str, job: bytes) -> None:
        """Add ``queue`` to the set of queues and LPUSH ``job`` onto it (go-workers' enqueue)."""

    async def fetch(self, queue: str, timeout: float) -> bytes | None:
        """Move the oldest job of ``queue`` into this process's in-progress list and return
        it; wait up to ``timeout`` seconds for one (None: none came)."""

    async def in_progress(self, queue: str) -> list[bytes]:
        """The jobs this process had fetched and not acknowledged (a previous run's)."""

    async def acknowledge(self, queue: str, job: bytes) -> None:
        """``job`` is done (or given up): out of the in-progress list."""

    async def retry_at(self, queue: str, job: bytes, at: float, retried: bytes) -> None:
        """Put ``retried`` in the retry set, due at ``at`` (Unix seconds), and acknowledge
        ``job``, in one step."""

    async def bury(self, queue: str, job: bytes, at: float) -> None:
        """``job`` can never run: move it from the in-progress list to the dead set."""

    async def requeue_due(self, now: float, rewrite: Rewrite) -> int:
        """Move every job due by ``now`` from the schedule and retry sets into its queue,
        as ``rewrite`` says; returns how many moved."""

    async def count(self, outcome: str, day: str) -> None:
        """Increment ``stat:<outcome>`` and ``stat:<outcome>:<day>``."""

    async def stats(self, queues: Sequence[str]) -> JobStats:
        """The counters, the retry set's size and the length of each of ``queues``."""

    async def close(self) -> None:
        """Release the connections."""


# Each script does in Redis what must not be cut in two by a crash or an outage.
_RETRY_AT = """
redis.call('zadd', KEYS[2], ARGV[2], ARGV[3])
redis.call('lrem', KEYS[1], -1, ARGV[1])
return 1
"""
_BURY = """
redis.call('lrem', KEYS[1], -1, ARGV[1])
redis.call('zadd', KEYS[2], ARGV[2], ARGV[1])
return 1
"""
_REQUEUE = """
if redis.call('zrem', KEYS[1], ARGV[1]) == 1 then
  redis.call('lpush', KEYS[2], ARGV[2])
  return 1
end
return 0
"""
_BURY_DUE = """
if redis.call('zrem', KEYS[1], ARGV[1]) == 1 then
  redis.call('zadd', KEYS[2], ARGV[2], ARGV[1])
  return 1
end
return 0
"""


def redis_address(url: str) -> str:
    """A ``redis://`` URL from Pitaya's ``host:port`` form (``localhost:6379``); a URL
    (``redis://``, ``rediss://``, ``unix://``) is kept."""
    return url if "://" in url else f"redis://{url}"


class RedisJobStore:
    """:class:`JobStore` on a Redis server, through ``redis.asyncio`` (a pool of at most
    ``pool_size`` connections, Pitaya's ``worker.redis.pool``).

    Example::

        store = RedisJobStore("localhost:6379", password="", keys=JobKeys("", "host-1"))
        await store.push("rpc", job_json)
    """

    def __init__(
        self,
        url: str,
        *,
        password: str = "",
        pool_size: int = 10,
        keys: JobKeys | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        try:
            from redis.asyncio import BlockingConnectionPool, Redis
        except ImportError as exc:  # the optional extra
            raise ImportError(
                "the worker needs redis-py: pip install 'pitaya-actors[worker]'"
            ) from exc
        self.keys = keys or JobKeys()
        self.address = mask_urls_in(redis_address(url))
        """Where Redis is, as it may be shown (credentials in the URL masked)."""
        self._password = password
        pool = BlockingConnectionPool.from_url(
            redis_address(url),
            max_connections=max(1, pool_size),
            timeout=None,
            password=password or None,
            socket_connect_timeout=connect_timeout,
            # Longer than the longest blocking fetch, so a silent server is noticed.
            socket_timeout=connect_timeout + 5.0,
        )
        self._redis: Redis = Redis(connection_pool=pool)

    def _unavailable(self, exc: BaseException) -> JobStoreUnavailable:
        text = mask_urls_in(str(exc) or type(exc).__name__)
        if self._password:
            text = text.replace(self._password, "***")
        return JobStoreUnavailable(f"Redis at {self.address}: {text}")

    async def _call(self, command: str, *args: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            # The generic command (redis-py leaves it unannotated): one code path for all.
            return await self._redis.execute_command(command, *args)  # type: ignore[no-untyped-call]
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from None

    async def _script(self, script: str, keys: Sequence[str], *args: Any) -> Any:
        return await self._call("EVAL", script, len(keys), *keys, *args)

    async def push(self, queue: str, job: bytes) -> None:
        from redis.exceptions import RedisError

        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.sadd(self.keys.queues, queue)
                pipe.lpush(self.keys.queue(queue), job)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from None

    async def fetch(self, queue: str, timeout: float) -> bytes | None:
        # BRPOPLPUSH takes whole seconds before Redis 6; at least 1 keeps the wait blocking.
        wait = max(1, round(timeout))
        job = await self._call(
            "BRPOPLPUSH", self.keys.queue(queue), self.keys.in_progress(queue), wait
        )
        return None if job is None else bytes(job)

    async def in_progress(self, queue: str) -> list[bytes]:
        jobs = await self._call("LRANGE", self.keys.in_progress(queue), 0, -1)
        return [bytes(job) for job in jobs]

    async def acknowledge(self, queue: str, job: bytes) -> None:
        await self._call("LREM", self.keys.in_progress(queue), -1, job)

    async def retry_at(self, queue: str, job: bytes, at: float, retried: bytes) -> None:
        keys = (self.keys.in_progress(queue), self.keys.due(RETRY_KEY))
        await self._script(_RETRY_AT, keys, job, repr(at), retried)

    async def bury(self, queue: str, job: bytes, at: float) -> None:
        await self._script(_BURY, (self.keys.in_progress(queue), self.keys.dead), job, repr(at))

    async def requeue_due(self, now: float, rewrite: Rewrite) -> int:
        moved = 0
        for kind in DUE_KEYS:
            key = self.keys.due(kind)
            while True:
                found = await self._call("ZRANGEBYSCORE", key, "-inf", repr(now), "LIMIT", 0, 1)
                if not found:
                    break
                job = bytes(found[0])
                target = rewrite(job)
                if target is None:
                    await self._script(_BURY_DUE, (key, self.keys.dead), job, repr(now))
                    continue
                queue, rewritten = target
                keys = (key, self.keys.queue(queue))
                moved += int(await self._script(_REQUEUE, keys, job, rewritten))
        return moved

    async def count(self, outcome: str, day: str) -> None:
        from redis.exceptions import RedisError

        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(self.keys.stat(outcome))
                pipe.incr(self.keys.stat(outcome, day))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from None

    async def stats(self, queues: Sequence[str]) -> JobStats:
        from redis.exceptions import RedisError

        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(self.keys.stat("processed"))
                pipe.get(self.keys.stat("failed"))
                pipe.zcard(self.keys.due(RETRY_KEY))
                for queue in queues:
                    pipe.llen(self.keys.queue(queue))
                processed, failed, retries, *lengths = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from None
        return JobStats(
            processed=int(processed or 0),
            failed=int(failed or 0),
            retries=int(retries),
            enqueued={queue: int(n) for queue, n in zip(queues, lengths, strict=True)},
        )

    async def close(self) -> None:
        # The pool was handed to Redis(), so its aclose() alone would leave it open.
        await self._redis.aclose(close_connection_pool=True)
