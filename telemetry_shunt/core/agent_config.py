"""The host agent's configuration: the AWS Distro for OpenTelemetry (ADOT) collector pushing to the gateway.

One pure function, :func:`render_adot_config`, used by the SSM documents (``core/hostside``) and the docs:

- an ``otlp`` receiver on loopback only (gRPC ``127.0.0.1:4317``, HTTP ``127.0.0.1:4318``), so apps in any
  language send to the local agent and nothing off the host can;
- ``memory_limiter`` (first) then ``batch`` in every pipeline; the limiter refuses data at 80 % of the
  host budget's ``MemoryMax`` so the agent sheds load before the kernel stops it;
- one ``otlp_http`` exporter per OTLP route of the gateway (``/v1/traces``, ``/v1/metrics``, ``/v1/logs``),
  to ``https://<gateway DNS name><path>``, authenticated by the ``sigv4auth`` extension for the Lattice
  signing name ``vpc-lattice-svcs`` in the gateway's Region;
- a bounded sending queue per exporter, sized in bytes, that drops (``block_on_overflow: false``) rather
  than blocks when full; drops are counted by the collector's ``otelcol_exporter_enqueue_failed_*``
  metrics. Optionally persistent on ``file_storage`` with a size cap per database file.

Everything is written for, and checked against, the ADOT collector release :data:`ADOT_VERSION`
(``tools/data/adot-collector-v<version>.json``, generated from that release's sources by
``tools/adot_reference.py``). Facts of that release that shape this module:

- **No ``hostmetrics`` receiver** is compiled into ADOT (its ``defaults.go``): host metrics come from the
  CloudWatch agent or a custom agent source, not from this configuration.
- **No ``validate`` subcommand**: ADOT's command line is a single root command that *runs* the collector
  for any argument, so ``aws-otel-collector validate`` would start a second collector. The documents
  therefore check an ADOT config by restarting the agent and waiting for its ``health_check`` extension
  (loopback only), and put the previous config back if it never becomes healthy.
- **``sigv4auth`` signs the payload hash** (``signingroundtripper.go`` hashes the body and passes the hash to
  ``SignHTTP``; no ``x-amz-content-sha256`` header), while VPC Lattice requires
  ``x-amz-content-sha256: UNSIGNED-PAYLOAD`` and rejects payload signing. The extension has no option to
  change this in that release, so exports from this configuration are expected to be refused by Lattice
  until ADOT ships a signer that does not sign the payload; see :data:`SIGNING_LIMITATION`.
- ``otlphttp`` is deprecated there in favour of ``otlp_http`` (both registered); this module uses the new name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from telemetry_shunt.core.contract import (
    AGENT_OTLP_GRPC_ENDPOINT,
    AGENT_OTLP_HTTP_ENDPOINT,
    LATTICE_SIGNING_NAME,
    OTLP_PATHS,
)
from telemetry_shunt.core.gateway_ref import GatewayRef
from telemetry_shunt.core.host_budgets import AgentBudgets
from telemetry_shunt.core.validation import is_token
from telemetry_shunt.errors import ValidationError

#: The AWSDistroOTel-Collector release this configuration is written for (SSM Distributor package version).
ADOT_VERSION = "0.49.0"
ADOT_SERVICE = "aws-otel-collector"
ADOT_USER = "aoc"
ADOT_HOME = "/opt/aws/aws-otel-collector"
ADOT_BINARY = f"{ADOT_HOME}/bin/aws-otel-collector"
#: The package's unit reads ``--config`` from ``etc/.env``, which points here by default.
ADOT_CONFIG_PATH = f"{ADOT_HOME}/etc/config.yaml"
#: ``aws-otel-collector-ctl -c <uri>`` rewrites the ``config=`` line of this file (e.g. to an S3 or SSM URI);
#: the documents pin it back to :data:`ADOT_CONFIG_PATH`, or the installed config would be ignored.
ADOT_ENV_FILE = f"{ADOT_HOME}/etc/.env"
ADOT_ENV_CONFIG_LINE = f'config="--config {ADOT_CONFIG_PATH}"'
#: The persistent sending queue's directory (``file_storage``), created by the documents for the agent's user.
AGENT_QUEUE_DIR = "/var/lib/telemetry-shunt/agent-queue"
#: The agent's health endpoint (loopback only): what the documents wait for after a restart.
AGENT_HEALTH_ENDPOINT = "127.0.0.1:13133"
AGENT_HEALTH_URL = f"http://{AGENT_HEALTH_ENDPOINT}/"

SIGNING_LIMITATION = (
    f"ADOT {ADOT_VERSION}'s sigv4auth extension signs the SHA-256 of the request body and sends no "
    "x-amz-content-sha256 header; VPC Lattice requires x-amz-content-sha256: UNSIGNED-PAYLOAD, so the gateway "
    "refuses these requests (403) until the extension can sign without the payload. The in-app client signs "
    "correctly; for an agent, use a custom agent source whose signer sends UNSIGNED-PAYLOAD."
)

_SIGNAL_BY_PATH = {p: p.rsplit("/", 1)[-1] for p in OTLP_PATHS}  # /v1/traces -> traces
# Batching is the main cost lever (Lattice charges per request beyond 300k/h): few, large requests.
_BATCH = {"timeout": "10s", "send_batch_size": 8192, "send_batch_max_size": 8192}
_RETRY = {"enabled": True, "initial_interval": "5s", "max_interval": "30s", "max_elapsed_time": "300s"}
_EXPORT_TIMEOUT = "10s"
_STORAGE_ID = "file_storage/queue"
_AUTH_ID = "sigv4auth"
_HEALTH_ID = "health_check"


def _region(gateway: GatewayRef, region: str | None) -> str:
    if gateway.region is not None:
        if region is not None and not is_token(region) and region != gateway.region:
            raise ValidationError(f"region {region!r} differs from the gateway's ({gateway.region}); hosts sign "
                                  "for the gateway's Region (Lattice is regional), so leave region unset")
        return gateway.region
    if region is None:
        raise ValidationError("the gateway's ARN is a deploy-time token, so its Region is unknown at synth: pass "
                              "region (the hosts' Region, e.g. Stack.of(self).region: Lattice is regional)")
    return region


def exporter_name(path: str) -> str:
    """The exporter for one gateway route, e.g. ``otlp_http/traces`` for ``/v1/traces``."""
    return f"otlp_http/{_SIGNAL_BY_PATH[path]}"


def agent_paths(gateway: GatewayRef) -> tuple[str, ...]:
    """The gateway routes the ADOT agent pushes to: its OTLP routes (``/metrics`` takes the client's NDJSON)."""
    paths = tuple(p for p in gateway.paths if p in _SIGNAL_BY_PATH)
    if not paths:
        raise ValidationError(f"the gateway has no OTLP route (routes: {', '.join(gateway.paths)}): the agent pushes "
                              "OTLP/HTTP, so add Route.otlp_http() to the gateway or use a custom agent source")
    return paths


def render_adot_config(gateway: GatewayRef, budgets: AgentBudgets | None = None, *,
                       region: str | None = None) -> dict[str, Any]:
    """The ADOT collector configuration (a dict; :func:`to_text` writes it) for hosts pushing to ``gateway``.

    ``region`` is needed only while the gateway's ARN is a deploy-time token (then it is the hosts' Region).
    """
    if not isinstance(gateway, GatewayRef):
        raise ValidationError(f"gateway must be a GatewayRef (from the concentrator's outputs), got {gateway!r}")
    budgets = budgets or AgentBudgets()
    signing_region = _region(gateway, region)
    paths = agent_paths(gateway)
    persistent = budgets.queue_disk_mib > 0
    per_exporter_mib = (budgets.queue_disk_mib if persistent else budgets.queue_memory_mib) / len(paths)
    # bbolt's file holds the queue plus its own pages: queue up to 80 % of each file's cap.
    queue_bytes = int(per_exporter_mib * 1024 * 1024 * (0.8 if persistent else 1.0))
    if queue_bytes < 1024 * 1024:
        raise ValidationError(f"the agent's queue budget leaves {queue_bytes} bytes per exporter ({len(paths)} routes): "
                              "give each route at least 1 MiB (raise queue_memory_mib / queue_disk_mib)")

    extensions: dict[str, Any] = {
        _AUTH_ID: {"region": signing_region, "service": LATTICE_SIGNING_NAME},
        _HEALTH_ID: {"endpoint": AGENT_HEALTH_ENDPOINT},
    }
    if persistent:
        extensions[_STORAGE_ID] = {
            "directory": AGENT_QUEUE_DIR,
            "create_directory": True,
            "max_size": int(per_exporter_mib * 1024 * 1024),
            "timeout": "1s",
        }
    exporters: dict[str, Any] = {}
    for path in paths:
        queue: dict[str, Any] = {
            "enabled": True,
            "sizer": "bytes",
            "queue_size": queue_bytes,
            "block_on_overflow": False,
            "num_consumers": 2,
        }
        if persistent:
            queue["storage"] = _STORAGE_ID
        signal = _SIGNAL_BY_PATH[path]
        exporters[exporter_name(path)] = {
            f"{signal}_endpoint": gateway.url(path),
            "auth": {"authenticator": _AUTH_ID},
            "compression": "gzip",
            "timeout": _EXPORT_TIMEOUT,
            "retry_on_failure": dict(_RETRY),
            "sending_queue": queue,
        }
    pipelines = {
        _SIGNAL_BY_PATH[p]: {
            "receivers": ["otlp"],
            "processors": ["memory_limiter", "batch"],
            "exporters": [exporter_name(p)],
        }
        for p in paths
    }
    return {
        "extensions": extensions,
        "receivers": {
            "otlp": {"protocols": {"grpc": {"endpoint": AGENT_OTLP_GRPC_ENDPOINT},
                                   "http": {"endpoint": AGENT_OTLP_HTTP_ENDPOINT}}},
        },
        "processors": {
            "memory_limiter": {"check_interval": "1s", "limit_mib": budgets.memory_limit_mib,
                               "spike_limit_mib": budgets.memory_spike_mib},
            "batch": dict(_BATCH),
        },
        "exporters": exporters,
        "service": {"extensions": list(extensions), "pipelines": pipelines},
    }


def to_text(config: Mapping[str, Any]) -> str:
    """The config file's text: JSON (a subset of YAML, which the collector reads), keys sorted, one trailing newline."""
    return json.dumps(config, indent=2, sort_keys=True) + "\n"
