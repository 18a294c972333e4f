"""What the caller appends: its own keyword-arguments dict, with the record's fields stored in it.

Appending that dict allocates nothing more, and a dict of strings and numbers is not tracked by CPython's
garbage collector, where a tuple holding a dict is: at 200k records/s the records waiting in the buffer were
promoted to the oldest generation and set off a full collection of the whole heap every few hundred
milliseconds. The worker takes the fields out again.

``count``/``gauge``/``distribution`` (the hot path) store their fields under *str* keys: a dict whose keys
are all strings stays a compact string-keyed dict, and adding an int key converts it (a new table, about
0.15 µs a call in the paced harness). A caller can pass an attribute with the same name only through
``**{...}``; then the dict keeps the caller's key object and the value is overwritten. The worker knows the
client's own key objects by identity (these constants: a string with a NUL is never interned, so no other
equal string is the same object), so such a record is found and dropped as ``invalid``, never folded with the
caller's attribute silently replaced.

``emit`` (raw points, encoded one by one anyway) stores its fields under int keys, which no keyword can be.
"""

from __future__ import annotations

from typing import Any

from telemetry_shunt.core.contract import METRIC_KINDS

# count/gauge/distribution: the value, and the name under the key of the record's kind (the key says the kind).
VALUE = "\x00value"
SUM_NAME, GAUGE_NAME, HISTOGRAM_NAME = "\x00sum", "\x00gauge", "\x00histogram"
# emit: the value, the name and the timestamp (seconds since the epoch, read in the caller's thread).
RAW_VALUE, RAW_NAME, TIME = 1, 4, 5

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
    out[RAW_VALUE] = value
    out[RAW_NAME] = name
    out[TIME] = timestamp
    return out
