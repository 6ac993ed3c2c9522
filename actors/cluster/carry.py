"""Session changes handed from one pipelined message to the next, on a backend.

A frontend may send a session's next message to a backend of ours before the previous one is
answered (pipelining, see ``actors.sessions.actor``). That message carries the session as
the frontend had it when it was sent: without what the previous handler bound or pushed
(``bind``, ``push_to_front``), which reaches the frontend only while that handler runs. So a
pipelined ``login`` then ``whoami`` saw no uid, and two pipelined ``push_to_front`` lost the
first one's data, where the same messages sent one after the other did not.

Here the messages of a session run one after the other (the bridge's sequencer). Each keeps
what its handler pushed to the frontend in a :class:`SessionCarry`, and a message marked
pipelined takes the session from there instead: it sees the session as it would have had
the frontend waited for the previous answer. A record lives while its session has messages
in the sequencer (a message sent after the previous answer carries the frontend's own,
fresher, session).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from actors.cluster.codec import PIPELINED_KEY

if TYPE_CHECKING:
    from actors.cluster.backend_session import BackendSession
    from actors.cluster.codec import RpcRequest
    from actors.invocation import Sequencer


class SessionCarry:
    """What the messages of a session pushed to its frontend, per sequencer key, while the
    ``sequencer`` holds messages of that key."""

    __slots__ = ("_pushed", "_sequencer")

    def __init__(self, sequencer: Sequencer) -> None:
        self._sequencer = sequencer
        self._pushed: dict[Hashable, tuple[str | None, dict[str, Any]]] = {}

    def __len__(self) -> int:
        return len(self._pushed)

    def resume(self, key: Hashable, session: BackendSession, request: RpcRequest) -> None:
        """Before a message's handler runs: if ``request`` was pipelined, ``session`` as the
        earlier messages of its key left it at the frontend (unchanged when none of them
        pushed anything)."""
        if self._pushed and request.metadata.get(PIPELINED_KEY):
            pushed = self._pushed.get(key)
            if pushed is not None:
                session.take_front_state(*pushed)

    def finish(
        self, key: Hashable, session: BackendSession | None, finish: Callable[[], None]
    ) -> None:
        """After a message's handler: keep what it pushed for the next message of its key,
        call ``finish`` (the sequencer's, which may start that message), then forget the
        record once no message of the key is left. ``session``: None for a message refused
        before its handler ran."""
        if session is not None and session.front_changed:
            self._pushed[key] = session.front_state
        finish()
        if self._pushed and key not in self._sequencer:
            self._pushed.pop(key, None)  # this session may have none, while another has
