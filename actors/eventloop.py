"""The event loop a server runs on: asyncio's own, or uvloop when it is installed.

uvloop (a dependency on Linux and macOS; ``pip install uvloop`` where it was left out)
implements the same loop in C. Everything here runs on either; uvloop makes each request
cheaper (``tests/bench/bench_peers.py``: 14.5 -> 12.6 µs of server CPU per echo request at
100 clients), its timers and wake-ups included.

``event_loop`` (the option, also ``PITAYA_EVENT_LOOP``) chooses:

* ``auto`` (default): uvloop when it can be imported, else asyncio;
* ``asyncio``: asyncio's loop, whatever is installed;
* ``uvloop``: uvloop, and a clear error when it is not installed.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

from actors.config import ConfigError

CHOICES = ("auto", "asyncio", "uvloop")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class EventLoopUnavailable(ConfigError):
    """``event_loop="uvloop"`` on a machine without uvloop."""


def loop_factory(choice: str) -> LoopFactory | None:
    """The factory of the loop ``choice`` names (None: asyncio's default loop)."""
    if choice not in CHOICES:
        raise ConfigError(f"event_loop must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError as exc:
        if choice == "auto":
            return None
        raise EventLoopUnavailable("event_loop='uvloop' needs uvloop: pip install uvloop") from exc
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def loop_name(factory: LoopFactory | None) -> str:
    """``uvloop`` or ``asyncio``, for the start-up log line."""
    return "asyncio" if factory is None else "uvloop"
