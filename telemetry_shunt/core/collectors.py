"""Collector configurations for the buffer fleet, rendered as plain data.

The buffer fleet runs Vector (the ``/metrics`` route, newline-delimited JSON) and the OpenTelemetry
Collector (the OTLP/HTTP routes) on Fargate. Their configurations are rendered here by pure functions
into dicts, serialized as JSON (Vector reads JSON with ``--config-json``; JSON is valid YAML for the
collector) and checked as data: every route has a source, every source reaches a sink, the disk
buffers fit the task's ephemeral storage and no health endpoint listens on loopback. No CDK, no
collector binary.

Secrets never appear in a rendered config: a vendor credential is a :class:`SecretEnv`, rendered as
an environment reference (``${NAME}`` for Vector, ``${env:NAME}`` for the collector) that the
fleet fills from Secrets Manager when the task starts.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar

from telemetry_shunt.core import contract
from telemetry_shunt.core.validation import is_token
from telemetry_shunt.errors import ValidationError

MIB = 1024**2
GIB = 1024**3

# Vector refuses a disk buffer below this many bytes (its documented minimum, ~256 MiB). A Vector disk
# buffer's max_size bounds its data files on disk: one buffer per sink.
VECTOR_MIN_DISK_BUFFER_BYTES = 268_435_488
# The collector opens one persistent queue per exporter *and per signal* (exporterhelper keys its
# storage client by exporter id and signal), each a bbolt file in file_storage's directory. The queue
# is sized in bytes (``sizer: bytes``, the requests' serialized size). bbolt grows its file by doubling
# up to 1 GiB and then 1 GiB at a time (bbolt's mmap sizing), so a queue holding q bytes may occupy
# q + min(q, 1 GiB) on disk. Compaction on start (one queue at a time: components start in turn)
# copies a queue's live data to a new file first, so one more queue's worth of disk stays free.
OTEL_BATCH_MAX_ITEMS = 4096
OTEL_BBOLT_GROWTH_STEP_BYTES = 1 * GIB
# The smallest queue worth having: about a minute of a vendor outage at typical load.
OTEL_MIN_QUEUE_BYTES = 100 * MIB
MIN_BUFFER_BYTES = MappingProxyType({"vector": VECTOR_MIN_DISK_BUFFER_BYTES, "otel": OTEL_MIN_QUEUE_BYTES})

# Fargate task ephemeral storage: 20 GiB by default, configurable up to 200 GiB. Image layers, the
# rendered config and the collector's own state share it with the buffers, so this much stays free.
EPHEMERAL_STORAGE_GIB_MIN = 20
EPHEMERAL_STORAGE_GIB_MAX = 200
STORAGE_HEADROOM_BYTES = 4 * GIB

# Where each collector keeps its buffers: a task volume mounted into the container.
BUFFER_DIRECTORY = MappingProxyType({"vector": "/var/lib/vector", "otel": "/var/lib/otelcol/buffer"})
VECTOR_CONFIG_FILE = "/var/lib/vector/vector.json"

# Environment variables the fleet sets on every collector container (never secrets).
ENV_REGION = "AWS_REGION"
ENV_ARCHIVE_BUCKET = "ARCHIVE_BUCKET"
ENV_METRICS_LOG_GROUP = "COLLECTOR_METRICS_LOG_GROUP"
RUNTIME_ENV = (ENV_REGION, ENV_ARCHIVE_BUCKET, ENV_METRICS_LOG_GROUP)
# The environment variable that carries the rendered config into the container. Not VECTOR_CONFIG_JSON:
# Vector reads that variable as a list of config *paths* (the env form of --config-json).
CONFIG_ENV = MappingProxyType({"vector": "SHUNT_VECTOR_CONFIG", "otel": "SHUNT_OTEL_CONFIG"})

# What both collectors publish about themselves, under the same names, for alarms and scaling.
METRICS_NAMESPACE = "TelemetryShunt/Collector"
COLLECTOR_DIMENSION = "Collector"
# Which fleet published a datapoint, so two fleets in one account and Region never mix.
FLEET_DIMENSION = "Fleet"
DEFAULT_FLEET_NAME = "telemetry-shunt"
_FLEET_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}", re.ASCII)
METRIC_INGESTED = "IngestedEvents"
METRIC_DROPPED = "DroppedEvents"
METRIC_SINK_ERRORS = "SinkErrors"
COLLECTOR_METRICS = (METRIC_INGESTED, METRIC_DROPPED, METRIC_SINK_ERRORS)
SELF_METRICS_INTERVAL_SECONDS = 60

# Retries toward the vendor and the archive: first after 5 s, backing off to at most 30 s.
RETRY_INITIAL_SECONDS = 5
RETRY_MAX_SECONDS = 30
# The awss3 exporter (contrib 0.139) has no retry_on_failure: its AWS SDK client retries each upload.
S3_RETRY_MAX_ATTEMPTS = 10
# Vector scrapes its own counters this often and turns them into per-minute deltas per component
# (several scrapes per window, so every series is seen in every window).
VECTOR_SELF_SCRAPE_SECONDS = 10

_ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}", re.ASCII)
_SINK_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}", re.ASCII)
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", re.ASCII)
# Header values: visible ASCII and inner spaces only (no CR, LF or other control characters, which
# would split or smuggle headers).
_HEADER_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?", re.ASCII)
_CREDENTIAL_HEADER = re.compile(r"auth|token|key|secret|passw|credential|session|signature|team|license", re.I)
_CREDENTIAL_VALUE = re.compile(r"(?:bearer|basic|token|apikey|api-key|dsn)\s+\S.*|[A-Za-z0-9_\-+/=.:]{20,}", re.I | re.ASCII)
_ENV_REFERENCE = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)\}")
_OTLP_PATH = re.compile(r"(?:/[A-Za-z0-9._~-]+)*/v1/(traces|metrics|logs)", re.ASCII)
# An https URL: a DNS host, an optional port and a path of RFC 3986 characters (no '$', '\\', quotes,
# spaces or control characters, which would change meaning in the collectors' configs).
_HTTPS_URL = re.compile(
    r"https://[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%!&'()*+,;=:@-]*)*",
    re.ASCII,
)
_ARCHIVE_PREFIX = re.compile(r"(?:[A-Za-z0-9!_.*'()-]+/)*", re.ASCII)
_PATH = re.compile(r"/[A-Za-z0-9._~/-]*", re.ASCII)
_LOOPBACK = ("127.", "localhost", "[::1]", "::1")


class FullPolicy(StrEnum):
    """What a collector does when its buffer is full.

    ``DROP_NEWEST`` (the default) drops at the concentrator and keeps accepting, so senders never
    wait; ``BLOCK`` pushes backpressure back through the gateway to the senders, which is what the
    in-app client must never feel, so choose it only for senders that buffer themselves.
    """

    DROP_NEWEST = "drop_newest"
    BLOCK = "block"


def _full_policy(value: FullPolicy | str) -> FullPolicy:
    try:
        return FullPolicy(value)
    except ValueError:
        raise ValidationError(
            f"full-buffer policy {value!r} is not one of {', '.join(p.value for p in FullPolicy)}"
        ) from None


@dataclass(frozen=True)
class SecretEnv:
    """A credential the collector reads from environment variable ``name``.

    The fleet fills the variable from a Secrets Manager secret when the task starts (ECS ``secrets``),
    so the value is never in the template or in the rendered config.
    """

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _ENV_NAME.fullmatch(self.name):
            raise ValidationError(
                f"secret environment variable {self.name!r} must be 1-64 of A-Z, 0-9 and _, starting with a letter"
            )
        if self.name in RUNTIME_ENV or self.name in CONFIG_ENV.values():
            raise ValidationError(f"secret environment variable {self.name!r} is reserved by the fleet; pick another name")

    def vector_ref(self) -> str:
        return "${" + self.name + "}"

    def otel_ref(self) -> str:
        return "${env:" + self.name + "}"


HeaderValue = str | SecretEnv


def _check_header(sink: str, name: str, value: object) -> None:
    if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
        raise ValidationError(f"sink {sink!r}: header name {name!r} is not a valid HTTP header name")
    if isinstance(value, SecretEnv):
        return
    if not isinstance(value, str):
        raise ValidationError(f"sink {sink!r}: header {name!r} must be a string or a SecretEnv, got {type(value).__name__}")
    advice = (
        "store the credential in Secrets Manager and pass SecretEnv('VENDOR_API_KEY') here with "
        "secrets={'VENDOR_API_KEY': <ISecret>} on the fleet; a plain value would be written into the "
        "CloudFormation template and the task definition"
    )
    if not _HEADER_VALUE.fullmatch(value):
        # Never echo the value: it may be a credential.
        raise ValidationError(
            f"sink {sink!r}: header {name!r} must be visible ASCII characters (inner spaces allowed) without "
            "control characters such as CR or LF, which would split the request's headers; fix the value"
        )
    if "$" in value:
        raise ValidationError(
            f"sink {sink!r}: header {name!r} looks like an environment reference written by hand; "
            f"use SecretEnv instead so the fleet injects the secret: {advice}"
        )
    if _CREDENTIAL_HEADER.search(name) or _CREDENTIAL_VALUE.fullmatch(value):
        # Name the header, never echo the value: it is probably a live credential.
        raise ValidationError(f"sink {sink!r}: header {name!r} carries a plain-text credential; {advice}")


@dataclass(frozen=True)
class OtlpHttpSink:
    """A vendor that accepts OTLP/HTTP at ``endpoint`` (the base URL; ``/v1/<signal>`` is appended).

    ``headers`` values that are credentials must be :class:`SecretEnv`; plain strings are allowed only
    for non-secret headers (e.g. a tenant id) and are refused when they look like a credential.
    """

    endpoint: str
    headers: Mapping[str, HeaderValue] = field(default_factory=dict)
    name: str = "vendor"
    compression: str = "gzip"
    type: ClassVar[str] = "otlp_http"

    def __post_init__(self) -> None:
        _check_sink_name(self.name)
        if is_token(self.endpoint):
            raise ValidationError(
                f"sink {self.name!r}: endpoint {self.endpoint!r} is a deploy-time token; the collector config is "
                "rendered and encoded at synth time, so pass the vendor's URL as a plain string"
            )
        if not isinstance(self.endpoint, str) or not self.endpoint.startswith("https://"):
            raise ValidationError(
                f"sink {self.name!r}: endpoint {self.endpoint!r} must be an https:// URL (telemetry leaves the "
                "concentrator encrypted)"
            )
        if not _HTTPS_URL.fullmatch(self.endpoint):
            raise ValidationError(
                f"sink {self.name!r}: endpoint {self.endpoint!r} must be https://host[:port][/path] with URL "
                "characters only (no '$', '\\', quotes, spaces or control characters)"
            )
        if self.compression not in ("gzip", "none"):
            raise ValidationError(f"sink {self.name!r}: compression {self.compression!r} must be 'gzip' or 'none'")
        if not isinstance(self.headers, Mapping):
            raise ValidationError(f"sink {self.name!r}: headers must be a mapping of header name to value")
        for header, value in self.headers.items():
            _check_header(self.name, header, value)
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))

    @property
    def secrets(self) -> tuple[SecretEnv, ...]:
        return tuple(v for v in self.headers.values() if isinstance(v, SecretEnv))

    def signal_url(self, signal: str) -> str:
        return self.endpoint.rstrip("/") + f"/v1/{signal}"


@dataclass(frozen=True)
class S3ArchiveSink:
    """The durable archive: every accepted record, gzip-compressed, under ``prefix`` in the fleet's bucket.

    The bucket (encrypted, with lifecycle rules) belongs to the fleet; the collector learns its name
    from the environment, so the rendered config stays the same across environments.
    """

    prefix: str = "archive/"
    name: str = "archive"
    type: ClassVar[str] = "s3_archive"

    def __post_init__(self) -> None:
        _check_sink_name(self.name)
        if not isinstance(self.prefix, str) or not _ARCHIVE_PREFIX.fullmatch(self.prefix) or len(self.prefix) > 200:
            raise ValidationError(
                f"sink {self.name!r}: archive prefix {self.prefix!r} must be '' or path segments ending in '/', "
                "without a leading '/'"
            )

    @property
    def secrets(self) -> tuple[SecretEnv, ...]:
        return ()


Sink = OtlpHttpSink | S3ArchiveSink
SINK_TYPES: Mapping[str, type] = MappingProxyType({OtlpHttpSink.type: OtlpHttpSink, S3ArchiveSink.type: S3ArchiveSink})


def _check_sink_name(name: object) -> None:
    if not isinstance(name, str) or not _SINK_NAME.fullmatch(name):
        raise ValidationError(f"sink name {name!r} must be 1-32 of a-z, 0-9 and _, starting with a letter")


def parse_sink(spec: Mapping[str, Any]) -> Sink:
    """A sink from configuration data, e.g. ``{"type": "otlp_http", "endpoint": "https://...",
    "headers": {"api-key": {"secret_env": "VENDOR_API_KEY"}}}`` or ``{"type": "s3_archive"}``."""
    if not isinstance(spec, Mapping):
        raise ValidationError(f"a sink must be a mapping with a 'type', got {spec!r}")
    kind = spec.get("type")
    if kind not in SINK_TYPES:
        raise ValidationError(f"unknown sink type {kind!r}: use one of {', '.join(SINK_TYPES)}")
    args = {k: v for k, v in spec.items() if k != "type"}
    if "headers" in args:
        headers = args["headers"]
        if not isinstance(headers, Mapping):
            raise ValidationError(f"sink headers must be a mapping, got {headers!r}")
        args["headers"] = {
            k: SecretEnv(v["secret_env"]) if isinstance(v, Mapping) and set(v) == {"secret_env"} else v
            for k, v in headers.items()
        }
    try:
        return SINK_TYPES[kind](**args)
    except TypeError as exc:
        raise ValidationError(f"sink of type {kind!r}: {exc}") from None


def validate_sinks(sinks: Iterable[object]) -> tuple[Sink, ...]:
    """At least one sink, each a known sink type, names unique."""
    sinks = tuple(sinks)
    if not sinks:
        raise ValidationError("no sinks: add OtlpHttpSink(endpoint=...) for the vendor and/or S3ArchiveSink()")
    for s in sinks:
        if not isinstance(s, tuple(SINK_TYPES.values())):
            kind = s.get("type") if isinstance(s, Mapping) else type(s).__name__
            raise ValidationError(
                f"unknown sink type {kind!r}: use OtlpHttpSink or S3ArchiveSink (or parse_sink for configuration data)"
            )
    names = [s.name for s in sinks]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValidationError(f"duplicate sink name(s) {dup}: give each sink its own name")
    return sinks  # type: ignore[return-value]


def check_secret_names(sinks: Iterable[Sink], given: Iterable[str]) -> None:
    """The secrets given must be exactly those the sinks' headers reference (SecretEnv): none missing, none unused."""
    needed, names = set(required_secrets(sinks)), set(given)
    missing = sorted(needed - names)
    if missing:
        raise ValidationError(f"sinks read credentials from {missing} but secrets has no entry for them")
    unused = sorted(names - needed)
    if unused:
        raise ValidationError(f"secrets {unused} are not referenced by any sink header (SecretEnv); check the names")


def required_secrets(sinks: Iterable[Sink]) -> tuple[str, ...]:
    """Environment variable names the sinks read credentials from (sorted, unique)."""
    return tuple(sorted({s.name for sink in sinks for s in sink.secrets}))


@dataclass(frozen=True)
class BufferPolicy:
    """How much disk the buffers get and what happens when they are full.

    ``max_bytes`` is the total across a task's sinks (each sink gets an equal share); ``None`` fills
    the task's ephemeral storage minus :data:`STORAGE_HEADROOM_BYTES`. ``when_full`` defaults to
    dropping the newest events at the concentrator.
    """

    max_bytes: int | None = None
    when_full: FullPolicy = FullPolicy.DROP_NEWEST

    def __post_init__(self) -> None:
        object.__setattr__(self, "when_full", _full_policy(self.when_full))
        if self.max_bytes is not None and (
            not isinstance(self.max_bytes, int) or isinstance(self.max_bytes, bool) or self.max_bytes <= 0
        ):
            raise ValidationError(f"buffer max_bytes must be a positive whole number of bytes, got {self.max_bytes!r}")

    @staticmethod
    def mib(size_mib: int, when_full: FullPolicy | str = FullPolicy.DROP_NEWEST) -> BufferPolicy:
        if not isinstance(size_mib, int) or isinstance(size_mib, bool) or size_mib <= 0:
            raise ValidationError(f"buffer size {size_mib!r} MiB must be a positive whole number of MiB")
        return BufferPolicy(max_bytes=size_mib * MIB, when_full=_full_policy(when_full))


@dataclass(frozen=True)
class BufferPlan:
    """The disk buffers of one collector task, on its ephemeral storage.

    Each sink has ``queues_per_sink`` buffers (Vector: one disk buffer per sink; the collector: one
    persistent queue per signal) of ``queue_bytes`` each. ``disk_bytes`` is the most they occupy on
    disk together, with the collector's bbolt growth and compaction headroom.
    """

    collector: str
    sink_names: tuple[str, ...]
    queues_per_sink: int
    queue_bytes: int
    when_full: FullPolicy
    ephemeral_storage_gib: int

    @property
    def queue_count(self) -> int:
        return self.queues_per_sink * len(self.sink_names)

    @property
    def disk_bytes(self) -> int:
        return disk_bytes_for_queues(self.collector, [self.queue_bytes] * self.queue_count)

    @property
    def total_bytes(self) -> int:
        """Bytes of data the buffers hold when full (all queues of all sinks)."""
        return self.queue_bytes * self.queue_count


def otel_queue_disk_bytes(queue_bytes: int) -> int:
    """The most disk one persistent queue of ``queue_bytes`` occupies (bbolt grows its file in steps)."""
    return queue_bytes + min(queue_bytes, OTEL_BBOLT_GROWTH_STEP_BYTES)


def disk_bytes_for_queues(collector: str, queue_bytes: Sequence[int]) -> int:
    """Worst-case disk use of a task's buffers: every queue full, plus the collector's compaction copy."""
    if collector == "vector":
        return sum(queue_bytes)
    files = [otel_queue_disk_bytes(q) for q in queue_bytes]
    return sum(files) + max(files, default=0)


def _otel_queue_bytes_for_share(share: int) -> int:
    # The largest q with q + min(q, 1 GiB) <= share.
    return max(share // 2, share - OTEL_BBOLT_GROWTH_STEP_BYTES)


def usable_buffer_bytes(ephemeral_storage_gib: int) -> int:
    return ephemeral_storage_gib * GIB - STORAGE_HEADROOM_BYTES


def plan_buffers(
    collector: str,
    sinks: Sequence[Sink],
    *,
    ephemeral_storage_gib: int = EPHEMERAL_STORAGE_GIB_MIN,
    policy: BufferPolicy | None = None,
    queues_per_sink: int = 1,
) -> BufferPlan:
    """Size the disk buffers of ``collector`` from the task's ephemeral storage.

    ``queues_per_sink`` is how many buffers each sink opens: 1 for Vector, the number of routed
    signals for the collector (one persistent queue per exporter and signal). Raises
    :class:`ValidationError` when the buffers would not fit the storage (after headroom) or a
    queue is below the collector's minimum.
    """
    policy = policy or BufferPolicy()
    _check_collector(collector)
    sinks = validate_sinks(sinks)
    if not isinstance(ephemeral_storage_gib, int) or isinstance(ephemeral_storage_gib, bool) or not (
        EPHEMERAL_STORAGE_GIB_MIN <= ephemeral_storage_gib <= EPHEMERAL_STORAGE_GIB_MAX
    ):
        raise ValidationError(
            f"ephemeral_storage_gib {ephemeral_storage_gib!r} is outside what Fargate offers "
            f"({EPHEMERAL_STORAGE_GIB_MIN}-{EPHEMERAL_STORAGE_GIB_MAX} GiB)"
        )
    if not isinstance(queues_per_sink, int) or isinstance(queues_per_sink, bool) or not 1 <= queues_per_sink <= 3:
        raise ValidationError(f"queues_per_sink {queues_per_sink!r} must be 1, 2 or 3 (one per routed signal)")
    if collector == "vector" and queues_per_sink != 1:
        raise ValidationError("Vector opens one disk buffer per sink: queues_per_sink must be 1")
    usable = usable_buffer_bytes(ephemeral_storage_gib)
    total = usable if policy.max_bytes is None else policy.max_bytes
    if total > usable:
        raise ValidationError(
            f"buffer of {total / GIB:.2f} GiB does not fit the task's {ephemeral_storage_gib} GiB ephemeral storage "
            f"({usable / GIB:.0f} GiB usable after {STORAGE_HEADROOM_BYTES // GIB} GiB for the image and logs): "
            "lower max_bytes or raise ephemeral_storage_gib"
        )
    queues = len(sinks) * queues_per_sink
    if collector == "vector":
        queue_bytes = total // queues
    else:
        # One share per queue plus one for compaction on start.
        queue_bytes = _otel_queue_bytes_for_share(total // (queues + 1))
    minimum = MIN_BUFFER_BYTES[collector]
    if queue_bytes < minimum:
        what = "disk buffer" if collector == "vector" else "persistent queue"
        needed = minimum * queues if collector == "vector" else otel_queue_disk_bytes(minimum) * (queues + 1)
        raise ValidationError(
            f"{collector} buffer of {total} bytes gives each of {queues} {what}(s) ({len(sinks)} sink(s) x "
            f"{queues_per_sink}) {queue_bytes} bytes, below the {collector} minimum of {minimum} bytes "
            f"({minimum / MIB:.0f} MiB) per {what}: raise max_bytes to at least {needed} or use fewer sinks"
        )
    plan = BufferPlan(collector, tuple(s.name for s in sinks), queues_per_sink, queue_bytes, policy.when_full,
                      ephemeral_storage_gib)
    assert plan.disk_bytes <= total, (plan, total)
    return plan


def _check_collector(collector: object) -> None:
    if collector not in contract.COLLECTOR_KINDS:
        raise ValidationError(f"collector {collector!r} is not one of {', '.join(contract.COLLECTOR_KINDS)}")


def group_paths(routes: Iterable[Any]) -> dict[str, tuple[str, ...]]:
    """``{collector: paths}`` from route objects with ``.path`` and ``.collector`` (e.g. ``core.routes.Route``)."""
    grouped: dict[str, list[str]] = {}
    for route in routes:
        path = getattr(route, "path", None)
        collector = getattr(route, "collector", None)
        if not collector:
            raise ValidationError(f"route {path!r} has no collector: set it to one of {', '.join(contract.COLLECTOR_KINDS)}")
        grouped.setdefault(collector, []).append(path)
    return validate_paths(grouped)


def validate_paths(paths_by_collector: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """Check ``{collector: paths}``: known collectors, absolute unique paths, OTLP paths per signal."""
    if not paths_by_collector:
        raise ValidationError("no routes: the fleet needs at least one path for a collector, e.g. {'vector': ['/metrics']}")
    seen: dict[str, str] = {}
    out: dict[str, tuple[str, ...]] = {}
    for collector, paths in paths_by_collector.items():
        if collector not in contract.COLLECTOR_KINDS:
            raise ValidationError(
                f"paths {list(paths)!r} are routed to {collector!r}, which is no collector: use one of "
                f"{', '.join(contract.COLLECTOR_KINDS)}"
            )
        if isinstance(paths, str) or not paths:
            raise ValidationError(f"collector {collector!r} needs a list of at least one path, got {paths!r}")
        for path in paths:
            if not isinstance(path, str) or not _PATH.fullmatch(path) or "//" in path:
                raise ValidationError(f"route path {path!r} must be an absolute path such as '/metrics'")
            if path in seen:
                raise ValidationError(f"route path {path!r} is given to both {seen[path]!r} and {collector!r}")
            seen[path] = collector
        if collector == "otel":
            _otlp_signals(paths)
        out[collector] = tuple(paths)
    return out


def _otlp_signals(paths: Sequence[str]) -> dict[str, str]:
    signals: dict[str, str] = {}
    for path in paths:
        m = _OTLP_PATH.fullmatch(path)
        if not m:
            raise ValidationError(
                f"OTLP route {path!r} must end in /v1/traces, /v1/metrics or /v1/logs (the collector tells "
                "signals apart by path)"
            )
        if m.group(1) in signals:
            raise ValidationError(f"OTLP routes {signals[m.group(1)]!r} and {path!r} both carry {m.group(1)}")
        signals[m.group(1)] = path
    return signals


# --- Vector ------------------------------------------------------------------------------------------

# VRL: keep only records in the /metrics wire format (core/contract.py), exactly as the client sends them:
# a raw sample (name, value, timestamp, attributes), or an aggregate of one series, which also carries
# "kind", "start" and "count", and for a histogram "sum", "min", "max", "scale", "zero_count" and the
# "positive"/"negative" buckets. Anything else (an unknown kind, a negative sum, a histogram without its
# buckets or whose buckets do not add up to its count) is dropped and counted here. The record is rebuilt
# field by field into ``record`` (the dedupe ids and the gateway's path go), so ``to_otlp`` can read it
# with known types.
_VRL_RECORD_CHECK = """\
if !is_string(.name) || .name == "" { abort }
if !is_float(.value) && !is_integer(.value) { abort }
if !is_float(.timestamp) && !is_integer(.timestamp) { abort }
if exists(.attributes) && !is_object(.attributes) { abort }
record = {"name": .name, "value": .value, "timestamp": .timestamp, "attributes": object(.attributes) ?? {}}
if exists(.kind) {
  if !includes(KINDS, .kind) { abort }
  if !is_float(.start) && !is_integer(.start) { abort }
  if !is_integer(.count) || (to_int(.count) ?? -1) < 0 { abort }
  if .kind == "sum" && (to_float(.value) ?? -1.0) < 0.0 { abort }
  record.kind = .kind
  record.start = .start
  record.count = .count
  if .kind == "histogram" {
    ok = true
    for_each(["sum", "min", "max"]) -> |_index, field| {
      number = get(., [field]) ?? null
      if !is_float(number) && !is_integer(number) { ok = false }
    }
    if !is_integer(.scale) || !is_integer(.zero_count) || (to_int(.zero_count) ?? -1) < 0 { abort }
    total = to_int(.zero_count) ?? 0
    for_each(["positive", "negative"]) -> |_index, side| {
      buckets = get(., [side]) ?? null
      if !is_object(buckets) || !is_integer(get(buckets, ["offset"]) ?? null) { ok = false }
      for_each(array(get(buckets, ["bucket_counts"]) ?? null) ?? [null]) -> |_i, n| {
        if !is_integer(n) || (to_int(n) ?? -1) < 0 { ok = false }
        total = total + (to_int(n) ?? 0)
      }
    }
    # OTLP: count is zero_count plus every bucket's count.
    if !ok || total != (to_int(.count) ?? -1) { abort }
    record.sum = .sum
    record.min = .min
    record.max = .max
    record.scale = .scale
    record.zero_count = .zero_count
    record.positive = {"offset": .positive.offset, "bucket_counts": .positive.bucket_counts}
    record.negative = {"offset": .negative.offset, "bucket_counts": .negative.bucket_counts}
  }
}
""".replace("KINDS", json.dumps(list(contract.METRIC_KINDS)))
# The archive's records: the checked record, aggregate fields included.
_VRL_RECORDS = _VRL_RECORD_CHECK + ". = record\n"

# VRL: one record as an OTLP ExportMetricsServiceRequest for the otlp codec, which encodes it with the
# proto's JSON field names (lowerCamelCase; enums by name), i.e. the OTLP/JSON mapping:
#   "sum"       -> Sum, AGGREGATION_TEMPORALITY_DELTA, isMonotonic, startTimeUnixNano from "start"
#   "histogram" -> ExponentialHistogram, delta: count, sum, min, max, scale, zeroCount, positive/negative
#   "gauge", and a raw sample (no "kind") -> Gauge
# The codec needs whole numbers for the fixed64/uint64/sint32 fields (nanoseconds, counts, scale, offsets)
# and numbers for the doubles. It reads the gateway's events, as ``records`` does (and drops the same
# malformed ones, counted once, by ``records``), never ``records``' typed output: with Vector's
# ``schema.enabled`` on, a field that ``records`` made an object would make ``object(...) ?? {}`` an
# "unnecessary error coalesce" compile error; on raw events every coercion below is fallible whether
# the schema is on or off. After the checks it reads only ``record``, whose types VRL knows.
_VRL_TO_OTLP = _VRL_RECORD_CHECK + """\
attrs = []
for_each(record.attributes) -> |key, value| {
  attrs = push(attrs, {"key": key, "value": {"stringValue": to_string(value) ?? ""}})
}
point = {"timeUnixNano": to_int((to_float(record.timestamp) ?? 0.0) * 1000000000.0), "attributes": attrs}
kind = record.kind
metric = {}
if kind == "sum" || kind == "histogram" {
  point.startTimeUnixNano = to_int((to_float(record.start) ?? 0.0) * 1000000000.0)
}
if kind == "sum" {
  point.asDouble = to_float(record.value) ?? 0.0
  metric = {"name": record.name, "sum": {
    "aggregationTemporality": "AGGREGATION_TEMPORALITY_DELTA", "isMonotonic": true, "dataPoints": [point]
  }}
} else if kind == "histogram" {
  point.count = to_int(record.count) ?? 0
  point.sum = to_float(record.sum) ?? 0.0
  point.min = to_float(record.min) ?? 0.0
  point.max = to_float(record.max) ?? 0.0
  point.scale = to_int(record.scale) ?? 0
  point.zeroCount = to_int(record.zero_count) ?? 0
  point.positive = {"offset": to_int(record.positive.offset) ?? 0, "bucketCounts": record.positive.bucket_counts}
  point.negative = {"offset": to_int(record.negative.offset) ?? 0, "bucketCounts": record.negative.bucket_counts}
  metric = {"name": record.name, "exponentialHistogram": {
    "aggregationTemporality": "AGGREGATION_TEMPORALITY_DELTA", "dataPoints": [point]
  }}
} else {
  point.asDouble = to_float(record.value) ?? 0.0
  metric = {"name": record.name, "gauge": {"dataPoints": [point]}}
}
. = {"resourceMetrics": [{
  "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "telemetry-shunt"}}]},
  "scopeMetrics": [{"scope": {"name": "telemetry-shunt"}, "metrics": [metric]}]
}]}
"""

# Components whose own counters are not the fleet's: the self-metrics path, and to_otlp, whose
# discards repeat those of records (both drop the same malformed records; records counts them).
_SELF_COMPONENTS = ("self_select", "self_deltas", "self_rename", "to_otlp")
_VRL_SELF_SELECT = " || ".join(
    [
        '(.name == "component_received_events_total" && .tags.component_id == "gateway_http")',
        '((.name == "buffer_discarded_events_total" || .name == "component_discarded_events_total")'
        f' && !includes({json.dumps(list(_SELF_COMPONENTS))}, .tags.component_id))',
        '(.name == "component_errors_total" && .tags.component_kind == "sink")',
    ]
)
# Runs after self_deltas, so each event is one component's count for the last window: only then may
# the component tags go. Marked incremental, the CloudWatch sink sums them per (name, tags) instead of
# taking deltas between different components' running totals.
_VRL_SELF_RENAME = """\
if .name == "component_received_events_total" {{
  .name = "{ingested}"
}} else if .name == "component_errors_total" {{
  .name = "{sink_errors}"
}} else {{
  .name = "{dropped}"
}}
.namespace = "{namespace}"
.kind = "incremental"
.tags = {{"{collector}": "vector", "{fleet}": "{fleet_name}"}}
"""


def _check_fleet_name(fleet_name: object) -> str:
    if not isinstance(fleet_name, str) or not _FLEET_NAME.fullmatch(fleet_name):
        raise ValidationError(f"fleet name {fleet_name!r} must be 1-128 of A-Z, a-z, 0-9, '.', '_' and '-'")
    return fleet_name


def _slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_") or "root"


# The in-app client's batch id and record index (contract: the /metrics wire format). A batch retried after
# a request that did arrive (at-least-once delivery) repeats its records with the same (batch_id, seq): the
# /metrics route drops a record this task has seen among its last DEDUPE_CACHE_EVENTS. Per task, so best
# effort: Lattice may send a retry to another task. The other fields are part of the key so that records
# without an id (another sender) collapse only when identical in every field.
DEDUPE_FIELDS = (contract.RECORD_BATCH_ID_FIELD, contract.RECORD_SEQ_FIELD, "name", "value", "timestamp", "attributes")
DEDUPE_CACHE_EVENTS = 100_000


def _dedupe_metrics(transforms: dict[str, Any], record_inputs: list[str], paths: Sequence[str]) -> list[str]:
    """Add the dedupe stage right after the HTTP source when the fleet serves ``/metrics``; returns the
    record inputs to use (with several paths the route reads from the dedupe stage instead)."""
    if contract.METRICS_PATH not in paths:
        return record_inputs
    transforms["dedupe_metrics"] = {
        "type": "dedupe", "inputs": ["gateway_http"],
        "fields": {"match": list(DEDUPE_FIELDS)}, "cache": {"num_events": DEDUPE_CACHE_EVENTS},
    }
    if "by_path" in transforms:
        transforms["by_path"]["inputs"] = ["dedupe_metrics"]
        return record_inputs
    return ["dedupe_metrics" if name == "gateway_http" else name for name in record_inputs]


def render_vector_config(
    *, paths: Sequence[str], sinks: Sequence[Sink], buffer: BufferPlan, fleet_name: str = DEFAULT_FLEET_NAME
) -> dict[str, Any]:
    """Vector: an ``http_server`` source for the gateway's paths, a disk-buffered sink per ``sinks``.

    ``/metrics`` carries newline-delimited JSON records (optionally gzip; Vector decodes by
    ``Content-Encoding``). Records in the wire format go to the archive as they are and to OTLP
    vendors as gauge data points; anything else is dropped and counted. The API (``/health``) binds
    0.0.0.0 so Lattice can health-check it; Vector's own metrics go to CloudWatch.
    """
    paths = validate_paths({"vector": paths})["vector"]
    sinks = validate_sinks(sinks)
    _check_plan(buffer, "vector", sinks)
    single = len(paths) == 1
    sources: dict[str, Any] = {
        "gateway_http": {
            "type": "http_server",
            "address": f"0.0.0.0:{contract.VECTOR_HTTP_PORT}",
            "method": "POST",
            "path": paths[0] if single else "/",
            "strict_path": single,
            "path_key": "shunt_path",
            "decoding": {"codec": "json"},
            "framing": {"method": "newline_delimited", "newline_delimited": {"max_length": contract.METRICS_MAX_RECORD_BYTES}},
        },
        "self_metrics": {"type": "internal_metrics", "scrape_interval_secs": VECTOR_SELF_SCRAPE_SECONDS},
    }
    transforms: dict[str, Any] = {}
    if single:
        record_inputs = ["gateway_http"]
    else:
        routes = {_slug(p): f'.shunt_path == "{p}"' for p in paths}
        transforms["by_path"] = {"type": "route", "inputs": ["gateway_http"], "route": routes}
        record_inputs = [f"by_path.{name}" for name in routes]
    record_inputs = _dedupe_metrics(transforms, record_inputs, paths)
    transforms["records"] = {
        "type": "remap",
        "inputs": record_inputs,
        "source": _VRL_RECORDS,
        "drop_on_error": True,
        "drop_on_abort": True,
    }
    if any(isinstance(s, OtlpHttpSink) for s in sinks):
        transforms["to_otlp"] = {
            "type": "remap", "inputs": list(record_inputs), "source": _VRL_TO_OTLP,
            "drop_on_error": True, "drop_on_abort": True,
        }
    transforms["self_select"] = {"type": "filter", "inputs": ["self_metrics"], "condition": _VRL_SELF_SELECT}
    # Per series (name and every tag, so per component): the increase over the last window.
    transforms["self_deltas"] = {
        "type": "aggregate", "inputs": ["self_select"], "mode": "Diff",
        "interval_ms": SELF_METRICS_INTERVAL_SECONDS * 1000,
    }
    rename = _VRL_SELF_RENAME.format(
        ingested=METRIC_INGESTED, sink_errors=METRIC_SINK_ERRORS, dropped=METRIC_DROPPED, namespace=METRICS_NAMESPACE,
        collector=COLLECTOR_DIMENSION, fleet=FLEET_DIMENSION, fleet_name=_check_fleet_name(fleet_name),
    )
    transforms["self_rename"] = {"type": "remap", "inputs": ["self_deltas"], "source": rename}

    disk = {"type": "disk", "max_size": buffer.queue_bytes, "when_full": buffer.when_full.value}
    rendered_sinks: dict[str, Any] = {}
    for sink in sinks:
        if isinstance(sink, OtlpHttpSink):
            headers = {"content-type": "application/x-protobuf"}
            headers.update({k: (v.vector_ref() if isinstance(v, SecretEnv) else v) for k, v in sink.headers.items()})
            rendered_sinks[sink.name] = {
                "type": "opentelemetry",
                "inputs": ["to_otlp"],
                "protocol": {
                    "type": "http",
                    "uri": sink.signal_url("metrics"),
                    "method": "post",
                    "encoding": {"codec": "otlp"},
                    # A batch is the events' protobuf messages back to back: concatenated protobuf messages
                    # of one type parse as one message with the repeated fields appended, i.e. one
                    # ExportMetricsServiceRequest. A newline between them would corrupt it.
                    "framing": {"method": "bytes"},
                    "compression": sink.compression,
                    "batch": {"max_events": 1000, "timeout_secs": 1},
                    "request": {
                        "headers": headers,
                        "retry_initial_backoff_secs": RETRY_INITIAL_SECONDS,
                        "retry_max_duration_secs": RETRY_MAX_SECONDS,
                    },
                },
                "healthcheck": {"enabled": False},
                "buffer": dict(disk),
            }
        else:
            rendered_sinks[sink.name] = {
                "type": "aws_s3",
                "inputs": ["records"],
                "bucket": "${" + ENV_ARCHIVE_BUCKET + "}",
                "region": "${" + ENV_REGION + "}",
                "key_prefix": f"{sink.prefix}vector/date=%F/",
                "compression": "gzip",
                "server_side_encryption": "AES256",
                "encoding": {"codec": "json"},
                "framing": {"method": "newline_delimited"},
                "batch": {"max_bytes": 10_000_000, "timeout_secs": 300},
                "request": {
                    "retry_initial_backoff_secs": RETRY_INITIAL_SECONDS,
                    "retry_max_duration_secs": RETRY_MAX_SECONDS,
                },
                "healthcheck": {"enabled": False},
                "buffer": dict(disk),
            }
    rendered_sinks["self_cloudwatch"] = {
        "type": "aws_cloudwatch_metrics",
        "inputs": ["self_rename"],
        "default_namespace": METRICS_NAMESPACE,
        "region": "${" + ENV_REGION + "}",
        # The healthcheck would publish a datapoint of its own on every start.
        "healthcheck": {"enabled": False},
        "buffer": {"type": "memory", "max_events": 1000, "when_full": "drop_newest"},
    }
    config = {
        "data_dir": BUFFER_DIRECTORY["vector"],
        "acknowledgements": {"enabled": True},
        "api": {"enabled": True, "address": f"0.0.0.0:{contract.VECTOR_HEALTH_PORT}", "playground": False},
        "sources": sources,
        "transforms": transforms,
        "sinks": rendered_sinks,
    }
    raise_problems(check_vector_config(config, paths=paths, ephemeral_storage_gib=buffer.ephemeral_storage_gib))
    return config


def vector_graph(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{component: [upstream components]}`` (route outputs ``by_path.x`` resolved to ``by_path``)."""
    graph: dict[str, list[str]] = {name: [] for name in config.get("sources", {})}
    for section in ("transforms", "sinks"):
        for name, component in config.get(section, {}).items():
            graph[name] = [i.split(".")[0] for i in component.get("inputs", [])]
    return graph


def _reaches_sink(graph: Mapping[str, list[str]], start: str, sinks: Iterable[str]) -> bool:
    sinks = set(sinks)
    downstream: dict[str, list[str]] = {}
    for node, inputs in graph.items():
        for i in inputs:
            downstream.setdefault(i, []).append(node)
    stack, seen = [start], set()
    while stack:
        node = stack.pop()
        if node in sinks:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(downstream.get(node, []))
    return False


def _reaches(graph: Mapping[str, list[str]], start: str, target: str) -> bool:
    """True when ``target`` reads, directly or through other transforms, from ``start``."""
    stack, seen = list(graph.get(target, [])), set()
    while stack:
        node = stack.pop()
        if node == start:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(graph.get(node, []))
    return False


def _is_loopback(address: str) -> bool:
    return address.startswith(_LOOPBACK)


def check_vector_config(config: Mapping[str, Any], *, paths: Sequence[str], ephemeral_storage_gib: int) -> list[str]:
    """Problems with a rendered Vector config, as sentences (empty when it is sound)."""
    problems: list[str] = []
    sources = config.get("sources", {})
    transforms = config.get("transforms", {})
    sinks = config.get("sinks", {})
    graph = vector_graph(config)
    for name, inputs in graph.items():
        for i in inputs:
            if i not in graph:
                problems.append(f"{name} reads from {i!r}, which does not exist")
    http = [(n, s) for n, s in sources.items() if s.get("type") == "http_server"]
    for path in paths:
        served = False
        for name, source in http:
            if source.get("path") == path and source.get("strict_path", True):
                served = True
            elif not source.get("strict_path", True):
                served = any(
                    t.get("type") == "route" and _reaches(graph, name, t_name) and f'"{path}"' in " ".join(t["route"].values())
                    for t_name, t in transforms.items()
                )
        if not served:
            problems.append(f"route {path!r} has no source")
    for name in sources:
        if not _reaches_sink(graph, name, sinks):
            problems.append(f"source {name!r} reaches no sink")
    for name, source in http:
        if _is_loopback(source.get("address", "")):
            problems.append(f"source {name!r} listens on loopback ({source['address']}); Lattice cannot reach it")
    api = config.get("api", {})
    if not api.get("enabled") or _is_loopback(api.get("address", "127.0.0.1:8686")):
        problems.append("the Vector API (the /health endpoint) is off or on loopback; Lattice health checks need 0.0.0.0")
    disk = disk_bytes_for_queues(
        "vector", [s["buffer"]["max_size"] for s in sinks.values() if s.get("buffer", {}).get("type") == "disk"]
    )
    if disk > usable_buffer_bytes(ephemeral_storage_gib):
        problems.append(f"disk buffers total {disk} bytes, more than {ephemeral_storage_gib} GiB ephemeral storage allows")
    for name, s in sinks.items():
        b = s.get("buffer", {})
        if b.get("type") == "disk" and b.get("max_size", 0) < VECTOR_MIN_DISK_BUFFER_BYTES:
            problems.append(f"sink {name!r} has a disk buffer below Vector's minimum of {VECTOR_MIN_DISK_BUFFER_BYTES} bytes")
        if b and b.get("when_full") not in [p.value for p in FullPolicy]:
            problems.append(f"sink {name!r} has no explicit full-buffer policy")
    return problems


# --- OpenTelemetry Collector -----------------------------------------------------------------------

# One rule per published name: two rules producing one name would make two metrics with one name,
# and the awsemf exporter keeps only the first of duplicates.
_OTEL_SELF_RENAMES = (
    (METRIC_INGESTED, r"^otelcol_receiver_accepted_(spans|metric_points|log_records)(_total)?$", {"receiver": "^otlp$"}),
    (
        METRIC_DROPPED,
        r"^otelcol_(exporter_enqueue_failed|processor_refused)_(spans|metric_points|log_records)(_total)?$",
        None,
    ),
    (METRIC_SINK_ERRORS, r"^otelcol_exporter_send_failed_(spans|metric_points|log_records)(_total)?$", None),
)


def _exporter_name(sink: Sink) -> str:
    return f"{'otlphttp' if isinstance(sink, OtlpHttpSink) else 'awss3'}/{sink.name}"


def render_otel_config(
    *, paths: Sequence[str], sinks: Sequence[Sink], buffer: BufferPlan, fleet_name: str = DEFAULT_FLEET_NAME
) -> dict[str, Any]:
    """The OpenTelemetry Collector: OTLP/HTTP on the gateway's paths, one pipeline per signal.

    ``memory_limiter`` runs first; every exporter has a persistent ``sending_queue`` on
    ``file_storage`` sized from the buffer plan, retries from 5 s backing off to 30 s, and either
    rejects new data when full (``drop_newest``) or blocks (``block``). The ``health_check``
    extension binds 0.0.0.0. The collector's own metrics go to CloudWatch through EMF.
    """
    paths = validate_paths({"otel": paths})["otel"]
    sinks = validate_sinks(sinks)
    _check_plan(buffer, "otel", sinks)
    signals = _otlp_signals(paths)
    http: dict[str, Any] = {"endpoint": f"0.0.0.0:{contract.OTEL_HTTP_PORT}"}
    for signal, path in signals.items():
        http[f"{signal}_url_path"] = path
    if buffer.queues_per_sink != len(signals):
        raise ValidationError(
            f"buffer plan has {buffer.queues_per_sink} queue(s) per sink but the collector routes {len(signals)} "
            "signal(s), each with its own persistent queue: plan with queues_per_sink=len(signals)"
        )
    queue = {
        "enabled": True,
        "storage": "file_storage",
        "sizer": "bytes",
        "queue_size": buffer.queue_bytes,
        "num_consumers": 4,
        "block_on_overflow": buffer.when_full is FullPolicy.BLOCK,
    }
    retry = {
        "enabled": True,
        "initial_interval": f"{RETRY_INITIAL_SECONDS}s",
        "max_interval": f"{RETRY_MAX_SECONDS}s",
        # The queue, not the retry timer, bounds how long data waits: retry until it drains or fills.
        "max_elapsed_time": "0s",
    }
    exporters: dict[str, Any] = {}
    for sink in sinks:
        if isinstance(sink, OtlpHttpSink):
            exporters[_exporter_name(sink)] = {
                "endpoint": sink.endpoint.rstrip("/"),
                "compression": sink.compression,
                "headers": {k: (v.otel_ref() if isinstance(v, SecretEnv) else v) for k, v in sink.headers.items()},
                "sending_queue": dict(queue),
                "retry_on_failure": dict(retry),
            }
        else:
            exporters[_exporter_name(sink)] = {
                "s3uploader": {
                    "region": "${env:" + ENV_REGION + "}",
                    "s3_bucket": "${env:" + ENV_ARCHIVE_BUCKET + "}",
                    "s3_prefix": f"{sink.prefix}otel",
                    "s3_partition_format": "date=%Y-%m-%d/hour=%H",
                    "compression": "gzip",
                    # No retry_on_failure at contrib 0.139: the S3 client retries each upload itself.
                    "retry_mode": "standard",
                    "retry_max_attempts": S3_RETRY_MAX_ATTEMPTS,
                    "retry_max_backoff": f"{RETRY_MAX_SECONDS}s",
                },
                "marshaler": "otlp_json",
                "sending_queue": dict(queue),
            }
    exporters["awsemf/self"] = {
        "namespace": METRICS_NAMESPACE,
        "region": "${env:" + ENV_REGION + "}",
        "log_group_name": "${env:" + ENV_METRICS_LOG_GROUP + "}",
        "log_stream_name": "otel-collector",
        "dimension_rollup_option": "NoDimensionRollup",
        "metric_declarations": [
            {
                "dimensions": [[COLLECTOR_DIMENSION, FLEET_DIMENSION]],
                "metric_name_selectors": [f"^{m}$" for m in COLLECTOR_METRICS],
            }
        ],
    }
    transforms = []
    for new_name, include, labels in _OTEL_SELF_RENAMES:
        t: dict[str, Any] = {
            "include": include,
            "match_type": "regexp",
            "action": "combine",
            "new_name": new_name,
            "operations": [{"action": "aggregate_labels", "label_set": [], "aggregation_type": "sum"}],
        }
        if labels:
            t["experimental_match_labels"] = labels
        transforms.append(t)
    sink_exporters = [_exporter_name(s) for s in sinks]
    pipelines: dict[str, Any] = {
        signal: {"receivers": ["otlp"], "processors": ["memory_limiter", "batch"], "exporters": list(sink_exporters)}
        for signal in signals
    }
    pipelines["metrics/self"] = {
        "receivers": ["prometheus/self"],
        "processors": ["metricstransform/self", "attributes/self"],
        "exporters": ["awsemf/self"],
    }
    config = {
        "extensions": {
            "health_check": {"endpoint": f"0.0.0.0:{contract.OTEL_HEALTH_PORT}", "path": contract.OTEL_HEALTH_PATH},
            "file_storage": {
                # The task volume is mounted here, so the directory exists (no create_directory needed).
                "directory": BUFFER_DIRECTORY["otel"],
                "timeout": "1s",
                "fsync": True,
                "compaction": {"on_start": True, "on_rebound": True, "directory": BUFFER_DIRECTORY["otel"]},
            },
        },
        "receivers": {
            "otlp": {"protocols": {"http": http}},
            "prometheus/self": {
                "config": {
                    "scrape_configs": [
                        {
                            "job_name": "otelcol",
                            "scrape_interval": f"{SELF_METRICS_INTERVAL_SECONDS}s",
                            "static_configs": [{"targets": ["127.0.0.1:8888"]}],
                        }
                    ]
                }
            },
        },
        "processors": {
            "memory_limiter": {"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 20},
            "batch": {"send_batch_size": 1024, "send_batch_max_size": OTEL_BATCH_MAX_ITEMS, "timeout": "1s"},
            "metricstransform/self": {"transforms": transforms},
            "attributes/self": {
                "actions": [
                    {"key": COLLECTOR_DIMENSION, "value": "otel", "action": "upsert"},
                    {"key": FLEET_DIMENSION, "value": _check_fleet_name(fleet_name), "action": "upsert"},
                ]
            },
        },
        "exporters": exporters,
        "service": {
            "extensions": ["health_check", "file_storage"],
            "telemetry": {
                "metrics": {
                    "level": "normal",
                    "readers": [{"pull": {"exporter": {"prometheus": {"host": "127.0.0.1", "port": 8888}}}}],
                }
            },
            "pipelines": pipelines,
        },
    }
    raise_problems(check_otel_config(config, paths=paths, ephemeral_storage_gib=buffer.ephemeral_storage_gib))
    return config


def check_otel_config(config: Mapping[str, Any], *, paths: Sequence[str], ephemeral_storage_gib: int) -> list[str]:
    """Problems with a rendered collector config, as sentences (empty when it is sound)."""
    problems: list[str] = []
    receivers = config.get("receivers", {})
    exporters = config.get("exporters", {})
    service = config.get("service", {})
    pipelines = service.get("pipelines", {})
    http = receivers.get("otlp", {}).get("protocols", {}).get("http", {})
    for path in paths:
        m = _OTLP_PATH.fullmatch(path) if isinstance(path, str) else None
        signal = m.group(1) if m else None
        served = (
            signal is not None
            and http.get(f"{signal}_url_path", f"/v1/{signal}") == path
            and "otlp" in pipelines.get(signal, {}).get("receivers", [])
        )
        if not served:
            problems.append(f"route {path!r} has no source")
    for name, pipeline in pipelines.items():
        if not pipeline.get("exporters"):
            problems.append(f"pipeline {name!r} reaches no sink")
        for e in pipeline.get("exporters", []):
            if e not in exporters:
                problems.append(f"pipeline {name!r} exports to {e!r}, which does not exist")
        procs = pipeline.get("processors", [])
        if "otlp" in pipeline.get("receivers", []) and (not procs or procs[0] != "memory_limiter"):
            problems.append(f"pipeline {name!r} does not start with memory_limiter")
    for receiver in receivers:
        if not any(receiver in p.get("receivers", []) for p in pipelines.values()):
            problems.append(f"receiver {receiver!r} reaches no sink")
    health = config.get("extensions", {}).get("health_check", {})
    if "health_check" not in service.get("extensions", []) or _is_loopback(health.get("endpoint", "localhost:13133")):
        problems.append("the health_check extension is off or on loopback; Lattice health checks need 0.0.0.0")
    if _is_loopback(http.get("endpoint", "localhost:4318")):
        problems.append("the OTLP receiver listens on loopback; Lattice cannot reach it")
    # A persistent queue per exporter per signal pipeline it sits in.
    queues: list[int] = []
    for name, exporter in exporters.items():
        if name.startswith(("otlphttp/", "awss3/")):
            q = exporter.get("sending_queue", {})
            if q.get("storage") != "file_storage" or "file_storage" not in service.get("extensions", []):
                problems.append(f"exporter {name!r} has no persistent sending_queue on file_storage")
            if "block_on_overflow" not in q:
                problems.append(f"exporter {name!r} has no explicit full-queue policy")
            if q.get("sizer") != "bytes":
                problems.append(f"exporter {name!r} does not size its queue in bytes; its disk use is unbounded")
            signals = {p.split("/")[0] for p, pipeline in pipelines.items() if name in pipeline.get("exporters", [])}
            queues += [int(q.get("queue_size", 0))] * len(signals)
    disk = disk_bytes_for_queues("otel", queues)
    if disk > usable_buffer_bytes(ephemeral_storage_gib):
        problems.append(
            f"{len(queues)} persistent queues may occupy {disk} bytes with compaction, more than "
            f"{ephemeral_storage_gib} GiB ephemeral storage allows"
        )
    return problems


def raise_problems(problems: Sequence[str]) -> None:
    if problems:
        raise ValidationError("rendered collector config is unsound: " + "; ".join(problems))


def _check_plan(plan: BufferPlan, collector: str, sinks: Sequence[Sink]) -> None:
    if not isinstance(plan, BufferPlan) or plan.collector != collector:
        raise ValidationError(f"buffer plan is for {getattr(plan, 'collector', plan)!r}, not {collector!r}: use plan_buffers")
    if plan.sink_names != tuple(s.name for s in sinks):
        raise ValidationError(f"buffer plan covers sinks {plan.sink_names}, not {tuple(s.name for s in sinks)}")


def render_config(
    collector: str,
    *,
    paths: Sequence[str],
    sinks: Sequence[Sink],
    ephemeral_storage_gib: int = EPHEMERAL_STORAGE_GIB_MIN,
    buffer: BufferPolicy | None = None,
    fleet_name: str = DEFAULT_FLEET_NAME,
) -> dict[str, Any]:
    """Plan the buffers and render ``collector``'s config in one call (what the fleet uses)."""
    queues_per_sink = len(_otlp_signals(validate_paths({collector: paths})[collector])) if collector == "otel" else 1
    plan = plan_buffers(
        collector, sinks, ephemeral_storage_gib=ephemeral_storage_gib, policy=buffer, queues_per_sink=queues_per_sink
    )
    if collector == "vector":
        return render_vector_config(paths=paths, sinks=sinks, buffer=plan, fleet_name=fleet_name)
    return render_otel_config(paths=paths, sinks=sinks, buffer=plan, fleet_name=fleet_name)


def to_json(config: Mapping[str, Any]) -> str:
    """Compact, key-sorted JSON: the same config always yields the same text (and task definition).

    Every ``$`` is written as the JSON escape ``\\u0024``: the JSON means the same, but the
    CloudFormation template no longer shows ``${NAME}``, which CloudFormation validators read as an
    ``Fn::Sub`` parameter. This is how the OpenTelemetry Collector gets its config (``--config=env:``):
    its YAML parser decodes the escape, then expands ``${env:NAME}`` in the decoded values.
    """
    return json.dumps(config, sort_keys=True, separators=(",", ":")).replace("$", "\\u0024")


def from_json(text: str) -> dict[str, Any]:
    """The config back from :func:`to_json` (what the collector sees after parsing)."""
    return json.loads(text)


def encode_config(collector: str, config: Mapping[str, Any]) -> str:
    """The text the fleet puts in the container's environment (:data:`CONFIG_ENV`).

    Vector interpolates ``${NAME}`` on the raw text *before* parsing, so an escape in the JSON text
    would hide its references, and an un-escaping step would also rewrite any literal ``\\u0024``
    in a value. Its config therefore travels as base64 of the plain JSON (no ``$`` in the template),
    decoded by the launch command (:func:`vector_launch_command`) byte for byte. The collector
    reads :func:`to_json` directly.
    """
    _check_collector(collector)
    if collector == "vector":
        plain = json.dumps(config, sort_keys=True, separators=(",", ":"))
        return base64.b64encode(plain.encode("ascii")).decode("ascii")
    return to_json(config)


def decode_config(collector: str, text: str) -> dict[str, Any]:
    """What the collector reads back from :func:`encode_config` (before it interpolates secrets)."""
    _check_collector(collector)
    if collector == "vector":
        return json.loads(base64.b64decode(text.encode("ascii"), validate=True))
    return from_json(text)


def vector_launch_command(secret_names: Iterable[str]) -> str:
    """The ``/bin/sh -c`` script that starts Vector in the debian image.

    It decodes the config to :data:`VECTOR_CONFIG_FILE`, then makes each secret safe for Vector's
    raw-text interpolation into a JSON string: trailing newlines (from a pasted secret) are dropped,
    a value with any other control or non-ASCII character stops the task with a message naming the
    variable (never its value), and ``\\`` and ``"`` are JSON-escaped, so the parsed header equals the
    secret. No ``${`` appears in the script (CloudFormation validators would read it as ``Fn::Sub``).
    """
    names = sorted(set(secret_names))
    for name in names:
        SecretEnv(name)
    env = CONFIG_ENV["vector"]
    lines = ["set -eu", f'printf \'%s\' "${env}" | base64 -d > {VECTOR_CONFIG_FILE}']
    for name in names:
        lines += [
            f'v="$(printf \'%s\' "${name}")"',
            'case "$v" in *[![:print:]]*) '
            f'echo "secret {name} has a control or non-ASCII character; store it as one line of text" >&2; '
            "exit 1;; esac",
            f"{name}=\"$(printf '%s' \"$v\" | sed -e 's/\\\\/\\\\\\\\/g' -e 's/\"/\\\\\"/g')\"",
            f"export {name}",
        ]
    lines.append(f"exec vector --config-json {VECTOR_CONFIG_FILE}")
    return "\n".join(lines)


def env_references(config: Mapping[str, Any] | str) -> set[str]:
    """Environment variables a config interpolates (``${NAME}`` and ``${env:NAME}``)."""
    text = config if isinstance(config, str) else json.dumps(config)
    return set(_ENV_REFERENCE.findall(text.replace("\\u0024", "$")))
