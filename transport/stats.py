"""Counters an acceptor keeps about its connections.

They are plain integers on a mutable dataclass, updated on the event loop by the listener, so
reading them costs nothing and needs no lock; a metrics reporter samples them when it likes
(e.g. ``acceptor_connected_clients`` is ``stats.active``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class AcceptorStats:
    """Live counters of one acceptor.

    ``accepted``: connections handed to ``on_connection`` since start (a WebSocket counts
    once its upgrade completed). ``active``: of those, the ones still open.
    ``slow_reader_disconnects``: connections aborted because their write buffer grew past
    ``ConnectionLimits.max_write_buffer``. ``opening``: sockets accepted and not handed over
    yet (a WebSocket upgrade in progress). ``refused``: sockets closed at accept because the
    ``admit`` check of ``start`` said no. ``proxy_refused``: sockets closed before a valid
    PROXY header (malformed, late, or from a peer outside the trusted networks), with
    ``proxy_protocol`` on (:mod:`transport.proxygate`).
    """

    accepted: int = 0
    active: int = 0
    slow_reader_disconnects: int = 0
    opening: int = 0
    refused: int = 0
    proxy_refused: int = 0
