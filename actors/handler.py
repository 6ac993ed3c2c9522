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

Route methods run through ``actors.invocation``: a synchronous method runs to its end with
nothing interleaved; an ``async`` one runs as a task, concurrently with other sessions'
messages, while one session's messages are handled in the order sent. State that must change
one message at a time across ``await``s (a room, a match) lives in an actor of its own that
the handler ``ask``s (``samples/chat/room.py``). A handler is still an actor: it has
``started``, timers and children, and tests can ``ask`` it a :class:`Call`.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, overload

from actors.actor import Actor
from actors.errors import RouteNotFound
from actors.payload import Decoder, decoder_for
from actors.session import Session

if TYPE_CHECKING:
    from actors.config import Config
    from actors.groups import GroupService
    from actors.kernel import ActorRef
    from actors.sessions.registry import SessionRegistry
    from transport.serializers import Serializer

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
    decode_ignoring_unknown: Decoder
    """``decode``, dropping a dataclass body's keys that are no field instead of refusing
    them (the app's ``unknown_body_fields="ignore"``)."""
    request_type: Any
    response_type: Any
    is_async: bool


@dataclass(frozen=True, slots=True)
class Call:
    """Ask a handler actor to run one route method with a Python body, no bytes involved.

    The way to test a handler without an app or sockets::

        async with ActorSystem() as system:
            room = system.spawn(Room)
            session = TestSession(1)  # actors.testing
            assert await room.ask(Call("join", session, JoinRequest("ann"))) == {...}

    The answer is the method's return value as it is (not encoded); its exception is raised.
    Clients' messages do not take this way: they run through ``actors.invocation``.
    """

    method: str
    session: Session | None
    body: Any = None


class RoutedMethod(Protocol):
    """A route served here, as ``sys.docs`` reads it (``actors.invocation.LocalRoute``)."""

    @property
    def spec(self) -> MethodSpec: ...


class ServerEntry(Protocol):
    """A server of the cluster as discovery publishes it, as :class:`HandlerApp`'s server
    queries give it (``actors.cluster.discovery.ServerInfo`` is one)."""

    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def frontend(self) -> bool: ...
    @property
    def hostname(self) -> str: ...
    @property
    def metadata(self) -> Mapping[str, str]: ...


class HandlerApp(Protocol):
    """What a handler may use of the server it runs in (``self.app``): ``actors.app.App``
    is one (mypy checks it in ``actors.app``). Declared here so handlers stay below the app
    in the layers; a test may give a bare handler any object with what it uses."""

    @property
    def server_id(self) -> str: ...
    @property
    def server_type(self) -> str: ...
    @property
    def config(self) -> Config: ...
    @property
    def serializer(self) -> Serializer: ...
    @property
    def sessions(self) -> SessionRegistry: ...
    @property
    def groups(self) -> GroupService: ...
    @property
    def local_routes(self) -> Mapping[str, RoutedMethod]: ...

    def known_server_types(self) -> set[str]:
        """This server's type and, in cluster mode, every type in discovery."""
        ...

    def server(self) -> ServerEntry: ...
    def servers(self) -> Sequence[ServerEntry]: ...
    def servers_by_type(self, server_type: str) -> Mapping[str, ServerEntry]: ...
    def server_by_id(self, server_id: str) -> ServerEntry | None: ...

    async def rpc(
        self,
        route: str,
        arg: Any = None,
        *,
        session: Session | None = None,
        timeout: float | None = None,
        reply: type[Any] | None = None,
    ) -> Any: ...

    async def rpc_to(
        self,
        server_id: str,
        route: str,
        arg: Any = None,
        *,
        session: Session | None = None,
        timeout: float | None = None,
        reply: type[Any] | None = None,
    ) -> Any: ...

    def push_to_users(
        self, route: str, body: Any, uids: list[str], *, frontend_type: str | None = None
    ) -> None: ...

    async def send_push_to_users(
        self, route: str, body: Any, uids: list[str], *, frontend_type: str | None = None
    ) -> list[str]: ...

    async def send_kick_to_users(
        self, uids: list[str], reason: str = "", *, frontend_type: str | None = None
    ) -> list[str]: ...

    def encode_push_packet(self, route: str, payload: bytes) -> bytes: ...
    def handler_ref(self, service: str) -> ActorRef: ...
    def ready_now(self) -> bool: ...
    def request_stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Ready:
    """Answered once the handler's ``started`` hook has finished (the app waits for every
    handler before it serves: route methods do not go through the mailbox)."""


class Handler(Actor):
    """Base class of handler actors. Set ``service`` (default: class name, first letter lower).

    Route methods run concurrently across sessions (an ``async`` method that awaits does not
    hold other sessions' messages) and in order per session; see ``actors.invocation``.
    Keep state that needs one-at-a-time changes in an actor of its own.
    """

    service: ClassVar[str | None] = None
    app: HandlerApp
    """The app hosting this handler (serializer, sessions, groups, RPC); set before
    ``started`` when the app spawns it. A handler spawned bare in an ``ActorSystem`` (tests)
    has none unless the test sets it."""

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

    def __getattr__(self, name: str) -> Any:
        if name == "app":
            raise AttributeError(
                f"{type(self).__name__} has no app: it was spawned outside an App. In a "
                "test, spawn it with actors.testing.spawn_handler(system, "
                f"{type(self).__name__}, app=...), or give the handler what it uses."
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def on_ready(self, msg: Ready) -> None:
        return None

    async def on_call(self, msg: Call) -> Any:
        spec = self.method_specs().get(msg.method)
        if spec is None:
            raise RouteNotFound(f"{self.service_name()}.{msg.method}")
        args = (msg.body,) if spec.takes_body else ()
        wanted = spec.request_type
        if (
            spec.takes_body
            and isinstance(wanted, type)
            and dataclasses.is_dataclass(wanted)
            and not isinstance(msg.body, wanted)
        ):  # a test's mistake, said as such (the method would fail on the body's attributes)
            raise TypeError(
                f"Call({msg.method!r}) takes a {wanted.__name__} body, not a "
                f"{type(msg.body).__name__}: a Call's body reaches the method as it is"
            )
        result = getattr(self, spec.attribute)(msg.session, *args)
        if inspect.isawaitable(result):
            result = await result
        return result


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


def check_service(handler_class: type[Handler], registered: list[type[Handler]], kind: str) -> None:
    """Refuse, when it is registered, a class that could not serve: one whose service name a
    class of ``registered`` has already (two actors cannot take one name: the server would
    fail to start), one without any route method, or one whose service or method name has
    a dot (no route could name it)."""
    name = handler_class.service_name()
    split = "routes are [serverType.]service.method, split at the dots, so no route would reach it"
    if "." in name:
        raise ValueError(
            f"{handler_class.__name__}'s service name {name!r} has a dot: {split} "
            f"(name it {name.replace('.', '_')!r}, say)"
        )
    if any(cls.service_name() == name for cls in registered):
        raise ValueError(f"a {kind} for service {name!r} is already registered")
    specs = handler_class.method_specs()
    if not specs:
        raise ValueError(f"{handler_class.__name__} declares no @handler method")
    for spec in specs.values():
        if "." in spec.route_name:
            raise ValueError(
                f"{handler_class.__name__}.{spec.attribute} serves the method name "
                f"{spec.route_name!r}, which has a dot: {split}"
            )


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
        taken = specs.get(route_name)
        if taken is not None:
            raise TypeError(
                f"{cls.__name__}.{taken.attribute} and {cls.__name__}.{attribute} both serve "
                f"the route {route_name!r}: give one another name (@handler(name=...))"
            )
        hints = typing.get_type_hints(function)
        first = params[0].name
        if first in hints and _not_a_session(hints[first]):
            raise TypeError(
                f"{cls.__name__}.{attribute}: its first parameter, {first!r}, receives the "
                f"session, but it is annotated {_type_name(hints[first])}; the body comes "
                f"second: def {attribute}(self, session, body)"
            )
        body_type = hints.get(params[1].name, Any) if len(params) == 2 else None
        returns = hints.get("return", Any)
        specs[route_name] = MethodSpec(
            attribute=attribute,
            route_name=route_name,
            notify_only=returns is type(None),
            takes_body=len(params) == 2,
            decode=decoder_for(body_type),
            decode_ignoring_unknown=decoder_for(body_type, ignore_unknown=True),
            request_type=body_type,
            response_type=returns,
            is_async=inspect.iscoroutinefunction(function),
        )
    return specs


def _not_a_session(hint: Any) -> bool:
    """Whether a parameter annotated ``hint`` cannot be given a session: a body's type on
    the first parameter means the session parameter was left out (the body would be handed
    a session, and nothing would say so)."""
    if hint is Any or hint is object:
        return False
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return all(_not_a_session(arg) for arg in typing.get_args(hint) if arg is not type(None))
    if origin is not None:  # dict[str, Any], list[int]...
        return True
    if isinstance(hint, type):
        return not issubclass(hint, Session) and not getattr(hint, "_is_protocol", False)
    return False  # a type variable, say: not ours to judge


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else repr(hint)
