"""Fixtures shared by the whole suite."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.services import RedisServer, serving


class GrpcPollerOfAClosedLoop(logging.Filter):
    """grpc's asyncio support keeps one poller per process, bound to the event loop that first
    used it: once a test's loop is closed, the poller may wake in a later test's loop and log
    ``RuntimeError('Event loop is closed')`` there, through asyncio's logger, as that test's
    ERROR (the etcd client speaks gRPC). A server runs one loop per process and never meets
    it; a suite runs hundreds, so the line is dropped here, and only it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Exception in callback PollerCompletionQueue"):
            return True
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed")


logging.getLogger("asyncio").addFilter(GrpcPollerOfAClosedLoop())


@pytest.fixture(params=["tcp", "ws"])
def websocket(request: pytest.FixtureRequest) -> bool:
    """Run the test once over TCP (False) and once over WebSocket (True)."""
    return bool(request.param == "ws")


@pytest.fixture(autouse=True)
def root_logging_restored() -> Iterator[None]:
    """A test that runs an app in process with ``log_format="json"`` turns every handler of
    the root logger to JSON, pytest's own capturing handler among them, which pytest keeps
    for the whole session: every later test's ``caplog.text`` was JSON. Each test gets the
    root logger's handlers, their formatters and its level back as they were."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    formatters = [handler.formatter for handler in handlers]
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for handler, formatter in zip(handlers, formatters, strict=True):
        handler.setFormatter(formatter)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A running ``redis-server`` (free loopback port, nothing on disk), stopped by PID."""
    yield from serving(RedisServer())
