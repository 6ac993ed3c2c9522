"""Go's ``time.Duration`` strings, read and written: what Go Pitaya puts where a duration goes.

Go Pitaya writes durations as text in two places a Python server meets: the ``timeout`` of
an RPC request's metadata and of a PIT-408's metadata (``time.Duration.String``: ``5s``,
``1.5s``, ``1m30s``), and its configuration, read from the environment by viper
(``time.ParseDuration``: ``PITAYA_HEARTBEAT_INTERVAL=30s``). This module is the one place
that speaks that syntax: :func:`seconds` reads it, :func:`string` writes it as Go's
``String`` does, and :func:`short` writes the compact form a request's metadata carries.

    >>> seconds("1m30s"), seconds("250ms"), seconds("1.s"), seconds("5")
    (90.0, 0.25, 1.0, None)
    >>> string(90.5), short(0.25)
    ('1m30.5s', '250ms')
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["seconds", "short", "string"]

_PART = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
"""A number (``1``, ``1.5``, ``1.``, ``.5``: Go's) and its unit."""
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def seconds(text: str) -> float | None:
    """Seconds of a Go duration (``time.ParseDuration``'s syntax: ``1h2m3.5s``, ``300ms``,
    one optional sign, ``0``), or None when ``text`` is not one (a plain number is not: Go
    wants a unit). Spaces around it are allowed."""
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    if body[:1] in ("-", "+"):
        body = body[1:]  # one sign at most, as in Go
    if body == "0":
        return 0.0
    total = 0.0
    position = 0
    for part in _PART.finditer(body):
        if part.start() != position:
            return None
        total += float(part.group(1)) * _UNIT_SECONDS[part.group(2)]
        position = part.end()
    return sign * total if position == len(body) and position > 0 else None


@lru_cache(maxsize=64)
def short(value: float) -> str:
    """``value`` seconds in the fewest characters Go reads back exactly (``5.0`` -> ``"5s"``,
    ``0.25`` -> ``"250ms"``): a request's ``timeout`` metadata, written per request."""
    if value == int(value):
        return f"{int(value)}s"
    millis = value * 1000
    if abs(millis - round(millis)) < 1e-9:
        return f"{round(millis)}ms"
    return f"{value!r}s"


def string(value: float) -> str:
    """``value`` seconds as Go's ``time.Duration.String`` writes it ("5s", "1.5s", "500µs",
    "1m30s", "1h0m0.5s"), for metadata Go Pitaya's callers may read."""
    ns = round(value * 1e9)
    if ns < 0:
        return "-" + string(-value)  # as Go: the sign, then the duration
    if ns == 0:
        return "0s"
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return _with_fraction(ns, 1_000) + "µs"
    if ns < 1_000_000_000:
        return _with_fraction(ns, 1_000_000) + "ms"
    whole, fraction = divmod(ns, 1_000_000_000)
    text = _with_fraction((whole % 60) * 1_000_000_000 + fraction, 1_000_000_000) + "s"
    minutes, hours = whole // 60 % 60, whole // 3600
    if whole >= 60:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return text


def _with_fraction(value: int, unit: int) -> str:
    """``value / unit`` exactly, without trailing zeros ("1.5", "59.9999999", "3")."""
    whole, fraction = divmod(value, unit)
    digits = str(fraction).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)
