"""Go's duration strings (``transport.goduration``): what one side writes, the other reads."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport import goduration


@given(st.integers(-(10**15), 10**15))
def test_what_string_writes_reads_back_to_the_nanosecond(ns: int) -> None:
    value = ns / 1e9
    assert goduration.seconds(goduration.string(value)) == pytest.approx(value, abs=1e-9)


@given(st.integers(1, 10**7))
def test_what_short_writes_reads_back(ms: int) -> None:
    value = ms / 1000
    assert goduration.seconds(goduration.short(value)) == pytest.approx(value)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0s"), (1e-7, "100ns"), (0.0005, "500µs"), (1.5, "1.5s"), (90.5, "1m30.5s"),
     (3600.5, "1h0m0.5s"), (-1.5, "-1.5s"), (-90.5, "-1m30.5s"), (-1e-9, "-1ns")],
)  # fmt: skip
def test_string_writes_as_go_does(value: float, text: str) -> None:
    assert goduration.string(value) == text


def test_the_module_examples() -> None:
    assert doctest.testmod(goduration).failed == 0


@pytest.mark.parametrize(
    ("value", "text"),
    [(1e-9, "1ns"), (999e-9, "999ns"), (1e-6, "1µs"), (1e-3, "1ms"), (1.0, "1s"),
     (59.999, "59.999s"), (60.0, "1m0s"), (3600.0, "1h0m0s")],
)  # fmt: skip
def test_string_changes_unit_exactly_where_go_does(value: float, text: str) -> None:
    assert goduration.string(value) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0.0), ("-0", 0.0), ("+0", 0.0), ("-1.5s", -1.5), ("+1.5s", 1.5), ("-1m30s", -90.0)],
)
def test_seconds_reads_a_sign_and_a_bare_zero_as_go_does(text: str, value: float) -> None:
    assert goduration.seconds(text) == value


@pytest.mark.parametrize("text", ["", "-", "+", "--1s", "+-1s", "1sx", "1s 2s", "s", "1.5"])
def test_seconds_refuses_what_go_refuses(text: str) -> None:
    assert goduration.seconds(text) is None
