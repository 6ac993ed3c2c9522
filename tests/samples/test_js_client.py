"""The browser client (``samples/chat/web/pitaya-client.js``) on its own.

Node.js runs its codecs, compared byte for byte with ``transport``'s on fixed and random
cases (the references independent of ours, hand-written bytes, Pitaya's golden tables and
pomelo-protocol, are in ``test_js_codec_vectors.py``); headless Chromium runs the client
against a live chat server (requests, errors, timeouts, pushes, deflated data, heartbeats,
kick). Needs the Debian packages ``nodejs`` and
``chromium`` (``bash .ci/run`` installs them); without them the tests fail saying so.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

from actors.handler import Handler, handler
from actors.session import Session
from actors.testing import serve
from samples.chat.room import build_app
from tests.samples.chromium import Chromium
from tests.services import require_binary
from transport.handshake import HandshakeRequest, decode_handshake_request
from transport.message import Message, MessageType, RouteDictionary, encode_message
from transport.packet import PacketType, encode_packet

JS = Path(__file__).with_name("js")
DICT = {"room.room.join": 1, "room.room.message": 2, "onMessage": 3, "é.route": 0x1234}
JOIN_VECTOR = bytes.fromhex("0400001d00010e726f6f6d2e726f6f6d2e6a6f696e7b226e616d65223a2261227d")


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def python_packet(case: dict[str, Any], *, compress: bool = False) -> bytes:
    message = Message(
        MessageType(case["type"]),
        case.get("id", 0),
        case.get("route", ""),
        json_bytes(case["body"]),
        case.get("error", False),
    )
    return encode_packet(
        PacketType.DATA, encode_message(message, routes=RouteDictionary(DICT), compress=compress)
    )


def random_cases(count: int) -> list[dict[str, Any]]:
    rng = random.Random(10)
    routes = [*DICT, "a", "room.join", "ünï.cödé", "x" * 255]
    cases: list[dict[str, Any]] = []
    for _ in range(count):
        kind = rng.choice(list(MessageType))
        case: dict[str, Any] = {"type": int(kind), "body": {"n": rng.randrange(1 << 40)}}
        if kind in (MessageType.REQUEST, MessageType.RESPONSE):
            case["id"] = rng.choice([0, 1, 127, 128, 300, 16383, 16384, rng.randrange(1 << 53)])
        if kind is not MessageType.RESPONSE:
            case["route"] = rng.choice(routes)
        if kind is MessageType.RESPONSE:
            case["error"] = rng.random() < 0.3
        if rng.random() < 0.2:
            case["body"]["text"] = "long text ☕ " * rng.randrange(1, 60)
        cases.append(case)
    return cases


async def run_node(*args: str, stdin: bytes = b"", timeout: float = 20.0) -> str:
    node = require_binary("node", "nodejs")
    process = await asyncio.create_subprocess_exec(
        node,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_codecs_match_the_python_ones() -> None:
    fixed = {"type": 0, "id": 1, "route": "room.room.join", "body": {"name": "a"}}
    cases = [fixed, *random_cases(300)]
    decode_cases = random_cases(300)
    # Without a route dictionary, as the fixed vector was written.
    request: dict[str, Any] = {"dict": {}, "encode": [fixed], "decode": [], "malformed": []}
    plain = json.loads(await run_node(str(JS / "codec.mjs"), stdin=json.dumps(request).encode()))
    assert bytes.fromhex(plain["encoded"][0]) == JOIN_VECTOR

    request = {
        "dict": DICT,
        "encode": cases,
        "decode": [python_packet(c, compress=i % 2 == 0).hex() for i, c in enumerate(decode_cases)],
        "malformed": ["04000001", "0400000104", "04000002050000", "09000000", "040000020300"],
    }
    result = json.loads(await run_node(str(JS / "codec.mjs"), stdin=json.dumps(request).encode()))
    for case, encoded in zip(cases, result["encoded"], strict=True):
        assert bytes.fromhex(encoded) == python_packet(case), case
    assert len(result["decoded"]) == len(decode_cases)
    for case, got in zip(decode_cases, result["decoded"], strict=True):
        expected = {"id": 0, "route": "", "error": False, **case}
        assert {key: got[key] for key in expected} == expected
    assert any(got["deflated"] for got in result["decoded"])
    # truncated header, truncated route, unknown route code, unknown packet type, bad type
    assert result["rejected"] == ["PIT-400"] * 5

    handshake = bytes.fromhex(result["handshake"])
    assert handshake[0] == PacketType.HANDSHAKE
    assert int.from_bytes(handshake[1:4], "big") == len(handshake) - 4
    request_seen = decode_handshake_request(handshake[4:])
    assert request_seen.platform == "web"
    assert request_seen.client_version == "1.2.3"
    assert request_seen.sys["type"] == "js-websocket"
    assert request_seen.user == {"token": "t"}


class Slow(Handler):
    """Answers too late for the client's 500 ms request timeout."""

    service = "slow"

    @handler
    async def wait(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(1)
        return {}


def check_token(handshake: HandshakeRequest) -> None:
    if handshake.user.get("token") != "ok":
        raise ValueError("bad token")


async def test_client_in_chromium_against_a_live_server(tmp_path: Path) -> None:
    app = build_app(tcp_port=0, ws_port=0, heartbeat_interval=1, compress_data=True)
    app.register(Slow)
    app.add_handshake_validator("token", check_token)
    async with serve(app) as server, Chromium.launch(tmp_path) as browser:
        host, port = server.app.address("ws")
        page = await browser.new_page(f"http://{host}:{port}/")
        await page.evaluate((JS / "live.js").read_text())
        await page.evaluate(
            "window.steps = {}; import('/pitaya-client.js').then(m => liveChecks("
            f"m.PitayaClient, 'ws://{host}:{port}/', (k, v) => {{ window.steps[k] = v; }}"
            ")).catch(e => { window.steps.failed = String(e); }); null"  # do not await it
        )
        await page.wait_for("'waiting for kick' in window.steps || 'failed' in window.steps")
        assert await page.evaluate("window.steps.failed || null") is None
        kicked = await app.send_kick_to_users([s.uid for s in app.sessions if s.uid], "bye")
        assert kicked == []
        await page.wait_for("'after close' in window.steps || 'failed' in window.steps")
        steps: dict[str, Any] = await page.evaluate("window.steps")
        assert page.errors == []

    assert "failed" not in steps, steps["failed"]
    assert steps["refused"]["code"] == "400"
    assert steps["handshake"]["heartbeat"] == 1
    assert "chat.room.join" in steps["handshake"]["routes"]
    assert steps["join"] == {"result": "success", "members": ["web"]}
    assert steps["room.nope"]["code"] == "PIT-404"
    assert steps["room.join"] == {"code": "PIT-400", "msg": "already joined", "metadata": {}}
    assert steps["message"] == steps["after heartbeats"] == {"result": "success"}
    assert steps["pushes"] == ["long", "short", "still here"]
    assert steps["slow.wait"]["code"] == "PIT-504"
    # The kick's reason, which the client dropped (its event had no detail).
    assert steps["events"] == [["kick", "bye"], ["close", "kicked by the server"]]
    assert steps["after close"]["code"] == "PIT-498"
