"""Aggregation in the worker, per flush interval and per series (kind, name, attributes).

``count`` sums (an OTLP delta sum), ``gauge`` keeps the last value (an OTLP gauge), ``distribution`` keeps
count, sum, min, max and an OTLP exponential histogram (``ExpHistogram``). The caller only appends; the
worker folds what it takes from the aggregate buffer here and, at the end of each interval, turns every
series into one record of the wire format (see ``core/contract.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from telemetry_shunt.core.contract import METRIC_KINDS

# Kinds, as the wire format spells them (compared by identity in the hot loop).
SUM, GAUGE, HISTOGRAM = METRIC_KINDS

# Exponential histograms: values are bucketed at this scale (base 2**(2**-SCALE), about 2.2 % relative
# error) while an interval runs; when a histogram is written its scale is lowered until its buckets span
# at most MAX_BUCKETS (OTel SDK's default maximum size), as the OTLP data model allows.
SCALE = 5
MAX_BUCKETS = 160


def bucket_index(value: float, scale: int) -> int:
    """The OTLP exponential-histogram bucket of ``value`` > 0 at ``scale``: bucket ``i`` holds the values in
    ``(base**i, base**(i+1)]``, ``base = 2**(2**-scale)`` (upper-inclusive, as the OTLP data model says)."""
    mantissa, exponent = math.frexp(value)  # value = mantissa * 2**exponent, 0.5 <= mantissa < 1
    if mantissa == 0.5:  # an exact power of two, 2**(exponent-1): the upper bound of the bucket below it
        return ((exponent - 1) << scale) - 1 if scale >= 0 else ((exponent - 1 - 1) >> -scale)
    if scale <= 0:
        return (exponent - 1) >> -scale
    return math.ceil(math.log2(value) * (1 << scale)) - 1


class ExpHistogram:
    """An OTLP exponential histogram with count, sum, min and max; mergeable (and merge is associative:
    both sides are brought to the lower scale, where a bucket index is ``index >> (scale difference)``)."""

    __slots__ = ("count", "sum", "min", "max", "zero_count", "scale", "positive", "negative")

    def __init__(self, scale: int = SCALE) -> None:
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.zero_count = 0
        self.scale = scale
        self.positive: dict[int, int] = {}
        self.negative: dict[int, int] = {}

    def record(self, value: float) -> None:
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if value > 0:
            buckets, magnitude = self.positive, value
        elif value < 0:
            buckets, magnitude = self.negative, -value
        else:
            self.zero_count += 1
            return
        i = bucket_index(magnitude, self.scale)
        buckets[i] = buckets.get(i, 0) + 1

    def downscaled(self, scale: int) -> ExpHistogram:
        """A copy at a lower (coarser) ``scale``."""
        if scale > self.scale:
            raise ValueError(f"can only lower the scale ({self.scale}), not raise it to {scale}")
        shift = self.scale - scale
        copy = ExpHistogram(scale)
        copy.count, copy.sum, copy.min, copy.max, copy.zero_count = self.count, self.sum, self.min, self.max, self.zero_count
        for source, target in ((self.positive, copy.positive), (self.negative, copy.negative)):
            for i, n in source.items():
                j = i >> shift
                target[j] = target.get(j, 0) + n
        return copy

    def merged(self, other: ExpHistogram) -> ExpHistogram:
        scale = min(self.scale, other.scale)
        a, b = self.downscaled(scale), other.downscaled(scale)
        a.count += b.count
        a.sum += b.sum
        a.min = min(a.min, b.min)
        a.max = max(a.max, b.max)
        a.zero_count += b.zero_count
        for source, target in ((b.positive, a.positive), (b.negative, a.negative)):
            for i, n in source.items():
                target[i] = target.get(i, 0) + n
        return a

    def fitted(self, max_buckets: int = MAX_BUCKETS) -> ExpHistogram:
        """This histogram at the highest scale where each side spans at most ``max_buckets`` buckets."""
        scale = self.scale
        while scale > -10 and any(b and (max(b) >> (self.scale - scale)) - (min(b) >> (self.scale - scale)) >= max_buckets
                                  for b in (self.positive, self.negative)):
            scale -= 1
        return self.downscaled(scale) if scale != self.scale else self

    def wire(self) -> dict[str, Any]:
        """The histogram's fields in the wire format (dense buckets from ``offset``)."""
        fitted = self.fitted()
        out: dict[str, Any] = {"count": fitted.count, "sum": fitted.sum, "min": fitted.min, "max": fitted.max,
                               "scale": fitted.scale, "zero_count": fitted.zero_count}
        for side, buckets in (("positive", fitted.positive), ("negative", fitted.negative)):
            if buckets:
                low, high = min(buckets), max(buckets)
                out[side] = {"offset": low, "bucket_counts": [buckets.get(i, 0) for i in range(low, high + 1)]}
            else:
                out[side] = {"offset": 0, "bucket_counts": []}
        return out


def reference_bucket_bounds(index: int, scale: int) -> tuple[float, float]:
    """(lower, upper] of bucket ``index`` at ``scale``, straight from the definition (for tests)."""
    base = 2.0 ** (2.0 ** -scale)
    return base**index, base ** (index + 1)


def merge_all(histograms: Iterable[ExpHistogram]) -> ExpHistogram:
    result = ExpHistogram()
    for histogram in histograms:
        result = result.merged(histogram)
    return result


_NO_ATTRIBUTES: frozenset = frozenset()


def series_key(kind: str, name: str, attributes: dict[str, Any]) -> tuple:
    """The series of a record: kind, name and the attributes in any order (values as given; an unhashable
    value by its text)."""
    if not attributes:
        return kind, name, _NO_ATTRIBUTES
    try:
        return kind, name, frozenset(attributes.items())
    except TypeError:
        return kind, name, frozenset((k, v if v.__class__ is str else _text(v)) for k, v in attributes.items())


def fold(items: Iterable[tuple[str, Any, Any, dict[str, Any]]], series: dict[tuple, Any],
         max_series: int) -> tuple[int, int]:
    """Fold ``(kind, name, value, attributes)`` items into ``series`` (key -> state); ``(invalid, rejected)``.

    A value that is not a finite number (or a negative ``count``), or a name that is not a non-empty string,
    is ``invalid``; a new series when ``max_series`` are live is ``rejected`` (the cardinality guard).
    State: ``[sum, n]`` for sums, ``[last, n]`` for gauges, an ``ExpHistogram`` for histograms.
    """
    invalid = rejected = 0
    get = series.get
    for kind, name, value, attributes in items:
        if value.__class__ is not float:
            try:
                value = float(value)
            except (TypeError, ValueError, OverflowError):
                invalid += 1
                continue
        if value - value != 0.0:  # inf or nan
            invalid += 1
            continue
        if attributes:
            try:
                key = (kind, name, frozenset(attributes.items()))
            except TypeError:
                key = series_key(kind, name, attributes)
        else:
            key = (kind, name, _NO_ATTRIBUTES)
        state = get(key)
        if kind is SUM and value < 0:
            invalid += 1
            continue
        if state is None:  # a new series: a real name, and room under the cardinality guard
            if name.__class__ is not str or not name:
                invalid += 1
                continue
            if len(series) >= max_series:
                rejected += 1
                continue
            if kind is SUM or kind is GAUGE:
                series[key] = [value, 1]
                continue
            state = series[key] = ExpHistogram()
        if kind is SUM:
            state[0] += value
            state[1] += 1
        elif kind is GAUGE:
            state[0] = value
            state[1] += 1
        else:
            state.record(value)
    return invalid, rejected


def folded_records(state: Any) -> int:
    """How many records a series' state holds."""
    return state.count if isinstance(state, ExpHistogram) else state[1]


def _text(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"
