"""Fixtures shared by the transport tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.services import NatsServer
from transport.nats import NatsPipe


@pytest.fixture
async def pipe(nats_server: NatsServer) -> AsyncIterator[NatsPipe]:
    """A connected NATS pipe to the module's ``nats_server`` (each module picks its scope:
    one server for all, or a fresh one per test when tests stop and restart it)."""
    pipe = NatsPipe(nats_server.url, name="test", connect_timeout=2)
    await pipe.connect()
    try:
        yield pipe
    finally:
        await pipe.close()
