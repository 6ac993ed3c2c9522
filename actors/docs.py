"""``sys.docs``: the built-in route that describes every route of the server.

The answer lists each handler route with the shape of its request and response, so tools such
as the client CLI can show what a server offers (Pitaya's ``sys.docs`` equivalent)::

    {"server_type": "chat",
     "handlers": {"room.join": {"input": {"name": "string"},
                                "output": {"result": "string", "members": ["string"]},
                                "notify": false}}}

In cluster mode it also lists the server types in discovery (``"server_types": ["connector",
"room"]``); a frontend forwards ``<type>.sys.docs`` to a server of that type, so a client
reads every type's routes through the frontend it is connected to (``pitaya-cli routes``).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from actors.handler import Handler, MethodSpec, handler
from actors.session import Session

_NAMES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    bytes: "bytes",
    dict: "object",
    list: "array",
    type(None): "null",
    Any: "any",
}


def describe(annotation: Any) -> Any:
    """A JSON-friendly picture of a type annotation."""
    if annotation is None:
        return None
    if annotation in _NAMES:
        return _NAMES[annotation]
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        hints = typing.get_type_hints(annotation)
        return {f.name: describe(hints.get(f.name, Any)) for f in dataclasses.fields(annotation)}
    descriptor = getattr(annotation, "DESCRIPTOR", None)
    if descriptor is not None and hasattr(descriptor, "fields"):
        return {
            "$protobuf": descriptor.full_name,
            **{f.name: _protobuf_type(f) for f in descriptor.fields},
        }
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (list, tuple, set, frozenset):
        return [describe(args[0]) if args else "any"]
    if origin is dict:
        return {"<key>": describe(args[1]) if len(args) == 2 else "any"}
    if origin is typing.Union or isinstance(annotation, types.UnionType):
        return {"oneOf": [describe(a) for a in args]}
    return getattr(annotation, "__name__", str(annotation))


def _protobuf_type(field: Any) -> Any:
    """A protobuf field's type as a name (``string``, ``int32``, the message's full name);
    a map as ``{"<key>": value type}`` and a repeated field as ``[type]``, as a dataclass's
    dict and list fields are shown."""
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        return {"<key>": _scalar_type(message.fields_by_name["value"])}
    if field.is_repeated:
        return [_scalar_type(field)]
    return _scalar_type(field)


def _scalar_type(field: Any) -> str:
    """One value's type: ``string``, ``int32``..., or the message's or enum's full name."""
    if field.message_type is not None:
        return str(field.message_type.full_name)
    if field.enum_type is not None:
        return str(field.enum_type.full_name)
    for name, value in vars(type(field)).items():
        if name.startswith("TYPE_") and value == field.type:
            return str(name[len("TYPE_") :].lower())
    return str(field.type)


def describe_route(spec: MethodSpec) -> dict[str, Any]:
    return {
        "input": describe(spec.request_type) if spec.takes_body else None,
        "output": None if spec.notify_only else describe(spec.response_type),
        "notify": spec.notify_only,
    }


class Sys(Handler):
    """Built-in ``sys`` service, registered by every app."""

    service = "sys"

    @handler
    def docs(self, session: Session) -> Any:
        """The route table; as JSON bytes when the serializer has no schemaless maps."""
        routes = self.app.local_routes
        docs: dict[str, Any] = {
            "server_type": self.app.server_type,
            "handlers": {
                route: describe_route(local.spec)
                for route, local in sorted(routes.items())
                if route.count(".") == 1
            },
        }
        if self.app.config.mode == "cluster":  # the server types a client can reach
            docs["server_types"] = sorted(self.app.known_server_types())
        if self.app.serializer.name == "protobuf":
            return json.dumps(docs).encode()
        return docs
