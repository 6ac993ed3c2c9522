"""Typed dispatch: which method of an actor class receives which message class.

An actor declares what it receives by naming a method ``on_<something>`` and annotating its
message parameter::

    @dataclass(frozen=True, slots=True)
    class Join:
        name: str

    class Room(Actor):
        def on_join(self, msg: Join) -> list[str]: ...

The table is built once per actor class, on its first message (annotations may name classes
defined later in the module), and a message whose class is not in the table is looked up once
through its MRO, then cached. Per message, dispatch is one dict lookup.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RECEIVER_PREFIX = "on_"


@dataclass(frozen=True, slots=True)
class Receiver:
    """A resolved receiver: the plain function and whether it must be awaited."""

    function: Callable[..., Any]
    is_async: bool


class Revocable(typing.Protocol):
    @property
    def revoked(self) -> bool: ...


class TimerTick:
    """A timer's message on its way through the mailbox (``Actor.after``/``every``). It
    reaches the actor's receiver for ``message`` unless its timer was cancelled after it
    fired: a turn's timeout cancelled by the move that beat it, while the timeout already
    waited in the mailbox behind that move, must not arrive after it."""

    __slots__ = ("message", "timer")

    def __init__(self, timer: Revocable, message: object) -> None:
        self.timer = timer
        self.message = message


def _deliver_tick(actor: Any, tick: TimerTick) -> Any:
    if tick.timer.revoked:
        return None
    message = tick.message
    receiver = dispatch_table(type(actor)).receivers[type(message)]
    if receiver is None:  # as the kernel treats any message nothing receives
        actor._cell.unhandled(message, None)
        return None
    return receiver.function(actor, message)


_TICK = Receiver(_deliver_tick, is_async=False)
"""What every actor class receives a :class:`TimerTick` with (a coroutine its receiver
returns is awaited all the same: the kernel checks what a receiver returns)."""


class Receivers(dict[type, "Receiver | None"]):
    """Message class -> receiver (None: it has none), resolved on first use: a class not
    declared takes the receiver of its nearest base that has one, and is remembered. A
    lookup is a plain dict lookup (``receivers[type(message)]``): the kernel makes one per
    message."""

    def __missing__(self, message_class: type) -> Receiver | None:
        if message_class is TimerTick:
            self[message_class] = _TICK
            return _TICK
        found: Receiver | None = None
        for base in message_class.__mro__[1:]:
            receiver = self.get(base)
            if receiver is not None:
                found = receiver
                break
        self[message_class] = found
        return found


class DispatchTable:
    """Message class -> receiver for one actor class."""

    __slots__ = ("_actor_class", "receivers")

    def __init__(self, actor_class: type) -> None:
        self._actor_class = actor_class
        self.receivers = Receivers(_collect(actor_class))
        """What :meth:`lookup` answers, as a mapping (read only)."""

    def lookup(self, message_class: type) -> Receiver | None:
        """The receiver for ``message_class`` or one of its bases, or None."""
        return self.receivers[message_class]

    def message_classes(self) -> list[type]:
        """The message classes declared by the actor class (for docs and errors)."""
        return [
            cls
            for cls, receiver in self.receivers.items()
            if receiver is not None and cls is not TimerTick
        ]


_tables: dict[type, DispatchTable] = {}


def dispatch_table(actor_class: type) -> DispatchTable:
    """The (cached) dispatch table of ``actor_class``."""
    table = _tables.get(actor_class)
    if table is None:
        table = _tables[actor_class] = DispatchTable(actor_class)
    return table


def _collect(actor_class: type) -> dict[type, Receiver | None]:
    table: dict[type, Receiver | None] = {}
    # Walk from the most derived class so that overrides win.
    seen: set[str] = set()
    for klass in actor_class.__mro__:
        for name, member in vars(klass).items():
            if not name.startswith(RECEIVER_PREFIX) or name in seen:
                continue
            seen.add(name)
            if not inspect.isfunction(member):
                continue
            for message_class in _message_classes(member):
                table.setdefault(
                    message_class, Receiver(member, inspect.iscoroutinefunction(member))
                )
    return table


def unannotated_receivers(actor_class: type) -> list[str]:
    """The ``on_*`` methods of ``actor_class`` that take a message but receive none: their
    message parameter has no annotation naming a class (for the error of a message nobody
    receives: the method its author meant is usually one of these)."""
    names: set[str] = set()
    for klass in actor_class.__mro__:
        for name, member in vars(klass).items():
            if not name.startswith(RECEIVER_PREFIX) or not inspect.isfunction(member):
                continue
            if len(inspect.signature(member).parameters) < 2:
                continue
            try:
                if not _message_classes(member):
                    names.add(name)
            except TypeError:  # an annotation that names something undefined
                names.add(name)
    return sorted(names)


def _message_classes(function: Callable[..., Any]) -> list[type]:
    params = list(inspect.signature(function).parameters.values())
    if len(params) < 2:
        return []
    try:
        hints = typing.get_type_hints(function)
    except Exception as exc:  # an annotation that names something undefined
        raise TypeError(
            f"cannot resolve the message annotation of {function.__qualname__}: {exc}"
        ) from exc
    annotation = hints.get(params[1].name)
    if annotation is None or annotation is Any:  # Any is a class since Python 3.11
        return []
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return [arg for arg in typing.get_args(annotation) if isinstance(arg, type)]
    return [annotation] if isinstance(annotation, type) else []
