"""Values that travel with a request from server to server: Pitaya's propagated context.

Go Pitaya carries a map of values in every RPC's metadata (``pitaya.AddToPropagateCtx(ctx,
key, value)`` on the caller, ``pitaya.GetFromPropagateCtx(ctx, key)`` on the callee), and a
server passes on what it received to the RPCs it makes while handling it: a Go frontend
gives each client message a ``request.id`` that every server on the message's path logs and
tags its spans with, and a game adds its own keys (a tenant, a region, metric tags under
``metric-tags``). A server that dropped them in the middle of a path cut that thread for
every server after it, Go servers included.

Here a handler (or remote) reads what its request brought with :func:`propagated` or
:func:`get_propagated`, adds with :func:`add_to_propagated`, and every user RPC it makes
(``app.rpc``, ``app.rpc_to``) carries them on, as a Go server does::

    @handler
    async def buy(self, session, body):
        tenant = get_propagated("tenant")          # set by whoever called us
        add_to_propagated("order", body["order"])  # seen by the RPCs made from here on
        item = Item(id=body["item"])               # a protobuf message
        return await self.app.rpc("shop.shopremote.buy", item, reply=Receipt)

The values are a context variable: set for the handler's own call (and the tasks it starts),
never for another request's. Keys a server writes itself on each hop (:data:`PER_HOP_KEYS`:
the caller's id and type, its timeout, Go's timing of the call) and our own ``py.*`` keys
are not propagated values: they describe one hop, not the request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, TypeVar

R = TypeVar("R")

PER_HOP_KEYS = frozenset({"peer.id", "peer.service", "reqTimeout", "req-start-time", "req-route"})
"""Metadata keys that describe one RPC, not the request (Go Pitaya's): the caller's id and
type and its timeout, which ``actors.cluster.codec`` writes for each call (a server's own
RPC timeout governs its calls), and Go's timing of the call. The trace carrier
(``otel-span``) is propagated, as Go does: a server that does not trace passes its caller's
trace on, and one that traces replaces it with its own span's."""
OWN_PREFIX = "py."
"""Our own metadata keys start with it (``actors.cluster.codec``): not propagated values."""

EMPTY: Mapping[str, Any] = MappingProxyType({})

_VALUES: ContextVar[Mapping[str, Any]] = ContextVar("pitaya_propagated", default=EMPTY)


def propagated_of(metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    """The propagated values among a request's ``metadata`` (all but the per-hop keys and
    ours)."""
    values = {
        key: value
        for key, value in metadata.items()
        if key not in PER_HOP_KEYS and not key.startswith(OWN_PREFIX)
    }
    return values if values else EMPTY


def propagated() -> Mapping[str, Any]:
    """The values propagated to the current handler (read only; empty outside one, and for a
    client's message, which carries none)."""
    return MappingProxyType(dict(_VALUES.get()))


def get_propagated(key: str, default: Any = None) -> Any:
    """One propagated value (Go Pitaya's ``GetFromPropagateCtx``), ``default`` when absent."""
    return _VALUES.get().get(key, default)


def add_to_propagated(key: str, value: Any) -> None:
    """Add (or replace) a value carried by the RPCs the current handler makes from now on (Go
    Pitaya's ``AddToPropagateCtx``). ``value`` must be JSON (it travels as such; a Go callee
    reads numbers as float64). Per-hop keys and ``py.*`` ones are refused (ValueError): the
    framework writes those."""
    if not isinstance(key, str) or not key:
        raise ValueError("a propagated key is a non-empty string")
    if key in PER_HOP_KEYS or key.startswith(OWN_PREFIX):
        raise ValueError(f"{key!r} is written by the framework on each RPC, not propagated")
    _VALUES.set({**_VALUES.get(), key: value})


current: Callable[[], Mapping[str, Any]] = _VALUES.get
"""The propagated values as they are (not copied): for the RPC client to send on, and to
compare with after a synchronous handler (the context variable's own ``get``: no Python frame
on the path of every request)."""


def adopt(values: Mapping[str, Any] | None) -> None:
    """Make ``values`` (a request's) current in the running task, for the rest of it: only
    in a task of the request's own (a task's context is its own copy)."""
    if values:
        _VALUES.set(values)


def restore(values: Mapping[str, Any]) -> None:
    """Make ``values`` (:func:`current` before a synchronous handler ran) current again: it
    ran in its caller's context (an actor's turn: the kernel's, which every turn shares),
    and what it added would have stayed there for every later message."""
    if _VALUES.get() is not values:
        _VALUES.set(values)


def run_with(
    values: Mapping[str, Any] | None, function: Callable[..., R], *args: Any, **kwargs: Any
) -> R:
    """``function(*args, **kwargs)`` with ``values`` as the current propagated values (a
    request's, while its handler is called: a task the handler starts copies them)."""
    if not values and _VALUES.get() is EMPTY:  # most requests: nothing to set
        return function(*args, **kwargs)
    token = _VALUES.set(values or EMPTY)
    try:
        return function(*args, **kwargs)
    finally:
        _VALUES.reset(token)
