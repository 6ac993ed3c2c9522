"""What the client raises when the server says no, and how it reads an error response.

An error response (flag 0x20) carries Pitaya's error body serialized with the session's
serializer: a ``{"code", "msg", "metadata"}`` map for JSON and msgpack, a ``protos.Error``
message for protobuf. :func:`request_error` reads either into a :class:`RequestError`, so
callers catch one exception type whatever the serializer.
"""

from __future__ import annotations

from collections.abc import Mapping

from transport.errorbody import ErrorBody
from transport.errors import SerializationError, TransportError
from transport.serializers import Serializer

__all__ = ["HandshakeRejected", "PushTimeout", "RequestError", "RequestTimeout", "request_error"]


class RequestError(Exception):
    """The server answered a request with an error (or, for subclasses, did not answer)."""

    def __init__(self, code: str, msg: str = "", metadata: Mapping[str, str] | None = None):
        super().__init__(f"{code}: {msg}" if msg else code)
        self.code = code
        self.msg = msg
        self.metadata: dict[str, str] = dict(metadata or {})


class RequestTimeout(RequestError):
    """No response in time; code ``PIT-504`` as in Pitaya's Go client."""


class PushTimeout(TimeoutError):
    """:meth:`~transport.client.Client.next_push` saw no push of its route in time; the
    message names the routes of the pushes that came meanwhile (left for later)."""


class HandshakeRejected(TransportError):
    """The server answered the handshake with a code other than 200."""

    def __init__(self, code: int, message: str = "") -> None:
        detail = f": {message}" if message else ""
        super().__init__(f"handshake rejected with code {code}{detail}")
        self.code = code
        self.message = message


def request_error(serializer: Serializer, data: bytes) -> RequestError:
    """The :class:`RequestError` for the data of an error response; never raises.

    ``into=ErrorBody`` makes protobuf decode its ``protos.Error``; schemaless serializers
    return the decoded map. Unreadable data still becomes an error (``PIT-000``, the text as
    message), as Pitaya's clients do.
    """
    try:
        value = serializer.unmarshal(data, ErrorBody)
    except SerializationError:
        value = data.decode("utf-8", "replace")
    body = value if isinstance(value, ErrorBody) else ErrorBody.from_value(value)
    return RequestError(body.code, body.msg, body.metadata)
