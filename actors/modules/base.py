"""Modules: pieces of a server with a lifecycle tied to the app's (Pitaya's ``interfaces.Module``).

A module is anything with four coroutines: ``init``, ``after_init``, ``before_shutdown`` and
``shutdown``. Where they run in :class:`~actors.app.App`:

* start: cluster connected and joined (so a module can use NATS, etcd, RPCs and the server
  table), handlers spawned -> every module's ``init`` in order -> every ``after_init`` in
  order -> metrics -> listeners open. As in Pitaya, modules are up before any client connects;
  a module that fails stops the start-up with :class:`ModuleStartError` naming it, after the
  modules already started were shut down again.
* stop: listeners closed, deregistered, in-flight requests finished, sessions kicked (so their
  close callbacks ran) -> every ``before_shutdown`` in reverse order -> every ``shutdown`` in
  reverse order -> NATS and etcd closed -> actors stopped. Errors are logged, never raised: one
  failing module must not keep the others (or the process) from stopping.

Order is registration order: ``register_module``/``register_module_after`` append,
``register_module_before`` puts the module first (Pitaya's ``RegisterModuleBefore``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from actors.logs import ServerLog
from transport.undo import undo_fully

log = logging.getLogger(__name__)

MODULE_STEP_WAIT = 0.5
"""Seconds each module's ``before_shutdown`` and ``shutdown`` get at least in a stop whose
deadline has passed (see :meth:`Modules.stop`)."""


class ProcessHost(Protocol):
    """What a module that runs a process uses of its server (the binary module): who to
    log as, and how to stop the server. ``actors.app.App`` is one."""

    @property
    def server_id(self) -> str: ...

    def request_stop(self) -> None: ...


@runtime_checkable
class Module(Protocol):
    """What the app calls on a module; see the module docstring for when."""

    async def init(self) -> None: ...
    async def after_init(self) -> None: ...
    async def before_shutdown(self) -> None: ...
    async def shutdown(self) -> None: ...


class ModuleBase:
    """No-op implementations of every :class:`Module` step: override only what you need.

    Example::

        class Leaderboard(ModuleBase):
            async def init(self) -> None:
                self.db = await connect_db()

            async def shutdown(self) -> None:
                await self.db.close()

        app.register_module(Leaderboard(), "leaderboard")
    """

    async def init(self) -> None:
        return None

    async def after_init(self) -> None:
        return None

    async def before_shutdown(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


class ModuleStartError(RuntimeError):
    """A module's ``init`` or ``after_init`` failed: the server does not start."""

    def __init__(self, name: str, step: str, cause: BaseException) -> None:
        self.module_name = name
        self.step = step
        super().__init__(f"module {name!r} failed in {step}: {cause!r}")


class Modules:
    """The app's modules, in start order."""

    def __init__(self, server_id: str, step_timeout: float = 10.0) -> None:
        self.server_id = server_id
        self.log = ServerLog(log, server_id)
        self.step_timeout = step_timeout
        """Longest wait for one module's ``before_shutdown`` or ``shutdown``."""
        self._order: list[tuple[str, Module]] = []
        self._started: list[tuple[str, Module]] = []
        """Modules whose ``init`` succeeded: the ones to shut down."""
        self._frozen = False

    def register(self, module: Module, name: str, *, first: bool = False) -> None:
        if self._frozen:
            raise RuntimeError("register modules before the app starts")
        if not isinstance(module, Module):
            raise TypeError(
                f"{module!r} is not a module: it needs async init, after_init, "
                "before_shutdown and shutdown (subclass actors.modules.ModuleBase)"
            )
        self._refuse_taken(name)
        if first:
            self._order.insert(0, (name, module))
        else:
            self._order.append((name, module))

    def adopt(self, module: Module, name: str) -> None:
        """Register ``module`` even after the start, as already started (its ``init`` is not
        called; it is shut down with the others). For the framework's own parts that come
        into use while the app runs (the worker's job store on a first ``reliable_rpc``)."""
        if not self._frozen:
            self.register(module, name)
            return
        self._refuse_taken(name)
        self._order.append((name, module))
        self._started.append((name, module))

    def _refuse_taken(self, name: str) -> None:
        if any(existing == name for existing, _ in self._order):
            raise ValueError(f"a module named {name!r} is already registered")

    def get(self, name: str) -> Module:
        for existing, module in self._order:
            if existing == name:
                return module
        raise KeyError(f"no module named {name!r}")

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._order]

    def __iter__(self) -> Iterator[tuple[str, Module]]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    async def start(self) -> None:
        """``init`` all, then ``after_init`` all, in order; undo and raise on a failure."""
        self._frozen = True
        for step in ("init", "after_init"):
            for name, module in self._order:
                try:
                    await getattr(module, step)()
                except BaseException as exc:
                    if not isinstance(exc, asyncio.CancelledError):  # a stop: no failure
                        self.log.error("module %s failed in %s: %r", name, step, exc)
                    # All of it, even if a stop comes meanwhile: cut short, the modules
                    # still to go would never shut down.
                    await undo_fully(self.stop())
                    if isinstance(exc, Exception):
                        raise ModuleStartError(name, step, exc) from exc
                    raise
                if step == "init":
                    self._started.append((name, module))
                else:
                    self.log.info("module %s started", name)

    async def stop(self, until: float | None = None) -> None:
        """``before_shutdown`` then ``shutdown`` of the started modules, in reverse order.

        Each step may take ``step_timeout``; with ``until`` (a time of the loop's clock: the
        app's stop deadline), no longer than what is left until then, and at least
        :data:`MODULE_STEP_WAIT` (a module is never skipped: its shutdown may release what
        outlives the process, a lock or a lease)."""
        started, self._started = self._started, []
        loop = asyncio.get_running_loop()
        for step in ("before_shutdown", "shutdown"):
            for name, module in reversed(started):
                timeout = self.step_timeout
                if until is not None:
                    timeout = min(timeout, max(MODULE_STEP_WAIT, until - loop.time()))
                try:
                    await asyncio.wait_for(getattr(module, step)(), timeout)
                except TimeoutError:
                    self.log.error(
                        "module %s: %s took longer than %.1fs; going on",
                        name,
                        step,
                        timeout,
                    )
                except Exception:
                    self.log.exception("module %s failed in %s", name, step)
                else:
                    if step == "shutdown":
                        self.log.info("module %s stopped", name)
