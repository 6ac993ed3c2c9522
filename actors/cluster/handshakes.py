"""Handshakes on backends: sent once per session and server, not with every message.

A backend handler reads ``session.handshake`` (the client's handshake ``{"sys", "user"}``),
but the handshake may be large (up to ``max_handshake_size``) and a session sends many
small messages. So a frontend of ours sends it in the request metadata (``py.session``,
``actors.cluster.codec``) only with the session's first message to each backend server (the
servers it has sent to are the keys of ``Session.served_by``); later requests say
"handshake omitted" (``SessionSnapshot.handshake_omitted``). The backend keeps each
handshake it received here, by (frontend id, session id), until the session's close event
(which our frontends send to the backends that served the session) or until it is evicted
(least recently used first, past :data:`MAX_HANDSHAKES` entries).

When a request says "omitted" and the handshake is not here (evicted, this backend restarted,
a gRPC call overtook the first one, a user RPC from another backend), the backend asks the
frontend once with the ``pysys.handshake`` control (``actors.cluster.control``) before the
handler runs, and keeps the answer. Measured with a 900 KiB handshake (issue 18.4): NATS
bytes per forwarded 22-byte notify went from ~0.9 MB to ~0.2 KB after the first message.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

MAX_HANDSHAKES = 10_000
"""Handshakes a backend keeps (with the default ``max_handshake_size`` of 8 KiB: at most
about 80 MiB, far less for real handshakes)."""


class HandshakeCache:
    """Handshakes by (frontend id, session id), least recently used evicted first."""

    def __init__(self, max_entries: int = MAX_HANDSHAKES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, int], dict[str, Any]] = OrderedDict()

    def get(self, frontend_id: str, session_id: int) -> dict[str, Any] | None:
        key = (frontend_id, session_id)
        handshake = self._entries.get(key)
        if handshake is not None:
            self._entries.move_to_end(key)
        return handshake

    def put(self, frontend_id: str, session_id: int, handshake: dict[str, Any]) -> None:
        entries = self._entries
        key = (frontend_id, session_id)
        entries[key] = handshake
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    def drop(self, frontend_id: str, session_id: int) -> None:
        """The session closed: its handshake is not needed any more."""
        self._entries.pop((frontend_id, session_id), None)

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["MAX_HANDSHAKES", "HandshakeCache"]
