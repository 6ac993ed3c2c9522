"""transport/nats.py: a publish nats-py makes wait (its buffer full) is finished in order,
without a spurious failure (no server needed: a stand-in for nats-py's client)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

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
