"""Handshake validators that are not synchronous (a token checked with an ``await``).

Found in review: a validator written ``async def`` was called and its coroutine never
awaited, so it never ran and every handshake passed it: a client without a token was
served. Such a validator is now refused when it is added (``TypeError``), and one that
returns an awaitable anyway (a lambda around a coroutine function) refuses every handshake
instead of letting every one pass.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import pytest

from actors.testing import serve
from samples.echo.server import build_app
from transport.client import HandshakeRejected
from transport.handshake import HandshakeRequest


async def token_ok(handshake: HandshakeRequest) -> None:
    if handshake.user.get("token") != "secret":
        raise ValueError("bad token")


def test_an_async_validator_is_refused_when_added() -> None:
    app = build_app(tcp_port=0, ws_port=0)
    with pytest.raises(TypeError, match="validators must be synchronous"):
        app.add_handshake_validator("token", token_ok)
    assert app.handshake_validators == []


@pytest.mark.parametrize("token", ["wrong", "secret"])
async def test_a_validator_returning_an_awaitable_refuses_every_handshake(token: str) -> None:
    app = build_app(tcp_port=0, ws_port=0)
    made: list[Coroutine[Any, Any, None]] = []

    def check(handshake: HandshakeRequest) -> Coroutine[Any, Any, None]:
        coroutine = token_ok(handshake)  # a plain function that hides a coroutine
        made.append(coroutine)
        return coroutine

    app.add_handshake_validator("token", check)
    async with serve(app) as server:
        with pytest.raises(HandshakeRejected) as refused:
            await server.connect(handshake_user={"token": token})
    assert refused.value.code == 400
    assert "not synchronous" in refused.value.message
    assert len(made) == 1 and made[0].cr_frame is None  # closed: no "never awaited" warning


class TokenCheck:
    """A validator object whose ``__call__`` is a coroutine function."""

    async def __call__(self, handshake: HandshakeRequest) -> None:
        await token_ok(handshake)


def test_an_object_with_an_async_call_is_refused_when_added() -> None:
    """Accepted, it refused every handshake (every client turned away, the cause told at
    info only, among the peers' faults)."""
    app = build_app(tcp_port=0, ws_port=0)
    with pytest.raises(TypeError, match="validators must be synchronous"):
        app.add_handshake_validator("token", TokenCheck())
    assert app.handshake_validators == []
