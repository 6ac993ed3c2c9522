"""Shared output of the benchmarks: a printed table, a JSON file and a PNG under results/.

``write_results(name, results)`` prints a two-column table of the scalar results (and, when
given, a table of ``rows``) and writes ``results/<name>.json``. ``plot_bars(name, panels)``
draws one bar chart per :class:`Panel` into ``results/<name>.png`` with matplotlib's Agg
backend (no display needed); without matplotlib it says so and returns None.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    """What the figures came from, stored next to them."""
    import os

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info


def _shown(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    return str(value)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
    """Print ``rows`` (dicts) as an aligned table with a header."""
    if not rows:
        return
    columns = list(columns or rows[0].keys())
    cells = [[_shown(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for r in cells:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)))


def write_results(
    name: str,
    results: dict[str, Any],
    rows: Sequence[dict[str, Any]] | None = None,
    columns: Sequence[str] | None = None,
) -> Path:
    """Print ``results`` (scalars as a two-column table, plus ``rows`` as a table) and write
    them, with the machine description, to ``results/<name>.json``."""
    print(f"== {name} ==")
    scalars = {k: v for k, v in results.items() if isinstance(v, int | float | str | bool)}
    if scalars:
        width = max(len(k) for k in scalars)
        for key, value in scalars.items():
            shown = f"{value:,.2f}" if isinstance(value, float) else str(value)
            print(f"{key:<{width}}  {shown:>16}")
    if rows:
        print_table(rows, columns)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload: dict[str, Any] = {
        "benchmark": name,
        "time": time.time(),
        "machine": machine(),
        "results": results,
    }
    if rows is not None:
        payload["rows"] = list(rows)
    path.write_text(json.dumps(payload, indent=2))
    return path


@dataclass
class Panel:
    """One bar chart: a group of bars per label, one bar per series."""

    title: str
    labels: list[str]
    series: dict[str, list[float]]
    ylabel: str
    log: bool = False
    notes: list[str] = field(default_factory=list)
    """Text written above each label's group (e.g. a ratio); empty to skip."""
    target: float | None = None
    """A horizontal dashed line (a goal to meet)."""


def plot_bars(name: str, panels: Sequence[Panel], title: str = "", columns: int = 2) -> Path | None:
    """Draw ``panels`` into ``results/<name>.png``; returns the path (None w/o matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e .[bench]); no plot written")
        return None
    columns = max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        count = max(1, len(panel.series))
        width = 0.8 / count
        positions = range(len(panel.labels))
        tops = [0.0] * len(panel.labels)
        for index, (label, values) in enumerate(panel.series.items()):
            offsets = [p - 0.4 + width * (index + 0.5) for p in positions]
            clean = [0.0 if v is None or math.isnan(v) else v for v in values]
            tops = [max(t, v) for t, v in zip(tops, clean, strict=False)]
            ax.bar(offsets, clean, width, label=label)
        if panel.target is not None:
            ax.axhline(panel.target, linestyle="--", color="grey", linewidth=1)
            tops = [max(t, panel.target) for t in tops]
        for position, note, top in zip(positions, panel.notes, tops, strict=False):
            if note:
                ax.annotate(
                    note,
                    (position, top),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
        if not panel.log and tops:
            ax.set_ylim(0, max(tops) * 1.18 or 1)
        ax.set_xticks(list(positions), panel.labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(panel.ylabel)
        ax.set_title(panel.title, fontsize=10)
        if panel.log:
            ax.set_yscale("log")
        if len(panel.series) > 1:
            ax.legend(fontsize=8, loc="upper left", framealpha=0.7)
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot: {path}")
    return path
