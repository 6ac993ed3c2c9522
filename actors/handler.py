"""Handler actors: the classes whose methods are client routes.

A handler is an actor; each method marked with :func:`handler` is the route
``<service>.<method>`` (and ``<serverType>.<service>.<method>``)::

    class Room(Handler):
        service = "room"

        @handler
        async def join(self, session: Session, body: JoinRequest) -> JoinResponse: ...

        @handler
        def message(self, session: Session, body: dict[str, Any]) -> None:  # notify only
            ...

A method annotated ``-> None`` is notify-only: a *request* to it is answered ``PIT-400``.
The body parameter is optional; its annotation picks the decoding (see ``actors.payload``).
Because a handler is an actor, one instance handles one message at a time: room state needs no
lock. Per-user ordering is kept by the session actor, which sends a user's next message only
when the previous one was handled.
"""

from __future__ import annotations

import inspect
import logging
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

from actors.actor import Actor
from actors.errors import BadRequest, InternalError, PitayaError
from actors.metrics.names import PROCESS_DELAY
from actors.payload import Decoder, decoder_for, encode_result
from actors.tracing import run_in_span
from transport.serializers import Serializer

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from actors.app import App
    from actors.session import Session

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__pitaya_handler__"


@overload
def handler(fn: F) -> F: ...
@overload
def handler(*, name: str | None = None) -> Callable[[F], F]: ...


def handler(fn: Any = None, *, name: str | None = None) -> Any:
    """Mark a method of a :class:`Handler` (or ``Remote``) as a route.

    ``name`` overrides the route's method part (default: the Python method name).
    """

    def mark(function: F) -> F:
        setattr(function, _MARK, name or function.__name__)
        return function

    return mark(fn) if fn is not None else mark


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """What the framework knows about one route method, resolved once per class."""

    attribute: str
    route_name: str
    notify_only: bool
    takes_body: bool
    decode: Decoder
    request_type: Any
    response_type: Any
    is_async: bool


# Hot path: built per message; not frozen because a frozen dataclass is ~5x slower to
# construct. Treat it as immutable all the same.
@dataclass(slots=True)
class HandleMessage:
    """Session actor (or NATS bridge) -> handler actor: run one route method for one message.

    ``serializer`` overrides the app's (user RPCs travel as msgpack between servers).
    """

    spec: MethodSpec
    route: str
    session: Session
    data: bytes
    notify: bool
    serializer: Serializer | None = None
    received_ns: int = 0
    """``time.monotonic_ns()`` when the client message arrived, for the process-delay
    metric; 0 when metrics are off."""
    span: Span | None = None
    """The tracing span of this call (None when tracing is off): current while it runs."""


class Handler(Actor):
    """Base class of handler actors. Set ``service`` (default: class name, first letter lower)."""

    service: ClassVar[str | None] = None
    app: App
    """The app hosting this handler (serializer, sessions, groups, RPC); set before started."""

    @classmethod
    def service_name(cls) -> str:
        if cls.service:
            return cls.service
        return cls.__name__[:1].lower() + cls.__name__[1:]

    @classmethod
    def method_specs(cls) -> dict[str, MethodSpec]:
        """Route method name -> spec, built once per class."""
        cached: dict[str, MethodSpec] | None = cls.__dict__.get("_method_specs")
        if cached is None:
            cached = _collect_specs(cls)
            cls._method_specs = cached  # type: ignore[attr-defined]
        return cached

    def on_handle_message(self, msg: HandleMessage) -> Any:
        """Decode, run the pipeline and the method, encode. May return a coroutine."""
        if msg.span is not None:
            return run_in_span(msg.span, self._handle_message, msg)
        return self._handle_message(msg)

    def _handle_message(self, msg: HandleMessage) -> Any:
        app = self.app
        if msg.received_ns:
            app.metrics.report_summary(
                PROCESS_DELAY,
                {"route": msg.route, "type": "handler"},
                time.monotonic_ns() - msg.received_ns,
            )
        spec = msg.spec
        if spec.notify_only and not msg.notify:
            raise BadRequest(
                f"route {msg.route} is notify-only: send a notify, not a request",
                {"route": msg.route},
            )
        serializer = msg.serializer or app.serializer
        args: tuple[Any, ...] = ()
        if spec.takes_body:
            args = (spec.decode(msg.data, serializer),)
        pipeline = app.pipeline
        if pipeline.active or spec.is_async:
            return self._run_async(msg, spec, args)
        try:
            result = getattr(self, spec.attribute)(msg.session, *args)
        except PitayaError:
            raise
        except Exception as exc:
            raise _internal(msg.route, exc) from exc
        return self._encode(msg, result)

    async def _run_async(self, msg: HandleMessage, spec: MethodSpec, args: tuple[Any, ...]) -> Any:
        pipeline = self.app.pipeline
        result: Any = None
        error: PitayaError | None = None
        try:
            if args:
                args = (await pipeline.run_before(msg.session, msg.route, args[0]),)
            else:
                await pipeline.run_before(msg.session, msg.route, None)
            result = getattr(self, spec.attribute)(msg.session, *args)
            if inspect.isawaitable(result):
                result = await result
        except PitayaError as exc:
            error = exc
        except Exception as exc:
            error = _internal(msg.route, exc)
        if pipeline.active:
            result, error = await pipeline.run_after(msg.session, msg.route, result, error)
        if error is not None:
            raise error
        return self._encode(msg, result)

    def _encode(self, msg: HandleMessage, result: Any) -> bytes | None:
        if msg.notify:
            return None
        if result is None:
            # Pitaya's rule: a request must be answered with something.
            raise PitayaError("PIT-000", "reply must not be null", {"route": msg.route})
        return encode_result(result, msg.serializer or self.app.serializer)


class Remote(Handler):
    """Base class of remote actors: their routes serve user RPCs, never clients.

    Declared like handlers; the first parameter is the caller's session (read-only, None for
    an RPC made outside a session)::

        class RoomRemote(Remote):
            service = "roomremote"

            @handler
            def count(self, caller: Session | None, body: Any) -> int:
                return len(self.members)

        total = await app.rpc("room.roomremote.count", {})
    """


def _internal(route: str, exc: Exception) -> InternalError:
    log.error("handler %s failed", route, exc_info=exc)
    error = InternalError(str(exc) or type(exc).__name__)
    error.metadata["route"] = route
    return error


def _collect_specs(cls: type) -> dict[str, MethodSpec]:
    specs: dict[str, MethodSpec] = {}
    for attribute in dir(cls):
        function = getattr(cls, attribute, None)
        route_name = getattr(function, _MARK, None)
        if route_name is None or function is None:
            continue
        params = list(inspect.signature(function).parameters.values())[1:]  # drop self
        if not params:
            raise TypeError(f"{cls.__name__}.{attribute} must accept the session")
        if len(params) > 2:
            raise TypeError(f"{cls.__name__}.{attribute} takes (session[, body]), not more")
        hints = typing.get_type_hints(function)
        body_type = hints.get(params[1].name, Any) if len(params) == 2 else None
        returns = hints.get("return", Any)
        specs[route_name] = MethodSpec(
            attribute=attribute,
            route_name=route_name,
            notify_only=returns is type(None),
            takes_body=len(params) == 2,
            decode=decoder_for(body_type),
            request_type=body_type,
            response_type=returns,
            is_async=inspect.iscoroutinefunction(function),
        )
    return specs
