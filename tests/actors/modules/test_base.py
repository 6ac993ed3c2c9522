"""The module list (``actors.modules.base``): registration, start order, undoing a failed
start, stop in reverse with per-step timeouts, and the ``Module`` protocol.

``Modules`` is driven directly, no app; where the app calls it is in test_modules.py.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from actors.modules.base import Module, ModuleBase, Modules, ModuleStartError


class Step(ModuleBase):
    """Records each step in a shared log; fails or hangs in the step it is told to."""

    def __init__(
        self, name: str, log: list[str], *, fail: str = "", hang: str = "", cancel: str = ""
    ) -> None:
        self.name = name
        self.log = log
        self.fail = fail
        self.hang = hang
        self.cancel = cancel

    async def _step(self, step: str) -> None:
        self.log.append(f"{self.name}.{step}")
        if step == self.fail:
            raise RuntimeError(f"{self.name} {step} broke")
        if step == self.cancel:
            raise asyncio.CancelledError
        if step == self.hang:
            await asyncio.Event().wait()

    async def init(self) -> None:
        await self._step("init")

    async def after_init(self) -> None:
        await self._step("after_init")

    async def before_shutdown(self) -> None:
        await self._step("before_shutdown")

    async def shutdown(self) -> None:
        await self._step("shutdown")


def modules_of(*steps: Step) -> Modules:
    modules = Modules("srv-1", step_timeout=2.0)
    for step in steps:
        modules.register(step, step.name)
    return modules


# -- the protocol and the no-op base ---------------------------------------------------------


async def test_module_base_does_nothing_in_each_step_and_is_a_module() -> None:
    base = ModuleBase()
    assert isinstance(base, Module)
    for step in ("init", "after_init", "before_shutdown", "shutdown"):
        assert await getattr(base, step)() is None


def test_an_object_missing_a_step_is_not_a_module() -> None:
    class Half:
        async def init(self) -> None: ...

        async def shutdown(self) -> None: ...

    assert not isinstance(Half(), Module)


# -- registration ----------------------------------------------------------------------------


def test_registration_order_first_and_lookups() -> None:
    log: list[str] = []
    a, b, c = Step("a", log), Step("b", log), Step("c", log)
    modules = Modules("srv-1")
    modules.register(a, "a")
    modules.register(b, "b")
    modules.register(c, "c", first=True)
    assert modules.names == ["c", "a", "b"]
    assert list(modules) == [("c", c), ("a", a), ("b", b)]
    assert len(modules) == 3
    assert modules.get("b") is b
    with pytest.raises(KeyError, match="no module named 'z'"):
        modules.get("z")


def test_a_name_is_registered_once() -> None:
    modules = modules_of(Step("a", []))
    with pytest.raises(ValueError, match="a module named 'a' is already registered"):
        modules.register(Step("other", []), "a")
    assert len(modules) == 1


def test_only_modules_can_be_registered() -> None:
    modules = Modules("srv-1")
    with pytest.raises(TypeError) as caught:
        modules.register(42, "x")  # type: ignore[arg-type]
    assert str(caught.value) == (
        "42 is not a module: it needs async init, after_init, "
        "before_shutdown and shutdown (subclass actors.modules.ModuleBase)"
    )
    assert modules.names == []


async def test_no_registration_once_started() -> None:
    modules = modules_of(Step("a", []))
    await modules.start()
    with pytest.raises(RuntimeError, match=r"^register modules before the app starts$"):
        modules.register(Step("b", []), "b")
    assert modules.names == ["a"]


def test_iterating_is_over_a_snapshot() -> None:
    modules = modules_of(Step("a", []))
    for _name, _module in modules:
        modules.register(Step("b", []), "b")  # does not extend the loop
    assert modules.names == ["a", "b"]


# -- start and stop --------------------------------------------------------------------------


async def test_start_runs_every_init_then_every_after_init_stop_reverses_in_two_passes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="actors.modules.base")
    log: list[str] = []
    modules = modules_of(Step("a", log), Step("b", log))
    await modules.start()
    assert log == ["a.init", "b.init", "a.after_init", "b.after_init"]
    log.clear()
    await modules.stop()
    assert log == ["b.before_shutdown", "a.before_shutdown", "b.shutdown", "a.shutdown"]
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "[srv-1] module a started",
        "[srv-1] module b started",
        "[srv-1] module b stopped",
        "[srv-1] module a stopped",
    ]
    log.clear()
    await modules.stop()  # nothing left to stop
    assert log == []


async def test_a_failing_init_stops_the_started_ones_and_names_the_module(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []
    modules = modules_of(Step("a", log), Step("b", log, fail="init"), Step("c", log))
    with pytest.raises(ModuleStartError) as caught:
        await modules.start()
    error = caught.value
    assert (error.module_name, error.step) == ("b", "init")
    assert str(error) == "module 'b' failed in init: RuntimeError('b init broke')"
    assert isinstance(error.__cause__, RuntimeError)
    # b never started: only a is shut down; c never ran
    assert log == ["a.init", "b.init", "a.before_shutdown", "a.shutdown"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["[srv-1] module b failed in init: RuntimeError('b init broke')"]


async def test_a_failing_after_init_stops_every_initialised_module() -> None:
    log: list[str] = []
    modules = modules_of(Step("a", log), Step("b", log, fail="after_init"), Step("c", log))
    with pytest.raises(ModuleStartError, match="module 'b' failed in after_init"):
        await modules.start()
    assert log == [
        "a.init",
        "b.init",
        "c.init",
        "a.after_init",
        "b.after_init",
        "c.before_shutdown",
        "b.before_shutdown",
        "a.before_shutdown",
        "c.shutdown",
        "b.shutdown",
        "a.shutdown",
    ]


async def test_a_cancelled_start_is_undone_and_the_cancellation_raised_as_it_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A cancellation is a stop during the start-up (SIGTERM while a module's init waits on
    its database, say), not a failure: no error line (it said the module failed in init:
    CancelledError())."""
    log: list[str] = []
    modules = modules_of(Step("a", log), Step("b", log, cancel="init"))
    with pytest.raises(asyncio.CancelledError):
        await modules.start()
    assert log == ["a.init", "b.init", "a.before_shutdown", "a.shutdown"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_failing_step_at_stop_is_logged_and_the_others_still_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []
    modules = modules_of(Step("a", log), Step("b", log, fail="before_shutdown"))
    await modules.start()
    log.clear()
    await modules.stop()
    assert log == ["b.before_shutdown", "a.before_shutdown", "b.shutdown", "a.shutdown"]
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.getMessage() == "[srv-1] module b failed in before_shutdown"
    assert record.exc_info is not None


@pytest.mark.looptime
async def test_a_hanging_step_at_stop_is_given_up_after_the_step_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []
    modules = modules_of(Step("a", log), Step("b", log, hang="shutdown"))
    await modules.start()
    log.clear()
    loop = asyncio.get_running_loop()
    start = loop.time()
    await modules.stop()
    assert loop.time() - start == pytest.approx(2.0)  # step_timeout, once
    assert log == ["b.before_shutdown", "a.before_shutdown", "b.shutdown", "a.shutdown"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["[srv-1] module b: shutdown took longer than 2.0s; going on"]


def test_the_default_step_timeout() -> None:
    modules = Modules("srv-1")
    assert modules.step_timeout == 10.0 and modules.server_id == "srv-1"


async def test_a_module_whose_shutdown_fails_is_not_said_to_have_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="actors.modules.base")
    modules = modules_of(Step("a", []), Step("b", [], fail="shutdown"))
    await modules.start()
    caplog.clear()
    await modules.stop()
    assert [r.getMessage() for r in caplog.records] == [
        "[srv-1] module b failed in shutdown",
        "[srv-1] module a stopped",
    ]
