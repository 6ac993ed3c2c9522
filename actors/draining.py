"""Session draining: stop taking players, let the connected ones finish, then stop.

What a deploy wants from a game server: on SIGTERM the server stops accepting connections and
leaves service discovery, but keeps serving the players already connected until they leave or
``drain_timeout`` passes, logging how many remain. A second SIGTERM/SIGINT ends the wait.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from actors.logs import ServerLog

if TYPE_CHECKING:
    from actors.tally import Tally

_log = logging.getLogger(__name__)

PROGRESS_EVERY = 5.0
"""Seconds between two progress lines while draining."""


async def drain_sessions(
    connections: Tally, drain_timeout: float, server_id: str, skip: asyncio.Event
) -> None:
    """Wait until no client is connected (``connections`` at zero), ``skip`` is set, or
    ``drain_timeout`` passes, logging progress. The caller has already stopped accepting and
    left discovery."""
    log = ServerLog(_log, server_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + drain_timeout
    log.info(
        "draining: %d session(s) connected, waiting up to %ss (signal again to stop now)",
        connections.count,
        drain_timeout,
    )
    empty = asyncio.ensure_future(connections.zero.wait())
    skipped = asyncio.ensure_future(skip.wait())
    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning(
                    "drain timeout: %d session(s) still connected",
                    connections.count,
                )
                return
            done, _ = await asyncio.wait(
                {empty, skipped},
                timeout=min(PROGRESS_EVERY, remaining),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if empty in done:
                log.info("drained: every session left")
                return
            if skipped in done:
                log.info(
                    "drain skipped by a second signal: %d session(s) connected",
                    connections.count,
                )
                return
            log.info("draining: %d session(s) still connected", connections.count)
    finally:
        empty.cancel()
        skipped.cancel()
