"""The two closed-loop load generators, behind one ``start_loadgen``.

- ``python``: ``loadgen.py``, asyncio (uvloop when installed), TCP and WebSocket;
- ``go``: ``goload/``, the same load and the same stdin/stdout protocol from a Go program
  (standard library only), TCP only. It costs less CPU per request (an epoll loop, no
  per-request allocation), which on a 2-core machine is left to the servers under test.

Benchmarks that start load processes take ``--loadgen python|go`` (:func:`add_loadgen_arg`,
default ``python``). The Go program is built with the machine's Go toolchain into the bench
cache (``peers.CACHE``, like the Go Pitaya peer) by :func:`prepare_loadgen`, once per run.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

from tests.bench.harness import Child
from tests.bench.peers import CACHE, GO, _run

LOADGENS = ("python", "go")
GOLOAD_MODULE = Path(__file__).parent / "goload"


def add_loadgen_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--loadgen",
        choices=LOADGENS,
        default="python",
        help="load generator: python (tests.bench.loadgen) or go (tests/bench/goload: the "
        "same load for less CPU per request, TCP only, built with the Go toolchain)",
    )


@functools.cache
def build_goload() -> Path:
    """Build ``tests/bench/goload`` into the cache (Go's build cache makes a rebuild cheap)."""
    binary = CACHE / "goload" / "goload"
    binary.parent.mkdir(parents=True, exist_ok=True)
    _run([GO, "build", "-o", str(binary), "."], GOLOAD_MODULE)
    return binary


def prepare_loadgen(kind: str) -> None:
    """Build what ``kind`` needs before anything is measured."""
    if kind == "go":
        build_goload()


async def start_loadgen(kind: str, *args: Any, loop: str = "asyncio") -> Child:
    """A load process of ``kind`` with ``loadgen.py``'s arguments (``--port``, ``--clients``...).

    ``loop`` is the Python generator's event loop (``--loop``); the Go one has none. ``--ws``
    is refused for ``go``: it speaks TCP only.
    """
    if kind == "python":
        return await Child.start("loadgen", *args, "--loop", loop)
    if kind != "go":
        raise ValueError(f"unknown load generator {kind!r}; choose from {LOADGENS}")
    if "--ws" in args:
        raise ValueError("the go load generator speaks TCP only; use --loadgen python for ws")
    return await Child.run_program("goload", build_goload(), *args)
