"""Nothing outlives the launcher: parent-death signals, reaping, and the admin's shutdown.

The process tree of a deployment (``ps --forest``)::

    launcher (python -m actors.launch)
    Thespian admin (its own session, parent 1)
      +- Thespian logger
      +- Supervisor actor
           +- ServerKeeper actor (one for the host's servers)
                +- server (its own session), one per server

Three holes, three fixes:

* Thespian starts its admin through a short-lived child that forks the admin and exits, and
  nobody waits for that child: the launcher carried a defunct process. :func:`reap_new_children`
  waits for it once the actor system is up.
* A keeper or a server whose parent dies would run on unsupervised.
  :func:`die_with_parent` asks Linux to signal them when their parent dies
  (``PR_SET_PDEATHSIG``): SIGTERM, which a Thespian actor turns into its exit request (the
  keeper then stops its server: SIGTERM, SIGKILL after ``stop_timeout``) and a server into its
  graceful stop. Elsewhere it does nothing.
* The admin belongs to no parent. When the launcher dies without stopping (SIGKILL), the
  supervisor (which watches its pid) stops every server, then runs
  ``python -m actors.launch.orphans <admin port>`` (:func:`shut_down_later`), a short-lived
  process that shuts the actor system down as an operator would: the admin, its logger, the
  supervisor and the keepers exit.
* The other way round, the supervision can die under a running launcher (the supervisor or
  the admin killed): the servers go with it (their parent-death signals), and the launcher
  finds out by asking the supervisor for its status every few seconds. It then shuts down
  what is left of the actor system, kills what will not go (:func:`thespian_processes`,
  recorded at the start, and :func:`kill_leftovers`: the logger of a dead admin ignores
  SIGTERM) and exits 1, for its own supervisor (systemd) to start the deployment again.
* The supervision can also stall under a running launcher (its supervisor SIGSTOP'd, the host
  paused): it answers nothing, and a stop would wait for it for ever. Past the stop's deadline
  the launcher takes over (:meth:`~actors.launch.launcher.Launcher.stop`): it freezes the
  actor processes (SIGSTOP, so no keeper restarts a server meanwhile), stops the servers
  itself (:func:`server_processes`, :func:`stop_processes`: SIGTERM, SIGKILL after their
  ``stop_timeout``), then kills the actor processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import NamedTuple

__all__ = [
    "child_pids",
    "die_with_parent",
    "freeze",
    "kill_leftovers",
    "reap_new_children",
    "server_processes",
    "shut_down_later",
    "stop_processes",
    "thespian_processes",
]

PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGTERM) -> bool:
    """Have the kernel send ``signum`` to this process when its parent dies (Linux; elsewhere
    False). If the parent is already gone (reparented), the signal is sent now."""
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # it died before the prctl took effect: act on it now
        os.kill(os.getpid(), signum)
    return True


def child_pids() -> set[int]:
    """PIDs of this process's children, exited ones included (from ``/proc``; empty elsewhere)."""
    me = os.getpid()
    return {pid for pid, parent, _, _ in _processes() if parent == me}


class ProcessId(NamedTuple):
    """A process as ``/proc`` tells it apart from a later one with the same PID."""

    pid: int
    start: int
    """Start time, in clock ticks since boot."""
    name: str = ""
    """What it calls itself (a Thespian actor: ``Supervisor``, ``logger``...)."""

    def running(self) -> bool:
        """Still there and not exited: a zombie (exited, not reaped yet) is gone."""
        state, start = _state(self.pid)
        return start == self.start and state not in ("Z", "X")


def thespian_processes(admin_port: int) -> list[ProcessId]:
    """The Thespian admin on ``admin_port`` and the actor processes under it (logger,
    supervisor, keepers; not the servers), from ``/proc`` (empty elsewhere)."""
    table = list(_processes())
    admin = re.compile(rf"ActorAddr-\(T\|[^)]*:{admin_port}\)")
    found = [
        _identity(pid, start, cmdline) for pid, _, start, cmdline in table if admin.search(cmdline)
    ]
    parents = {process.pid for process in found}
    while True:
        more = [
            _identity(pid, start, cmdline)
            for pid, parent, start, cmdline in table
            if parent in parents and pid not in parents and "ActorAddr-(" in cmdline
        ]
        if not more:
            return found
        found += more
        parents.update(process.pid for process in more)


def server_processes(actors: list[ProcessId]) -> list[ProcessId]:
    """The children of ``actors`` (the deployment's Thespian processes) that are no actors:
    the servers its keepers started, as they are now (restarts included)."""
    parents = {process.pid for process in actors if process.running()}
    return [
        _identity(pid, start, cmdline)
        for pid, parent, start, cmdline in _processes()
        if parent in parents and "ActorAddr-(" not in cmdline
    ]


def _identity(pid: int, start: int, cmdline: str) -> ProcessId:
    return ProcessId(pid, start, cmdline.split(" ", 1)[0])


def kill_leftovers(processes: list[ProcessId]) -> list[int]:
    """SIGKILL those of ``processes`` still running (the same process: same start time);
    returns their PIDs."""
    return _signal_each(processes, signal.SIGKILL)


def freeze(processes: list[ProcessId]) -> None:
    """SIGSTOP those of ``processes`` still running: a frozen keeper restarts no server that
    the launcher is stopping itself. SIGKILL still ends a stopped process."""
    _signal_each(processes, signal.SIGSTOP)


def _signal_each(processes: list[ProcessId], sig: signal.Signals) -> list[int]:
    """Send ``sig`` to those of ``processes`` still there (same pid, same start time: not a
    new process that got the pid since); returns the PIDs signalled."""
    signalled = []
    for pid, start, _ in processes:
        if _start_time(pid) == start:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
                signalled.append(pid)
    return signalled


def stop_processes(processes: list[ProcessId], timeout: float) -> list[int]:
    """SIGTERM those of ``processes`` still running, all at once, and SIGKILL those still
    running ``timeout`` seconds later; returns the PIDs killed. They are not our children,
    so their exit is polled from ``/proc`` (a zombie counts as gone)."""
    running = [process for process in processes if process.running()]
    for process in running:
        with contextlib.suppress(OSError):
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running and time.monotonic() < deadline:
        time.sleep(0.05)
        running = [process for process in running if process.running()]
    return kill_leftovers(running)


def _processes() -> Iterator[tuple[int, int, int, str]]:
    """Every process: pid, parent pid, start time, command line (spaces for NULs)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    fields = stat.read().rpartition(")")[2].split()
                with open(f"/proc/{entry.name}/cmdline", "rb") as raw:
                    cmdline = raw.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if len(fields) > 19:
                yield int(entry.name), int(fields[1]), int(fields[19]), cmdline


def _start_time(pid: int) -> int | None:
    return _state(pid)[1]


def _state(pid: int) -> tuple[str | None, int | None]:
    """The state letter (``Z``: a zombie) and the start time of ``pid``; Nones when gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None, None
    return (fields[0], int(fields[19])) if len(fields) > 19 else (None, None)


def reap_new_children(before: set[int], timeout: float = 2.0) -> list[int]:
    """Wait for the children that appeared since ``before`` and exit within ``timeout`` (the
    admin's short-lived starter); a child still running then is left alone. Returns the
    PIDs reaped."""
    waiting = child_pids() - before
    reaped: list[int] = []
    deadline = time.monotonic() + timeout
    while waiting:
        for pid in list(waiting):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere
                done = pid
            if done:
                waiting.discard(pid)
                reaped.append(pid)
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    return reaped


def shut_down_later(admin_port: int) -> subprocess.Popen[bytes]:
    """Start a process that shuts down the actor system on ``admin_port``: an actor cannot
    stop the admin it runs under, a separate client can (Thespian's external API)."""
    path = os.pathsep.join(p for p in sys.path if p)
    return subprocess.Popen(
        [sys.executable, "-m", "actors.launch.orphans", str(admin_port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # the launcher's terminal may be gone with it
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": path},
        start_new_session=True,
    )


def shut_down(admin_port: int) -> None:
    """Shut the actor system on ``admin_port`` down (what an operator would type)."""
    from thespian.actors import ActorSystem

    from actors.launch.loopback import keep_thespian_local

    keep_thespian_local()

    ActorSystem(
        "multiprocTCPBase", capabilities={"Admin Port": admin_port}, transientUnique=True
    ).shutdown()


if __name__ == "__main__":
    shut_down(int(sys.argv[1]))
