"""What the caller appends: its own keyword-arguments dict, with the record's fields stored in it under int
keys, which a keyword argument can never be (every key of ``**attributes`` is a string).

Appending that dict allocates nothing more, and a dict of strings and numbers is not tracked by CPython's
garbage collector, where a tuple holding a dict is: at 200k records/s the records waiting in the buffer were
promoted to the oldest generation and set off a full collection of the whole heap every few hundred
milliseconds. The worker takes the fields out again (``dict.pop``, in C over a whole chunk).
"""

from __future__ import annotations

from typing import Any

from telemetry_shunt.core.contract import METRIC_KINDS

VALUE = 1
# count/gauge/distribution: the name under the int key of the record's kind (so the key says the kind).
SUM_NAME, GAUGE_NAME, HISTOGRAM_NAME = 0, 2, 3
# emit: the name and the timestamp (seconds since the epoch, read in the caller's thread).
RAW_NAME, TIME = 4, 5

KIND_OF_NAME_KEY = dict(zip((SUM_NAME, GAUGE_NAME, HISTOGRAM_NAME), METRIC_KINDS, strict=True))
_NAME_KEY_OF_KIND = {kind: key for key, kind in KIND_OF_NAME_KEY.items()}


def aggregate_record(kind: str, name: Any, value: Any, attributes: dict[str, Any]) -> dict:
    """The record ``count``/``gauge``/``distribution`` append for ``kind``, as a new dict (tests, ``fold``)."""
    out: dict = dict(attributes)
    out[VALUE] = value
    out[_NAME_KEY_OF_KIND[kind]] = name
    return out


def raw_record(name: Any, value: Any, timestamp: float, attributes: dict[str, Any]) -> dict:
    """The record ``emit`` appends, as a new dict (tests)."""
    out: dict = dict(attributes)
    out[VALUE] = value
    out[RAW_NAME] = name
    out[TIME] = timestamp
    return out
