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
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time

__all__ = ["child_pids", "die_with_parent", "reap_new_children", "shut_down_later"]

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
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    fields = stat.read().rpartition(")")[2].split()
            except OSError:
                continue
            if len(fields) > 1 and int(fields[1]) == me:
                found.add(int(entry.name))
    return found


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
