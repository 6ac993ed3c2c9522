"""Bounded decoding of untrusted bodies: what the JSON and msgpack decoders share.

A body of bytes can cost far more than its size once decoded: ``[[],[],...]`` is three bytes
per list, and a list is a 56-byte, garbage-collected object, so 1 MiB of JSON becomes 20 MiB
of objects and (with the collector running over them as they are built) tens of ms of CPU.
msgpack is worse, one byte per list. And JSON can spell text that no encoder can write back:
``"\\ud800"`` decodes to a lone surrogate, which later fails every response it appears in.
So every untrusted decode goes through here:

- :func:`container_limit`: at most ``max_containers`` arrays and maps per body (counted from
  the bytes for JSON before decoding, by hooks that stop the decoder early for msgpack);
- :func:`collector_paused`: the garbage collector does not run in the middle of a large
  decode (the objects being built cannot form cycles; the collector would traverse them
  again and again as they grow);
- :func:`check_json_text`: a JSON body whose strings cannot be encoded back as UTF-8 is
  refused; :func:`refuse_constant` (a decoder's ``parse_constant``) refuses ``NaN`` and
  ``Infinity``, which Python reads but strict JSON writers (ours included) cannot write, and
  :func:`finite_float` (its ``parse_float``) refuses numbers too large for a float
  (``1e999``), which Python reads as an infinity.

Each raises :class:`ValueError` naming the rule; callers turn it into their own layer's
error (``SerializationError``, ``HandshakeError``).
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "DEFAULT_MAX_CONTAINERS",
    "LARGE_BODY",
    "ContainerCounter",
    "check_json_text",
    "collector_paused",
    "container_limit",
    "finite_float",
    "refuse_constant",
]

DEFAULT_MAX_CONTAINERS = 100_000
"""Arrays and maps one decoded body may hold (a body of 1 MiB can spell 350,000)."""

LARGE_BODY = 64 * 1024
"""Bodies at least this long are decoded with the collector paused."""

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_TEXT_ENCODER = json.JSONEncoder(ensure_ascii=False, check_circular=False)


def container_limit(data: bytes, max_containers: int) -> None:
    """Refuse a JSON body that may hold more than ``max_containers`` arrays and objects.

    Counts ``[`` and ``{`` bytes (brackets inside strings count too: an upper bound, never
    an under-count). Free for bodies shorter than twice the limit: each container takes at
    least two bytes.
    """
    if len(data) >= 2 * max_containers:
        count = data.count(b"[") + data.count(b"{")
        if count > max_containers:
            raise ValueError(
                f"body may hold {count} arrays and objects; the limit is {max_containers}"
            )


class ContainerCounter:
    """msgpack hooks that stop a decode past ``max_containers`` arrays and maps.

    Use as ``list_hook`` and ``object_hook``; only worth it for bodies of at least
    ``max_containers`` bytes (each container takes a byte).
    """

    __slots__ = ("count", "limit")

    def __init__(self, max_containers: int) -> None:
        self.count = 0
        self.limit = max_containers

    def __call__(self, value: Any) -> Any:
        self.count += 1
        if self.count > self.limit:
            raise ValueError(f"body holds more than {self.limit} arrays and maps")
        return value


@contextlib.contextmanager
def collector_paused(size: int) -> Iterator[None]:
    """Pause the garbage collector while a body of ``size`` bytes (if large) is decoded."""
    if size < LARGE_BODY or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def refuse_constant(name: str) -> Any:
    """``parse_constant`` for JSON decoders: ``NaN``, ``Infinity`` and ``-Infinity`` are not
    JSON, and a value holding one could not be written back."""
    raise ValueError(f"{name} is not a JSON value")


def finite_float(text: str) -> float:
    """``parse_float`` for JSON decoders: a number too large for a float (``1e999``) is valid
    JSON text, but Python reads it as an infinity, which no strict writer can write back: the
    answer echoing it would fail, after its handler ran."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is too large for a float")
    return value


def check_json_text(data: bytes, value: Any, encode: Callable[[Any], str] | None = None) -> None:
    """Refuse ``value`` (decoded from ``data``) if one of its strings is not valid Unicode.

    Only ``\\uD800``-``\\uDFFF`` escapes can make one (raw bytes were checked as UTF-8), and
    only when they are not a proper pair; those bodies alone are checked, by encoding the
    value back (``encode``: the encoder that will write it; a plain JSON one by default).
    """
    if b"\\u" not in data or _SURROGATE_ESCAPE.search(data) is None:
        return
    try:
        (encode or _TEXT_ENCODER.encode)(value).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "text holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff), which cannot "
            "be written back as UTF-8"
        ) from None  # the error holds the whole text: do not keep it alive
