"""The statsd reporter, received by a real UDP socket in the test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from actors.app import App
from actors.metrics import StatsdReporter
from actors.metrics.statsd_reporter import clean
from actors.testing import serve
from samples.echo.server import Echo
from transport.client import RequestError


class StatsdServer(asyncio.DatagramProtocol):
    """Collects statsd lines arriving on a loopback UDP port."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.arrived = asyncio.Event()
        self.port = 0

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.lines.extend(data.decode("ascii").split("\n"))
        self.arrived.set()

    async def line(self, prefix: str, timeout: float = 5.0) -> str:
        """Take the oldest line received starting with ``prefix``, waiting for it if needed."""
        async with asyncio.timeout(timeout):
            while True:
                for index, line in enumerate(self.lines):
                    if line.startswith(prefix):
                        del self.lines[index]
                        return line
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def statsd_server() -> AsyncIterator[StatsdServer]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        StatsdServer, local_addr=("127.0.0.1", 0)
    )
    protocol.port = transport.get_extra_info("sockname")[1]
    try:
        yield protocol
    finally:
        transport.close()


def make_app(**options: Any) -> App:
    app = App(server_type="echo", metrics_period=0.05, **options)
    app.register(Echo)
    return app


async def test_lines_carry_prefix_const_tags_and_report_tags(statsd_server: StatsdServer) -> None:
    app = make_app()
    app.add_metrics_reporter(
        StatsdReporter(host="127.0.0.1", port=statsd_server.port, const_tags={"serverType": "echo"})
    )
    async with serve(app) as server:
        client = await server.connect()
        await client.request("echo.echo", 1)
        line = await statsd_server.line("pitaya.response_time_ns,")
        name, _, value = line.partition(":")
        assert name == (
            "pitaya.response_time_ns,serverType=echo,route=echo.echo,status=ok,type=handler,code="
        )
        assert value.endswith("|ms") and float(value[:-3]) > 0
        line = await statsd_server.line("pitaya.handler_delay_ns,")
        assert line.startswith("pitaya.handler_delay_ns,serverType=echo,route=echo.echo,type=")

        with pytest.raises(RequestError):
            await client.request("nope.nothing")
        line = await statsd_server.line("pitaya.response_time_ns,")
        assert ",route=unknown,status=failed,type=handler,code=PIT-404:" in line

        line = await statsd_server.line("pitaya.connected_clients,serverType=echo:1")
        assert line == "pitaya.connected_clients,serverType=echo:1.0|g"
        assert await statsd_server.line("pitaya.actor_dead_letters,") == (
            "pitaya.actor_dead_letters,serverType=echo:0|c"
        )


async def test_config_enables_statsd_with_its_prefix(statsd_server: StatsdServer) -> None:
    app = make_app(
        metrics_statsd_enabled=True,
        metrics_statsd_host="127.0.0.1",
        metrics_statsd_port=statsd_server.port,
        metrics_statsd_prefix="tetris_",
        game="tetris",
    )
    async with serve(app) as server:
        client = await server.connect()
        await client.request("echo.echo", 1)
        line = await statsd_server.line("tetris_response_time_ns,")
        assert line.startswith("tetris_response_time_ns,serverType=echo,game=tetris,route=echo.")


async def test_tags_cannot_break_a_line(statsd_server: StatsdServer) -> None:
    reporter = StatsdReporter(host="127.0.0.1", port=statsd_server.port, prefix="p.")
    reporter.report_count("dropped", {})  # before start: nowhere to send, no error
    await reporter.start()
    try:
        reporter.report_count("hits", {"a,b": "c=d:e|f", "room": "salle été #1"})
        reporter.report_count("half", {}, 0.5)
        reporter.report_gauge("temp", {}, -3.0)
    finally:
        await reporter.stop()
    assert await statsd_server.line("p.") == "p.hits,a_b=c_d_e_f,room=salle__t___1:1|c"
    assert await statsd_server.line("p.") == "p.half:0.5|c"
    # statsd cannot set a negative gauge directly: it resets to 0 first.
    assert await statsd_server.line("p.") == "p.temp:0|g"
    assert await statsd_server.line("p.") == "p.temp:-3.0|g"
    assert clean("ok.name_1") == "ok.name_1"
