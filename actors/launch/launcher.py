"""The launcher API: start a deployment's servers as supervised processes, query, stop.

::

    from actors.launch import Launcher, load_config

    with Launcher(load_config("samples/cluster/launch.toml")) as launcher:
        print(launcher.start())          # {"connector-1": 4242, "room-1": 4243, ...}
        print(launcher.status())         # pids, restarts, last exit codes
        ...                              # serve until you are done
    # leaving the block stops every server gracefully, then shuts Thespian down

Each deployment gets its own Thespian ``multiprocTCPBase`` system on its own admin port and
always shuts it down, because a Thespian admin outlives the process that started it. The
calls are synchronous (Thespian's external API is): make them one at a time, and call
``start`` where forking is safe (the main thread of a process not running other threads).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

from thespian.actors import ActorSystem, ActorSystemException

from actors.launch.config import LaunchConfig, ServerCommand
from actors.launch.loopback import keep_thespian_local
from actors.launch.messages import (
    Deploy,
    Deployed,
    DeploymentStatus,
    DeploymentStopped,
    QueryDeployment,
    ServerState,
    StopDeployment,
)
from actors.launch.orphans import (
    ProcessId,
    child_pids,
    freeze,
    kill_leftovers,
    reap_new_children,
    server_processes,
    stop_processes,
    thespian_processes,
)
from actors.launch.supervisor import Supervisor
from actors.logs import ServerLog, check_log_format

log = ServerLog(logging.getLogger(__name__), "launch")

T = TypeVar("T")

LOG_FORMAT_ENV = "PITAYA_LOG_FORMAT"


class LaunchError(RuntimeError):
    """The deployment could not be started or did not answer in time; says which step."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        port: int = sock.getsockname()[1]
        return port


def thespian_log_defs(level: str | int, log_format: str = "text") -> dict[str, Any]:
    """Logging of the actor processes (Thespian forwards their records to one logger process):
    the keepers' ``actors.launch`` lines go to the launcher's stderr, in ``log_format``."""
    check_log_format(log_format)
    formatter = (
        {"()": "actors.logs.JsonFormatter"}
        if log_format == "json"
        else {"()": "actors.logs.TextFormatter"}
    )
    return {
        "version": 1,
        "formatters": {"plain": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "plain",
            }
        },
        "loggers": {"actors.launch": {"handlers": ["stderr"], "level": level, "propagate": False}},
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }


class Launcher:
    """One deployment: its Thespian system, its supervisor, its servers. See the module doc."""

    def __init__(
        self,
        config: LaunchConfig,
        *,
        log_level: str | int = "INFO",
        log_format: str | None = None,
    ) -> None:
        """``log_format`` (``text`` or ``json``): the keepers' lines, and every server's
        ``PITAYA_LOG_FORMAT`` unless its entry sets one; None: ``PITAYA_LOG_FORMAT`` of this
        process (``text`` when unset), which the servers inherit anyway."""
        self.config = config
        self.log_level = log_level
        self.servers_log_format = log_format
        self.log_format = log_format or os.environ.get(LOG_FORMAT_ENV) or "text"
        check_log_format(self.log_format)
        self.admin_port = 0
        self._system: Any = None
        self._supervisor: Any = None
        self._thespian: list[ProcessId] = []
        """The actor system's processes, recorded at the start (see :meth:`abandon`)."""

    @property
    def running(self) -> bool:
        return self._system is not None

    def start(self, timeout: float = 30.0) -> dict[str, int | None]:
        """Start every server; returns ``name -> pid``. On failure nothing is left running."""
        if self._system is not None:
            raise LaunchError("this deployment is already started")
        self.admin_port = self.config.admin_port or free_port()
        if self.config.admin_port and not _port_free(self.admin_port):
            raise LaunchError(
                f"admin port {self.admin_port} is in use: is another deployment (or a leftover "
                "Thespian admin) running? Stop it, or set admin_port = 0"
            )
        children = child_pids()
        keep_thespian_local()
        self._system = ActorSystem(
            "multiprocTCPBase",
            capabilities={"Admin Port": self.admin_port},
            logDefs=thespian_log_defs(self.log_level, self.log_format),
            transientUnique=True,
        )
        reap_new_children(children)  # the admin's starter, which Thespian never waits for
        try:
            self._supervisor = self._system.createActor(Supervisor)
            deploy = Deploy(self._servers(), os.getpid(), self.admin_port)
            deployed = self._request(deploy, Deployed, timeout, "start")
        except BaseException:
            self._shutdown()
            raise
        self._thespian = thespian_processes(self.admin_port)
        log.info(
            "%d server(s) started (thespian admin port %d)",
            len(deployed.pids),
            self.admin_port,
        )
        return deployed.pids

    def supervision_alive(self) -> bool | None:
        """Whether Thespian's admin and the supervisor still run (those recorded at the
        start); None when nothing could be recorded (no ``/proc``)."""
        watched = [p for p in self._thespian if p.name in ("MultiProcAdmin", "Supervisor")]
        if not watched:
            return None
        return all(process.running() for process in watched)

    def abandon(self) -> list[int]:
        """The supervision is gone (the supervisor or the admin died, and the servers with
        them): shut down what is left of the actor system, then kill those of its processes
        that did not go. Returns the PIDs killed."""
        try:
            self._shutdown()
        except Exception as exc:  # a dead admin: nothing to shut down through
            log.debug("shutting the actor system down failed: %s", exc)
        return kill_leftovers(self._thespian)

    def status(self, timeout: float = 5.0) -> list[ServerState]:
        """Every server's pid, whether it runs, its restarts and its last exit code."""
        reply = self._request(QueryDeployment(), DeploymentStatus, timeout, "status")
        return list(reply.servers)

    def stop(self, timeout: float | None = None) -> dict[str, int | None]:
        """Stop every server gracefully (SIGTERM, SIGKILL after its ``stop_timeout``), then
        shut the actor system down; returns ``name -> exit code``. Idempotent.

        If the supervisor does not answer within ``timeout`` (by default the longest
        ``stop_timeout`` of each wave in turn, plus 10 s), stalled (SIGSTOP, a paused host)
        or gone, the launcher stops the servers itself (:meth:`_take_over`) and raises
        :class:`LaunchError` saying so: a stop ends within ``timeout`` plus the longest
        ``stop_timeout``, whatever state the supervision is in."""
        if self._system is None:
            return {}
        if timeout is None:
            # Two waves: the servers that drain their sessions, then the others.
            waves = [
                [s for s in self.config.servers if s.drains is first] for first in (True, False)
            ]
            timeout = (
                sum(max((s.settings.stop_timeout for s in wave), default=0.0) for wave in waves)
                + 10.0
            )
        try:
            stopped = self._request(StopDeployment(), DeploymentStopped, timeout, "stop")
        except LaunchError as exc:
            raise LaunchError(f"{exc}; {self._take_over()}") from None
        except BaseException:
            self._shutdown()
            raise
        self._shutdown()
        return stopped.returncodes

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- plumbing --------------------------------------------------------------------------

    def _servers(self) -> tuple[ServerCommand, ...]:
        """The servers to start, with ``PITAYA_LOG_FORMAT`` when a format was given (first in
        their environment, so an entry's own setting wins)."""
        log_format = self.servers_log_format
        if log_format is None:
            return self.config.servers
        setting = (LOG_FORMAT_ENV, log_format)
        return tuple(replace(s, env=(setting, *s.env)) for s in self.config.servers)

    def _request(self, message: object, expected: type[T], timeout: float, what: str) -> T:
        """Send the supervisor ``message`` and wait for the reply of the expected type, for
        ``timeout`` seconds at most, the send included.

        The send is an ``ask``, not a ``tell``: Thespian's external ``tell`` waits for the
        receiver to take the message, up to 60 s (its ``MAX_TELL_PERIOD``) when the
        supervisor is stalled (SIGSTOP, a paused host), then returns as if it had sent it;
        meanwhile a status check or a stop, and so the launcher's SIGTERM, waited. ``ask``
        sends within its own timeout (an undelivered message stays queued in Thespian).

        ``ask`` and ``listen`` return whatever message arrives next, so a late answer to an
        earlier, timed-out request could be mistaken for this one: replies of another type
        are skipped.
        """
        if self._system is None:
            raise LaunchError(f"cannot {what}: the deployment is not started")
        deadline = time.monotonic() + timeout
        try:
            reply = self._system.ask(self._supervisor, message, timedelta(seconds=timeout))
            while not isinstance(reply, expected):
                if reply is not None:
                    log.debug("skipping a late %s", type(reply).__name__)
                if (remaining := deadline - time.monotonic()) <= 0:
                    break
                reply = self._system.listen(timedelta(seconds=remaining))
            else:
                return reply
        except ActorSystemException as exc:
            raise LaunchError(f"could not {what}: {exc}") from exc
        raise LaunchError(f"the supervisor did not answer '{what}' within {timeout}s")

    def _take_over(self) -> str:
        """The supervision did not answer the stop: stop the servers here and kill the actor
        system; returns what was done, for the error raised.

        The actor processes are frozen first (SIGSTOP), so that no keeper restarts a server
        stopped here and none acts on a late stop; the servers get SIGTERM, all at once
        (both waves: the supervision's order cannot be kept without it), and SIGKILL after
        the longest ``stop_timeout``; then the actor processes get SIGKILL. Thespian's own
        shutdown is skipped: with the supervisor stalled it waits 10 s and leaves every
        process running. Without ``/proc`` nothing can be found, and nothing is done."""
        self._system = None
        actors = self._actor_processes()
        servers = server_processes(actors)
        freeze(actors)
        timeout = max((s.settings.stop_timeout for s in self.config.servers), default=0.0)
        killed = stop_processes(servers, timeout)
        gone = kill_leftovers(actors)
        return (
            f"stopped the servers itself (pids {_pids([p.pid for p in servers])}; SIGKILL "
            f"after {timeout}s: {_pids(killed)}) and killed the actor system (pids {_pids(gone)})"
        )

    def _actor_processes(self) -> list[ProcessId]:
        """The actor system's processes: those recorded at the start, and those under the
        admin now (a keeper replaced since)."""
        now = thespian_processes(self.admin_port) if self.admin_port else []
        return list(dict.fromkeys([*self._thespian, *now]))

    def _shutdown(self) -> None:
        system, self._system = self._system, None
        if system is not None:
            system.shutdown()


def _pids(pids: list[int]) -> str:
    return ", ".join(map(str, pids)) or "none"


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError:
            return False
        return True
