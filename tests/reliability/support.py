"""Helpers shared by the reliability tests: a test handler, bounded waits, TLS contexts."""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trustme

from actors.app import App
from actors.handler import Handler, handler
from actors.session import Session
from actors.testing import TestServer, serve
from samples.echo.server import Echo

HOST = "127.0.0.1"
T = TypeVar("T")


class Probe(Handler):
    """``probe.me`` (the caller's session id), ``probe.hold`` (answered once released)."""

    service = "probe"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.holding = asyncio.Event()

    @handler
    def me(self, session: Session) -> dict[str, int]:
        return {"id": session.id}

    @handler
    async def hold(self, session: Session) -> dict[str, str]:
        self.holding.set()
        await self.release.wait()
        return {"held": "done"}


def make_app(**options: Any) -> App:
    """An app serving ``echo.*`` and ``probe.*`` (listeners are added by ``serve``)."""
    app = App(server_type="rel", **options)
    app.register(Echo)
    app.register(Probe)
    return app


def probe(app: App) -> Probe:
    actor = app.handler_instance("probe")
    assert isinstance(actor, Probe)
    return actor


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` holds, checking every few ms; TimeoutError after ``timeout``.

    For state that announces its changes with no event (counters of the app and of the
    acceptors); the wait is bounded, never a fixed sleep.
    """

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    # No helper task: the caller may be counting tasks.
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"condition still false after {timeout}s")
        await asyncio.sleep(0.005)


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh trustme certificate for 127.0.0.1 and a client trusting it."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(server)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client)
    return server, client


class ServerThread:
    """An App on its own event loop in a thread, for tests that must not share its clock.

    A pytest-asyncio loop stops between tests (and between hypothesis examples); an App on
    that loop would then see its clients as silent and time them out. Here the server and
    its well-behaved clients keep running whatever the test's loop does. Run code on the
    server's loop with :meth:`call` (from the test's loop: ``await server.call(fn)``).
    ``errors`` collects the ERROR log records of the server thread (an exception escaping a
    protocol callback is only logged by asyncio, so a test must look for it).
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="app-server", daemon=True)
        self.server: TestServer | None = None
        self.errors: list[logging.LogRecord] = []
        self._log_handler = _ThreadErrors(self._thread, self.errors)

    def __enter__(self) -> ServerThread:
        logging.getLogger().addHandler(self._log_handler)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError("the server thread did not start") from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        logging.getLogger().removeHandler(self._log_handler)

    def _main(self) -> None:
        async def serve_until_stopped() -> None:
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                async with serve(self.app) as server:
                    self.server = server
                    self._ready.set()
                    await self._stop.wait()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                raise

        asyncio.run(serve_until_stopped())

    async def call(self, fn: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
        """Run ``fn()`` on the server's loop and return its result (awaitable from any loop)."""
        assert self.loop is not None
        future = asyncio.run_coroutine_threadsafe(_as_coroutine(fn), self.loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)


class _ThreadErrors(logging.Handler):
    def __init__(self, thread: threading.Thread, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.ERROR)
        self._thread = thread
        self._records = records

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self._thread.ident:
            self._records.append(record)


async def _as_coroutine(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()
