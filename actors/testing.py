"""Testing your handlers: three ways, from the smallest to the whole server.

1. A handler actor alone, with no app and no bytes: spawn it in an :class:`ActorSystem` and
   ask it a :class:`~actors.handler.Call` with a :class:`TestSession`, which records what the
   handler pushes and whether it kicks::

       async with ActorSystem() as system:
           room = system.spawn(Room)
           session = TestSession(1)
           assert await room.ask(Call("join", session, Join("a"))) == {"members": ["a"]}
           assert session.pushes == [Push("onJoin", {"name": "a"})]

   A handler that uses ``self.app`` (groups, config, RPCs) is spawned with
   :func:`spawn_handler`, given an app that is not started; sessions that share its registry
   receive its group broadcasts::

       app = make_app()
       room = spawn_handler(system, Room, app=app)
       session = TestSession(1, registry=app.sessions)

2. The whole app, driven through the wire protocol in memory (no sockets, no ports), like
   Starlette's ``TestClient``: the client is a real :class:`~transport.client.Client`::

       async with TestClient(app) as client:
           assert await client.request("room.join", {"name": "a"}) == {"members": ["a"]}

3. The whole app on real sockets (TCP and WebSocket on free loopback ports)::

       async with serve(app) as server:
           client = await server.connect()              # or connect(websocket=True)

``TestClient`` and ``serve`` start the app and, on exit, close every client they made and
stop the app gracefully (every actor stopped). Installed with this package, a pytest plugin
(``actors.pytest_plugin``) runs ``async def`` tests with no asyncio settings and offers the
``actor_system`` and ``test_client`` fixtures.

A whole cluster in one process: a :class:`MemoryCluster` gives each app an in-memory discovery
and RPC (``actors.cluster.memory``), so frontends and backends forward, push and call each
other with no NATS, etcd or socket; drive the frontends with ``TestClient``::

    network = MemoryCluster()
    room = cluster_app(network, "room")  # App(mode="cluster", ...) on the network's seams
    connector = cluster_app(network, "connector", frontend=True)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from actors.app import App
from actors.cluster.memory import MemoryCluster, MemoryDiscovery, MemoryRpc, MemoryStore
from actors.handler import Handler
from actors.session import KickSession, PushToClient, SendFrame, Session
from actors.sessions.registry import SessionRegistry
from transport.client import Client
from transport.client_pushes import Push, decode_body
from transport.memory import MemoryAcceptor
from transport.message import decode_message
from transport.packet import PacketDecoder, PacketType
from transport.serializers import Serializer, get_serializer

if TYPE_CHECKING:
    from actors.handler import HandlerApp
    from actors.kernel import ActorRef
    from actors.system import ActorSystem

__all__ = [
    "MemoryCluster",
    "MemoryDiscovery",
    "MemoryRpc",
    "MemoryStore",
    "Push",
    "TestClient",
    "TestServer",
    "TestSession",
    "cluster_app",
    "serve",
    "spawn_handler",
]


def cluster_app(network: MemoryCluster, server_type: str, **options: Any) -> App:
    """An app of ``network``: ``App(server_type=..., mode="cluster", **options)`` with the
    network's own discovery and RPC in place of etcd's and NATS's (a new pair per app)."""
    return App(
        server_type=server_type,
        mode="cluster",
        discovery=network.discovery(),
        rpc=network.rpc(),
        **options,
    )


class _Clients:
    """The clients a test made, closed together at the end."""

    __test__ = False

    def __init__(self, app: App) -> None:
        self.app = app
        self.clients: list[Client] = []

    def _keep(self, client: Client) -> Client:
        self.clients.append(client)
        return client

    async def close_clients(self) -> None:
        """Close every client made so far (idempotent)."""
        clients, self.clients = self.clients, []
        for client in clients:
            await client.close()


# -- in memory ----------------------------------------------------------------------------


class TestClient(_Clients):
    """Start ``app`` with an in-memory acceptor and connect a handshaken client to it.

    ``async with TestClient(app) as client`` gives the first :class:`Client`; more clients of
    the same app come from :meth:`connect`::

        test = TestClient(app)
        async with test as ann:
            bob = await test.connect(handshake_user={"name": "bob"})
            await ann.request("room.join", {"name": "ann"})
            push = await bob.next_push("onJoin")  # fails in time if none comes

    ``options`` are :meth:`Client.over`'s (``serializer``, ``handshake_user``,
    ``request_timeout``, ``push_types`` ...), for every client; ``connect`` may override them.
    A failing first handshake (``HandshakeRejected``) stops the app before it is raised.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, app: App, **options: Any) -> None:
        super().__init__(app)
        self.options = options
        self.acceptor = MemoryAcceptor(server_id=app.server_id)
        """The app's in-memory listener: ``await acceptor.connect()`` gives a raw channel
        (bytes in, bytes out) for tests of the protocol itself."""
        self._started = False

    async def start(self) -> None:
        """Add the in-memory acceptor and start the app (``__aenter__`` does this)."""
        if self._started:
            raise RuntimeError("TestClient already started")
        self.app.add_acceptor(self.acceptor)
        await self.app.start()
        self._started = True

    async def connect(self, **options: Any) -> Client:
        """One more handshaken client of the app."""
        channel = await self.acceptor.connect()
        return self._keep(await Client.over(channel, **{**self.options, **options}))

    async def stop(self) -> None:
        """Close the clients, then stop the app gracefully (``__aexit__`` does this)."""
        try:
            await self.close_clients()
        finally:
            if self._started:
                self._started = False
                await self.app.stop()

    async def __aenter__(self) -> Client:
        await self.start()
        try:
            return await self.connect()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


# -- on real sockets ----------------------------------------------------------------------


class TestServer(_Clients):
    """A started app plus a factory of connected clients (see :func:`serve`)."""

    __test__ = False  # not a pytest test class

    async def connect(self, *, websocket: bool = False, **options: Any) -> Client:
        """A handshaken client over TCP (default) or WebSocket."""
        host, port = self.app.address("ws" if websocket else "tcp")
        return self._keep(await Client.connect(host, port, websocket=websocket, **options))


@asynccontextmanager
async def serve(app: App, *, host: str = "127.0.0.1") -> AsyncIterator[TestServer]:
    """Start ``app`` for a test on real sockets.

    Adds a TCP and a WebSocket listener on ``host`` (port 0) when the app has none, starts
    the app, and on exit closes every client made and stops the app gracefully.
    """
    if not app.acceptors:
        app.listen_tcp(host, 0)
        app.listen_ws(host, 0)
    async with app:
        server = TestServer(app)
        try:
            yield server
        finally:
            await server.close_clients()


# -- a session with no connection ---------------------------------------------------------


def spawn_handler(
    system: ActorSystem,
    handler_class: type[Handler],
    *args: Any,
    app: HandlerApp,
    name: str | None = None,
    **kwargs: Any,
) -> ActorRef:
    """Spawn ``handler_class(*args, **kwargs)`` in ``system`` with ``app`` as its
    ``self.app``, as an app's start does for the handlers it serves (way 1 of this module).

    ``app`` is usually the test's ``App``, not started: its group service and session
    registry work in memory as they are. Give the :class:`TestSession` objects
    ``registry=app.sessions`` so that its group broadcasts and pushes by uid reach them. Any
    object with what the handler uses will do (:class:`~actors.handler.HandlerApp`)."""
    ref = system.spawn(handler_class, *args, name=name, **kwargs)
    handler = ref._cell.actor
    assert isinstance(handler, Handler)
    handler.app = app  # before its first message: asks are handled later
    return ref


class _Recorder:
    """Stands in for the session actor: records what would reach the client, synchronously."""

    def __init__(self, serializer: Serializer, push_types: Mapping[str, type[Any]]) -> None:
        self.serializer = serializer
        self.push_types = dict(push_types)
        self.pushes: list[Push] = []
        self.kicks: list[str] = []

    @property
    def name(self) -> str:
        return "test-session"

    @property
    def alive(self) -> bool:
        return True

    def tell(self, message: object) -> None:
        if isinstance(message, PushToClient):
            self._push(message.route, message.payload)
        elif isinstance(message, SendFrame):  # a broadcast, framed once for many sessions
            for packet in PacketDecoder().feed(message.packet):
                if packet.type is PacketType.DATA:
                    push = decode_message(packet.body)
                    self._push(push.route, push.data)
        elif isinstance(message, KickSession):
            self.kicks.append(message.reason)
        else:
            raise TypeError(f"a session actor receives no {type(message).__name__}")

    def _push(self, route: str, payload: bytes) -> None:
        body = decode_body(self.serializer, payload, self.push_types.get(route))
        self.pushes.append(Push(route, body))


class TestSession(Session):
    """A :class:`Session` with no connection, for handler tests without an app.

    What a handler sends the client is recorded, decoded as the client would read it:
    ``pushes`` (a list of :class:`Push`, direct pushes and group broadcasts alike),
    ``kicked`` and ``kick_reason``. ``await session.bind(uid)`` runs the bind callbacks of
    ``registry`` (a fresh :class:`SessionRegistry` unless given; share one between sessions
    to look them up by uid); ``uid=`` makes a session that arrives already bound, as a
    backend sees it (no callback runs; the registry finds it by that uid);
    ``await session.push_to_front()`` is recorded in ``pushed_to_front``.
    :meth:`disconnect` plays the client going away (its close callbacks run); a kick closes
    the session too, as a server does once it sent the kick packet (its close callbacks run
    in a task: ``await session.disconnect()`` to have them done)::

        session = TestSession(7, uid="ann", data={"room": "lobby"})
        await room.ask(Call("leave", session))
        assert session.pushes == [Push("onLeave", {"uid": "ann"})]
    """

    __test__ = False  # not a pytest test class
    __slots__ = ("_closing", "_recorder", "pushed_to_front", "registry")

    def __init__(
        self,
        session_id: int = 1,
        *,
        uid: str | None = None,
        data: Mapping[str, Any] | None = None,
        serializer: Serializer | str = "json",
        push_types: Mapping[str, type[Any]] | None = None,
        registry: SessionRegistry | None = None,
        remote_address: str = "test",
    ) -> None:
        codec = get_serializer(serializer) if isinstance(serializer, str) else serializer
        recorder = _Recorder(codec, push_types or {})
        self.registry = registry if registry is not None else SessionRegistry()
        super().__init__(
            session_id, cast("ActorRef", recorder), self.registry.bind, codec, remote_address
        )
        self._recorder = recorder
        self._closing: asyncio.Task[None] | None = None
        """The close a kick started (a server closes a kicked session's connection)."""
        self.pushed_to_front: list[dict[str, Any]] = []
        """``data`` as each :meth:`push_to_front` sent it, oldest first."""
        self.data.update(data or {})
        self.uid = uid
        self.registry.add(self)  # and by its uid, if it comes bound

    @property
    def pushes(self) -> list[Push]:
        """Every push so far, oldest first (clear it with ``session.pushes.clear()``)."""
        return self._recorder.pushes

    @property
    def kicked(self) -> bool:
        return bool(self._recorder.kicks)

    @property
    def kick_reason(self) -> str | None:
        """The reason of the first kick, None if not kicked."""
        return self._recorder.kicks[0] if self._recorder.kicks else None

    async def push_to_front(self) -> None:
        """Recorded in :attr:`pushed_to_front`, as a backend session would send it: a
        backend handler's test checks what reached the frontend."""
        self.pushed_to_front.append(dict(self.data))

    def kick(self, reason: str = "") -> None:
        """Recorded (``kicked``, ``kick_reason``); then the session closes, as on a server:
        its close callbacks run in a task (outside a running event loop, only recorded)."""
        super().kick(reason)
        if self._closing is None and not self.closed:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._closing = loop.create_task(self.disconnect())

    async def disconnect(self) -> None:
        """The client went away: the session is closed and close callbacks run (once, as on
        a server: a second call does nothing). After a kick: the close it started, done."""
        closing = self._closing
        if closing is not None and closing is not asyncio.current_task():
            await asyncio.shield(closing)
            return
        if not self.closed:
            await self.registry.closed(self)
