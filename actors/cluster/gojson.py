"""Protobuf messages as Go's ``encoding/json`` writes Go's generated structs, and back.

Go Pitaya's worker puts a reliable RPC's argument in the job as ``json.Marshal`` of the
``proto.Message`` struct, not as protobuf's JSON mapping: keys are the struct's ``json`` tags
(protoc-gen-go tags each field with its name in the ``.proto``, ``omitempty``), bytes are
base64, enums and 64-bit integers are plain numbers, and zero values, empty lists and unset
messages are left out. So a Go worker decodes what we write and we decode what Go writes::

    to_go_json(KickMsg(userId="ann"))            # {"userId": "ann"}
    from_go_json(KickMsg, {"userId": "ann"})      # KickMsg(userId="ann")

A field with presence (proto3 ``optional``, proto2) is a pointer in Go, written when set
even to its zero value; ``bytes`` is a slice (left out when empty, set or not). Map keys are
strings, sorted as Go sorts them (``"10"`` before ``"9"``); a ``float`` is written with the
digits Go writes for a ``float32``. Go's ``json.Marshal`` refuses NaN, the infinities and maps
with ``bool`` keys, and so do we. A ``oneof`` has no plain form in Go (an interface field,
named after the oneof, holding a struct Go's decoder cannot make): it is refused.
"""

from __future__ import annotations

import base64
import functools
import math
import re
import struct
from collections.abc import Mapping
from typing import Any, TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.descriptor_pb2 import DescriptorProto
from google.protobuf.message import Message

__all__ = ["GoJsonError", "from_go_json", "to_go_json"]

M = TypeVar("M", bound=Message)

_FLOATS = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)
_UNSIGNED = (
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FIXED64,
)
_FLOAT32_MAX = 3.4028234663852886e38
_FLOAT32_LIMIT = 2.0**128 - 2.0**103  # half a unit past the max: from here on, an infinity
# What Go's strconv.ParseInt / ParseUint take (base 10) as a map key.
_SIGNED_KEY = re.compile(r"[+-]?[0-9]+")
_UNSIGNED_KEY = re.compile(r"[0-9]+")


class GoJsonError(ValueError):
    """A message that has no Go JSON form, or JSON that does not fit the message."""


def to_go_json(message: Message) -> dict[str, Any]:
    """``message`` as Go's ``json.Marshal`` writes the generated struct (see module doc)."""
    out: dict[str, Any] = {}
    oneofs = _oneofs(message.DESCRIPTOR)
    for field in message.DESCRIPTOR.fields:
        if field.name in oneofs:
            raise GoJsonError(f"{field.full_name}: a oneof")
        value = getattr(message, field.name)
        if _is_map(field):
            if value:
                key = field.message_type.fields_by_name["key"]
                if key.type == FieldDescriptor.TYPE_BOOL:
                    raise GoJsonError(f"{field.full_name}: a map with bool keys")
                entry = field.message_type.fields_by_name["value"]
                out[field.name] = {
                    str(k): _scalar_out(field, entry, value[k]) for k in sorted(value, key=str)
                }
        elif field.is_repeated:
            if value:
                out[field.name] = [_scalar_out(field, field, item) for item in value]
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if message.HasField(field.name):
                out[field.name] = to_go_json(value)
        elif field.has_presence and not message.HasField(field.name):
            continue  # a nil pointer (or slice), even where the getter gives a default
        elif value or (field.has_presence and field.type != FieldDescriptor.TYPE_BYTES):
            out[field.name] = _scalar_out(field, field, value)
    return out


@functools.cache
def _oneofs(descriptor: Descriptor) -> dict[str, str]:
    """The fields of ``descriptor`` in a real oneof (not a proto3 optional's), to its name."""
    proto = DescriptorProto()
    descriptor.CopyToProto(proto)
    return {
        field.name: proto.oneof_decl[field.oneof_index].name
        for field in proto.field
        if field.HasField("oneof_index") and not field.proto3_optional
    }


def _is_map(field: FieldDescriptor) -> bool:
    if field.type != FieldDescriptor.TYPE_MESSAGE:
        return False
    return bool(field.message_type.GetOptions().map_entry)


def _scalar_out(owner: FieldDescriptor, field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return to_go_json(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if field.type in _FLOATS:
        if not math.isfinite(value):
            raise GoJsonError(f"{owner.full_name}: {value} has no JSON form")
        if field.type == FieldDescriptor.TYPE_FLOAT:
            return _shortest_float32(value)
    return value


def _shortest_float32(value: float) -> float:
    """The double with the fewest digits that is still ``value`` as a float32, as Go's
    ``strconv.FormatFloat(f, 'g', -1, 32)`` writes it: ``0.1``, not ``0.10000000149011612``."""
    for digits in range(1, 10):
        short = float(f"{value:.{digits}g}")
        if _float32(short) == value:
            return short
    return value


def _float32(value: float) -> float:
    """``value`` rounded to the nearest float32 (past its range: an infinity)."""
    if abs(value) > _FLOAT32_MAX:  # struct refuses it, though it may round down to the max
        return math.copysign(_FLOAT32_MAX if abs(value) < _FLOAT32_LIMIT else math.inf, value)
    result: float = struct.unpack("<f", struct.pack("<f", value))[0]
    return result


def from_go_json(cls: type[M], data: Any) -> M:
    """A ``cls`` from Go's JSON of its struct (``null``: an empty message). Keys match the
    fields' names, then, as in Go, case-insensitively; unknown keys are ignored. As Go's
    decoder: ``null`` empties a list, map, message or field with presence and leaves any
    other value; a value of the wrong JSON type (``1.0`` for an integer, ``1`` for a bool) is
    refused."""
    message: M = cls()
    if data is None:
        return message
    _fill(message, data)
    return message


def _fill(message: Message, data: Any) -> None:
    if not isinstance(data, Mapping):
        raise GoJsonError(f"{message.DESCRIPTOR.full_name}: expected an object, got {data!r}")
    # A oneof's members are no fields of Go's struct; the oneof is, under its Go name.
    oneofs = _oneofs(message.DESCRIPTOR)
    fields = {f.name: f for f in message.DESCRIPTOR.fields if f.name not in oneofs}
    folded: dict[str, FieldDescriptor] = {}
    for name, field in fields.items():  # as in Go, the first match but for case wins
        folded.setdefault(name.lower(), field)
    interfaces = {_go_name(name).lower(): name for name in set(oneofs.values())}
    for key, value in data.items():
        field = fields.get(key) or folded.get(str(key).lower())
        if field is None:
            oneof = interfaces.get(str(key).lower())
            if oneof is not None and value is not None:
                name = f"{message.DESCRIPTOR.full_name}.{oneof}"
                raise GoJsonError(f"{name}: a oneof (Go cannot decode {value!r} into it)")
            continue
        if value is None:  # Go's null: a nil pointer, slice or map; no change to a value
            if field.is_repeated or field.has_presence or field.type == FieldDescriptor.TYPE_BYTES:
                message.ClearField(field.name)
            continue
        try:
            _set(message, field, value)
        except (TypeError, ValueError) as exc:
            raise GoJsonError(f"{field.full_name}: {exc}") from None


def _go_name(name: str) -> str:
    """protoc-gen-go's Go name of a oneof, as far as a case-insensitive match needs it."""
    if name.startswith("_"):
        name = "X" + name[1:]
    return re.sub(r"_(?=[a-z])", "", name)


def _set(message: Message, field: FieldDescriptor, value: Any) -> None:
    target = getattr(message, field.name)
    if _is_map(field):
        if not isinstance(value, Mapping):
            raise TypeError(f"expected an object, got {value!r}")
        key_field = field.message_type.fields_by_name["key"]
        entry = field.message_type.fields_by_name["value"]
        for raw_key, item in value.items():
            key = _key_in(key_field, raw_key)
            if entry.type == FieldDescriptor.TYPE_MESSAGE:
                _fill(target[key], item)
            else:
                target[key] = _scalar_in(entry, item)
    elif field.is_repeated:
        if not isinstance(value, list):
            raise TypeError(f"expected an array, got {value!r}")
        del target[:]  # Go decodes into the slice from its start
        for item in value:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                _fill(target.add(), item)
            else:
                target.append(_scalar_in(field, item))
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        target.SetInParent()  # {} is a set, empty message (Go: a non-nil pointer)
        _fill(target, value)
    else:
        setattr(message, field.name, _scalar_in(field, value))


def _key_in(field: FieldDescriptor, key: str) -> Any:
    if field.type == FieldDescriptor.TYPE_STRING:
        return key
    if field.type == FieldDescriptor.TYPE_BOOL:
        raise TypeError("a map with bool keys")  # Go's decoder refuses map[bool]T
    pattern = _UNSIGNED_KEY if field.type in _UNSIGNED else _SIGNED_KEY
    if not pattern.fullmatch(key):
        raise ValueError(f"{key!r} is no integer key")
    return int(key)


def _scalar_in(field: FieldDescriptor, value: Any) -> Any:
    kind = field.type
    if kind == FieldDescriptor.TYPE_BYTES:
        if not isinstance(value, str):
            raise TypeError(f"expected a base64 string, got {value!r}")
        # Go's base64 decoder skips line breaks; anything else outside the alphabet fails.
        return base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
    if kind == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {value!r}")
        return value
    if kind == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    if kind in _FLOATS:
        if kind == FieldDescriptor.TYPE_FLOAT and math.isinf(_float32(value)):
            raise ValueError(f"{value!r} overflows a float32")
        return float(value)
    if isinstance(value, float):  # Go's strconv.ParseInt refuses 1.0 and 1e2
        raise TypeError(f"expected an integer, got {value!r}")
    return value
