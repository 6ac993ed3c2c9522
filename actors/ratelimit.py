"""Per-connection rate limiting: a token bucket in each session actor.

Pitaya wraps its acceptor (``acceptorwrapper.RateLimitingWrapper``) so that every connection
may read at most ``limit`` packets per ``interval``; the rest are dropped and counted. We keep
the bucket in the session actor instead of in a wrapper around the acceptor: the session actor
already decodes the packets and reads the clock once per chunk of bytes (``last_seen``), so the
check costs a few float operations per message and no extra object on the byte path, and it
can tell a request (which may get an error answer) from a notify.

What counts: data messages only (requests and notifies). Heartbeats and the handshake never
do: a client that heartbeats at the interval the server announced must never be limited, and
they are answered by no handler.

Over the limit, ``rate_limit_action`` says what happens:

* ``"drop"`` (default, Pitaya's behaviour): the message is dropped; a request is never answered
  (the client's own request timeout fires);
* ``"error"``: a request is answered with ``PIT-429`` "rate limit exceeded" (the code of "too
  many requests" that ``max_pending_requests`` uses too); a notify is dropped.

Either way ``stats.rate_limited`` (the app's ``AppStats``) counts it and, with a metrics
reporter, the counter
``exceeded_rate_limiting`` (``pitaya_acceptor_exceeded_rate_limiting`` in Prometheus).

Example::

    app = App(rate_limit_enabled=True, rate_limit_packets=50, rate_limit_interval=1.0,
              rate_limit_action="error")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors.config import ConfigError
from actors.errors import PitayaError
from actors.metrics.names import EXCEEDED_RATE_LIMITING
from transport.message import Message, MessageType

if TYPE_CHECKING:
    from actors.config import Config
    from actors.metrics.reporter import Metrics
    from actors.stats import AppStats

ACTIONS = ("drop", "error")
RATE_LIMITED = "PIT-429"
"""Error code of a request over its connection's rate limit (with action ``error``)."""
NO_TAGS: dict[str, str] = {}


class TokenBucket:
    """``capacity`` tokens, refilled at ``capacity / interval`` per second; one per message.

    A burst of ``capacity`` messages passes at once, then one per ``interval / capacity``
    seconds. The caller passes the time (any monotonic clock in seconds), so the bucket is
    pure and tests need no sleeping::

        bucket = TokenBucket(2, 1.0, now=0.0)
        assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
        assert bucket.take(0.5)  # one token refilled after half the interval
    """

    __slots__ = ("_capacity", "_last", "_rate", "_tokens")

    def __init__(self, capacity: int, interval: float, *, now: float) -> None:
        if capacity < 1 or interval <= 0:
            raise ValueError("a token bucket needs capacity >= 1 and interval > 0")
        self._capacity = float(capacity)
        self._rate = capacity / interval
        self._tokens = float(capacity)
        self._last = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False means over the limit."""
        tokens = self._tokens + (now - self._last) * self._rate
        self._last = now
        if tokens > self._capacity:
            tokens = self._capacity
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        return False


def check_config(config: Config) -> None:
    """Fail the app's start with a clear message on a bad ``rate_limit_*`` option."""
    if config.rate_limit_action not in ACTIONS:
        raise ConfigError(
            f"rate_limit_action must be one of {ACTIONS}, not {config.rate_limit_action!r}"
        )
    if config.rate_limit_enabled and (
        config.rate_limit_packets < 1 or config.rate_limit_interval <= 0
    ):
        raise ConfigError("rate limiting needs rate_limit_packets >= 1 and rate_limit_interval > 0")


def new_bucket(config: Config) -> TokenBucket | None:
    """The bucket of a new connection, or None when rate limiting is off."""
    if not config.rate_limit_enabled:
        return None
    return TokenBucket(config.rate_limit_packets, config.rate_limit_interval, now=0.0)


def exceeded(
    config: Config, stats: AppStats, metrics: Metrics, message: Message
) -> PitayaError | None:
    """Count ``message``, which is over its connection's limit; the error to answer, if any."""
    stats.rate_limited += 1
    if metrics.enabled:
        metrics.report_count(EXCEEDED_RATE_LIMITING, NO_TAGS)
    if config.rate_limit_action == "error" and message.type is MessageType.REQUEST:
        return PitayaError(RATE_LIMITED, "rate limit exceeded")
    return None
