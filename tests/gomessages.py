"""Protobuf message classes with the field kinds Pitaya's own protos lack, built from a
descriptor (no protoc needed), for the tests of Go's JSON of generated structs.

Equivalent ``.proto`` files (package ``gokinds``)::

    // gokinds.proto (proto3)
    enum Colour { COLOUR_UNSET = 0; RED = 1; GREEN = 2; }
    message Inner   { string code = 1; int32 count = 2; }
    message Scalars { float ratio = 1; double weight = 2; bytes data = 3; Colour colour = 4;
                      bool on = 5; uint32 small = 6; sint64 delta = 7; Inner inner = 8; }
    message Lists   { repeated string tags = 1; repeated int64 ids = 2;
                      repeated bytes blobs = 3; repeated Inner inners = 4;
                      repeated Colour colours = 5; repeated float ratios = 6; }
    message Maps    { map<string, Inner> inner_by_name = 1; map<int32, string> name_by_int = 2;
                      map<bool, string> name_by_flag = 3; map<string, bytes> blob_by_name = 4;
                      map<uint64, Colour> colour_by_id = 5; map<string, double> weights = 6; }
    message Optionals { optional string name = 1; optional int32 count = 2;
                        optional bool on = 3; optional bytes data = 4;
                        optional double weight = 5; optional Colour colour = 6; }
    message Choice  { string id = 1; oneof my_kind { string name = 2; int32 number = 3; }
                      oneof _old { bool flag = 4; } }

    // gokinds2.proto (proto2)
    message Legacy  { optional int32 count = 1 [default = 5]; optional string name = 2;
                      optional bytes data = 3 [default = "x"]; optional string Name = 4; }
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED


def _fields(message: Any, *fields: tuple[str, int, str]) -> None:
    """Adds (name, type, type_name) fields numbered from 1; a type name makes it a message
    or an enum, a leading "*" a repeated field."""
    for number, (name, kind, type_name) in enumerate(fields, start=1):
        label = _REPEATED if name.startswith("*") else _OPTIONAL
        field = message.field.add(name=name.lstrip("*"), number=number, label=label, type=kind)
        if type_name:
            field.type_name = type_name


def _map(message: Any, number: int, name: str, key: int, value: int, value_type: str) -> None:
    entry_name = "".join(part.title() for part in name.split("_")) + "Entry"
    message.field.add(
        name=name,
        number=number,
        label=_REPEATED,
        type=_F.TYPE_MESSAGE,
        type_name=f".gokinds.{message.name}.{entry_name}",
    )
    entry = message.nested_type.add(name=entry_name)
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, label=_OPTIONAL, type=key)
    entry.field.add(name="value", number=2, label=_OPTIONAL, type=value)
    if value_type:
        entry.field[1].type_name = value_type


def _proto3() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="tests/gokinds.proto", package="gokinds", syntax="proto3"
    )
    colour = file.enum_type.add(name="Colour")
    for number, name in enumerate(("COLOUR_UNSET", "RED", "GREEN")):
        colour.value.add(name=name, number=number)
    inner, colour_type = ".gokinds.Inner", ".gokinds.Colour"
    enum, message = _F.TYPE_ENUM, _F.TYPE_MESSAGE
    _fields(
        file.message_type.add(name="Inner"),
        ("code", _F.TYPE_STRING, ""),
        ("count", _F.TYPE_INT32, ""),
    )
    _fields(
        file.message_type.add(name="Scalars"),
        ("ratio", _F.TYPE_FLOAT, ""),
        ("weight", _F.TYPE_DOUBLE, ""),
        ("data", _F.TYPE_BYTES, ""),
        ("colour", enum, colour_type),
        ("on", _F.TYPE_BOOL, ""),
        ("small", _F.TYPE_UINT32, ""),
        ("delta", _F.TYPE_SINT64, ""),
        ("inner", message, inner),
    )
    _fields(
        file.message_type.add(name="Lists"),
        ("*tags", _F.TYPE_STRING, ""),
        ("*ids", _F.TYPE_INT64, ""),
        ("*blobs", _F.TYPE_BYTES, ""),
        ("*inners", message, inner),
        ("*colours", enum, colour_type),
        ("*ratios", _F.TYPE_FLOAT, ""),
    )
    maps = file.message_type.add(name="Maps")
    _map(maps, 1, "inner_by_name", _F.TYPE_STRING, message, inner)
    _map(maps, 2, "name_by_int", _F.TYPE_INT32, _F.TYPE_STRING, "")
    _map(maps, 3, "name_by_flag", _F.TYPE_BOOL, _F.TYPE_STRING, "")
    _map(maps, 4, "blob_by_name", _F.TYPE_STRING, _F.TYPE_BYTES, "")
    _map(maps, 5, "colour_by_id", _F.TYPE_UINT64, enum, colour_type)
    _map(maps, 6, "weights", _F.TYPE_STRING, _F.TYPE_DOUBLE, "")
    optionals = file.message_type.add(name="Optionals")
    _fields(
        optionals,
        ("name", _F.TYPE_STRING, ""),
        ("count", _F.TYPE_INT32, ""),
        ("on", _F.TYPE_BOOL, ""),
        ("data", _F.TYPE_BYTES, ""),
        ("weight", _F.TYPE_DOUBLE, ""),
        ("colour", enum, colour_type),
    )
    for index, field in enumerate(optionals.field):  # each in its synthetic oneof
        optionals.oneof_decl.add(name=f"_{field.name}")
        field.oneof_index, field.proto3_optional = index, True
    choice = file.message_type.add(name="Choice")
    _fields(
        choice,
        ("id", _F.TYPE_STRING, ""),
        ("name", _F.TYPE_STRING, ""),
        ("number", _F.TYPE_INT32, ""),
        ("flag", _F.TYPE_BOOL, ""),
    )
    choice.oneof_decl.add(name="my_kind")
    choice.oneof_decl.add(name="_old")
    choice.field[1].oneof_index = choice.field[2].oneof_index = 0
    choice.field[3].oneof_index = 1
    return file


def _proto2() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="tests/gokinds2.proto", package="gokinds", syntax="proto2"
    )
    legacy = file.message_type.add(name="Legacy")
    _fields(
        legacy,
        ("count", _F.TYPE_INT32, ""),
        ("name", _F.TYPE_STRING, ""),
        ("data", _F.TYPE_BYTES, ""),
        ("Name", _F.TYPE_STRING, ""),  # differs from name only by case: proto2 allows it
    )
    legacy.field[0].default_value, legacy.field[2].default_value = "5", "x"
    return file


def _build() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_proto3())
    pool.Add(_proto2())
    names = ("Inner", "Scalars", "Lists", "Maps", "Optionals", "Choice", "Legacy")
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"gokinds.{name}"))
        for name in names
    }


_classes = _build()
Inner: Any = _classes["Inner"]
Scalars: Any = _classes["Scalars"]
Lists: Any = _classes["Lists"]
Maps: Any = _classes["Maps"]
Optionals: Any = _classes["Optionals"]
Choice: Any = _classes["Choice"]
Legacy: Any = _classes["Legacy"]
