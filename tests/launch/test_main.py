"""``python -m actors.launch`` (``actors.launch.__main__``) around a fake launcher: ``--var``
and the exit codes. The signal handlers, the wake-up fd and logging set-up of ``main`` are
replaced for the test (they are the process's own); test_launcher.py runs the real thing."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from actors.launch import __main__ as main_module
from actors.launch.__main__ import main, parse_vars
from actors.launch.launcher import LaunchError
from actors.startup import EXIT_ID_HELD


def test_vars_are_split_at_their_first_equals_sign() -> None:
    assert parse_vars(["nats=nats://u:p=w@h:4222", "empty="]) == {
        "nats": "nats://u:p=w@h:4222",
        "empty": "",
    }


@pytest.mark.parametrize("pair", ["nats", "=nats://h:4222"])
def test_a_var_without_a_name_or_an_equals_sign_is_refused(pair: str) -> None:
    with pytest.raises(SystemExit, match="--var expects name=value"):
        parse_vars([pair])


class FakeSignal:
    """``signal`` as ``main`` sees it: handlers recorded, not installed."""

    SIGINT, SIGTERM, Signals = signal.SIGINT, signal.SIGTERM, signal.Signals
    handlers: dict[int, Callable[[int, Any], None]] = {}

    @classmethod
    def signal(cls, signum: int, handler: Callable[[int, Any], None]) -> None:
        cls.handlers[signum] = handler

    @staticmethod
    def set_wakeup_fd(fd: int) -> int:
        return -1


class FakeLauncher:
    """``Launcher``: its start is followed by a SIGTERM, its stop gives ``stopped`` (or
    raises it)."""

    stopped: dict[str, int | None] | Exception = {}

    def __init__(self, config: Any, **options: Any) -> None:
        self.config = config

    def start(self) -> dict[str, int | None]:
        FakeSignal.handlers[signal.SIGTERM](signal.SIGTERM, None)
        return {"s": 1}

    def stop(self) -> dict[str, int | None]:
        if isinstance(FakeLauncher.stopped, Exception):
            raise FakeLauncher.stopped
        return FakeLauncher.stopped


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A launch file, and ``main`` with a fake launcher and no hold on the process."""
    pipes: list[int] = []

    def pipe() -> tuple[int, int]:
        read, write = os.pipe()
        pipes.extend((read, write))
        return read, write

    fake_os = SimpleNamespace(
        pipe=pipe, set_blocking=os.set_blocking, read=os.read, environ=os.environ
    )
    monkeypatch.setattr(main_module, "Launcher", FakeLauncher)
    monkeypatch.setattr(main_module, "configure_logging", lambda *args: None)
    monkeypatch.setattr(main_module, "signal", FakeSignal)
    monkeypatch.setattr(main_module, "os", fake_os)
    path = tmp_path / "deploy.toml"
    path.write_text('[[servers]]\nname = "s"\nmodule = "m"\n')
    yield path
    for fd in pipes:
        os.close(fd)


@pytest.mark.parametrize(
    ("stopped", "code"),
    [
        ({"s": 0, "t": 0}, 0),
        ({"s": 0, "t": -9}, 1),
        # Waiting for its id, held in discovery, at the stop: no crash (exit 1 before).
        ({"s": 0, "t": EXIT_ID_HELD}, 0),
        ({"s": EXIT_ID_HELD, "t": 3}, 1),
        (LaunchError("the supervisor did not answer 'stop' within 30.0s"), 1),
    ],
)
def test_the_exit_code_says_whether_every_server_stopped_cleanly(
    config: Path, stopped: dict[str, int | None] | Exception, code: int
) -> None:
    FakeLauncher.stopped = stopped
    assert main([str(config)]) == code


def test_a_config_that_does_not_load_exits_2(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(main_module, "configure_logging", lambda *args: None)
    assert main([str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in caplog.text
