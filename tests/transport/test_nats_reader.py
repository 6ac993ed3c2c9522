"""The direct path's reader (``LeanClient._read_messages``), fed chunks as a socket cuts them:
every message reaches its handler whole and in order, wherever the chunks end, with
nats-py's parser taking over for anything that is not a plain MSG (and handing back once it
holds nothing). No server: the parser is driven as nats-py's read loop drives it."""

from __future__ import annotations

import asyncio
import itertools
from types import SimpleNamespace

import nats.errors
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transport.nats_client import LeanClient

DIRECT, OTHER = 1, 2
"""A subscription delivered directly, and one that is not ours (nats-py drops its messages:
no such subscription in it)."""

Delivered = tuple[bytes, bytes, bytes, bytes | None]

TOKEN = st.text("abcXYZ09._-*>", min_size=1, max_size=12).map(str.encode)
PAYLOAD = st.binary(max_size=80) | st.sampled_from([b"MSG a 1 3\r\nxyz", b"\r\n\r\n", b""])


@st.composite
def commands(draw: st.DrawFn) -> tuple[bytes, list[Delivered]]:
    """A stream of commands and what the direct handler must receive of it."""
    stream, expected = [], []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["msg", "msg", "msg", "other", "hmsg", "ok"]))
        subject, payload = draw(TOKEN), draw(PAYLOAD)
        reply = draw(st.none() | TOKEN)
        space = draw(st.sampled_from([b" ", b"  ", b"\t"]))
        head = space.join([subject, b"%d" % (OTHER if kind == "other" else DIRECT)])
        if reply is not None:
            head += space + reply
        if kind in ("msg", "other"):
            stream.append(b"MSG %b%b%d\r\n%b\r\n" % (head, space, len(payload), payload))
            if kind == "msg":
                expected.append((subject, reply or b"", payload, None))
        elif kind == "hmsg":
            headers = b"NATS/1.0\r\nK: v\r\n\r\n"
            stream.append(
                b"HMSG %b %d %d\r\n%b%b\r\n"
                % (head, len(headers), len(headers) + len(payload), headers, payload)
            )
            expected.append((subject, reply or b"", payload, headers))
        else:
            stream.append(b"+OK\r\n")
    return b"".join(stream), expected


def client() -> tuple[LeanClient, list[Delivered]]:
    lean = LeanClient()
    assert lean.direct_ok
    got: list[Delivered] = []
    lean.deliver_directly(
        SimpleNamespace(_id=DIRECT),
        lambda subject, reply, data, headers: got.append(
            (bytes(subject), bytes(reply), bytes(data), bytes(headers) if headers else None)
        ),
    )
    return lean, got


async def feed(lean: LeanClient, chunks: list[bytes]) -> None:
    for chunk in chunks:
        await lean._ps.parse(chunk)


@settings(max_examples=300, deadline=None)
@given(stream=commands(), cuts=st.lists(st.integers(0, 2000), max_size=8))
def test_messages_arrive_whole_and_in_order_wherever_the_chunks_end(
    stream: tuple[bytes, list[Delivered]], cuts: list[int]
) -> None:
    data, expected = stream
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    chunks = [data[a:b] for a, b in itertools.pairwise(points)]
    lean, got = client()
    asyncio.run(feed(lean, chunks))
    assert got == expected
    assert not lean._rest and not lean._ps.buf  # nothing left half read


def test_a_byte_at_a_time_still_delivers_everything() -> None:
    data = b"MSG a.b 1 r.1 5\r\nhello\r\n+OK\r\nMSG c 1 0\r\n\r\nMSG d 1 2\r\n\r\n\r\n"
    lean, got = client()
    asyncio.run(feed(lean, [data[i : i + 1] for i in range(len(data))]))
    assert got == [
        (b"a.b", b"r.1", b"hello", None),
        (b"c", b"", b"", None),
        (b"d", b"", b"\r\n", None),
    ]


@pytest.mark.parametrize(
    "line",
    [b"MSG a 1 x\r\nabc\r\n", b"MSG a b 3\r\nabc\r\n", b"MSG a\r\n", b"MSG a 1 2 3 4\r\n"],
)
def test_a_malformed_message_line_is_refused_by_nats_py(line: bytes) -> None:
    lean, got = client()
    with pytest.raises(nats.errors.ProtocolError):
        asyncio.run(feed(lean, [b"MSG ok 1 1\r\nx\r\n" + line]))
    assert got == [(b"ok", b"", b"x", None)]  # what came before it was delivered


def test_a_reset_forgets_a_half_read_message() -> None:
    lean, got = client()

    async def run() -> None:
        await lean._ps.parse(b"MSG a 1 10\r\nhalf")
        lean._ps.reset()  # a new connection
        await lean._ps.parse(b"MSG b 1 3\r\nnew\r\n")

    asyncio.run(run())
    assert got == [(b"b", b"", b"new", None)]


def test_a_failing_handler_does_not_stop_the_others() -> None:
    lean = LeanClient()
    got: list[bytes] = []

    def handler(subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        if data == b"boom":
            raise RuntimeError("boom")
        got.append(data)

    lean.deliver_directly(SimpleNamespace(_id=DIRECT), handler)
    asyncio.run(feed(lean, [b"MSG a 1 4\r\nboom\r\nMSG a 1 2\r\nok\r\n"]))
    assert got == [b"ok"]
