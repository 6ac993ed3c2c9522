"""Every error a client can provoke, through a real client: each answers a typed Pitaya code.

``PIT-500`` means "the server is broken" (the handler raised an exception it did not mean
to); an expected condition (a typo in a route, a malformed body, a second login, too many
requests) must answer the code that names it, so a client can switch on it. The sweep below
provokes each condition a client can reach against an in-process app and records the code it
got; the table of expected codes is the contract, and only the deliberate
"handler raised a plain exception" case may answer ``PIT-500``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from actors.app import App
from actors.errors import PitayaError
from actors.handler import Handler, handler
from actors.modules.unique_session import UniqueSession
from actors.session import Session, SessionAlreadyBound
from actors.testing import TestServer, serve
from transport.client import RequestError
from transport.client_errors import request_error

INTERNAL = "PIT-500"


@dataclass(frozen=True, slots=True)
class Login:
    uid: str


class Sweep(Handler):
    """One route per way a handler can answer with an error."""

    service = "sweep"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.holding = asyncio.Event()

    @handler
    async def login(self, session: Session, body: Login) -> dict[str, str]:
        await session.bind(body.uid)
        return {"uid": body.uid}

    @handler
    def typed(self, session: Session, body: Login) -> dict[str, str]:
        return {"uid": body.uid}

    @handler
    def obj(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        return body

    @handler
    def only_notify(self, session: Session, body: Any) -> None:
        pass

    @handler
    def refuse(self, session: Session) -> dict[str, str]:
        raise PitayaError("PIT-403", "not your turn", {"turn": "b"})

    @handler
    def nothing(self, session: Session) -> dict[str, str]:
        return None  # type: ignore[return-value]

    @handler
    def boom(self, session: Session) -> dict[str, str]:
        raise RuntimeError("a bug in the handler")

    @handler
    async def hold(self, session: Session) -> dict[str, str]:
        self.holding.set()
        await self.release.wait()
        return {"held": "done"}

    @handler
    def echo(self, session: Session, body: Any) -> Any:
        return body


def make_app(**options: Any) -> App:
    app = App(server_type="sweep", **options)
    app.register(Sweep)
    return app


def sweep_actor(app: App) -> Sweep:
    actor = app.handler_instance("sweep")
    assert isinstance(actor, Sweep)
    return actor


async def code_of(call: Awaitable[Any]) -> str:
    """The code of the error ``call`` raises; the test fails if it succeeds."""
    try:
        result = await asyncio.wait_for(call, 10)
    except RequestError as exc:
        return exc.code
    pytest.fail(f"expected an error response, got {result!r}")


# -- the conditions, one function each --------------------------------------------------------

Case = Callable[[TestServer], Awaitable[str]]


async def unknown_route(server: TestServer) -> str:
    client = await server.connect()
    return await code_of(client.request("nope.nothing", {}))


async def route_of_another_server_type(server: TestServer) -> str:
    client = await server.connect()
    return await code_of(client.request("other.sweep.echo", {}))


async def request_to_a_notify_only_route(server: TestServer) -> str:
    client = await server.connect()
    return await code_of(client.request("sweep.only_notify", {}))


async def body_that_is_not_json(server: TestServer) -> str:
    client = await server.connect()
    message = await asyncio.wait_for(client.request_raw("sweep.obj", b"{not json"), 10)
    assert message.error
    return request_error(client.serializer, message.data).code


async def body_that_is_not_an_object(server: TestServer) -> str:
    client = await server.connect()
    return await code_of(client.request("sweep.obj", ["a", "list"]))


async def body_with_a_missing_field(server: TestServer) -> str:
    client = await server.connect()
    return await code_of(client.request("sweep.typed", {"name": "x"}))


async def body_with_a_wrong_field_type(server: TestServer) -> str:
    client = await server.connect()
    return await code_of(client.request("sweep.typed", {"uid": 3}))


async def rebinding_a_bound_session(server: TestServer) -> str:
    client = await server.connect()
    assert await client.request("sweep.login", {"uid": "ann"}) == {"uid": "ann"}
    return await code_of(client.request("sweep.login", {"uid": "bob"}))


async def handler_raising_a_pitaya_error(server: TestServer) -> str:
    client = await server.connect()
    return await code_of(client.request("sweep.refuse"))


async def handler_returning_nothing_to_a_request(server: TestServer) -> str:
    client = await server.connect()
    return await code_of(client.request("sweep.nothing"))


async def too_many_pending_requests(server: TestServer) -> str:
    client = await server.connect()
    actor = sweep_actor(server.app)
    held = asyncio.ensure_future(client.request("sweep.hold"))
    await asyncio.wait_for(actor.holding.wait(), 10)
    # One behind the held request is allowed (max_pending_requests=1), whatever the
    # dispatcher does with it; one of the many after it must be refused. The last one sent is
    # refused the moment it arrives, while the first is still held.
    queued = [asyncio.ensure_future(client.request("sweep.echo", i)) for i in range(100)]
    code = await code_of(queued[-1])
    actor.release.set()
    assert await asyncio.wait_for(held, 10) == {"held": "done"}
    results = await asyncio.gather(*queued, return_exceptions=True)
    for i, result in enumerate(results):
        assert result == i or (isinstance(result, RequestError) and result.code == code)
    return code


async def handler_raising_a_plain_exception(server: TestServer) -> str:
    client = await server.connect()
    return await code_of(client.request("sweep.boom"))


# The contract: condition -> the code the client gets.
EXPECTED: dict[Case, str] = {
    unknown_route: "PIT-404",
    route_of_another_server_type: "PIT-404",
    request_to_a_notify_only_route: "PIT-400",
    body_that_is_not_json: "PIT-400",
    body_that_is_not_an_object: "PIT-400",
    body_with_a_missing_field: "PIT-400",
    body_with_a_wrong_field_type: "PIT-400",
    rebinding_a_bound_session: "PIT-409",
    handler_raising_a_pitaya_error: "PIT-403",
    handler_returning_nothing_to_a_request: "PIT-000",
    too_many_pending_requests: "PIT-429",
    handler_raising_a_plain_exception: INTERNAL,  # the one deliberate internal error
}


async def test_every_client_reachable_error_answers_its_typed_code() -> None:
    got: dict[str, str] = {}
    async with serve(make_app(max_pending_requests=1)) as server:
        for case in EXPECTED:
            got[case.__name__] = await case(server)
            await server.close_clients()  # a fresh session for the next condition
    assert got == {case.__name__: code for case, code in EXPECTED.items()}
    internal = [name for name, code in got.items() if code == INTERNAL]
    assert internal == [handler_raising_a_plain_exception.__name__]


async def test_rate_limited_request_answers_pit_429() -> None:
    app = make_app(
        rate_limit_enabled=True,
        rate_limit_packets=2,
        rate_limit_interval=3600.0,  # no refill during the test
        rate_limit_action="error",
    )
    async with serve(app) as server:
        client = await server.connect()
        assert [await client.request("sweep.echo", i) for i in range(2)] == [0, 1]
        assert await code_of(client.request("sweep.echo", 2)) == "PIT-429"


async def test_binding_a_uid_held_by_another_session_answers_pit_409() -> None:
    app = make_app()
    app.register_module(UniqueSession(app, on_conflict="refuse"), "unique_session")
    async with serve(app) as server:
        first = await server.connect()
        second = await server.connect()
        assert await first.request("sweep.login", {"uid": "ann"}) == {"uid": "ann"}
        assert await code_of(second.request("sweep.login", {"uid": "ann"})) == "PIT-409"


async def test_rebinding_error_carries_a_message_and_is_importable_from_session() -> None:
    # SessionAlreadyBound is part of the session API (actors.session) and a PitayaError.
    assert issubclass(SessionAlreadyBound, PitayaError)
    error = SessionAlreadyBound("session 1 is already bound to uid 'ann'")
    assert (error.code, error.msg) == ("PIT-409", "session 1 is already bound to uid 'ann'")
    async with serve(make_app()) as server:
        client = await server.connect()
        await client.request("sweep.login", {"uid": "ann"})
        with pytest.raises(RequestError) as info:
            await client.request("sweep.login", {"uid": "bob"})
        assert info.value.msg.endswith("is already bound to uid 'ann'")
        assert await client.request("sweep.echo", "still served") == "still served"
