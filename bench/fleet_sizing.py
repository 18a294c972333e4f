"""Figures for docs/sizing.md: outage absorption of the disk buffers and a monthly cost for a stated load.

Pure arithmetic over the fleet's constants and list prices (us-east-1); run it after changing either:
    .venv/bin/python bench/fleet_sizing.py
"""

from __future__ import annotations

from telemetry_shunt.core import collectors as cc

# Planning assumptions (see docs/sizing.md for where each comes from).
RECORD_BYTES_ON_DISK = 400  # one /metrics record as buffered (OTLP-shaped for the vendor sink), estimate
WIRE_BYTES_PER_RECORD = 150  # ndjson record as sent by the in-app client
GZIP_RATIO = 5  # ndjson metrics batches compress about 5:1
RECORDS_PER_REQUEST = 100  # client batch size

# Prices, us-east-1 (DESIGN.md for Lattice; AWS Fargate, VPC and EC2 pricing pages for the rest).
LATTICE_SERVICE_HOUR = 0.025
LATTICE_PER_GB = 0.025
LATTICE_FREE_REQUESTS_PER_HOUR = 300_000
LATTICE_PER_MILLION_REQUESTS = 0.10
FARGATE_VCPU_HOUR = 0.04048
FARGATE_GB_HOUR = 0.004445
FARGATE_STORAGE_GB_HOUR = 0.000111  # above the included 20 GB
NAT_HOUR = 0.045
NAT_PER_GB = 0.045
INTERNET_OUT_PER_GB = 0.09
HOURS_PER_MONTH = 730


def outage_hours(ephemeral_gib: int, events_per_second_per_task: float, sinks: int = 2) -> float:
    """Vector: the vendor sink's disk buffer (one per sink) at a given ingest rate."""
    plan = cc.plan_buffers("vector", _sinks(sinks), ephemeral_storage_gib=ephemeral_gib)
    return plan.queue_bytes / (events_per_second_per_task * RECORD_BYTES_ON_DISK) / 3600


def otel_outage_hours(ephemeral_gib: int, items_per_second_per_signal: float, sinks: int = 2, signals: int = 3) -> float:
    """The collector: one signal's vendor queue (a queue per exporter per signal) at a given rate of that signal."""
    plan = cc.plan_buffers("otel", _sinks(sinks), ephemeral_storage_gib=ephemeral_gib, queues_per_sink=signals)
    return plan.queue_bytes / (items_per_second_per_signal * RECORD_BYTES_ON_DISK) / 3600


def otel_disk_ratio(ephemeral_gib: int, sinks: int = 2, signals: int = 3) -> tuple[float, float]:
    """Worst-case disk of the collector's queues over the usable storage: (old plan, this plan).

    The old plan gave each sink's queue the whole per-sink budget, counted once, while the collector opens
    one queue per exporter per signal: ``signals`` times the budget, without compaction headroom."""
    usable = cc.usable_buffer_bytes(ephemeral_gib)
    old = signals * sinks * (usable // sinks)
    plan = cc.plan_buffers("otel", _sinks(sinks), ephemeral_storage_gib=ephemeral_gib, queues_per_sink=signals)
    return old / usable, plan.disk_bytes / usable


def _sinks(n: int) -> list:
    return [cc.S3ArchiveSink(prefix=f"p{i}/", name=f"sink{i}") for i in range(n)]


def monthly_cost(events_per_second: float, *, vector_tasks: int, otel_tasks: int, ephemeral_gib: int = 50,
                 vcpu: float = 1, memory_gb: float = 2) -> dict[str, float]:
    gb_per_hour = events_per_second * WIRE_BYTES_PER_RECORD / GZIP_RATIO * 3600 / 1e9
    requests_per_hour = events_per_second / RECORDS_PER_REQUEST * 3600
    billable_requests = max(0.0, requests_per_hour - LATTICE_FREE_REQUESTS_PER_HOUR)
    lattice = HOURS_PER_MONTH * (
        LATTICE_SERVICE_HOUR + gb_per_hour * LATTICE_PER_GB + billable_requests / 1e6 * LATTICE_PER_MILLION_REQUESTS
    )
    task_hour = vcpu * FARGATE_VCPU_HOUR + memory_gb * FARGATE_GB_HOUR + max(0, ephemeral_gib - 20) * FARGATE_STORAGE_GB_HOUR
    fargate = (vector_tasks + otel_tasks) * task_hour * HOURS_PER_MONTH
    nat = HOURS_PER_MONTH * (NAT_HOUR + gb_per_hour * NAT_PER_GB)
    internet = HOURS_PER_MONTH * gb_per_hour * INTERNET_OUT_PER_GB
    return {
        "gb_per_hour": gb_per_hour,
        "requests_per_hour": requests_per_hour,
        "lattice": lattice,
        "fargate": fargate,
        "task_hour": task_hour,
        "nat": nat,
        "internet_out": internet,
    }


if __name__ == "__main__":
    print("Vector: hours of vendor outage one task's vendor disk buffer absorbs (2 sinks, 400 B/record):")
    for gib in (20, 50, 100, 200):
        plan = cc.plan_buffers("vector", _sinks(2), ephemeral_storage_gib=gib)
        row = [f"{outage_hours(gib, rate):7.1f}" for rate in (1_000, 5_000, 10_000)]
        print(f"  {gib:3d} GiB  buffer per sink {plan.queue_bytes / cc.GIB:6.2f} GiB  1k/s 5k/s 10k/s:", *row)
    print("OTel collector: 2 sinks x 3 signals = 6 persistent queues + compaction headroom:")
    for gib in (20, 50, 100, 200):
        plan = cc.plan_buffers("otel", _sinks(2), ephemeral_storage_gib=gib, queues_per_sink=3)
        old, new = otel_disk_ratio(gib)
        row = [f"{otel_outage_hours(gib, rate):7.1f}" for rate in (1_000, 5_000, 10_000)]
        print(f"  {gib:3d} GiB  queue {plan.queue_bytes / cc.GIB:6.2f} GiB  worst-case disk / usable: old plan "
              f"{old:4.2f}x, this plan {new:5.3f}x  hours at 1k/s 5k/s 10k/s per signal:", *row)
    cost = monthly_cost(20_000, vector_tasks=4, otel_tasks=2)
    print({k: round(v, 4) for k, v in cost.items()})
