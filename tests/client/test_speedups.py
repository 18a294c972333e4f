"""The client's C accelerator (``client/_speedups.c``, built by ``make install``) held to its Python
reference (``_aggregate._group_records_py``), call by call: the same result, the same groups, the same errors,
and no reference leaked."""

from __future__ import annotations

import copy
import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_shunt.client import _aggregate, _records

reference = _aggregate._group_records_py


def test_the_accelerator_is_built_in_this_checkout():
    assert _aggregate.ACCELERATED, ("telemetry_shunt/client/_speedups.c is not built here, so the client runs "
                                    "its Python fallback: run `make install` (it compiles it)")


def accelerated():
    from telemetry_shunt.client._speedups import group_records

    return group_records


VALUE = _records.VALUE
# The name keys these tests use (ints: small ints are single objects, as the client's own name keys are).
NAME_KEYS = (0, 2, 3)
# Attribute names (and other keys), attribute values hashable or not.
keys = st.sampled_from(["route", "code", "region", "", 0, 2, 3, 4, 5])
hashable = st.one_of(st.sampled_from(["/pay", "200", "eu-west-1", "", None, True, 0, 1, 1.0, -0.0]),
                     st.floats(allow_nan=False), st.tuples(st.integers(0, 2)))
attribute_values = st.one_of(hashable, hashable, st.just(["a"]), st.tuples(st.just(["a"])), st.just({"k": 1}))
fields = st.dictionaries(keys, attribute_values, max_size=5)


def record_of(fields: dict, value: float, at: int, name_key: object) -> dict:
    """A record as a call makes it: the attributes, the value under VALUE (anywhere among them: ``at``), and
    most often a name under one of NAME_KEYS, last."""
    entries = list(fields.items())
    entries.insert(min(at, len(entries)), (VALUE, value))
    record = dict(entries)
    if name_key is not None:
        record.pop(name_key, None)
        record[name_key] = "name"
    return record


def key_of(record: dict) -> tuple:
    rest = {k: v for k, v in record.items() if k is not VALUE}
    return (*rest, *rest.values())


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(fields, st.integers(0, 5), st.sampled_from([*NAME_KEYS, *NAME_KEYS, None])), max_size=30),
       st.data())
def test_the_c_loop_groups_as_the_python_reference_does(drawn, data):
    items = [record_of(f, float(i), at, name_key) for i, (f, at, name_key) in enumerate(drawn)]
    # Groups that exist already: some of the records' keys (the hashable ones), each with a value waiting.
    known = []
    for record in items:
        try:
            hash(key_of(record))
        except TypeError:
            continue
        known.append(key_of(record))
    chosen = data.draw(st.lists(st.sampled_from(known), unique=True) if known else st.just([]))
    groups = {key: [-1.0] for key in chosen}
    start = data.draw(st.integers(0, len(items) + 1))
    expected_keys = [key_of(record) for record in items]
    reference_items, reference_groups = copy.deepcopy(items), copy.deepcopy(groups)
    by_reference = reference(reference_items, reference_groups, start, VALUE, NAME_KEYS)
    c_items, c_groups = copy.deepcopy(items), copy.deepcopy(groups)
    by_c = accelerated()(c_items, c_groups, start, VALUE, NAME_KEYS)
    assert by_c == by_reference and c_groups == reference_groups
    stop, key, value = by_c
    assert stop == len(items) if start >= len(items) else start <= stop <= len(items)
    # Each record that joined its group was freed, both ways; the one stopped at was not.
    freed = [i for i, record in enumerate(c_items) if record is None]
    assert freed == [i for i, record in enumerate(reference_items) if record is None] == list(range(start, stop))
    for i in freed:
        assert groups.get(expected_keys[i]) is not None  # only records whose group existed
    if stop < len(items) and key is False:  # its last entry but the value is not a name: the caller drops it
        last_key = expected_keys[stop][len(expected_keys[stop]) // 2 - 1] if expected_keys[stop] else None
        assert value is None and last_key not in NAME_KEYS
    elif stop < len(items):  # stopped at a record with no group: its key (None: unhashable) and value
        assert value == items[stop][VALUE]
        assert key is None or (key == expected_keys[stop] and key not in groups)
    else:
        assert (key, value) == (None, None)


def fresh(text: str) -> str:
    """An equal str that is another object, when it has two characters or more (a record's key then differs
    from another's only by identity)."""
    return "".join(list(text))


# Attribute values the C loop's identity cache takes (str, int, float, bool, None), equal ones among them
# (1, 1.0 and True are one key to a dict), and one it leaves to the dict lookup (a tuple).
plain_values = st.sampled_from(["/pay", "/pay", "200", "eu-west-1", "", None, True, 1, 1.0, 0, -0.0, 2.5, (1,)])
long_pool = st.lists(st.dictionaries(st.sampled_from(["route", "code", "region", "zone"]), plain_values, max_size=4),
                     min_size=1, max_size=5)


@settings(max_examples=300, deadline=None)
@given(long_pool, st.lists(st.tuples(st.integers(0, 4), st.booleans(), st.sampled_from(NAME_KEYS),
                                    st.sampled_from(["requests", "latency", "x"])), min_size=20, max_size=200),
       st.data())
def test_long_runs_group_as_the_python_reference_does(pool, picks, data):
    """Past its first records the C loop looks records up in its identity cache (records made of the same
    objects as a key already found); the same groups, results and freed records as the reference, whether a
    record repeats another's objects or only equals them (``fresh``), and whatever groups exist."""
    items = []
    for i, (which, distinct, name_key, name) in enumerate(picks):
        fields = pool[which % len(pool)]
        if distinct:  # an equal record of other objects: the cache misses, the dict finds the group
            fields = {fresh(k): fresh(v) if isinstance(v, str) else v for k, v in fields.items()}
            name = fresh(name)
        record = record_of(fields, float(i), len(fields), name_key)
        record[name_key] = name
        items.append(record)
    known = list(dict.fromkeys(key_of(record) for record in items))
    # Most keys have a group (long runs, where the cache works), a few may not (where the loop stops).
    missing = data.draw(st.lists(st.sampled_from(known), max_size=2, unique=True) if known else st.just([]))
    groups = {key: [-1.0] for key in known if key not in missing}
    reference_items, reference_groups = list(map(dict, items)), {k: list(v) for k, v in groups.items()}
    expected = reference(reference_items, reference_groups, 0, VALUE, NAME_KEYS)
    got = accelerated()(items, groups, 0, VALUE, NAME_KEYS)
    assert got == expected and groups == reference_groups
    assert [i for i, r in enumerate(items) if r is None] == [i for i, r in enumerate(reference_items) if r is None]


def test_many_fields_and_a_full_identity_cache_group_as_the_reference_does():
    # 20 attributes: more than the C loop keeps on its stack (it builds the key tuple straight away).
    wide = {f"a{k}": f"v{k}" for k in range(20)}
    # 40 groups, each reached by 6 records of distinct (equal) objects: more keys than the cache holds.
    narrow = [{"route": f"/r{k}", "code": "200"} for k in range(40)]
    def stream():
        records = [record_of(wide, float(i), 20, 0) for i in range(40)]
        for i in range(240):
            fields = {k: fresh(v) for k, v in narrow[i % 40].items()}
            records.append(record_of(fields, float(i), 2, 2))
        return records
    keys = {key_of(record) for record in stream()}
    assert len(keys) == 41
    c_groups, reference_groups = {k: [] for k in keys}, {k: [] for k in keys}
    assert accelerated()(stream(), c_groups, 0, VALUE, NAME_KEYS) == (280, None, None)
    assert reference(stream(), reference_groups, 0, VALUE, NAME_KEYS) == (280, None, None)
    assert c_groups == reference_groups and sum(map(len, c_groups.values())) == 280


class Dying(str):
    """An attribute value that, when freed, takes a group out of ``groups`` (Python code run inside the loop)."""
    groups: dict = {}
    victim: tuple = ()

    def __del__(self):
        Dying.groups.pop(Dying.victim, None)


@pytest.mark.parametrize("group_records", [reference, "c"], ids=["python", "c"])
def test_a_group_taken_out_while_the_loop_runs_is_not_appended_to(group_records):
    """Freeing a record may run Python code (an attribute value's __del__) that changes ``groups``: a record
    seen after it must not join a group that is gone, though the C loop found that group for the same objects
    just before (its cache is checked against the dict's version)."""
    group_records = accelerated() if group_records == "c" else group_records
    hit = {"route": "/pay", "code": "200"}
    victim = key_of(record_of(hit, 0.0, 2, 0))
    other = ("route", 0, "/other", "a")
    groups = {victim: [], other: []}
    Dying.groups, Dying.victim = groups, victim
    items = [record_of(hit, float(i), 2, 0) for i in range(30)]
    items.append({"route": Dying("/other"), VALUE: 30.0, 0: "a"})
    items += [record_of(hit, float(i), 2, 0) for i in range(31, 40)]
    stop, key, value = group_records(items, groups, 0, VALUE, NAME_KEYS)
    assert (stop, key, value) == (31, victim, 31.0)
    assert groups == {other: [30.0]}  # the victim's 30 values went with it, as the __del__ meant
    assert items[31] is not None and all(record is None for record in items[:31])


class Unhashable:
    __hash__ = None


class HashFails:
    def __hash__(self):
        raise ValueError("this attribute value's hash fails")


@pytest.mark.parametrize("group_records", [reference, "c"], ids=["python", "c"])
def test_errors_are_the_same_both_ways(group_records):
    group_records = accelerated() if group_records == "c" else group_records
    groups = {("route", 0, "/pay", "a"): []}

    def hit(value):
        return {"route": "/pay", VALUE: value, 0: "a"}

    # An unhashable value stops the loop there with no key (the caller keys that record by its text).
    assert group_records([hit(1.0), {"route": Unhashable(), VALUE: 2.0, 0: "a"}, hit(3.0)], groups, 0, VALUE,
                         NAME_KEYS) == (1, None, 2.0)
    assert groups[("route", 0, "/pay", "a")] == [1.0]
    # Any other error from a value's hash is a bug's: it propagates, the records before it grouped.
    with pytest.raises(ValueError, match="hash fails"):
        group_records([hit(4.0), {"route": HashFails(), VALUE: 5.0, 0: "a"}], groups, 0, VALUE, NAME_KEYS)
    assert groups[("route", 0, "/pay", "a")] == [1.0, 4.0]
    # A record without the client's own value key object (an attribute of that name passed with **, an
    # equal string but another object): stopped at with key False, for the caller to drop.
    collided = {"route": "/pay", "\x00valu" + "e": 6.0, 0: "a"}
    assert group_records([hit(7.0), collided, hit(8.0)], groups, 0, VALUE, NAME_KEYS) == (1, False, None)
    assert group_records([{"route": "/pay", 0: "a"}], groups, 0, VALUE, NAME_KEYS) == (0, False, None)
    # A record whose name key is an equal string but not the client's object (passed with **): dropped too,
    # though its key equals an honest record's and that group exists.
    own, other = "".join(["\x00", "name"]), "".join(["\x00", "name"])
    assert own == other and own is not other
    named = {("route", own, "/pay", "a"): []}
    assert group_records([{"route": "/pay", own: "a", VALUE: 1.0}], named, 0, VALUE, (own,)) == (1, None, None)
    assert group_records([{"route": "/pay", other: "a", VALUE: 2.0}], named, 0, VALUE, (own,)) == (0, False, None)
    assert named == {("route", own, "/pay", "a"): [1.0]}
    assert groups[("route", 0, "/pay", "a")] == [1.0, 4.0, 7.0]
    with pytest.raises((TypeError, AttributeError)):  # a record is always a dict
        group_records([["route", "/pay"]], groups, 0, VALUE, NAME_KEYS)


def test_the_c_loop_refuses_what_it_was_not_made_for():
    group_records = accelerated()
    with pytest.raises(TypeError, match="takes 5 arguments"):
        group_records([], {}, 0, VALUE)
    with pytest.raises(TypeError, match="must be a list"):
        group_records((), {}, 0, VALUE, NAME_KEYS)
    with pytest.raises(TypeError, match="name_keys a tuple"):
        group_records([], {}, 0, VALUE, list(NAME_KEYS))
    with pytest.raises(ValueError, match="start must be >= 0"):
        group_records([], {}, -1, VALUE, NAME_KEYS)
    assert group_records([{}], {}, 0, VALUE, NAME_KEYS) == (0, False, None)  # no value at all: the same as a collided one
    with pytest.raises(TypeError, match="a group must be a list"):
        group_records([{0: 1, VALUE: 1.0}], {(0, 1): ()}, 0, VALUE, NAME_KEYS)


def test_the_c_loop_leaks_no_reference():
    group_records = accelerated()
    value, attribute = object(), object()
    groups = {("route", 0, attribute, "a"): []}
    before = sys.getrefcount(value), sys.getrefcount(attribute)
    for _ in range(1000):
        items = [{"route": attribute, VALUE: value, 0: "a"}, {"route": attribute, VALUE: value, 0: "b"}]
        stop, key, got = group_records(items, groups, 0, VALUE, NAME_KEYS)  # a hit, then a miss with its key and value
        assert (stop, got, items[0]) == (1, value, None) and key == ("route", 0, attribute, "b")
        del items, key, got
        groups[("route", 0, attribute, "a")].clear()
    assert (sys.getrefcount(value), sys.getrefcount(attribute)) == before
    # Long runs of plain attribute values go through the identity cache, which lets go of them at the end.
    plain = float("1.25")
    groups = {("route", 0, plain, "a"): []}
    before = sys.getrefcount(value), sys.getrefcount(plain)
    for _ in range(100):
        items = [{"route": plain, VALUE: value, 0: "a"} for _ in range(50)] + [{"route": plain, VALUE: value, 0: "b"}]
        stop, key, got = group_records(items, groups, 0, VALUE, NAME_KEYS)
        assert (stop, got) == (50, value) and key == ("route", 0, plain, "b")
        del items, key, got
        groups[("route", 0, plain, "a")].clear()
    assert (sys.getrefcount(value), sys.getrefcount(plain)) == before


def python_bucket_counts(magnitudes: list[float], scale: int, buckets: dict[int, int]) -> None:
    """ExpHistogram._bucket_all's bulk formula in Python (its path where the accelerator is not built)."""
    for v in magnitudes:
        index = math.ceil(math.log2(v) * (1 << scale)) - 1
        buckets[index] = buckets.get(index, 0) + 1


magnitudes = st.lists(st.one_of(st.floats(min_value=5e-324, max_value=1.7e308, allow_infinity=False),
                                st.sampled_from([2.0**e for e in range(-1074, 1024, 13)]),
                                st.floats(min_value=0.001, max_value=1000.0)), max_size=60)


@settings(max_examples=400, deadline=None)
@given(magnitudes, st.integers(1, 20), st.dictionaries(st.integers(-40_000, 40_000), st.integers(1, 5), max_size=4))
def test_the_c_bucketing_counts_as_the_python_formula_does(values, scale, before):
    from telemetry_shunt.client._speedups import bucket_counts

    expected, got = dict(before), dict(before)
    python_bucket_counts(values, scale, expected)
    bucket_counts(values, scale, got)
    assert got == expected
    # And each value lands where the OTLP definition puts it (upper-inclusive), as bucket_index says.
    for v in values[:10]:
        assert _aggregate.bucket_index(v, scale) in got


def test_the_c_bucketing_refuses_what_a_histogram_never_holds():
    from telemetry_shunt.client._speedups import bucket_counts

    for bad, error in (([1], TypeError), ([0.0], ValueError), ([-1.0], ValueError), ([math.inf], ValueError),
                       ([math.nan], ValueError)):
        buckets: dict = {}
        with pytest.raises(error):
            bucket_counts(bad, 5, buckets)
        assert buckets == {}  # nothing counted when a value is refused
    with pytest.raises(ValueError, match="scale must be from 1 to 20"):
        bucket_counts([1.0], 0, {})
    with pytest.raises(TypeError, match="must be a list"):
        bucket_counts((1.0,), 5, {})


def histogram_fields(h: _aggregate.ExpHistogram) -> tuple:
    return h.count, h.sum, h.min, h.max, h.zero_count, h.scale, h.positive, h.negative


group_values = st.lists(st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.floats(min_value=-1e6, max_value=1e6),
    st.sampled_from([0.0, -0.0, 1.0, 2.0, 0.5, 2.0**-1074, 1.7e308, -1.7e308, 2.0**1023]),
    st.integers(-10, 10), st.booleans(), st.sampled_from(["2", " 3.5 ", "x", "nan", "inf", 10**400, None])),
    max_size=40)


@settings(max_examples=500, deadline=None)
@given(st.lists(group_values, max_size=3))
def test_the_c_fold_of_a_histogram_group_is_the_python_one(groups):
    # Groups folded one after another into one histogram, both ways: the same answers and the same fields
    # (the sum bit for bit: added in the same order), including the groups refused (nothing changed).
    by_c, by_python = _aggregate.ExpHistogram(), _aggregate.ExpHistogram()
    for values in groups:
        assert by_c.record_all(list(values)) == by_python._record_all_py(list(values))
        assert histogram_fields(by_c) == histogram_fields(by_python)


class FloatFails:
    def __float__(self):
        raise RuntimeError("a bug in a value's __float__")


def test_a_histogram_group_whose_value_fails_otherwise_raises_both_ways():
    for record_all in (_aggregate.ExpHistogram().record_all, _aggregate.ExpHistogram()._record_all_py):
        with pytest.raises(RuntimeError, match="__float__"):
            record_all([1.0, FloatFails()])


numbers = st.one_of(st.floats(), st.floats(min_value=0, max_value=1e6), st.integers(-3, 10**6), st.booleans(),
                    st.integers(2**62, 2**70), st.fractions(max_denominator=7), st.decimals(allow_nan=False),
                    st.just("1"), st.just(None))


@settings(max_examples=500, deadline=None)
@given(st.lists(numbers, max_size=40), st.one_of(st.floats(), st.just(0.0)), st.booleans())
def test_the_c_sum_folds_as_the_python_sum_does(values, start, nonnegative):
    """A counter's or gauge's group folded at once: ``sum_of`` with the C accelerator's one pass gives what it
    gives without it (the builtin ``sum`` and ``min``), to the bit, and None (fold one by one) in the same
    cases; and where the C pass answers, every value was a float or an int."""
    from telemetry_shunt.client._speedups import sum_values

    with_c = _aggregate.sum_of(list(values), start, nonnegative)
    saved = _aggregate._sum_values
    _aggregate._sum_values = None
    try:
        without = _aggregate.sum_of(list(values), start, nonnegative)
    finally:
        _aggregate._sum_values = saved
    assert (with_c is None) == (without is None)
    if with_c is not None:
        assert with_c.hex() == without.hex()
    direct = sum_values(list(values), start, nonnegative)
    if direct is not None:
        assert direct.hex() == without.hex()
        assert all(isinstance(v, (float, int)) for v in values)


def test_the_c_sum_refuses_what_it_was_not_made_for():
    from telemetry_shunt.client._speedups import sum_values

    with pytest.raises(TypeError, match="takes 3 arguments"):
        sum_values([1.0], 0.0)
    with pytest.raises(TypeError, match="start a float"):
        sum_values([1.0], 0, True)
    with pytest.raises(TypeError, match="values must be a list"):
        sum_values((1.0,), 0.0, True)
    assert sum_values([], 2.5, True) is None and sum_values([-1], 0.0, True) is None


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the C loop reads CPython 3.11's dict layout")
def test_the_value_prefetch_reads_where_a_calls_value_is():
    """``prefetch_ahead`` finds a record's value object two records ahead through CPython 3.11's dict layout
    (a hint: a wrong address could not fault, only waste the prefetch). The same arithmetic, done here with
    ctypes on records made as the client's calls make them, lands on the value."""
    import ctypes

    from telemetry_shunt.client import TelemetryClient

    made = []

    class Recording(TelemetryClient):
        def __init__(self):  # only the caller's side: no worker
            self._sink = (iter(range(1, 10**6)).__next__, made.append, made.append, -1)

    client = Recording()
    for attributes in ({"route": "/pay", "code": "200", "region": "eu-west-1"}, {}, {f"a{k}": k for k in range(9)}):
        value = float("3.25")
        client.count("requests", value, **attributes)
        client.distribution("latency", value, **attributes)
        for record in made[-2:]:
            keys = ctypes.c_void_p.from_address(id(record) + 32).value  # PyDictObject.ma_keys
            assert ctypes.c_uint8.from_address(keys + 10).value == 1  # dk_kind: DICT_KEYS_UNICODE
            entries = keys + 32 + (1 << ctypes.c_uint8.from_address(keys + 9).value)  # past dk_indices
            n = ctypes.c_ssize_t.from_address(keys + 24).value  # dk_nentries
            assert ctypes.c_void_p.from_address(entries + 16 * (n - 2) + 8).value == id(value)


def test_the_accelerator_builds_without_cpython_311_internals(tmp_path, monkeypatch):
    """On another CPython the C loop goes without the 3.11 dict internals (the value prefetch, the identity
    cache): that build must still compile under hatch_build's own command (-Wall -Wextra -Werror), where a
    helper only those parts use would fail it as unused. Compiled here with PY_VERSION_HEX set to 3.12's."""
    import importlib.util
    import shutil
    import sysconfig
    import types
    from pathlib import Path

    compiler = (sysconfig.get_config_var("LDSHARED") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}) here")
    # hatch_build.py imports hatchling, which only its build environment has: a stand-in base class will do.
    for name in ("hatchling", "hatchling.builders", "hatchling.builders.hooks", "hatchling.builders.hooks.plugin"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    interface = types.ModuleType("hatchling.builders.hooks.plugin.interface")
    interface.BuildHookInterface = object
    monkeypatch.setitem(sys.modules, interface.__name__, interface)
    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("hatch_build_under_test", root / "hatch_build.py")
    hatch_build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hatch_build)

    source = tmp_path / "speedups_312.c"
    source.write_text("#define PY_SSIZE_T_CLEAN\n#include <Python.h>\n#undef PY_VERSION_HEX\n"
                      "#define PY_VERSION_HEX 0x030C00F0\n"
                      f'#include "{root / hatch_build.SOURCE}"\n')
    built = subprocess.run(hatch_build.compile_command(source, tmp_path / "speedups_312.so"),
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
