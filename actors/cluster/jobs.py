"""Reliable-RPC jobs as Go Pitaya writes them, and go-workers' retry rules.

A job is the JSON go-workers' ``EnqueueWithOptions`` writes for Pitaya's ``EnqueueRPC``::

    {"queue": "rpc", "class": "", "jid": "<24 hex digits>", "enqueued_at": 1733580000.25,
     "args": {"Route": "room.remote.grant", "Metadata": {...} | null,
              "Arg": <the argument's Go JSON> | null, "Reply": <the reply's> | null},
     "retry": true, "retry_max": 2,
     "retry_options": {"exp": 5, "min_delay": 10, "max_delay": 10, "max_rand": 0},
     "connection_options": {...}}

(``retry`` and ``retry_max`` are left out when false or 0, as Go's ``omitempty`` does.) A
failed job gets ``queue``, ``error_message``, ``retry_count`` and ``failed_at`` (first
failure) or ``retried_at``, and is due again after :func:`retry_delay` seconds, as long as
:func:`may_retry` says so; past that it is dropped (go-workers gives up silently; we log).
"""

from __future__ import annotations

import json
import math
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from actors.cluster.gojson import to_go_json
from actors.config import option_default
from transport.bounded import finite_float

__all__ = [
    "MAX_RETRY_DELAY",
    "RPC_QUEUE",
    "MalformedJob",
    "RetryOptions",
    "RpcJobArgs",
    "encode_rpc_job",
    "may_retry",
    "parse_rpc_job",
    "retried_job",
    "retry_delay",
]

RPC_QUEUE = "rpc"
"""Pitaya's queue of reliable RPCs (``pkg/worker``'s ``rpcQueue``); its class is ``""``."""
DEFAULT_MAX_RETRY = 25
"""go-workers' retry limit when a job says ``retry: true`` and no ``retry_max``."""
TIME_LAYOUT = "%Y-%m-%d %H:%M:%S UTC"
"""``failed_at`` / ``retried_at``: Go's ``"2006-01-02 15:04:05 MST"`` of a UTC time."""

# What Go writes for go-workers' ConnectionOptions (a struct with no json tags) when Pitaya
# leaves it empty: kept so our jobs are Go's, byte for byte in shape.
_CONNECTION_OPTIONS = {
    "Address": "",
    "Password": "",
    "Database": "",
    "ProcessID": "",
    "Namespace": "",
    "PoolSize": 0,
    "PoolInterval": 0,
    "DialOptions": None,
}


class MalformedJob(ValueError):
    """A job that can never run: not JSON, not an object, or no ``args.Route`` string."""


@dataclass(frozen=True, slots=True)
class RetryOptions:
    """Pitaya's ``EnqueueOpts`` (``pitaya.worker.retry.*``), its defaults included (those
    of the ``worker_retry_*`` options).

    ``enabled``: retry failed jobs; ``max``: go-workers' ``retry_max``; the delay before retry
    number *n* (from 0) is ``min(n ** exponential + min_delay + r * (n + 1), max_delay)``
    seconds with ``r`` random in ``[0, max_random)``.
    """

    enabled: bool = option_default("worker_retry_enabled")
    max: int = option_default("worker_retry_max")
    exponential: int = option_default("worker_retry_exponential")
    min_delay: int = option_default("worker_retry_min_delay")
    max_delay: int = option_default("worker_retry_max_delay")
    max_random: int = option_default("worker_retry_max_random")


@dataclass(frozen=True, slots=True)
class RpcJobArgs:
    """A parsed job: its route, metadata, argument and reply (as JSON values)."""

    route: str
    metadata: dict[str, Any]
    arg: Any
    reply: Any
    jid: str


def _dumps(value: Any) -> bytes:
    # ASCII with escapes: a lone surrogate (``"\\ud800"`` is valid JSON, read from a job)
    # cannot be written as UTF-8, but its escape can, and Go reads it (as U+FFFD).
    # NaN and infinities are not JSON: Go's json.Marshal refuses them, its decoder fails.
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def _go_value(value: Any) -> Any:
    if isinstance(value, type) and issubclass(value, Message):
        value = value()  # a reply class, as app.rpc takes it: Go writes its empty struct
    return to_go_json(value) if isinstance(value, Message) else value


def encode_rpc_job(
    route: str,
    arg: Any,
    *,
    metadata: dict[str, Any] | None,
    reply: Message | type[Message] | None,
    options: RetryOptions,
    now: float | None = None,
) -> tuple[str, bytes]:
    """(jid, the job's JSON) for a reliable RPC, as Pitaya's ``EnqueueRPC`` writes it.
    ``arg`` is a protobuf message (written as Go writes its struct) or any JSON value."""
    jid = secrets.token_hex(12)
    job: dict[str, Any] = {
        "queue": RPC_QUEUE,
        "class": "",
        "args": {
            "Route": route,
            "Metadata": metadata,
            "Arg": _go_value(arg),
            "Reply": _go_value(reply),
        },
        "jid": jid,
        "enqueued_at": time.time() if now is None else now,
    }
    if options.enabled:
        job["retry"] = True
    if options.max:
        job["retry_max"] = options.max
    job["retry_options"] = {
        "exp": options.exponential,
        "min_delay": options.min_delay,
        "max_delay": options.max_delay,
        "max_rand": options.max_random,
    }
    job["connection_options"] = dict(_CONNECTION_OPTIONS)
    return jid, _dumps(job)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def load_job(raw: bytes) -> dict[str, Any]:
    """The job object; :class:`MalformedJob` when it is not a JSON object."""
    try:
        # A number too large for a float (1e400) is read as an infinity, which the job
        # written back (a retry, a due job requeued) cannot hold, nor can Go read it.
        job = json.loads(raw, parse_constant=_not_json, parse_float=finite_float)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # nested too deep
        raise MalformedJob(f"not JSON ({exc})") from None
    if not isinstance(job, dict):
        raise MalformedJob(f"not a JSON object but {type(job).__name__}")
    return job


def parse_rpc_job(job: dict[str, Any]) -> RpcJobArgs:
    """The RPC a job asks for; :class:`MalformedJob` when it names no route."""
    args = job.get("args")
    if not isinstance(args, dict) or not isinstance(args.get("Route"), str):
        raise MalformedJob("no args.Route string")
    metadata = args.get("Metadata")
    return RpcJobArgs(
        route=args["Route"],
        metadata=metadata if isinstance(metadata, dict) else {},
        arg=args.get("Arg"),
        reply=args.get("Reply"),
        jid=str(job.get("jid", "")),
    )


def _int(value: Any) -> int | None:
    """go-simplejson's ``Int()``: a JSON integer (not a bool, not a fraction)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return None


def may_retry(job: dict[str, Any]) -> bool:
    """go-workers' ``retry``: ``retry`` true (or a number, Sidekiq's form: the limit) and
    ``retry_count`` (0 when absent) below ``retry_max`` (default 25). So with ``retry_max``
    2 a job runs 4 times: the first failure and the next one both record count 0."""
    retry = False
    limit = DEFAULT_MAX_RETRY
    flag = job.get("retry")
    if isinstance(flag, bool):
        retry = flag
    elif (number := _int(flag)) is not None:
        limit, retry = number, True
    if (maximum := _int(job.get("retry_max"))) is not None:
        limit = maximum
    count = _int(job.get("retry_count")) or 0
    return retry and count < limit


MAX_RETRY_DELAY = 365 * 24 * 3600
"""Seconds before a retry whose options give no finite delay (a huge ``exp`` and no
``max_delay``, a NaN): a year, where ``int()`` of an infinity raised."""


def retry_delay(count: int, options: Any, rand: random.Random | None = None) -> int:
    """Seconds before retry ``count``: go-workers' ``secondsToDelay`` with the job's
    ``retry_options`` (defaults for a missing one: exp 4, min_delay 15, no max_delay,
    max_rand 30)."""
    exp, min_delay, max_delay, max_rand = 4.0, 15.0, math.inf, 30.0
    if isinstance(options, dict):
        exp = _number(options.get("exp"), exp)
        min_delay = _number(options.get("min_delay"), min_delay)
        max_delay = _number(options.get("max_delay"), max_delay)
        max_rand = _number(options.get("max_rand"), max_rand)
    try:
        power = float(count) ** exp
    except OverflowError:  # Go's math.Pow gives +Inf, then capped by max_delay
        power = math.inf
    # int(max_rand) may be 0 (a max_rand below 1) or not exist (an infinity, a NaN): no jitter
    # then, where randrange raised and the failed job stuck in progress until a restart.
    limit = int(max_rand) if math.isfinite(max_rand) else 0
    jitter = (rand or random).randrange(limit) if limit > 0 else 0
    delay = min(power + min_delay + jitter * (count + 1), max_delay)
    if not math.isfinite(delay):  # no bound (or a NaN): the longest delay a retry may have
        return MAX_RETRY_DELAY
    return int(delay)


def _number(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def retried_job(
    job: dict[str, Any], queue: str, error: str, now: float | None = None
) -> tuple[int, bytes]:
    """(retry count, the job to put in the retry set): go-workers' ``incrementRetry`` plus
    ``queue`` (the namespaced queue name, as go-workers records it) and ``error_message``."""
    stamp = time.strftime(TIME_LAYOUT, time.gmtime(time.time() if now is None else now))
    retried = dict(job)
    retried["queue"] = queue
    retried["error_message"] = error
    previous = _int(job.get("retry_count"))
    if previous is None:
        retried["failed_at"] = stamp
        count = 0
    else:
        retried["retried_at"] = stamp
        count = previous + 1
    retried["retry_count"] = count
    return count, _dumps(retried)


def requeued_job(raw: bytes, prefix: str, now: float | None = None) -> tuple[str, bytes] | None:
    """A due job back to its queue (go-workers' scheduler): the queue named by its ``queue``
    field (the namespace prefix taken off) with ``enqueued_at`` now; None if it cannot be
    read (it goes to the dead set)."""
    try:
        job = load_job(raw)
    except MalformedJob:
        return None
    queue = job.get("queue")
    if not isinstance(queue, str) or not queue:
        return None
    job["enqueued_at"] = time.time() if now is None else now
    return queue.removeprefix(prefix), _dumps(job)
