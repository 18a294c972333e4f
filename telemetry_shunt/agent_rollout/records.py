"""Typed wave and batch state, stored in exactly the JSON the engine has always written.

``BatchRecord.to_dict()`` and ``WaveState.to_dict()`` give the stored form: the same keys as before the
records were typed (a key that was only ever written at some point, such as ``sent_at``, stays absent
until then), and keys this version does not know are kept, so a state written by another version of the
engine round-trips unchanged (tests/agent_rollout/data holds states written before this module existed).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

UPGRADE, ROLLBACK = "upgrade", "rollback"

# batch phases: pending -> sending (intent saved) -> sent (CommandId saved) -> done (outcomes saved)
PENDING, SENDING, SENT, DONE = "pending", "sending", "sent", "done"
# host outcomes
UPGRADED, FAILED, ROLLED_BACK_HOST, ROLLBACK_FAILED = "upgraded", "failed", "rolled_back", "rollback_failed"
# wave phases
WAVE_PENDING, BAKING, BAKED, WAVE_FAILED = "pending", "baking", "baked", "failed"


class _Record:
    """Shared to/from dict: ``None`` in an ``_OPTIONAL`` field means the key is absent."""

    _OPTIONAL: ClassVar[frozenset[str]] = frozenset()

    extra: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None and f.name in self._OPTIONAL:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name for f in fields(cls)} - {"extra"}  # type: ignore[arg-type]
        known = {k: v for k, v in data.items() if k in names}
        return cls(**known, extra={k: v for k, v in data.items() if k not in names})


@dataclass
class BatchRecord(_Record):
    """One SendCommand's worth of hosts: what was planned, what was sent and what each host reported."""

    batch_id: str
    az: str
    wave: str
    kind: str
    instance_ids: list[str]
    max_concurrency: str
    max_errors: str
    phase: str = PENDING
    hosts: dict[str, str] = field(default_factory=dict)  # instance id -> upgraded/failed/rolled_back/...
    command_id: str | None = None
    comment: str | None = None
    previous_versions: dict[str, str] | None = None  # upgrade batches: where a rollback returns each host
    version: str | None = None  # rollback batches: the version they install
    intent_at: float | None = None
    sent_at: float | None = None
    finished_at: float | None = None
    outcomes: dict[str, str] | None = None  # instance id -> SSM invocation status (or "Stuck")
    extra: dict[str, Any] = field(default_factory=dict)

    _OPTIONAL: ClassVar[frozenset[str]] = frozenset(
        {"previous_versions", "version", "intent_at", "sent_at", "finished_at", "outcomes"})

    def failures(self) -> list[str]:
        ok = UPGRADED if self.kind == UPGRADE else ROLLED_BACK_HOST
        return sorted(i for i, s in self.hosts.items() if s != ok)


@dataclass
class WaveState(_Record):
    """A zone's wave (one-box or rest): its phase and the bake's timestamps."""

    phase: str = WAVE_PENDING
    bake_started_at: float | None = None
    evidence_since: float | None = None
    baked_at: float | None = None
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    _OPTIONAL: ClassVar[frozenset[str]] = frozenset({"baked_at", "reason"})
