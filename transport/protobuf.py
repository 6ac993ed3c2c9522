"""The ``protobuf`` serializer, wire-compatible with Pitaya's ``serialize/protobuf``.

Protobuf data does not say what it is, so decoding needs the message class: the server takes
it from the handler's body annotation (``actors.payload`` passes ``into=cls``), the client from
``response_type=`` and ``push_types=`` (see :class:`transport.client.Client`).

Error responses are Pitaya's ``protos.Error`` message (``code`` = 1, ``msg`` = 2,
``metadata`` map<string, string> = 3), which libpitaya and Pitaya's Go client decode. The
class is built here at import time from a descriptor, so no ``protoc`` run and no generated
module is needed; it lives in a private descriptor pool, so an application that also loads
Pitaya's own generated ``protos`` modules into the default pool gets no name clash (the
classes differ, the bytes do not).

Example::

    serializer = ProtobufSerializer()
    data = serializer.marshal(JoinRequest(name="a"))        # any generated message class
    serializer.unmarshal(data, into=JoinRequest)            # -> JoinRequest(name="a")
    serializer.marshal({"code": "PIT-404", "msg": "route not found"})  # -> protos.Error bytes
    serializer.unmarshal(error_data, into=ErrorBody)        # -> ErrorBody("PIT-404", ...)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, EncodeError
from google.protobuf.message import Message as ProtoMessage

from transport.errorbody import ErrorBody
from transport.errors import SerializationError

__all__ = ["ErrorMessage", "ProtobufSerializer", "is_message_class"]

_ERROR_KEYS = frozenset({"code", "msg", "metadata"})


def _build_error_class() -> Any:
    """``message Error { string code = 1; string msg = 2; map<string,string> metadata = 3; }``
    in package ``protos``, as in Pitaya's ``error.proto``."""
    field = descriptor_pb2.FieldDescriptorProto
    optional, string = field.LABEL_OPTIONAL, field.TYPE_STRING
    file = descriptor_pb2.FileDescriptorProto(
        name="pitaya/protos/error.proto", package="protos", syntax="proto3"
    )
    error = file.message_type.add(name="Error")
    error.field.add(name="code", number=1, label=optional, type=string)
    error.field.add(name="msg", number=2, label=optional, type=string)
    error.field.add(
        name="metadata",
        number=3,
        label=field.LABEL_REPEATED,
        type=field.TYPE_MESSAGE,
        type_name=".protos.Error.MetadataEntry",
    )
    # A proto3 map is a repeated nested "entry" message flagged map_entry, as protoc emits it.
    entry = error.nested_type.add(name="MetadataEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, label=optional, type=string)
    entry.field.add(name="value", number=2, label=optional, type=string)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("protos.Error"))


#: Pitaya's ``protos.Error`` message class (fields ``code``, ``msg``, ``metadata``).
ErrorMessage: Any = _build_error_class()


def is_message_class(value: object) -> bool:
    """True for a protobuf message class (generated or built with ``message_factory``)."""
    return isinstance(value, type) and issubclass(value, ProtoMessage)


class ProtobufSerializer:
    """Protocol Buffers: message instances in, message classes out.

    ``marshal`` accepts a message instance, an :class:`ErrorBody` or an error-body mapping
    (keys among ``code``/``msg``/``metadata``, ``code`` a string: what the framework hands over
    for error responses) and ``None`` (the empty message, ``b""``). Anything else raises
    :class:`SerializationError` rather than guessing a schema, as Pitaya does.

    ``unmarshal(data, into=cls)`` returns ``cls.FromString(data)``; ``into=ErrorBody`` decodes a
    ``protos.Error`` into an :class:`ErrorBody`. Without ``into``, empty data is ``None`` (a
    request with no body) and anything else raises :class:`SerializationError`.
    """

    name = "protobuf"

    def marshal(self, value: Any) -> bytes:
        if value is None:
            return b""
        if isinstance(value, ProtoMessage):
            try:
                data: bytes = value.SerializeToString()
            except EncodeError as exc:  # proto2 message with required fields unset
                raise SerializationError(f"cannot encode {type(value).__name__}: {exc}") from exc
            return data
        body = _error_body(value)
        if body is None:
            raise SerializationError(
                f"the protobuf serializer encodes protobuf messages, not {type(value).__name__}"
            )
        error = ErrorMessage(code=body.code, msg=body.msg, metadata=body.metadata)
        encoded: bytes = error.SerializeToString()
        return encoded

    def unmarshal(self, data: bytes, into: type[Any] | None = None) -> Any:
        if into is ErrorBody:
            error = self._parse(ErrorMessage, data)
            return ErrorBody.from_value(
                {"code": error.code, "msg": error.msg, "metadata": dict(error.metadata)}
            )
        if into is None:
            if not data:
                return None
            raise SerializationError(
                "protobuf data cannot be decoded without a message class: annotate the "
                "handler's body with one, or pass response_type/push_types to the client"
            )
        if not is_message_class(into):
            raise SerializationError(f"{into!r} is not a protobuf message class")
        return self._parse(into, data)

    @staticmethod
    def _parse(cls: Any, data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except DecodeError as exc:
            raise SerializationError(
                f"malformed protobuf data for {cls.DESCRIPTOR.full_name}: {exc}"
            ) from exc


def _error_body(value: Any) -> ErrorBody | None:
    """``value`` as an error body, or None when it does not look like one."""
    if isinstance(value, ErrorBody):
        return value
    if (
        isinstance(value, Mapping)
        and isinstance(value.get("code"), str)
        and value.keys() <= _ERROR_KEYS
    ):
        return ErrorBody.from_value(dict(value))
    return None
