"""The /metrics route's VRL run for real: the client's aggregates become the right OTLP metric types.

The programs are compiled and run by VRL's own compiler and runtime (``vrl_python``: PyO3 bindings built
from vectordotdev/vrl at dbfeee5, 11 commits before 0.28.1, the VRL of the pinned Vector 0.51.1; between
the two only ``http_request``, ``split_path``, ``basename``/``dirname`` and the protobuf encoder changed).
Records come from the real client encoder (``telemetry_shunt.client._encoding``); what ``to_otlp`` makes is
checked two ways: with the rules of Vector's ``otlp`` codec (``encode_strictly`` below) and by parsing it
with opentelemetry-proto's ``json_format`` into an ``ExportMetricsServiceRequest``.
"""

from __future__ import annotations

import json
import math

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2
from vrl_python import VRLRuntime

from telemetry_shunt.client._aggregate import ExpHistogram, fold
from telemetry_shunt.client._encoding import encode_aggregates, encode_records
from telemetry_shunt.core import collectors as cc
from telemetry_shunt.core import contract

RUNTIME = VRLRuntime()
VENDOR = cc.OtlpHttpSink(endpoint="https://otlp.vendor.example", headers={"api-key": cc.SecretEnv("VENDOR_API_KEY")})
SINKS = [VENDOR, cc.S3ArchiveSink()]
START, END = 1_764_500_000.0, 1_764_500_010.0


def rendered(paths=("/metrics",), sinks=SINKS):
    return cc.render_config("vector", paths=list(paths), sinks=sinks, ephemeral_storage_gib=50)


CONFIG = rendered()
RECORDS_VRL = CONFIG["transforms"]["records"]["source"]
TO_OTLP_VRL = CONFIG["transforms"]["to_otlp"]["source"]


def run(program: str, event: dict) -> dict | None:
    """The event after ``program``, or None when it aborts (``drop_on_abort``: dropped and counted)."""
    try:
        return RUNTIME.execute(program, json.loads(json.dumps(event))).processed_event
    except RuntimeError as exc:
        assert "aborted" in str(exc), exc
        return None


def lines(body: bytes) -> list[dict]:
    """What Vector's http_server source makes of a body: one event per NDJSON line (json codec)."""
    return [json.loads(line) for line in body.decode("utf-8").splitlines()]


def client_aggregates(items, max_series=10_000) -> list[dict]:
    series: dict = {}
    fold(items, series, max_series)
    ids = iter(f"{i:032x}" for i in range(1, 1000))
    out = []
    for body, _folded, _batch_id, _oversized, _invalid in encode_aggregates(series, START, END, lambda: next(ids), 1000):
        out += lines(body)
    return out


# --- Vector's otlp codec, as a check --------------------------------------------------------------------

_INTEGER_TYPES = {
    FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED32, FieldDescriptor.TYPE_SFIXED64,
}


def encode_strictly(descriptor, value, where="") -> list[str]:
    """Problems Vector 0.51.1's ``otlp`` codec would have with ``value`` as message ``descriptor``.

    Its serializer (lib/codecs/src/encoding/format/otlp.rs) encodes with ``use_json_names: true``: it looks
    each field up by its JSON name and silently leaves out any other key, so a snake_case name is data lost.
    VRL 0.28.1's ``convert_value_raw`` (src/protobuf/encode.rs) takes only integers for integer fields (a
    float for a fixed64 is an error that drops the event), integers or floats for doubles, an enum by a
    value's name (any case) or number, and an array only for a repeated field.
    """
    if not isinstance(value, dict):
        return [f"{where or '.'}: {descriptor.name} must be an object"]
    fields = {f.json_name: f for f in descriptor.fields}
    problems = [f"{where}.{key}: not a JSON field name of {descriptor.name}" for key in value if key not in fields]
    for key, item in value.items():
        field = fields.get(key)
        if field is None or item is None:
            continue
        path = f"{where}.{key}"
        repeated = field.is_repeated
        if repeated != isinstance(item, list):
            problems.append(f"{path}: {'an array' if repeated else 'not an array'} expected")
            continue
        for i, element in enumerate(item if repeated else [item]):
            at = f"{path}[{i}]" if repeated else path
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                problems += encode_strictly(field.message_type, element, at)
            elif field.type in _INTEGER_TYPES:
                if isinstance(element, bool) or not isinstance(element, int):
                    problems.append(f"{at}: {element!r} is not an integer")
            elif field.type == FieldDescriptor.TYPE_DOUBLE:
                if isinstance(element, bool) or not isinstance(element, int | float):
                    problems.append(f"{at}: {element!r} is not a number")
            elif field.type == FieldDescriptor.TYPE_BOOL:
                if not isinstance(element, bool):
                    problems.append(f"{at}: {element!r} is not a boolean")
            elif field.type == FieldDescriptor.TYPE_ENUM:
                names = {v.name.lower() for v in field.enum_type.values}
                if not (isinstance(element, int) or (isinstance(element, str) and element.lower() in names)):
                    problems.append(f"{at}: {element!r} is not a value of {field.enum_type.name}")
            elif field.type == FieldDescriptor.TYPE_STRING and not isinstance(element, str):
                problems.append(f"{at}: {element!r} is not a string")
    return problems


def to_request(otlp: dict) -> ExportMetricsServiceRequest:
    assert encode_strictly(ExportMetricsServiceRequest.DESCRIPTOR, otlp) == []
    return json_format.ParseDict(otlp, ExportMetricsServiceRequest())


def only_metric(request: ExportMetricsServiceRequest) -> metrics_pb2.Metric:
    [resource] = request.resource_metrics
    [scope] = resource.scope_metrics
    [metric] = scope.metrics
    return metric


def test_the_strict_encoder_check_can_fail():
    good = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "x", "sum": {
        "aggregationTemporality": "AGGREGATION_TEMPORALITY_DELTA", "isMonotonic": True,
        "dataPoints": [{"timeUnixNano": 2, "startTimeUnixNano": 1, "asDouble": 1}]}}]}]}]}
    assert encode_strictly(ExportMetricsServiceRequest.DESCRIPTOR, good) == []
    point = good["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["dataPoints"][0]
    for bad, expected in (
        ({"time_unix_nano": 2}, "not a JSON field name"),  # json_format would accept this; Vector drops it
        ({"timeUnixNano": 2.5}, "is not an integer"),
        ({"asDouble": "1"}, "is not a number"),
    ):
        point_bad = {**point, **bad}
        if "time_unix_nano" in bad:
            del point_bad["timeUnixNano"]
        sample = json.loads(json.dumps(good))
        sample["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["dataPoints"] = [point_bad]
        assert any(expected in p for p in encode_strictly(ExportMetricsServiceRequest.DESCRIPTOR, sample))
    sample = json.loads(json.dumps(good))
    sample["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["aggregationTemporality"] = "DELTA"
    assert encode_strictly(ExportMetricsServiceRequest.DESCRIPTOR, sample)


# --- every VRL program the fleet renders compiles -------------------------------------------------------


@pytest.mark.parametrize(
    "paths,sinks",
    [
        (("/metrics",), SINKS),
        (("/metrics",), [VENDOR]),
        (("/metrics",), [cc.S3ArchiveSink()]),
        (("/metrics", "/m2"), SINKS),
        (("/m2",), SINKS),
    ],
    ids=["vendor+archive", "vendor", "archive", "two-paths", "no-metrics-path"],
)
def test_every_vrl_program_in_a_rendered_vector_config_compiles_with_vrl(paths, sinks):
    config = rendered(paths, sinks)
    programs = []
    for name, t in config["transforms"].items():
        if t["type"] == "remap":
            programs.append((name, t["source"]))
        elif t["type"] == "filter":
            programs.append((name, t["condition"]))
        elif t["type"] == "route":
            programs += [(f"{name}.{route}", cond) for route, cond in t["route"].items()]
    assert programs
    for name, program in programs:
        assert VRLRuntime().compile(program), name


def test_to_otlp_as_it_was_before_the_aggregates_did_not_compile():
    """The old program read ``object(.attributes) ?? {}`` after setting ``.attributes`` to an object: VRL's
    compiler refuses that (E651, unnecessary error coalescing), so Vector would not have started."""
    old = cc._VRL_RECORDS + 'for_each(object(.attributes) ?? {}) -> |k, v| { .x = k }\n'
    with pytest.raises(ValueError, match="E651"):
        VRLRuntime().compile(old)


# --- records: the archive keeps what the client sent -------------------------------------------------------


def test_records_keep_a_raw_sample_as_the_four_fields_without_the_dedupe_ids():
    [raw] = lines(encode_records([("latency", 1.5, START, {"route": "/pay"})], batch_id="ab" * 16).body)
    raw["shunt_path"] = "/metrics"
    assert run(RECORDS_VRL, raw) == {"name": "latency", "value": 1.5, "timestamp": START, "attributes": {"route": "/pay"}}


def test_records_keep_every_aggregate_field_for_the_archive():
    aggregates = client_aggregates([
        ("sum", "requests", 1, {"route": "/pay"}), ("sum", "requests", 2, {"route": "/pay"}),
        ("gauge", "depth", 7, {}), ("histogram", "latency", 3.0, {}), ("histogram", "latency", -1.0, {}),
        ("histogram", "latency", 0.0, {}),
    ])
    assert {a["kind"] for a in aggregates} == set(contract.METRIC_KINDS)
    for sent in aggregates:
        archived = run(RECORDS_VRL, sent)
        expected = {k: v for k, v in sent.items() if k not in (contract.RECORD_BATCH_ID_FIELD, contract.RECORD_SEQ_FIELD)}
        assert archived == expected


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "summary"},
        {"count": -1},
        {"count": 1.5},
        {"start": "yesterday"},
        {"scale": 2.5},
        {"zero_count": -1},
        {"positive": None},
        {"negative": {"offset": 0}},
        {"positive": {"offset": 0, "bucket_counts": [1, 2.5]}},
        {"positive": {"offset": 0, "bucket_counts": [1, -1]}},
        {"positive": {"offset": "0", "bucket_counts": [1]}},
        {"min": None},
        {"sum": "6"},
        {"count": 2},
        {"zero_count": 1},
    ],
    ids=["unknown-kind", "negative-count", "fractional-count", "start-not-a-number", "fractional-scale",
         "negative-zero-count", "positive-missing", "negative-without-buckets", "fractional-bucket",
         "negative-bucket", "offset-as-text", "min-missing", "sum-as-text", "count-above-buckets",
         "zero-count-above-count"],
)
def test_a_malformed_aggregate_is_dropped_by_both_programs(change):
    [histogram] = client_aggregates([("histogram", "latency", 3.0, {})])
    assert run(RECORDS_VRL, histogram) is not None and run(TO_OTLP_VRL, histogram) is not None
    bad = {**histogram, **change}
    bad = {k: v for k, v in bad.items() if v is not None}
    assert run(RECORDS_VRL, bad) is None
    assert run(TO_OTLP_VRL, bad) is None


# --- to_otlp: each kind becomes its OTLP type ---------------------------------------------------------------


def test_a_negative_sum_is_dropped_but_a_negative_gauge_or_raw_sample_is_not():
    [total, depth] = client_aggregates([("sum", "requests", 2, {}), ("gauge", "depth", -3, {})])
    assert run(RECORDS_VRL, {**total, "value": -2.0}) is None and run(TO_OTLP_VRL, {**total, "value": -2.0}) is None
    assert run(RECORDS_VRL, depth)["value"] == -3.0
    [raw] = lines(encode_records([("delta", -1.5, START, {})]).body)
    assert run(TO_OTLP_VRL, raw) is not None


def test_a_raw_sample_stays_a_gauge_point():
    [raw] = lines(encode_records([("latency", 1.5, START, {"route": "/pay"})], batch_id="ab" * 16).body)
    metric = only_metric(to_request(run(TO_OTLP_VRL, raw)))
    assert metric.name == "latency" and metric.WhichOneof("data") == "gauge"
    [point] = metric.gauge.data_points
    assert point.as_double == 1.5 and point.time_unix_nano == int(START * 1e9) and point.start_time_unix_nano == 0
    assert [(a.key, a.value.string_value) for a in point.attributes] == [("route", "/pay")]


def test_a_count_becomes_a_delta_monotonic_sum_over_the_interval():
    [record] = client_aggregates([("sum", "requests", 1, {"route": "/pay"})] * 5)
    metric = only_metric(to_request(run(TO_OTLP_VRL, record)))
    assert metric.WhichOneof("data") == "sum"
    assert metric.sum.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    assert metric.sum.is_monotonic
    [point] = metric.sum.data_points
    assert point.as_double == 5.0
    assert (point.start_time_unix_nano, point.time_unix_nano) == (int(START * 1e9), int(END * 1e9))


def test_a_gauge_aggregate_is_a_gauge_of_the_last_value():
    [record] = client_aggregates([("gauge", "depth", 3, {}), ("gauge", "depth", 7, {})])
    metric = only_metric(to_request(run(TO_OTLP_VRL, record)))
    assert metric.WhichOneof("data") == "gauge" and metric.gauge.data_points[0].as_double == 7.0


def test_a_distribution_becomes_a_delta_exponential_histogram_with_its_buckets():
    values = [0.0, 0.5, 1.0, 3.0, 3.0, 1000.0, -2.0]
    [record] = client_aggregates([("histogram", "latency", v, {}) for v in values])
    metric = only_metric(to_request(run(TO_OTLP_VRL, record)))
    assert metric.WhichOneof("data") == "exponential_histogram"
    histogram = metric.exponential_histogram
    assert histogram.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    [point] = histogram.data_points
    expected = ExpHistogram()
    for v in values:
        expected.record(v)
    wire = expected.wire()
    assert (point.count, point.sum, point.min, point.max) == (len(values), sum(values), min(values), max(values))
    assert (point.scale, point.zero_count) == (wire["scale"], 1)
    assert (point.positive.offset, list(point.positive.bucket_counts)) == (
        wire["positive"]["offset"], wire["positive"]["bucket_counts"])
    assert (point.negative.offset, list(point.negative.bucket_counts)) == (
        wire["negative"]["offset"], wire["negative"]["bucket_counts"])
    assert point.start_time_unix_nano == int(START * 1e9) and point.time_unix_nano == int(END * 1e9)
    # The OTLP data model: bucket i of scale s holds (base**i, base**(i+1)], base = 2**(2**-s).
    base = 2.0 ** (2.0 ** -point.scale)
    for v in (0.5, 1.0, 3.0, 1000.0):
        i = point.positive.offset + next(
            i for i in range(len(point.positive.bucket_counts))
            if base ** (point.positive.offset + i) < v <= base ** (point.positive.offset + i + 1) * (1 + 1e-12))
        assert point.positive.bucket_counts[i - point.positive.offset] >= 1


_names = st.sampled_from(["requests", "latency", "depth", "dé.jà"])
_attributes = st.dictionaries(st.sampled_from(["route", "az"]), st.sampled_from(["/pay", "a", "ü"]), max_size=2)
_values = st.one_of(st.integers(min_value=-10**6, max_value=10**6),
                    st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False))
_items = st.lists(st.tuples(st.sampled_from(contract.METRIC_KINDS), _names, _values, _attributes), max_size=40)


@settings(max_examples=60, deadline=None)
@given(items=_items)
def test_any_client_stream_maps_to_a_valid_request_with_the_client_totals(items):
    """Random streams through the real fold and encoder, then the real VRL: every record the client
    sends becomes exactly one OTLP metric of its kind's type whose totals are the client's."""
    records = client_aggregates(items)
    for sent in records:
        # The record as VRL sees it: the binding parses floats with serde_json's default parser, which is not
        # always correctly rounded (Vector 0.51.1's workspace also declares serde_json without float_roundtrip);
        # the mapping itself must then change nothing.
        record = run("true", sent)
        assert record.keys() == sent.keys() and math.isclose(record["value"], sent["value"], rel_tol=1e-14)
        otlp = run(TO_OTLP_VRL, sent)
        assert otlp is not None, record
        metric = only_metric(to_request(otlp))
        assert metric.name == record["name"]
        data = metric.WhichOneof("data")
        assert data == {"sum": "sum", "gauge": "gauge", "histogram": "exponential_histogram"}[record["kind"]]
        if data == "exponential_histogram":
            [point] = metric.exponential_histogram.data_points
            assert point.count == record["count"]
            assert point.zero_count + sum(point.positive.bucket_counts) + sum(point.negative.bucket_counts) == point.count
            assert (point.sum, point.min, point.max) == (record["sum"], record["min"], record["max"])
        else:
            [point] = getattr(metric, data).data_points
            assert point.as_double == record["value"]
        assert {a.key: a.value.string_value for a in point.attributes} == record["attributes"]


def test_the_http_source_keeps_lines_up_to_the_client_limit():
    framing = CONFIG["sources"]["gateway_http"]["framing"]
    assert framing == {"method": "newline_delimited",
                       "newline_delimited": {"max_length": contract.METRICS_MAX_RECORD_BYTES}}


def test_the_archive_reads_records_and_the_vendor_reads_to_otlp():
    sinks = CONFIG["sinks"]
    assert sinks["archive"]["inputs"] == ["records"] and sinks["vendor"]["inputs"] == ["to_otlp"]
    assert sinks["vendor"]["protocol"]["encoding"] == {"codec": "otlp"}
