"""Protobuf messages as Go's ``encoding/json`` writes Go's generated structs, and back.

Go Pitaya's worker puts a reliable RPC's argument in the job as ``json.Marshal`` of the
``proto.Message`` struct, not as protobuf's JSON mapping: keys are the struct's ``json`` tags
(protoc-gen-go tags each field with its name in the ``.proto``, ``omitempty``), bytes are
base64, enums and 64-bit integers are plain numbers, and zero values, empty lists and unset
messages are left out. So a Go worker decodes what we write and we decode what Go writes::

    to_go_json(KickMsg(userId="ann"))            # {"userId": "ann"}
    from_go_json(KickMsg, {"userId": "ann"})      # KickMsg(userId="ann")

A ``oneof`` has no such plain form in Go (an interface field): it is refused.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, TypeVar

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

__all__ = ["GoJsonError", "from_go_json", "to_go_json"]

M = TypeVar("M", bound=Message)

_FLOATS = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)


class GoJsonError(ValueError):
    """A message that has no Go JSON form, or JSON that does not fit the message."""


def to_go_json(message: Message) -> dict[str, Any]:
    """``message`` as Go's ``json.Marshal`` writes the generated struct (see module doc)."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        if field.containing_oneof is not None and not _synthetic_oneof(field):
            raise GoJsonError(f"{message.DESCRIPTOR.full_name}.{field.name}: a oneof")
        value = getattr(message, field.name)
        if _is_map(field):
            if value:
                entry = field.message_type.fields_by_name["value"]
                out[field.name] = {str(k): _scalar_out(entry, value[k]) for k in sorted(value)}
        elif field.is_repeated:
            if value:
                out[field.name] = [_scalar_out(field, item) for item in value]
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if message.HasField(field.name):
                out[field.name] = to_go_json(value)
        elif field.has_presence and field.containing_oneof is not None:
            if message.HasField(field.name):  # proto3 optional: a pointer, kept when set
                out[field.name] = _scalar_out(field, value)
        elif value:
            out[field.name] = _scalar_out(field, value)
    return out


def _synthetic_oneof(field: FieldDescriptor) -> bool:
    oneof = field.containing_oneof
    return oneof is not None and bool(getattr(oneof, "is_synthetic", False))


def _is_map(field: FieldDescriptor) -> bool:
    if field.type != FieldDescriptor.TYPE_MESSAGE:
        return False
    return bool(field.message_type.GetOptions().map_entry)


def _scalar_out(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return to_go_json(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    return value


def from_go_json(cls: type[M], data: Any) -> M:
    """A ``cls`` from Go's JSON of its struct (``null``: an empty message). Keys match the
    fields' names, then, as in Go, case-insensitively; unknown keys are ignored."""
    message: M = cls()
    if data is None:
        return message
    _fill(message, data)
    return message


def _fill(message: Message, data: Any) -> None:
    if not isinstance(data, Mapping):
        raise GoJsonError(f"{message.DESCRIPTOR.full_name}: expected an object, got {data!r}")
    fields = message.DESCRIPTOR.fields_by_name
    folded = {name.lower(): field for name, field in fields.items()}
    for key, value in data.items():
        field = fields.get(key) or folded.get(str(key).lower())
        if field is None or value is None:
            continue
        try:
            _set(message, field, value)
        except (TypeError, ValueError) as exc:
            raise GoJsonError(f"{message.DESCRIPTOR.full_name}.{field.name}: {exc}") from None


def _set(message: Message, field: FieldDescriptor, value: Any) -> None:
    target = getattr(message, field.name)
    if _is_map(field):
        key_field = field.message_type.fields_by_name["key"]
        entry = field.message_type.fields_by_name["value"]
        for raw_key, item in dict(value).items():
            key = _scalar_in(key_field, raw_key)
            if entry.type == FieldDescriptor.TYPE_MESSAGE:
                _fill(target[key], item)
            else:
                target[key] = _scalar_in(entry, item)
    elif field.is_repeated:
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


def _scalar_in(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64decode(value, validate=True)
    if field.type == FieldDescriptor.TYPE_BOOL:
        if isinstance(value, str):  # a map key
            return value == "true"
        return bool(value)
    if field.type == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {value!r}")
        return value
    if field.type in _FLOATS:
        return float(value)
    return int(value)
