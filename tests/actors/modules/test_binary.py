"""The binary module with real child processes: output to logs, stop, crash report."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Iterator

import pytest

from actors.app import App
from actors.modules import ModuleStartError
from actors.modules.binary import BinaryModule

CHILD = [sys.executable, "-m", "tests.actors.modules.child"]


class LogWaiter(logging.Handler):
    """Collects records of one logger; ``wait`` returns the first one matching, as it comes."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._changed.set()

    def find(self, level: int, text: str) -> logging.LogRecord | None:
        return next(
            (r for r in self.records if r.levelno == level and text in r.getMessage()), None
        )

    async def wait(self, level: int, text: str, timeout: float = 10) -> logging.LogRecord:
        async def until() -> logging.LogRecord:
            while (record := self.find(level, text)) is None:
                self._changed.clear()
                await self._changed.wait()
            return record

        return await asyncio.wait_for(until(), timeout)


@pytest.fixture
def logs() -> Iterator[LogWaiter]:
    waiter = LogWaiter()
    logger = logging.getLogger("actors.modules.binary")
    logger.addHandler(waiter)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield waiter
    finally:
        logger.removeHandler(waiter)
        logger.setLevel(old_level)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def app_with(make: Callable[[App], BinaryModule]) -> tuple[App, BinaryModule]:
    app = App(server_type="game", server_id="game-1")
    module = make(app)
    app.register_module(module, "child")
    return app, module


async def test_output_goes_to_logs_and_shutdown_terminates(logs: LogWaiter) -> None:
    app, module = app_with(lambda app: BinaryModule(app, [*CHILD, "talk"], name="child"))
    async with app:
        pid = module.pid
        assert pid is not None
        out = await logs.wait(logging.INFO, "hello from stdout")
        assert out.getMessage() == "[game-1] child: hello from stdout"
        await logs.wait(logging.ERROR, "[game-1] child: trouble on stderr")
    assert module.returncode == 0  # SIGTERM, and it exited by itself
    assert logs.find(logging.INFO, "child: goodbye") is not None  # output up to the end
    assert gone(pid)
    assert logs.find(logging.ERROR, "exited on its own") is None


async def test_a_child_ignoring_sigterm_is_killed_after_the_grace(logs: LogWaiter) -> None:
    app, module = app_with(lambda app: BinaryModule(app, [*CHILD, "stubborn"], grace=0.3))
    async with app:
        await logs.wait(logging.INFO, "hello from stdout")  # its SIGTERM handler is set
    assert module.returncode == -9
    assert logs.find(logging.WARNING, "did not stop within 0.3s; killing it") is not None


async def test_a_child_that_dies_is_reported_and_can_stop_the_server(logs: LogWaiter) -> None:
    app, module = app_with(
        lambda app: BinaryModule(app, [*CHILD, "die"], name="child", stop_server_on_exit=True)
    )
    # serve_forever returns once the server stopped: the dead child asked for it.
    await asyncio.wait_for(app.serve_forever(), 15)
    assert module.returncode == 7
    assert module.exited.is_set()
    record = logs.find(logging.ERROR, "exited on its own with code 7; stopping the server")
    assert record is not None and "[game-1] binary child (pid" in record.getMessage()


async def test_a_binary_that_cannot_start_stops_the_server_start() -> None:
    app, _ = app_with(lambda app: BinaryModule(app, ["/nonexistent/sidecar"]))
    with pytest.raises(ModuleStartError, match="module 'child' failed in init"):
        await app.start()
