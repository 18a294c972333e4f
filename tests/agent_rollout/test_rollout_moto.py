"""Wiring with moto (EC2, SSM, CloudWatch, DynamoDB), in process: real boto3 clients and request shapes.

moto lacks two SSM operations the engine uses; the sandbox's moto extensions fill them (see
agent_rollout/sandbox.py). Time is simulated; the sandbox's simulated agents publish heartbeats to moto
CloudWatch at the simulated time whenever the engine sleeps.
"""

from __future__ import annotations

import time

import pytest
from moto import mock_aws

from telemetry_shunt.agent_rollout.aws import AwsClients, make_session
from telemetry_shunt.agent_rollout.clock import SimulatedClock
from telemetry_shunt.agent_rollout.engine import PreflightFailed, RolloutEngine, RolloutSettings
from telemetry_shunt.agent_rollout.killswitch import FileKillSwitchFlags
from telemetry_shunt.agent_rollout.sandbox import HeartbeatSimulator, install_moto_extensions, seed
from telemetry_shunt.agent_rollout.state import (
    COMPLETED,
    ROLLED_BACK,
    AuditLog,
    DynamoStateStore,
    LeaseHeld,
    StateConflict,
)
from telemetry_shunt.core.rollout_plan import plan_rollout

SETTINGS = RolloutSettings(bake_seconds=120, poll_seconds=30, heartbeat_period_seconds=60, lease_seconds=120)


class MotoRig:
    def __init__(self, tmp_path):
        self.session = make_session(region="us-east-1", profile=None)
        self.hosts = seed(self.session, endpoint_url=None, instances_per_az=3)
        self.clock = SimulatedClock(start=time.time())
        self.sim = HeartbeatSimulator(self.session, endpoint_url=None, hosts=self.hosts, now=self.clock.now)
        self.sim.step()  # the agents have been heartbeating at 1.0.0
        self.clock.on_sleep.append(lambda _now: self.sim.step())
        self.clients = AwsClients(ec2=self.session.client("ec2"), ssm=self.session.client("ssm"),
                                  cloudwatch=self.session.client("cloudwatch"))
        self.dynamodb = self.session.client("dynamodb")
        self.store = DynamoStateStore(self.dynamodb)
        self.kill_file = tmp_path / "kill.json"
        self.kill_file.write_text('{"telemetry": {"enabled": true}}')
        self.audit = AuditLog(tmp_path / "audit.jsonl")

    def engine(self, owner="op-1"):
        return RolloutEngine(clients=self.clients, store=self.store, audit=self.audit,
                             kill_switch=FileKillSwitchFlags(self.kill_file), clock=self.clock, owner=owner)


@pytest.fixture
def moto_rig(tmp_path, monkeypatch):
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    install_moto_extensions()
    with mock_aws():
        yield MotoRig(tmp_path)


def test_discovery_groups_the_tagged_fleet_by_az(moto_rig):
    ec2 = moto_rig.session.client("ec2")
    ec2.run_instances(ImageId="ami-12c6146b", MinCount=2, MaxCount=2)  # untagged: not ours
    hosts = moto_rig.engine().discover("demo")
    assert sorted((h.instance_id, h.az) for h in hosts) == sorted((h["instance_id"], h["az"]) for h in moto_rig.hosts)
    assert moto_rig.engine().discover("other-fleet") == []


def test_rollout_completes_with_state_in_dynamodb(moto_rig):
    engine = moto_rig.engine()
    plan = plan_rollout(engine.discover("demo"))
    state = engine.start(fleet="demo", version="1.1.0", plan=plan, settings=SETTINGS, rollout_id="r-moto")
    assert state.status == COMPLETED
    assert set(moto_rig.sim.version.values()) == {"1.1.0"}
    stored = moto_rig.store.load("r-moto")
    assert stored.meta["status"] == COMPLETED
    assert all(s == "upgraded" for b in stored.batches.values() for s in b.hosts.values())
    assert len(stored.batches) == 6
    # every command carried the rollout id + batch id, at most 50 ids, the version parameter
    commands = moto_rig.clients.ssm.list_commands()["Commands"]
    assert sorted(c["Comment"] for c in commands) == sorted(f"shunt r-moto {b}" for b in stored.batches)
    assert all(c["Parameters"]["version"] == ["1.1.0"] for c in commands)
    assert moto_rig.store.read_lease("demo") is None
    assert [m["rollout_id"] for m in moto_rig.store.list_rollouts()] == ["r-moto"]
    # AWS calls stay small: one get_metric_data per bake (+1 in preflight to read current versions)
    calls = engine.aws.calls
    assert calls["send_command"] == 6 and calls["get_metric_data"] == 6 + 1 and calls["list_metrics"] == 1


def test_silent_version_halts_and_rolls_back_the_zone(moto_rig):
    engine = moto_rig.engine()
    plan = plan_rollout(engine.discover("demo"))
    state = engine.start(fleet="demo", version="1.2.0-broken", plan=plan, settings=SETTINGS, rollout_id="r-bad")
    assert state.status == ROLLED_BACK
    assert "no heartbeat" in state.meta["reason"]
    moto_rig.sim.step()
    assert set(moto_rig.sim.version.values()) == {"1.0.0"}
    assert state.meta["zones"] == {"us-east-1a": "rolled_back", "us-east-1b": "pending", "us-east-1c": "pending"}


def test_alarm_in_alarm_state_fails_preflight(moto_rig):
    moto_rig.session.client("cloudwatch").set_alarm_state(
        AlarmName="TelemetryShunt-Heartbeat-us-east-1b", StateValue="ALARM", StateReason="test")
    engine = moto_rig.engine()
    check = engine.preflight(plan_rollout(engine.discover("demo")), "1.1.0", SETTINGS)
    assert not check.ok
    with pytest.raises(PreflightFailed, match="TelemetryShunt-Heartbeat-us-east-1b is ALARM"):
        check.raise_if_failed()


def test_missing_version_fails_preflight(moto_rig):
    engine = moto_rig.engine()
    check = engine.preflight(plan_rollout(engine.discover("demo")), "7.7.7", SETTINGS)
    assert [c.name for c in check.checks if not c.ok] == ["version"]


def test_dynamodb_lease_is_exclusive_until_it_expires(moto_rig):
    store = moto_rig.store
    lease = store.acquire_lease("demo", "op-1", now=1000.0, ttl=60, rollout_id="r-1")
    with pytest.raises(LeaseHeld, match=r"locked by op-1 \(rollout r-1\) until 1970-01-01T00:17:40Z") as err:
        store.acquire_lease("demo", "op-2", now=1010.0, ttl=60)
    assert err.value.exit_code == 3
    lease = store.renew_lease(lease, now=1050.0, ttl=60)
    with pytest.raises(LeaseHeld):
        store.acquire_lease("demo", "op-2", now=1100.0, ttl=60)
    taken = store.acquire_lease("demo", "op-2", now=1111.0, ttl=60)  # op-1's lease expired at 1110
    assert taken.owner == "op-2"
    with pytest.raises(LeaseHeld):
        store.renew_lease(lease, now=1112.0, ttl=60)
    store.release_lease(lease)  # not the holder: no effect
    assert store.read_lease("demo").owner == "op-2"


def test_dynamodb_save_is_conditional_on_the_sequence(moto_rig):
    engine = moto_rig.engine()
    plan = plan_rollout(engine.discover("demo"), az_order=["us-east-1a"])
    engine.start(fleet="demo", version="1.1.0", plan=plan, settings=SETTINGS, rollout_id="r-seq")
    a, b = moto_rig.store.load("r-seq"), moto_rig.store.load("r-seq")
    a.meta["reason"] = "first writer"
    moto_rig.store.save(a)
    b.meta["reason"] = "stale writer"
    with pytest.raises(StateConflict, match="changed by another controller"):
        moto_rig.store.save(b)
    assert moto_rig.store.load("r-seq").meta["reason"] == "first writer"


def test_abort_request_through_dynamodb_stops_the_next_batch(moto_rig):
    engine = moto_rig.engine()
    plan = plan_rollout(engine.discover("demo"))
    asked = []

    def abort_after_first_zone(_now):
        state = moto_rig.store.load("r-ab")
        if not asked and state.meta["zones"]["us-east-1a"] == "done":
            asked.append(moto_rig.engine("op-2").request_abort("r-ab"))

    moto_rig.clock.on_sleep.append(abort_after_first_zone)
    state = engine.start(fleet="demo", version="1.1.0", plan=plan, settings=SETTINGS, rollout_id="r-ab")
    assert state.status == "aborted" and "op-2" in state.meta["reason"]
    moto_rig.clock.on_sleep.remove(abort_after_first_zone)
    state = moto_rig.engine("op-3").resume("r-ab")
    assert state.status == COMPLETED
    assert moto_rig.store.abort_requested("r-ab") is None


def test_current_versions_come_from_the_newest_heartbeat(moto_rig):
    engine = moto_rig.engine()
    plan = plan_rollout(engine.discover("demo"))
    engine.start(fleet="demo", version="1.1.0", plan=plan, settings=SETTINGS, rollout_id="r-v1")
    moto_rig.clock.sleep(SETTINGS.heartbeat_period_seconds)
    # the last zone's hosts beat at 1.0.0 and at 1.1.0 within the window: the newest beat decides
    check = moto_rig.engine("op-2").preflight(plan, "1.0.0", SETTINGS)
    assert check.ok, check.rows()
    assert set(check.previous_versions.values()) == {"1.1.0"}


def test_moto_extensions_target_only_the_given_instances(moto_rig):
    ssm = moto_rig.clients.ssm
    one = moto_rig.hosts[0]["instance_id"]
    command = ssm.send_command(InstanceIds=[one], DocumentName="TelemetryShunt-Agent-Upgrade",
                               Parameters={"version": ["1.1.0"]}, Comment="c")["Command"]
    invocations = ssm.list_command_invocations(CommandId=command["CommandId"])["CommandInvocations"]
    assert [(i["InstanceId"], i["Status"]) for i in invocations] == [(one, "Success")]
    info = ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": [one]}])
    assert [(i["InstanceId"], i["PingStatus"]) for i in info["InstanceInformationList"]] == [(one, "Online")]
