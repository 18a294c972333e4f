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
from itertools import islice, repeat
from operator import mul, sub
from typing import Any

from telemetry_shunt.client._records import KIND_OF_NAME_KEY, VALUE, aggregate_record
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


try:  # the bulk folding below in C, when the client's accelerator was built (see hatch_build.py)
    from telemetry_shunt.client._speedups import bucket_counts as _bucket_counts
    from telemetry_shunt.client._speedups import fold_values as _fold_values
    from telemetry_shunt.client._speedups import sum_values as _sum_values
except ImportError:
    _bucket_counts = _fold_values = _sum_values = None


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
        if _fold_values is not None and 0 < self.scale <= 20 and _LOG2_EXACT:  # the same in C, one pass
            folded = _fold_values(values, self.scale, self.sum, self.positive, self.negative)
            if folded is None:
                return False
            n, self.sum, low, high, zeros = folded
            self.count += n
            self.zero_count += zeros
            if low < self.min:
                self.min = low
            if high > self.max:
                self.max = high
            return True
        return self._record_all_py(values)

    def _record_all_py(self, values: list) -> bool:
        """``record_all`` in Python: the reference of ``_speedups.fold_values``, and its path without it."""
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
            if _bucket_counts is not None and scale <= 20:  # the same formula in C (_speedups.c)
                _bucket_counts(magnitudes, scale, buckets)
                return
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
                # Dense from the first bucket; the runs of empty buckets between two written at once.
                indexes = sorted(buckets)
                first = following = indexes[0]
                parts = []
                for i in indexes:
                    if i != following:
                        parts.append("0," * (i - following))
                    parts.append(f"{buckets[i]},")
                    following = i + 1
                sides.append(f'{{"offset":{first},"bucket_counts":[{"".join(parts)[:-1]}]}}')
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


def _as_tuple(record: dict, value: Any) -> tuple[str, Any, Any, dict[str, Any]]:
    """``(kind, name, value, attributes)`` (``fold_each``'s items) of a record ``group_records`` stopped at
    with its key or None: its last entry besides the value is its name, under the client's name key (which
    ``group_records`` checked by identity), and the entries before it are its attributes."""
    entries = [(k, v) for k, v in record.items() if k is not VALUE]
    (name_key, name), attributes = entries[-1], dict(entries[:-1])
    return KIND_OF_NAME_KEY[name_key], name, value, attributes


# The client's own name keys (group_records checks each record's by identity: see _records).
_NAME_KEYS = tuple(KIND_OF_NAME_KEY)

# An alias for a series the cardinality guard rejected this interval (series only grow within one).
REJECTED = object()


def _group_records_py(items: list, groups: dict[tuple, list], start: int, value_key: Any,
                      name_keys: tuple) -> tuple[int, Any, Any]:
    """From ``items[start]`` on, append each record's value (``record[value_key]``) to its group (the key: its
    other names, then their values, in the caller's order) and set ``items[i]`` to None, while that group
    exists; ``(len(items), None, None)`` when every record joined its group, else the index of the first
    that did not, its key (None: it cannot be hashed) and its value (the record may have lost it); or
    False and None where the ``value_key`` object itself is not in the record, or the last other entry's key
    is not one of the ``name_keys`` objects (an attribute of that name passed with ``**`` kept its own key
    object, an equal string: the caller drops the record).

    The reference of ``_speedups.group_records`` (the same loop in C, used when it was built: see
    hatch_build.py), and the fallback where it was not."""
    get = groups.get
    for i in range(start, len(items)):
        record = items[i]
        if not any(k is value_key for k in record.keys()):  # (the client's own key objects: see _records)
            return i, False, None
        value = record.pop(value_key)
        key = (*record, *record.values())
        if not key or not any(key[len(key) // 2 - 1] is k for k in name_keys):
            return i, False, None
        try:
            group = get(key)
        except TypeError:  # an unhashable attribute value
            return i, None, value
        if group is None:
            return i, key, value
        group.append(value)
        items[i] = None
    return len(items), None, None


try:
    from telemetry_shunt.client._speedups import group_records as _group_records
except ImportError:  # not built (no C compiler where the wheel was built): the same loop in Python
    _group_records = _group_records_py
# Whether the worker's per-record loop runs in C (the aggregation bench prints it; the suite checks it here).
ACCELERATED = _group_records is not _group_records_py


class Aggregator:
    """One flush interval's aggregation, in the worker: ``add`` takes drained chunks of records (the
    caller's kwargs dicts: see ``_records``), ``take`` ends the interval and returns its series
    (``series_key`` -> state: ``[sum, n]``, ``[last, n]`` or an ``ExpHistogram``).

    The same result as ``fold_each`` over the interval's stream (its reference meaning), done in bulk. Each
    record costs taking its value out, one key built from the dict in the caller's attribute order
    (``(*names, name key, *values, name)``), one dict lookup and one list append: its value joins its group
    and the record is freed. The groups are folded into the series (``sum``/``min``/``max``/bucketing in C,
    the per-series work once per series) by ``flush``, which the owner calls (the worker: a slice of groups
    at a time once ``max_pending`` records wait, and at the interval's end), and by ``add`` all at once past
    twice ``max_pending`` (the memory bound), so a series seen a few times a chunk still folds in bulk.
    ``canonical`` maps those keys to their series key and ``aliases`` to their state for the interval, so the
    order-free key is built once per key and interval, not per record.

    Order matters in two places, and there the pending groups are folded first and the record goes
    through ``fold_each`` (exact, and rare): a second attribute order of a series already pending (a gauge's
    last value follows the stream), and a new series while the cardinality guard could fill (the first new
    series in the stream are admitted). A record whose attributes or name cannot be hashed goes the same way.
    """

    __slots__ = ("max_series", "max_pending", "series", "aliases", "canonical", "groups", "pending",
                 "pending_series", "pending_new", "group_records")

    def __init__(self, max_series: int, max_pending: int = 100_000, series: dict | None = None,
                 canonical: dict | None = None, group_records: Any = None) -> None:
        self.max_series = max_series
        # The per-record loop: the C accelerator when built (tests give either, to hold them to each other).
        self.group_records = _group_records if group_records is None else group_records
        self.max_pending = max_pending
        self.series: dict[tuple, Any] = {} if series is None else series
        self.aliases: dict[tuple, Any] = {}  # bulk key -> its series' state (or REJECTED), this interval
        # Bulk key -> series key: a pure function of the key, so the owner may share it between intervals
        # (the worker does, bounded: see the client's _new_aggregator).
        self.canonical: dict[tuple, tuple] = {} if canonical is None else canonical
        self.groups: dict[tuple, list] = {}  # bulk key -> values waiting to be folded, in stream order
        # Records added since the last flush (their values wait in groups); an upper bound: a flush in the
        # middle of a chunk (an edge) is followed by the whole chunk's count.
        self.pending = 0
        self.pending_series: dict[tuple, tuple] = {}  # series key -> the bulk key of its pending group
        self.pending_new = 0  # pending groups that may open a series (see _may_open)

    def add(self, items: list[dict]) -> tuple[int, int]:
        """Fold a chunk of records in (``items`` is consumed: a record that joined a group is replaced by None);
        ``(invalid, rejected)`` among the records decided now (the rest when their groups are folded: see
        ``flush``)."""
        invalid = rejected = 0
        n, i = len(items), 0
        while True:
            # Each record whose group exists joins it and is freed (in C when built); the loop stops at one
            # whose group does not exist.
            i, key, value = self.group_records(items, self.groups, i, VALUE, _NAME_KEYS)
            if i >= n:
                break
            record = items[i]
            i += 1
            if key is False:  # a field's name taken by an attribute (passed with **: see _records): dropped
                invalid += 1
                continue
            if key is not None and self._opens(key):  # (key None: an unhashable name or attribute value,
                self.groups[key] = [value]              # which fold_each keys by its text)
                continue
            # An edge (see the class): what is pending first, then this record.
            folded_invalid, folded_rejected = self.flush()
            if key is not None and self._rejects(key):
                self.groups[key] = [value]
            else:
                each_invalid, each_rejected = fold_each((_as_tuple(record, value),), self.series, self.max_series)
                folded_invalid += each_invalid
                folded_rejected += each_rejected
            invalid += folded_invalid
            rejected += folded_rejected
        self.pending += len(items)
        if self.pending >= 2 * self.max_pending:  # the worker flushes a slice at a time past max_pending
            folded_invalid, folded_rejected = self.flush()
            invalid += folded_invalid
            rejected += folded_rejected
        return invalid, rejected

    def _opens(self, key: tuple) -> bool:
        """Whether a new group for ``key`` keeps the fold exact (see the class); records its series."""
        canonical = self.canonical.get(key)
        if canonical is None:
            canonical = self.canonical[key] = _canonical(key)
        if canonical in self.pending_series:  # another attribute order of a series already pending
            return False
        if self._may_open(key, canonical):
            if len(self.series) + self.pending_new >= self.max_series:  # the guard could fill
                return False
            self.pending_new += 1
        self.pending_series[canonical] = key
        return True

    def _may_open(self, key: tuple, canonical: tuple) -> bool:
        """Whether ``key``'s group may open a series (neither known for this interval nor live): what
        ``pending_new`` counts, so opening and folding a group must ask the same question."""
        return self.aliases.get(key) is None and canonical not in self.series

    def series_bound(self) -> int:
        """At most how many series this interval holds once its pending groups are folded."""
        return len(self.series) + self.pending_new

    def _rejects(self, key: tuple) -> bool:
        """After a flush: whether ``key`` is a new series the full guard rejects (its records are then only
        counted, in any order: series only grow within an interval); records it so."""
        if self.aliases.get(key) is REJECTED:
            return True
        canonical = self.canonical[key]
        name = canonical[1]
        if len(self.series) < self.max_series or name.__class__ is not str or not name or canonical in self.series:
            return False
        self.aliases[key] = REJECTED
        return True

    def flush(self, limit: int | None = None) -> tuple[int, int]:
        """Fold the pending groups into the series (at most ``limit`` groups, the oldest: the rest stay
        pending, and the result is the same); ``(invalid, rejected)`` among their records."""
        series, aliases, canonicals = self.series, self.aliases, self.canonical
        if limit is None or len(self.groups) <= limit:
            groups = self.groups
            self.groups, self.pending, self.pending_series, self.pending_new = {}, 0, {}, 0
        else:  # the oldest groups: each is another series, and room for the new ones was kept (_opens)
            groups = dict(islice(self.groups.items(), limit))
            pending_series = self.pending_series
            for key, values in groups.items():
                del self.groups[key]
                if pending_series.get(canonicals[key]) is key:  # (a rejected series' group is not there)
                    del pending_series[canonicals[key]]
                self.pending -= len(values)
                if self._may_open(key, canonicals[key]):
                    self.pending_new -= 1
        invalid = rejected = 0
        alias = aliases.get
        for key, values in groups.items():
            canonical = canonicals[key]
            kind = canonical[0]
            state = alias(key)
            if state is None:
                state = series.get(canonical)
                if state is not None:  # another attribute order of a live series
                    aliases[key] = state
            if state is None:  # a new series (there is room for it: see _opens)
                name = canonical[1]
                state = _new_state(kind, values) if name.__class__ is str and name else None
                if state is not None:
                    series[canonical] = aliases[key] = state
                    continue
            elif state is REJECTED:
                folded_invalid, _ = fold_each([(kind, canonical[1], v, None) for v in values], {}, 0)
                invalid += folded_invalid
                rejected += len(values) - folded_invalid
                continue
            elif _fold_group(kind, state, values):
                continue
            # A value that is not a finite number, a negative count, a bad name: one record at a time (the
            # group's records are in stream order, and no other pending group reaches its series).
            attributes = dict(canonical[2])
            folded_invalid, folded_rejected = fold_each([(kind, canonical[1], v, attributes) for v in values],
                                                        series, self.max_series)
            invalid += folded_invalid
            rejected += folded_rejected
            state = series.get(canonical)
            if state is not None:
                aliases[key] = state
        return invalid, rejected

    def take(self) -> tuple[dict[tuple, Any], int, int]:
        """End the interval: ``(series, invalid, rejected)``, and start the next one empty."""
        invalid, rejected = self.flush()
        series = self.series
        self.series, self.aliases = {}, {}
        return series, invalid, rejected

    def clear(self) -> None:
        """Forget the interval, pending groups included (the kill switch, a stop)."""
        self.series, self.aliases = {}, {}
        self.groups, self.pending, self.pending_series, self.pending_new = {}, 0, {}, 0


def fold(items: Iterable[tuple[str, Any, Any, dict[str, Any]]], series: dict[tuple, Any],
         max_series: int) -> tuple[int, int]:
    """Fold ``(kind, name, value, attributes)`` items into ``series`` as one interval's ``Aggregator`` does;
    ``(invalid, rejected)``."""
    aggregator = Aggregator(max_series, series=series)
    invalid, rejected = aggregator.add([aggregate_record(*item) for item in items])
    more_invalid, more_rejected = aggregator.flush()
    return invalid + more_invalid, rejected + more_rejected


def _canonical(key: tuple) -> tuple:
    """The series key (``series_key``'s form) of a bulk key ``(*names, name key, *values, name)``."""
    half = len(key) // 2
    kind, name = KIND_OF_NAME_KEY[key[half - 1]], key[-1]
    if half == 1:
        return kind, name, _NO_ATTRIBUTES
    return kind, name, frozenset(zip(key[: half - 1], key[half:-1], strict=True))


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
    if kind is SUM:
        total = sum_of(values, state[0], True)
        if total is None:
            return False
        state[0] = total
    else:  # a gauge: its last value, once every value is a finite number
        if sum_of(values, 0.0, False) is None:
            return False
        try:
            state[0] = float(values[-1])
        except (TypeError, ValueError, OverflowError):
            return False
    state[1] += len(values)
    return True


def sum_of(values: list, start: float, nonnegative: bool) -> float | None:
    """``sum(values, start)`` as a float, when every value is a number (>= 0 if ``nonnegative``) and the total
    is finite; else None (the values then go one by one through ``fold_each``). The C accelerator's
    ``sum_values`` answers the common case (floats and ints) in one pass; where it cannot (another kind of
    number, or a value this refuses too), this decides. None for no values (a group never has none)."""
    if not values:
        return None
    if _sum_values is not None:
        total = _sum_values(values, start, nonnegative)
        if total is not None:
            return total
    try:
        total = float(sum(values, start))
        if total - total != 0.0 or (nonnegative and min(values) < 0):
            return None
    except (TypeError, ValueError, OverflowError):
        return None
    return total


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
