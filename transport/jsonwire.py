"""Compact JSON on the per-message path, with the C coders called directly.

``json.dumps``/``json.loads`` with options build a new coder per call, and
``JSONEncoder.encode`` builds a new C encoder on every call; :class:`WireJson` builds one
once, with the same options (compact, non-ASCII kept, NaN refused), and without the
circular-reference table (a cycle still fails, as a RecursionError; a shared table could keep
stale entries after a failed call). ``JSONDecoder.decode`` wraps the C scanner in two
whitespace regex matches; the scanner alone answers a text without surrounding whitespace,
and anything else (whitespace, extra data, errors) takes the full path. An echo round trip:
2.5 -> 0.8 µs. Used by the JSON serializer (client payloads) and the cluster codec (metadata
and session data).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_c_encode_basestring = getattr(json.encoder, "c_encode_basestring", None)


class WireJson:
    """One JSON dialect: ``default`` turns what JSON does not know into what it does (or
    raises TypeError); ``parse_constant`` is told of NaN/Infinity in decoded text, and
    ``parse_float`` (when given) reads every number with a fraction or an exponent."""

    __slots__ = ("_chunks", "_scan_once", "decoder", "dumps", "encoder")

    def __init__(
        self,
        default: Callable[[Any], Any],
        parse_constant: Callable[[str], Any] | None = None,
        parse_float: Callable[[str], Any] | None = None,
    ) -> None:
        self.encoder = json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=default
        )
        """The full encoder (the fallback, and what a check re-encodes with)."""
        self.decoder = json.JSONDecoder(parse_constant=parse_constant, parse_float=parse_float)
        """The full decoder (what whitespace or an error falls back to)."""
        chunks: Callable[[Any, int], Iterable[str]] | None = (
            _c_make_encoder(
                None, default, _c_encode_basestring, None, ":", ",", False, False, False
            )
            if _c_make_encoder is not None and _c_encode_basestring is not None
            else None
        )
        self._chunks = chunks
        self._scan_once: Callable[[str, int], tuple[Any, int]] = self.decoder.scan_once  # type: ignore[attr-defined]
        self.dumps: Callable[[Any], str] = (
            self._dumps_c if chunks is not None else self.encoder.encode
        )
        """``value`` as compact JSON text; TypeError/ValueError when it cannot be."""

    def _dumps_c(self, value: Any) -> str:
        return "".join(self._chunks(value, 0))  # type: ignore[misc]

    def loads(self, text: str) -> Any:
        """The value of ``text``; ``json.JSONDecodeError`` when it is not JSON."""
        try:
            value, end = self._scan_once(text, 0)
        except StopIteration:
            return self.decoder.decode(text)  # leading whitespace, or the error to raise
        if end != len(text):
            return self.decoder.decode(text)  # trailing whitespace, or "Extra data"
        return value
