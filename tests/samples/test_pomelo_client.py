"""The chat sample against a published pomelo client, not one of ours.

``test_js_client.py`` and ``tests/interop`` run clients written here or Go Pitaya's own; a
misreading of the protocol shared by our server and our clients would pass them. Here the
client is ``pomelo-client-websocket`` from the npm registry (NetEase's pomelo web client and
pomelo-protocol, packaged for Node over ``ws``), pinned with its dependencies in
``tests/samples/pomelo/package-lock.json`` and installed with ``npm ci`` into a temporary
directory. ``tests/samples/pomelo/chat.js`` drives it through its own API: handshake with
user data, requests, a notify, pushes, error answers, heartbeats while idle, a disconnect and
a kick. Needs ``node`` and ``npm`` and the npm registry (the tests fail saying so).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from actors.testing import serve
from samples.chat.room import build_app
from tests.services import require_binary

POMELO = Path(__file__).with_name("pomelo")
PACKAGE = "pomelo-client-websocket"


@pytest.fixture(scope="module")
def pomelo_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``npm ci`` of ``tests/samples/pomelo`` in a temporary directory: the package's path."""
    npm = require_binary("npm", "npm")
    prefix = tmp_path_factory.mktemp("pomelo")
    for name in ("package.json", "package-lock.json"):
        shutil.copy(POMELO / name, prefix / name)
    try:
        done = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=prefix, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("`npm ci` of tests/samples/pomelo took over 180 s: is the npm registry up?")
    package = prefix / "node_modules" / PACKAGE
    if done.returncode != 0 or not (package / "package.json").exists():
        pytest.fail(
            "`npm ci` of tests/samples/pomelo failed (the npm registry must be reachable):\n"
            + done.stderr[-2000:]
        )
    return package


async def test_a_published_pomelo_client_chats(pomelo_client: Path) -> None:
    node = require_binary("node", "nodejs")
    app = build_app(tcp_port=0, ws_port=0, heartbeat_interval=1)
    async with serve(app) as server:
        host, port = server.app.address("ws")
        process = await asyncio.create_subprocess_exec(
            node, str(POMELO / "chat.js"), str(pomelo_client), host, str(port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stdout is not None
        try:
            # Requests, pushes, errors, then at least 5 heartbeat intervals idle.
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            if line != b"kick me\n":
                _, err = await asyncio.wait_for(process.communicate(), 10)
                pytest.fail(f"chat.js: {line!r}\n{err.decode()[-3000:]}")
            bob = server.app.sessions.by_uid("2")  # the chat's uids are the session ids
            assert bob is not None and bob.handshake is not None
            # What the client's handshake sent: its type, and the user data given to init.
            assert bob.handshake.sys["type"] == "js-websocket"
            assert bob.handshake.user == {"token": "b"}
            bob.kick("bye")
            out, err = await asyncio.wait_for(process.communicate(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0, err.decode()[-3000:]
    result = json.loads(out)

    # The handshake callback ran; Pitaya's answer carries no user data (nor does pomelo's
    # unless its handshake function adds some).
    assert result["handshake"] == {"user": None}
    assert result["annJoin"] == {"result": "success", "members": ["ann"]}
    assert result["bobJoin"] == {"result": "success", "members": ["ann", "bob"]}
    assert result["annToldBobJoined"] == {"name": "bob"}
    hi = {"name": "bob", "content": "hi ☕ 😀"}
    assert result["bobSaid"] == [hi, hi]
    assert result["annSays"] == {"result": "success"}
    yo = {"name": "ann", "content": "yo"}
    assert result["annSaid"] == [yo, yo]

    # Errors come as the response's body: Pitaya's code and message (the client does not read
    # the error flag, which leaves the message type it reads unchanged).
    assert result["unknownRoute"] == {
        "code": "PIT-404",
        "msg": "pitaya/handler: room.nope not found",
        "metadata": {"route": "room.nope"},
    }
    assert result["emptyName"] == {"code": "PIT-400", "msg": "name must not be empty"}
    assert result["notAnObject"] == {
        "code": "PIT-400",
        "msg": "the body must be an object, got str",
    }

    # Idle for 5 heartbeats: the client heartbeats on its own (one interval after ours; it
    # ignores ours while its own is pending) and both stayed connected.
    assert result["heartbeatsSent"]["ann"] >= 2
    assert result["heartbeatsSent"]["bob"] >= 2
    assert result["eventsAfterIdle"] == {"ann": [], "bob": []}
    assert result["afterIdle"] == {"result": "success"}
    assert result["annSawAfterIdle"] == {"name": "bob", "content": "still here"}

    assert result["bobToldAnnLeft"] == {"name": "ann"}
    # The kick packet, then the close.
    assert result["bobEvents"] == ["onKick", "close"]
    assert result["pushRoutes"] == {
        "ann": ["onNewUser", "onMessage", "onMessage", "onMessage"],
        "bob": ["onMessage", "onMessage", "onMessage", "onUserLeft"],
    }
