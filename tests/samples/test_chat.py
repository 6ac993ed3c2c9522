"""The chat sample, in-process and as the README runs it (a subprocess)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from typing import Any

import pytest

from actors.session import Session
from actors.testing import serve
from samples.chat.room import build_app
from transport.client import Client, Push, RequestError
from transport.errors import ConnectionClosed


async def next_push(pushes: Any, route: str) -> Push:
    while True:
        push: Push = await asyncio.wait_for(anext(pushes), 5)
        if push.route == route:
            return push


async def test_join_chat_and_leave_over_tcp_and_websocket() -> None:
    async with serve(build_app(tcp_port=0, ws_port=0)) as server:
        ann = await server.connect()
        ann_pushes = ann.pushes()
        assert await ann.request("room.join", {"name": "ann"}) == {
            "result": "success",
            "members": ["ann"],
        }
        bob = await server.connect(websocket=True)
        bob_pushes = bob.pushes()
        assert await bob.request("room.join", {"name": "bob"}) == {
            "result": "success",
            "members": ["ann", "bob"],
        }
        assert (await next_push(ann_pushes, "onNewUser")).body == {"name": "bob"}

        await bob.notify("room.message", {"content": "hi ann"})
        expected = {"name": "bob", "content": "hi ann"}
        assert (await next_push(ann_pushes, "onMessage")).body == expected
        assert (await next_push(bob_pushes, "onMessage")).body == expected

        assert await ann.request("room.message", {"content": "hi bob"}) == {"result": "success"}
        assert (await next_push(bob_pushes, "onMessage")).body == {
            "name": "ann",
            "content": "hi bob",
        }

        await bob.close()
        assert (await next_push(ann_pushes, "onUserLeft")).body == {"name": "bob"}


async def test_a_client_that_leaves_while_its_join_binds_is_not_left_a_member() -> None:
    """The client closes while its bind awaits an app bind callback (a profile loaded from
    a database, say). The bind raises SessionClosed, so the join goes no further: it was
    carrying on, registering a close callback that never ran, and leaving a member in the
    room for good."""
    app = build_app(tcp_port=0, ws_port=0)
    entered, release = asyncio.Event(), asyncio.Event()

    async def load_profile(session: Session) -> None:
        entered.set()
        await release.wait()

    app.sessions.on_session_bind(load_profile)
    async with serve(app) as server:
        ann = await server.connect()
        joining = asyncio.ensure_future(ann.request("room.join", {"name": "ann"}))
        await asyncio.wait_for(entered.wait(), 5)
        await ann.close()
        await asyncio.wait_for(app.connections.zero.wait(), 5)  # the server saw it go
        release.set()
        with pytest.raises(ConnectionClosed):
            await joining
        bob = await server.connect()
        reply = await bob.request("room.join", {"name": "bob"})
        assert reply["members"] == ["bob"]


async def test_chat_errors() -> None:
    async with serve(build_app(tcp_port=0, ws_port=0)) as server:
        client = await server.connect()
        for route, body, code in [
            ("room.message", {"content": "too early"}, "PIT-400"),
            ("room.nope", {}, "PIT-404"),
            ("room.join", ["not", "an", "object"], "PIT-400"),
            ("room.join", "just a string", "PIT-400"),
            ("room.join", {"name": ""}, "PIT-400"),
        ]:
            with pytest.raises(RequestError) as info:
                await client.request(route, body)
            assert info.value.code == code, (route, body)
        raw = await client.request_raw("room.join", b"{not json")
        assert raw.error
        assert (await client.request("room.join", {"name": "late"}))["members"] == ["late"]


async def test_long_names_and_messages_are_refused() -> None:
    """Found in review: names and messages had no bound. Two members named with 600 kB each
    made every later join's answer (all the names) larger than a client's 1 MiB packet
    limit, so a newcomer's connection failed as it joined; a 600 kB message reached every
    member as a push (a megabyte sent per member for one received)."""
    async with serve(build_app(tcp_port=0, ws_port=0)) as server:
        ann = await server.connect()
        ann_pushes = ann.pushes()
        for body in ({"name": "n" * 600_000}, {"name": "n" * 41}):
            with pytest.raises(RequestError) as info:
                await ann.request("room.join", body)
            assert info.value.code == "PIT-400"
            assert "at most 40 characters" in info.value.msg
        longest = "a" * 40
        assert (await ann.request("room.join", {"name": f"  {longest}  "}))["members"] == [longest]
        with pytest.raises(RequestError) as info:
            await ann.request("room.message", {"content": "c" * 600_000})
        assert info.value.code == "PIT-400"
        assert "at most 4096 characters" in info.value.msg
        await ann.notify("room.message", {"content": "c" * 600_000})  # dropped, not pushed
        assert await ann.request("room.message", {"content": "m" * 4096}) == {"result": "success"}
        push = await next_push(ann_pushes, "onMessage")
        assert push.body == {"name": longest, "content": "m" * 4096}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_sample_runs_as_a_process_and_stops_on_sigterm() -> None:
    tcp_port, ws_port = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "samples.chat",
        "--tcp-port",
        str(tcp_port),
        "--ws-port",
        str(ws_port),
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stderr is not None
        while True:  # the app logs "started" once every listener is up
            line = await asyncio.wait_for(process.stderr.readline(), 20)
            assert line, "the sample exited before listening"
            if b"] started (" in line:
                break
        tcp = await Client.connect("127.0.0.1", tcp_port)
        ws = await Client.connect("127.0.0.1", ws_port, websocket=True)
        assert (await tcp.request("room.join", {"name": "t"}))["members"] == ["t"]
        assert (await ws.request("room.join", {"name": "w"}))["members"] == ["t", "w"]
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 20) == 0
        await tcp.wait_closed(timeout=5)
        assert tcp.kicked
        await ws.close()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_chat_page_with_a_route_prefix() -> None:
    """A cluster connector serves the page with its routes prefixed (``room.room.join``)."""
    from samples.chat.static import WEB_DIR, WEB_FILES, chat_page, static_files

    plain = static_files(WEB_DIR, WEB_FILES)("/")
    prefixed = chat_page("room.")("/")
    assert plain is not None and prefixed is not None
    meta = b'<meta name="pitaya-route-prefix" content="room.">'
    assert meta not in plain.body and meta in prefixed.body
    assert prefixed.body.replace(b"\n" + meta, b"") == plain.body
    assert chat_page()("/") == plain
    script = chat_page("room.")("/chat.js")
    assert script is not None and b"`${routePrefix}room.join`" in script.body
