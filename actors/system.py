"""ActorSystem: spawns, names, stops and counts the actors of one process.

One system per event loop. It is an async context manager so tests read::

    async with ActorSystem() as system:
        ref = system.spawn(Room)
        assert await ref.ask(Join("a")) == ["a"]
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TypeVar

from actors.actor import Actor
from actors.errors import ActorNameTaken
from actors.kernel import KERNEL_CONTEXT, ActorRef, Cell

log = logging.getLogger(__name__)

A = TypeVar("A", bound=Actor)


class ActorSystem:
    """The registry and supervisor root of all actors on one event loop."""

    def __init__(
        self, name: str = "system", mailbox_limits: Mapping[str, int] | None = None
    ) -> None:
        self.name = name
        self.mailbox_limits: Mapping[str, int] = mailbox_limits or {}
        """Mailbox limit by actor class name, overriding the class's ``max_mailbox`` at spawn
        (0: unbounded). The app passes ``Config.mailbox_limits``."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._named: dict[str, Cell] = {}
        self._roots: set[Cell] = set()
        self._ids = itertools.count(1)
        self._closed = False
        self.dead_letters = 0
        """Messages sent to stopped actors (or left in their mailbox when they stopped)."""
        self.unhandled_messages = 0
        """Messages whose actor declared no receiver for their type."""
        self.dropped: Counter[str] = Counter()
        """Messages dropped because an actor kind's mailbox was full, by actor class name."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # -- spawning --------------------------------------------------------------------------

    def spawn(
        self, actor_class: type[A], *args: Any, name: str | None = None, **kw: Any
    ) -> ActorRef:
        """Create an actor from ``actor_class(*args, **kw)`` and return its reference.

        ``name`` makes it findable with :meth:`lookup`; names are unique among live actors.
        """
        return self._spawn(None, actor_class, args, kw, name)

    def spawn_child(
        self, parent: Cell, actor_class: type[A], *args: Any, name: str | None = None, **kw: Any
    ) -> ActorRef:
        return self._spawn(parent, actor_class, args, kw, name)

    def _spawn(
        self,
        parent: Cell | None,
        actor_class: type[A],
        args: tuple[Any, ...],
        kw: dict[str, Any],
        name: str | None,
    ) -> ActorRef:
        if self._closed:
            raise RuntimeError(f"actor system {self.name} is shut down")
        if name is not None and name in self._named:
            raise ActorNameTaken(f"an actor named {name!r} is already alive")
        actor = actor_class(*args, **kw)
        cell_name = name if name is not None else f"{actor_class.__name__}-{next(self._ids)}"
        cell = Cell(self, actor, cell_name, parent)
        actor._cell = cell
        if name is not None:
            self._named[name] = cell
        if parent is None:
            self._roots.add(cell)
        else:
            parent.children.add(cell)
        # The drain runs started() first, before any message.
        cell.scheduled = True
        self.loop.call_soon(cell.drain, context=KERNEL_CONTEXT)
        return cell.ref

    def mailbox_limit(self, actor_class: type[Actor]) -> int | None:
        """The mailbox limit an actor of ``actor_class`` gets at spawn (None: unbounded)."""
        limit = self.mailbox_limits.get(actor_class.__name__)
        if limit is None:
            return actor_class.max_mailbox
        return limit if limit > 0 else None

    def lookup(self, name: str) -> ActorRef | None:
        """The live actor spawned with ``name``, or None."""
        cell = self._named.get(name)
        return cell.ref if cell is not None else None

    # -- stopping --------------------------------------------------------------------------

    async def stop(self, ref: ActorRef) -> None:
        """Stop ``ref`` and its children; returns once they have terminated."""
        await ref.stop()

    async def shutdown(self) -> None:
        """Stop every actor and refuse new spawns. Idempotent."""
        self._closed = True
        roots = list(self._roots)
        for cell in roots:
            cell.stop()
        for cell in roots:
            await cell.wait_terminated()

    async def __aenter__(self) -> ActorSystem:
        _ = self.loop
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    # -- bookkeeping (called by cells) -----------------------------------------------------

    def forget(self, cell: Cell) -> None:
        self._roots.discard(cell)
        if self._named.get(cell.name) is cell:
            del self._named[cell.name]

    def record_dead_letter(self, name: str, message: object) -> None:
        self.dead_letters += 1
        log.debug("dead letter to %s: %s", name, type(message).__name__)

    def record_unhandled(self, name: str, message: object) -> None:
        self.unhandled_messages += 1
        log.warning("%s has no receiver for %s", name, type(message).__name__)

    def record_dropped(self, actor_class: type, message: object) -> None:
        self.dropped[actor_class.__name__] += 1
        log.warning("mailbox of %s full: dropped %s", actor_class.__name__, type(message).__name__)

    @property
    def actor_count(self) -> int:
        """Live actors (roots and their descendants)."""

        def count(cells: set[Cell]) -> int:
            return sum(1 + count(c.children) for c in cells)

        return count(self._roots)

    def mailbox_depths(self) -> Counter[str]:
        """Queued messages of the live actors, summed by actor class name (for metrics).

        O(live actors); every live kind is present, with 0 when its mailboxes are empty.
        """
        depths: Counter[str] = Counter()
        stack = list(self._roots)
        while stack:
            cell = stack.pop()
            depths[type(cell.actor).__name__] += len(cell.mailbox)
            stack.extend(cell.children)
        return depths
