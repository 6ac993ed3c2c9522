"""Quantiles over a sliding time window, in bounded memory: the data behind a summary series.

Go Pitaya's summaries (Go's client) export the quantiles 0.7, 0.95 and 0.99 of the last 10
minutes, kept in 5 age buckets. A :class:`SummarySeries` keeps the same window the same way:
a ring of 5 *slices* of 2 minutes each; an observation goes into the current slice, a slice
older than the window is dropped whole, and quantiles are read from the live slices, so they
cover between 8 and 10 minutes of observations (as Go's do).

Each slice is a log-scale histogram (the DDSketch idea): a value ``x > 0`` is counted in bin
``i = ceil(log(x) / log(g))``, which holds the values in ``(g**(i-1), g**i]``, with
``g = (1 + a) / (1 - a)``. Reading a bin back as ``2 * g**i / (g + 1)`` is off by at most a
fraction ``a`` of any value in it, whence the guarantee, on any data:

    the value read for quantile ``q`` is within ``a`` (relative) of the observation of rank
    ``floor(q * (n - 1))`` (0-based) among the ``n`` observations of the window.

Negative values are binned by their magnitude in bins below every positive one, zero (and
values smaller than the smallest normal float) in a bin of its own. With ``a = 1%`` a decade
takes 116 bins, and a slice holds at most :data:`MAX_BINS` bins (9 decades): past that, its
lowest bins are merged into one, and its top 768 (6.6 decades) are kept apart. A quantile whose
observation lies in a bin kept apart keeps the guarantee (the high ones a summary reports, on
latencies, always do); one below reads as the merged bin. The memory of a series is thus
bounded whatever the rate: at most ``MAX_BINS`` counters per slice, plus the merge of the past
slices that reading keeps (at most ``age_buckets - 1`` slices' worth): about 0.6 MB in the
worst case (values over 9 decades in every slice), 50-150 KB for a busy latency series (a few
hundred bins a slice), next to nothing for a quiet one.

Cost: :meth:`SummarySeries.observe` is O(1) (a clock read, a log, one dict update; a slice
turn every 2 minutes); the lowest-bins merge is amortised over a quarter of MAX_BINS new
bins. Reading the quantiles (at scrape time) sorts the bins of the current slice and of the
kept merge of the past ones: O(b log b) for b live bins, about 30-50 us for a latency series
with a full window (300 bins), nothing for a series unchanged since the last read.

    >>> clock = [0.0]
    >>> series = SummarySeries(Layout(), clock=lambda: clock[0])
    >>> for x in range(1, 101):
    ...     series.observe(float(x))
    >>> [round(v) for v in series.quantiles()]  # ranks 69, 94 and 98 of 1..100, within 1%
    [70, 95, 99]
    >>> clock[0] = 601.0  # 10 minutes later: all aged out, the totals stay
    >>> series.quantiles(), series.count, series.sum
    ([nan, nan, nan], 100, 5050.0)
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence

OBJECTIVES: tuple[float, ...] = (0.7, 0.95, 0.99)
"""The quantiles Go Pitaya's summaries export (with rank errors 0.02, 0.005, 0.001 there)."""
MAX_AGE = 600.0
"""Seconds of observations the quantiles cover (Go client's ``DefMaxAge``, 10 minutes)."""
AGE_BUCKETS = 5
"""Slices the window turns in (Go client's ``DefAgeBuckets``)."""
RELATIVE_ERROR = 0.01
"""The guarantee ``a`` above: every quantile read is within 1% of an exact one."""
MAX_BINS = 1024
"""Bins a slice holds before its lowest are merged: a span of 9 decades at ``a = 1%``."""

_TINY = sys.float_info.min
_HUGE = sys.float_info.max
Clock = Callable[[], float]


class Layout:
    """What the series of one summary share: its quantiles, window and bin geometry."""

    __slots__ = (
        "age_buckets",
        "gamma",
        "inf_key",
        "max_bins",
        "negative_base",
        "objectives",
        "scale",
        "slice_seconds",
        "zero_key",
    )

    def __init__(
        self,
        objectives: Sequence[float] = OBJECTIVES,
        max_age: float = MAX_AGE,
        age_buckets: int = AGE_BUCKETS,
        relative_error: float = RELATIVE_ERROR,
        max_bins: int = MAX_BINS,
    ) -> None:
        if not all(0.0 <= q <= 1.0 for q in objectives):
            raise ValueError(f"quantiles must be within [0, 1], not {list(objectives)}")
        if not 0.0 < relative_error < 1.0 or max_age <= 0 or age_buckets < 1 or max_bins < 4:
            raise ValueError("bad summary window or precision")
        self.objectives = tuple(sorted(objectives))
        self.slice_seconds = max_age / age_buckets
        self.age_buckets = age_buckets
        self.max_bins = max_bins
        self.gamma = (1.0 + relative_error) / (1.0 - relative_error)
        self.scale = 1.0 / math.log(self.gamma)
        # The keys of positive values lie within +-inf_key (infinity's is the top one), those
        # of negative values below negative_base (larger magnitudes lower), zero's between:
        # sorting keys sorts values, so one dict per slice serves both signs.
        self.inf_key = math.ceil(math.log(_HUGE) * self.scale) + 1
        self.negative_base = -4 * self.inf_key
        self.zero_key = -2 * self.inf_key

    def key(self, value: float) -> int | None:
        """The bin of ``value``; None for NaN (counted in the totals, not in the quantiles)."""
        if _TINY <= value <= _HUGE:
            return math.ceil(math.log(value) * self.scale)
        if -_HUGE <= value <= -_TINY:
            return self.negative_base - math.ceil(math.log(-value) * self.scale)
        if value != value:
            return None
        if value == math.inf:
            return self.inf_key
        if value == -math.inf:
            return self.negative_base - self.inf_key
        return self.zero_key  # zero, and the subnormal floats

    def value(self, key: int) -> float:
        """The value a bin reads as: within the relative error of every value in it."""
        if key > self.zero_key:
            return self._magnitude(key)
        if key == self.zero_key:
            return 0.0
        return -self._magnitude(self.negative_base - key)

    def _magnitude(self, key: int) -> float:
        if key >= self.inf_key:
            return math.inf
        try:
            return 2.0 / (self.gamma + 1.0) * math.exp(key / self.scale)
        except OverflowError:  # the top bin: its middle is past the largest float
            return _HUGE


class SummarySeries:
    """One summary series: ``count`` and ``sum`` since it began, quantiles over the window.

    Not thread-safe, like the rest of the reporter: it is observed and read on the event loop.
    """

    __slots__ = (
        "_bins",
        "_clock",
        "_epoch",
        "_epochs",
        "_head",
        "_layout",
        "_read",
        "_scale",
        "_sealed",
        "_sealed_key",
        "_slice_end",
        "_slices",
        "_values",
        "count",
        "sum",
    )

    def __init__(self, layout: Layout, clock: Clock = time.monotonic) -> None:
        self.count = 0
        self.sum = 0.0
        self._layout = layout
        self._scale = layout.scale
        self._clock = clock
        epoch = self._epoch_at(clock())
        buckets = layout.age_buckets
        self._slices: list[dict[int, int]] = [{} for _ in range(buckets)]
        self._epochs = [epoch - buckets] * buckets  # all dead but the head
        self._head = 0
        self._epochs[0] = self._epoch = epoch
        self._bins = self._slices[0]
        self._slice_end = (epoch + 1) * layout.slice_seconds
        self._sealed: dict[int, int] = {}
        self._sealed_key = (epoch, epoch)
        self._read = (epoch, epoch, -1)
        """What the last read saw (oldest live epoch, current epoch, count), and its values."""
        self._values: list[float] = []

    @property
    def held(self) -> int:
        """The bins held now, the memory of the series: at most
        ``(2 * age_buckets - 1) * max_bins`` whatever was observed."""
        return sum(map(len, self._slices)) + len(self._sealed)

    def observe(self, value: float) -> None:
        """Count ``value``: O(1), the hot path of every handler's answer."""
        self.count += 1
        self.sum += value
        if self._clock() >= self._slice_end:
            self._turn()
        if _TINY <= value <= _HUGE:
            key = math.ceil(math.log(value) * self._scale)
        else:
            odd = self._layout.key(value)
            if odd is None:
                return
            key = odd
        bins = self._bins
        n = bins.get(key)
        if n is not None:
            bins[key] = n + 1
            return
        bins[key] = 1
        if len(bins) > self._layout.max_bins:
            _merge_lowest(bins, self._layout.max_bins * 3 // 4)

    report = observe
    """The series protocol of :mod:`actors.metrics.families`."""

    def quantiles(self) -> list[float]:
        """The objectives' values over the window, in order (NaN each when it is empty)."""
        layout = self._layout
        oldest = self._epoch_at(self._clock()) - layout.age_buckets
        read = (oldest, self._epoch, self.count)
        if read == self._read:  # nothing observed, nothing aged out: a quiet series is free
            return list(self._values)
        sealed = self._sealed_at(oldest)
        current = self._bins if self._epoch > oldest else {}
        total = sum(sealed.values()) + sum(current.values())
        values: list[float] = []
        if total:
            # Walked down from the top bin (the quantiles a summary reports are high ones),
            # the two dicts read side by side rather than merged: a scrape costs less.
            in_sealed, in_current = sealed.get, current.get
            walk = iter(sorted(sealed.keys() | current.keys(), reverse=True))
            key = next(walk)
            below = total - in_sealed(key, 0) - in_current(key, 0)  # observations under key
            for q in reversed(layout.objectives):
                rank = int(q * (total - 1))  # 0-based, from the bottom
                while below > rank:
                    key = next(walk)
                    below -= in_sealed(key, 0) + in_current(key, 0)
                values.append(layout.value(key))
            values.reverse()
        else:
            values = [math.nan] * len(layout.objectives)
        self._read, self._values = read, values
        return list(values)

    def _sealed_at(self, oldest: int) -> dict[int, int]:
        """The live slices but the current one, merged: they no longer change, so the merge is
        kept until a slice turns or one ages out (a scrape merges one slice, not five)."""
        key = (oldest, self._epoch)
        if key != self._sealed_key:
            self._sealed = _merged(
                [
                    slice_
                    for epoch, slice_ in zip(self._epochs, self._slices, strict=True)
                    if oldest < epoch < self._epoch
                ]
            )
            self._sealed_key = key
        return self._sealed

    def _epoch_at(self, now: float) -> int:
        return math.floor(now / self._layout.slice_seconds)

    def _turn(self) -> None:
        """Start the slice of now, dropping the ones it outlives."""
        layout = self._layout
        epoch = self._epoch_at(self._clock())
        slices, epochs, head = self._slices, self._epochs, self._head
        for _ in range(min(epoch - self._epoch, layout.age_buckets)):
            head = (head + 1) % layout.age_buckets
            slices[head] = {}
            epochs[head] = epoch
        self._head = head
        self._epoch = epoch
        self._bins = slices[head]
        self._slice_end = (epoch + 1) * layout.slice_seconds


def _merged(slices: list[dict[int, int]]) -> dict[int, int]:
    """The bins of ``slices`` added up."""
    if not slices:
        return {}
    merged = dict(slices[0])
    for slice_ in slices[1:]:
        for key, n in slice_.items():
            merged[key] = merged.get(key, 0) + n
    return merged


def _merge_lowest(bins: dict[int, int], keep: int) -> None:
    """Merge the lowest bins of ``bins`` into the lowest of the ``keep`` highest."""
    keys = sorted(bins)
    floor = keys[-keep]
    merged = sum(bins.pop(key) for key in keys[:-keep])
    bins[floor] += merged
