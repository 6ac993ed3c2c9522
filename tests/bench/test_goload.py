"""The Go load generator (``tests/bench/goload``) against our benchmark server, briefly.

The benchmarks themselves are not collected by pytest; this checks that ``--loadgen go``
builds, handshakes, keeps its requests in flight and reports in ``loadgen.py``'s format.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

from tests.bench.harness import Child, Histogram, children
from tests.bench.loadgens import start_loadgen
from tests.bench.peers import GO

pytestmark = pytest.mark.skipif(
    not (shutil.which(GO) or os.access(GO, os.X_OK)),
    reason="the Go toolchain is missing (go on PATH or /usr/local/go/bin/go)",
)


async def run_goload(*args: object) -> dict[str, Any]:
    """One short ``goload`` run against a fresh ``app_server``: its result line."""
    async with children() as started:
        server = await Child.start("app_server", "--port", 0)
        started.append(server)
        ports = await server.expect(timeout=30)
        worker = await start_loadgen("go", "--port", ports["tcp"], *args, "--max-seconds", 60)
        started.append(worker)
        ready = await worker.expect(timeout=60)
        worker.send("go")
        result = await worker.expect(timeout=30)
    return {**result, "ready": ready["ready"]}


async def test_goload_runs_a_closed_loop_against_app_server() -> None:
    result = await run_goload(*("--clients", 4, "--depth", 3, "--seconds", 0.3, "--warmup", 0.1))
    assert result["ready"] == 4
    assert set(result) == {"ready", "count", "errors", "elapsed", "cpu", "histogram"}
    assert result["count"] > 0
    assert result["errors"] == 0
    assert result["elapsed"] >= 0.3
    assert Histogram.merged([result["histogram"]]).count == result["count"]


async def test_goload_counts_error_responses() -> None:
    result = await run_goload(
        *("--route", "no.such.route", "--clients", 1, "--seconds", 0.2, "--warmup", 0.0)
    )
    assert result["count"] > 0
    assert result["errors"] >= result["count"]


async def test_goload_refuses_websocket() -> None:
    with pytest.raises(ValueError, match="TCP only"):
        await start_loadgen("go", "--port", 1, "--ws")
