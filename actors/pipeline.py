"""Before- and after-handler middlewares (Pitaya's handler pipelines).

Hooks run in the handler actor, in registration order, around every route method::

    async def require_login(session: Session, route: str, body: Any) -> Any:
        if session.uid is None and route != "room.login":
            raise PitayaError("PIT-401", "login first")
        return body

    async def stamp(session, route, response, error):
        if error is None and isinstance(response, dict):
            response = {**response, "served_by": "eu-1"}
        return response, error

    app.pipeline.before(require_login)
    app.pipeline.after(stamp)

``route`` is the route as this server names it: ``service.method`` for a client's message to
this server, however the client spelled it (``room.login`` or ``game.room.login``), and
``serverType.service.method`` for a message a frontend forwarded here (a backend's routes).
A before-hook returns the (possibly transformed) body or raises a :class:`PitayaError` that the
client receives. An after-hook returns ``(response, error)``; it may turn an error into a
response or the other way round. Hooks may be plain functions or coroutines.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from actors.errors import InternalError, PitayaError

if TYPE_CHECKING:
    from actors.session import Session

BeforeHook = Callable[["Session", str, Any], Any | Awaitable[Any]]
AfterHook = Callable[
    ["Session", str, Any, PitayaError | None],
    tuple[Any, PitayaError | None] | Awaitable[tuple[Any, PitayaError | None]],
]


class Pipeline:
    """The ordered before/after hooks of one app."""

    def __init__(self) -> None:
        self._before: list[BeforeHook] = []
        self._after: list[AfterHook] = []
        self.active = False
        """False while no hook is registered: the handler then skips the pipeline entirely.
        An attribute, not a property: it is read for every message."""

    def before(self, hook: BeforeHook) -> BeforeHook:
        """Register a before-hook (usable as a decorator)."""
        self._before.append(hook)
        self.active = True
        return hook

    def after(self, hook: AfterHook) -> AfterHook:
        """Register an after-hook (usable as a decorator)."""
        self._after.append(hook)
        self.active = True
        return hook

    async def run_before(self, session: Session, route: str, body: Any) -> Any:
        for hook in self._before:
            body = hook(session, route, body)
            if inspect.isawaitable(body):
                body = await body
        return body

    async def run_after(
        self, session: Session, route: str, response: Any, error: PitayaError | None
    ) -> tuple[Any, PitayaError | None]:
        for hook in self._after:
            try:
                outcome = hook(session, route, response, error)
                if inspect.isawaitable(outcome):
                    outcome = await outcome
                response, error = outcome
            except PitayaError as exc:
                response, error = None, exc
            except Exception as exc:
                response, error = None, InternalError(f"after-hook failed: {exc}")
        return response, error
