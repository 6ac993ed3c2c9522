"""Pitaya error bodies."""

from __future__ import annotations

from typing import Any

import pytest

from transport.errorbody import (
    PIT_000,
    PIT_400,
    PIT_404,
    PIT_408,
    PIT_500,
    PIT_504,
    ErrorBody,
)
from transport.serializers import JsonSerializer


def test_codes_are_pitayas() -> None:
    assert [PIT_000, PIT_400, PIT_404, PIT_408, PIT_500, PIT_504] == [
        "PIT-000",
        "PIT-400",
        "PIT-404",
        "PIT-408",
        "PIT-500",
        "PIT-504",
    ]


def test_to_value_matches_pitaya_json() -> None:
    body = ErrorBody(PIT_404, "route not found", {"route": "x"})
    assert JsonSerializer().marshal(body.to_value()) == (
        b'{"code":"PIT-404","msg":"route not found","metadata":{"route":"x"}}'
    )


def test_to_value_omits_empty_fields() -> None:
    assert ErrorBody(PIT_500).to_value() == {"code": "PIT-500"}
    assert ErrorBody(PIT_400, "bad").to_value() == {"code": "PIT-400", "msg": "bad"}
    assert ErrorBody(PIT_400, metadata={"a": "b"}).to_value() == {
        "code": "PIT-400",
        "metadata": {"a": "b"},
    }


def test_round_trip() -> None:
    body = ErrorBody(PIT_408, "rpc client: request timeout", {"route": "room.room.join"})
    assert ErrorBody.from_value(body.to_value()) == body


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ErrorBody(PIT_000)),
        ("plain text", ErrorBody(PIT_000, "plain text")),
        (b"raw", ErrorBody(PIT_000, "raw")),
        (42, ErrorBody(PIT_000, "42")),
        ([1, 2], ErrorBody(PIT_000, "[1, 2]")),
        ({}, ErrorBody(PIT_000)),
        ({"code": ""}, ErrorBody(PIT_000)),
        ({"code": 404, "msg": "m"}, ErrorBody(PIT_000, "m")),
        ({"code": "X-1", "msg": 5}, ErrorBody("X-1", "5")),
        ({"code": "X-1", "metadata": "nope"}, ErrorBody("X-1")),
        (
            {"code": "X-1", "metadata": {"n": 1, 2: None}},
            ErrorBody("X-1", "", {"n": "1", "2": "None"}),
        ),
    ],
)
def test_from_value_is_tolerant(value: Any, expected: ErrorBody) -> None:
    assert ErrorBody.from_value(value) == expected
