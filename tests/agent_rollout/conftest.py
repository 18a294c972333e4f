from __future__ import annotations

import pytest
from rollout_fakes import FakeFleet, FakeKillSwitchFlags

from telemetry_shunt.agent_rollout.clock import SimulatedClock
from telemetry_shunt.agent_rollout.engine import RolloutEngine, RolloutSettings
from telemetry_shunt.agent_rollout.state import AuditLog, LocalStateStore
from telemetry_shunt.core.rollout_plan import Host, plan_rollout


class Rig:
    """One fake fleet, one state directory, and engines (one per simulated controller process)."""

    def __init__(self, tmp_path, counts, *, settings: RolloutSettings | None = None) -> None:
        self.clock = SimulatedClock()
        self.fleet = FakeFleet(counts, self.clock)
        self.kill = FakeKillSwitchFlags(self.clock)
        self.store = LocalStateStore(tmp_path / "state", create=True)
        self.audit = AuditLog(tmp_path / "audit.jsonl")
        self.settings = settings or RolloutSettings(bake_seconds=600, poll_seconds=30, lease_seconds=120,
                                                    command_timeout_seconds=300)
        self.messages: list[str] = []

    def engine(self, owner: str = "op-1", store=None) -> RolloutEngine:
        return RolloutEngine(clients=self.fleet.clients(), store=store or self.store, audit=self.audit,
                             kill_switch=self.kill, clock=self.clock, owner=owner, progress=self.messages.append)

    def plan(self, **kwargs):
        hosts = [Host(h.instance_id, h.az) for h in self.fleet.hosts.values()]
        return plan_rollout(hosts, **kwargs)

    def start(self, version: str = "1.1.0", owner: str = "op-1", rollout_id: str = "r-test", store=None, **plan_kw):
        return self.engine(owner, store).start(fleet="web", version=version, plan=self.plan(**plan_kw),
                                               settings=self.settings, rollout_id=rollout_id)


@pytest.fixture
def rig_factory(tmp_path):
    def make(counts, **kwargs):
        return Rig(tmp_path, counts, **kwargs)
    return make
