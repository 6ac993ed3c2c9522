"""Run every benchmark, then print the issue's targets against what was measured.

Run: ``python -m tests.bench.all [--seconds 1.5] [--quick] [--peers]``

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
    if args.peers:
        peers = ["--rounds", "1", "--sessions", "1000", "--seconds", "1"] if args.quick else []
        runs.append(["bench_peers", *peers])
    return runs


def load(name: str, since: float) -> dict[str, Any]:
    """``results/<name>.json`` if it was written after ``since`` (not left from a past run)."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return {}
    value: dict[str, Any] = json.loads(path.read_text())
    return value if value.get("time", 0) >= since else {}


def targets(since: float) -> list[dict[str, Any]]:
    """One row per target of issue 7 and per loop, from the JSON files written since ``since``."""
    rows: list[dict[str, Any]] = []
    for loop in ("asyncio", "uvloop"):
        for row in load(f"reqrep-{loop}", since).get("rows", []):
            if row.get("transport") == "tcp" and row.get("clients") == 100:
                rows.append(
                    {
                        "target": f"tcp 100 clients depth {row['depth']} >= 50% of baseline",
                        "loop": loop,
                        "measured": f"{row['ratio']:.0%}",
                        "met": row["ratio"] >= 0.5,
                    }
                )
        broadcast = load(f"broadcast-{loop}", since).get("results", {})
        for mode in ("sequential", "burst"):
            best = broadcast.get(f"best_ours_{mode}_per_s")
            if best is not None:
                rows.append(
                    {
                        "target": f"broadcast to 1,000 >= 200,000 deliveries/s ({mode})",
                        "loop": loop,
                        "measured": f"{best:,.0f}/s",
                        "met": best >= 200_000,
                    }
                )
        kernel_name = "kernel" if loop == "asyncio" else f"kernel-{loop}"
        kernel = load(kernel_name, since).get("results", {})
        for key, what in (
            ("actor_to_actor_us_per_hop", "actor->actor"),
            ("tell_from_outside_us_per_msg", "from outside, incl. the message"),
        ):
            if key in kernel:
                rows.append(
                    {
                        "target": f"kernel tell < 2 us ({what})",
                        "loop": loop,
                        "measured": f"{kernel[key]:.2f} us",
                        "met": kernel[key] < 2.0,
                    }
                )
    memory = load("memory-asyncio", since).get("rows", [])
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
    parser.add_argument(
        "--peers", action="store_true", help="also bench_peers (needs npm and Go; ~6 minutes)"
    )
    args = parser.parse_args()
    started, since = time.monotonic(), time.time()
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
    rows = targets(since)
    print_table(rows)
    write_results(
        "summary", {"failed": ",".join(failed) or "none", "quick": args.quick, "targets": rows}
    )
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
