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

from thespian.actors import ActorSystem

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
    kill_leftovers,
    reap_new_children,
    thespian_processes,
)
from actors.launch.supervisor import Supervisor
from actors.logs import TEXT_FORMAT, ServerLog, check_log_format

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
        {"()": "actors.logs.JsonFormatter"} if log_format == "json" else {"format": TEXT_FORMAT}
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
        shut the actor system down; returns ``name -> exit code``. Idempotent."""
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
            return stopped.returncodes
        finally:
            self._shutdown()

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
        """Tell the supervisor and wait for the reply of the expected type.

        Thespian's external ``ask`` returns whatever message arrives next, so a late answer
        to an earlier, timed-out request could be mistaken for this one: replies of another
        type are skipped.
        """
        if self._system is None:
            raise LaunchError(f"cannot {what}: the deployment is not started")
        deadline = time.monotonic() + timeout
        self._system.tell(self._supervisor, message)
        while (remaining := deadline - time.monotonic()) > 0:
            reply = self._system.listen(timedelta(seconds=remaining))
            if isinstance(reply, expected):
                return reply
            if reply is not None:
                log.debug("skipping a late %s", type(reply).__name__)
        raise LaunchError(f"the supervisor did not answer '{what}' within {timeout}s")

    def _shutdown(self) -> None:
        system, self._system = self._system, None
        if system is not None:
            system.shutdown()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError:
            return False
        return True
