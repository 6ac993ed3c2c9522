"""Module lifecycle in a real (standalone) app: order, placement in start/stop, failures."""

from __future__ import annotations

import asyncio

import pytest

from actors.app import App
from actors.modules import ModuleBase, ModuleStartError
from actors.testing import serve
from tests.services import free_port
from transport.client import Client


class Recorder(ModuleBase):
    """Appends ``(step, name)`` to a shared journal; fails or hangs in ``fail``/``hang``."""

    def __init__(
        self, name: str, journal: list[tuple[str, str]], fail: str = "", hang: str = ""
    ) -> None:
        self.name = name
        self.journal = journal
        self.fail = fail
        self.hang = hang
        self.app: App | None = None
        self.seen: dict[str, object] = {}

    async def _step(self, step: str) -> None:
        self.journal.append((step, self.name))
        if step == self.hang:
            await asyncio.Event().wait()
        if step == self.fail:
            raise RuntimeError(f"{self.name} broke in {step}")

    async def init(self) -> None:
        if self.app is not None:
            self.seen["ready_at_init"] = self.app.ready_now()
        await self._step("init")

    async def after_init(self) -> None:
        await self._step("after_init")

    async def before_shutdown(self) -> None:
        if self.app is not None:
            self.seen["sessions_at_before_shutdown"] = len(self.app.sessions)
        await self._step("before_shutdown")

    async def shutdown(self) -> None:
        await self._step("shutdown")


async def test_start_in_registration_order_stop_in_reverse() -> None:
    journal: list[tuple[str, str]] = []
    app = App(server_type="game")
    a, b, c = (Recorder(n, journal) for n in "abc")
    a.app = app
    app.register_module(a, "a")
    app.register_module_after(b, "b")
    app.register_module_before(c, "c")  # Pitaya's RegisterModuleBefore: first of all
    assert app.get_module("a") is a
    with pytest.raises(KeyError, match="'nope'"):
        app.get_module("nope")
    with pytest.raises(ValueError, match="already registered"):
        app.register_module(Recorder("a2", journal), "a")
    with pytest.raises(TypeError, match="not a module"):
        app.register_module(object(), "x")  # type: ignore[arg-type]

    async with serve(app):
        assert journal == [
            ("init", "c"),
            ("init", "a"),
            ("init", "b"),
            ("after_init", "c"),
            ("after_init", "a"),
            ("after_init", "b"),
        ]
        assert a.seen["ready_at_init"] is False  # modules start before the listeners open
        client = await Client.connect(*app.address("tcp"))  # not closed by serve()
        with pytest.raises(RuntimeError, match="before the app starts"):
            app.register_module(Recorder("late", journal), "late")
        journal.clear()
    # Clients were kicked (and their sessions closed) before the modules stopped.
    await client.wait_closed(timeout=5)
    assert client.kicked
    assert a.seen["sessions_at_before_shutdown"] == 0
    assert journal == [
        ("before_shutdown", "b"),
        ("before_shutdown", "a"),
        ("before_shutdown", "c"),
        ("shutdown", "b"),
        ("shutdown", "a"),
        ("shutdown", "c"),
    ]


@pytest.mark.parametrize("step", ["init", "after_init"])
async def test_a_failing_module_stops_the_start_and_is_named(step: str) -> None:
    journal: list[tuple[str, str]] = []
    app = App(server_type="game")
    app.register_module(Recorder("db", journal), "db")
    app.register_module(Recorder("cache", journal, fail=step), "cache")
    app.register_module(Recorder("stats", journal), "stats")
    port = free_port()
    app.listen_tcp("127.0.0.1", port)
    with pytest.raises(ModuleStartError, match=f"module 'cache' failed in {step}") as info:
        await app.start()
    assert info.value.module_name == "cache"
    assert "cache broke" in str(info.value.__cause__)
    # What had started is shut down again, in reverse; nothing listens.
    started = ["db"] if step == "init" else ["db", "cache", "stats"]
    undo = [(s, n) for s in ("before_shutdown", "shutdown") for n in reversed(started)]
    assert journal[-len(undo) :] == undo
    if step == "init":
        assert ("init", "stats") not in journal
    assert not app.ready_now()
    with pytest.raises(ConnectionRefusedError):
        await Client.connect("127.0.0.1", port, timeout=2)


async def test_a_failing_or_hanging_shutdown_does_not_stop_the_others() -> None:
    journal: list[tuple[str, str]] = []
    app = App(server_type="game", shutdown_timeout=0.2)
    app.register_module(Recorder("first", journal), "first")
    app.register_module(Recorder("hangs", journal, hang="before_shutdown"), "hangs")
    app.register_module(Recorder("fails", journal, fail="shutdown"), "fails")
    async with app:
        journal.clear()
    assert journal == [
        ("before_shutdown", "fails"),
        ("before_shutdown", "hangs"),
        ("before_shutdown", "first"),
        ("shutdown", "fails"),
        ("shutdown", "hangs"),
        ("shutdown", "first"),
    ]
