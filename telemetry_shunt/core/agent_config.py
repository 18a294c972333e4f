"""The host agent's configuration: the AWS Distro for OpenTelemetry (ADOT) collector pushing to the gateway.

One pure function, :func:`render_adot_config`, used by the SSM documents (``core/hostside``) and the docs:

- an ``otlp`` receiver on loopback only (gRPC ``127.0.0.1:4317``, HTTP ``127.0.0.1:4318``), so apps in any
  language send to the local agent and nothing off the host can;
- ``memory_limiter`` (first) then ``batch`` in every pipeline; the limiter refuses data at 80 % of the
  host budget's ``MemoryMax`` so the agent sheds load before the kernel stops it;
- one ``otlp_http`` exporter per OTLP route of the gateway (``/v1/traces``, ``/v1/metrics``, ``/v1/logs``),
  to the host's **signing forwarder** on ``http://127.0.0.1:<AGENT_FORWARDER_PORT><path>``
  (``core/hostfiles/lattice_forwarder.py``), which signs each request SigV4 for ``vpc-lattice-svcs`` in the
  gateway's Region with ``x-amz-content-sha256: UNSIGNED-PAYLOAD`` and forwards it to
  ``https://<gateway DNS name><path>``; :func:`render_forwarder_config` renders its configuration from the same
  ``GatewayRef``;
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
- **``sigv4auth`` signs the payload hash**, which VPC Lattice refuses: "VPC Lattice does not support payload
  signing. You must send an x-amz-content-sha256 header with the value set to UNSIGNED-PAYLOAD"
  (https://docs.aws.amazon.com/vpc-lattice/latest/ug/sigv4-authenticated-requests.html), while the release's
  vendored ``sigv4authextension`` v0.156.0 (``signingroundtripper.go``: ``hashPayload`` then
  ``SignHTTP(..., payloadHash, ...)``) signs the body's SHA-256, and its config (``region``, ``service``,
  ``assume_role``) has no option to skip it. Hence the forwarder: the exporters carry no authenticator.
- ``otlphttp`` is deprecated there in favour of ``otlp_http`` (both registered); this module uses the new name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from telemetry_shunt.core.contract import (
    AGENT_BATCH_MAX_ITEMS,
    AGENT_FORWARDER_ADDRESS,
    AGENT_FORWARDER_CONCURRENCY,
    AGENT_FORWARDER_MAX_BODY_BYTES,
    AGENT_FORWARDER_PORT,
    AGENT_FORWARDER_TIMEOUT_SECONDS,
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

_SIGNAL_BY_PATH = {p: p.rsplit("/", 1)[-1] for p in OTLP_PATHS}  # /v1/traces -> traces
# Batching is the main cost lever (Lattice charges per request beyond 300k/h): few, large requests.
_BATCH = {"timeout": "10s", "send_batch_size": AGENT_BATCH_MAX_ITEMS, "send_batch_max_size": AGENT_BATCH_MAX_ITEMS}
_RETRY = {"enabled": True, "initial_interval": "5s", "max_interval": "30s", "max_elapsed_time": "300s"}
# Above the forwarder's upstream timeout, so the forwarder answers (504, retried) before the agent gives up.
_EXPORT_TIMEOUT = "10s"
#: Where the forwarder listens; the exporters send ``FORWARDER_URL + <route path>``.
FORWARDER_URL = f"http://{AGENT_FORWARDER_ADDRESS}:{AGENT_FORWARDER_PORT}"
_STORAGE_ID = "file_storage/queue"
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
    _region(gateway, region)  # the forwarder signs; checked here so that both renderings refuse the same input
    paths = agent_paths(gateway)
    persistent = budgets.queue_disk_mib > 0
    per_exporter_mib = (budgets.queue_disk_mib if persistent else budgets.queue_memory_mib) / len(paths)
    # bbolt's file holds the queue plus its own pages: queue up to 80 % of each file's cap.
    queue_bytes = int(per_exporter_mib * 1024 * 1024 * (0.8 if persistent else 1.0))
    if queue_bytes < 1024 * 1024:
        raise ValidationError(f"the agent's queue budget leaves {queue_bytes} bytes per exporter ({len(paths)} routes): "
                              "give each route at least 1 MiB (raise queue_memory_mib / queue_disk_mib)")

    extensions: dict[str, Any] = {
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
            f"{signal}_endpoint": FORWARDER_URL + path,
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


def render_forwarder_config(gateway: GatewayRef, *, region: str | None = None) -> dict[str, Any]:
    """The signing forwarder's configuration (``lattice_forwarder.py --config``) for hosts pushing to ``gateway``:
    every route of the gateway (the agent's OTLP routes, and ``/metrics`` for local NDJSON pushers), its HTTPS
    endpoint, the signing name and Region, and the forwarder's limits (``core/contract``)."""
    if not isinstance(gateway, GatewayRef):
        raise ValidationError(f"gateway must be a GatewayRef (from the concentrator's outputs), got {gateway!r}")
    return {
        "endpoint": f"https://{gateway.dns_name}",
        "region": _region(gateway, region),
        "service": LATTICE_SIGNING_NAME,
        "routes": list(gateway.paths),
        "listen": [AGENT_FORWARDER_ADDRESS],
        "port": AGENT_FORWARDER_PORT,
        "max_body_bytes": AGENT_FORWARDER_MAX_BODY_BYTES,
        "concurrency": AGENT_FORWARDER_CONCURRENCY,
        "timeout_seconds": AGENT_FORWARDER_TIMEOUT_SECONDS,
    }


def to_text(config: Mapping[str, Any]) -> str:
    """The config file's text: JSON (a subset of YAML, which the collector reads), keys sorted, one trailing newline."""
    return json.dumps(config, indent=2, sort_keys=True) + "\n"
