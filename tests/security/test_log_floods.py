"""Lines a client can make the server log, one per message it sends.

Found in review: ``echo.echo`` given ``null`` (or an empty body) returns None, answered
``PIT-000``, and each such request wrote a warning line; a client leaving while its handler
awaited wrote an info line each time. Both are now told once per 10 s per route (with how
many were not), each one at debug. The WebSocket library itself wrote an info line for every
upgrade and every plain HTTP answer (no server id, no bound): those are at debug now, and
the acceptor's own throttled line tells what peers do.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from actors.app import App
from actors.handler import Handler, handler
from actors.session import Session
from actors.testing import serve
from samples.chat.room import build_app as chat_app
from samples.echo.server import Echo, build_app
from tests.reliability.support import until


def lines(caplog: pytest.LogCaptureFixture, text: str, level: int) -> int:
    return len([r for r in caplog.records if text in r.getMessage() and r.levelno == level])


async def test_null_replies_a_client_asks_for_are_logged_once_per_10_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="actors.invocation")
    async with serve(build_app(tcp_port=0, ws_port=0)) as server:
        client = await server.connect()
        for body in (b"null", b"") * 25:
            answer = await client.request_raw("echo.echo", body)
            assert answer.error and b"PIT-000" in answer.data
    assert lines(caplog, "returned None", logging.WARNING) == 1
    assert lines(caplog, "returned None", logging.DEBUG) == 49


class Leaving(Handler):
    """``leaving.wait``: awaits ``release``, then registers a close callback (which raises
    ``SessionClosed`` once the client left)."""

    service = "leaving"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waiting = 0

    @handler
    async def wait(self, session: Session) -> dict[str, str]:
        self.waiting += 1
        await self.release.wait()
        session.on_close(lambda s: None)
        return {"ok": "yes"}


async def test_handlers_stopped_by_clients_leaving_are_logged_once_per_10_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="actors.invocation")
    app = App(server_type="leave")
    app.register(Echo)
    app.register(Leaving)
    async with serve(app) as server:
        actor = app.handler_instance("leaving")
        assert isinstance(actor, Leaving)
        for left in range(1, 21):
            client = await server.connect()
            await client.notify("leaving.wait", {})
            await until(lambda left=left: actor.waiting == left)
            await client.close()
            await until(lambda: len(app.sessions) == 0)
        actor.release.set()
        await until(lambda: lines(caplog, "stopped", logging.DEBUG) == 19)
        assert lines(caplog, "stopped", logging.INFO) == 1


async def test_websocket_connections_and_pages_write_no_line_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="websockets")
    async with serve(chat_app(tcp_port=0, ws_port=0)) as server:
        for _ in range(3):
            client = await server.connect(websocket=True)
            await client.close()
        host, port = server.app.address("ws")
        for _ in range(3):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 404")
            writer.close()
    mine = [r for r in caplog.records if r.name.startswith("websockets")]
    assert [r for r in mine if r.levelno >= logging.INFO] == []
    assert lines(caplog, "connection open", logging.DEBUG) == 3
    assert lines(caplog, "HTTP response sent (404 Not Found)", logging.DEBUG) == 3


class Kicker(Handler):
    """``kicker.out``: kicks the caller with the reason it sends (as a peer on NATS may, with
    ``sys.kick``)."""

    service = "kicker"

    @handler
    def out(self, session: Session, body: str) -> dict[str, str]:
        session.kick(body)
        return {"kicked": "yes"}


async def test_a_kick_s_reason_is_logged_as_the_client_is_told_it_cut(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="actors.sessions.actor")
    app = App(server_type="kick")
    app.register(Kicker)
    async with serve(app) as server:
        client = await server.connect()
        await client.notify("kicker.out", "r" * 100_000)
        await until(lambda: len(app.sessions) == 0)
    kicked = [r.getMessage() for r in caplog.records if "kicked" in r.getMessage()]
    assert len(kicked) == 1
    assert "r" * 1024 in kicked[0] and len(kicked[0]) < 1200
