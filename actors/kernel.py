"""The runtime of one actor: its mailbox, its drain loop, its timers and children.

Why this shape: a hop between actors must cost about a function call. ``tell`` appends to a
deque and, when the actor is idle, schedules one ``loop.call_soon(drain)``; the drain runs
synchronous receivers inline, so a sync receiver costs no task and no future. An ``async``
receiver (or a sync one that returns a coroutine) runs as a task and the drain pauses until
it finishes (one message at a time), unless the actor class is ``reentrant``. A drain handles
at most ``DRAIN_BATCH`` messages before yielding the loop, so one busy actor cannot starve
the others.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from functools import partial
from types import CoroutineType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from actors.dispatch import DispatchTable, TimerTick, dispatch_table
from actors.errors import ActorStopped, AskedItself, AskTimeout, MailboxFull

if TYPE_CHECKING:
    from actors.actor import Actor
    from actors.system import ActorSystem

log = logging.getLogger(__name__)

DRAIN_BATCH = 256

KERNEL_CONTEXT = contextvars.Context()
"""Every drain runs in this one empty context: context variables of whoever sent a message
(e.g. the current tracing span) must not leak into the receiving actor. Drains never nest,
so one shared context is safe; tasks started by receivers copy it as usual."""

Reply = Callable[[Any, BaseException | None], None]
"""Called once with ``(result, None)`` or ``(None, error)`` when a message was handled."""

T = TypeVar("T")


class Timer:
    """A scheduled ``after``/``every`` message; cancelled automatically when the actor stops."""

    __slots__ = ("_cell", "_handle", "_interval", "_message", "cancelled", "revoked")

    def __init__(self, cell: Cell, delay: float, message: object, interval: float | None):
        self._cell = cell
        self._message = message
        self._interval = interval
        self.cancelled = False
        """It will not fire again (cancelled, or an ``after`` that fired)."""
        self.revoked = False
        """:meth:`cancel` was called: a message it fired that still waits is dropped."""
        self._handle = cell.loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        if self.cancelled:
            return
        if self._interval is None:
            self.cancelled = True
            self._cell.timers.discard(self)
        else:
            self._handle = self._cell.loop.call_later(self._interval, self._fire)
        self._cell.enqueue(TimerTick(self, self._message), None)

    def cancel(self) -> None:
        """Stop the timer: nothing more is delivered, not even a message it fired that
        still waits in the mailbox."""
        self.revoked = True
        if not self.cancelled:
            self.cancelled = True
            self._handle.cancel()
            self._cell.timers.discard(self)


class Cell:
    """Everything the kernel keeps for one live actor. Users see it only through ActorRef."""

    __slots__ = (
        "_task",
        "_terminated",
        "actor",
        "busy",
        "children",
        "crash",
        "dispatch",
        "loop",
        "mailbox",
        "max_mailbox",
        "name",
        "parent",
        "pending_start",
        "receivers",
        "ref",
        "scheduled",
        "stopping",
        "system",
        "tasks",
        "timers",
    )

    def __init__(
        self,
        system: ActorSystem,
        actor: Actor,
        name: str,
        parent: Cell | None,
    ) -> None:
        self.system = system
        self.actor = actor
        self.name = name
        self.parent = parent
        self.loop = system.loop
        self.mailbox: deque[tuple[object, Reply | None]] = deque()
        self.max_mailbox: int | None = system.mailbox_limit(type(actor))
        self.dispatch: DispatchTable = dispatch_table(type(actor))
        self.receivers = self.dispatch.receivers
        """The dispatch table's receivers by message class (a lookup costs no call)."""
        self.scheduled = False
        self.busy = False
        self.stopping = False
        self.pending_start = True
        self.crash: Exception | None = None
        """What ``started`` raised, when it did (the actor stopped then): its askers get an
        ActorStopped caused by it."""
        self.children: set[Cell] = set()
        self.timers: set[Timer] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self._task: asyncio.Task[Any] | None = None
        self._terminated: asyncio.Future[None] = self.loop.create_future()
        self.ref = ActorRef(self)

    # -- sending -------------------------------------------------------------------------

    def enqueue(self, message: object, reply: Reply | None = None) -> None:
        """Deliver a message (never blocks). Dead or full mailboxes count the loss."""
        if self.stopping:
            self.system.record_dead_letter(self.name, _unwrapped(message))
            if reply is not None:
                reply(None, self._stopped_error("is stopped"))
            return
        if (
            self.max_mailbox is not None
            and len(self.mailbox) >= self.max_mailbox
            and not self.actor.overflowed(_unwrapped(message))
        ):
            self.system.record_dropped(type(self.actor), _unwrapped(message))
            if reply is not None:
                reply(None, MailboxFull(f"mailbox of {self.name} is full ({self.max_mailbox})"))
            return
        self.mailbox.append((message, reply))
        if not self.scheduled and not self.busy:
            self.scheduled = True
            self.loop.call_soon(self.drain, context=KERNEL_CONTEXT)

    def take_now(self, message: object) -> None:
        """Deliver a message without a reply; an idle actor handles it right here.

        Idle: started, nothing in its mailbox, no drain scheduled, no awaiting turn, and no
        actor's turn on the stack (this one's or another's: turns never nest). Then the
        message is handled in the caller's stack, in the kernel's context as a drain would
        handle it, without a mailbox entry, a ``call_soon`` and one more pass of the event
        loop. Otherwise it is queued like :meth:`enqueue` does, behind what is already
        waiting, so the order of an actor's messages is the same either way. The transport
        hands a session its bytes this way: on an idle connection that is every read.
        """
        if self.busy or self.scheduled or self.mailbox or self.pending_start or self.stopping:
            self.enqueue(message, None)
            return
        receiver = self.receivers[type(message)]
        if receiver is None or receiver.is_async:
            self.enqueue(message, None)
            return
        try:
            KERNEL_CONTEXT.run(self._take, receiver.function, message)
        except RuntimeError:
            # The kernel's context is entered: a turn is on the stack, which must end first.
            # (Receivers' own errors never get here: _take handles them.)
            self.enqueue(message, None)

    def _take(self, function: Callable[[Any, Any], Any], message: object) -> None:
        try:
            result = function(self.actor, message)
        except Exception as exc:
            self._failed(message, None, exc)
            return
        if type(result) is CoroutineType:
            self._run_turn_task(message, None, result)

    # -- processing ----------------------------------------------------------------------

    def drain(self) -> None:
        self.scheduled = False
        if self.stopping or self.busy:
            return
        if self.pending_start:
            self.pending_start = False
            if self._run_started():
                return
        mailbox = self.mailbox
        actor = self.actor
        receivers = self.receivers
        for _ in range(DRAIN_BATCH):
            if not mailbox or self.stopping:
                return
            message, reply = mailbox.popleft()
            receiver = receivers[type(message)]
            if receiver is None:
                self.unhandled(message, reply)
                continue
            try:
                result = receiver.function(actor, message)
            except Exception as exc:
                self._failed(message, reply, exc)
                continue
            if receiver.is_async or type(result) is CoroutineType:
                if self._run_turn_task(message, reply, result):
                    return
            elif reply is not None:
                reply(result, None)
        if mailbox and not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.drain, context=KERNEL_CONTEXT)

    def _run_turn_task(self, message: object, reply: Reply | None, coroutine: Any) -> bool:
        """Run a receiver's coroutine as a task; True when the task now owns the actor (its
        later messages wait for it), False for a ``reentrant`` actor."""
        task = self.loop.create_task(coroutine)
        if type(self.actor).reentrant:
            self.tasks.add(task)
            task.add_done_callback(partial(self._finished, message, reply))
            return False
        self.busy = True
        self._task = task
        task.add_done_callback(partial(self._resume, message, reply))
        return True

    def _run_started(self) -> bool:
        """Run the ``started`` hook; True when an async hook now owns the actor."""
        try:
            result = self.actor.started()
        except Exception as exc:
            log.exception("actor %s crashed in started(); stopping it", self.name)
            self.crash = exc
            self.stop()
            return True
        if asyncio.iscoroutine(result):
            self.busy = True
            self._task = self.loop.create_task(result)
            self._task.add_done_callback(self._started_done)
            return True
        return False

    def _started_done(self, task: asyncio.Task[Any]) -> None:
        self.busy = False
        self._task = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("actor %s crashed in started(); stopping it", self.name, exc_info=exc)
            if isinstance(exc, Exception):
                self.crash = exc
            self.stop()
            return
        self._reschedule()

    def _resume(self, message: object, reply: Reply | None, task: asyncio.Task[Any]) -> None:
        self.busy = False
        self._task = None
        self._finished(message, reply, task)
        self._reschedule()

    def _finished(self, message: object, reply: Reply | None, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            if reply is not None:
                reply(None, ActorStopped(f"actor {self.name} stopped while handling {message!r}"))
            return
        exc = task.exception()
        if exc is None:
            if reply is not None:
                reply(task.result(), None)
        elif isinstance(exc, Exception):
            self._failed(message, reply, exc)
        elif reply is not None:
            reply(None, exc)

    def _reschedule(self) -> None:
        if self.mailbox and not self.scheduled and not self.stopping:
            self.scheduled = True
            self.loop.call_soon(self.drain, context=KERNEL_CONTEXT)

    def _failed(self, message: object, reply: Reply | None, exc: Exception) -> None:
        # Resume semantics: the actor keeps running; the asker gets the error.
        if reply is not None:
            reply(None, exc)
        else:
            log.error(
                "actor %s failed handling %s", self.name, type(message).__name__, exc_info=exc
            )

    def unhandled(self, message: object, reply: Reply | None) -> None:
        """A message no receiver declares: the actor's ``unhandled`` hook, counted and
        logged when it raises (its default)."""
        try:
            result = self.actor.unhandled(message)
        except Exception as exc:
            self.system.record_unhandled(self.name, message)
            if reply is not None:
                reply(None, exc)
            return
        if reply is not None:
            reply(result, None)

    # -- lifecycle -----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop now: children first, then timers, then the running receiver, then ``stopped``.

        Messages still queued become dead letters and their askers get ActorStopped.
        """
        if self.stopping:
            return
        self.stopping = True
        for child in list(self.children):
            child.stop()
        for timer in list(self.timers):
            timer.cancel()
        running = [self._task, *self.tasks] if self._task else list(self.tasks)
        for task in running:
            task.cancel()
        while self.mailbox:
            message, reply = self.mailbox.popleft()
            self.system.record_dead_letter(self.name, _unwrapped(message))
            if reply is not None:
                reply(None, self._stopped_error("stopped"))
        try:
            self.actor.stopped()
        except Exception:
            log.exception("actor %s failed in stopped()", self.name)
        if self.parent is not None:
            self.parent.children.discard(self)
        self.system.forget(self)
        if running:
            # Let cancelled receivers unwind before reporting termination.
            gathered = asyncio.gather(
                *(t for t in running if t is not None), return_exceptions=True
            )
            gathered.add_done_callback(lambda _: self._set_terminated())
        else:
            self._set_terminated()

    def _stopped_error(self, what: str) -> ActorStopped:
        """The error of an ask this stopped actor will never answer; when ``started`` raised,
        it says so and is caused by that error (a test sees why, not only that)."""
        crash = self.crash
        if crash is None:
            return ActorStopped(f"actor {self.name} {what}")
        error = ActorStopped(
            f"actor {self.name} {what}: its started() raised {type(crash).__name__}: {crash}"
        )
        error.__cause__ = crash
        return error

    def _set_terminated(self) -> None:
        if self._terminated.done():
            return  # stop() runs once; a second call must not fail
        self._terminated.set_result(None)
        # The cell lets go of its actor: they refer to each other, and as a cycle the actor
        # and all it holds (a session's connection, its buffers, the session) would wait for
        # the garbage collector, in the oldest generation for a long-lived actor, which it
        # walks rarely. Nothing reads the actor of a terminated cell (the mailbox is closed);
        # whoever still holds the actor itself keeps it, and its ``ref`` still works.
        self.actor = cast("Actor", _TERMINATED)
        # Likewise its address, which refers back to it: whoever holds the address keeps
        # both (and gets dead letters); the actor's ``ref`` makes a new, equal one.
        del self.ref

    def address(self) -> ActorRef:
        """A new address of this cell, equal to the one it held while its actor lived."""
        return ActorRef(self)

    async def wait_terminated(self) -> None:
        await asyncio.shield(self._terminated)


class _Terminated:
    """What a terminated cell holds in place of its actor (see ``Cell._set_terminated``)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        raise ActorStopped(f"the actor has terminated: no {name} to read")

    def __repr__(self) -> str:
        return "<terminated actor>"


_TERMINATED = _Terminated()


class ActorRef:
    """The address of an actor: the only way to talk to it.

    ``tell`` is fire-and-forget and never blocks; ``ask`` awaits the receiver's return value.
    """

    __slots__ = ("_cell", "tell", "tell_now")

    def __init__(self, cell: Cell) -> None:
        self._cell = cell
        self.tell: Callable[[object], None] = cell.enqueue
        """Deliver a message; returns at once. A stopped actor counts a dead letter. (The
        cell's own method, not a method calling it: one call less on every tell.)"""
        self.tell_now: Callable[[object], None] = cell.take_now
        """``tell``, but an idle actor handles the message before this returns (see
        :meth:`Cell.take_now`): for a sender that is not an actor's turn, such as a
        transport callback, on the hot path. Order with the actor's other messages is kept.
        The cell's own method, not a method calling it: one call less on every read."""

    @property
    def name(self) -> str:
        return self._cell.name

    @property
    def alive(self) -> bool:
        return not self._cell.stopping

    @property
    def mailbox_depth(self) -> int:
        return len(self._cell.mailbox)

    def request(self, message: object, reply: Reply) -> None:
        """Deliver ``message`` and call ``reply(result, error)`` once it was handled.

        This is ``ask`` without a future, for actors that must not block on the answer:
        the reply usually ``tell``s the result back to the asking actor.
        """
        self._cell.enqueue(message, reply)

    async def ask(self, message: object, timeout: float | None = 5.0) -> Any:
        """Send ``message`` and return what the receiver returns.

        Raises the receiver's exception, :class:`AskTimeout` after ``timeout`` seconds, or
        :class:`ActorStopped` if the actor stops first. Never hangs when a timeout is given.
        An actor asking itself from its own turn gets :class:`AskedItself` at once.
        """
        cell = self._cell
        if cell.busy and cell._task is not None and cell._task is asyncio.current_task():
            raise AskedItself(
                f"{self.name} asked itself for {type(message).__name__} during its own turn: "
                "the answer would wait for the turn to end (call the method, or tell)"
            )
        loop = self._cell.loop
        future: asyncio.Future[Any] = loop.create_future()

        def reply(result: Any, error: BaseException | None) -> None:
            if future.done():
                return
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

        self._cell.enqueue(message, reply)
        if future.done() or timeout is None:
            return await future
        handle = loop.call_later(
            timeout,
            reply,
            None,
            AskTimeout(f"{self.name} did not answer {type(message).__name__} in {timeout}s"),
        )
        try:
            return await future
        finally:
            handle.cancel()

    async def stop(self) -> None:
        """Stop the actor (and its children) and wait until it has terminated."""
        self._cell.stop()
        await self._cell.wait_terminated()

    def __repr__(self) -> str:
        state = "alive" if self.alive else "stopped"
        return f"<ActorRef {self.name} {state}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other._cell is self._cell

    def __hash__(self) -> int:
        return id(self._cell)


def run_coroutine(cell: Cell, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Run a helper coroutine owned by the actor: cancelled when the actor stops."""
    task = cell.loop.create_task(coro)
    cell.tasks.add(task)
    task.add_done_callback(cell.tasks.discard)
    return task


def _unwrapped(message: object) -> object:
    """The message itself, out of a timer's :class:`TimerTick` (for the hooks and counters
    that name it: ``overflowed``, dropped and dead letters). Not on the hot path."""
    return message.message if type(message) is TimerTick else message
