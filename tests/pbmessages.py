"""Protobuf message classes for the tests, built from a descriptor (no protoc needed).

Equivalent ``.proto`` (package ``testchat``)::

    message JoinRequest  { string name = 1; }
    message JoinResponse { string result = 1; repeated string members = 2; }
    message ChatPush     { string name = 1; string content = 2; }
    message Counter      { int64 value = 1; map<string, int32> scores = 2; }
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _build() -> dict[str, Any]:
    file = descriptor_pb2.FileDescriptorProto(
        name="tests/testchat.proto", package="testchat", syntax="proto3"
    )
    optional, repeated = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    join = file.message_type.add(name="JoinRequest")
    join.field.add(name="name", number=1, label=optional, type=_F.TYPE_STRING)
    reply = file.message_type.add(name="JoinResponse")
    reply.field.add(name="result", number=1, label=optional, type=_F.TYPE_STRING)
    reply.field.add(name="members", number=2, label=repeated, type=_F.TYPE_STRING)
    push = file.message_type.add(name="ChatPush")
    push.field.add(name="name", number=1, label=optional, type=_F.TYPE_STRING)
    push.field.add(name="content", number=2, label=optional, type=_F.TYPE_STRING)
    counter = file.message_type.add(name="Counter")
    counter.field.add(name="value", number=1, label=optional, type=_F.TYPE_INT64)
    counter.field.add(
        name="scores",
        number=2,
        label=repeated,
        type=_F.TYPE_MESSAGE,
        type_name=".testchat.Counter.ScoresEntry",
    )
    entry = counter.nested_type.add(name="ScoresEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, label=optional, type=_F.TYPE_STRING)
    entry.field.add(name="value", number=2, label=optional, type=_F.TYPE_INT32)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"testchat.{name}"))
        for name in ("JoinRequest", "JoinResponse", "ChatPush", "Counter")
    }


_classes = _build()
JoinRequest: Any = _classes["JoinRequest"]
JoinResponse: Any = _classes["JoinResponse"]
ChatPush: Any = _classes["ChatPush"]
Counter: Any = _classes["Counter"]
