"""Read py-spy's collapsed stacks (``py-spy record --format raw``) as µs per request.

    python -m tests.bench.spy_report FILE [--us-per-request 42.0] [--top 30] [--match TEXT]

Each line of ``FILE`` is ``frame;frame;...;leaf count``. Samples of a waiting thread (its leaf
is ``epoll_wait``, ``poll``...) are left out. A function's share of the busy samples
(own: it was the leaf; total: it was anywhere on the stack) times the process's CPU per
request (``--us-per-request``, e.g. the connector's share of ``bench_cluster``'s
``forwarded_cpu_us``) estimates what it costs per request. Without the figure, shares are
printed. ``--match`` keeps the functions whose frame text contains TEXT.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def read_stacks(path: Path) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


IDLE = ("epoll_wait", "poll (", "select (", "pthread_cond_", "futex", "nanosleep")
"""Leaf frames of a thread that waits: not CPU (py-spy counts them as busy with --native)."""


def costs(stacks: Counter[tuple[str, ...]]) -> tuple[int, Counter[str], Counter[str]]:
    """Busy samples, own samples per frame, total samples per frame (once per stack)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for stack, count in stacks.items():
        if stack[-1].startswith(IDLE):
            continue
        own[stack[-1]] += count
        for frame in set(stack):
            total[frame] += count
    return sum(own.values()), own, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("--us-per-request", type=float, default=0.0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--match", default="")
    args = parser.parse_args()
    samples, own, total = costs(read_stacks(args.file))
    scale = args.us_per_request / samples if args.us_per_request and samples else 0.0
    unit = "us/req" if scale else "share"

    def shown(count: int) -> str:
        return f"{count * scale:7.2f}" if scale else f"{count / samples:7.1%}"

    print(f"{samples} samples; {unit}: own, total")
    for title, counter in (("by own", own), ("by total", total)):
        print(f"-- {title}")
        ranked = [(f, c) for f, c in counter.most_common() if args.match in f][: args.top]
        for frame, _count in ranked:
            print(f"{shown(own[frame])} {shown(total[frame])}  {frame}")


if __name__ == "__main__":
    main()
