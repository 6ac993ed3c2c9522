"""Nothing outlives the launcher (``actors.launch.orphans``): children listed from ``/proc``,
the admin's short-lived starter reaped, a process signalled when its parent dies, and the
process that shuts a dead launcher's actor system down.

Short-lived ``sleep``/``python`` processes stand in for the Thespian processes; the Thespian
admin itself is a recorded fake here (test_launcher.py runs the real one).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from actors.launch import orphans
from actors.launch.orphans import child_pids, die_with_parent, reap_new_children, shut_down

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux: /proc")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; each killed and reaped at the end if still there."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        with contextlib.suppress(ChildProcessError):  # reaped by the code under test
            process.wait(5)


def start(processes: list[subprocess.Popen[bytes]], *argv: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    processes.append(process)
    return process


def exited_unreaped(pid: int) -> None:
    """Block until ``pid`` exits, leaving it a zombie (not reaped)."""
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


# -- child_pids --------------------------------------------------------------------------------


def test_child_pids_lists_running_and_exited_children_only(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    running = start(processes, "sleep", "30")
    exited = start(processes, "true")
    exited_unreaped(exited.pid)
    pids = child_pids()
    assert {running.pid, exited.pid} <= pids  # a zombie is still a child
    assert os.getpid() not in pids and os.getppid() not in pids
    assert pids <= {p.pid for p in psutil.Process().children()}
    exited.wait()
    assert exited.pid not in child_pids()


def test_a_command_name_with_a_parenthesis_is_read_right(
    processes: list[subprocess.Popen[bytes]], tmp_path: Any
) -> None:
    """``/proc/<pid>/stat`` puts the command name in parentheses, and the name may hold
    one: the parent's pid is read after the last ``)``."""
    odd = tmp_path / "a) 1 2"
    os.symlink(shutil.which("sleep") or "/bin/sleep", odd)
    child = start(processes, str(odd), "30")
    assert child.pid in child_pids()


def test_without_proc_there_are_no_children(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_proc(path: str) -> Any:
        raise FileNotFoundError(path)

    monkeypatch.setattr(orphans.os, "scandir", no_proc)
    assert child_pids() == set()


def test_a_process_gone_while_listing_is_skipped(
    processes: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    child = start(processes, "sleep", "30")
    real_open = open

    def racy_open(path: str, *args: Any, **kwargs: Any) -> Any:
        if path.startswith("/proc/") and not path.startswith(f"/proc/{child.pid}/"):
            raise ProcessLookupError(path)  # it exited between the listing and the read
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(orphans, "open", racy_open, raising=False)
    assert child_pids() == {child.pid}


def test_kill_leftovers_kills_the_same_processes_only(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """A PID is checked against its start time: one reused by a new process is spared."""
    target = start(processes, "sleep", "30")
    bystander = start(processes, "sleep", "30")
    started = {pid: start for pid, _, start, _ in orphans._processes()}
    victims = [
        orphans.ProcessId(target.pid, started[target.pid]),
        orphans.ProcessId(bystander.pid, started[bystander.pid] + 1),
    ]
    assert orphans.kill_leftovers(victims) == [target.pid]
    assert target.wait(5) == -9
    assert bystander.poll() is None


# -- reap_new_children -------------------------------------------------------------------------


def test_reap_new_children_reaps_the_ones_that_exit_and_leaves_the_rest(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    old = start(processes, "true")  # there before: not ours to reap
    exited_unreaped(old.pid)
    before = child_pids()
    starter = start(processes, "true")  # the admin's starter: exits at once
    runner = start(processes, "sleep", "30")  # a child that keeps running
    began = time.monotonic()
    reaped = reap_new_children(before, timeout=0.3)
    assert reaped == [starter.pid]
    assert 0.25 <= time.monotonic() - began < 1.0  # waited for the runner until the timeout
    with pytest.raises(ChildProcessError):
        os.waitpid(starter.pid, os.WNOHANG)  # gone: reaped
    assert runner.poll() is None
    assert old.pid in child_pids()  # left alone


def test_reap_new_children_returns_as_soon_as_all_are_reaped(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    before = child_pids()
    starter = start(processes, "true")
    exited_unreaped(starter.pid)
    began = time.monotonic()
    assert reap_new_children(before, timeout=10) == [starter.pid]
    assert time.monotonic() - began < 2


def test_a_child_reaped_elsewhere_counts_as_reaped(
    processes: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = child_pids()
    starter = start(processes, "sleep", "30")

    def reaped_already(pid: int, options: int) -> tuple[int, int]:
        raise ChildProcessError(pid)

    monkeypatch.setattr(orphans.os, "waitpid", reaped_already)
    began = time.monotonic()
    assert reap_new_children(before, timeout=10) == [starter.pid]
    assert time.monotonic() - began < 2


def test_reap_new_children_with_nothing_new_returns_at_once() -> None:
    began = time.monotonic()
    assert reap_new_children(child_pids(), timeout=10) == []
    assert time.monotonic() - began < 1


# -- die_with_parent ---------------------------------------------------------------------------

_GRANDCHILD = (
    "import signal, sys, time\n"
    "from actors.launch.orphans import die_with_parent\n"
    "print(die_with_parent(signal.SIGTERM), flush=True)\n"
    "time.sleep(30)\n"
)
_PARENT = (
    "import subprocess, sys\n"
    f"child = subprocess.Popen([sys.executable, '-c', {_GRANDCHILD!r}], stdout=sys.stdout)\n"
    "print(child.pid, flush=True)\n"
    "child.wait()\n"
)


def test_a_process_dies_with_its_parent(processes: list[subprocess.Popen[bytes]]) -> None:
    parent = start(processes, sys.executable, "-c", _PARENT)
    assert parent.stdout is not None
    grandchild_pid = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == b"True"  # prctl took effect
    grandchild = psutil.Process(grandchild_pid)
    try:
        parent.kill()  # the parent dies without a word: the kernel sends SIGTERM
        parent.wait()
        grandchild.wait(10)
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            grandchild.kill()  # only if the test failed


def test_die_with_parent_elsewhere_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(orphans.sys, "platform", "darwin")
    assert die_with_parent() is False


# -- the dead launcher's actor system -----------------------------------------------------------


def test_shut_down_later_starts_a_detached_process_for_the_admin_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[tuple[list[str], dict[str, Any]]] = []

    def popen(argv: list[str], **options: Any) -> str:
        started.append((argv, options))
        return "process"

    monkeypatch.setattr(orphans.subprocess, "Popen", popen)
    assert orphans.shut_down_later(1900) == "process"
    ((argv, options),) = started
    assert argv == [sys.executable, "-m", "actors.launch.orphans", "1900"]
    assert options["start_new_session"] is True  # not in the dying launcher's session
    assert (options["stdin"], options["stdout"], options["stderr"]) == (subprocess.DEVNULL,) * 3
    # It imports actors as this process does, wherever it runs from.
    path = options["env"]["PYTHONPATH"].split(os.pathsep)
    assert [p for p in sys.path if p] == path
    assert options["env"]["PATH"] == os.environ["PATH"]


def test_shut_down_asks_the_admin_on_that_port_to_shut_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[Any] = []

    class FakeSystem:
        def __init__(self, base: str, capabilities: dict[str, Any], **options: Any) -> None:
            calls.append((base, capabilities, options))

        def shutdown(self) -> None:
            calls.append("shutdown")

    import thespian.actors

    monkeypatch.setattr(thespian.actors, "ActorSystem", FakeSystem)
    shut_down(1900)
    assert calls == [
        ("multiprocTCPBase", {"Admin Port": 1900}, {"transientUnique": True}),
        "shutdown",
    ]


def test_the_module_runs_shut_down_with_its_argument() -> None:
    """``python -m actors.launch.orphans <port>`` is what shut_down_later starts."""
    script = (
        "import runpy, sys\n"
        "import thespian.actors\n"
        "class FakeSystem:\n"
        "    def __init__(self, base, capabilities, **options):\n"
        "        print(base, capabilities['Admin Port'], options, flush=True)\n"
        "    def shutdown(self):\n"
        "        print('shutdown', flush=True)\n"
        "thespian.actors.ActorSystem = FakeSystem\n"
        "sys.argv = ['orphans', '1901']\n"
        "runpy.run_module('actors.launch.orphans', run_name='__main__', alter_sys=True)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == [
        "multiprocTCPBase 1901 {'transientUnique': True}",
        "shutdown",
    ]


class FakeLibc:
    def __init__(self, answer: int = 0) -> None:
        self.answer = answer
        self.calls: list[tuple[int, ...]] = []

    def prctl(self, *args: int) -> int:
        self.calls.append(args)
        return self.answer


def test_die_with_parent_asks_linux_for_sigterm_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = FakeLibc()
    monkeypatch.setattr(orphans.ctypes, "CDLL", lambda *a, **k: libc)
    assert die_with_parent() is True
    assert die_with_parent(signal.SIGUSR1) is True
    assert libc.calls == [(1, signal.SIGTERM, 0, 0, 0), (1, signal.SIGUSR1, 0, 0, 0)]


def test_die_with_parent_says_so_when_prctl_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(orphans.ctypes, "CDLL", lambda *a, **k: FakeLibc(answer=-1))
    assert die_with_parent() is False

    def no_libc(*args: Any, **kwargs: Any) -> Any:
        raise OSError("no libc")

    monkeypatch.setattr(orphans.ctypes, "CDLL", no_libc)
    assert die_with_parent() is False


def test_a_parent_gone_before_prctl_took_effect_signals_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parents = iter([100, 1])  # reparented to init between the two reads
    killed: list[tuple[int, int]] = []
    monkeypatch.setattr(orphans.ctypes, "CDLL", lambda *a, **k: FakeLibc())
    monkeypatch.setattr(orphans.os, "getppid", lambda: next(parents))
    monkeypatch.setattr(orphans.os, "kill", lambda pid, signum: killed.append((pid, signum)))
    assert die_with_parent(signal.SIGUSR2) is True
    assert killed == [(os.getpid(), signal.SIGUSR2)]


def test_a_parent_still_there_is_not_signalled(monkeypatch: pytest.MonkeyPatch) -> None:
    killed: list[tuple[int, int]] = []
    monkeypatch.setattr(orphans.ctypes, "CDLL", lambda *a, **k: FakeLibc())
    monkeypatch.setattr(orphans.os, "kill", lambda pid, signum: killed.append((pid, signum)))
    assert die_with_parent() is True
    assert killed == []


# -- a stalled supervision: the launcher stops the servers itself --------------------------------


def identity(process: subprocess.Popen[bytes]) -> orphans.ProcessId:
    started = {pid: start for pid, _, start, _ in orphans._processes()}
    return orphans.ProcessId(process.pid, started[process.pid])


def test_a_zombie_is_not_running(processes: list[subprocess.Popen[bytes]]) -> None:
    child = start(processes, "true")
    process = identity(child)
    exited_unreaped(child.pid)
    assert not process.running()


def test_stop_processes_terminates_then_kills_what_ignores_sigterm(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    polite = start(processes, "sleep", "30")
    stubborn = start(processes, sys.executable, "-c", _STUBBORN)
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
    began = time.monotonic()
    killed = orphans.stop_processes([identity(polite), identity(stubborn)], timeout=0.5)
    assert killed == [stubborn.pid]
    assert 0.4 <= time.monotonic() - began < 3
    assert polite.wait(5) == -signal.SIGTERM
    assert stubborn.wait(5) == -signal.SIGKILL


_STUBBORN = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(30)\n"
)


def test_server_processes_are_the_children_of_actors_that_are_no_actors(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """Here this test process stands for a keeper: its ``sleep`` child is a server."""
    server = start(processes, "sleep", "30")
    me = os.getpid()
    keeper = orphans.ProcessId(me, orphans._start_time(me) or 0)
    assert identity(server)[:2] in [p[:2] for p in orphans.server_processes([keeper])]
    assert orphans.server_processes([keeper._replace(start=keeper.start + 1)]) == []
