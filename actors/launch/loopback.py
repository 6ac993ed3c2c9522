"""Thespian's sockets on the loopback interface only.

Thespian's TCP transport binds every socket of an actor system (its admin, its logger, each
actor) to all interfaces, and unpickles whatever arrives on them: anyone who could reach one
of those ports from another machine ran code as the launcher's user. A deployment's actors
all run on this machine and need no other interface. ``THESPIAN_BASE_IPADDR`` makes them
address each other on 127.0.0.1; Thespian has no setting for the address it binds (an
address meant to be reachable binds ``''``), so :func:`keep_thespian_local` moves that to
127.0.0.1 too. Call it before an actor system is created or joined: Thespian forks its
processes from the one that creates the system, and they inherit it; a new interpreter
(``python -m actors.launch.orphans``) calls it again.
"""

from __future__ import annotations

import functools
import os
from typing import Any

__all__ = ["LOOPBACK", "keep_thespian_local"]

LOOPBACK = "127.0.0.1"


def keep_thespian_local() -> None:
    """Make this process's Thespian systems (and those it forks) bind and talk on 127.0.0.1
    only. Idempotent."""
    os.environ["THESPIAN_BASE_IPADDR"] = LOOPBACK
    from thespian.system.transport import IPBase

    original = IPBase.IPActorAddress.__init__
    if getattr(original, "keeps_local", False):
        return

    @functools.wraps(original)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        host, *rest = self.bindname
        if host in ("", "0.0.0.0"):
            self.bindname = (LOOPBACK, *rest)

    init.keeps_local = True  # type: ignore[attr-defined]
    IPBase.IPActorAddress.__init__ = init
