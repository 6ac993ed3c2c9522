"""Handlers that record when each message of each session runs, for the ordering tests.

``Steps`` and ``Other`` (two services, so a client interleaves them) each serve ``quick``
(synchronous) and ``slow`` (``async``: yields to the loop ``spins`` times and sleeps
``delay`` seconds, so other sessions' messages can run in between). Every run appends
``(session id, n, "start"|"end")`` to one shared journal; :func:`assert_in_order_per_session`
checks it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from actors.handler import Handler, handler
from actors.session import Session
from transport.client import Client

Journal = list[tuple[int, int, str]]


@dataclass(frozen=True, slots=True)
class Step:
    n: int
    spins: int = 0
    delay: float = 0.0


class Steps(Handler):
    service = "steps"

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    @handler
    def quick(self, session: Session, body: Step) -> dict[str, int]:
        self.journal.append((session.id, body.n, "start"))
        self.journal.append((session.id, body.n, "end"))
        return {"n": body.n}

    @handler
    async def slow(self, session: Session, body: Step) -> dict[str, int]:
        self.journal.append((session.id, body.n, "start"))
        for _ in range(body.spins):
            await asyncio.sleep(0)
        if body.delay:
            await asyncio.sleep(body.delay)
        self.journal.append((session.id, body.n, "end"))
        return {"n": body.n}


class Other(Steps):
    service = "other"


@dataclass(frozen=True, slots=True)
class Send:
    """One message of a generated client sequence."""

    route: str
    """``<service>.<quick|slow>``, possibly prefixed with a server type."""
    notify: bool
    spins: int
    delay: float


def body(n: int, send: Send) -> dict[str, Any]:
    return {"n": n, "spins": send.spins, "delay": send.delay}


async def send_all(client: Client, sends: list[Send], first_n: int, last_route: str) -> list[int]:
    """Send every message at once (pipelined), numbered from ``first_n``, then a last request
    to ``last_route`` (a ``quick`` one), which runs after them all; the numbers, in order."""
    calls = []
    for i, send in enumerate(sends):
        call = client.notify if send.notify else client.request
        calls.append(asyncio.ensure_future(call(send.route, body(first_n + i, send))))
    await asyncio.gather(*calls)
    last = first_n + len(sends)
    assert await client.request(last_route, {"n": last}) == {"n": last}
    return [*range(first_n, last + 1)]


def assert_in_order_per_session(
    journal: Journal, sent: dict[int, list[int]], sessions: Iterable[int]
) -> None:
    """Each session's messages ran one after another, in the order ``sent`` lists them.

    ``sent`` maps a session id to the ``n`` of its messages in sending order. The journal of
    one session must read start(n0) end(n0) start(n1) end(n1) ...: a later message starts only
    after the earlier one ended.
    """
    for session_id in sessions:
        events = [(n, what) for sid, n, what in journal if sid == session_id]
        expected = [(n, what) for n in sent[session_id] for what in ("start", "end")]
        assert events == expected, f"session {session_id}: {events} != {expected}"
