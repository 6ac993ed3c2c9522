"""The pytest plugin of pitaya-actors: async tests and app fixtures with no asyncio settings.

Installed with the package (entry point ``pytest11``), so a test file needs nothing else::

    async def test_join(actor_system: ActorSystem) -> None:
        room = actor_system.spawn(Room)
        assert await room.ask(Call("join", TestSession(), Join("ann"))) == {...}

    async def test_join_over_the_protocol(test_client: TestClientFactory) -> None:
        client = await test_client(app)   # the app is started with an in-memory acceptor
        assert await client.request("room.join", {"name": "ann"}) == {...}

- An ``async def`` test that no other plugin runs (pytest-asyncio in auto mode or with its
  marker, anyio, trio) runs here, on a fresh event loop per test. With pytest-asyncio
  running a test, the fixtures below use its loop, so both kinds of test mix freely.
- ``async def`` fixtures of such a test (``async with TestClient(app) as client: yield
  client``) run in its loop too; they must be function-scoped (a new loop per test).
- ``actor_system``: an :class:`~actors.system.ActorSystem`, shut down after the test.
- ``test_client``: ``await test_client(app, **options)`` starts ``app`` the first time it
  sees it (an in-memory acceptor, see :class:`actors.testing.TestClient`) and returns a new
  handshaken client each call; after the test the clients are closed and the apps stopped.

Nothing of ``actors`` is imported until a fixture is used: loading the plugin is free.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest

if TYPE_CHECKING:
    from actors.app import App
    from actors.system import ActorSystem
    from actors.testing import TestClient
    from transport.client import Client

__all__ = ["TestClientFactory", "actor_system", "test_client"]

TestClientFactory = Callable[..., Awaitable["Client"]]
"""The ``test_client`` fixture: ``await test_client(app, **client_options) -> Client``."""

_RUNNER = "_actors_runner"
_OTHER_RUNNERS = ("anyio", "trio")  # markers of plugins that run async tests themselves


def _run_by_pytest_asyncio(item: pytest.Item) -> bool:
    try:
        from pytest_asyncio import is_async_test
    except ImportError:
        return False
    return bool(item.config.pluginmanager.has_plugin("asyncio") and is_async_test(item))


def _ours(item: pytest.Item) -> bool:
    """An ``async def`` test function that no other plugin will run."""
    return (
        isinstance(item, pytest.Function)
        and inspect.iscoroutinefunction(item.obj)
        and not _run_by_pytest_asyncio(item)
        and not any(item.get_closest_marker(name) for name in _OTHER_RUNNERS)
    )


_TEST = pytest.StashKey["pytest.Item"]()
"""The test being set up or run: the one whose fixtures are being made."""


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.config.stash[_TEST] = item
    # Set up the loop before the test's fixtures, so it is torn down after them.
    if isinstance(item, pytest.Function) and _ours(item) and _RUNNER not in item.fixturenames:
        item.fixturenames.insert(0, _RUNNER)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Iterator[Any]:
    """Run the ``async def`` fixtures of the tests this plugin runs, in the test's loop.

    Last of the plugins' wrappers, so a fixture another plugin runs (pytest-asyncio's in
    auto mode or with its decorator, anyio's) no longer looks async here and is left alone.
    """
    function = fixturedef.func
    is_async = inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)
    test = request.config.stash.get(_TEST, None)
    if not is_async or test is None or not _ours(test):
        return (yield)
    if fixturedef.scope != "function":
        pytest.fail(
            f"async fixture {fixturedef.argname!r} has scope {fixturedef.scope!r}: "
            "the async fixtures of pitaya-actors' tests run in the test's own event loop "
            "(a new one per test), so they must be function-scoped. Make it a function "
            "fixture, or run the tests with pytest-asyncio and its loop_scope.",
            pytrace=False,
        )
    runner = cast(asyncio.Runner, request.getfixturevalue(_RUNNER))
    with pytest.MonkeyPatch.context() as patch:  # pytest calls fixturedef.func
        patch.setattr(fixturedef, "func", _in_loop(function, runner, request))
        return (yield)


def _in_loop(
    function: Callable[..., Any], runner: asyncio.Runner, request: pytest.FixtureRequest
) -> Callable[..., Any]:
    """A synchronous fixture function that runs the async one ``function`` in ``runner``."""
    instance, bound_to = request.instance, getattr(function, "__self__", None)
    if instance is not None and bound_to is not None and isinstance(instance, type(bound_to)):
        # A fixture of the test's class: pytest binds it to the test's own instance.
        function = function.__func__.__get__(instance)  # type: ignore[attr-defined]
    name = request.fixturename

    if not inspect.isasyncgenfunction(function):

        def value(**kwargs: Any) -> Any:
            return runner.run(function(**kwargs))

        return value

    async def setup(steps: AsyncIterator[Any]) -> Any:
        try:
            return await anext(steps)
        except StopAsyncIteration:
            raise ValueError(f"async fixture {name!r} did not yield a value") from None

    async def teardown(steps: AsyncIterator[Any]) -> None:
        try:
            await anext(steps)
        except StopAsyncIteration:
            return
        raise ValueError(f"async fixture {name!r} yields more than once")

    def generator(**kwargs: Any) -> Iterator[Any]:
        steps = function(**kwargs)
        yield runner.run(setup(steps))
        runner.run(teardown(steps))

    return generator


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Iterator[None]:
    if not _ours(pyfuncitem):
        return (yield)
    runner = cast(asyncio.Runner, pyfuncitem.funcargs[_RUNNER])
    coroutine_function = pyfuncitem.obj

    @functools.wraps(coroutine_function)
    def run(*args: Any, **kwargs: Any) -> None:
        runner.run(coroutine_function(*args, **kwargs))

    pyfuncitem.obj = run
    try:
        return (yield)
    finally:
        pyfuncitem.obj = coroutine_function


@pytest.fixture(name=_RUNNER)
def _actors_runner() -> Iterator[asyncio.Runner]:
    """The event loop of one test this plugin runs."""
    with asyncio.Runner() as runner:
        yield runner


def _runner(request: pytest.FixtureRequest) -> asyncio.Runner:
    """The runner whose loop the test runs in: pytest-asyncio's for its tests, else ours."""
    if _run_by_pytest_asyncio(request.node):
        # pytest-asyncio adds its runner fixture (``_<scope>_scoped_runner``) to the test's
        # fixtures; asking for it here also keeps it alive until this fixture is torn down.
        for name in request.fixturenames:
            if name.startswith("_") and name.endswith("_scoped_runner"):
                runner: asyncio.Runner = request.getfixturevalue(name)
                return runner
    ours: asyncio.Runner = request.getfixturevalue(_RUNNER)
    return ours


@pytest.fixture
def actor_system(request: pytest.FixtureRequest) -> Iterator[ActorSystem]:
    """An :class:`~actors.system.ActorSystem` for the test, shut down after it."""
    from actors.system import ActorSystem

    runner = _runner(request)
    system = ActorSystem("test")
    yield system
    runner.run(system.shutdown())


@pytest.fixture
def test_client(request: pytest.FixtureRequest) -> Iterator[TestClientFactory]:
    """``await test_client(app, **options)``: a new client of ``app`` over in-memory pipes.

    The first call for an app starts it; ``options`` are
    :meth:`transport.client.Client.over`'s, for that client. After the test every client is
    closed and every app stopped, last started first.
    """
    from actors.testing import TestClient

    runner = _runner(request)
    started: dict[int, TestClient] = {}

    async def connect(app: App, **options: Any) -> Client:
        test = started.get(id(app))
        if test is None:
            test = started[id(app)] = TestClient(app)
            await test.start()
        return await test.connect(**options)

    yield connect
    for test in reversed(started.values()):
        runner.run(test.stop())
