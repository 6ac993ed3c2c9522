"""The replies to one NATS connection's requests, matched without a future or a timer each.

nats-py's ``request`` makes, per request, a random token (a ``getrandom`` system call), a
future with a done callback, an ``asyncio.wait_for`` (a timer and a second future) and a
task to await them. Here a connection has one wildcard subscription on ``<inbox>.*``; a
request's reply subject is ``<inbox>.<counter>``, and its answer function waits in a dict
under that token. Timeouts cost no timer per request: the requests of one timeout value
expire in the order they were sent, so one timer per timeout value, armed for the oldest,
serves them all.

Sans-I/O: the owner (:class:`transport.nats.NatsPipe`) publishes the request with the
reply subject :meth:`PendingReplies.add` returns and hands every message of the
subscription to :meth:`PendingReplies.resolve`::

    replies = PendingReplies("_INBOX.abc.", loop)
    reply_subject = replies.add(lambda data, error: print(data, error), 2.0, about="echo")
    replies.resolve(reply_subject, b"pong")  # prints b'pong' None; a second answer is dropped
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

OnAnswer = Callable[[bytes | None, Exception | None], None]
"""Takes a request's outcome: its answer's bytes, or the error (exactly one is None)."""

_EARLY = 1e-6
"""A timer may fire up to the loop's clock resolution early (asyncio: about 1 ns): a
deadline this close counts. Never more: a request must not time out before its timeout (a
caller measures it, and PIT-408 promises it was waited for)."""


class PendingReplies:
    """Requests waiting for their answer on ``prefix`` + token (``prefix`` ends with a dot).

    ``on_timeout(about, timeout)`` makes the error a request that expired gets (``about``:
    what :meth:`add` was told, say the request's subject).
    """

    def __init__(
        self,
        prefix: str,
        loop: asyncio.AbstractEventLoop,
        on_timeout: Callable[[str, float], Exception] = lambda about, timeout: TimeoutError(
            f"no answer on {about} within {timeout}s"
        ),
    ) -> None:
        self.prefix = prefix
        self.loop = loop
        self.on_timeout = on_timeout
        self._next = 0
        self._waiting: dict[str, tuple[OnAnswer, dict[str, float], str]] = {}
        self._deadlines: dict[float, dict[str, float]] = {}
        """Per timeout value: token -> deadline, oldest first (the dict keeps that order)."""
        self._timers: dict[float, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def subscription(self) -> str:
        """The wildcard subject that receives every answer."""
        return self.prefix + "*"

    def add(self, on_answer: OnAnswer, timeout: float, about: str = "") -> str:
        """Wait for an answer within ``timeout`` seconds; returns the reply subject to send."""
        self._next += 1
        token = f"{self._next:x}"
        deadlines = self._deadlines.get(timeout)
        if deadlines is None:
            deadlines = self._deadlines[timeout] = {}
        deadline = self.loop.time() + timeout
        deadlines[token] = deadline
        self._waiting[token] = (on_answer, deadlines, about)
        if timeout not in self._timers:
            self._timers[timeout] = self.loop.call_at(deadline, self._expire, timeout)
        return self.prefix + token

    def resolve(
        self, subject: str, data: bytes | None, error: Callable[[str], Exception] | None = None
    ) -> bool:
        """Hand the answer that arrived on ``subject`` to its request, or the error
        ``error(about)`` makes; False when nobody waits for it (answered already, timed out,
        or not ours)."""
        token = subject[len(self.prefix) :]
        entry = self._waiting.pop(token, None)
        if entry is None:
            return False
        on_answer, deadlines, about = entry
        del deadlines[token]
        if error is None:
            _call(on_answer, data, None)
        else:
            _call(on_answer, None, error(about))
        return True

    def cancel(self, subject: str) -> None:
        """Forget the request of ``subject`` without answering it (it was never sent)."""
        token = subject[len(self.prefix) :]
        entry = self._waiting.pop(token, None)
        if entry is not None:
            entry[1].pop(token, None)

    def fail_all(self, error: Exception) -> None:
        """Answer every waiting request with ``error`` (the connection is closed)."""
        waiting = list(self._waiting.values())
        self._waiting.clear()
        self._deadlines.clear()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for on_answer, _, _ in waiting:
            _call(on_answer, None, error)

    def _expire(self, timeout: float) -> None:
        deadlines = self._deadlines[timeout]  # fail_all cancels the timers it forgets
        now = self.loop.time() + _EARLY
        expired = []
        for token, deadline in deadlines.items():
            if deadline > now:
                break
            expired.append(token)
        for token in expired:
            del deadlines[token]
        for token in expired:
            entry = self._waiting.pop(token, None)
            if entry is not None:
                _call(entry[0], None, self.on_timeout(entry[2], timeout))
        if self._deadlines.get(timeout) is not deadlines:
            return  # an answer function ran fail_all: a request it added since has its timer
        if deadlines:  # answers added while the expired ones were told are in it too
            oldest = next(iter(deadlines.values()))
            self._timers[timeout] = self.loop.call_at(oldest, self._expire, timeout)
        else:
            del self._timers[timeout]
            del self._deadlines[timeout]


def _call(on_answer: OnAnswer, data: bytes | None, error: Exception | None) -> None:
    try:
        on_answer(data, error)
    except Exception:
        log.exception("a NATS request's answer function failed")
