"""Rollout plans: a pure function of a fleet listing (no boto3).

Safe-deployment order (AWS Builders' Library): zones strictly one at a time; in each zone a one-box
wave (a single host, the canary), then the rest of the zone in batches of at most 50 instance ids (the
SSM ``SendCommand`` limit). Every wave is baked before the next one starts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from telemetry_shunt.errors import ValidationError

SSM_MAX_INSTANCE_IDS = 50
ONE_BOX = "one-box"
REST = "rest"
WAVES = (ONE_BOX, REST)

_INSTANCE_ID = re.compile(r"(i|mi)-[0-9a-f]{8,17}\Z", re.ASCII)
_AZ = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9][a-z]\Z", re.ASCII)


@dataclass(frozen=True, order=True)
class Host:
    """One host of the fleet: its instance id and Availability Zone."""

    instance_id: str
    az: str


@dataclass(frozen=True)
class Batch:
    """One ``SendCommand``: at most 50 instance ids of one zone and one wave."""

    batch_id: str
    az: str
    wave: str
    instance_ids: tuple[str, ...]
    max_concurrency: str
    max_errors: str

    @property
    def allowed_errors(self) -> int:
        return int(self.max_errors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id, "az": self.az, "wave": self.wave,
            "instance_ids": list(self.instance_ids), "max_concurrency": self.max_concurrency,
            "max_errors": self.max_errors,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Batch:
        return cls(
            batch_id=data["batch_id"], az=data["az"], wave=data["wave"],
            instance_ids=tuple(data["instance_ids"]), max_concurrency=str(data["max_concurrency"]),
            max_errors=str(data["max_errors"]),
        )


@dataclass(frozen=True)
class ZonePlan:
    az: str
    batches: tuple[Batch, ...]

    def wave(self, wave: str) -> tuple[Batch, ...]:
        return tuple(b for b in self.batches if b.wave == wave)

    @property
    def waves(self) -> tuple[str, ...]:
        return tuple(w for w in WAVES if self.wave(w))

    @property
    def host_count(self) -> int:
        return sum(len(b.instance_ids) for b in self.batches)


@dataclass(frozen=True)
class RolloutPlan:
    """Zones in rollout order, each with its batches in order."""

    zones: tuple[ZonePlan, ...]
    batch_size: int
    max_errors_percent: int
    max_concurrency_percent: int

    @property
    def batches(self) -> tuple[Batch, ...]:
        return tuple(b for z in self.zones for b in z.batches)

    @property
    def host_count(self) -> int:
        return sum(z.host_count for z in self.zones)

    def zone(self, az: str) -> ZonePlan:
        for zone in self.zones:
            if zone.az == az:
                return zone
        raise KeyError(az)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "max_errors_percent": self.max_errors_percent,
            "max_concurrency_percent": self.max_concurrency_percent,
            "zones": [{"az": z.az, "batches": [b.to_dict() for b in z.batches]} for z in self.zones],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutPlan:
        return cls(
            zones=tuple(
                ZonePlan(az=z["az"], batches=tuple(Batch.from_dict(b) for b in z["batches"]))
                for z in data["zones"]
            ),
            batch_size=int(data["batch_size"]),
            max_errors_percent=int(data["max_errors_percent"]),
            max_concurrency_percent=int(data["max_concurrency_percent"]),
        )

    def summary(self) -> list[dict[str, Any]]:
        """One row per batch, for ``--output table``."""
        return [
            {
                "order": i + 1, "az": b.az, "wave": b.wave, "batch": b.batch_id, "hosts": len(b.instance_ids),
                "max_concurrency": b.max_concurrency, "max_errors": b.max_errors,
            }
            for i, b in enumerate(self.batches)
        ]


def plan_rollout(
    hosts: Iterable[Host],
    *,
    batch_size: int = SSM_MAX_INSTANCE_IDS,
    az_order: Sequence[str] | None = None,
    max_errors_percent: int = 10,
    max_concurrency_percent: int = 50,
) -> RolloutPlan:
    """Plan a rollout over ``hosts``.

    Zones are taken in ``az_order`` (default: sorted by name, so the order is deterministic); only the
    listed zones are touched when ``az_order`` is given. In each zone the lowest instance id is the
    one-box canary; the rest follow in sorted order in batches of ``batch_size`` (1–50).
    ``MaxErrors`` of a batch is ``max_errors_percent`` of its size rounded down (0 for the canary);
    ``MaxConcurrency`` is ``max_concurrency_percent`` of its size rounded up.
    """
    if not 1 <= batch_size <= SSM_MAX_INSTANCE_IDS:
        raise ValidationError(f"batch size must be between 1 and {SSM_MAX_INSTANCE_IDS}, got {batch_size}")
    if not 0 <= max_errors_percent <= 100:
        raise ValidationError(f"max errors percent must be between 0 and 100, got {max_errors_percent}")
    if not 1 <= max_concurrency_percent <= 100:
        raise ValidationError(
            f"max concurrency percent must be between 1 and 100, got {max_concurrency_percent}"
        )
    by_az: dict[str, set[str]] = {}
    seen: dict[str, str] = {}
    for host in hosts:
        if not _INSTANCE_ID.match(host.instance_id):
            raise ValidationError(f"not an instance id: {host.instance_id!r}")
        if not _AZ.match(host.az):
            raise ValidationError(f"not an Availability Zone name: {host.az!r} (host {host.instance_id})")
        if seen.setdefault(host.instance_id, host.az) != host.az:
            raise ValidationError(
                f"host {host.instance_id} listed in two zones: {seen[host.instance_id]}, {host.az}"
            )
        by_az.setdefault(host.az, set()).add(host.instance_id)
    if not by_az:
        raise ValidationError("the fleet is empty: no running instance carries the fleet tag")
    if az_order is None:
        order = sorted(by_az)
    else:
        order = list(az_order)
        if len(set(order)) != len(order):
            raise ValidationError(f"zone order lists a zone twice: {', '.join(order)}")
        unknown = [az for az in order if az not in by_az]
        if unknown:
            raise ValidationError(
                f"unknown AZ {', '.join(unknown)}: the fleet has hosts in {', '.join(sorted(by_az))}"
            )
    zones = []
    for az in order:
        ids = sorted(by_az[az])
        batches = [_batch(az, ONE_BOX, 0, ids[:1], max_errors_percent, max_concurrency_percent)]
        rest = ids[1:]
        for n, start in enumerate(range(0, len(rest), batch_size)):
            chunk = rest[start:start + batch_size]
            batches.append(_batch(az, REST, n, chunk, max_errors_percent, max_concurrency_percent))
        zones.append(ZonePlan(az=az, batches=tuple(batches)))
    return RolloutPlan(
        zones=tuple(zones), batch_size=batch_size, max_errors_percent=max_errors_percent,
        max_concurrency_percent=max_concurrency_percent,
    )


def _batch(az: str, wave: str, n: int, ids: Sequence[str], errors_pct: int, concurrency_pct: int) -> Batch:
    size = len(ids)
    return Batch(
        batch_id=f"{az}.{wave}.{n:03d}",
        az=az,
        wave=wave,
        instance_ids=tuple(ids),
        max_concurrency=str(max(1, math.ceil(size * concurrency_pct / 100))),
        max_errors=str(0 if wave == ONE_BOX else size * errors_pct // 100),
    )


def chunk(ids: Sequence[str], size: int = SSM_MAX_INSTANCE_IDS) -> list[list[str]]:
    """``ids`` in consecutive lists of at most ``size`` (for rollback commands)."""
    return [list(ids[i:i + size]) for i in range(0, len(ids), size)]
