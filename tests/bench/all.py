"""Run every benchmark, then print the issue's targets against what was measured.

Run: ``python -m tests.bench.all [--seconds 1.5] [--quick]``

Each benchmark runs as its own process (bounded by ``--timeout``), with ``--loop asyncio``
and, when uvloop is installed, again with ``--loop uvloop`` for the kernel, request/response
and broadcast benchmarks. Results land in ``tests/bench/results/*.json`` and ``*.png``;
``summary.json`` holds the target table printed at the end. ``--quick`` shrinks every
benchmark to check that the suite works, not to measure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from tests.bench.harness import ROOT, uvloop_available
from tests.bench.report import RESULTS, print_table, write_results


def benchmarks(args: argparse.Namespace) -> list[list[str]]:
    loops = ["asyncio", "uvloop"] if uvloop_available() else ["asyncio"]
    seconds = ["--seconds", str(args.seconds)]
    kernel = ["--messages", "100000"] if args.quick else []
    reqrep = ["--clients", "1,100", "--warmup", "0.2"] if args.quick else []
    broadcast = ["--rounds", "1", "--messages", "20"] if args.quick else []
    memory = ["--sessions", "1000"] if args.quick else []
    runs: list[list[str]] = []
    for loop in loops:
        runs.append(["bench_kernel", "--loop", loop, *kernel])
    for loop in loops:
        runs.append(["bench_reqrep", "--loop", loop, *seconds, *reqrep])
    for loop in loops:
        runs.append(["bench_broadcast", "--loop", loop, *broadcast])
    runs.append(["bench_memory", *memory])
    return runs


def load(name: str) -> dict[str, Any]:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def targets() -> list[dict[str, Any]]:
    """One row per target of issue 7 and per loop, from the JSON files just written."""
    rows: list[dict[str, Any]] = []
    for loop in ("asyncio", "uvloop"):
        for row in load(f"reqrep-{loop}").get("rows", []):
            if row.get("transport") == "tcp" and row.get("clients") == 100:
                rows.append(
                    {
                        "target": f"tcp 100 clients depth {row['depth']} >= 50% of baseline",
                        "loop": loop,
                        "measured": f"{row['ratio']:.0%}",
                        "met": row["ratio"] >= 0.5,
                    }
                )
        broadcast = load(f"broadcast-{loop}").get("results", {})
        if "best_ours_per_s" in broadcast:
            rows.append(
                {
                    "target": "broadcast to 1,000 >= 200,000 deliveries/s",
                    "loop": loop,
                    "measured": f"{broadcast['best_ours_per_s']:,.0f}/s",
                    "met": broadcast["target_met"],
                }
            )
        kernel = load("kernel" if loop == "asyncio" else f"kernel-{loop}").get("results", {})
        if "tell_from_outside_us_per_msg" in kernel:
            us = kernel["tell_from_outside_us_per_msg"]
            rows.append(
                {
                    "target": "kernel tell < 2 us",
                    "loop": loop,
                    "measured": f"{us:.2f} us",
                    "met": us < 2.0,
                }
            )
    memory = load("memory-asyncio").get("rows", [])
    for row in memory:
        if row["server"] == "ours":
            rows.append(
                {
                    "target": f"{row['transport']} idle session <= 20 KiB",
                    "loop": "asyncio",
                    "measured": f"{row['kib_per_session']:.1f} KiB",
                    "met": row["kib_per_session"] <= 20,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.5, help="reqrep window per run")
    parser.add_argument("--quick", action="store_true", help="tiny runs: check, not measure")
    parser.add_argument("--timeout", type=float, default=600.0, help="bound per benchmark")
    args = parser.parse_args()
    started = time.monotonic()
    failed = []
    for command in benchmarks(args):
        print(f"\n### {' '.join(command)}", flush=True)
        try:
            code = subprocess.run(
                [sys.executable, "-m", f"tests.bench.{command[0]}", *command[1:]],
                cwd=ROOT,
                timeout=args.timeout,
            ).returncode
        except subprocess.TimeoutExpired:  # subprocess.run kills the child by PID
            code = -1
        if code != 0:
            failed.append(command[0])
    print(f"\n### all benchmarks took {time.monotonic() - started:.0f} s")
    rows = targets()
    print_table(rows)
    write_results("summary", {"failed": ",".join(failed), "quick": args.quick, "targets": rows})
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
