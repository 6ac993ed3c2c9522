"""actors/eventloop.py: which event loop ``App.run`` serves on."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import uvloop

from actors.app import App
from actors.eventloop import EventLoopUnavailable, loop_factory, loop_name
from transport.client import Client


def test_asyncio_is_asyncio_default_loop() -> None:
    assert loop_factory("asyncio") is None
    assert loop_name(None) == "asyncio"


def test_auto_and_uvloop_take_uvloop_when_installed() -> None:
    assert loop_factory("auto") is uvloop.new_event_loop
    assert loop_factory("uvloop") is uvloop.new_event_loop
    assert loop_name(uvloop.new_event_loop) == "uvloop"


def test_without_uvloop_auto_falls_back_and_uvloop_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert loop_factory("auto") is None
    with pytest.raises(EventLoopUnavailable, match="pip install uvloop"):
        loop_factory("uvloop")


def test_an_unknown_choice_is_refused() -> None:
    with pytest.raises(ValueError, match="event_loop must be one of auto, asyncio, uvloop"):
        loop_factory("trio")


async def test_an_app_with_an_unknown_choice_does_not_start() -> None:
    app = App(event_loop="trio")
    with pytest.raises(ValueError, match="event_loop"):
        await app.start()


SERVER = textwrap.dedent(
    """
    import logging
    from actors.app import App
    from actors.handler import Handler, handler

    class Echo(Handler):
        @handler
        def echo(self, session, body):
            return body

    logging.basicConfig(level=logging.INFO)
    app = App(server_type="echo")
    app.register(Echo)
    app.listen_tcp("127.0.0.1", 0)
    app.run()
    """
)


@pytest.mark.parametrize(
    ("environ", "loop"),
    [({}, "uvloop"), ({"PITAYA_EVENT_LOOP": "asyncio"}, "asyncio")],
)
def test_run_serves_on_the_chosen_loop(environ: dict[str, str], loop: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PITAYA_EVENT_LOOP"} | environ
    with subprocess.Popen(
        [sys.executable, "-c", SERVER], env=env, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stderr is not None
        try:
            started = ""
            for line in proc.stderr:
                if "started (echo)" in line:
                    started = line
                    break
            assert started.rstrip().endswith(f"{loop} loop"), started
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    assert proc.returncode == 0


FROZEN = textwrap.dedent(
    """
    import gc, logging
    from actors.app import App
    from actors.handler import Handler, handler

    class Probe(Handler):
        @handler
        def frozen(self, session, body):
            return {"frozen": gc.get_freeze_count()}

    logging.basicConfig(level=logging.INFO)
    app = App(server_type="probe", event_loop="asyncio")
    app.register(Probe)
    app.listen_tcp("127.0.0.1", 0)
    app.run()
    """
)


async def test_run_moves_what_was_built_at_start_out_of_the_collectors_sight() -> None:
    """``App.run`` owns its process: once serving, what start-up allocated is frozen, so
    the collections requests trigger do not walk it again (``gc.freeze``)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FROZEN, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    try:
        port = 0
        async with asyncio.timeout(30):
            while not port:
                line = (await proc.stderr.readline()).decode()
                assert line, "the server exited"
                if "tcp listening on" in line:
                    port = int(line.rsplit(":", 1)[1])
            while "started (probe)" not in line:  # frozen right after the start-up line
                line = (await proc.stderr.readline()).decode()
                assert line, "the server exited"
        client = await Client.connect("127.0.0.1", port)
        try:
            assert (await client.request("probe.frozen", {}))["frozen"] > 1000
        finally:
            await client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
