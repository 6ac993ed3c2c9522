"""Windowed quantiles (``actors.metrics.quantiles``): within the stated error of the exact
quantiles on known data, over Go's 10-minute window, in bounded memory. The clock is the
test's: nothing sleeps."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.metrics.quantiles import (
    AGE_BUCKETS,
    MAX_AGE,
    MAX_BINS,
    OBJECTIVES,
    RELATIVE_ERROR,
    Layout,
    SummarySeries,
)

BOUND = RELATIVE_ERROR * (1 + 1e-9)
"""The guarantee, with room for the rounding of a log at a bin's very edge."""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def exact(values: list[float], q: float) -> float:
    """The observation of rank floor(q * (n - 1)), 0-based: what the guarantee is about."""
    return sorted(values)[int(q * (len(values) - 1))]


def assert_close(series: SummarySeries, values: list[float], layout: Layout) -> None:
    for q, got in zip(layout.objectives, series.quantiles(), strict=True):
        want = exact(values, q)
        assert abs(got - want) <= BOUND * abs(want), (q, got, want)


def fed(values: list[float], layout: Layout | None = None) -> SummarySeries:
    series = SummarySeries(layout or Layout(), clock=Clock())
    for value in values:
        series.observe(value)
    return series


def test_go_pitayas_objectives_and_window() -> None:
    assert OBJECTIVES == (0.7, 0.95, 0.99)
    assert (MAX_AGE, AGE_BUCKETS) == (600.0, 5)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(lambda r: [r.uniform(1.0, 1000.0) for _ in range(20_000)], id="uniform"),
        pytest.param(lambda r: [float(r.randrange(1, 101)) for _ in range(10_000)], id="ints"),
        pytest.param(  # latencies: most fast, a long tail (ns)
            lambda r: [r.lognormvariate(math.log(200_000), 1.2) for _ in range(20_000)],
            id="lognormal",
        ),
        pytest.param(lambda r: [r.paretovariate(1.1) for _ in range(20_000)], id="pareto"),
        pytest.param(  # 98% fast, 2% a thousand times slower: the 0.99 lands in the slow mode
            lambda r: [
                1e3 * (1e3 if r.random() < 0.02 else 1.0) * r.uniform(1, 2) for _ in range(20_000)
            ],
            id="bimodal",
        ),
    ],
)
def test_quantiles_are_within_the_stated_error_of_exact_ones(data) -> None:  # type: ignore[no-untyped-def]
    values = data(random.Random(7))
    series = fed(values)
    assert_close(series, values, Layout())
    assert series.count == len(values)
    assert series.sum == pytest.approx(math.fsum(values))


def test_a_step_distribution_is_read_at_the_right_step() -> None:
    # 70 fast, 25 medium, 5 slow: 0.7 -> rank 69 (fast), 0.95 -> 94 (medium), 0.99 -> 98.
    values = [10.0] * 70 + [500.0] * 25 + [90_000.0] * 5
    random.Random(1).shuffle(values)
    assert fed(values).quantiles() == pytest.approx([10.0, 500.0, 90_000.0], rel=BOUND)


@given(
    st.lists(
        st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64),
        min_size=1,
        max_size=300,
    ),
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5),
)
def test_any_data_and_quantiles_keep_the_guarantee(values: list[float], qs: list[float]) -> None:
    layout = Layout(objectives=qs)
    assert_close(fed(values, layout), values, layout)


def test_each_read_sees_the_observations_since_the_last() -> None:
    series = fed([1.0] * 100)
    assert series.quantiles() == pytest.approx([1.0] * 3, rel=BOUND)
    for _ in range(300):
        series.observe(8.0)  # the same slice, the same instant: only the data changed
    assert series.quantiles() == pytest.approx([8.0] * 3, rel=BOUND)
    assert series.quantiles() == pytest.approx([8.0] * 3, rel=BOUND)


def test_an_empty_window_reads_nan() -> None:
    assert all(math.isnan(v) for v in SummarySeries(Layout(), clock=Clock()).quantiles())


def test_odd_values_count_in_the_totals() -> None:
    series = fed([math.nan, 5.0, math.inf, 0.0], Layout(objectives=(0.0, 0.5, 1.0)))
    assert series.count == 4
    assert math.isnan(series.sum)
    # NaN is in no quantile: the others are the 3 observations left.
    assert series.quantiles() == [0.0, pytest.approx(5.0, rel=BOUND), math.inf]
    assert fed([0.0, 0.0, -3.0]).quantiles() == [0.0, 0.0, 0.0]


def test_observations_age_out_of_the_window() -> None:
    clock = Clock()
    series = SummarySeries(Layout(), clock=clock)
    for _ in range(100):
        series.observe(1000.0)  # at 0 s: the first slice (0-120 s)
    clock.now = 300.0
    for _ in range(100):
        series.observe(10.0)  # the third slice (240-360 s)
    assert_close(series, [1000.0] * 100 + [10.0] * 100, Layout())
    clock.now = 599.9  # still within 10 minutes of the first slice's start
    assert series.quantiles()[0] == pytest.approx(1000.0, rel=BOUND)
    clock.now = 600.0  # the first slice is 5 slices old: gone, though nothing was observed
    assert series.quantiles() == pytest.approx([10.0] * 3, rel=BOUND)
    clock.now = 839.9
    assert series.quantiles() == pytest.approx([10.0] * 3, rel=BOUND)
    clock.now = 840.0
    assert all(math.isnan(v) for v in series.quantiles())
    assert (series.count, series.sum) == (200, 101_000.0)  # the totals never age


def test_the_window_covers_eight_to_ten_minutes_like_gos() -> None:
    clock = Clock()
    series = SummarySeries(Layout(), clock=clock)
    clock.now = 119.9  # the end of a slice
    series.observe(7.0)
    clock.now = 119.9 + 480.0  # 8 minutes on: kept
    assert not math.isnan(series.quantiles()[0])
    clock.now = 600.0  # 8 minutes and 0.1 s on: its slice turned out
    assert math.isnan(series.quantiles()[0])


def test_a_series_observed_again_after_a_long_idle_starts_afresh() -> None:
    clock = Clock()
    series = SummarySeries(Layout(), clock=clock)
    for value in (1.0, 2.0, 3.0):
        series.observe(value)
    clock.now = 10_000.0
    series.observe(50.0)
    assert series.quantiles() == pytest.approx([50.0] * 3, rel=BOUND)
    for step in range(1, 12):  # one observation per slice for 22 minutes: the last 5 count
        clock.now = 10_000.0 + 120.0 * step
        series.observe(float(step))
    assert_close(series, [7.0, 8.0, 9.0, 10.0, 11.0], Layout())


def test_memory_is_bounded_whatever_the_rate_and_the_spread() -> None:
    clock = Clock()
    layout = Layout(objectives=(0.95, 0.99))
    series = SummarySeries(layout, clock=clock)
    rng = random.Random(3)
    held = []
    for slice_ in range(AGE_BUCKETS + 2):
        clock.now = slice_ * MAX_AGE / AGE_BUCKETS
        # 50 000 observations per slice spread over 40 decades: 4 600 bins' worth.
        values = [10 ** rng.uniform(-20, 20) for _ in range(50_000)]
        for value in values:
            series.observe(value)
        series.quantiles()  # reading keeps a merge too
        held.append(series.held)
    assert max(held) <= (2 * AGE_BUCKETS - 1) * MAX_BINS
    # Merging the lowest bins spared the high ones: the high quantiles keep the guarantee.
    clock.now += MAX_AGE  # all aged out: what follows is alone in the window
    for value in values:
        series.observe(value)
    assert_close(series, values, layout)


def test_merged_low_bins_keep_the_high_quantiles_exact() -> None:
    layout = Layout(objectives=(0.96, 0.99), max_bins=64)  # the top 47 bins stay apart
    values = [1.0202**i for i in range(1000)]  # a bin each: ten times the room
    series = fed(values, layout)
    assert series.held <= 64
    assert_close(series, values, layout)
    low = fed(values, Layout(objectives=(0.1,), max_bins=64)).quantiles()[0]
    assert low > exact(values, 0.1) * 2  # the price, paid at the low end only


def test_a_bad_layout_is_refused() -> None:
    with pytest.raises(ValueError, match="quantiles"):
        Layout(objectives=(0.5, 1.5))
    with pytest.raises(ValueError):
        Layout(relative_error=0.0)
