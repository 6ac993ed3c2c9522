"""The keeper's bookkeeping (``actors.launch.keeper``) without Thespian: how an exit is told,
when a process counts as gone, restarts and their backoff, stopping.

The processes are tiny Python one-liners, not servers; :class:`KeptServer` reads
``time.monotonic`` from its module, which the tests replace with a clock they move, so a
backoff of seconds takes none. test_launcher.py runs the real thing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from thespian.actors import ActorExitRequest

from actors.launch import keeper
from actors.launch.config import KeeperSettings, ServerCommand
from actors.launch.keeper import (
    KeptServer,
    ServerKeeper,
    describe_exit,
    pid_alive,
    terminate_pid,
)
from actors.launch.messages import ServerExited, ServerSpawned, ServerStopped

EXITS_3 = (sys.executable, "-c", "raise SystemExit(3)")
ON_SIGTERM_EXITS_7 = (
    sys.executable,
    "-c",
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)",
)


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts itself: killed and reaped whatever happens."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def start(
    children: list[subprocess.Popen[bytes]], argv: tuple[str, ...]
) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(argv, stdout=subprocess.PIPE)
    children.append(child)
    return child


def wait_exited_unreaped(pid: int) -> None:
    """Until ``pid`` (a child) has exited, leaving it a zombie (not reaped)."""
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


@pytest.mark.parametrize(
    ("returncode", "told"),
    [
        (0, "exited with code 0"),
        (3, "exited with code 3"),
        (-9, "killed by SIGKILL"),
        (-40, "killed by signal 40"),  # a real-time signal: no name of its own
    ],
)
def test_an_exit_is_told_by_its_code_or_its_signal(returncode: int, told: str) -> None:
    assert describe_exit(returncode) == told


def test_a_process_that_exited_counts_as_gone_before_it_is_reaped(
    children: list[subprocess.Popen[bytes]],
) -> None:
    """A server left by a dead keeper is not our child: nobody reaps it, and a zombie must
    not hold up the start of its replacement."""
    child = start(children, EXITS_3)
    wait_exited_unreaped(child.pid)
    assert pid_alive(child.pid) is False
    assert child.wait() == 3
    assert pid_alive(child.pid) is False
    assert pid_alive(os.getpid()) is True


def test_terminate_pid_lets_the_process_exit_by_itself_before_its_timeout(
    children: list[subprocess.Popen[bytes]],
) -> None:
    child = start(children, ON_SIGTERM_EXITS_7)
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    terminate_pid(child.pid, 30.0)
    assert child.wait() == 7  # its own exit on SIGTERM, not a SIGKILL


class Clock:
    """``keeper.time`` for a test: ``monotonic`` is what the test says it is."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(
        keeper, "time", SimpleNamespace(monotonic=clock.monotonic, sleep=time.sleep)
    )
    return clock


def kept(argv: tuple[str, ...], **settings: object) -> KeptServer:
    return KeptServer(ServerCommand("s", argv, settings=KeeperSettings(**settings)))  # type: ignore[arg-type]


def exited(server: KeptServer) -> ServerExited | ServerSpawned | None:
    """What the keeper's next check of ``server`` finds once its process has exited."""
    assert server.process is not None
    server.process.wait()
    return server.check_running()


def started(report: ServerSpawned | ServerExited | None, restarts: int) -> int:
    """The pid of the process ``report`` says was started, as restart number ``restarts``."""
    assert isinstance(report, ServerSpawned) and report.pid is not None
    assert report == ServerSpawned("s", report.pid, restarts)
    return report.pid


def test_restarts_are_counted_and_each_crash_in_a_row_doubles_the_delay(clock: Clock) -> None:
    """A run of ``stable_after`` or more (exactly that, here) starts the delays afresh."""
    server = kept(EXITS_3, backoff_initial=1.0, backoff_max=100.0, stable_after=50.0)
    try:
        pid = started(server.spawn(), 0)
        clock.now += 0.5
        assert exited(server) == ServerExited("s", pid, 3, 1.0)
        clock.now += 0.75
        assert server.check_running() is None  # not due yet
        clock.now += 0.25
        pid = started(server.check_running(), 1)
        clock.now += 0.5
        assert exited(server) == ServerExited("s", pid, 3, 2.0)
        clock.now += 2.0
        pid = started(server.check_running(), 2)
        clock.now += 50.0  # a stable run
        assert exited(server) == ServerExited("s", pid, 3, 1.0)
    finally:
        if server.process is not None:
            server.process.kill()
            server.process.wait()


def test_a_server_that_already_exited_is_stopped_at_once_with_its_exit_code(clock: Clock) -> None:
    """Not signalled, nor waited for until the next poll: it is gone already."""
    server = kept(EXITS_3)
    server.spawn()
    assert server.process is not None
    server.process.wait()
    assert server.begin_stop(requester="launcher") == ServerStopped("s", 3)
    assert server.finished and not server.stopping


class Stubborn:
    """A running process that ignores SIGTERM: what the keeper does to it is recorded."""

    pid = 4242

    def __init__(self) -> None:
        self.returncode: int | None = None
        self.calls: list[object] = []

    def poll(self) -> int | None:
        return self.returncode

    def terminate(self) -> None:
        self.calls.append("terminate")

    def kill(self) -> None:
        self.calls.append("kill")
        self.returncode = -9

    def wait(self, timeout: float | None = None) -> int:
        self.calls.append(("wait", timeout))
        if self.returncode is None:
            assert timeout is not None
            raise subprocess.TimeoutExpired("stubborn", timeout)
        return self.returncode


def test_an_exit_request_waits_no_longer_than_each_servers_stop_timeout(clock: Clock) -> None:
    """The actor system shutting down: SIGTERM to all at once, and SIGKILL to each one still
    there once its stop_timeout since then is over, without waiting any more."""
    actor = ServerKeeper()
    servers = {"late": kept(EXITS_3, stop_timeout=5.0), "over": kept(EXITS_3, stop_timeout=0.0)}
    processes = {}
    for name, server in servers.items():
        server.process = processes[name] = Stubborn()  # type: ignore[assignment]
    actor.servers = servers
    actor.receiveMsg_ActorExitRequest(ActorExitRequest(), None)
    assert processes["late"].calls == ["terminate", ("wait", 5.0), "kill", ("wait", None)]
    assert processes["over"].calls == ["terminate", ("wait", 0.0), "kill", ("wait", None)]
