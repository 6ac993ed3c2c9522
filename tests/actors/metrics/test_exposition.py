"""The text format writer (``actors.metrics.exposition``) and the families it writes
(``actors.metrics.families``): Go's names for Pitaya's counters, no ``_created`` series, and
for anything else exactly what prometheus-client writes."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    Summary,
    generate_latest,
)
from prometheus_client.metrics_core import Metric

from actors.metrics.exposition import render
from actors.metrics.families import Family
from tests.actors.metrics.recorder import exposed


class Collected:
    """A collector of given families, as a user's custom collector."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def without_created(text: str) -> str:
    """prometheus-client's text minus its ``_created`` families (HELP, TYPE and samples)."""
    kept = []
    for line in text.splitlines(keepends=True):
        name = line.split(" ")[2] if line.startswith("#") else line.split("{")[0].split(" ")[0]
        if not name.endswith("_created"):
            kept.append(line)
    return "".join(kept)


def test_other_collectors_are_written_as_prometheus_client_writes_them() -> None:
    registry = CollectorRegistry()
    Counter("kills", "kills\nby \\ weapon", ["weapon"], registry=registry).labels('a"x\\y\nz').inc(
        2
    )
    Gauge("rooms", "rooms open", registry=registry).set(1e21)
    Summary("match_seconds", "match length", registry=registry).observe(1.5)
    Histogram("wait_seconds", "waits", ["mode"], registry=registry).labels("duel").observe(0.3)
    Info("build", "build info", registry=registry).info({"version": "1.2"})
    Enum("phase", "phase", states=["lobby", "play"], registry=registry).state("play")
    Gauge("empty", "no series yet", ["x"], registry=registry)
    ours = render(registry).decode()
    theirs = without_created(generate_latest(registry).decode())
    # Everything but the family without series, which Go's client does not write either.
    assert ours == theirs.replace("# HELP empty no series yet\n# TYPE empty gauge\n", "")
    assert "_created" not in ours and "empty" not in ours


def test_a_go_pitaya_counter_is_written_under_its_own_name() -> None:
    registry = CollectorRegistry()
    go = Family(
        "counter",
        "pitaya_acceptor_exceeded_rate_limiting",
        "blocked",
        ("serverType",),
        exact=True,
    )
    ours = Family("counter", "pitaya_actor_dead_letters", "dead", ("serverType",))
    registry.register(go)
    registry.register(ours)
    go.series(("room",)).report(3)
    ours.series(("room",)).report(1)
    text = render(registry).decode()
    assert text == (
        "# HELP pitaya_acceptor_exceeded_rate_limiting blocked\n"
        "# TYPE pitaya_acceptor_exceeded_rate_limiting counter\n"
        'pitaya_acceptor_exceeded_rate_limiting{serverType="room"} 3.0\n'
        "# HELP pitaya_actor_dead_letters_total dead\n"
        "# TYPE pitaya_actor_dead_letters_total counter\n"
        'pitaya_actor_dead_letters_total{serverType="room"} 1.0\n'
    )
    assert exposed(text) == {
        "pitaya_acceptor_exceeded_rate_limiting": "counter",
        "pitaya_actor_dead_letters_total": "counter",
    }


def test_a_summary_family_writes_quantiles_sum_and_count() -> None:
    registry = CollectorRegistry()
    family = Family("summary", "pitaya_handler_response_time_ns", "time", ("route",))
    registry.register(family)
    family.series(("r",)).report(100.0)
    lines = render(registry).decode().splitlines()
    assert lines[1] == "# TYPE pitaya_handler_response_time_ns summary"
    assert [line.split(" ")[0] for line in lines[2:]] == [
        'pitaya_handler_response_time_ns{quantile="0.7",route="r"}',
        'pitaya_handler_response_time_ns{quantile="0.95",route="r"}',
        'pitaya_handler_response_time_ns{quantile="0.99",route="r"}',
        'pitaya_handler_response_time_ns_sum{route="r"}',
        'pitaya_handler_response_time_ns_count{route="r"}',
    ]


def test_a_family_refuses_what_the_text_format_cannot_carry() -> None:
    with pytest.raises(ValueError, match="metric name"):
        Family("gauge", "bad name!", "h", ())
    with pytest.raises(ValueError, match="label name"):
        Family("gauge", "ok", "h", ("bad-label",))
    with pytest.raises(ValueError, match="label name"):
        Family("summary", "ok", "h", ("quantile",))
    with pytest.raises(ValueError, match="twice"):
        Family("gauge", "ok", "h", ("a", "a"))
    family = Family("counter", "ok", "h", ())
    with pytest.raises(ValueError, match="only goes up"):
        family.series(()).report(-1)
    # A duplicate name in one registry is refused at registration, as prometheus-client does.
    registry = CollectorRegistry()
    registry.register(Family("counter", "pitaya_x", "h", ()))
    with pytest.raises(ValueError, match="Duplicated"):
        registry.register(Family("gauge", "pitaya_x_total", "h", ()))


def test_names_the_text_format_cannot_carry_are_written_with_underscores() -> None:
    # prometheus-client (0.22 and later) takes UTF-8 metric and label names, in a registry a
    # user shares with the reporter; the text format 0.0.4 does not, and a Prometheus server
    # refuses the whole scrape for one of them. prometheus-client's writer puts underscores.
    registry = CollectorRegistry()
    weird = Metric("room.joins", "joins", "gauge")
    weird.add_sample("room.joins", {"room.kind": "pvp", "2nd": "x"}, 1.0)
    registry.register(Collected([weird]))
    text = render(registry).decode()
    assert text == (
        "# HELP room_joins joins\n"
        "# TYPE room_joins gauge\n"
        'room_joins{_nd="x",room_kind="pvp"} 1.0\n'
    )
    assert text == generate_latest(registry).decode()
