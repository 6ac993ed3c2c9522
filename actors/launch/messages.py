"""Control messages between the launcher, the supervisor actor and the keeper actors.

Thespian pickles messages between processes and dispatches on the bare class name
(``receiveMsg_<ClassName>``), so every message is a module-level frozen dataclass with a name
used nowhere else. Only control flows here (start, stop, status); game traffic never does.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.launch.config import ServerCommand

# -- launcher -> supervisor -> launcher ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deploy:
    """Start a keeper (and so a server) per command; answered with :class:`Deployed`."""

    commands: tuple[ServerCommand, ...]
    launcher_pid: int
    """Watched by the supervisor: if the launcher dies without stopping, the servers stop."""
    admin_port: int = 0
    """The actor system's admin port: shut down once the servers stopped after the launcher
    died (0: left running)."""


@dataclass(frozen=True, slots=True)
class Deployed:
    pids: dict[str, int | None]
    """Server name -> PID of its first process (None if it could not be spawned)."""


@dataclass(frozen=True, slots=True)
class QueryDeployment:
    """Answered with :class:`DeploymentStatus`."""


@dataclass(frozen=True, slots=True)
class ServerState:
    """What the supervisor knows about one server."""

    name: str
    pid: int | None
    """PID of the running process; None while it waits for a restart."""
    running: bool
    restarts: int
    last_exit: int | None
    """Exit code of the previous process (negative: killed by that signal)."""


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    servers: tuple[ServerState, ...]


@dataclass(frozen=True, slots=True)
class StopDeployment:
    """Stop every server gracefully; answered with :class:`DeploymentStopped`."""


@dataclass(frozen=True, slots=True)
class DeploymentStopped:
    returncodes: dict[str, int | None]
    """Server name -> exit code after SIGTERM (``-9`` when it had to be killed)."""


# -- supervisor <-> keeper -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeepServer:
    """Start ``command`` and keep it running (one message per server; one keeper keeps
    them all)."""

    command: ServerCommand
    orphan_pid: int | None = None
    """A process left by a keeper that died: terminated before starting a new one."""


@dataclass(frozen=True, slots=True)
class ServerSpawned:
    """A keeper started a process (first start or restart)."""

    name: str
    pid: int | None
    restarts: int


@dataclass(frozen=True, slots=True)
class ServerExited:
    """A keeper's process exited on its own (crash, or a clean exit nobody asked for)."""

    name: str
    pid: int
    returncode: int
    restart_in: float | None
    """Seconds until the restart; None: it will not be restarted (policy)."""


@dataclass(frozen=True, slots=True)
class StopServer:
    """SIGTERM the server ``name``, SIGKILL it after its ``stop_timeout``; answered with
    :class:`ServerStopped`."""

    name: str


@dataclass(frozen=True, slots=True)
class ServerStopped:
    name: str
    returncode: int | None
