"""What arrives for this server between serving its RPC subject and discovery granting its id.

A server serves its subject before it registers: peers that see its entry in discovery must
reach it (over gRPC they read from the entry how). Until discovery grants the id, though,
that subject may be a live server's (a second server started with its id), and NATS hands
each request to every subscriber: this one would run that server's requests too, or answer
them first. So what arrives meanwhile waits here. Registered, it goes to the bridge in the
order it came (:meth:`JoinGate.open`); refused, it is dropped unanswered (the id's holder
answers), and so is what comes after (closing, NATS delivers what is pending)::

    gate = JoinGate(on_dropped=lambda: None)
    gate.deliver(REQUEST, data, respond)  # held
    gate.open(bridge.tell)  # told now, in order; later messages go straight through
"""

from __future__ import annotations

from collections.abc import Callable

from actors.cluster.bridge import MAX_WAITING_BYTES, Inbound
from actors.cluster.rpc import Respond

MAX_HELD_INBOUND = 10_000
"""RPC messages held while the server registers in discovery; past it, or past
:data:`MAX_HELD_BYTES`, they are dropped unanswered (counted: Pitaya's
``rpc_server_dropped_messages``)."""
MAX_HELD_BYTES = MAX_WAITING_BYTES
"""Bytes of the messages held meanwhile: a message may be as large as NATS takes (1 MiB by
default, up to 64 MiB), so their number alone bounds nothing (the bridge's bound for the
bodies that wait for their turn)."""


class JoinGate:
    """Holds inbound RPC messages until the registration's outcome; a
    :data:`actors.cluster.rpc.DeliverInbound` (:meth:`deliver`).

    ``on_dropped`` is called for each message dropped past the bounds (not for those
    dropped after a refusal: they were never this server's)."""

    __slots__ = ("_held", "_held_bytes", "_on_dropped", "_refused", "_tell")

    def __init__(self, on_dropped: Callable[[], None]) -> None:
        self._held: list[Inbound] = []
        self._held_bytes = 0
        self._on_dropped = on_dropped
        self._refused = False
        self._tell: Callable[[Inbound], None] | None = None
        """The bridge's mailbox, once the id is granted."""

    def deliver(self, kind: str, data: bytes, respond: Respond | None) -> None:
        tell = self._tell
        if tell is not None:
            tell(Inbound(kind, data, respond))
        elif self._refused:
            pass
        elif len(self._held) < MAX_HELD_INBOUND and self._held_bytes + len(data) <= MAX_HELD_BYTES:
            self._held.append(Inbound(kind, data, respond))
            self._held_bytes += len(data)
        else:
            self._on_dropped()

    def open(self, tell: Callable[[Inbound], None]) -> None:
        """The id is this server's: what was held goes to ``tell`` in order, and so does
        everything after it."""
        if self._refused:
            raise RuntimeError("the join gate was refused: it cannot open")
        held, self._held = self._held, []
        self._tell = tell
        for inbound in held:
            tell(inbound)

    def refuse(self) -> None:
        """The id is not this server's (or the join failed): what was held, and what comes
        later, is dropped unanswered."""
        self._refused = True
        self._tell = None
        self._held.clear()
