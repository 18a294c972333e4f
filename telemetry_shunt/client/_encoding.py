"""Batches in the gateway's ``POST /metrics`` format: newline-delimited JSON, optionally gzip."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from typing import Any, NamedTuple

from telemetry_shunt.core.contract import METRICS_MAX_RECORD_BYTES, RECORD_BATCH_ID_FIELD, RECORD_SEQ_FIELD

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


class Encoded(NamedTuple):
    body: bytes
    records: int  # records in the body
    invalid: int  # left out: the name is not a non-empty string or the value not a finite number
    oversized: int  # left out: the line would exceed the collector's line limit


# A line of this many characters may exceed the limit once UTF-8 encoded (at most 4 bytes a character).
_CHECK_LENGTH_ABOVE = METRICS_MAX_RECORD_BYTES // 4


def encode_records(items: Iterable[tuple[str, Any, float, dict[str, Any]]], batch_id: str = "",
                   max_record_bytes: int = METRICS_MAX_RECORD_BYTES) -> Encoded:
    """Encode ``(name, value, timestamp, attributes)`` tuples as NDJSON records.

    A record whose name is not a non-empty string or whose value is not a finite number is left out and
    counted in ``invalid``; one whose line would reach ``max_record_bytes`` (the collector's line limit,
    which would discard it) is left out and counted in ``oversized``: one bad record must not make the
    gateway reject the whole batch. Attribute values become strings. With a ``batch_id`` each record
    carries it and its index in the batch (``seq``), for the collector's dedupe.
    """
    # The worker's CPU is taken from the host (the GIL), so the common case is kept cheap: names and
    # attribute sets repeat, so their JSON is encoded once per batch; floats are written with repr().
    names: dict[str, str] = {}
    attribute_sets: dict[tuple, str] = {}
    lines = []
    invalid = oversized = 0
    check_above = min(_CHECK_LENGTH_ABOVE, max_record_bytes // 4)
    tail = f',"{RECORD_BATCH_ID_FIELD}":{_dumps(batch_id)},"{RECORD_SEQ_FIELD}":' if batch_id else ""
    for name, value, timestamp, attributes in items:
        if value.__class__ is not float:
            try:
                value = float(value)
            except (TypeError, ValueError, OverflowError):
                invalid += 1
                continue
        if value - value != 0.0:  # inf or nan
            invalid += 1
            continue
        name_json = names.get(name) if name.__class__ is str else None
        if name_json is None:
            if name.__class__ is not str or not name:
                invalid += 1
                continue
            name_json = names[name] = _dumps(name)
        if attributes:
            try:
                key = tuple(attributes.items())
                attributes_json = attribute_sets.get(key)
            except TypeError:  # an unhashable attribute value
                key, attributes_json = None, None
            if attributes_json is None:
                attributes_json = _dumps(
                    {k: v if v.__class__ is str else _text(v) for k, v in attributes.items()}
                )
                if key is not None:
                    attribute_sets[key] = attributes_json
        else:
            attributes_json = "{}"
        if tail:
            line = (f'{{"name":{name_json},"value":{value!r},"timestamp":{timestamp!r},'
                    f'"attributes":{attributes_json}{tail}{len(lines)}}}')
        else:
            line = f'{{"name":{name_json},"value":{value!r},"timestamp":{timestamp!r},"attributes":{attributes_json}}}'
        if len(line) > check_above and len(line.encode("utf-8", "replace")) >= max_record_bytes:
            oversized += 1
            continue
        lines.append(line)
    if not lines:
        return Encoded(b"", 0, invalid, oversized)
    return Encoded(("\n".join(lines) + "\n").encode("utf-8", "replace"), len(lines), invalid, oversized)


def encode_aggregates(series: dict[tuple, Any], start: float, end: float, batch_ids: Any,
                      max_records: int, max_record_bytes: int = METRICS_MAX_RECORD_BYTES,
                      attribute_json: dict | None = None) -> list[tuple[bytes, int, str, int, int]]:
    """Encode one interval's series as aggregate records, at most ``max_records`` lines a batch.

    Returns ``[(body, folded records, batch id, oversized records, invalid records)]``; a line over
    ``max_record_bytes`` (huge attributes) is left out and the records folded into it are counted in
    ``oversized``; a series whose sum overflowed to inf is left out and its records counted in ``invalid``.
    ``batch_ids()`` gives each batch its id. ``attribute_json`` (attribute set -> its JSON), kept by the
    caller across intervals, spares re-encoding the attributes of a series seen before.
    """
    from telemetry_shunt.client._aggregate import HISTOGRAM, folded_records

    batches = []
    lines: list[str] = []
    folded = oversized = invalid = 0
    batch_id = batch_ids()
    names: dict[str, str] = {}
    cache = attribute_json if attribute_json is not None else {}
    common = f'"start":{start!r},"timestamp":{end!r}'
    for (kind, name, attributes), state in series.items():
        name_json = names.get(name) or names.setdefault(name, _dumps(name))
        attributes_json = "{}"
        if attributes:
            attributes_json = cache.get(attributes)
            if attributes_json is None:
                attributes_json = _dumps({k: v if v.__class__ is str else _text(v) for k, v in sorted(attributes)})
                cache[attributes] = attributes_json
        n = folded_records(state)
        value = state.sum if kind is HISTOGRAM else state[0]
        if value - value:  # the sum overflowed to inf (every value folded in was finite): no valid JSON for it
            invalid += n
            continue
        detail = state.wire_json() + "," if kind is HISTOGRAM else f'"count":{n},'
        line = (f'{{"name":{name_json},"kind":"{kind}","value":{value!r},{detail}{common},"attributes":{attributes_json},'
                f'"{RECORD_BATCH_ID_FIELD}":"{batch_id}","{RECORD_SEQ_FIELD}":{len(lines)}}}')
        if len(line) > _CHECK_LENGTH_ABOVE and len(line.encode("utf-8", "replace")) >= max_record_bytes:
            oversized += n
            continue
        lines.append(line)
        folded += n
        if len(lines) >= max_records:
            batches.append((("\n".join(lines) + "\n").encode("utf-8", "replace"), folded, batch_id, oversized,
                            invalid))
            lines, folded, oversized, invalid, batch_id = [], 0, 0, 0, batch_ids()
    if lines or oversized or invalid:
        body = ("\n".join(lines) + "\n").encode("utf-8", "replace") if lines else b""
        batches.append((body, folded, batch_id, oversized, invalid))
    return batches


def compress(body: bytes) -> bytes:
    # Level 5: most of the size win of 9 at a fraction of the CPU; mtime=0 keeps output deterministic.
    return gzip.compress(body, compresslevel=5, mtime=0)


def _text(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # a user object whose __str__ raises must not stop the batch
        return f"<unprintable {type(value).__name__}>"
