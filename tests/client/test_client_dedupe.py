"""The batch id as the buffer fleet uses it: the rendered Vector config (as data) drops a repeated batch.

Vector cannot run here (no binary, no container runtime), so the rendered ``dedupe`` stage is checked against
Vector's own definition at the pinned version (src/transforms/dedupe: ``fields.match`` and
``cache.num_events``; an event is a repeat when every match field has the same type and value as one of the
last ``num_events`` events, a missing field counting as "missing") applied to what the client really sends.
"""

from __future__ import annotations

import collections
import gzip
import json

from client_fakes import balanced, wait_until

from telemetry_shunt.core import collectors, contract


def _vector(paths=("/metrics",)) -> dict:
    return collectors.render_config("vector", paths=list(paths), sinks=[collectors.S3ArchiveSink()])


class VectorDedupe:
    """Vector's dedupe transform, ``fields.match`` mode, per its source: an LRU of match-field tuples."""

    def __init__(self, config: dict) -> None:
        assert set(config) == {"type", "inputs", "fields", "cache"} and config["type"] == "dedupe"
        assert set(config["fields"]) == {"match"} and set(config["cache"]) == {"num_events"}
        self.fields = config["fields"]["match"]
        self.size = config["cache"]["num_events"]
        self.cache: collections.OrderedDict = collections.OrderedDict()

    def passes(self, event: dict) -> bool:
        key = tuple((type(event[f]).__name__, json.dumps(event[f], sort_keys=True)) if f in event else None
                    for f in self.fields)
        seen = key in self.cache
        self.cache[key] = True
        self.cache.move_to_end(key)
        if len(self.cache) > self.size:
            self.cache.popitem(last=False)
        return not seen


def test_the_metrics_route_runs_every_record_through_a_dedupe_stage_before_the_records():
    for paths in (["/metrics"], ["/metrics", "/metrics/batch"]):
        cfg = _vector(paths)
        dedupe = cfg["transforms"]["dedupe_metrics"]
        assert dedupe["inputs"] == ["gateway_http"]
        consumers = [name for name, t in cfg["transforms"].items() if "gateway_http" in t.get("inputs", [])]
        assert consumers == ["dedupe_metrics"]  # nothing bypasses it
        assert collectors.check_vector_config(cfg, paths=paths, ephemeral_storage_gib=50) == []
    assert "dedupe_metrics" not in _vector(["/other"])["transforms"]


def test_a_batch_resent_at_least_once_reaches_the_sinks_once(gateway, make_client):
    gateway.mode = "store-once-then-hang"
    client = make_client(gateway.url, request_timeout_seconds=2.0, max_attempts=5, delivery="at_least_once")
    for _ in range(50):
        client.emit("requests", 1, route="/pay")  # alike records: only (batch_id, seq) surely tells them apart
    assert wait_until(lambda: client.stats().sent == 50)
    assert balanced(client.stats()) and len(gateway.records) >= 100  # the batch arrived at least twice

    dedupe = VectorDedupe(_vector()["transforms"]["dedupe_metrics"])
    kept = [r for r in gateway.records if dedupe.passes(r)]
    assert len(kept) == 50 and len({(r["batch_id"], r["seq"]) for r in kept}) == 50
    assert set(dedupe.fields) >= {contract.RECORD_BATCH_ID_FIELD, contract.RECORD_SEQ_FIELD}
    assert all(set(dedupe.fields) <= set(r) for r in gateway.records)  # the client sends every match field


def test_records_without_a_batch_id_are_only_dropped_when_identical():
    dedupe = VectorDedupe(_vector()["transforms"]["dedupe_metrics"])
    other = [{"name": "m", "value": 1.0, "timestamp": 1.0, "attributes": {}},
             {"name": "m", "value": 1.0, "timestamp": 2.0, "attributes": {}},
             {"name": "m", "value": 2.0, "timestamp": 1.0, "attributes": {}}]
    assert [dedupe.passes(r) for r in other + other[:1]] == [True, True, True, False]


def test_the_wire_format_comment_names_the_fields_the_client_sends():
    from telemetry_shunt.client._encoding import encode_records

    body = encode_records([("m", 1, 1.0, {"a": "b"})], "0" * 32).body
    record = json.loads(gzip.decompress(gzip.compress(body)))
    assert set(record) == {"name", "value", "timestamp", "attributes", contract.RECORD_BATCH_ID_FIELD,
                           contract.RECORD_SEQ_FIELD}
