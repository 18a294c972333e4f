"""Names shared between the pieces that must agree: constructs, rollout engine, host agents, client.

Change a value here and every side follows; nothing else spells these strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

# --- Kill switch (AWS AppConfig feature flags) -------------------------------------------------
APPCONFIG_APPLICATION = "telemetry-shunt"
APPCONFIG_ENVIRONMENT = "production"
APPCONFIG_PROFILE = "kill-switch"
# Global flag: telemetry is on only while this flag is enabled.
GLOBAL_FLAG = "telemetry"
# Per-AZ flag: f"{GLOBAL_FLAG}-{az}", e.g. "telemetry-us-east-1a". Absent means "follow the global flag".
AZ_FLAG_PREFIX = GLOBAL_FLAG + "-"
# AppConfig agent on every host (its default port); polling no faster than every 15 s.
APPCONFIG_AGENT_URL = "http://localhost:2772"
APPCONFIG_MIN_POLL_SECONDS = 15
# How often hosts read the kill switch unless told otherwise: the AppConfig agent's own default.
DEFAULT_POLL_SECONDS = 45

# --- Defaults the CDK constructs and the Terraform flavour share --------------------------------
DEFAULT_CONCENTRATOR_CIDR = "10.200.0.0/16"
# VPC Lattice's idle timeout range for a service, and the gateway's by default.
LATTICE_IDLE_TIMEOUT_RANGE_SECONDS = (60, 600)
DEFAULT_IDLE_TIMEOUT_SECONDS = 60
# Service-network access logs and VPC flow logs (the CDK flow log's logs.RetentionDays.ONE_YEAR).
DEFAULT_LOG_RETENTION_DAYS = 365
# The buffer fleet: its archive's object expiry, and its autoscaling targets (CPU, ingest rate per task).
DEFAULT_ARCHIVE_RETENTION_DAYS = 400
DEFAULT_TARGET_CPU_PERCENT = 60
DEFAULT_TARGET_EVENTS_PER_TASK_PER_SECOND = 5_000

# --- Agent fleet -------------------------------------------------------------------------------
# EC2 tag that marks hosts whose agent this project rolls out; the value is the fleet name.
FLEET_TAG_KEY = "telemetry-shunt:fleet"
# Heartbeats published by every host (see core/hostside): one datapoint with {AvailabilityZone}
# (what the per-AZ alarms watch) and one with {InstanceId, AgentVersion} (the bake's evidence).
HEARTBEAT_NAMESPACE = "TelemetryShunt/Agent"
HEARTBEAT_METRIC = "Heartbeat"
HEARTBEAT_PERIOD_SECONDS = 60
# Published with each heartbeat ({AvailabilityZone} and {InstanceId}): seconds since the host's kill-switch
# watcher last read the flag (a host that cannot read its kill switch cannot be killed through it).
KILLSWITCH_READ_AGE_METRIC = "KillSwitchReadAgeSeconds"

# --- Rollout state (DynamoDB) ------------------------------------------------------------------
STATE_TABLE_PARTITION_KEY = "pk"
STATE_TABLE_SORT_KEY = "sk"
STATE_TABLE_TTL_ATTRIBUTE = "expires_at"

# --- Gateway wire format -----------------------------------------------------------------------
# POST /metrics carries newline-delimited JSON records, optionally gzip-encoded:
#   {"name": str, "value": float, "timestamp": float (unix seconds), "attributes": {str: str},
#    "batch_id": str, "seq": int}
# "batch_id" and "seq" are optional (the in-app client always sends them): every batch has an id that stays
# the same on each of its retries, sent in the BATCH_ID_HEADER request header and on each record with the
# record's 0-based index in the batch, so a collector can drop a record it has already seen (a retry whose
# first attempt did arrive). A record line must stay under METRICS_MAX_RECORD_BYTES (the collector's line
# limit); the client drops a longer one as "oversized" rather than send it.
# A record with "kind" is an aggregate of one series (name + attributes) over [start, timestamp] (unix seconds),
# made by the client's count/gauge/distribution; "value" stays a number for readers of the plain format:
#   "kind": "sum"        a delta sum: "value" the total of "count" non-negative records (OTLP Sum, delta, monotonic)
#   "kind": "gauge"      "value" the last of "count" records (OTLP Gauge)
#   "kind": "histogram"  "count", "sum", "min", "max", "scale", "zero_count", "positive"/"negative":
#                        {"offset": int, "bucket_counts": [int]} (OTLP ExponentialHistogram, delta); "value" = "sum"
# A record without "kind" is one raw sample (emit), an OTLP gauge point.
METRIC_KINDS = ("sum", "gauge", "histogram")
METRICS_PATH = "/metrics"
METRICS_CONTENT_TYPE = "application/x-ndjson"
BATCH_ID_HEADER = "X-Shunt-Batch-Id"
RECORD_BATCH_ID_FIELD = "batch_id"
RECORD_SEQ_FIELD = "seq"
METRICS_MAX_RECORD_BYTES = 1024 * 1024
OTLP_PATHS = ("/v1/traces", "/v1/metrics", "/v1/logs")
# SigV4 signing name for VPC Lattice; Lattice does not sign payloads.
LATTICE_SIGNING_NAME = "vpc-lattice-svcs"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"

# --- Agent rollout resources (created by AgentRolloutSupport, used by the rollout engine) -------
# SSM documents, one per action; the engine finds them by these names (prefix configurable).
AGENT_ACTIONS = ("install", "upgrade", "rollback", "stop", "start")
DEFAULT_RESOURCE_PREFIX = "TelemetryShunt"


def agent_document_name(action: str, prefix: str = DEFAULT_RESOURCE_PREFIX) -> str:
    """SSM document name for an agent action, e.g. ``TelemetryShunt-Agent-Upgrade``."""
    if action not in AGENT_ACTIONS:
        raise ValueError(f"unknown agent action {action!r}: use one of {', '.join(AGENT_ACTIONS)}")
    return f"{prefix}-Agent-{action.capitalize()}"


def heartbeat_alarm_name(az: str, prefix: str = DEFAULT_RESOURCE_PREFIX) -> str:
    """Per-AZ heartbeat alarm (missing data is breaching), e.g. ``TelemetryShunt-Heartbeat-us-east-1a``."""
    return f"{prefix}-Heartbeat-{az}"


DEFAULT_STATE_TABLE_NAME = "telemetry-shunt-rollouts"

# --- Collectors behind the gateway (ports shared by the gateway's target groups and the fleet) --
# Health endpoints must bind 0.0.0.0: Lattice health checks come from 169.254.171.0/24.
VECTOR_HTTP_PORT = 8080
VECTOR_HEALTH_PORT = 8686
VECTOR_HEALTH_PATH = "/health"
OTEL_HTTP_PORT = 4318
OTEL_HEALTH_PORT = 13133
OTEL_HEALTH_PATH = "/"
COLLECTOR_KINDS = ("vector", "otel")


@dataclass(frozen=True)
class CollectorPorts:
    traffic: int
    health: int
    health_path: str


#: What the gateway's target groups check and the fleet's security groups admit, per collector kind.
COLLECTOR_PORTS: Mapping[str, CollectorPorts] = MappingProxyType({
    "vector": CollectorPorts(VECTOR_HTTP_PORT, VECTOR_HEALTH_PORT, VECTOR_HEALTH_PATH),
    "otel": CollectorPorts(OTEL_HTTP_PORT, OTEL_HEALTH_PORT, OTEL_HEALTH_PATH),
})

# --- Rollout engine <-> SSM documents and heartbeats (appended by the rollout engine) -------------
# Heartbeat dimensions: the per-host evidence datapoint and the per-AZ datapoint the alarms watch.
HEARTBEAT_INSTANCE_DIMENSION = "InstanceId"
HEARTBEAT_VERSION_DIMENSION = "AgentVersion"
HEARTBEAT_AZ_DIMENSION = "AvailabilityZone"
# The upgrade/install/rollback documents take the target agent version in this parameter.
AGENT_VERSION_PARAMETER = "version"
# The agent ships as an SSM Distributor package; a rollout's target version must be one of its versions.
AGENT_PACKAGE_SUFFIX = "-Agent-Package"


def agent_package_name(prefix: str = DEFAULT_RESOURCE_PREFIX) -> str:
    """SSM Distributor package holding the agent versions, e.g. ``TelemetryShunt-Agent-Package``."""
    return f"{prefix}{AGENT_PACKAGE_SUFFIX}"


# --- Kill-switch deployment strategy (appended by the kill-switch constructs) ---------------------------
# All at once, no bake (KillSwitch creates it). AppConfig's predefined AppConfig.AllAtOnce bakes for 10
# minutes, holding the environment so that the next flip (e.g. undoing a kill) has to wait. StartDeployment
# takes the strategy's id: find it by this name with ListDeploymentStrategies.
def kill_switch_strategy_name(prefix: str = DEFAULT_RESOURCE_PREFIX) -> str:
    """AppConfig deployment strategy for kill-switch flips, e.g. ``TelemetryShunt-KillSwitch-AllAtOnce``."""
    return f"{prefix}-KillSwitch-AllAtOnce"


# --- Host agent data path (core/agent_config, core/host_budgets) ---------------------------------
# Where apps on a host send OTLP: the local agent, bound to loopback only (gRPC and HTTP).
AGENT_OTLP_GRPC_ENDPOINT = "127.0.0.1:4317"
AGENT_OTLP_HTTP_ENDPOINT = "127.0.0.1:4318"
# VPC Lattice's client-side ranges (managed prefix lists com.amazonaws.<region>.vpc-lattice and
# com.amazonaws.<region>.ipv6.vpc-lattice): the host's bandwidth cap applies to traffic to these.
LATTICE_IPV4_RANGE = "169.254.171.0/24"
LATTICE_IPV6_RANGE = "fd00:ec2:80::/64"

# --- Lattice signing forwarder on each host (core/hostfiles/lattice_forwarder.py) ------------------
# The host agent's exporters (and any local pusher) POST plain HTTP here; the forwarder signs each request
# for LATTICE_SIGNING_NAME with UNSIGNED_PAYLOAD and sends it to the gateway over HTTPS. Loopback only.
AGENT_FORWARDER_ADDRESS = "127.0.0.1"
AGENT_FORWARDER_PORT = 4319
AGENT_FORWARDER_HEALTH_PATH = "/health"
# The agent's batches hold at most this many items (ADOT's batch processor send_batch_max_size) ...
AGENT_BATCH_MAX_ITEMS = 8192
# ... and the forwarder takes bodies up to 1 KiB per item of a full batch, as sent (gzip only shrinks OTLP);
# beyond it 413 (not retried: the agent drops and counts the batch).
AGENT_FORWARDER_MAX_BODY_BYTES = AGENT_BATCH_MAX_ITEMS * 1024
# Requests in flight at once (503 + Retry-After beyond): at least the agent's exporters' consumers, so the
# forwarder holds at most AGENT_FORWARDER_CONCURRENCY x AGENT_FORWARDER_MAX_BODY_BYTES of bodies.
AGENT_FORWARDER_CONCURRENCY = 8
# Each upstream socket operation times out after this (then 504, retried), under the agent's export timeout.
AGENT_FORWARDER_TIMEOUT_SECONDS = 8
