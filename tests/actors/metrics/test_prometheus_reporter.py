"""The Prometheus reporter, scraped over real HTTP while real clients connect and call."""

from __future__ import annotations

import asyncio
import math
import random
import socket
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.app import App
from actors.metrics import Metrics, PrometheusReporter
from actors.metrics.exposition import render
from actors.metrics.names import CONNECTED_CLIENTS
from actors.readiness import Readiness
from actors.testing import serve
from samples.echo.server import Echo
from tests.actors.metrics.recorder import Recorder, exposed, http_get, sample, scrape
from tests.services import free_port
from transport.client import RequestError

CONST = {"game": "tetris", "serverType": "echo"}
RESPONSE = "pitaya_handler_response_time_ns_count"
CLIENTS = "pitaya_acceptor_connected_clients"


def make_app(*reporters: Any, **options: Any) -> App:
    app = App(server_type="echo", metrics_period=0.02, **options)
    app.register(Echo)
    for reporter in reporters:
        app.add_metrics_reporter(reporter)
    return app


async def wait_for_sample(
    prometheus: PrometheusReporter, ticks: Recorder, name: str, value: float, **labels: str
) -> str:
    """Scrape until ``name`` has ``value``, waiting for the sampler's next report in between."""
    for _ in range(100):
        text = await scrape(prometheus.address)
        if sample(text, name, **labels) == value:
            return text
        await ticks.next(lambda c: c.metric == CONNECTED_CLIENTS)
    raise AssertionError(f"{name}{labels} never became {value}; last scrape:\n{text}")


async def test_scrape_follows_clients_and_requests() -> None:
    prometheus = PrometheusReporter(host="127.0.0.1", port=0, const_labels=CONST)
    ticks = Recorder()
    async with serve(make_app(prometheus, ticks)) as server:
        await wait_for_sample(prometheus, ticks, CLIENTS, 0.0, **CONST)
        first = await server.connect()
        second = await server.connect(websocket=True)
        await wait_for_sample(prometheus, ticks, CLIENTS, 2.0, **CONST)

        ok = {"route": "echo.echo", "status": "ok", "type": "handler", "code": ""}
        await first.request("echo.echo", 1)
        text = await scrape(prometheus.address)
        assert sample(text, RESPONSE, **ok, **CONST) == 1.0
        assert sample(text, "pitaya_handler_response_time_ns_sum", **ok) > 0  # type: ignore[operator]
        delay = {"route": "echo.echo", "type": "local"}
        assert sample(text, "pitaya_handler_handler_delay_ns_count", **delay) == 1.0
        took = sample(text, "pitaya_handler_response_time_ns_sum", **ok)
        for quantile in ("0.7", "0.95", "0.99"):  # one observation: it is every quantile
            got = sample(text, "pitaya_handler_response_time_ns", quantile=quantile, **ok)
            assert got == pytest.approx(took, rel=0.01)
        await second.request("echo.echo", 2)
        assert sample(await scrape(prometheus.address), RESPONSE, **ok) == 2.0

        with pytest.raises(RequestError):
            await first.request("nope.nothing", {})
        text = await scrape(prometheus.address)
        failed = {"route": "unknown", "status": "failed", "type": "handler", "code": "PIT-404"}
        assert sample(text, RESPONSE, **failed) == 1.0

        # Sampled kernel metrics are there too.
        assert sample(text, "pitaya_actor_mailbox_depth", kind="Echo", **CONST) is not None
        assert sample(text, "pitaya_actor_mailbox_depth", kind="SessionActor") is not None
        assert sample(text, "pitaya_actor_dead_letters_total", **CONST) is not None
        assert sample(text, "process_cpu_seconds_total") is not None

        await first.close()
        await second.close()
        await wait_for_sample(prometheus, ticks, CLIENTS, 0.0, **CONST)
    with pytest.raises(RuntimeError):
        _ = prometheus.address  # stopped with the app


async def test_config_enables_prometheus_with_pitaya_const_labels() -> None:
    app = make_app(
        metrics_prometheus_enabled=True,
        metrics_prometheus_host="127.0.0.1",
        metrics_prometheus_port=0,
        game="tetris",
    )
    async with serve(app) as server:
        [prometheus] = app.metrics.reporters
        assert isinstance(prometheus, PrometheusReporter)
        client = await server.connect()
        await client.request("echo.echo", 1)
        text = await scrape(prometheus.address)
        assert sample(text, RESPONSE, route="echo.echo", **CONST) == 1.0


async def test_endpoint_answers_only_metrics_requests() -> None:
    prometheus = PrometheusReporter(host="127.0.0.1", port=0, process_metrics=False)
    await prometheus.start()
    address = prometheus.address
    _, idle = await asyncio.open_connection(*address)
    try:
        assert (await http_get(address, "/nope")).startswith(b"HTTP/1.1 404 ")
        assert (await http_get(address, "/metrics", "POST")).startswith(b"HTTP/1.1 405 ")
        head = await http_get(address, "/metrics", "HEAD")
        assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
        assert b"pitaya_acceptor_exceeded_rate_limiting" in await http_get(address)
        # A scraper that never finishes its request (``idle``) does not hold up the others.
        assert (await http_get(address)).startswith(b"HTTP/1.1 200 ")
    finally:
        await prometheus.stop()
        idle.close()
    with pytest.raises(OSError):
        await asyncio.open_connection(*address)


async def test_user_metrics_are_declared_on_first_use_and_never_raise() -> None:
    prometheus = PrometheusReporter(
        host="127.0.0.1", port=0, const_labels={"serverType": "x"}, process_metrics=False
    )
    prometheus.report_count("kills", {"weapon": "axe"}, 2)
    prometheus.report_count("kills", {"weapon": "bow", "extra": "ignored"})
    prometheus.report_count("kills", {})  # missing label: empty
    prometheus.report_gauge("kills", {"weapon": "axe"}, 9)  # wrong kind: ignored
    prometheus.report_summary("bad name!", {}, 1.0)  # prometheus may refuse the name
    prometheus.report_gauge("rooms", {"serverType": "shadowed"}, 3)  # const labels win
    prometheus.report_summary("match_seconds", {"mode": "duel"}, 1.5)
    prometheus.report_gauge("count_servers", {"type": "room"}, 2)
    await prometheus.start()
    try:
        text = await scrape(prometheus.address)
    finally:
        await prometheus.stop()
    assert sample(text, "pitaya_kills_total", weapon="axe", serverType="x") == 2.0
    assert sample(text, "pitaya_kills_total", weapon="bow") == 1.0
    assert sample(text, "pitaya_kills_total", weapon="") == 1.0
    assert sample(text, "pitaya_rooms", serverType="x") == 3.0
    assert sample(text, "pitaya_match_seconds_count", mode="duel") == 1.0
    assert sample(text, "pitaya_service_discovery_count_servers", type="room") == 2.0


def test_user_metrics_named_the_statsd_way_are_exposed_with_underscores() -> None:
    # Dots and dashes are fine for statsd and for prometheus-client, which exposed them with
    # underscores; they are not in the text format. Refusing them lost the user's metric.
    prometheus = PrometheusReporter(process_metrics=False)
    prometheus.report_count("room.joins", {"room.kind": "pvp"}, 2)
    prometheus.report_summary("match-time", {}, 3.0)
    text = render(prometheus.registry).decode()
    assert sample(text, "pitaya_room_joins_total", room_kind="pvp") == 2.0
    assert sample(text, "pitaya_match_time_count") == 1.0


def test_a_const_label_value_that_is_not_a_string_is_written_as_one() -> None:
    # prometheus-client made every label value a string; one int made every scrape fail.
    labels: dict[str, Any] = {"shard": 3}
    prometheus = PrometheusReporter(process_metrics=False, const_labels=labels)
    prometheus.report_count("kills", {})
    assert sample(render(prometheus.registry).decode(), "pitaya_kills_total", shard="3") == 1.0


def test_const_labels_may_not_shadow_metric_labels() -> None:
    with pytest.raises(ValueError, match="route"):
        PrometheusReporter(const_labels={"route": "x"}, process_metrics=False)


async def test_metrics_without_any_label_work() -> None:
    prometheus = PrometheusReporter(host="127.0.0.1", port=0, process_metrics=False)
    prometheus.report_gauge("connected_clients", {}, 2)
    prometheus.report_count("actor_dead_letters", {}, 3)
    prometheus.report_count("restarts", {})
    await prometheus.start()
    try:
        text = await scrape(prometheus.address)
    finally:
        await prometheus.stop()
    assert sample(text, CLIENTS) == 2.0
    assert sample(text, "pitaya_actor_dead_letters_total") == 3.0
    assert sample(text, "pitaya_restarts_total") == 1.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def quantiles(text: str, family: str, **labels: str) -> dict[str, float]:
    """The family's quantile samples whose labels include ``labels``, by quantile."""
    [found] = [f for f in text_string_to_metric_families(text) if f.name == family]
    assert found.type == "summary"
    return {
        s.labels["quantile"]: s.value
        for s in found.samples
        if "quantile" in s.labels and all(s.labels.get(k) == v for k, v in labels.items())
    }


async def test_summaries_export_go_pitayas_quantiles_over_10_minutes() -> None:
    clock = Clock()
    prometheus = PrometheusReporter(
        host="127.0.0.1", port=0, const_labels=CONST, process_metrics=False, clock=clock
    )
    rng = random.Random(5)
    fast = [rng.lognormvariate(math.log(300_000), 0.8) for _ in range(5000)]  # ns
    tags = {"route": "room.join", "status": "ok", "type": "handler", "code": ""}
    for value in fast:
        prometheus.report_summary("response_time_ns", tags, value)
    for value in range(1, 101):
        prometheus.report_summary("match_seconds", {"mode": "duel"}, float(value))
    await prometheus.start()
    try:
        text = await scrape(prometheus.address)
        clock.now += 300.0  # 5 minutes on: still in the window
        prometheus.report_summary("response_time_ns", tags, 1e12)
        later = await scrape(prometheus.address)
        clock.now += 480.0  # 13 minutes after the first ones: only the last one is left
        latest = await scrape(prometheus.address)
        clock.now += 600.0
        gone = await scrape(prometheus.address)
    finally:
        await prometheus.stop()

    got = quantiles(text, "pitaya_handler_response_time_ns", **tags, **CONST)
    ordered = sorted(fast)
    for q in ("0.7", "0.95", "0.99"):
        exact = ordered[int(float(q) * (len(fast) - 1))]
        assert got[q] == pytest.approx(exact, rel=0.01), q
    assert sample(text, RESPONSE, **tags) == 5000.0
    assert sample(text, "pitaya_handler_response_time_ns_sum", **tags) == pytest.approx(sum(fast))
    assert quantiles(text, "pitaya_match_seconds", mode="duel") == {
        "0.7": pytest.approx(70.0, rel=0.01),
        "0.95": pytest.approx(95.0, rel=0.01),
        "0.99": pytest.approx(99.0, rel=0.01),
    }
    # One slow answer among 5001 moves no quantile but the window's count.
    assert quantiles(later, "pitaya_handler_response_time_ns")["0.99"] == got["0.99"]
    assert quantiles(latest, "pitaya_handler_response_time_ns")["0.7"] == pytest.approx(
        1e12, rel=0.01
    )
    assert all(math.isnan(v) for v in quantiles(gone, "pitaya_handler_response_time_ns").values())
    assert sample(gone, RESPONSE, **tags) == 5001.0  # count and sum never age
    assert all(math.isnan(v) for v in quantiles(gone, "pitaya_match_seconds").values())


async def test_counters_are_named_as_go_pitaya_names_them() -> None:
    prometheus = PrometheusReporter(host="127.0.0.1", port=0, const_labels=CONST)
    app = make_app(
        prometheus,
        rate_limit_enabled=True,
        rate_limit_packets=2,
        rate_limit_interval=60.0,
        rate_limit_action="error",
    )
    async with serve(app) as server:
        client = await server.connect()
        await client.request("echo.echo", 1)
        await client.request("echo.echo", 2)
        with pytest.raises(RequestError, match="PIT-429"):
            await client.request("echo.echo", 3)
        text = await scrape(prometheus.address)
    names = exposed(text)
    # Pitaya's counter: its Go name, no _total (Go's client appends nothing).
    assert names["pitaya_acceptor_exceeded_rate_limiting"] == "counter"
    assert "pitaya_acceptor_exceeded_rate_limiting_total" not in names
    assert sample(text, "pitaya_acceptor_exceeded_rate_limiting_total", **CONST) == 1.0
    # Counters Pitaya has not keep prometheus-client's convention.
    assert names["pitaya_actor_dead_letters_total"] == "counter"
    assert names["process_cpu_seconds_total"] == "counter"
    # Go's summaries, gauges, and no _created series (Go's text format has none).
    assert names["pitaya_handler_response_time_ns"] == "summary"
    assert names["pitaya_handler_response_time_ns_count"] == "summary"
    assert names["pitaya_acceptor_connected_clients"] == "gauge"
    assert not [name for name in names if name.endswith("_created")]


async def test_the_endpoint_serves_the_text_format_even_to_openmetrics_scrapers() -> None:
    prometheus = PrometheusReporter(host="127.0.0.1", port=0, process_metrics=False)
    prometheus.report_count("exceeded_rate_limiting", {}, 4)
    await prometheus.start()
    try:
        # What Prometheus sends: OpenMetrics first, which would force _total on counters.
        accept = (
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
            "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )
        response = await http_get(prometheus.address, accept=accept)
    finally:
        await prometheus.stop()
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n" in head
    assert b"\npitaya_acceptor_exceeded_rate_limiting 4.0\n" in body
    assert b"# EOF" not in body


def ready_response(readiness: Any, method: str = "GET") -> tuple[int, bytes]:
    prometheus = PrometheusReporter(process_metrics=False)
    prometheus.readiness = readiness
    response = prometheus.respond(f"{method} /ready HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head, _, body = response.partition(b"\r\n\r\n")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    assert length == len(body) or (method == "HEAD" and not body)
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    ("readiness", "status", "body"),
    [
        (None, 503, b"not ready\n"),  # nothing installed a check: never taken for ready
        (lambda: True, 200, b"ready\n"),  # a check of one's own that returns a bool
        (lambda: False, 503, b"not ready\n"),
        (lambda: Readiness(True), 200, b"ready\n"),
        (
            lambda: Readiness(True, "discovery unreachable"),
            200,
            b"ready (degraded: discovery unreachable)\n",
        ),
        (lambda: Readiness(False, "draining"), 503, b"not ready: draining\n"),
    ],
)
def test_ready_answers_with_its_status_and_says_why_in_one_line(
    readiness: Any, status: int, body: bytes
) -> None:
    """The status is the contract a probe reads (unchanged); the body says why for a human,
    and stays ``ready`` when nothing is wrong."""
    assert ready_response(readiness) == (status, body)
    assert ready_response(readiness, "HEAD") == (status, b"")


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def test_a_start_cancelled_once_bound_leaves_no_listening_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stop during the start-up can cancel the metrics endpoint's start just after it bound
    (asyncio's ``start_server`` gives a loop turn once serving). The port stayed bound for
    the life of the process, out of reach of ``stop``: nothing held it. Now the cancelled
    start releases it itself. The stop comes as the server starts serving (a patched
    ``Server._start_serving`` cancels the start there)."""
    port = free_port()
    metrics = Metrics()
    metrics.add(PrometheusReporter(host="127.0.0.1", port=port, process_metrics=False))
    start_serving = asyncio.base_events.Server._start_serving
    bound: list[bool] = []

    def stop_comes(server: asyncio.base_events.Server) -> None:
        start_serving(server)
        bound.append(not port_is_free(port))
        assert starting is not None
        starting.cancel()  # lands at the start's next await

    monkeypatch.setattr(asyncio.base_events.Server, "_start_serving", stop_comes)
    starting: asyncio.Task[None] | None = None
    starting = asyncio.ensure_future(metrics.start())
    with pytest.raises(asyncio.CancelledError):
        await starting
    monkeypatch.undo()
    assert bound == [True]  # it was bound when the stop came
    assert port_is_free(port)
    await metrics.stop()  # what the start-up's undo calls: nothing left to do
    assert port_is_free(port)


async def test_a_scraper_that_never_reads_its_answer_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its answer waited in the socket's buffer for good, and its connection with it: a few
    such peers held a rendered exposition each, for as long as they liked."""
    import actors.metrics.prometheus_reporter as module

    monkeypatch.setattr(module, "RESPONSE_TIMEOUT", 0.2, raising=False)
    large = b"# a large exposition\n" * (2 * 1024 * 1024)  # 42 MiB: more than socket buffers
    monkeypatch.setattr(module, "render", lambda registry: large)
    prometheus = PrometheusReporter(host="127.0.0.1", port=0, process_metrics=False)
    await prometheus.start()
    stalled = socket.socket()
    try:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(prometheus.address)
        stalled.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")

        async def until(condition: Any) -> None:
            for _ in range(500):  # polled every 10 ms, for 5 s at the most
                if condition():
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("condition never held")

        def held() -> int:
            return sum(w.transport.get_write_buffer_size() for w in prometheus._writers)

        await until(lambda: held() > 0)  # answered, and the answer is stuck
        await until(lambda: not prometheus._writers)  # given up on: it holds nothing more
        # The endpoint serves the others all along.
        monkeypatch.setattr(module, "render", render)
        assert (await http_get(prometheus.address)).startswith(b"HTTP/1.1 200 ")
    finally:
        stalled.close()
        await asyncio.wait_for(prometheus.stop(), 5)


async def test_connections_past_the_limit_are_closed_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each open connection holds a file descriptor of the game server's process, for up to
    REQUEST_TIMEOUT: a peer opening them without end would take them from the clients."""
    import actors.metrics.prometheus_reporter as module
    from tests.reliability.support import until

    monkeypatch.setattr(module, "MAX_SCRAPE_CONNECTIONS", 3, raising=False)
    prometheus = PrometheusReporter(host="127.0.0.1", port=0, process_metrics=False)
    await prometheus.start()
    idle = [await asyncio.open_connection(*prometheus.address) for _ in range(3)]
    try:
        await until(lambda: len(prometheus._writers) == 3)
        reader, writer = await asyncio.open_connection(*prometheus.address)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            refused = await asyncio.wait_for(reader.read(), 5)
        except ConnectionResetError:
            refused = b""
        assert refused == b""  # closed at once, unanswered
        writer.close()
        assert len(prometheus._writers) == 3  # the refused one was never held
        _, writer = idle.pop()
        writer.close()
        await until(lambda: len(prometheus._writers) == 2)
        assert (await http_get(prometheus.address)).startswith(b"HTTP/1.1 200 ")
    finally:
        for _, writer in idle:
            writer.close()
        await asyncio.wait_for(prometheus.stop(), 5)
