"""Turning wire payloads into the types handlers declare, and results back into bytes.

A handler annotates its body parameter; the annotation decides the decoding:

* ``bytes``: the raw payload, untouched;
* a dataclass: the serialized object must be a map whose keys are its fields (``PIT-400``
  otherwise; with ``ignore_unknown``, keys that are no field are dropped instead, as Go's
  ``encoding/json`` drops them, so a newer client's extra field does not break an older
  server: the app's ``unknown_body_fields="ignore"``); fields of simple types (str, int,
  float, bool, list, dict) are checked, and so are the items of ``list[...]`` and values of
  ``dict[str, ...]`` fields; a field that is a dataclass (also within ``X | None``,
  ``list[X]``, ``dict[str, X]``) is built from its map the same way, so ``body.to.x`` works
  as the annotation says; a union of several types or ``Any`` is taken as it is;
* ``dict``: the payload must be an object (``PIT-400`` otherwise), and the values of a
  ``dict[str, X]`` are checked or built as a field's would be;
* ``str``, ``int``, ``float``, ``bool``, ``list`` (and ``list[X]``'s items), ``X | None``:
  checked as a field of that type is (``PIT-400`` "the body must be int"), since a handler
  that says ``int`` means it, and would otherwise meet a map where it counts;
* a protobuf message class: decoded by the serializer (``into=``), for the protobuf serializer;
* anything else (``Any``, no annotation, a union of several types, a ``TypedDict``): whatever
  the serializer produced.

Results go the other way: bytes pass through, dataclasses become maps, the rest is handed to
the serializer.
"""

from __future__ import annotations

import dataclasses
import heapq
import types
import typing
from collections.abc import Callable
from functools import partial
from typing import Any

from actors.errors import BadRequest, as_pitaya_error
from transport.errorbody import ErrorBody
from transport.errors import SerializationError
from transport.protobuf import is_message_class
from transport.serializers import Serializer

Decoder = Callable[[bytes, Serializer], Any]

_SIMPLE_TYPES: dict[Any, tuple[type, ...]] = {
    str: (str,),
    int: (int,),
    float: (float, int),
    bool: (bool,),
    list: (list,),
    dict: (dict,),
}


def decoder_for(annotation: Any, *, ignore_unknown: bool = False) -> Decoder:
    """Build (once per handler method) the function that decodes its body; with
    ``ignore_unknown``, a dataclass's map (its own, or one nested in it) may have keys that
    are no field of it: they are dropped, not refused."""
    if annotation is bytes:
        return lambda data, _serializer: data
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return _dataclass_decoder(annotation, ignore_unknown)
    if isinstance(annotation, type) and _is_protobuf(annotation):
        return lambda data, serializer: _unmarshal(data, serializer, annotation)
    convert = _converter(annotation, _Build(ignore_unknown))
    if convert is None:
        return _unmarshal  # whatever the serializer makes of it: the decoder itself
    origin = typing.get_origin(annotation) or annotation
    if origin is dict:
        return partial(_dict_decoder, convert)
    return partial(_checked_decoder, convert)


_PLAIN_TYPES = frozenset({dict, list, str, int, float, bool, tuple})


def encode_result(value: Any, serializer: Serializer) -> bytes:
    """Serialize a handler's result (or a push body) for the wire."""
    if type(value) in _PLAIN_TYPES:  # the common case, without the checks below
        return serializer.marshal(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return serializer.marshal(value)


def encode_error(error: BaseException, serializer: Serializer, fallback: Serializer) -> bytes:
    """The body of an error response: Pitaya's ``{code, msg, metadata}`` for ``error``.

    Bounded, since an error may repeat what the client sent (unknown fields, a route).
    Written with ``serializer``, else with ``fallback`` (JSON; a protobuf serializer has no
    message type for it), else without the metadata no serializer can write (bytes, say):
    the request is always answered, so the session goes on.
    """
    pitaya = as_pitaya_error(error)
    body = ErrorBody(pitaya.code, pitaya.msg, pitaya.metadata).bounded().to_value()
    try:
        return serializer.marshal(body)
    except Exception:
        try:
            return fallback.marshal(body)
        except Exception:
            bare = ErrorBody(pitaya.code, pitaya.msg).bounded().to_value()
            return fallback.marshal(bare)


def _unmarshal(data: bytes, serializer: Serializer, into: type | None = None) -> Any:
    try:
        return serializer.unmarshal(data, into)
    except SerializationError as exc:
        raise BadRequest(f"cannot decode the {serializer.name} body: {exc}") from exc


def _object(data: bytes, serializer: Serializer) -> dict[str, Any]:
    value = _unmarshal(data, serializer)
    if not isinstance(value, dict):
        raise BadRequest(f"the body must be an object, got {type(value).__name__}")
    return value


def _dict_decoder(convert: Convert, data: bytes, serializer: Serializer) -> dict[str, Any]:
    result: dict[str, Any] = _converted(convert, _object(data, serializer))
    return result


def _checked_decoder(convert: Convert, data: bytes, serializer: Serializer) -> Any:
    return _converted(convert, _unmarshal(data, serializer))


def _converted(convert: Convert, value: Any) -> Any:
    try:
        return convert(value, _BODY)
    except RecursionError:
        # A dataclass that contains itself, nested deeper than Python's stack: about
        # 300 levels, a 1 KiB body. The client's fault, not the server's (PIT-500).
        raise BadRequest("the body is nested too deeply") from None


_BODY = "the body"
"""How a ``PIT-400`` names the body itself (a field is named ``field 'x' of Cls``)."""


Convert = Callable[[Any, str], Any]
"""Checks one decoded value against a field's type, and builds what the type asks for (a
nested dataclass from its map); ``where`` names the value in the ``PIT-400`` message."""


class _Build:
    """What one decoder's converters share while they are built: the dataclasses being built
    (``memo``, so a dataclass may contain itself) and whether keys that are no field are
    dropped (``ignore_unknown``) or refused."""

    __slots__ = ("ignore_unknown", "memo")

    def __init__(self, ignore_unknown: bool) -> None:
        self.ignore_unknown = ignore_unknown
        self.memo: dict[type, Convert] = {}


def _dataclass_decoder(cls: type, ignore_unknown: bool) -> Decoder:
    convert = _dataclass_converter(cls, _Build(ignore_unknown))

    def decode(data: bytes, serializer: Serializer) -> Any:
        value = _object(data, serializer)
        try:
            return convert(value, _BODY)
        except RecursionError:
            # A dataclass that contains itself, nested deeper than Python's stack: about
            # 300 levels, a 1 KiB body. The client's fault, not the server's (PIT-500).
            raise BadRequest(f"the body is nested too deeply for {cls.__name__}") from None

    return decode


def _dataclass_converter(cls: type, build: _Build) -> Convert:
    """A map into ``cls``: no unknown field (or those dropped, see :class:`_Build`), none
    missing, each field of its type."""
    memo = build.memo
    known = memo.get(cls)
    if known is not None:
        return known
    built: list[Convert] = []
    memo[cls] = lambda value, where: built[0](value, where)
    # A field the constructor does not take (init=False) is not the client's to send.
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    required = {
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    checks = {
        name: _SIMPLE_TYPES[typing.get_origin(hints[name]) or hints[name]]
        for name in fields
        if (typing.get_origin(hints[name]) or hints[name]) in _SIMPLE_TYPES
        and not typing.get_args(hints[name])
    }
    builders = {
        name: builder
        for name in fields
        if name not in checks and (builder := _converter(hints[name], build)) is not None
    }
    name_of = cls.__name__
    ignore_unknown = build.ignore_unknown

    def convert(value: Any, where: str) -> Any:
        if not isinstance(value, dict):
            raise BadRequest(f"{where} must be an object, got {type(value).__name__}")
        unknown = value.keys() - fields.keys()
        if unknown:
            if not ignore_unknown:
                raise BadRequest(f"unknown field(s) {_some(unknown)} for {name_of}")
            value = {name: v for name, v in value.items() if name in fields}
        missing = required - value.keys()
        if missing:
            raise BadRequest(f"missing field(s) {sorted(missing)} for {name_of}")
        for name, allowed in checks.items():
            if name in value and (
                not isinstance(value[name], allowed)
                or (bool not in allowed and isinstance(value[name], bool))
            ):
                raise BadRequest(f"field {name!r} of {name_of} must be {allowed[0].__name__}")
        for name, builder in builders.items():
            if name in value:
                value[name] = builder(value[name], f"field {name!r} of {name_of}")
        return cls(**value)

    built.append(convert)
    memo[cls] = convert
    return convert


def _converter(annotation: Any, build: _Build) -> Convert | None:
    """What a value of ``annotation`` needs: None when it is taken as it is (``Any``, a union
    of several types, a type no serializer makes), else the check or the build."""
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return _dataclass_converter(annotation, build)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        others = [arg for arg in args if arg is not type(None)]
        if len(others) != 1 or len(args) != 2:
            return None
        inner = _converter(others[0], build)
        if inner is None:
            return None
        return lambda value, where: None if value is None else inner(value, where)
    if origin is list:
        return _list_converter(_converter(args[0], build) if args else None)
    if origin is dict:
        return _dict_converter(_converter(args[1], build) if len(args) == 2 else None)
    allowed = _SIMPLE_TYPES.get(annotation)
    if allowed is None:
        return None
    expected = allowed[0].__name__
    exact = bool in allowed

    def check(value: Any, where: str) -> Any:
        if not isinstance(value, allowed) or (not exact and isinstance(value, bool)):
            raise BadRequest(f"{where} must be {expected}")
        return value

    return check


def _list_converter(item: Convert | None) -> Convert:
    def convert(value: Any, where: str) -> Any:
        if not isinstance(value, list):
            raise BadRequest(f"{where} must be list")
        if item is None:
            return value
        result: list[Any] = []
        append = result.append
        try:
            for element in value:
                append(item(element, where))
        except BadRequest as exc:  # the place is written only when it is needed
            raise _placed(exc, where, f"item {len(result)}") from None
        return result

    return convert


def _dict_converter(entry: Convert | None) -> Convert:
    def convert(value: Any, where: str) -> Any:
        if not isinstance(value, dict):
            raise BadRequest(f"{where} must be dict")
        if entry is None:
            return value
        result: dict[Any, Any] = {}
        key: Any = None
        try:
            for key, element in value.items():
                result[key] = entry(element, where)
        except BadRequest as exc:
            raise _placed(exc, where, f"entry {_some({key})[1:-1]}") from None
        return result

    return convert


def _placed(error: BadRequest, where: str, place: str) -> BadRequest:
    """``error``, raised for an item of the container ``where``, naming ``place`` too."""
    if error.msg.startswith(where):  # the item's own check: "<where> must be int"
        return BadRequest(f"{place} of {error.msg}")
    return BadRequest(f"{error.msg} (in {place} of {where})")  # deeper, in a dataclass


_NAMES_SHOWN = 5
_NAME_LENGTH = 40


def _some(names: set[Any]) -> str:
    """A few of the client's field ``names``, for an error message: sorted when they can be
    (msgpack map keys may be of any type), each cut short, never all of 80,000."""
    try:
        first: list[Any] = heapq.nsmallest(_NAMES_SHOWN, names)
    except TypeError:
        first = heapq.nsmallest(_NAMES_SHOWN, names, key=repr)
    shown = [
        text if len(text) <= _NAME_LENGTH else text[: _NAME_LENGTH - 3] + "..."
        for text in map(repr, first)
    ]
    more = len(names) - len(shown)
    return "[" + ", ".join(shown) + (f", ... ({more} more)" if more else "") + "]"


def _is_protobuf(cls: type) -> bool:
    # Not a check of __module__ along the MRO: message_factory classes have __module__ None.
    return is_message_class(cls)
