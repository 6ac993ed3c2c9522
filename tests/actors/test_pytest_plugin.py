"""The pytest plugin shipped with the package, run on a user's test file with ``pytester``.

Each run is a fresh ``pytest`` process in a directory with no configuration at all (so no
``asyncio_mode``), as a new user's project would be; the plugin is found through the
package's ``pytest11`` entry point.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import entry_points

import pytest

from actors.app import App
from actors.pytest_plugin import TestClientFactory
from actors.system import ActorSystem
from samples.echo.server import Echo

pytest_plugins = ["pytester"]

USER_TESTS = """
import asyncio
from dataclasses import dataclass

from actors.app import App
from actors.handler import Call, Handler, handler
from actors.session import Session
from actors.testing import Push, TestSession


@dataclass(frozen=True, slots=True)
class Join:
    name: str


class Room(Handler):
    service = "room"

    def __init__(self) -> None:
        self.members: list[str] = []

    @handler
    async def join(self, session: Session, body: Join) -> dict[str, list[str]]:
        await session.bind(body.name)
        self.members.append(body.name)
        session.push("onJoin", {"name": body.name})
        return {"members": self.members}


SYSTEMS = []
APPS = []


async def test_a_plain_async_test():
    await asyncio.sleep(0)
    assert asyncio.get_running_loop().is_running()


async def test_a_handler_in_an_actor_system(actor_system):
    room = actor_system.spawn(Room)
    session = TestSession()
    assert await room.ask(Call("join", session, Join("ann"))) == {"members": ["ann"]}
    assert session.pushes == [Push("onJoin", {"name": "ann"})]
    SYSTEMS.append(actor_system)


async def test_clients_in_memory(test_client):
    app = App(server_type="game")
    app.register(Room)
    ann = await test_client(app)
    bob = await test_client(app, handshake_user={"name": "bob"})
    assert await ann.request("room.join", {"name": "ann"}) == {"members": ["ann"]}
    assert await bob.request("room.join", {"name": "bob"}) == {"members": ["ann", "bob"]}
    APPS.append((app, ann, bob))


def test_the_fixtures_cleaned_up_after_their_tests():
    [system] = SYSTEMS
    assert system.actor_count == 0
    [(app, ann, bob)] = APPS
    assert ann.closed and bob.closed
    assert app.system.actor_count == 0


class TestInAClass:
    async def test_a_method(self, actor_system):
        assert await actor_system.spawn(Room).ask(Call("join", TestSession(), Join("x")))
"""

FAILING_TESTS = """
import asyncio

async def test_fails_after_awaiting():
    await asyncio.sleep(0)
    assert 1 == 2, "the coroutine really ran"
"""


@pytest.fixture(autouse=True)
def _plugin_installed() -> None:
    if not any(e.value == "actors.pytest_plugin" for e in entry_points(group="pytest11")):
        pytest.fail(
            "the pytest11 entry point of actors.pytest_plugin is not installed: "
            "reinstall the package (pip install -e .)"
        )


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # A coroutine that nobody awaited would be a RuntimeWarning: make it fail the run.
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-W", "error::RuntimeWarning", *args
    )
    assert "PytestUnhandledCoroutineWarning" not in result.stdout.str()
    return result


def run_alone(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.RunResult:
    """No plugin but this one: no pytest-asyncio at all."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return run(pytester, "-p", "actors.pytest_plugin")


def test_async_tests_and_fixtures_need_no_asyncio_settings(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = run(pytester)
    result.assert_outcomes(passed=5)


def test_it_runs_alone_without_pytest_asyncio(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = run_alone(pytester, monkeypatch)
    result.assert_outcomes(passed=5)


def test_it_coexists_with_pytest_asyncio_auto_mode(pytester: pytest.Pytester) -> None:
    # pytest-asyncio runs every async test here; the fixtures use its loop.
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function")
    pytester.makepyfile(test_user=USER_TESTS)
    result = run(pytester)
    result.assert_outcomes(passed=5)


def test_it_coexists_with_tests_marked_for_pytest_asyncio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user=USER_TESTS,
        test_marked="""
import asyncio
import pytest
from actors.system import ActorSystem

@pytest.mark.asyncio
async def test_marked(actor_system: ActorSystem) -> None:
    # The fixture and the test share pytest-asyncio's loop.
    assert actor_system.loop is asyncio.get_running_loop()

async def test_unmarked_beside_it(actor_system: ActorSystem) -> None:
    assert actor_system.loop is asyncio.get_running_loop()
""",
    )
    result = run(pytester)
    result.assert_outcomes(passed=7)


def test_a_failing_async_test_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_failing=FAILING_TESTS)
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the coroutine really ran*"])


def test_each_test_gets_a_fresh_loop(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_loops="""
import asyncio

LOOPS = []

async def test_one():
    LOOPS.append(asyncio.get_running_loop())

async def test_two():
    LOOPS.append(asyncio.get_running_loop())
    assert LOOPS[0] is not LOOPS[1]
    assert LOOPS[0].is_closed()
"""
    )
    result = run_alone(pytester, monkeypatch)
    result.assert_outcomes(passed=2)


ASYNC_FIXTURES = """
import asyncio

import pytest

from actors.app import App
from actors.handler import Handler, handler
from actors.session import Session
from actors.testing import TestClient

EVENTS = []


class Echo(Handler):
    service = "echo"

    @handler
    def echo(self, session: Session, body: dict) -> dict:
        return body


@pytest.fixture
async def app():
    app = App(server_type="game", shutdown_timeout=0.1)
    app.register(Echo)
    EVENTS.append(("made", asyncio.get_running_loop()))
    return app


@pytest.fixture
async def client(app):
    async with TestClient(app) as client:
        EVENTS.append(("started", asyncio.get_running_loop()))
        yield client
    EVENTS.append(("stopped", app.system.actor_count))


async def test_a_server_started_by_a_fixture(client):
    assert await client.request("echo.echo", {"a": 1}) == {"a": 1}
    loop = asyncio.get_running_loop()
    assert EVENTS == [("made", loop), ("started", loop)]


class TestInAClass:
    @pytest.fixture
    async def doubled(self, client):
        self.asked = True
        return await client.request("echo.echo", {"b": 2})

    async def test_a_method(self, doubled):
        assert doubled == {"b": 2}
        assert self.asked


def test_the_fixtures_were_torn_down_in_the_loop():
    assert [event for event in EVENTS if event[0] == "stopped"] == [("stopped", 0)] * 2
"""

WIDE_ASYNC_FIXTURE = """
import pytest

@pytest.fixture(scope="module")
async def shared():
    return 1

async def test_uses_it(shared):
    assert shared == 1
"""


@pytest.mark.parametrize("alone", [True, False], ids=["alone", "beside-pytest-asyncio"])
def test_async_fixtures_run_in_the_tests_loop(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, alone: bool
) -> None:
    # A server a test needs is started by a fixture of its own, an async one; pytest-asyncio
    # in its default (strict) mode leaves such a fixture to whoever runs the test.
    pytester.makepyfile(test_fixtures=ASYNC_FIXTURES)
    result = run_alone(pytester, monkeypatch) if alone else run(pytester)
    result.assert_outcomes(passed=3)


def test_an_async_fixture_wider_than_a_test_is_refused_with_a_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_wide=WIDE_ASYNC_FIXTURE)
    result = run_alone(pytester, monkeypatch)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*async fixture 'shared' has scope 'module'*"])


async def test_the_fixtures_in_this_suite_share_its_loop(
    actor_system: ActorSystem, test_client: TestClientFactory
) -> None:
    # This suite runs pytest-asyncio in auto mode: the fixtures use the test's loop.
    assert actor_system.loop is asyncio.get_running_loop()
    app = App(server_type="game")
    app.register(Echo)
    client = await test_client(app)
    assert await client.request("echo.echo", [1]) == [1]
    assert app.system.loop is asyncio.get_running_loop()
