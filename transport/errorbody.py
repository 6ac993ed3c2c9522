"""Error bodies: what the data of an error response (flag 0x20) contains.

Pitaya serializes its ``protos.Error`` with the application's serializer; with JSON that is
``{"code":"PIT-404","msg":"route not found","metadata":{"route":"x"}}``, empty fields left
out. The codes are Pitaya's (``pkg/errors`` and the places that raise them):

- ``PIT-000`` unknown: a handler error without a code, a handler panic, a null reply
- ``PIT-400`` bad request (undecodable route or argument, request sent to a notify handler)
- ``PIT-404`` not found (no such handler or remote)
- ``PIT-408`` RPC timeout between servers ("rpc client: request timeout")
- ``PIT-409`` conflict: a bind of a session that is already bound, or of a uid the unique
  session module refuses (ours; Pitaya answers a plain error there)
- ``PIT-429`` too many requests: the session's pending limit or the rate limit (ours)
- ``PIT-498`` / ``PIT-499`` request closed / closed by the client
- ``PIT-500`` internal error (also "no servers of that type")
- ``PIT-504`` client-side timeout (set by clients, Pitaya's Go client included)

Example::

    ErrorBody(PIT_404, "route not found", {"route": "x"}).to_value()
    # -> {"code": "PIT-404", "msg": "route not found", "metadata": {"route": "x"}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_METADATA_ITEMS",
    "MAX_METADATA_KEY",
    "MAX_METADATA_VALUE",
    "MAX_MSG_LENGTH",
    "PIT_000",
    "PIT_400",
    "PIT_404",
    "PIT_408",
    "PIT_409",
    "PIT_498",
    "PIT_499",
    "PIT_500",
    "PIT_504",
    "ErrorBody",
]

PIT_000 = "PIT-000"
PIT_400 = "PIT-400"
PIT_404 = "PIT-404"
PIT_408 = "PIT-408"
PIT_409 = "PIT-409"
PIT_498 = "PIT-498"
PIT_499 = "PIT-499"
PIT_500 = "PIT-500"
PIT_504 = "PIT-504"


MAX_MSG_LENGTH = 1024
"""Characters of an error message sent to a client (:meth:`ErrorBody.bounded`)."""
MAX_METADATA_ITEMS = 16
"""Metadata pairs sent with an error."""
MAX_METADATA_KEY = 64
"""Characters of a metadata key (and of the code)."""
MAX_METADATA_VALUE = 256
"""Characters of a metadata value."""


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """A Pitaya error: a ``PIT-xxx`` code, a human message, string metadata."""

    code: str
    msg: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def bounded(self) -> ErrorBody:
        """This error cut to the sizes a client is sent (:data:`MAX_MSG_LENGTH`,
        :data:`MAX_METADATA_ITEMS`, ...): an error may repeat what a client sent, and must not
        amplify it. Cut text ends with ``...``.

        >>> ErrorBody("PIT-400", "x" * 5000).bounded().msg[-6:]
        'xxx...'
        """
        metadata = self.metadata
        if (
            _fits(self.code, MAX_METADATA_KEY)
            and _fits(self.msg, MAX_MSG_LENGTH)
            and len(metadata) <= MAX_METADATA_ITEMS
            and all(
                _fits(k, MAX_METADATA_KEY) and _fits(v, MAX_METADATA_VALUE)
                for k, v in metadata.items()
            )
        ):
            return self
        return ErrorBody(
            _cut(self.code, MAX_METADATA_KEY),
            _cut(self.msg, MAX_MSG_LENGTH),
            {
                _cut(k, MAX_METADATA_KEY): _cut(v, MAX_METADATA_VALUE)
                for k, v in list(metadata.items())[:MAX_METADATA_ITEMS]
            },
        )

    def to_value(self) -> dict[str, Any]:
        """The value to hand to a serializer; ``msg``/``metadata`` omitted when empty."""
        value: dict[str, Any] = {"code": self.code}
        if self.msg:
            value["msg"] = self.msg
        if self.metadata:
            value["metadata"] = dict(self.metadata)
        return value

    @classmethod
    def from_value(cls, value: Any) -> ErrorBody:
        """Read an error from an unmarshalled body, whatever the peer sent.

        Never raises: anything that is not a mapping with a string ``code`` becomes
        ``PIT-000`` (as Pitaya does when it cannot read an error payload), a non-string
        ``msg`` is stringified, and metadata keys and values are stringified.
        """
        if not isinstance(value, dict):
            return cls(PIT_000, "" if value is None else _text(value))
        code = value.get("code")
        msg = value.get("msg")
        metadata = value.get("metadata")
        return cls(
            code if isinstance(code, str) and code else PIT_000,
            "" if msg is None else _text(msg),
            {_text(k): _text(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {},
        )


def _fits(text: Any, limit: int) -> bool:
    return not isinstance(text, str) or len(text) <= limit


def _cut(text: Any, limit: int) -> Any:
    """``text`` cut to ``limit`` characters; a value that is not a string is left as it is
    (metadata should be strings, but a handler may put anything there)."""
    if not isinstance(text, str) or len(text) <= limit:
        return text
    return text[: limit - 3] + "..."


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
