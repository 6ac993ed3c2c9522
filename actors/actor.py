"""The base class of every actor.

An actor is an object with a mailbox: the kernel hands it one message at a time, so its state
needs no lock. Subclass :class:`Actor`, declare receivers as ``on_*`` methods whose message
parameter is annotated with the message class, and spawn it from an :class:`ActorSystem`::

    @dataclass(frozen=True, slots=True)
    class Join:
        name: str

    class Room(Actor):
        def __init__(self) -> None:
            self.members: list[str] = []

        def on_join(self, msg: Join) -> list[str]:
            self.members.append(msg.name)
            return self.members

    async with ActorSystem() as system:
        room = system.spawn(Room)
        assert await room.ask(Join("a")) == ["a"]

Receivers may be ``async``; while one awaits, the actor takes no other message unless the
class sets ``reentrant = True`` (for actors that mostly wait on I/O and keep no invariant
across an ``await``).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from actors.errors import UnhandledMessage

if TYPE_CHECKING:
    from actors.kernel import ActorRef, Cell, Timer
    from actors.system import ActorSystem

A = TypeVar("A", bound="Actor")
T = TypeVar("T")


class Actor:
    """Subclass me. The kernel sets ``self.ref`` and ``self.system`` before ``started``."""

    reentrant: ClassVar[bool] = False
    """When True, ``async`` receivers of this class run concurrently with later messages."""

    max_mailbox: ClassVar[int | None] = None
    """Mailbox limit for this actor kind; messages over it are dropped and counted.
    ``Config.mailbox_limits`` (by class name) overrides it at spawn."""

    _cell: Cell

    @property
    def ref(self) -> ActorRef:
        """This actor's own address, to hand to others."""
        try:
            return self._cell.ref
        except AttributeError:  # terminated: the cell let go of its address
            return self._cell.address()

    @property
    def system(self) -> ActorSystem:
        return self._cell.system

    @property
    def name(self) -> str:
        return self._cell.name

    # -- hooks -----------------------------------------------------------------------------

    def started(self) -> Coroutine[Any, Any, None] | None:
        """Called once before the first message; may be ``async``. Raising stops the actor."""
        return None

    def stopped(self) -> None:
        """Called once when the actor stops, after its children, timers and tasks."""

    def overflowed(self, message: object) -> bool:
        """Called when ``message`` finds the mailbox full, before it is dropped.

        Return True to queue it anyway: for the few messages an actor must never lose (a
        session actor's connection teardown, without which it would leak). The default
        drops everything. Runs inside the sender's ``tell``: it must not block.
        """
        return False

    def unhandled(self, message: object) -> Any:
        """Called for a message no receiver declares; the default raises UnhandledMessage."""
        from actors.dispatch import unannotated_receivers

        text = f"{type(self).__name__} has no receiver for {type(message)!r}"
        unannotated = unannotated_receivers(type(self))
        if unannotated:
            text += (
                f" ({', '.join(unannotated)} receive nothing: a receiver's message parameter "
                "must be annotated with a class)"
            )
        raise UnhandledMessage(text)

    # -- services --------------------------------------------------------------------------

    def spawn(
        self, actor_class: type[A], *args: Any, name: str | None = None, **kw: Any
    ) -> ActorRef:
        """Spawn a child: it is stopped when this actor stops."""
        return self._cell.system.spawn_child(self._cell, actor_class, *args, name=name, **kw)

    def after(self, seconds: float, message: object) -> Timer:
        """Deliver ``message`` to myself once, ``seconds`` from now, unless the returned
        timer is cancelled first (``timer.cancel()``: also when the message already waits in
        the mailbox behind the one being handled)."""
        from actors.kernel import Timer

        timer = Timer(self._cell, seconds, message, None)
        self._cell.timers.add(timer)
        return timer

    def every(self, seconds: float, message: object) -> Timer:
        """Deliver ``message`` to myself every ``seconds`` until cancelled or stopped."""
        from actors.kernel import Timer

        timer = Timer(self._cell, seconds, message, seconds)
        self._cell.timers.add(timer)
        return timer

    def run_task(self, coro: Coroutine[Any, Any, T]) -> Any:
        """Run a background coroutine owned by this actor (cancelled when it stops).

        The coroutine must not touch the actor's state after an ``await`` without going
        through the mailbox: have it ``self.ref.tell(...)`` its result instead.
        """
        from actors.kernel import run_coroutine

        return run_coroutine(self._cell, coro)

    def stop(self) -> None:
        """Stop this actor after the current message; queued messages become dead letters."""
        self._cell.stop()
