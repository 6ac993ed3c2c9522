"""Binary module: run a child process alongside the server (Pitaya's ``modules.Binary``).

Typical use: a sidecar the game server needs (a local proxy, a matchmaker written in another
language) that must live and die with it::

    app.register_module(BinaryModule(app, ["./sidecar", "--port", "7000"]), "sidecar")

* started in ``init`` (a binary that cannot be started stops the server's start-up);
* its stdout lines are logged at INFO, its stderr lines at ERROR, prefixed with the server id
  and the binary's name;
* stopped in ``shutdown``: SIGTERM, then SIGKILL after ``grace`` seconds;
* a child that exits by itself is reported (an ERROR line, :attr:`exited` set,
  :attr:`returncode`); with ``stop_server_on_exit=True`` the server then stops gracefully.

The child runs in its own session (process group), so a Ctrl-C meant for the server does not
kill it behind the module's back: the module alone decides when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from actors.logs import ServerLog
from actors.modules.base import ModuleBase

if TYPE_CHECKING:
    from actors.modules.base import ProcessHost

log = logging.getLogger(__name__)


class BinaryModule(ModuleBase):
    """A supervised child process; see the module docstring."""

    def __init__(
        self,
        app: ProcessHost,
        argv: Sequence[str],
        *,
        name: str | None = None,
        grace: float = 5.0,
        stop_server_on_exit: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        if not argv:
            raise ValueError("argv must name a program")
        self.app = app
        self.log = ServerLog(log, app.server_id)
        self.argv = [str(a) for a in argv]
        self.name = name or os.path.basename(self.argv[0])
        self.grace = grace
        """Seconds between SIGTERM and SIGKILL on shutdown (keep it below the app's
        ``shutdown_timeout``, the longest a module's shutdown may take)."""
        self.stop_server_on_exit = stop_server_on_exit
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.process: asyncio.subprocess.Process | None = None
        self.exited = asyncio.Event()
        """Set once the child exited, whatever the reason."""
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def returncode(self) -> int | None:
        """The child's exit code once it exited (negative: killed by that signal)."""
        return self.process.returncode if self.process is not None else None

    async def init(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **self.env} if self.env is not None else None,
            cwd=self.cwd,
            start_new_session=True,
        )
        self.log.info("binary %s started (pid %d)", self.name, self.process.pid)
        assert self.process.stdout is not None and self.process.stderr is not None
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._pump(self.process.stdout, logging.INFO)),
            loop.create_task(self._pump(self.process.stderr, logging.ERROR)),
        ]
        self._tasks.append(loop.create_task(self._watch(self.process)))

    async def _pump(self, stream: asyncio.StreamReader, level: int) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the stream limit: take what is there
                raw = await stream.read(64 * 1024)
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip()
            self.log.log(level, "%s: %s", self.name, line)

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        returncode = await process.wait()
        self.exited.set()
        if self._stopping:
            return
        self.log.error(
            "binary %s (pid %d) exited on its own with code %d%s",
            self.name,
            process.pid,
            returncode,
            "; stopping the server" if self.stop_server_on_exit else "",
        )
        if self.stop_server_on_exit:
            self.app.request_stop()

    async def shutdown(self) -> None:
        self._stopping = True
        process = self.process
        if process is None:
            return
        try:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), self.grace)
                except TimeoutError:
                    self.log.warning(
                        "binary %s did not stop within %ss; killing it",
                        self.name,
                        self.grace,
                    )
                    await self._kill(process)
        except asyncio.CancelledError:  # the app gave up waiting: never leave it running
            await self._kill(process)
            raise
        finally:
            # The pumps end at EOF, once the last output is logged; a grandchild still holding
            # the pipes must not hold the server's stop up for long.
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=1.0)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.log.info("binary %s stopped (code %s)", self.name, process.returncode)

    async def _kill(self, process: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
