"""The browser client's codecs against references that are not our Python codec.

``test_js_client.py`` cross-checks ``samples/chat/web/pitaya-client.js`` with ``transport``'s
codecs on hundreds of random cases; a shared misreading of the protocol would pass it. Here
the references are independent of both:

1. byte vectors written out by hand from the wire protocol (DESIGN.md "Wire protocol"):
   packet framing, message flags, varint ids, compressed routes, the error flag and the
   deflate flag, and what must be rejected;
2. Pitaya's golden tables (its ``pkg/conn/message/fixtures/*.golden`` files and the packet
   codec tests in ``pkg/conn/codec``), restated here as facts: name, message, bytes;
3. the output of ``pomelo-protocol`` (npm), the original pomelo implementation of the same
   bytes, installed from the npm registry for the test (see :func:`pomelo_protocol`).

Node.js runs the JS codecs (``tests/samples/js/vectors.mjs``); the tests fail, saying what to
install, when ``node`` or ``npm`` is missing or the npm registry cannot be reached.
"""

from __future__ import annotations

import json
import random
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.samples.test_js_client import JS, run_node
from tests.services import require_binary

REQUEST, NOTIFY, RESPONSE, PUSH = 0, 1, 2, 3
HANDSHAKE, HANDSHAKE_ACK, HEARTBEAT, DATA, KICK = 1, 2, 3, 4, 5

DICT = {"chat.room.join": 1, "onMessage": 3, "big.code": 0x1234}


def h(text: str) -> str:
    """Hex with spaces for reading (``"00 01 01 61"``) -> plain hex."""
    return text.replace(" ", "")


def ascii_hex(text: str) -> str:
    return text.encode().hex()


async def run_vectors(request: dict[str, Any]) -> dict[str, Any]:
    out = await run_node(str(JS / "vectors.mjs"), stdin=json.dumps(request).encode())
    result: dict[str, Any] = json.loads(out)
    return result


# -- 1. hand-written from the protocol -----------------------------------------------------------

ZLIB_BODY = zlib.compress(b'{"a":1}').hex()  # zlib's own output, not one of our codecs

# (what it shows, message, bytes of the message). Each is encoded and decoded both ways,
# except the deflated ones, which a client only ever decodes.
MESSAGES: list[tuple[str, dict[str, Any], str]] = [
    (
        "request: flag 0x00, id 1, route length 1, 'a', then the body",
        {"type": REQUEST, "id": 1, "route": "a", "data": "7b7d"},
        h("00 01 01 61 7b7d"),
    ),
    ("id 127: one varint group", {"type": REQUEST, "id": 127, "route": "a"}, h("00 7f 01 61")),
    (
        "id 128: two groups, low first",
        {"type": REQUEST, "id": 128, "route": "a"},
        h("00 8001 0161"),
    ),
    ("id 300 = 0x2c + 2 * 128", {"type": REQUEST, "id": 300, "route": "a"}, h("00 ac02 01 61")),
    ("id 2**14: three groups", {"type": REQUEST, "id": 16384, "route": "a"}, h("00 808001 0161")),
    (
        "id 2**53 - 1: seven full groups and 4 bits",
        {"type": REQUEST, "id": 2**53 - 1, "route": "a"},
        h("00 ffffffffffffff0f 01 61"),
    ),
    (
        "request with a dictionary route: flag 0x01, id, u16 big-endian code",
        {"type": REQUEST, "id": 2, "route": "chat.room.join"},
        h("01 02 0001"),
    ),
    (
        "dictionary code above 255: both bytes, big-endian",
        {"type": REQUEST, "id": 3, "route": "big.code", "data": "7b7d"},
        h("01 03 1234 7b7d"),
    ),
    (
        "notify: flag 0x02, no id, route length 17",
        {"type": NOTIFY, "route": "chat.room.message", "data": "7b7d"},
        h("02 11") + ascii_hex("chat.room.message") + "7b7d",
    ),
    (
        "notify with a dictionary route: flag 0x03",
        {"type": NOTIFY, "route": "chat.room.join"},
        h("03 0001"),
    ),
    (
        "route length counts UTF-8 bytes: 'é' is two",
        {"type": NOTIFY, "route": "é.route"},
        h("02 08 c3a9") + ascii_hex(".route"),
    ),
    (
        "route of 255 bytes: the longest a length byte says",
        {"type": NOTIFY, "route": "r" * 255},
        "02ff" + ascii_hex("r" * 255),
    ),
    (
        "push: flag 0x06, route, no id",
        {"type": PUSH, "route": "onOther", "data": "7b7d"},
        h("06 07") + ascii_hex("onOther") + "7b7d",
    ),
    ("push with a dictionary route: flag 0x07", {"type": PUSH, "route": "onMessage"}, h("07 0003")),
    (
        "response: flag 0x04, id, no route",
        {"type": RESPONSE, "id": 5, "data": "7b7d"},
        h("04 05 7b7d"),
    ),
    ("response with an empty body", {"type": RESPONSE, "id": 0}, h("04 00")),
    (
        "error response: flag 0x04 | 0x20",
        {"type": RESPONSE, "id": 5, "data": "7b7d", "error": True},
        h("24 05 7b7d"),
    ),
]

DEFLATED: list[tuple[str, dict[str, Any], str]] = [
    (
        "deflated response: flag 0x04 | 0x10, zlib data",
        {"type": RESPONSE, "id": 6, "error": False},
        "1406" + ZLIB_BODY,
    ),
    (
        "deflated error response: flag 0x04 | 0x10 | 0x20",
        {"type": RESPONSE, "id": 7, "error": True},
        "3407" + ZLIB_BODY,
    ),
    (
        "deflated push: flag 0x06 | 0x10",
        {"type": PUSH, "route": "onOther", "error": False},
        "1607" + ascii_hex("onOther") + ZLIB_BODY,
    ),
]

REJECTED_MESSAGES: list[tuple[str, str]] = [
    ("empty message", ""),
    ("message type 4 does not exist (flag 0x08)", "08"),
    ("message type 7 (flag 0x0e)", "0e0161"),
    ("id cut in the middle of a varint", "0080"),
    ("request without its id", "00"),
    ("dictionary code cut short", "0300"),
    ("dictionary code nobody announced", "030009"),
    ("route length past the end", "020561"),
    ("route that is not UTF-8", "0201ff"),
]
NOT_UTF8 = "route that is not UTF-8"
"""Rejected, but with TextDecoder's own error (``ERR_ENCODING_INVALID_ENCODED_DATA``) rather
than a ``PIT-400`` PitayaError: pitaya-client.js lets it through (samples/ owns that)."""

REJECTED_ENCODES: list[tuple[str, dict[str, Any]]] = [
    ("empty route", {"type": NOTIFY, "route": ""}),
    ("route of 256 bytes", {"type": NOTIFY, "route": "r" * 256}),
    ("route of 128 two-byte characters", {"type": PUSH, "route": "é" * 128}),
]

PACKETS: list[tuple[str, dict[str, Any], str]] = [
    ("handshake ack: type 2, length 0", {"type": HANDSHAKE_ACK, "body": ""}, "02000000"),
    ("heartbeat: type 3, length 0", {"type": HEARTBEAT, "body": ""}, "03000000"),
    ("kick with a body", {"type": KICK, "body": "7b7d"}, h("05 000002 7b7d")),
    (
        "data: length is 3 bytes big-endian",
        {"type": DATA, "body": "00" * 258},
        "04000102" + "00" * 258,
    ),
]

REJECTED_PACKETS: list[tuple[str, str]] = [
    ("packet type 0", "00000000"),
    ("packet type 6", "06000000"),
    ("truncated header", "040000"),
    ("body shorter than its length", "0400000200"),
]


async def test_hand_written_vectors() -> None:
    result = await run_vectors(
        {
            "dict": DICT,
            "encodeMessages": [m for _, m, _ in MESSAGES] + [m for _, m in REJECTED_ENCODES],
            "decodeMessages": [b for *_, b in MESSAGES + DEFLATED]
            + [b for _, b in REJECTED_MESSAGES],
            "encodePackets": [p for _, p, _ in PACKETS],
            "decodePackets": [b for *_, b in PACKETS]
            + [b for _, b in REJECTED_PACKETS]
            + [h("03000000 03000000 04000001 00")],
        }
    )
    encoded = iter(result["encodeMessages"])
    for what, _, expected in MESSAGES:
        assert next(encoded) == expected, what
    for what, _ in REJECTED_ENCODES:
        assert next(encoded) == {"rejected": "PIT-400"}, what

    decoded = iter(result["decodeMessages"])
    for what, message, _ in MESSAGES:
        got = next(decoded)
        expected = {
            "type": message["type"],
            "id": message.get("id", 0),
            "route": message.get("route", ""),
            "error": message.get("error", False),
            "deflated": False,
            "data": message.get("data", ""),
            "inflated": None,
        }
        assert got == expected, what
    for what, message, _ in DEFLATED:
        got = next(decoded)
        assert got["deflated"] and got["inflated"] == b'{"a":1}'.hex(), what
        assert {key: got[key] for key in message} == message, what
    for what, _ in REJECTED_MESSAGES:
        got = next(decoded)
        assert "rejected" in got, what
        assert what == NOT_UTF8 or got == {"rejected": "PIT-400"}, what

    for (what, _, expected), got in zip(PACKETS, result["encodePackets"], strict=True):
        assert got == expected, what
    decoded_packets = iter(result["decodePackets"])
    for what, packet, _ in PACKETS:
        assert next(decoded_packets) == [packet], what
    for what, _ in REJECTED_PACKETS:
        assert next(decoded_packets) == {"rejected": "PIT-400"}, what
    # Several packets in one chunk come out one by one, in order.
    assert next(decoded_packets) == [
        {"type": HEARTBEAT, "body": ""},
        {"type": HEARTBEAT, "body": ""},
        {"type": DATA, "body": "00"},
    ]


# -- 2. Pitaya's golden tables ------------------------------------------------------------------
# pkg/conn/message/message_test.go and fixtures/*.golden (Pitaya v3): every message with route
# "a" (dictionary {"a": 1} for the compressed ones) and an empty body unless said.

PITAYA_DICT = {"a": 1}
PITAYA_MESSAGES: list[tuple[str, dict[str, Any], str]] = [
    ("test_request_type", {"type": REQUEST, "id": 0, "route": "a"}, "00000161"),
    ("test_request_type_compressed", {"type": REQUEST, "id": 0, "route": "a"}, "01000001"),
    ("test_notify_type", {"type": NOTIFY, "route": "a"}, "020161"),
    ("test_notify_type_compressed", {"type": NOTIFY, "route": "a"}, "030001"),
    ("test_push_type", {"type": PUSH, "route": "a"}, "060161"),
    ("test_push_type_compressed", {"type": PUSH, "route": "a"}, "070001"),
    ("test_reponse_type", {"type": RESPONSE, "id": 0}, "0400"),
    ("test_reponse_type_with_data", {"type": RESPONSE, "id": 0, "data": "01"}, "040001"),
    ("test_reponse_type_with_id", {"type": RESPONSE, "id": 129}, "048101"),
    (
        "test_reponse_type_with_error",
        {"type": RESPONSE, "id": 0, "data": "01", "error": True},
        "240001",
    ),
]
PITAYA_MUST_GZIP = "3400789c4aca49240601020000ffff33ff0f64"
"""test_must_gzip: an error response whose data Pitaya deflated (flag 0x10): 13 x "bla"."""

# pkg/conn/codec/pomelo_packet_*_test.go
PITAYA_HANDSHAKE_PACKET = ({"type": HANDSHAKE, "body": "0100"}, "010000020100")
PITAYA_TWO_PACKETS = "0100000101" * 2  # test_forward_many: two handshake packets, body 0x01
PITAYA_WRONG_PACKET_TYPES = ["06000000", "ff000001"]


async def test_pitaya_golden_tables() -> None:
    # The compressed goldens use the dictionary, the others must not find their route in it.
    plain = [(n, m, b) for n, m, b in PITAYA_MESSAGES if not n.endswith("_compressed")]
    compressed = [(n, m, b) for n, m, b in PITAYA_MESSAGES if n.endswith("_compressed")]
    without_dict = await run_vectors(
        {
            "dict": {},
            "encodeMessages": [m for _, m, _ in plain],
            "decodeMessages": [b for *_, b in plain] + [PITAYA_MUST_GZIP],
            "encodePackets": [PITAYA_HANDSHAKE_PACKET[0]],
            "decodePackets": [PITAYA_TWO_PACKETS, *PITAYA_WRONG_PACKET_TYPES],
        }
    )
    with_dict = await run_vectors(
        {
            "dict": PITAYA_DICT,
            "encodeMessages": [m for _, m, _ in compressed],
            "decodeMessages": [b for *_, b in compressed],
        }
    )
    assert len(plain) + len(compressed) == len(PITAYA_MESSAGES)
    for table, result in ((plain, without_dict), (compressed, with_dict)):
        decodes = result["decodeMessages"][: len(table)]
        for (name, message, golden), encoded, decoded in zip(
            table, result["encodeMessages"], decodes, strict=True
        ):
            assert encoded == golden, name
            expected = {"id": 0, "route": "", "error": False, "data": "", **message}
            assert {key: decoded[key] for key in expected} == expected, name
            assert decoded["deflated"] is False, name

    gzip = without_dict["decodeMessages"][-1]
    assert (gzip["type"], gzip["id"], gzip["error"], gzip["deflated"]) == (RESPONSE, 0, True, True)
    assert bytes.fromhex(gzip["inflated"]) == b"bla" * 13

    assert without_dict["encodePackets"] == [PITAYA_HANDSHAKE_PACKET[1]]
    two, *wrong = without_dict["decodePackets"]
    assert two == [{"type": HANDSHAKE, "body": "01"}] * 2
    assert wrong == [{"rejected": "PIT-400"}] * len(PITAYA_WRONG_PACKET_TYPES)


# -- 3. pomelo-protocol's output ----------------------------------------------------------------

POMELO_PROTOCOL = "pomelo-protocol@0.1.6"
"""Pinned: the last release (2014) of the NetEase pomelo codec, on the npm registry."""


@pytest.fixture(scope="module")
def pomelo_protocol(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Install ``pomelo-protocol`` with npm into a temporary directory; fail if we cannot."""
    npm = require_binary("npm", "npm")
    prefix = tmp_path_factory.mktemp("npm")
    try:
        done = subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
             "--no-package-lock", "--no-save", POMELO_PROTOCOL],
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"`npm install {POMELO_PROTOCOL}` took over 180 s: is the npm registry up?")
    package = prefix / "node_modules" / "pomelo-protocol"
    if done.returncode != 0 or not (package / "package.json").exists():
        pytest.fail(
            f"`npm install {POMELO_PROTOCOL}` failed (the npm registry must be reachable):\n"
            + done.stderr[-2000:]
        )
    return package


def pomelo_cases(count: int) -> list[dict[str, Any]]:
    """Random messages within what pomelo-protocol handles: its id codec uses 32-bit bit
    operations (ids below 2**31), it has no error flag, and it cannot encode empty routes."""
    rng = random.Random(20)
    routes = [*DICT, "a", "room.join", "ünï.cödé", "x" * 255]
    cases: list[dict[str, Any]] = []
    for _ in range(count):
        kind = rng.choice([REQUEST, NOTIFY, RESPONSE, PUSH])
        body = json.dumps({"n": rng.randrange(1 << 40), "t": "☕" * rng.randrange(4)})
        case: dict[str, Any] = {"type": kind, "data": body.encode().hex()}
        if kind in (REQUEST, RESPONSE):
            case["id"] = rng.choice([0, 1, 127, 128, 300, 16383, 16384, rng.randrange(1 << 31)])
        if kind != RESPONSE:
            case["route"] = rng.choice(routes)
        cases.append(case)
    return cases


async def test_pomelo_protocol_writes_and_reads_the_same_bytes(pomelo_protocol: Path) -> None:
    cases = pomelo_cases(300)
    deflated = {"type": RESPONSE, "id": 9, "data": ZLIB_BODY, "gzip": 1}
    result = await run_vectors(
        {"dict": DICT, "pomelo": str(pomelo_protocol), "pomeloCases": [*cases, deflated]}
    )
    *results, gzip = result["pomelo"]
    for case, got in zip(cases, results, strict=True):
        assert got["ours"] == got["theirs"], case
        expected = {"packetType": DATA, "id": 0, "route": "", **case}
        # pomelo-protocol reads our bytes back into the same fields...
        assert {key: got["theyRead"][key] for key in expected} == expected, case
        compressed = case["type"] != RESPONSE and case["route"] in DICT
        assert (got["theyRead"]["compressRoute"], got["theyRead"]["compressGzip"]) == (
            int(compressed),
            0,
        )
        # ... and we read its bytes into them.
        assert {key: got["weRead"][key] for key in expected} == expected, case
        assert not got["weRead"]["error"] and not got["weRead"]["deflated"]
    # pomelo's "gzip" flag is 0x10 over zlib data: what our client inflates.
    assert gzip["theirs"] == "04" + f"{2 + len(ZLIB_BODY) // 2:06x}" + "1409" + ZLIB_BODY
    assert gzip["weRead"]["deflated"] and (gzip["weRead"]["type"], gzip["weRead"]["id"]) == (
        RESPONSE,
        9,
    )
    assert bytes.fromhex(gzip["weRead"]["data"]) == b'{"a":1}'
