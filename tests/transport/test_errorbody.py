"""Pitaya error bodies."""

from __future__ import annotations

from typing import Any

import pytest

from transport.errorbody import (
    MAX_METADATA_ITEMS,
    MAX_METADATA_KEY,
    MAX_METADATA_VALUE,
    MAX_MSG_LENGTH,
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


def test_from_value_reads_bytes_that_are_not_utf8_with_replacement_characters() -> None:
    assert ErrorBody.from_value(b"bad \xff byte") == ErrorBody(PIT_000, "bad \ufffd byte")
    assert ErrorBody.from_value({"code": "X-1", "msg": b"\xc3("}).msg == "\ufffd("


# -- bounded: what a client is sent of an error ------------------------------------------------


def at_limits() -> ErrorBody:
    """An error as large as a client is sent whole: every part at its limit."""
    return ErrorBody(
        "C" * MAX_METADATA_KEY,
        "m" * MAX_MSG_LENGTH,
        {f"{n:0{MAX_METADATA_KEY}d}": "v" * MAX_METADATA_VALUE for n in range(MAX_METADATA_ITEMS)},
    )


def test_an_error_within_every_limit_is_sent_as_it_is() -> None:
    body = at_limits()
    assert body.bounded() is body  # nothing to cut: not even a copy
    small = ErrorBody(PIT_400, "bad", {"route": "x"})
    assert small.bounded() is small


def test_a_message_over_its_limit_is_cut_to_it_ending_with_dots() -> None:
    body = ErrorBody(PIT_400, "0123456789" * 103, {"route": "x"})  # 1,030 characters
    bounded = body.bounded()
    assert bounded == ErrorBody(
        PIT_400, ("0123456789" * 103)[: MAX_MSG_LENGTH - 3] + "...", {"route": "x"}
    )
    assert len(bounded.msg) == MAX_MSG_LENGTH
    one_over = ErrorBody(PIT_400, "m" * (MAX_MSG_LENGTH + 1)).bounded()
    assert one_over.msg == "m" * (MAX_MSG_LENGTH - 3) + "..."


def test_metadata_keeps_its_first_pairs_up_to_the_limit() -> None:
    metadata = {f"k{n:02d}": f"v{n}" for n in range(MAX_METADATA_ITEMS + 1)}
    bounded = ErrorBody(PIT_400, "bad", metadata).bounded()
    assert bounded == ErrorBody(PIT_400, "bad", dict(list(metadata.items())[:MAX_METADATA_ITEMS]))


@pytest.mark.parametrize("part", ["key", "value"])
def test_one_metadata_key_or_value_over_its_limit_is_cut_and_the_rest_kept(part: str) -> None:
    """The rest whole, even the parts exactly at their limits."""
    limit = MAX_METADATA_KEY if part == "key" else MAX_METADATA_VALUE
    long = "x" * (limit + 1)
    cut = "x" * (limit - 3) + "..."
    pair = {long: "v"} if part == "key" else {"k": long}
    code, msg = "C" * MAX_METADATA_KEY, "m" * MAX_MSG_LENGTH
    body = ErrorBody(code, msg, {"route": "r", **pair})
    assert body.bounded() == ErrorBody(
        code, msg, {"route": "r", **({cut: "v"} if part == "key" else {"k": cut})}
    )


def test_metadata_that_is_not_text_is_left_as_it_is_when_the_rest_is_cut() -> None:
    """Metadata should be strings, but a handler may put anything there."""
    odd: dict[Any, Any] = {"n": 12345, 7: [1, 2], "none": None}
    body = ErrorBody(PIT_500, "m" * (MAX_MSG_LENGTH + 10), odd)
    bounded = body.bounded()
    assert bounded.metadata == odd
    assert len(bounded.msg) == MAX_MSG_LENGTH
    fitting = ErrorBody(PIT_500, "short", odd)
    assert fitting.bounded() is fitting


def test_a_code_over_its_limit_is_cut_even_when_the_rest_fits() -> None:
    """A code may come from a handler or a remote server: it is bounded like a metadata key,
    on its own too (it was cut only when something else was)."""
    body = ErrorBody("E" * 100, "bad", {"route": "x"})
    assert body.bounded() == ErrorBody("E" * (MAX_METADATA_KEY - 3) + "...", "bad", {"route": "x"})
