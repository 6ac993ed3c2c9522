"""Compact JSON with the C coders called directly (``transport.jsonwire``): the text and values
must be the json module's with the same options, whichever path a call takes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport import jsonwire
from transport.jsonwire import WireJson


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y


def as_map(value: Any) -> Any:
    if isinstance(value, Point):
        return {"x": value.x, "y": value.y}
    raise TypeError(f"{type(value).__name__} is not JSON")


def constant(name: str) -> Any:
    return f"<{name}>"


def wire() -> WireJson:
    return WireJson(as_map, constant, lambda text: f"float:{text}")


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def the_json_module(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@given(values)
def test_dumps_writes_what_the_json_module_writes_with_the_same_options(value: Any) -> None:
    codec = WireJson(as_map)
    assert codec.dumps(value) == the_json_module(value)
    assert codec.encoder.encode(value) == the_json_module(value)


@given(values)
def test_loads_reads_what_dumps_writes(value: Any) -> None:
    codec = WireJson(as_map)
    assert codec.loads(codec.dumps(value)) == value


def test_dumps_joins_a_value_the_c_encoder_writes_in_several_chunks() -> None:
    value = {str(i): [i, "é"] for i in range(50_000)}
    assert WireJson(as_map).dumps(value) == the_json_module(value)


def test_dumps_is_compact_keeps_non_ascii_and_keys_in_their_order() -> None:
    codec = WireJson(as_map)
    assert codec.dumps({"b": [1, 2.5], "a": "é🐉", 3: None}) == '{"b":[1,2.5],"a":"é🐉","3":null}'
    assert codec.dumps("\u2028\x00") == '"\u2028\\u0000"'


def test_dumps_calls_default_for_what_json_does_not_know() -> None:
    codec = WireJson(as_map)
    assert codec.dumps([Point(1, 2)]) == '[{"x":1,"y":2}]'
    with pytest.raises(TypeError, match="set is not JSON"):
        codec.dumps({1, 2})
    with pytest.raises(TypeError, match="keys must be str"):
        codec.dumps({(1, 2): "tuple key"})  # refused, not skipped


@pytest.mark.parametrize("value", [float("nan"), [float("inf")], {"k": -float("inf")}])
def test_dumps_refuses_nan_and_infinities(value: Any) -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        WireJson(as_map).dumps(value)


def test_a_cycle_fails_as_a_recursion_error_and_the_next_call_is_unaffected() -> None:
    codec = WireJson(as_map)
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(RecursionError):
        codec.dumps(cycle)
    shared = [1]
    assert codec.dumps([shared, shared]) == "[[1],[1]]"  # a value met twice is no cycle


def test_without_the_c_encoder_dumps_is_the_full_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonwire, "_c_make_encoder", None)
    codec = WireJson(as_map)
    assert codec.dumps == codec.encoder.encode
    assert codec.dumps({"a": [Point(1, 2)], "é": 1.5}) == '{"a":[{"x":1,"y":2}],"é":1.5}'
    with pytest.raises(ValueError, match="not JSON compliant"):
        codec.dumps(float("nan"))


def test_without_the_c_string_encoder_dumps_is_the_full_encoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jsonwire, "_c_encode_basestring", None)
    codec = WireJson(as_map)
    assert codec.dumps == codec.encoder.encode
    assert codec.dumps(["é", None]) == '["é",null]'


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("[1.5,2]", ["float:1.5", 2]),
        ("1e3", "float:1e3"),
        ('{"a":NaN}', {"a": "<NaN>"}),
        ("[Infinity,-Infinity]", ["<Infinity>", "<-Infinity>"]),
    ],
)
def test_loads_hands_numbers_and_constants_to_the_parse_functions(text: str, value: Any) -> None:
    codec = wire()
    assert codec.loads(text) == value
    assert codec.loads(f" {text}\n") == value  # the full decoder has the same options


def test_loads_takes_the_default_float_and_constants_when_given_none() -> None:
    codec = WireJson(as_map)
    assert codec.loads("[0.5,NaN]")[0] == 0.5
    assert codec.loads(" 0.5 ") == 0.5


@pytest.mark.parametrize("text", ['{"a":1}', " [1] ", "\n2", "3\t", '"x"', "null"])
def test_loads_reads_a_value_with_or_without_whitespace_around(text: str) -> None:
    assert WireJson(as_map).loads(text) == json.loads(text)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "Expecting value: line 1 column 1"),
        ("  ", "Expecting value: line 1 column 3"),
        ("[1", "Expecting ',' delimiter"),
        ("[1]x", "Extra data: line 1 column 4"),
        ("1 2", "Extra data: line 1 column 3"),
        ("{]", "Expecting property name"),
    ],
)
def test_loads_raises_the_json_modules_error(text: str, error: str) -> None:
    with pytest.raises(json.JSONDecodeError, match=error):
        WireJson(as_map).loads(text)
