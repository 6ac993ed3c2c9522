"""Pitaya's propagated context between our servers (in-memory cluster): values a handler adds
reach the remote it calls and the remotes that one calls in turn; each request has its own;
the per-hop keys are the framework's. Against Go Pitaya: tests/interop/test_mixed_propagation.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

from actors.app import App
from actors.handler import Handler, Remote, handler
from actors.propagation import (
    add_to_propagated,
    get_propagated,
    propagated,
    run_with,
)
from actors.session import Session
from actors.testing import MemoryCluster, TestClient, cluster_app


class Shop(Remote):
    """``shop.shop.*``: what it was given, and a call on to ``bank``."""

    service = "shop"

    @handler
    def seen(self, caller: Session | None, body: dict[str, Any]) -> dict[str, Any]:
        return dict(propagated())

    @handler
    async def slow_seen(self, caller: Session | None, body: dict[str, Any]) -> Any:
        await asyncio.sleep(body["wait"])
        return get_propagated("order")

    @handler
    async def buy(self, caller: Session | None, body: dict[str, Any]) -> Any:
        add_to_propagated("step", "shop")
        return await self.app.rpc("bank.bank.seen", {})


class Bank(Shop):
    service = "bank"


@asynccontextmanager
async def servers() -> AsyncIterator[dict[str, App]]:
    network = MemoryCluster()
    apps = {}
    async with AsyncExitStack() as stack:
        for kind, remote in (("shop", Shop), ("bank", Bank), ("front", None)):
            app = cluster_app(network, kind, server_id=f"{kind}-1")
            if remote is not None:
                app.register_remote(remote)
            await stack.enter_async_context(app)
            apps[kind] = app
        yield apps


async def test_values_reach_a_remote_and_the_remotes_it_calls() -> None:
    async with servers() as apps:
        front = apps["front"]

        async def call(route: str) -> Any:  # as a handler of ``front`` would
            add_to_propagated("tenant", "t-1")
            add_to_propagated("n", [1, {"x": 2}])
            return await front.rpc(route, {})

        assert await asyncio.create_task(call("shop.shop.seen")) == {
            "tenant": "t-1",
            "n": [1, {"x": 2}],
        }
        # shop passes on what it received, with its own addition.
        assert await asyncio.create_task(call("shop.shop.buy")) == {
            "tenant": "t-1",
            "n": [1, {"x": 2}],
            "step": "shop",
        }
        # A caller's trace carrier goes on from a server that does not trace (as Go's do).
        carrier = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}

        async def traced() -> Any:
            add_to_propagated("otel-span", carrier)
            return await front.rpc("shop.shop.buy", {})

        assert (await asyncio.create_task(traced()))["otel-span"] == carrier
        # Outside a request nothing is propagated, and the additions above stayed in their
        # own tasks.
        assert await front.rpc("shop.shop.seen", {}) == {}


async def test_each_request_has_its_own_values() -> None:
    async with servers() as apps:
        front = apps["front"]

        async def order(n: int, wait: float) -> Any:
            add_to_propagated("order", n)
            return await front.rpc("shop.shop.slow_seen", {"wait": wait})

        # The first waits longest: both run at once on shop, each with its own values.
        assert await asyncio.gather(order(1, 0.2), order(2, 0.0), order(3, 0.1)) == [1, 2, 3]


def test_per_hop_and_own_keys_are_refused() -> None:
    for key in ("peer.id", "peer.service", "reqTimeout", "req-route", "py.x", ""):
        with pytest.raises(ValueError):
            run_with(None, add_to_propagated, key, 1)


def test_values_are_current_only_while_the_function_runs() -> None:
    def inner() -> Any:
        add_to_propagated("b", 2)
        return dict(propagated())

    assert run_with({"a": 1}, inner) == {"a": 1, "b": 2}
    assert dict(propagated()) == {}
    assert run_with(None, get_propagated, "a", "none") == "none"
    # A request without values, run inside one with values, sees none.
    assert run_with({"a": 1}, run_with, None, propagated) == {}


class Front(Handler):
    """A frontend's own handlers: one adds a value and makes no RPC, one makes an RPC."""

    service = "front"

    @handler
    def tag(self, session: Session) -> dict[str, bool]:
        add_to_propagated("tenant", "from-tag")
        return {"tagged": True}

    @handler
    async def ask(self, session: Session) -> Any:
        return await self.app.rpc("shop.shop.seen", {})


async def test_a_value_a_synchronous_handler_adds_ends_with_its_message() -> None:
    """A synchronous handler runs in its session's turn, in the actor kernel's context: a
    value it added stayed there, and every later message's RPCs (another player's too)
    carried it."""
    network = MemoryCluster()
    shop = cluster_app(network, "shop", server_id="shop-1")
    shop.register_remote(Shop)
    front = cluster_app(network, "connector", server_id="c-1")
    front.register(Front)
    test = TestClient(front)
    async with shop, test as ann:
        bob = await test.connect()
        await ann.request("connector.front.tag")
        assert await ann.request("connector.front.ask") == {}
        assert await bob.request("connector.front.ask") == {}


class Lobby(Handler):
    """A backend's handler that binds its session with a value propagated."""

    service = "lobby"

    @handler
    async def enter(self, session: Session) -> dict[str, bool]:
        add_to_propagated("tenant", "t-9")
        await session.bind("ann")
        return {"in": True}


async def test_the_values_of_a_backend_handler_reach_the_frontends_bind_callbacks() -> None:
    """A backend's bind went to the frontend without them: its bind callbacks (Go's get
    the caller's context) could not read what the request carried."""
    network = MemoryCluster()
    room = cluster_app(network, "room", server_id="room-1", frontend=False)
    room.register(Lobby)
    front = cluster_app(network, "connector", server_id="c-1")
    seen: list[Any] = []
    front.on_session_bind(lambda session: seen.append((session.uid, get_propagated("tenant"))))
    async with room, TestClient(front) as client:
        assert await client.request("room.lobby.enter") == {"in": True}
    assert seen == [("ann", "t-9")]
    assert get_propagated("tenant") is None
