"""The handler side of Pitaya's response-time metric: from a message's arrival to its answer.

Reported with ``type="handler"`` by the server whose client sent the message (the frontend's
session actor, for local and forwarded routes alike) and by the server that ran the handler
of a forwarded message (its RPC bridge), so a backend's load is visible on the backend too.
The caller's side of an RPC is ``actors.metrics.rpc``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from actors.errors import PitayaError, RouteNotFound, as_pitaya_error
from actors.metrics.names import RESPONSE_TIME, UNKNOWN_ROUTE

if TYPE_CHECKING:
    from actors.metrics.reporter import Metrics

HANDLER = "handler"
"""The ``type`` label of handler timings (Pitaya's)."""
REMOTE = "remote"
"""The ``type`` label of user RPCs timed by the server that ran them (Pitaya times them on
the caller's side only, as ``rpc``)."""


def report_handler_time(
    metrics: Metrics,
    route: str,
    received_ns: int,
    error: BaseException | None,
    kind: str = HANDLER,
) -> None:
    """Report ``response_time_ns{type="handler"}`` for a message received at
    ``received_ns`` (``time.monotonic_ns()``) and answered now.

    ``route`` is the label: the route as sent, or ``UNKNOWN_ROUTE`` for one not served, so
    made-up routes cannot create unbounded time series (the caller decides). ``kind`` is
    the ``type`` label: :data:`HANDLER`, or :data:`REMOTE` for a user RPC served here.
    """
    metrics.report_summary(
        RESPONSE_TIME,
        {
            "route": route,
            "status": "ok" if error is None else "failed",
            "type": kind,
            "code": "" if error is None else as_pitaya_error(error).code,
        },
        time.monotonic_ns() - received_ns,
    )


FORWARDED_ROUTES_KEPT = 4096
"""Distinct forwarded routes a frontend labels its timings with; past it, new ones are
``unknown`` (a game has hundreds of routes, not thousands)."""


class ForwardedRoutes:
    """The forwarded routes a frontend's timings are labelled with: those another server
    took (answered, or failed in its handler), never more than :data:`FORWARDED_ROUTES_KEPT`.

    A client names any route it likes: a made-up one that a server answers PIT-404 or that
    fails here (no server, a timeout, the cluster down) is labelled ``unknown``, so it opens
    no time series of its own, and each series holds quantile windows."""

    __slots__ = ("_routes",)

    def __init__(self) -> None:
        self._routes: set[str] = set()

    def label(self, route: str, error: BaseException | None) -> str:
        """The label of a forwarded ``route`` answered with ``error`` (None: success)."""
        routes = self._routes
        if route in routes:
            return route
        # Taken by the server it was sent to: an error that server answered is a PitayaError
        # as decoded, never one of the subclasses raised here for a failed call.
        taken = error is None or (
            type(error) is PitayaError and error.code != RouteNotFound.default_code
        )
        if taken and len(routes) < FORWARDED_ROUTES_KEPT:
            routes.add(route)
            return route
        return UNKNOWN_ROUTE
