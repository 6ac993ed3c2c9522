"""The keeper: one Thespian actor (its own process) that keeps the servers of a host running.

One keeper per host, not one per server: a Thespian actor process costs ~17 MiB RSS, and a
keeper only polls. Each server is a :class:`KeptServer`, plain state the keeper drives.

Why polling: a Thespian actor must keep returning from its receive method to stay responsive
(to a stop, a status query, an exit request), so it never blocks on a child. It starts each
server with ``subprocess.Popen`` and checks them all with one ``wakeupAfter`` every 0.2 s. A
process that exits by itself is reported to the supervisor and restarted after an exponential
backoff (``KeeperSettings.backoff``); a run longer than ``stable_after`` resets the backoff.

A server that exits with status 75 (``actors.startup.EXIT_ID_HELD``) was refused because its
id is still held in discovery: most often the lease of the process it replaces, which crashed
moments ago, has not expired yet. That is no crash: counting it grew the backoff while the id
was about to be free. It is started again every ``held_id_retry`` seconds (a keep-alive
period of its lease), its crash count untouched, and told once: a warning at the first
refusal, an info line once it runs again; an id held for good (another live server uses it)
is tried at that pace, never faster.

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
from actors.logs import ServerLog
from actors.startup import EXIT_ID_HELD

log = ServerLog(logging.getLogger(__name__), "launch")

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
    if returncode == EXIT_ID_HELD:
        return f"exited with code {returncode} (its server id is still held in discovery)"
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


class KeptServer:
    """One server process and its restart bookkeeping; the keeper actor drives it and sends
    the messages its methods return."""

    def __init__(self, command: ServerCommand) -> None:
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.crashes = 0
        """Consecutive short-lived runs: the backoff exponent."""
        self.held_since: float | None = None
        """When the first of the starts refused in a row because the server id was still
        held in discovery (exit status 75) ended; None when the last one was not refused."""
        self.started_at = 0.0
        self.last_exit: int | None = None
        """The exit status of its last process; None before any exited."""
        self.restart_at: float | None = None
        self.stop_requester: Any = None
        self.stop_deadline = 0.0
        self.finished = False

    @property
    def stopping(self) -> bool:
        return self.stop_requester is not None

    def spawn(self) -> ServerSpawned:
        command = self.command
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
            log.error("%s could not be started: %s", command.name, exc)
            self._schedule_restart()
            return ServerSpawned(command.name, None, self.restarts)
        finally:
            if output is not None:
                output.close()
        self.started_at = time.monotonic()
        # While its id is held, each try is told once, at the first refusal.
        log.log(
            logging.DEBUG if self.held_since is not None else logging.INFO,
            "%s running (pid %d%s; keeper pid %d)",
            command.name,
            self.process.pid,
            f", restart {self.restarts}" if self.restarts else "",
            os.getpid(),
        )
        return ServerSpawned(command.name, self.process.pid, self.restarts)

    def check_running(self) -> ServerExited | ServerSpawned | None:
        """An exit to report, or a restart that was due; None when nothing changed."""
        command = self.command
        process = self.process
        if process is not None:
            returncode = process.poll()
            if returncode is None:
                self._check_held_id_freed()
                return None
            self.process = None
            self.last_exit = returncode
            uptime = time.monotonic() - self.started_at
            if returncode == EXIT_ID_HELD and command.settings.should_restart(returncode):
                return self._id_held(process.pid, uptime)
            self.held_since = None
            if uptime >= command.settings.stable_after:
                self.crashes = 0
            restart = command.settings.should_restart(returncode)
            delay = self._schedule_restart() if restart else None
            log.warning(
                "%s %s (pid %d) after %.1fs; %s",
                command.name,
                describe_exit(returncode),
                process.pid,
                uptime,
                f"restarting in {delay:.1f}s" if delay is not None else "not restarted",
            )
            return ServerExited(command.name, process.pid, returncode, delay)
        if self.restart_at is not None and time.monotonic() >= self.restart_at:
            self.restart_at = None
            self.restarts += 1
            return self.spawn()
        return None

    def _id_held(self, pid: int, uptime: float) -> ServerExited:
        """The server was refused its id (exit status 75): start it again after
        ``held_id_retry``, its crash count (the backoff) untouched; told once."""
        command = self.command
        delay = command.settings.held_id_retry
        now = time.monotonic()
        self.restart_at = now + delay
        if self.held_since is None:
            self.held_since = now
            log.warning(
                "%s (pid %d) was refused after %.1fs: its server id is still held in "
                "discovery (the lease of a process it replaces has not expired, or another "
                "server runs with it); starting it every %.1fs until the id is free, not "
                "counted as a crash",
                command.name,
                pid,
                uptime,
                delay,
            )
        else:
            log.debug(
                "%s: server id still held after %.0fs; starting it again in %.1fs",
                command.name,
                now - self.held_since,
                delay,
            )
        return ServerExited(command.name, pid, EXIT_ID_HELD, delay)

    def _check_held_id_freed(self) -> None:
        """After refusals for a held id, a run as long as ``stable_after`` has its id:
        told once, and the streak ends."""
        if self.held_since is None:
            return
        if time.monotonic() - self.started_at >= self.command.settings.stable_after:
            log.info(
                "%s runs (pid %d): its server id was held in discovery for %.0fs",
                self.command.name,
                self.process.pid if self.process is not None else 0,
                self.started_at - self.held_since,
            )
            self.held_since = None

    def _schedule_restart(self) -> float:
        self.crashes += 1
        delay = self.command.settings.backoff(self.crashes)
        self.restart_at = time.monotonic() + delay
        return delay

    def begin_stop(self, requester: Any) -> ServerStopped | None:
        """SIGTERM the process; its :class:`ServerStopped` now if it is not running: a server
        waiting to be started again reports the status its last process exited with (75
        while its id is held, a crash's status in its backoff), one not to be restarted
        None."""
        waiting = self.restart_at is not None
        self.restart_at = None
        process = self.process
        if process is None or process.poll() is not None:
            if process is not None:
                return self._finish(process.returncode)
            return self._finish(self.last_exit if waiting else None)
        log.info("stopping %s (pid %d)", self.command.name, process.pid)
        process.terminate()
        self.stop_requester = requester
        self.stop_deadline = time.monotonic() + self.command.settings.stop_timeout
        return None

    def check_stopping(self) -> ServerStopped | None:
        """Its :class:`ServerStopped` once the process exited (SIGKILL past the deadline)."""
        command = self.command
        process = self.process
        assert process is not None
        returncode = process.poll()
        if returncode is None:
            if time.monotonic() < self.stop_deadline:
                return None
            log.warning(
                "%s did not stop within %.1fs; killing it",
                command.name,
                command.settings.stop_timeout,
            )
            process.kill()
            returncode = process.wait()
        log.info("%s stopped (%s)", command.name, describe_exit(returncode))
        return self._finish(returncode)

    def _finish(self, returncode: int | None) -> ServerStopped:
        self.finished = True
        self.stop_requester = None
        self.process = None
        return ServerStopped(self.command.name, returncode)


class ServerKeeper(ActorTypeDispatcher):  # type: ignore[misc]
    """Starts, watches, restarts and stops the server processes of one host (see the module
    docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.supervisor: Any = None
        self.servers: dict[str, KeptServer] = {}
        self.wakeup_pending = False

    # -- messages --------------------------------------------------------------------------

    def receiveMsg_KeepServer(self, msg: KeepServer, sender: Any) -> None:
        if self.supervisor is None:
            die_with_parent()  # SIGTERM (our exit request) if the supervisor dies
        self.supervisor = sender
        if msg.orphan_pid is not None:
            log.warning(
                "%s: stopping pid %d left by a dead keeper",
                msg.command.name,
                msg.orphan_pid,
            )
            terminate_pid(msg.orphan_pid, msg.command.settings.stop_timeout)
        server = self.servers[msg.command.name] = KeptServer(msg.command)
        self.send(sender, server.spawn())
        self._poll(POLL)

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: Any) -> None:
        self.wakeup_pending = False
        for server in self.servers.values():
            if server.finished:
                continue
            if server.stopping:
                requester = server.stop_requester
                if (stopped := server.check_stopping()) is not None:
                    self.send(requester, stopped)
            elif (report := server.check_running()) is not None:
                self.send(self.supervisor, report)
        if any(server.stopping for server in self.servers.values()):
            self._poll(STOP_POLL)
        elif not all(server.finished for server in self.servers.values()):
            self._poll(POLL)

    def receiveMsg_StopServer(self, msg: StopServer, sender: Any) -> None:
        server = self.servers.get(msg.name)
        if server is None or server.finished:
            self.send(sender, ServerStopped(msg.name, None))
            return
        if (stopped := server.begin_stop(sender)) is not None:
            self.send(sender, stopped)
        else:
            self._poll(STOP_POLL)

    def receiveMsg_ActorExitRequest(self, msg: ActorExitRequest, sender: Any) -> None:
        """The actor system shuts down without a StopServer first: still stop the servers,
        all at once (SIGTERM each, SIGKILL those still running after their stop_timeout)."""
        running = [
            server
            for server in self.servers.values()
            if server.process is not None and server.process.poll() is None
        ]
        start = time.monotonic()
        for server in running:
            assert server.process is not None
            server.process.terminate()
        for server in running:
            process = server.process
            assert process is not None
            left = start + server.command.settings.stop_timeout - time.monotonic()
            try:
                process.wait(max(left, 0.0))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.info("%s %s", server.command.name, describe_exit(process.returncode))

    # -- plumbing --------------------------------------------------------------------------

    def _poll(self, period: timedelta) -> None:
        # Wake-ups cannot be cancelled: keep at most one pending.
        if not self.wakeup_pending:
            self.wakeup_pending = True
            self.wakeupAfter(period)
