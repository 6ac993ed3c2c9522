"""Session draining: stop taking players, let the connected ones finish, then stop.

What a deploy wants from a game server: on SIGTERM the server stops accepting connections and
leaves service discovery, but keeps serving the players already connected until they leave or
``drain_timeout`` passes, logging how many remain. A second SIGTERM/SIGINT ends the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from actors.gateway import StopAccepting

if TYPE_CHECKING:
    from actors.app import App

log = logging.getLogger(__name__)

PROGRESS_EVERY = 5.0
"""Seconds between two progress lines while draining."""


async def drain_sessions(app: App, skip: asyncio.Event) -> None:
    """Wait until no client is connected, ``skip`` is set, or the drain timeout passes."""
    for gateway in app._gateways:
        with contextlib.suppress(Exception):
            await gateway.ask(StopAccepting(), timeout=5)
    if app.cluster is not None:
        await app.cluster.leave()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + app.config.drain_timeout
    log.info(
        "[%s] draining: %d session(s) connected, waiting up to %ss (signal again to stop now)",
        app.server_id,
        app.connection_count,
        app.config.drain_timeout,
    )
    empty = asyncio.ensure_future(app.connections.zero.wait())
    skipped = asyncio.ensure_future(skip.wait())
    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning(
                    "[%s] drain timeout: %d session(s) still connected",
                    app.server_id,
                    app.connection_count,
                )
                return
            done, _ = await asyncio.wait(
                {empty, skipped},
                timeout=min(PROGRESS_EVERY, remaining),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if empty in done:
                log.info("[%s] drained: every session left", app.server_id)
                return
            if skipped in done:
                log.info(
                    "[%s] drain skipped by a second signal: %d session(s) connected",
                    app.server_id,
                    app.connection_count,
                )
                return
            log.info(
                "[%s] draining: %d session(s) still connected", app.server_id, app.connection_count
            )
    finally:
        empty.cancel()
        skipped.cancel()
