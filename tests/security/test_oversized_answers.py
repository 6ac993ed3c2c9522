"""Answers and pushes no packet can carry (a 24-bit length: 16 MiB; a route: 255 bytes).

Found in review: a handler whose answer serialized past 16 MiB made the session actor raise
while writing it (an ERROR traceback each time); the request was never answered and, when
the answer came from an awaiting handler, every later message of that client waited behind
it for ever. A push as large, or on a route over 255 bytes, raised the same way. The client
now gets ``PIT-500`` saying why, the push is dropped, one warning line per 10 s says so, and
the session goes on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from actors.app import App
from actors.cluster.codec import UserPush, encode_push, read_answer
from actors.cluster.memory import MemoryCluster, MemoryRpc
from actors.handler import Handler, handler
from actors.session import Session
from actors.testing import cluster_app, serve
from samples.echo.server import Echo
from tests.actors.cluster.test_carry import Account
from transport.client import RequestError
from transport.packet import MAX_BODY_LENGTH

TOO_LARGE = MAX_BODY_LENGTH + 1


class Large(Handler):
    """``large.answer`` (awaits, then answers ``body`` characters), ``large.push`` (pushes
    them, answers a small body)."""

    service = "large"

    @handler
    async def answer(self, session: Session, body: int) -> str:
        await asyncio.sleep(0)  # answered from the mailbox, not inline
        return "x" * body

    @handler
    def push(self, session: Session, body: dict[str, Any]) -> dict[str, int]:
        session.push(body["route"], "y" * body["size"])
        return {"pushed": body["size"]}


def make_app(**options: Any) -> App:
    app = App(server_type="large", **options)
    app.register(Echo)
    app.register(Large)
    return app


@pytest.mark.parametrize("compress", [False, True])
async def test_an_answer_too_large_for_a_packet_is_a_pit_500_and_the_next_requests_run(
    compress: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve(make_app(compress_data=compress)) as server:
        client = await server.connect()
        # "x" * n compresses well: past the limit only without compression.
        size = TOO_LARGE if not compress else 64
        large = asyncio.ensure_future(client.request("large.answer", size, timeout=10))
        after = asyncio.ensure_future(client.request("echo.echo", "after", timeout=10))
        if compress:
            assert await large == "x" * size
        else:
            with pytest.raises(RequestError) as caught:
                await large
            assert caught.value.code == "PIT-500"
            assert "exceeds the packet limit" in str(caught.value)
        assert await after == "after"
        assert await client.request("echo.echo", "again", timeout=10) == "again"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


@pytest.mark.parametrize(
    ("route", "size", "reason"),
    [("onLarge", TOO_LARGE, "exceeds the limit"), ("r" * 300, 1, "route of 300 bytes")],
)
async def test_a_push_no_packet_can_carry_is_dropped_and_said_once(
    route: str, size: int, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with serve(make_app()) as server:
        client = await server.connect()
        for _ in range(3):
            body = {"route": route, "size": size}
            assert await client.request("large.push", body, timeout=10) == {"pushed": size}
        assert await client.request("echo.echo", "still here", timeout=10) == "still here"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    warned = [r for r in caplog.records if "was not written" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert f"push {route[:64]!r}" in warned[0].getMessage()
    assert reason in warned[0].getMessage()


async def test_a_push_by_uid_no_packet_can_carry_is_dropped_and_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A push by uid (a peer's ``protos.Push`` on the uid's subject, or gRPC's PushToUser)
    is framed by the frontend: one past 16 MiB (NATS's max payload may be up to 64 MiB)
    raised out of its bridge, an ERROR traceback per push, and an acknowledged one was never
    answered (its sender waited the RPC timeout). It is dropped as a session's push is."""
    caplog.set_level(logging.INFO)
    network = MemoryCluster()
    connector = cluster_app(network, "connector", server_id="c-1")
    connector.register(Account)
    peer = MemoryRpc(network)
    await peer.connect()
    async with serve(connector) as server:
        client = await server.connect()
        pushes = client.pushes()
        assert await client.request("account.login", {"uid": "ann"}) == {"uid": "ann"}
        large = encode_push(UserPush("ann", "onLarge", b"y" * TOO_LARGE))
        answer = await peer.request_user("connector", "ann", "push", large, timeout=30)
        assert answer is not None and read_answer(answer) == b"ack"
        small = encode_push(UserPush("ann", "onSmall", b'{"n":1}'))
        peer.publish_user("connector", "ann", "push", small)
        push = await asyncio.wait_for(anext(pushes), 10)
        assert (push.route, push.body) == ("onSmall", {"n": 1})
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    warned = [r for r in caplog.records if "was not written" in r.getMessage()]
    assert len(warned) == 1 and "push 'onLarge'" in warned[0].getMessage()
