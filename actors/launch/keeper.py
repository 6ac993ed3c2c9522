"""The keeper: a Thespian actor (its own process) that keeps one server process running.

Why polling: a Thespian actor must keep returning from its receive method to stay responsive
(to a stop, a status query, an exit request), so it never blocks on the child. It starts the
server with ``subprocess.Popen`` and checks it with ``wakeupAfter`` every 0.2 s. A process that
exits by itself is reported to the supervisor and restarted after an exponential backoff
(``KeeperSettings.backoff``); a run longer than ``stable_after`` resets the backoff.

Stopping is graceful: SIGTERM (the server then stops accepting, drains, kicks and exits 0),
SIGKILL after ``stop_timeout``. Servers run in their own session, so a Ctrl-C meant for the
launcher does not reach them behind the keeper's back. A keeper gets SIGTERM (its exit request)
when its supervisor dies, and a server when its keeper dies (``actors.launch.orphans``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from datetime import timedelta
from typing import IO, Any

from thespian.actors import ActorExitRequest, ActorTypeDispatcher, WakeupMessage

from actors.launch.config import ServerCommand
from actors.launch.messages import (
    KeepServer,
    ServerExited,
    ServerSpawned,
    ServerStopped,
    StopServer,
)
from actors.launch.orphans import die_with_parent

log = logging.getLogger("actors.launch")

POLL = timedelta(seconds=0.2)
"""How often a running server is checked (and a due restart performed)."""
STOP_POLL = timedelta(seconds=0.05)
"""How often a stopping server is checked, so the launcher learns of its exit quickly."""


def describe_exit(returncode: int) -> str:
    """``exited with code 3`` or ``killed by SIGKILL``."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs. A zombie (exited, not yet reaped by a parent that is not us)
    counts as gone: on Linux its state in ``/proc`` says so, where ``kill(pid, 0)`` cannot."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def terminate_pid(pid: int, timeout: float) -> None:
    """SIGTERM a process that is not our child, SIGKILL it if still there after ``timeout``.

    Used for a server left running by a keeper that died: it must be gone before a second
    copy (same server id) is started. It is not our child, so it cannot be waited for: poll.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid):
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)


class ServerKeeper(ActorTypeDispatcher):  # type: ignore[misc]
    """Starts, watches, restarts and stops one server process (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.command: ServerCommand | None = None
        self.supervisor: Any = None
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.crashes = 0
        """Consecutive short-lived runs: the backoff exponent."""
        self.started_at = 0.0
        self.restart_at: float | None = None
        self.stop_requester: Any = None
        self.stop_deadline = 0.0
        self.finished = False
        self.wakeup_pending = False

    # -- messages --------------------------------------------------------------------------

    def receiveMsg_KeepServer(self, msg: KeepServer, sender: Any) -> None:
        die_with_parent()
        self.command = msg.command
        self.supervisor = sender
        if msg.orphan_pid is not None:
            log.warning(
                "[launch] %s: stopping pid %d left by a dead keeper",
                msg.command.name,
                msg.orphan_pid,
            )
            terminate_pid(msg.orphan_pid, msg.command.settings.stop_timeout)
        self._spawn()
        self._poll(POLL)

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: Any) -> None:
        self.wakeup_pending = False
        if self.finished or self.command is None:
            return
        if self.stop_requester is not None:
            self._check_stopping()
        else:
            self._check_running()
        if not self.finished:
            self._poll(STOP_POLL if self.stop_requester is not None else POLL)

    def receiveMsg_StopServer(self, msg: StopServer, sender: Any) -> None:
        assert self.command is not None
        self.restart_at = None
        process = self.process
        if process is None or process.poll() is not None:
            self._finish(sender, process.returncode if process is not None else None)
            return
        log.info("[launch] stopping %s (pid %d)", self.command.name, process.pid)
        process.terminate()
        self.stop_requester = sender
        self.stop_deadline = time.monotonic() + self.command.settings.stop_timeout
        self._poll(STOP_POLL)

    def receiveMsg_ActorExitRequest(self, msg: ActorExitRequest, sender: Any) -> None:
        """The actor system shuts down without a StopServer first: still stop the server."""
        process = self.process
        if process is not None and process.poll() is None and self.command is not None:
            process.terminate()
            try:
                process.wait(self.command.settings.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.info("[launch] %s %s", self.command.name, describe_exit(process.returncode))

    # -- process handling ------------------------------------------------------------------

    def _poll(self, period: timedelta) -> None:
        # Wake-ups cannot be cancelled: keep at most one pending.
        if not self.wakeup_pending:
            self.wakeup_pending = True
            self.wakeupAfter(period)

    def _spawn(self) -> None:
        command = self.command
        assert command is not None
        output: IO[bytes] | None = None
        try:
            if command.log_file:
                os.makedirs(os.path.dirname(command.log_file) or ".", exist_ok=True)
                output = open(command.log_file, "ab")  # noqa: SIM115 - the child keeps it
            self.process = subprocess.Popen(
                command.argv,
                env={**os.environ, **dict(command.env)},
                cwd=command.cwd,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT if output is not None else None,
                start_new_session=True,
                # In the child before exec; safe here: a keeper process runs no threads.
                preexec_fn=die_with_parent,
            )
        except OSError as exc:
            self.process = None
            log.error("[launch] %s could not be started: %s", command.name, exc)
            self._schedule_restart()
            self.send(self.supervisor, ServerSpawned(command.name, None, self.restarts))
            return
        finally:
            if output is not None:
                output.close()
        self.started_at = time.monotonic()
        log.info(
            "[launch] %s running (pid %d%s; keeper pid %d)",
            command.name,
            self.process.pid,
            f", restart {self.restarts}" if self.restarts else "",
            os.getpid(),
        )
        self.send(self.supervisor, ServerSpawned(command.name, self.process.pid, self.restarts))

    def _check_running(self) -> None:
        command = self.command
        assert command is not None
        process = self.process
        if process is not None:
            returncode = process.poll()
            if returncode is None:
                return
            self.process = None
            uptime = time.monotonic() - self.started_at
            if uptime >= command.settings.stable_after:
                self.crashes = 0
            restart = command.settings.should_restart(returncode)
            delay = self._schedule_restart() if restart else None
            log.warning(
                "[launch] %s %s (pid %d) after %.1fs; %s",
                command.name,
                describe_exit(returncode),
                process.pid,
                uptime,
                f"restarting in {delay:.1f}s" if delay is not None else "not restarted",
            )
            self.send(self.supervisor, ServerExited(command.name, process.pid, returncode, delay))
        elif self.restart_at is not None and time.monotonic() >= self.restart_at:
            self.restart_at = None
            self.restarts += 1
            self._spawn()

    def _schedule_restart(self) -> float:
        assert self.command is not None
        self.crashes += 1
        delay = self.command.settings.backoff(self.crashes)
        self.restart_at = time.monotonic() + delay
        return delay

    def _check_stopping(self) -> None:
        command = self.command
        process = self.process
        assert command is not None and process is not None
        returncode = process.poll()
        if returncode is None:
            if time.monotonic() < self.stop_deadline:
                return
            log.warning(
                "[launch] %s did not stop within %.1fs; killing it",
                command.name,
                command.settings.stop_timeout,
            )
            process.kill()
            returncode = process.wait()
        log.info("[launch] %s stopped (%s)", command.name, describe_exit(returncode))
        self._finish(self.stop_requester, returncode)

    def _finish(self, requester: Any, returncode: int | None) -> None:
        assert self.command is not None
        self.finished = True
        self.stop_requester = None
        self.process = None
        self.send(requester, ServerStopped(self.command.name, returncode))
