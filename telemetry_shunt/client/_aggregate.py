"""Aggregation in the worker, per flush interval and per series (kind, name, attributes).

``count`` sums (an OTLP delta sum), ``gauge`` keeps the last value (an OTLP gauge), ``distribution`` keeps
count, sum, min, max and an OTLP exponential histogram (``ExpHistogram``). The caller only appends; the
worker folds what it takes from the aggregate buffer here and, at the end of each interval, turns every
series into one record of the wire format (see ``core/contract.py``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from itertools import repeat
from operator import mul, sub
from typing import Any

from telemetry_shunt.core.contract import METRIC_KINDS

# Kinds, as the wire format spells them (compared by identity in the hot loop).
SUM, GAUGE, HISTOGRAM = METRIC_KINDS

# Exponential histograms: values are bucketed at this scale (base 2**(2**-SCALE), about 2.2 % relative
# error) while an interval runs; when a histogram is written its scale is lowered until its buckets span
# at most MAX_BUCKETS (OTel SDK's default maximum size), as the OTLP data model allows.
SCALE = 5
MAX_BUCKETS = 160


# The bulk path buckets a run of positive values at a positive scale as ceil(log2(v) * 2**scale) - 1, in C
# (map), which is bucket_index's own formula; an exact power of two takes bucket_index's exact branch, so the
# bulk path is used only where log2 is exact on every power of two (checked here, once).
_LOG2_EXACT = all(math.log2(math.ldexp(1.0, e)) == e for e in range(-1074, 1024))


try:  # CPython's C loop behind Counter.update: mapping[x] = mapping.get(x, 0) + 1 for each x
    from collections import _count_elements as _count_into  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - another Python: the same loop in Python
    def _count_into(mapping: dict, iterable: Iterable) -> None:
        get = mapping.get
        for x in iterable:
            mapping[x] = get(x, 0) + 1


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

    def record_all(self, values: list) -> bool:
        """Record ``values`` (in order) as ``record`` would, in bulk; False (nothing changed) if one is not a
        finite number, or the sum overflows: the caller then records them one by one."""
        try:
            floats = list(map(float, values))
            total = sum(floats, self.sum)
        except (TypeError, ValueError, OverflowError):
            return False
        if total - total != 0.0 or not floats:  # a value is inf or nan (or the sum overflowed)
            return False
        low, high = min(floats), max(floats)
        self.count += len(floats)
        self.sum = total
        if low < self.min:
            self.min = low
        if high > self.max:
            self.max = high
        scale = self.scale
        if low > 0:
            self._bucket_all(self.positive, floats, scale)
            return True
        positive = [v for v in floats if v > 0]
        negative = [-v for v in floats if v < 0]
        self.zero_count += len(floats) - len(positive) - len(negative)
        self._bucket_all(self.positive, positive, scale)
        self._bucket_all(self.negative, negative, scale)
        return True

    @staticmethod
    def _bucket_all(buckets: dict[int, int], magnitudes: list[float], scale: int) -> None:
        if not magnitudes:
            return
        if scale > 0 and _LOG2_EXACT:
            _count_into(buckets, map(sub, map(math.ceil, map(mul, map(math.log2, magnitudes), repeat(1 << scale))),
                                     repeat(1)))
        else:
            for i, n in Counter(bucket_index(m, scale) for m in magnitudes).items():
                buckets[i] = buckets.get(i, 0) + n

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

    def wire_json(self) -> str:
        """``wire()`` as JSON object members (no braces), exactly as ``json`` writes them; written directly,
        about 3x faster. A non-finite sum, min or max (an overflowing sum) goes through ``json``, which refuses
        it as the wire format requires."""
        fitted = self.fitted()
        total, low, high = fitted.sum, fitted.min, fitted.max
        if (total - total) or (low - low) or (high - high):
            import json

            return json.dumps(self.wire(), separators=(",", ":"), allow_nan=False)[1:-1]
        sides = []
        for buckets in (fitted.positive, fitted.negative):
            if buckets:
                first = min(buckets)
                counts = map(buckets.get, range(first, max(buckets) + 1), repeat(0))
                sides.append(f'{{"offset":{first},"bucket_counts":[{",".join(map(str, counts))}]}}')
            else:
                sides.append('{"offset":0,"bucket_counts":[]}')
        return (f'"count":{fitted.count},"sum":{total!r},"min":{low!r},"max":{high!r},"scale":{fitted.scale},'
                f'"zero_count":{fitted.zero_count},"positive":{sides[0]},"negative":{sides[1]}')


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


# An alias for a series the cardinality guard rejected this interval (series only grow within one).
REJECTED = object()
_MULTI = object()  # aliases' entry for the ids of states reached by more than one key


def fold(items: list[tuple[str, Any, Any, dict[str, Any]]], series: dict[tuple, Any], max_series: int,
         aliases: dict[tuple, Any] | None = None) -> tuple[int, int]:
    """Fold a drained chunk of ``(kind, name, value, attributes)`` items into ``series``; ``(invalid, rejected)``.

    The same result as ``fold_each`` (one record at a time), done in bulk: the records are grouped by a key
    built once per record, ``(kind, name, *attribute names, *attribute values)`` in the caller's order, then each group is folded
    into its series at once (``sum``/``min``/``max`` in C; a value that is not a finite number, or a negative
    count, sends that group through ``fold_each``). ``aliases`` (kept by the caller for one interval, with
    ``series``) maps those keys to their series' state, so the per-series work (the canonical, order-free key,
    the name check, the cardinality guard) is done once per series and interval, not per record. A chunk
    whose order matters (two attribute orders of one series, or more new series than the guard has room
    for, where the first ones in the stream win) is folded by ``fold_each``.
    """
    if len(items) < 8 * len(series):
        # Records spread over many live series (fewer than eight a series per chunk): grouping costs more than
        # it saves (measured: about even at ten a group), so one at a time (the same result; aliases are found
        # again by later bulk chunks).
        return fold_each(items, series, max_series)
    if aliases is None:
        aliases = {}
    groups: dict[tuple, list] = {}
    get = groups.get
    try:
        for kind, name, value, attributes in items:
            key = (kind, name, *attributes, *attributes.values())
            values = get(key)
            if values is None:
                groups[key] = [value]
            else:
                values.append(value)
    except (TypeError, AttributeError):  # an unhashable name or attribute value
        return fold_each(items, series, max_series)
    alias = aliases.get
    multi = aliases.get(_MULTI)  # ids of states that more than one key (attribute order) reaches
    fresh: dict[tuple, tuple] = {}  # canonical key of a new series -> its group's key
    for key in [key for key in groups if alias(key) is None]:
        canonical = _canonical(key)
        state = series.get(canonical)
        if state is not None:  # another attribute order of a live series (or one fold_each opened)
            aliases[key] = state
            multi = aliases.setdefault(_MULTI, set())
            multi.add(id(state))
        elif canonical in fresh:  # two attribute orders of one new series: the stream order counts
            return _fold_in_order(items, groups, series, max_series, aliases)
        else:
            fresh[canonical] = key
    if len(series) + len(fresh) > max_series:  # the guard admits the first new series in stream order
        return _fold_in_order(items, groups, series, max_series, aliases)
    if multi:
        hits = [id(state) for state in map(alias, groups) if id(state) in multi]
        if len(hits) != len(set(hits)):  # two attribute orders of one series in this chunk
            return _fold_in_order(items, groups, series, max_series, aliases)
    invalid = rejected = 0
    for key, values in groups.items():
        state = alias(key)
        if state is None:  # a new series (there is room for every one: checked above)
            name = key[1]
            state = _new_state(key[0], values) if name.__class__ is str and name else None
            if state is not None:
                series[_canonical(key)] = aliases[key] = state
                continue
        elif state is REJECTED:
            folded_invalid, _ = fold_each([(key[0], key[1], v, None) for v in values], {}, 0)
            invalid += folded_invalid
            rejected += len(values) - folded_invalid
            continue
        elif key[0] is SUM:  # the common case inline: every value a number >= 0, the total finite
            try:
                total = sum(values, state[0])
                if total - total == 0.0 and min(values) >= 0:
                    state[0] = total if total.__class__ is float else float(total)
                    state[1] += len(values)
                    continue
            except (TypeError, ValueError, OverflowError):
                pass
        elif _fold_group(key[0], state, values):
            continue
        # A value that is not a finite number, a negative count, a bad name: one record at a time.
        attributes = dict(_pairs(key))
        folded_invalid, folded_rejected = fold_each([(key[0], key[1], v, attributes) for v in values],
                                                    series, max_series)
        invalid += folded_invalid
        rejected += folded_rejected
        if key not in aliases:
            state = series.get(_canonical(key))
            if state is not None:
                aliases[key] = state
    return invalid, rejected


def _pairs(key: tuple) -> zip:
    """The attribute pairs of a bulk key ``(kind, name, *names, *values)``."""
    half = (len(key) - 2) // 2
    return zip(key[2 : 2 + half], key[2 + half :], strict=True)


def _canonical(key: tuple) -> tuple:
    """The series key (``series_key``'s form) of a bulk key."""
    return (key[0], key[1], frozenset(_pairs(key)) if len(key) > 2 else _NO_ATTRIBUTES)


def _fold_in_order(items: list, groups: dict, series: dict, max_series: int, aliases: dict) -> tuple[int, int]:
    """``fold_each`` over the chunk, then the aliases of its groups (a series now live, or rejected)."""
    result = fold_each(items, series, max_series)
    full = len(series) >= max_series
    for key in groups:
        if key not in aliases:
            state = series.get(_canonical(key))
            name = key[1]
            if state is not None:
                aliases[key] = state
                aliases.setdefault(_MULTI, set()).add(id(state))
            elif full and name.__class__ is str and name:
                aliases[key] = REJECTED
    return result


def _new_state(kind: str, values: list) -> Any:
    """A new series' state from its first group of values, or None if a value needs ``fold_each``."""
    if kind is HISTOGRAM:
        histogram = ExpHistogram()
        return histogram if histogram.record_all(values) else None
    try:
        first = float(values[0])
    except (TypeError, ValueError, OverflowError):
        return None
    if first - first != 0.0 or (kind is SUM and first < 0):
        return None
    state = [first, 1]
    if len(values) > 1 and not _fold_group(kind, state, values[1:]):
        return None
    return state


def _fold_group(kind: str, state: Any, values: list) -> bool:
    """Fold one group's values into a live series' state at once; False (state unchanged) if a value needs
    ``fold_each``'s per-record checks."""
    if kind is HISTOGRAM:
        return state.record_all(values)
    try:
        total = float(sum(values, state[0])) if kind is SUM else float(sum(values, 0.0))
        if total - total != 0.0 or (kind is SUM and min(values) < 0):
            return False
        if kind is GAUGE:
            state[0] = float(values[-1])
        else:
            state[0] = total
    except (TypeError, ValueError, OverflowError):
        return False
    state[1] += len(values)
    return True


def fold_each(items: Iterable[tuple[str, Any, Any, dict[str, Any]]], series: dict[tuple, Any],
         max_series: int) -> tuple[int, int]:
    """Fold ``(kind, name, value, attributes)`` items into ``series`` (key -> state) one by one;
    ``(invalid, rejected)``. The reference meaning of ``fold``, and its path for the rare chunks it cannot do
    in bulk.

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
