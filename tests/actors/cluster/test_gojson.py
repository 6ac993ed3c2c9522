"""Go's encoding/json of protoc-gen-go's structs for every field kind: lists, maps, proto3
optional and proto2 fields (pointers), floats, bytes, enums, nested messages, oneofs.

What Go writes was checked against encoding/json on the structs protoc-gen-go generates:
``json:"<proto name>,omitempty"`` tags, pointers for fields with presence (bytes excepted:
a nil slice), an untagged interface field for a oneof."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.cluster.gojson import GoJsonError, from_go_json, to_go_json
from tests.gomessages import Choice, Inner, Legacy, Lists, Maps, Optionals, Scalars

RED, GREEN = 1, 2


def go_round_trip(message: Any) -> Any:
    return from_go_json(type(message), json.loads(json.dumps(to_go_json(message))))


# -- writing ------------------------------------------------------------------------------------


def test_scalars_are_plain_json_values_and_zero_values_are_left_out() -> None:
    message = Scalars(
        weight=2.5, data=b"\x00\xff", colour=GREEN, on=True, small=2**32 - 1, delta=-(2**62)
    )
    assert to_go_json(message) == {
        "weight": 2.5,
        "data": "AP8=",
        "colour": 2,
        "on": True,
        "small": 2**32 - 1,
        "delta": -(2**62),
    }
    assert to_go_json(Scalars(weight=-0.0, data=b"", on=False, inner=None)) == {}


def test_a_float_is_written_with_the_digits_go_writes_for_a_float32() -> None:
    assert Scalars(ratio=0.1).ratio != 0.1  # protobuf keeps the float32 as a double
    assert to_go_json(Scalars(ratio=0.1, weight=0.1)) == {"ratio": 0.1, "weight": 0.1}
    assert to_go_json(Lists(ratios=[1 / 3, 3.4028234663852886e38])) == {
        "ratios": [0.33333334, 3.4028235e38]
    }


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_are_refused_as_go_refuses_them(value: float) -> None:
    with pytest.raises(GoJsonError, match=r"^gokinds\.Scalars\.weight: .* no JSON"):
        to_go_json(Scalars(weight=value))
    with pytest.raises(GoJsonError, match=r"^gokinds\.Lists\.ratios: .* no JSON"):
        to_go_json(Lists(ratios=[1.0, value]))
    with pytest.raises(GoJsonError, match=r"^gokinds\.Maps\.weights: .* no JSON"):
        to_go_json(Maps(weights={"a": value}))


def test_a_set_message_is_an_object_even_when_empty() -> None:
    assert to_go_json(Scalars(inner=Inner())) == {"inner": {}}
    assert to_go_json(Scalars(inner=Inner(code="c", count=-1))) == {
        "inner": {"code": "c", "count": -1}
    }


def test_lists_keep_their_order_and_empty_ones_are_left_out() -> None:
    message = Lists(
        tags=["b", "", "a"],
        ids=[2**63 - 1, 0],
        blobs=[b"", b"hi"],
        inners=[Inner(), Inner(code="x")],
        colours=[RED, 0, 7],
    )
    assert to_go_json(message) == {
        "tags": ["b", "", "a"],
        "ids": [2**63 - 1, 0],
        "blobs": ["", "aGk="],
        "inners": [{}, {"code": "x"}],
        "colours": [1, 0, 7],
    }
    assert to_go_json(Lists()) == {}


def test_map_keys_are_strings_sorted_as_go_sorts_them() -> None:
    message = Maps(
        inner_by_name={"b": Inner(count=1), "a": Inner()},
        name_by_int={10: "ten", 9: "nine", -1: "minus one"},
        blob_by_name={"x": b"hi", "empty": b""},
        colour_by_id={2**64 - 1: GREEN, 5: 0},
        weights={"w": 0.5},
    )
    out = to_go_json(message)
    assert out == {
        "inner_by_name": {"a": {}, "b": {"count": 1}},
        "name_by_int": {"-1": "minus one", "10": "ten", "9": "nine"},
        "blob_by_name": {"empty": "", "x": "aGk="},
        "colour_by_id": {"18446744073709551615": 2, "5": 0},
        "weights": {"w": 0.5},
    }
    # Go sorts the keys' strings: "10" before "9" (the bytes of a job depend on it).
    assert [list(value) for value in out.values()] == [
        ["a", "b"], ["-1", "10", "9"], ["empty", "x"], ["18446744073709551615", "5"], ["w"]
    ]  # fmt: skip


def test_a_map_with_bool_keys_is_refused_as_go_refuses_it_unless_empty() -> None:
    with pytest.raises(GoJsonError, match=r"^gokinds\.Maps\.name_by_flag: .*bool keys"):
        to_go_json(Maps(name_by_flag={True: "yes"}))
    assert to_go_json(Maps()) == {}  # omitempty: Go never looks at an empty map's key type


def test_a_proto3_optional_is_a_pointer_written_when_set_even_to_zero() -> None:
    assert to_go_json(Optionals()) == {}
    zeros = Optionals(name="", count=0, on=False, weight=0.0, colour=0)
    assert to_go_json(zeros) == {"name": "", "count": 0, "on": False, "weight": 0.0, "colour": 0}
    assert to_go_json(Optionals(name="ann", count=3)) == {"name": "ann", "count": 3}


def test_an_optional_bytes_is_a_slice_left_out_when_empty_even_if_set() -> None:
    assert to_go_json(Optionals(data=b"")) == {}
    assert to_go_json(Optionals(data=b"hi")) == {"data": "aGk="}
    assert to_go_json(Legacy(data=b"")) == {}


def test_a_proto2_optional_is_written_when_set_and_not_by_its_default() -> None:
    assert Legacy().count == 5 and Legacy().data == b"x"
    assert to_go_json(Legacy()) == {}
    assert to_go_json(Legacy(count=0, name="")) == {"count": 0, "name": ""}
    assert to_go_json(Legacy(count=5, data=b"x")) == {"count": 5, "data": "eA=="}


def test_a_message_with_a_oneof_is_refused_set_or_not() -> None:
    for message in (Choice(), Choice(id="a", name="n"), Choice(number=0)):
        with pytest.raises(GoJsonError, match=r"^gokinds\.Choice\.name: a oneof$"):
            to_go_json(message)


# -- reading ------------------------------------------------------------------------------------


def test_reads_what_go_writes_for_every_kind() -> None:
    assert from_go_json(
        Scalars,
        {"ratio": 0.5, "weight": 2, "data": "AP8=", "colour": 2, "on": True, "small": 7,
         "delta": -3, "inner": {"code": "c"}},
    ) == Scalars(
        ratio=0.5, weight=2.0, data=b"\x00\xff", colour=GREEN, on=True, small=7, delta=-3,
        inner=Inner(code="c"),
    )  # fmt: skip
    assert from_go_json(
        Lists,
        {"tags": ["a", ""], "ids": [1, 2], "blobs": ["", "aGk="], "inners": [{}, {"count": 2}],
         "colours": [1, 7], "ratios": [0.25]},
    ) == Lists(
        tags=["a", ""], ids=[1, 2], blobs=[b"", b"hi"], inners=[Inner(), Inner(count=2)],
        colours=[RED, 7], ratios=[0.25],
    )  # fmt: skip
    assert from_go_json(
        Maps,
        {"inner_by_name": {"a": {}, "b": {"count": 1}}, "name_by_int": {"-1": "m", "+7": "p"},
         "blob_by_name": {"x": "aGk="}, "colour_by_id": {"18446744073709551615": 2},
         "weights": {"w": 1}},
    ) == Maps(
        inner_by_name={"a": Inner(), "b": Inner(count=1)}, name_by_int={-1: "m", 7: "p"},
        blob_by_name={"x": b"hi"}, colour_by_id={2**64 - 1: GREEN}, weights={"w": 1.0},
    )  # fmt: skip


def test_a_float_past_float32s_max_is_read_while_it_rounds_to_the_max() -> None:
    assert from_go_json(Scalars, {"ratio": 3.4028235e38}).ratio == 3.4028234663852886e38
    assert from_go_json(Scalars, {"ratio": -3.4028235e38}).ratio == -3.4028234663852886e38
    for past in (3.4028236e38, -1e39):  # past half a unit more: Go's ParseFloat overflows
        with pytest.raises(GoJsonError, match=r"^gokinds\.Scalars\.ratio: .*overflows"):
            from_go_json(Scalars, {"ratio": past})


def test_an_empty_object_sets_a_message_and_null_leaves_it_unset() -> None:
    assert from_go_json(Scalars, {"inner": {}}).HasField("inner")
    assert not from_go_json(Scalars, {"inner": None}).HasField("inner")
    assert from_go_json(Lists, {"inners": [{}]}) == Lists(inners=[Inner()])


def test_a_present_optional_is_set_even_to_zero_and_a_missing_one_is_not() -> None:
    message = from_go_json(Optionals, {"name": "", "count": 0, "data": ""})
    assert [message.HasField(name) for name in ("name", "count", "data", "on")] == [
        True, True, True, False
    ]  # fmt: skip
    assert go_round_trip(Optionals(name="", on=False)) == Optionals(name="", on=False)
    assert not from_go_json(Legacy, {}).HasField("count")
    assert from_go_json(Legacy, {"count": 0}).HasField("count")


def test_null_empties_a_list_map_or_pointer_and_leaves_a_plain_value_as_go_does() -> None:
    assert from_go_json(Lists, {"tags": ["a"], "Tags": None}) == Lists()
    assert from_go_json(Maps, {"weights": {"a": 1}, "WEIGHTS": None}) == Maps()
    assert not from_go_json(Optionals, {"name": "a", "Name": None}).HasField("name")
    assert not from_go_json(Scalars, {"inner": {}, "Inner": None}).HasField("inner")
    assert from_go_json(Scalars, {"data": "aGk=", "Data": None}) == Scalars()
    assert from_go_json(Scalars, {"small": 3, "Small": None}) == Scalars(small=3)


def test_a_key_given_twice_replaces_a_list_and_merges_a_map_and_a_message() -> None:
    assert from_go_json(Lists, {"tags": ["a"], "TAGS": ["b"]}) == Lists(tags=["b"])
    assert from_go_json(Maps, {"weights": {"a": 1}, "Weights": {"b": 2}}) == Maps(
        weights={"a": 1.0, "b": 2.0}
    )
    assert from_go_json(Scalars, {"inner": {"code": "c"}, "Inner": {"count": 1}}) == Scalars(
        inner=Inner(code="c", count=1)
    )


def test_an_unknown_key_or_a_null_is_skipped_and_the_rest_still_read() -> None:
    data = {"other": 1, "small": None, "on": True, "INNER": {"Code": "c"}, "zzz": None}
    assert from_go_json(Scalars, data) == Scalars(on=True, inner=Inner(code="c"))


def test_base64_as_gos_decoder_reads_it() -> None:
    assert from_go_json(Scalars, {"data": "aG\r\nk="}) == Scalars(data=b"hi")  # Go skips \r\n
    for bad in ("aG k=", "aGk", "aGk=!", "a-_="):
        with pytest.raises(GoJsonError, match=r"^gokinds\.Scalars\.data: "):
            from_go_json(Scalars, {"data": bad})
    with pytest.raises(GoJsonError, match=r"^gokinds\.Lists\.blobs: "):
        from_go_json(Lists, {"blobs": ["aGk=", 1]})


@pytest.mark.parametrize(
    ("cls", "data", "error"),
    [
        (Scalars, {"on": 1}, "Scalars.on: expected true or false, got 1"),
        (Scalars, {"on": "true"}, "Scalars.on: expected true or false, got 'true'"),
        (Scalars, {"small": True}, "Scalars.small: expected a number, got True"),
        (Scalars, {"small": "1"}, "Scalars.small: expected a number, got '1'"),
        (Scalars, {"small": 1.5}, "Scalars.small: expected an integer, got 1.5"),
        # Go's strconv.ParseInt refuses "1.0" and "1e2", which Python reads as floats
        (Scalars, {"small": 1.0}, "Scalars.small: expected an integer, got 1.0"),
        (Scalars, {"colour": 1.0}, "Scalars.colour: expected an integer, got 1.0"),
        (Scalars, {"weight": "1.5"}, "Scalars.weight: expected a number, got '1.5'"),
        (Scalars, {"weight": False}, "Scalars.weight: expected a number, got False"),
        (Scalars, {"data": 1}, "Scalars.data: expected a base64 string, got 1"),
        (Lists, {"tags": ["a", 1]}, "Lists.tags: expected a string, got 1"),
        (Lists, {"tags": "ab"}, "Lists.tags: expected an array, got 'ab'"),
        (Lists, {"inners": {}}, "Lists.inners: expected an array, got {}"),
        (Lists, {"ids": [None]}, "Lists.ids: expected a number, got None"),
        (Lists, {"inners": [1]}, "Lists.inners: gokinds.Inner: expected an object, got 1"),
        (Maps, {"weights": []}, "Maps.weights: expected an object, got []"),
        (Maps, {"inner_by_name": {"a": 1}},
         "Maps.inner_by_name: gokinds.Inner: expected an object, got 1"),
        (Maps, {"name_by_int": {"1.0": "x"}}, "Maps.name_by_int: '1.0' is no integer key"),
        (Maps, {"name_by_int": {" 1": "x"}}, "Maps.name_by_int: ' 1' is no integer key"),
        (Maps, {"name_by_int": {"1_0": "x"}}, "Maps.name_by_int: '1_0' is no integer key"),
        (Maps, {"colour_by_id": {"+1": 1}}, "Maps.colour_by_id: '+1' is no integer key"),
        (Maps, {"colour_by_id": {"-1": 1}}, "Maps.colour_by_id: '-1' is no integer key"),
        # Go's decoder refuses map[bool]T as its encoder does
        (Maps, {"name_by_flag": {"true": "x"}}, "Maps.name_by_flag: a map with bool keys"),
    ],
)  # fmt: skip
def test_a_value_go_would_not_decode_into_the_field_is_refused_naming_it(
    cls: Any, data: dict[str, Any], error: str
) -> None:
    with pytest.raises(GoJsonError) as raised:
        from_go_json(cls, data)
    assert str(raised.value) == f"gokinds.{error}"


def test_a_number_out_of_the_fields_range_is_refused_naming_it() -> None:
    for cls, data, field in (
        (Scalars, {"small": -1}, "Scalars.small"),
        (Maps, {"name_by_int": {"3000000000": "x"}}, "Maps.name_by_int"),
    ):
        with pytest.raises(GoJsonError, match=rf"^gokinds\.{field}: .*out of range"):
            from_go_json(cls, data)


def test_a_nested_mistake_is_named_by_its_path() -> None:
    with pytest.raises(GoJsonError, match=r"^gokinds\.Scalars\.inner: gokinds\.Inner\.count: "):
        from_go_json(Scalars, {"inner": {"count": "1"}})
    with pytest.raises(GoJsonError, match=r"^gokinds\.Lists\.inners: gokinds\.Inner: expected an"):
        from_go_json(Lists, {"inners": ["x"]})


def test_a_oneof_member_is_no_json_key_and_the_oneofs_own_key_takes_only_null() -> None:
    # Go's struct has no field for a oneof member: its key is unknown and skipped.
    assert from_go_json(Choice, {"id": "a", "name": "n", "number": 1}) == Choice(id="a")
    # The oneof is an interface field named MyKind: Go reads null into it and refuses the rest.
    assert from_go_json(Choice, {"MyKind": None, "id": "a"}) == Choice(id="a")
    with pytest.raises(GoJsonError, match=r"^gokinds\.Choice\.my_kind: a oneof"):
        from_go_json(Choice, {"mykind": {"Name": "n"}})
    # protoc-gen-go names a oneof "_old" XOld.
    assert from_go_json(Choice, {"old": {"Flag": True}}) == Choice()
    with pytest.raises(GoJsonError, match=r"^gokinds\.Choice\._old: a oneof"):
        from_go_json(Choice, {"XOld": {"Flag": True}})


def test_an_exact_key_wins_over_one_that_matches_another_field_but_for_case() -> None:
    assert from_go_json(Legacy, {"Name": "upper", "name": "lower"}) == Legacy(
        name="lower", Name="upper"
    )
    assert from_go_json(Legacy, {"NAME": "folded"}) in (
        Legacy(name="folded"),
        Legacy(Name="folded"),
    )


# -- both ways ----------------------------------------------------------------------------------

_INT32 = st.integers(-(2**31), 2**31 - 1)
_FLOAT = st.floats(allow_nan=False, allow_infinity=False)


@given(
    tags=st.lists(st.text()),
    ids=st.lists(st.integers(-(2**63), 2**63 - 1)),
    blobs=st.lists(st.binary()),
    colours=st.lists(_INT32),
    ratios=st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False)),
    names=st.dictionaries(_INT32, st.text()),
    weights=st.dictionaries(st.text(), _FLOAT),
    weight=st.one_of(st.none(), _FLOAT),
    data=st.one_of(st.none(), st.binary(min_size=1)),
)
def test_what_we_write_we_read_back(
    tags: list[str],
    ids: list[int],
    blobs: list[bytes],
    colours: list[int],
    ratios: list[float],
    names: dict[int, str],
    weights: dict[str, float],
    weight: float | None,
    data: bytes | None,
) -> None:
    lists = Lists(tags=tags, ids=ids, blobs=blobs, colours=colours, ratios=ratios)
    assert go_round_trip(lists) == lists
    maps = Maps(name_by_int=names, weights=weights, blob_by_name={"b": b"\x01"})
    assert go_round_trip(maps) == maps
    optionals = Optionals(weight=weight, data=data)
    assert go_round_trip(optionals) == optionals
