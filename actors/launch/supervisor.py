"""The supervisor: the one Thespian actor the launcher talks to.

It creates one :class:`~actors.launch.keeper.ServerKeeper` for the host's servers, keeps the
deployment's state table from the keeper's reports (spawned, exited, stopped), answers status
queries from that table, and sends the keeper a stop per server. It also watches two things
Thespian makes easy to get wrong:

* a keeper process that dies (``ChildActorExited``) is replaced; the servers it left behind
  are terminated first, so two copies of one server id never run at once;
* the launcher process is checked on each wake-up: if it died without stopping the deployment
  (SIGKILL), the servers are stopped rather than left running unsupervised, then the actor
  system is shut down (``actors.launch.orphans``), so no process is left behind.

The supervisor dies with the admin, and each keeper with the supervisor (``PR_SET_PDEATHSIG``
on Linux, SIGTERM: the keeper's exit request, which stops its server).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from thespian.actors import ActorTypeDispatcher, ChildActorExited, WakeupMessage

from actors.launch.config import ServerCommand
from actors.launch.keeper import ServerKeeper, pid_alive, terminate_pid
from actors.launch.messages import (
    Deploy,
    Deployed,
    DeploymentStatus,
    DeploymentStopped,
    KeepServer,
    QueryDeployment,
    ServerExited,
    ServerSpawned,
    ServerState,
    ServerStopped,
    StopDeployment,
    StopServer,
)
from actors.launch.orphans import die_with_parent, shut_down_later
from actors.logs import ServerLog

log = ServerLog(logging.getLogger(__name__), "launch")

WATCH_LAUNCHER = timedelta(seconds=1.0)


class Supervisor(ActorTypeDispatcher):  # type: ignore[misc]
    """Owns the keepers of one deployment (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: dict[str, ServerCommand] = {}
        self.keeper: Any = None
        self.states: dict[str, ServerState] = {}
        self.launcher_pid = 0
        self.admin_port = 0
        self.deploy_requester: Any = None
        self.unreported: set[str] = set()
        self.stopping = False
        self.stop_requester: Any = None
        self.second_wave: list[str] = []
        """Servers whose stop waits for the draining ones to be gone."""
        self.returncodes: dict[str, int | None] = {}

    # -- deploy ----------------------------------------------------------------------------

    def receiveMsg_Deploy(self, msg: Deploy, sender: Any) -> None:
        die_with_parent()
        self.deploy_requester = sender
        self.launcher_pid = msg.launcher_pid
        self.admin_port = msg.admin_port
        for command in msg.commands:
            self.commands[command.name] = command
            self.states[command.name] = ServerState(command.name, None, False, 0, None)
            self.unreported.add(command.name)
        self._start_keeper({})
        self.wakeupAfter(WATCH_LAUNCHER)

    def _start_keeper(self, orphans: dict[str, int | None]) -> None:
        """One keeper for every server; ``orphans``: server processes a dead keeper left."""
        self.keeper = self.createActor(ServerKeeper)
        for name, command in self.commands.items():
            self.send(self.keeper, KeepServer(command, orphans.get(name)))

    def receiveMsg_ServerSpawned(self, msg: ServerSpawned, sender: Any) -> None:
        old = self.states[msg.name]
        self.states[msg.name] = ServerState(
            msg.name, msg.pid, msg.pid is not None, msg.restarts, old.last_exit
        )
        if msg.name in self.unreported:
            self.unreported.discard(msg.name)
            if not self.unreported and self.deploy_requester is not None:
                pids = {name: state.pid for name, state in self.states.items()}
                self.send(self.deploy_requester, Deployed(pids))
                self.deploy_requester = None

    def receiveMsg_ServerExited(self, msg: ServerExited, sender: Any) -> None:
        old = self.states[msg.name]
        self.states[msg.name] = ServerState(msg.name, None, False, old.restarts, msg.returncode)

    def receiveMsg_QueryDeployment(self, msg: QueryDeployment, sender: Any) -> None:
        self.send(sender, DeploymentStatus(tuple(self.states.values())))

    # -- watching --------------------------------------------------------------------------

    def receiveMsg_ChildActorExited(self, msg: ChildActorExited, sender: Any) -> None:
        if self.keeper is None or msg.childAddress != self.keeper:
            return
        orphans = {name: state.pid for name, state in self.states.items()}
        if self.stopping:
            for name in sorted(self.unreported):  # died before answering: finish its job
                log.error("the keeper of %s died while stopping it", name)
                if orphan := orphans[name]:
                    terminate_pid(orphan, self.commands[name].settings.stop_timeout)
                self.receiveMsg_ServerStopped(ServerStopped(name, None), sender)
            return
        for name, orphan in orphans.items():
            log.error(
                "the keeper of %s died%s; starting a new keeper",
                name,
                f" (server pid {orphan} is stopped first)" if orphan else "",
            )
        self._start_keeper(orphans)

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: Any) -> None:
        if self.stopping:
            return
        if self.launcher_pid and not pid_alive(self.launcher_pid):
            log.error(
                "the launcher (pid %d) is gone without stopping; stopping every server",
                self.launcher_pid,
            )
            self._stop_all(None)
            return
        self.wakeupAfter(WATCH_LAUNCHER)

    # -- stop ------------------------------------------------------------------------------

    def receiveMsg_StopDeployment(self, msg: StopDeployment, sender: Any) -> None:
        self._stop_all(sender)

    def _stop_all(self, requester: Any) -> None:
        """Stop every server: first those that drain their sessions (frontends, as a rule),
        then, once they are gone, the others, which serve the drained clients till then."""
        self.stopping = True
        self.stop_requester = requester
        self.unreported = set(self.commands)
        first = [name for name, command in self.commands.items() if command.drains]
        self.second_wave = [name for name in self.commands if name not in first]
        for name in first:
            self.send(self.keeper, StopServer(name))
        self._next_wave()
        self._maybe_stopped()

    def _next_wave(self) -> None:
        """Once only the second wave is left to report, stop it."""
        second, self.second_wave = self.second_wave, []
        if second and self.unreported == set(second):
            for name in second:
                self.send(self.keeper, StopServer(name))
        else:
            self.second_wave = second

    def receiveMsg_ServerStopped(self, msg: ServerStopped, sender: Any) -> None:
        self.returncodes[msg.name] = msg.returncode
        old = self.states[msg.name]
        self.states[msg.name] = ServerState(msg.name, None, False, old.restarts, msg.returncode)
        self.unreported.discard(msg.name)
        self._next_wave()
        self._maybe_stopped()

    def _maybe_stopped(self) -> None:
        if self.unreported:
            return
        if self.stop_requester is not None:
            self.send(self.stop_requester, DeploymentStopped(dict(self.returncodes)))
            self.stop_requester = None
        else:  # nobody to tell: the launcher is gone
            log.info("every server stopped")
            if self.admin_port:
                log.info("shutting the actor system down (admin port %d)", self.admin_port)
                shut_down_later(self.admin_port)
