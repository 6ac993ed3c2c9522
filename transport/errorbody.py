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


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """A Pitaya error: a ``PIT-xxx`` code, a human message, string metadata."""

    code: str
    msg: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

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


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
