"""Pitaya's own Go client (pkg/client) against a standalone Python frontend, over TCP and
WebSocket: handshake and its data, the route dictionary (the Go client then sends compressed
routes), request, notify, push, errors and kick."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from actors.app import App
from tests.interop.harness import GoClient, RequestFailed
from tests.interop.pynodes import standalone


@pytest.fixture
async def python_frontend() -> AsyncIterator[App]:
    app = standalone()
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def connected(
    go_clients: Callable[..., GoClient], app: App, websocket: bool, **handshake: object
) -> tuple[GoClient, dict[str, int]]:
    client = go_clients()
    dictionary = await client.connect(
        app.address("ws" if websocket else "tcp"), websocket=websocket, **handshake
    )
    return client, dictionary


async def test_handshake_and_route_dictionary(
    python_frontend: App, go_clients: Callable[..., GoClient], websocket: bool
) -> None:
    client, dictionary = await connected(
        go_clients, python_frontend, websocket, user={"age": 30}, version="1.2.3"
    )
    # The dictionary announces our routes; the Go client sends them as 2-byte codes from now on.
    codes = {route: code for route, code in dictionary.items() if route.endswith("me.echo")}
    assert codes, dictionary
    assert all(isinstance(code, int) and code > 0 for code in dictionary.values())
    assert len(set(dictionary.values())) == len(dictionary)

    seen = await client.request("connector.me.handshake")
    assert seen == {
        "server": "connector-py-standalone",
        "lang": "py",
        "platform": "go",
        "version": "1.2.3",
        "user": {"age": 30},
    }


async def test_request_notify_push(
    python_frontend: App, go_clients: Callable[..., GoClient], websocket: bool
) -> None:
    client, dictionary = await connected(go_clients, python_frontend, websocket)
    assert "connector.me.echo" in dictionary  # so this request travels with a compressed route
    answer = await client.request("connector.me.echo", {"text": "héllo", "n": [1, 2]})
    assert answer == {
        "server": "connector-py-standalone",
        "lang": "py",
        "uid": "",
        "body": {"text": "héllo", "n": [1, 2]},
    }
    # The short form (service.method) reaches the same local handler.
    assert (await client.request("me.echo", {"n": 3}))["body"] == {"n": 3}

    await client.notify("connector.me.notify", {"tag": "n-1"})
    # One session's messages are handled in order: the notify is done before this request.
    assert "n-1" in (await client.request("connector.me.notified"))["tags"]

    mark = len(client.events)
    reply = await client.request("connector.me.push", {"body": {"x": 1}})
    assert reply["pushed"] is True
    push = await client.push("onPush", start=mark)
    assert push == {"from": "connector-py-standalone", "lang": "py", "body": {"x": 1}}
    # Our pushes reach the client before the response of the request that made them.
    kinds = [e["event"] for e in client.events[mark:] if e["event"] in ("push", "response")]
    assert kinds[:2] == ["push", "response"]

    bound = await client.request("connector.me.bind", {"uid": "gopher"})
    assert bound["uid"] == "gopher"
    shown = await client.request("connector.me.setdata", {"data": {"level": 3}})
    assert shown["data"] == {"level": 3}
    assert (await client.request("connector.me.show"))["uid"] == "gopher"


async def test_errors(
    python_frontend: App, go_clients: Callable[..., GoClient], websocket: bool
) -> None:
    client, _ = await connected(go_clients, python_frontend, websocket)
    with pytest.raises(RequestFailed) as failed:
        await client.request("connector.me.fail", {"code": "GAME-7", "msg": "no luck"})
    assert failed.value.body == {"code": "GAME-7", "msg": "no luck", "metadata": {"lang": "py"}}

    with pytest.raises(RequestFailed) as missing:
        await client.request("connector.me.nothing")
    assert missing.value.code == "PIT-404"

    # A request to a notify-only handler: PIT-400, as in Pitaya.
    with pytest.raises(RequestFailed) as wrong_kind:
        await client.request("connector.me.notify", {"tag": "x"})
    assert wrong_kind.value.code == "PIT-400"
    # The connection is still usable after errors.
    assert (await client.request("connector.me.echo", {}))["lang"] == "py"


async def test_kick(
    python_frontend: App, go_clients: Callable[..., GoClient], websocket: bool
) -> None:
    client, _ = await connected(go_clients, python_frontend, websocket)
    await client.request("connector.me.bind", {"uid": "kick-me"})
    await client.notify("connector.me.kick")
    await client.kicked()


async def test_kick_by_uid_and_push_by_uid(
    python_frontend: App, go_clients: Callable[..., GoClient], websocket: bool
) -> None:
    ann, _ = await connected(go_clients, python_frontend, websocket)
    bob, _ = await connected(go_clients, python_frontend, websocket)
    await ann.request("connector.me.bind", {"uid": "ann"})
    await bob.request("connector.me.bind", {"uid": "bob"})

    reply = await bob.request("connector.me.pushto", {"uids": ["ann", "nobody"], "body": "hi"})
    assert reply["failed"] == ["nobody"]
    assert await ann.push("onPushTo") == {
        "from": "connector-py-standalone",
        "lang": "py",
        "body": "hi",
    }

    reply = await bob.request("connector.me.kickusers", {"uids": ["ann"]})
    assert reply["failed"] == []
    await ann.kicked()
    assert not bob.was_kicked


async def test_heartbeats_keep_the_session(
    go_clients: Callable[..., GoClient], websocket: bool
) -> None:
    """The Go client heartbeats at the interval our handshake announces (1 s): idle for more
    than twice that (our timeout), its session is still there."""
    app = standalone(heartbeat_interval=1)
    await app.start()
    try:
        client, _ = await connected(go_clients, app, websocket)
        await client.request("connector.me.bind", {"uid": "idle"})
        await asyncio.sleep(3.5)  # the time under test: longer than the 2 s timeout
        assert not any(e["event"] == "closed" for e in client.events)
        assert (await client.request("connector.me.show"))["uid"] == "idle"
    finally:
        await app.stop()
