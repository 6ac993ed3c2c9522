"""Tiny handlers for in-process cluster tests: ``room.probe.*`` and ``room.proberemote.ping``."""

from __future__ import annotations

import asyncio
from typing import Any

from actors.errors import PitayaError
from actors.handler import Handler, Remote, handler
from actors.session import Session


class Probe(Handler):
    """``room.probe.*`` on a backend: who answered, a handler error, a slow answer."""

    service = "probe"

    @handler
    def whoami(self, session: Session) -> dict[str, str]:
        return {"server_id": self.app.server_id}

    @handler
    def fail(self, session: Session) -> dict[str, str]:
        raise PitayaError("PIT-403", "not allowed")

    @handler
    async def slow(self, session: Session) -> dict[str, str]:
        await asyncio.sleep(2.0)
        return {}


class ProbeRemote(Remote):
    """``room.proberemote.ping``: a user RPC target."""

    service = "proberemote"

    @handler
    def ping(self, caller: Session | None, body: Any) -> dict[str, bool]:
        return {"pong": True}
