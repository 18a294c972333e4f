"""count / gauge / distribution: aggregated in the worker per interval and series, checked against a
straightforward reference; the OTLP exponential histogram; the cardinality guard; retries."""

from __future__ import annotations

import collections
import math
import threading

import pytest
from client_fakes import balanced
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_shunt.client import _aggregate
from telemetry_shunt.client._aggregate import (
    GAUGE,
    HISTOGRAM,
    SUM,
    Aggregator,
    ExpHistogram,
    bucket_index,
    fold,
    fold_each,
    merge_all,
    reference_bucket_bounds,
)
from telemetry_shunt.client._records import aggregate_record

NAMES = ["a", "b"]
ATTRIBUTES = [{}, {"route": "/pay"}, {"route": "/pay", "code": "200"}, {"code": "200", "route": "/pay"}]
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
records = st.tuples(st.sampled_from([SUM, GAUGE, HISTOGRAM]), st.sampled_from(NAMES),
                    st.one_of(finite, st.sampled_from([0.0, 1.0, 2.0, 0.5, float("nan"), float("inf"), "x", -1.0])),
                    st.sampled_from(ATTRIBUTES))


def reference(stream):
    """The plain meaning: per (kind, name, attribute set), sums add, gauges keep the last, distributions
    keep every value; a non-finite value or a negative count is invalid."""
    out: dict = {}
    invalid = 0
    for kind, name, value, attributes in stream:
        try:
            value = float(value)
        except ValueError:
            invalid += 1
            continue
        if not math.isfinite(value) or (kind == SUM and value < 0):
            invalid += 1
            continue
        key = (kind, name, frozenset(attributes.items()))
        if kind == SUM:
            out[key] = out.get(key, 0.0) + value
        elif kind == GAUGE:
            out[key] = value
        else:
            out.setdefault(key, []).append(value)
    return out, invalid


def assert_matches(series, expected):
    assert set(series) == set(expected)
    for key, want in expected.items():
        got = series[key]
        if key[0] == SUM:
            assert got[0] == pytest.approx(want, rel=1e-9, abs=1e-6)
        elif key[0] == GAUGE:
            assert got[0] == want
        else:
            assert (got.count, got.min, got.max) == (len(want), min(want), max(want))
            assert got.sum == pytest.approx(math.fsum(want), rel=1e-9, abs=1e-6)
            assert got.zero_count + sum(got.positive.values()) + sum(got.negative.values()) == len(want)
            assert got.zero_count == want.count(0.0)


@settings(max_examples=100, deadline=None)
@given(st.lists(records, max_size=200))
def test_folding_matches_the_reference(stream):
    series: dict = {}
    invalid, rejected = fold(stream, series, max_series=10_000)
    expected, expected_invalid = reference(stream)
    assert (invalid, rejected) == (expected_invalid, 0)
    assert_matches(series, expected)
    # Attribute order does not make a new series.
    assert not any(key[2] != frozenset(dict(key[2]).items()) for key in series)


@settings(max_examples=50, deadline=None)
@given(st.lists(records, max_size=200), st.lists(st.integers(0, 200), max_size=5))
def test_intervals_merge_back_into_the_whole_stream(stream, cuts):
    # Cut the stream at random interval boundaries; merging the intervals (sums add, the last gauge wins,
    # histograms merge) gives what one interval over the whole stream gives.
    bounds = [0, *sorted(min(c, len(stream)) for c in cuts), len(stream)]
    intervals = []
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        series: dict = {}
        fold(stream[lo:hi], series, max_series=10_000)
        intervals.append(series)
    merged: dict = {}
    for series in intervals:
        for key, state in series.items():
            if key[0] == SUM:
                merged[key] = [merged.get(key, [0.0, 0])[0] + state[0], 0]
            elif key[0] == GAUGE:
                merged[key] = [state[0], 0]
            else:
                merged[key] = merged[key].merged(state) if key in merged else state
    whole: dict = {}
    fold(stream, whole, max_series=10_000)
    assert set(merged) == set(whole)
    for key, state in whole.items():
        if key[0] == HISTOGRAM:
            got = merged[key]
            assert (got.count, got.min, got.max, got.zero_count, got.positive, got.negative) == (
                state.count, state.min, state.max, state.zero_count, state.positive, state.negative)
        else:
            assert merged[key][0] == pytest.approx(state[0], rel=1e-9, abs=1e-6)


def state_shape(series):
    out = {}
    for key, state in series.items():
        if isinstance(state, ExpHistogram):
            out[key] = (state.count, state.min, state.max, state.zero_count, state.positive, state.negative,
                        pytest.approx(state.sum, rel=1e-9, abs=1e-6))
        else:
            out[key] = (pytest.approx(state[0], rel=1e-9, abs=1e-6), state[1])
    return out


# Attribute sets in both orders, an unhashable value, names that are not a name: every path of the bulk fold.
BULK_ATTRIBUTES = [*ATTRIBUTES, {"route": "/pay", "code": "500"}, {"code": "500", "route": "/pay"}, {"tags": ["a"]}]
bulk_records = st.tuples(st.sampled_from([SUM, GAUGE, HISTOGRAM]), st.sampled_from(["a", "b", "", None]),
                         st.one_of(finite, st.integers(-3, 3), st.sampled_from(
                             [0.0, -0.0, 1.0, 2.0, 0.5, 2.0**-1074, 2.0**1023, float("nan"), float("inf"),
                              -float("inf"), "x", "2", True, -1.0])),
                         st.sampled_from(BULK_ATTRIBUTES))


# The worker's per-record loop both ways: the C accelerator (built by `make install`) and its Python reference.
GROUP_RECORDS = [_aggregate._group_records, _aggregate._group_records_py]
GROUP_RECORDS_IDS = ["c" if _aggregate.ACCELERATED else "c-not-built", "python"]


def aggregate(aggregator, stream, cuts, slice_groups):
    """The stream through ``aggregator`` as the worker drives it: cut into chunks, a slice of the pending
    groups flushed after each chunk (``slice_groups``; None: none), then the interval taken;
    ``(series, invalid, rejected)``."""
    bounds = [0, *sorted(min(c, len(stream)) for c in cuts), len(stream)]
    counts = [0, 0]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        invalid, rejected = aggregator.add([aggregate_record(*item) for item in stream[lo:hi]])
        counts[0] += invalid
        counts[1] += rejected
        if slice_groups is not None:
            invalid, rejected = aggregator.flush(slice_groups)
            counts[0] += invalid
            counts[1] += rejected
    series, invalid, rejected = aggregator.take()
    return series, counts[0] + invalid, counts[1] + rejected


@pytest.mark.parametrize("group_records", GROUP_RECORDS, ids=GROUP_RECORDS_IDS)
@settings(max_examples=300, deadline=None)
@given(st.lists(bulk_records, max_size=120), st.lists(st.integers(0, 120), max_size=4),
       st.sampled_from([1, 2, 3, 5, 10_000]), st.sampled_from([1, 7, 100_000]), st.sampled_from([None, 1, 2, 5]))
def test_the_bulk_fold_equals_the_per_record_fold(group_records, stream, cuts, max_series, max_pending, slice_groups):
    # The worker adds whole drained chunks to the interval's Aggregator (values grouped by key across
    # chunks, folded a slice of groups at a time, all at once past 2 x max_pending and at the interval's
    # end); cut and sliced anywhere, it must give what folding the stream one record at a time gives: the
    # same series and states, the same invalid and rejected counts (the cardinality guard admitting the
    # first new series, a gauge's last value winning across attribute orders).
    aggregator = Aggregator(max_series, max_pending=max_pending, group_records=group_records)
    bulk, invalid, rejected = aggregate(aggregator, stream, cuts, slice_groups)
    each: dict = {}
    assert (invalid, rejected) == fold_each(stream, each, max_series)
    # The same series (order aside: a series whose first record is invalid is opened with its group, before
    # series first seen later; the order only decides which batch a series lands in) and the same states.
    assert set(bulk) == set(each) and state_shape(bulk) == state_shape(each)
    assert aggregator.take() == ({}, 0, 0)  # the next interval starts empty
    # The next interval, sharing the bulk key -> series key map as the worker does, gives the same again.
    again = aggregate(Aggregator(max_series, max_pending=max_pending, canonical=aggregator.canonical,
                                 group_records=group_records), stream, cuts, slice_groups)
    assert again[1:] == (invalid, rejected) and set(again[0]) == set(each) and state_shape(again[0]) == state_shape(each)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(finite, st.just(0.0), st.sampled_from([2.0**e for e in range(-1074, 1024, 37)])),
                max_size=60), st.integers(-3, 8))
def test_recording_in_bulk_equals_recording_one_by_one(values, scale):
    one, bulk = ExpHistogram(scale), ExpHistogram(scale)
    for v in values:
        one.record(v)
    assert bulk.record_all(values) == bool(values)
    assert (bulk.count, bulk.sum, bulk.min, bulk.max, bulk.zero_count, bulk.positive, bulk.negative) == (
        one.count, one.sum, one.min, one.max, one.zero_count, one.positive, one.negative)


def test_every_power_of_two_buckets_the_same_in_bulk():
    # The bulk path's log2 formula must agree with bucket_index's exact branch on every power of two.
    values = [2.0**e for e in range(-1074, 1023)]  # (with 2**1023 the sum would overflow)
    bulk = ExpHistogram()
    assert bulk.record_all(values)
    assert bulk.positive == collections.Counter(bucket_index(v, bulk.scale) for v in values)


positive = st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(positive, st.integers(-4, 8))
def test_bucket_index_follows_the_otlp_definition(value, scale):
    # Bucket i holds (base**i, base**(i+1)], base = 2**(2**-scale). The float logarithm may be off by one
    # right at a boundary (as the OTLP spec allows), so the bounds are checked to a relative 1e-9.
    index = bucket_index(value, scale)
    lower, upper = reference_bucket_bounds(index, scale)
    if math.isfinite(lower) and math.isfinite(upper) and lower > 0:
        assert lower * (1 - 1e-9) <= value <= upper * (1 + 1e-9)


def test_exact_powers_of_two_fall_in_the_bucket_they_close_or_inside_one():
    # Bucket bounds at scale <= 0 are exact powers of two: containment is checked exactly.
    for scale in (-2, -1, 0, 3, 5):
        for exponent in (-3, -1, 0, 1, 10):
            value = 2.0**exponent
            lower, upper = reference_bucket_bounds(bucket_index(value, scale), scale)
            if scale <= 0:
                assert lower < value <= upper
            else:  # every power of two closes a bucket
                assert upper == pytest.approx(value, rel=1e-12)


def histogram(values, scale):
    h = ExpHistogram(scale)
    for v in values:
        h.record(v)
    return h


values = st.lists(st.one_of(finite, st.just(0.0)), max_size=40)


@settings(max_examples=100, deadline=None)
@given(values, values, values, st.integers(0, 5), st.integers(0, 5), st.integers(0, 5))
def test_histogram_merge_is_associative_and_commutative(xs, ys, zs, sx, sy, sz):
    a, b, c = histogram(xs, sx), histogram(ys, sy), histogram(zs, sz)
    left, right = a.merged(b).merged(c), a.merged(b.merged(c))
    swapped = c.merged(a).merged(b)

    def shape(h):
        return h.scale, h.count, h.zero_count, h.positive, h.negative, h.min, h.max

    assert shape(left) == shape(right) == shape(swapped)
    assert left.sum == pytest.approx(right.sum, rel=1e-9, abs=1e-6)
    # Merging equals recording everything at the lowest scale.
    assert shape(left)[:5] == shape(histogram(xs + ys + zs, min(sx, sy, sz)))[:5]


def test_a_written_histogram_spans_at_most_160_buckets_and_keeps_its_counts():
    h = histogram([10.0**e for e in range(-9, 10)] + [-3.0, 0.0], 5)
    wire = h.wire()
    assert len(wire["positive"]["bucket_counts"]) <= 160 and wire["scale"] < 5
    assert sum(wire["positive"]["bucket_counts"]) + sum(wire["negative"]["bucket_counts"]) + wire["zero_count"] == 21
    assert merge_all([h]).count == 21


def test_the_cardinality_guard_drops_new_series_beyond_the_limit():
    series: dict = {}
    stream = [(SUM, f"m{i}", 1, {}) for i in range(5)] + [(SUM, "m0", 1, {})]
    assert fold(stream, series, max_series=3) == (0, 2)  # m3 and m4 are new beyond the limit
    assert series[(SUM, "m0", frozenset())] == [2.0, 2]  # a live series still takes values


# --- through the client ---------------------------------------------------------------------------------


def sums_by_series(records):
    out = collections.Counter()
    for r in records:
        if r.get("kind") == "sum":
            out[r["name"], tuple(sorted(r["attributes"].items()))] += r["value"]
    return out


def test_concurrent_emitters_aggregate_exactly(gateway, make_client):
    # The buffer holds every record the threads emit, so none can be lost however the threads and the
    # worker (folding and sending meanwhile, every interval) are scheduled: the totals must be exact.
    per_thread = 10_000
    client = make_client(gateway.url, flush_interval_seconds=0.05, max_buffered_records=4 * per_thread * 3)

    def hammer(n: int) -> None:
        for i in range(per_thread):
            client.count("requests", 1, route=f"/r{i % 4}")
            client.distribution("latency", float(i % 100), route="/pay")
            client.gauge("thread", n, t=str(n))

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    snapshots = []
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        snapshots.append(client.stats())
    for thread in threads:
        thread.join()
    client.close(timeout=30.0)
    stats = client.stats()
    assert all(balanced(s) for s in snapshots) and balanced(stats)
    assert stats.emitted == stats.sent == 4 * per_thread * 3 and stats.dropped_total == 0
    assert sums_by_series(gateway.records) == {("requests", (("route", f"/r{k}"),)): float(per_thread)
                                               for k in range(4)}
    hist = [r for r in gateway.records if r["kind"] == "histogram"]
    assert sum(r["count"] for r in hist) == 4 * per_thread
    assert sum(r["sum"] for r in hist) == 4 * sum(float(i % 100) for i in range(per_thread))
    assert min(r["min"] for r in hist) == 0.0 and max(r["max"] for r in hist) == 99.0
    last_gauges = {}
    for r in sorted((r for r in gateway.records if r["kind"] == "gauge"), key=lambda r: r["timestamp"]):
        last_gauges[r["attributes"]["t"]] = r["value"]
    assert last_gauges == {str(n): float(n) for n in range(4)}
    # Each aggregate record says how many records it folded; together they are what was sent.
    assert sum(r["count"] for r in gateway.records) == stats.sent


def test_a_series_beyond_max_series_is_dropped_as_cardinality(gateway, make_client):
    client = make_client(gateway.url, max_series=3, flush_interval_seconds=60.0)
    for i in range(5):
        client.count(f"m{i}")
    client.close(timeout=10.0)
    stats = client.stats()
    assert stats.dropped["cardinality"] == 2 and stats.sent == 3 and balanced(stats)
    assert sorted(r["name"] for r in gateway.records) == ["m0", "m1", "m2"]


def test_a_sum_that_overflows_is_dropped_as_invalid_and_the_batch_stays_valid_json(gateway, make_client):
    client = make_client(gateway.url, flush_interval_seconds=60.0)
    client.count("huge", 1e308)
    client.count("huge", 1e308)  # each value is finite; their sum is inf, which JSON cannot carry
    client.distribution("wide", 1e308)
    client.distribution("wide", 1e308)
    client.count("fine", 2)
    client.close(timeout=10.0)
    stats = client.stats()
    assert stats.dropped["invalid"] == 4 and stats.sent == 1 and stats.dropped.get("internal_error", 0) == 0
    assert balanced(stats)
    assert [(r["name"], r["value"]) for r in gateway.records] == [("fine", 2.0)]


def test_aggregates_survive_a_retry_without_double_counting(gateway, make_client):
    gateway.mode = "5xx"
    client = make_client(gateway.url, max_attempts=10, failure_threshold=10, flush_interval_seconds=0.05)
    for _ in range(100):
        client.count("requests", 1, route="/pay")
    assert gateway.wait_for_requests(2)  # the aggregate's batch failed twice ...
    for _ in range(50):
        client.count("requests", 1, route="/pay")  # ... while the next interval goes on counting
    gateway.mode = "ok"
    client.close(timeout=10.0)
    stats = client.stats()
    assert stats.sent == 150 and stats.dropped_total == 0 and balanced(stats)
    assert sums_by_series(gateway.records) == {("requests", (("route", "/pay"),)): 150.0}


def test_emit_keeps_sending_raw_points_next_to_aggregates(gateway, make_client):
    client = make_client(gateway.url)
    client.emit("raw", 1.5, a="b")
    client.count("c", 2)
    client.close(timeout=10.0)
    raw = [r for r in gateway.records if r["name"] == "raw"]
    assert len(raw) == 1 and "kind" not in raw[0] and raw[0]["value"] == 1.5
    assert [r["kind"] for r in gateway.records if r["name"] == "c"] == ["sum"]


def test_while_the_gateway_is_down_at_most_ten_intervals_wait_and_the_oldest_go(make_client):
    from client_fakes import refused_url, wait_until

    client = make_client(refused_url(), flush_interval_seconds=0.02, max_attempts=1, failure_threshold=1,
                         base_backoff_seconds=30.0, max_backoff_seconds=30.0)
    snapshots = []

    def one_more() -> bool:
        client.count("requests", 1)
        snapshots.append(client.stats())
        return snapshots[-1].dropped["buffer_full"] > 0

    assert wait_until(one_more, interval=0.005)  # the breaker is open: intervals pile up, the oldest drop
    assert all(balanced(s) for s in snapshots)
    assert len(client._closed) <= 10


def test_while_the_gateway_is_down_waiting_aggregates_hold_at_most_max_series(make_client):
    from client_fakes import refused_url, wait_until

    from telemetry_shunt.client._client import _series_waiting

    client = make_client(refused_url(), flush_interval_seconds=0.02, max_attempts=1, failure_threshold=1,
                         base_backoff_seconds=30.0, max_backoff_seconds=30.0, max_series=50)
    snapshots = []
    round_ = [0]

    def more() -> bool:  # 30 new series an interval: two waiting intervals exceed max_series
        round_[0] += 1
        for i in range(30):
            client.count(f"m{i}", 1, round=str(round_[0]))
        snapshots.append(client.stats())
        return snapshots[-1].dropped["buffer_full"] > 0

    assert wait_until(more, interval=0.005)
    assert all(balanced(s) for s in snapshots)
    assert sum(map(_series_waiting, client._closed)) <= 50


def test_a_bug_while_folding_costs_that_interval_counted_never_sent_twice(gateway, make_client, monkeypatch):
    from client_fakes import wait_until

    real_flush = Aggregator.flush
    calls = []

    def flush_failing_once(self, limit=None):
        calls.append(limit)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real_flush(self, limit)

    monkeypatch.setattr(Aggregator, "flush", flush_failing_once)
    client = make_client(gateway.url, flush_interval_seconds=0.05)
    for _ in range(10):
        client.count("lost", 1, route="/pay")
    # The closing interval's first slice fails: its ten records are dropped as internal_error, once.
    assert wait_until(lambda: client.stats().dropped["internal_error"] == 10)
    for _ in range(5):
        client.count("kept", 1, route="/pay")
    assert wait_until(lambda: client.stats().sent == 5)
    client.close(timeout=10.0)
    stats = client.stats()
    assert balanced(stats) and stats.sent == 5 and stats.dropped["internal_error"] == 10
    assert sums_by_series(gateway.records) == {("kept", (("route", "/pay"),)): 5.0}


def test_close_sends_the_interval_still_being_sent_and_the_last_one(gateway, make_client):
    from client_fakes import wait_until

    # An interval of three series is being sent a series a batch (the gateway holds the first request) when
    # close() comes, with two more series counted meanwhile. Closing the last interval must not drop the one
    # still being sent to keep max_series (3) waiting: that bound is for a gateway that is down, and close()
    # sends both or counts what it cannot send as "shutdown".
    gateway.mode = "never"
    client = make_client(gateway.url, max_series=3, max_batch_records=1, flush_interval_seconds=0.05,
                         request_timeout_seconds=120.0)
    for route in ("/a", "/b", "/c"):
        client.count("requests", 1, route=route)
    assert gateway.wait_for_requests(1)  # the first of its three batches, held
    for route in ("/d", "/e"):
        client.count("requests", 1, route=route)
    closer = threading.Thread(target=client.close, kwargs={"timeout": 60.0})
    closer.start()
    assert wait_until(lambda: client._closing)
    gateway.mode = "ok"
    gateway._release.set()
    closer.join(timeout=120.0)
    stats = client.stats()
    assert balanced(stats) and stats.dropped["buffer_full"] == 0
    assert stats.sent + stats.dropped["unconfirmed"] == 5
    assert set(sums_by_series(gateway.records)) >= {("requests", (("route", r),)) for r in ("/b", "/c", "/d", "/e")}


def test_the_worker_folds_while_a_response_is_awaited(gateway, make_client):
    from client_fakes import wait_until

    # The gateway holds the first request (far inside the client's deadline): records counted meanwhile are
    # folded by the worker while it waits, so a slow answer does not leave them filling the buffer. The worker
    # folds a chunk (a quarter of the buffer) at a time: 1,000 records are one chunk of a 4,000-record buffer.
    gateway.mode = "never"
    client = make_client(gateway.url, request_timeout_seconds=120.0, flush_interval_seconds=0.05,
                         max_buffered_records=4000)
    client.emit("raw", 1.0)
    assert gateway.wait_for_requests(1)
    for _ in range(1000):
        client.count("requests", 1, route="/pay")
    assert wait_until(lambda: not client._agg_buffer and client._series_held == 1000)
    assert len(gateway.requests) == 1 and client._pending is not None  # still inside that request
    gateway.mode = "ok"
    gateway._release.set()
    client.close(timeout=10.0)
    stats = client.stats()
    assert balanced(stats) and stats.sent == 1000 and stats.dropped["unconfirmed"] == 1
    assert sums_by_series(gateway.records) == {("requests", (("route", "/pay"),)): 1000.0}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(finite, st.just(0.0), st.sampled_from([1e300, -1e300, 2.0**-1074])), max_size=60),
       st.integers(-3, 8))
def test_a_histogram_written_directly_is_what_json_writes(values, scale):
    import json

    h = histogram(values, scale)
    try:
        expected = json.dumps(h.wire(), separators=(",", ":"), allow_nan=False)[1:-1]
    except ValueError:  # an overflowing sum: refused either way
        with pytest.raises(ValueError):
            h.wire_json()
        return
    assert h.wire_json() == expected


def test_each_call_appends_the_callers_kwargs_dict_which_the_collector_does_not_track(gateway, make_client):
    import gc
    import itertools

    from telemetry_shunt.client._records import TIME, raw_record

    client = make_client(gateway.url)
    captured: list = []
    client._sink = (itertools.count(1).__next__, captured.append, captured.append, -1)  # what the calls append
    client.emit("latency", 1.5, route="/pay")
    client.count("requests", 2, route="/pay")
    client.gauge("depth", 7, queue="orders")
    client.distribution("size", 0.5)
    assert captured == [raw_record("latency", 1.5, captured[0][TIME], {"route": "/pay"}),
                        aggregate_record(SUM, "requests", 2, {"route": "/pay"}),
                        aggregate_record(GAUGE, "depth", 7, {"queue": "orders"}),
                        aggregate_record(HISTOGRAM, "size", 0.5, {})]
    assert not any(gc.is_tracked(record) for record in captured)  # strings and numbers only: untracked
    client.close(timeout=5.0)


@pytest.mark.parametrize("group_records", GROUP_RECORDS, ids=GROUP_RECORDS_IDS)
def test_an_attribute_named_like_a_field_drops_its_record_as_invalid(group_records):
    from telemetry_shunt.client._records import SUM_NAME, VALUE

    # Passed with ** under the very names count() stores its fields under (equal strings, other objects):
    # the call overwrites the caller's value, so the record must be dropped, never folded.
    field_names = ["".join(name) for name in (VALUE, SUM_NAME)]
    assert all(a == b and a is not b for a, b in zip(field_names, (VALUE, SUM_NAME), strict=True))
    calls = []

    def count(name, value=1, /, **attributes):  # what TelemetryClient.count appends
        attributes[VALUE] = value
        attributes[SUM_NAME] = name
        calls.append(attributes)

    count("requests", 1, route="/pay")
    for field in field_names:
        count("requests", 2, **{field: "mine"})
        count("requests", 3, **{"route": "/pay", field: ["unhashable"]})
    count("requests", 4, route="/pay")
    aggregator = Aggregator(10, group_records=group_records)
    invalid, rejected = aggregator.add(calls)
    series, more_invalid, more_rejected = aggregator.take()
    assert (invalid + more_invalid, rejected + more_rejected) == (4, 0)
    assert {key: state for key, state in series.items()} == {(SUM, "requests", frozenset({("route", "/pay")})): [5.0, 2]}


def test_the_client_drops_a_call_whose_attribute_takes_a_field_name(gateway, make_client):
    from telemetry_shunt.client._records import VALUE

    client = make_client(gateway.url)
    client.count("requests", 1, route="/pay")
    client.count("requests", 1, **{"".join(VALUE): "mine"})
    client.close(timeout=10.0)
    stats = client.stats()
    assert (stats.sent, stats.dropped.get("invalid")) == (1, 1) and balanced(stats)
