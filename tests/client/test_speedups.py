"""The client's C accelerator (``client/_speedups.c``, built by ``make install``) held to its Python
reference (``_aggregate._group_records_py``), call by call: the same result, the same groups, the same errors,
and no reference leaked."""

from __future__ import annotations

import copy
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_shunt.client import _aggregate

reference = _aggregate._group_records_py


def test_the_accelerator_is_built_in_this_checkout():
    assert _aggregate.ACCELERATED, ("telemetry_shunt/client/_speedups.c is not built here, so the client runs "
                                    "its Python fallback: run `make install` (it compiles it)")


def accelerated():
    from telemetry_shunt.client._speedups import group_records

    return group_records


# Attribute names (and the int keys the client's fields use), attribute values hashable or not.
keys = st.sampled_from(["route", "code", "region", "", 0, 2, 3, 4, 5])
hashable = st.one_of(st.sampled_from(["/pay", "200", "eu-west-1", "", None, True, 0, 1, 1.0, -0.0]),
                     st.floats(allow_nan=False), st.tuples(st.integers(0, 2)))
attribute_values = st.one_of(hashable, hashable, st.just(["a"]), st.tuples(st.just(["a"])), st.just({"k": 1}))
records = st.dictionaries(keys, attribute_values, max_size=5)


@settings(max_examples=400, deadline=None)
@given(st.lists(records, max_size=30), st.data())
def test_the_c_loop_groups_as_the_python_reference_does(items, data):
    values = [float(i) for i in range(len(items))]
    # Groups that exist already: some of the records' keys (the hashable ones), each with values waiting.
    known = []
    for record in items:
        key = (*record, *record.values())
        try:
            hash(key)
        except TypeError:
            continue
        known.append(key)
    chosen = data.draw(st.lists(st.sampled_from(known), unique=True) if known else st.just([]))
    groups = {key: [-1.0] for key in chosen}
    start = data.draw(st.integers(0, len(items) + 1))
    reference_groups = copy.deepcopy(groups)
    by_reference = reference(items, values, reference_groups, start)
    c_groups = copy.deepcopy(groups)
    by_c = accelerated()(items, values, c_groups, start)
    assert by_c == by_reference and c_groups == reference_groups
    stop, key = by_c
    assert stop == len(items) if start >= len(items) else start <= stop <= len(items)
    if stop < len(items):  # stopped at a record with no group: its key, or None for an unhashable one
        record = items[stop]
        assert key is None or (key == (*record, *record.values()) and key not in groups)


class Unhashable:
    __hash__ = None


class HashFails:
    def __hash__(self):
        raise ValueError("this attribute value's hash fails")


@pytest.mark.parametrize("group_records", [reference, "c"], ids=["python", "c"])
def test_errors_are_the_same_both_ways(group_records):
    group_records = accelerated() if group_records == "c" else group_records
    groups = {("route", 0, "/pay", "a"): []}
    hit = {"route": "/pay", 0: "a"}
    # An unhashable value stops the loop there with no key (the caller keys that record by its text).
    assert group_records([hit, {"route": Unhashable()}, hit], [1.0, 2.0, 3.0], groups, 0) == (1, None)
    assert groups[("route", 0, "/pay", "a")] == [1.0]
    # Any other error from a value's hash is a bug's: it propagates, the records before it grouped.
    with pytest.raises(ValueError, match="hash fails"):
        group_records([hit, {"route": HashFails()}], [4.0, 5.0], groups, 0)
    assert groups[("route", 0, "/pay", "a")] == [1.0, 4.0]
    with pytest.raises((TypeError, AttributeError)):  # a record is always a dict
        group_records([["route", "/pay"]], [1.0], groups, 0)


def test_the_c_loop_refuses_what_it_was_not_made_for():
    group_records = accelerated()
    with pytest.raises(TypeError, match="takes 4 arguments"):
        group_records([], [], {})
    with pytest.raises(TypeError, match="must be lists"):
        group_records((), [], {}, 0)
    with pytest.raises(ValueError, match="start must be >= 0"):
        group_records([], [], {}, -1)
    with pytest.raises(ValueError, match="fewer values than items"):
        group_records([{"a": 1}], [], {("a", 1): []}, 0)
    with pytest.raises(TypeError, match="must be a list"):
        group_records([{"a": 1}], [1.0], {("a", 1): ()}, 0)


def test_the_c_loop_leaks_no_reference():
    group_records = accelerated()
    value, attribute = object(), object()
    hit, miss = {"route": attribute, 0: "a"}, {"route": attribute, 0: "b"}
    groups = {("route", 0, attribute, "a"): []}
    before = sys.getrefcount(value), sys.getrefcount(attribute)
    for _ in range(1000):
        assert group_records([hit, miss], [value, value], groups, 0)[0] == 1  # a hit, then a miss with its key
        groups[("route", 0, attribute, "a")].clear()
    assert (sys.getrefcount(value), sys.getrefcount(attribute)) == before
