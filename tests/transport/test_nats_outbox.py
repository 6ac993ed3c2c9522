"""transport/nats.py: a publish nats-py makes wait (its buffer full) is finished in order,
without a spurious failure, and publishes it refuses are told once per 10 s (no server
needed: a stand-in for nats-py's client)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import nats.errors
import pytest

from transport.nats import NatsPipe


class WaitingClient:
    """nats-py's shape: a publish takes the message at once (its pending buffer), then may
    wait for the flusher before it returns."""

    def __init__(self) -> None:
        self.taken: list[str] = []
        self.flushed = asyncio.get_running_loop().create_future()

    async def publish(self, subject: str, payload: bytes = b"", reply: str = "") -> None:
        self.taken.append(subject)
        if not self.flushed.done():
            await self.flushed

    @property
    def is_connected(self) -> bool:
        return True


async def test_a_publish_made_to_wait_finishes_in_order_without_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipe = NatsPipe("nats://127.0.0.1:1", name="t", connect_timeout=1)
    client = WaitingClient()
    pipe.nc = client  # type: ignore[assignment]
    caplog.set_level(logging.WARNING, logger="transport.nats")
    pipe._put(client, "a", b"1", "")  # type: ignore[arg-type]  # waits on the flusher
    pipe._put(client, "b", b"2", "")  # type: ignore[arg-type]  # queued behind it
    assert client.taken == ["a"]
    flusher: Any = pipe._flusher
    assert flusher is not None
    await asyncio.sleep(0)  # the flusher task runs, and waits on the same future
    assert client.taken == ["a"]
    client.flushed.set_result(None)
    await asyncio.wait_for(flusher, 5)
    assert client.taken == ["a", "b"]
    assert pipe._flusher is None
    assert not [r for r in caplog.records if "failed" in r.getMessage()]


class RefusingClient(WaitingClient):
    """nats-py's client once its pending buffer is full (the server reads nothing): the
    publish under way waits, and every later one is refused."""

    async def publish(self, subject: str, payload: bytes = b"", reply: str = "") -> None:
        if self.taken:
            raise nats.errors.OutboundBufferLimitError
        await super().publish(subject, payload, reply)


async def test_refused_publishes_are_told_once_per_10_s_with_the_count_between(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each refused publish logged a warning: a line per message for as long as the
    buffer stayed full, whichever way it was published (at once, queued, or now)."""
    pipe = NatsPipe("nats://127.0.0.1:1", name="t", connect_timeout=1)
    client = RefusingClient()
    pipe.nc = client  # type: ignore[assignment]
    caplog.set_level(logging.DEBUG, logger="transport.nats")
    pipe.publish("a", b"1")  # waits on the flusher
    for i in range(20):
        pipe.publish(f"queued.{i}", b"2")  # behind it, refused once it is done
    flusher = pipe._flusher
    assert flusher is not None
    client.flushed.set_result(None)
    await asyncio.wait_for(flusher, 5)
    for i in range(20):
        pipe.publish(f"now.{i}", b"3")  # refused at once
        await pipe.publish_now(f"now.{i}", b"3")
    refused = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(refused) == 60
    warnings = [r.getMessage() for r in refused if r.levelno == logging.WARNING]
    assert warnings == ["[t] publish to queued.0 failed: nats: outbound buffer limit exceeded"]
    caplog.clear()
    pipe._unsent._last = -100.0  # 10 s later: told again, with how many were not
    pipe.publish("later", b"4")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.WARNING,
            "[t] publish to later failed: nats: outbound buffer limit exceeded "
            "(59 more since the last such line, not logged)",
        )
    ]
