"""Fixtures shared by the whole suite."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.services import RedisServer, serving


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
