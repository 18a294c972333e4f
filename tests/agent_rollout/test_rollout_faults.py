"""The fault matrix: a fake fleet drives every failure path of the engine.

Every case checks the same invariants: the final state is right, no host was sent the upgrade twice,
no zone was touched before the previous one baked, and every persisted transition is in the audit log.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rollout_fakes import NEW, OLD, ROLLBACK_DOC, UPGRADE_DOC, SimulatedCrash

from telemetry_shunt.agent_rollout.engine import PreflightFailed, RolloutEngine, RolloutSettings
from telemetry_shunt.agent_rollout.state import (
    ABORTED,
    COMPLETED,
    HALTED,
    ROLLED_BACK,
    LeaseHeld,
    LocalStateStore,
    RolloutNotFound,
)
from telemetry_shunt.core.contract import heartbeat_alarm_name
from telemetry_shunt.errors import ShuntError, ValidationError

A, B, C = "us-east-1a", "us-east-1b", "us-east-1c"


def check_invariants(rig, state):
    # no host was sent the upgrade twice
    assert all(h.upgrades <= 1 for h in rig.fleet.hosts.values()), {
        i: h.upgrades for i, h in rig.fleet.hosts.items() if h.upgrades > 1}
    # zones strictly one at a time, in plan order, and a zone only after the previous one was done
    order = state.meta["zone_order"]
    upgrade_zones = [az for _, az, doc in rig.fleet.zone_log if doc == UPGRADE_DOC]
    seen = list(dict.fromkeys(upgrade_zones))
    assert seen == order[:len(seen)]
    assert upgrade_zones == sorted(upgrade_zones, key=order.index)
    events = rig.audit.read(state.rollout_id)
    for prev, nxt in zip(order, order[1:], strict=False):
        first_next = next((n for n, e in enumerate(events) if e["event"] == "batch_sending" and
                           e["batch"].startswith(nxt + ".")), None)
        if first_next is not None:
            done = [n for n, e in enumerate(events) if e["event"] == "zone_done" and e["az"] == prev]
            assert done and done[0] < first_next, f"{nxt} touched before {prev} was done"
            baked = [n for n, e in enumerate(events) if e["event"] == "baked" and e["az"] == prev]
            assert baked and baked[-1] < first_next
    # nothing lost: every persisted sequence number has its audit event
    seqs = {e["seq"] for e in events}
    assert set(range(1, state.meta["seq"] + 1)) <= seqs
    # the stored state is what the engine returned, and matches the hosts
    stored = rig.store.load(state.rollout_id)
    assert stored.meta["status"] == state.meta["status"]
    previous = {i: v for b in stored.batches.values() for i, v in (b.previous_versions or {}).items()}
    for iid, kinds in stored.host_statuses().items():
        host = rig.fleet.hosts[iid]
        if kinds.get("rollback") == "rolled_back":
            assert host.version == previous[iid]
        elif kinds.get("upgrade") == "upgraded":
            assert host.version == NEW
    # every host sent a command is accounted for in the state
    sent = {i for c in rig.fleet.commands if c["DocumentName"] == UPGRADE_DOC for i in c["InstanceIds"]}
    assert sent == {i for i, k in stored.host_statuses().items() if "upgrade" in k}


def upgraded(rig, az=None):
    return [i for i in rig.fleet.ids(az) if rig.fleet.hosts[i].version == NEW]


def test_happy_path_three_zones(rig_factory):
    rig = rig_factory({A: 1, B: 5, C: 120})
    state = rig.start()
    assert state.status == COMPLETED
    assert upgraded(rig) == rig.fleet.ids()
    sizes = [len(c["InstanceIds"]) for c in rig.fleet.commands]
    assert sizes == [1, 1, 4, 1, 50, 50, 19]
    # five waves baked (A has only a canary), each for the full bake time
    assert rig.clock.slept >= 5 * rig.settings.bake_seconds
    check_invariants(rig, state)


def test_failures_below_max_errors_continue(rig_factory):
    rig = rig_factory({A: 51})
    bad = rig.fleet.ids(A)[1:4]  # 3 failures in a batch of 50 (MaxErrors 5)
    rig.fleet.fail_upgrade.update(bad)
    state = rig.start()
    assert state.status == COMPLETED
    statuses = state.host_statuses()
    assert sorted(i for i, k in statuses.items() if k["upgrade"] == "failed") == sorted(bad)
    assert all(rig.fleet.hosts[i].version == OLD for i in bad)
    assert len(upgraded(rig)) == 48
    check_invariants(rig, state)


def test_failures_above_max_errors_halt_and_roll_back_that_zone(rig_factory):
    rig = rig_factory({A: 3, B: 51, C: 4})
    bad = rig.fleet.ids(B)[1:7]  # 6 failures > MaxErrors 5
    rig.fleet.fail_upgrade.update(bad)
    state = rig.start()
    assert state.status == ROLLED_BACK
    assert "6 of 50 hosts failed" in state.meta["reason"]
    assert upgraded(rig, A) == rig.fleet.ids(A)  # the baked zone stays upgraded
    assert upgraded(rig, B) == [] and all(rig.fleet.hosts[i].rollbacks == 1 for i in rig.fleet.ids(B))
    assert all(h.upgrades == 0 for h in rig.fleet.hosts.values() if h.az == C)  # never touched
    assert state.meta["zones"] == {A: "done", B: "rolled_back", C: "pending"}
    check_invariants(rig, state)


def test_canary_failure_halts_before_the_rest(rig_factory):
    rig = rig_factory({A: 10})
    canary = rig.fleet.ids(A)[0]
    rig.fleet.fail_upgrade.add(canary)
    state = rig.start()
    assert state.status == ROLLED_BACK
    assert [c["InstanceIds"] for c in rig.fleet.commands] == [[canary], [canary]]
    assert rig.fleet.commands[1]["DocumentName"] == ROLLBACK_DOC
    check_invariants(rig, state)


def test_command_stuck_in_progress_is_cancelled_and_counts_as_failure(rig_factory):
    rig = rig_factory({A: 10})
    stuck = rig.fleet.ids(A)[3]
    rig.fleet.stuck.add(stuck)
    state = rig.start()
    assert state.status == ROLLED_BACK
    assert rig.fleet.calls["cancel_command"] == 1
    batch = state.batches[f"{A}.rest.000"]
    assert batch.outcomes[stuck] == "Stuck" and batch.hosts[stuck] == "failed"
    assert rig.clock.now() - batch.sent_at >= rig.settings.command_timeout_seconds
    check_invariants(rig, state)


def test_host_stuck_for_the_rollback_too_leaves_the_rollout_halted(rig_factory):
    rig = rig_factory({A: 10})
    stuck = rig.fleet.ids(A)[3]
    rig.fleet.stuck_always.add(stuck)
    state = rig.start()
    assert state.status == HALTED
    assert state.batches[f"{A}.rollback.000"].hosts[stuck] == "rollback_failed"
    assert upgraded(rig) == []
    check_invariants(rig, state)


def test_slow_commands_are_waited_for(rig_factory):
    rig = rig_factory({A: 4})
    rig.fleet.slow_polls = 3
    state = rig.start()
    assert state.status == COMPLETED
    assert rig.fleet.calls["list_command_invocations"] >= 2 * 4
    check_invariants(rig, state)


@pytest.mark.parametrize("alarm_state", ["ALARM", "INSUFFICIENT_DATA"])
def test_alarm_during_bake_halts_and_rolls_back(rig_factory, alarm_state):
    rig = rig_factory({A: 3, B: 3, C: 3})
    # B's alarm leaves OK in the middle of B's first bake (after A's two bakes)
    at = rig.clock.now() + 2 * rig.settings.bake_seconds + rig.settings.bake_seconds / 2
    rig.fleet.alarm_schedule.append((at, heartbeat_alarm_name(B), alarm_state))
    state = rig.start()
    assert state.status == ROLLED_BACK
    assert f"{heartbeat_alarm_name(B)} is {alarm_state}" in state.meta["reason"]
    assert upgraded(rig, B) == [] and upgraded(rig, A) == rig.fleet.ids(A)
    assert all(h.upgrades == 0 for h in rig.fleet.hosts.values() if h.az == C)
    check_invariants(rig, state)


def test_missing_heartbeat_from_an_upgraded_host_halts(rig_factory):
    rig = rig_factory({A: 6})
    silent = rig.fleet.ids(A)[4]
    rig.fleet.silent.add(silent)
    state = rig.start()
    assert state.status == ROLLED_BACK
    assert "no heartbeat" in state.meta["reason"] and silent in state.meta["reason"]
    assert upgraded(rig) == []
    check_invariants(rig, state)


def test_kill_switch_flip_aborts_then_resume_finishes(rig_factory):
    rig = rig_factory({A: 3, B: 3, C: 3})
    rig.kill.flip_at.append((rig.clock.now() + 2.5 * rig.settings.bake_seconds, "telemetry", False))
    state = rig.start()
    assert state.status == ABORTED and "ENGAGED" in state.meta["reason"]
    assert all(h.upgrades == 0 for h in rig.fleet.hosts.values() if h.az == C)
    with pytest.raises(ShuntError, match="still ENGAGED"):
        rig.engine("op-2").resume(state.rollout_id)
    rig.kill.flags["telemetry"] = {"enabled": True}
    state = rig.engine("op-2").resume(state.rollout_id)
    assert state.status == COMPLETED
    assert upgraded(rig) == rig.fleet.ids()
    check_invariants(rig, state)


def test_per_az_kill_switch_flipped_mid_rollout_stops_before_that_zone(rig_factory):
    rig = rig_factory({A: 2, B: 2})
    rig.kill.flip_at.append((rig.clock.now() + rig.settings.bake_seconds / 2, f"telemetry-{B}", False))
    state = rig.start()
    assert state.status == ABORTED and B in state.meta["reason"]
    assert state.meta["zones"] == {A: "done", B: "pending"}
    assert upgraded(rig, A) == rig.fleet.ids(A) and upgraded(rig, B) == []
    check_invariants(rig, state)


def test_preflight_refuses_an_engaged_zone(rig_factory):
    rig = rig_factory({A: 2, B: 2})
    rig.kill.flags[f"telemetry-{B}"] = {"enabled": False}
    assert rig.engine().preflight(rig.plan(az_order=[A]), NEW, rig.settings).ok
    with pytest.raises(PreflightFailed, match=f"ENGAGED \\(telemetry OFF\\) in {B}"):
        rig.start()
    assert rig.fleet.commands == []


def test_throttling_is_retried(rig_factory):
    rig = rig_factory({A: 3, B: 3})
    rig.fleet.throttle.update({"send_command": 3, "get_metric_data": 2, "describe_alarms": 2,
                               "list_command_invocations": 2})
    engine = rig.engine()
    state = engine.start(fleet="web", version=NEW, plan=rig.plan(), settings=rig.settings, rollout_id="r-t")
    assert state.status == COMPLETED
    assert engine.aws.throttled == 9
    assert len([c for c in rig.fleet.commands if c["DocumentName"] == UPGRADE_DOC]) == 4
    check_invariants(rig, state)


def test_second_operator_is_refused_with_holder_and_expiry(rig_factory):
    rig = rig_factory({A: 3})
    errors = []

    def second_operator(_now):
        if not errors:
            try:
                rig.start(owner="op-2", rollout_id="r-other")
            except LeaseHeld as exc:
                errors.append(exc)

    rig.clock.on_sleep.append(second_operator)
    state = rig.start()
    assert state.status == COMPLETED
    assert len(errors) == 1 and errors[0].exit_code == 3
    assert "locked by op-1 (rollout r-test) until 20" in str(errors[0])
    assert all(h.upgrades == 1 for h in rig.fleet.hosts.values())
    assert not (rig.store.dir / "rollouts" / "r-other.json").exists()
    rig.clock.on_sleep.clear()
    assert rig.store.read_lease("web") is None
    check_invariants(rig, state)


def test_operator_abort_mid_rollout_then_resume(rig_factory):
    rig = rig_factory({A: 3, B: 3})

    def abort(now):
        if now > rig.clock.now() - 1 and rig.store.abort_requested("r-test") is None and \
                rig.store.load("r-test").meta["zones"][A] == "done":
            rig.engine("op-2").request_abort("r-test")

    rig.clock.on_sleep.append(abort)
    state = rig.start()
    rig.clock.on_sleep.clear()
    assert state.status == ABORTED and "aborted by op-2" in state.meta["reason"]
    state = rig.engine("op-3").resume("r-test")
    assert state.status == COMPLETED
    check_invariants(rig, state)


def test_operator_rollback_of_a_completed_rollout(rig_factory):
    rig = rig_factory({A: 2, B: 60})
    state = rig.start()
    assert state.status == COMPLETED
    state = rig.engine("op-2").rollback("r-test")
    assert state.status == ROLLED_BACK
    assert upgraded(rig) == []
    rollback_sizes = [len(c["InstanceIds"]) for c in rig.fleet.commands if c["DocumentName"] == ROLLBACK_DOC]
    assert rollback_sizes == [50, 10, 2]  # newest zone first, at most 50 ids a command
    check_invariants(rig, state)


@pytest.mark.parametrize("crash_after_send", [True, False])
def test_operator_rollback_after_a_crash_mid_batch_covers_the_in_flight_hosts(rig_factory, crash_after_send):
    rig = rig_factory({A: 1, B: 20})
    if crash_after_send:
        rig.fleet.crash_after_send = 3  # B's rest batch accepted, CommandId never saved
        with pytest.raises(SimulatedCrash):
            rig.start()
    else:  # intent saved, then died before SendCommand: the batch was never sent
        original = rig.store.save

        def save(state):
            original(state)
            if state.batches[f"{B}.rest.000"].phase == "sending":
                rig.store.save = original
                raise SimulatedCrash("died before SendCommand")

        rig.store.save = save
        with pytest.raises(SimulatedCrash):
            rig.start()
        assert rig.fleet.hosts[rig.fleet.ids(B)[1]].upgrades == 0
    rig.clock.on_sleep.clear()
    rig.clock.advance(rig.settings.lease_seconds + 1)
    state = rig.engine("op-2").rollback("r-test")
    assert state.status == ROLLED_BACK
    assert upgraded(rig) == []
    assert all(h.upgrades <= 1 for h in rig.fleet.hosts.values())
    check_invariants(rig, state)


def test_rolling_back_twice_sends_nothing_new(rig_factory):
    rig = rig_factory({A: 3, B: 3})
    rig.fleet.silent.add(rig.fleet.ids(B)[0])
    state = rig.start()
    assert state.status == ROLLED_BACK
    sent = len(rig.fleet.commands)
    again = rig.engine("op-2").rollback("r-test")
    # zone A (done) is rolled back now; B was rolled back by the halt and is not touched again
    assert again.status == ROLLED_BACK
    new = rig.fleet.commands[sent:]
    assert [c["DocumentName"] for c in new] == [ROLLBACK_DOC] and set(new[0]["InstanceIds"]) == set(rig.fleet.ids(A))
    assert upgraded(rig) == []
    assert all(h.rollbacks <= 1 for h in rig.fleet.hosts.values())
    check_invariants(rig, again)


def test_resume_of_a_finished_rollout_changes_nothing(rig_factory):
    rig = rig_factory({A: 2})
    state = rig.start()
    calls = sum(rig.fleet.calls.values())
    again = rig.engine("op-2").resume(state.rollout_id)
    assert again.status == COMPLETED and sum(rig.fleet.calls.values()) == calls


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.fleet.versions.discard(NEW), "version '1.1.0' of package TelemetryShunt-Agent-Package does not exist"),
        (lambda r: r.fleet.alarm_states.pop(heartbeat_alarm_name(A)), "TelemetryShunt-Heartbeat-us-east-1a is missing"),
        (lambda r: r.fleet.alarm_states.update({heartbeat_alarm_name(A): "INSUFFICIENT_DATA"}), "is INSUFFICIENT_DATA"),
        (lambda r: r.fleet.offline.add(r.fleet.ids(A)[0]), "1 not online"),
        (lambda r: r.kill.flags.update({"telemetry": {"enabled": False}}), "ENGAGED"),
    ],
)
def test_preflight_failures(rig_factory, mutate, message):
    rig = rig_factory({A: 3})
    mutate(rig)
    with pytest.raises(PreflightFailed, match=message.replace("(", r"\(").replace(")", r"\)")):
        rig.start()
    assert rig.fleet.commands == []
    assert rig.store.read_lease("web") is None


def test_rollback_returns_each_host_to_its_own_previous_version(rig_factory):
    rig = rig_factory({A: 1, B: 12})
    older = rig.fleet.ids(B)[::3]
    for iid in older:
        rig.fleet.hosts[iid].version = "0.9.0"
    rig.fleet.silent.add(rig.fleet.ids(B)[7])
    state = rig.start()
    assert state.status == ROLLED_BACK
    rollbacks = [c for c in rig.fleet.commands if c["DocumentName"] == ROLLBACK_DOC]
    assert sorted(c["Parameters"]["version"][0] for c in rollbacks) == ["0.9.0", OLD]
    assert {i for i in rig.fleet.ids(B) if rig.fleet.hosts[i].version == "0.9.0"} == set(older)
    assert all(rig.fleet.hosts[i].version == OLD for i in rig.fleet.ids(B) if i not in older)
    check_invariants(rig, state)


def test_unknown_current_version_needs_an_explicit_rollback_version(rig_factory):
    rig = rig_factory({A: 3})
    rig.fleet.dark.add(rig.fleet.ids(A)[1])
    with pytest.raises(PreflightFailed, match="cannot tell the current agent version of 1 host.*--rollback-version"):
        rig.start()
    rig.settings = RolloutSettings(bake_seconds=600, poll_seconds=30, lease_seconds=120, rollback_version="4.0.4")
    with pytest.raises(PreflightFailed, match="rollback version '4.0.4' .* does not exist"):
        rig.start()
    assert rig.fleet.commands == []


def test_s3_artifact_versions_come_from_the_upgrade_document(rig_factory):
    rig = rig_factory({A: 2})
    rig.fleet.allowed_values = [OLD, "1.0.5"]
    with pytest.raises(PreflightFailed, match="version '1.1.0' is not one the upgrade document allows"):
        rig.start()
    rig.fleet.allowed_values = [OLD, NEW]
    rig.fleet.versions.clear()  # no Distributor package at all
    assert rig.start().status == COMPLETED


def test_bake_shorter_than_heartbeat_period_is_rejected(rig_factory):
    rig = rig_factory({A: 3}, settings=RolloutSettings(bake_seconds=30))
    with pytest.raises(ValidationError, match="shorter than the heartbeat period"):
        rig.start()


# --- crash at every persisted transition, then resume ---------------------------------------------

class CrashingStore:
    """Persists like the real store, then the process dies right after the n-th save."""

    def __init__(self, inner: LocalStateStore, crash_after: int) -> None:
        self.inner = inner
        self.left = crash_after
        self.dead = False

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if self.dead:
                raise SimulatedCrash("process is gone")
            result = attr(*args, **kwargs)
            if name in ("save", "create"):
                self.left -= 1
                if self.left == 0:
                    self.dead = True
                    raise SimulatedCrash(f"crashed after save #{name}")
            return result

        return call


def run_with_crashes(rig, crash_points, *, start_kwargs=None):
    """Start, crash at each point in turn (a fresh controller resumes after the lease expired)."""
    crashes = 0
    store = CrashingStore(rig.store, crash_points.pop(0)) if crash_points else rig.store
    try:
        return rig.start(store=store, **(start_kwargs or {})), crashes
    except SimulatedCrash:
        crashes += 1
    n = 1
    while True:
        rig.clock.advance(rig.settings.lease_seconds + 1)
        n += 1
        store = CrashingStore(rig.store, crash_points.pop(0)) if crash_points else rig.store
        try:
            return rig.engine(f"op-{n}", store).resume("r-test"), crashes
        except SimulatedCrash:
            crashes += 1


def count_saves(rig_factory, counts, setup=lambda r: None):
    rig = rig_factory(counts)
    setup(rig)
    saves = []
    original = rig.store.save
    rig.store.save = lambda s: (saves.append(1), original(s))[1]
    state = rig.start()
    return len(saves) + 1, state  # + create


SCENARIOS = {
    "success": ({A: 1, B: 3, C: 55}, lambda r: None, COMPLETED),
    "halt": ({A: 2, B: 12}, lambda r: r.fleet.silent.add(r.fleet.ids(B)[5]), ROLLED_BACK),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_crash_after_every_persisted_transition_then_resume(rig_factory, tmp_path, scenario):
    counts, setup, expected = SCENARIOS[scenario]
    total, clean = count_saves(rig_factory, counts, setup)
    clean_hosts = clean.host_statuses()
    assert total > 20
    for k in range(1, total + 1):
        rig = rig_factory(counts)
        rig.store = LocalStateStore(tmp_path / f"crash-{scenario}-{k}", create=True)
        rig.audit.path = tmp_path / f"audit-{scenario}-{k}.jsonl"
        setup(rig)
        state, crashes = run_with_crashes(rig, [k])
        assert crashes == 1, k
        assert state.status == expected, (k, state.meta["reason"])
        assert state.host_statuses() == clean_hosts, k
        check_invariants(rig, state)
        events = [e["event"] for e in rig.audit.read("r-test")]
        # after the last save the rollout is final: resuming it is a no-op, not a new transition
        assert events.count("resumed") == (0 if k == total else 1), k


@pytest.mark.parametrize("send_index", range(1, 7))
def test_crash_after_sendcommand_accepted_is_not_sent_twice(rig_factory, send_index):
    rig = rig_factory({A: 1, B: 3, C: 55})
    rig.fleet.crash_after_send = send_index
    with pytest.raises(SimulatedCrash):
        rig.start()
    rig.clock.advance(rig.settings.lease_seconds + 1)
    state = rig.engine("op-2").resume("r-test")
    assert state.status == COMPLETED
    # one command per planned batch: the crashed one was found by its comment, not sent again
    assert len(rig.fleet.commands) == len(rig.plan().batches) == 6
    recovered = [e for e in rig.audit.read("r-test") if e["event"] == "batch_sent" and e["recovered"]]
    assert len(recovered) == 1
    check_invariants(rig, state)


def test_second_controller_with_a_stale_state_cannot_write(rig_factory):
    rig = rig_factory({A: 2})
    rig.start()
    stale = rig.store.load("r-test")
    fresh = rig.store.load("r-test")
    rig.store.save(fresh)
    with pytest.raises(ShuntError, match="changed by another controller"):
        rig.store.save(stale)


def test_engine_uses_only_injected_clients(rig_factory):
    rig = rig_factory({A: 2})
    engine: RolloutEngine = rig.engine()
    assert engine.clients.ssm.f is rig.fleet


def test_an_interrupted_bake_starts_over_on_resume(rig_factory):
    rig = rig_factory({A: 2})
    calls = []

    def interrupt(now):
        calls.append(now)
        if len(calls) == 2:  # mid-way through the first bake
            raise KeyboardInterrupt

    rig.clock.on_sleep.append(interrupt)
    with pytest.raises(KeyboardInterrupt):
        rig.start()
    rig.clock.on_sleep.clear()
    assert rig.store.read_lease("web") is None  # released on the way out
    resumed_at = rig.clock.now()
    state = rig.engine("op-2").resume("r-test")
    assert state.status == COMPLETED
    events = rig.audit.read("r-test")
    restarts = [e for e in events if e["event"] == "bake_started" and e["wave"] == "one-box"]
    assert len(restarts) == 2
    baked = next(e for e in events if e["event"] == "baked" and e["wave"] == "one-box")
    first_bake_end = resumed_at + rig.settings.bake_seconds
    assert baked["seq"] > restarts[1]["seq"] and rig.clock.now() >= first_bake_end
    check_invariants(rig, state)


class CrashingDynamo:
    """A DynamoDB client that dies right after its n-th successful write (PutItem, DeleteItem or a
    TransactWriteItems: a save is one transaction, so nothing can die between its items)."""

    def __init__(self, client, crash_after: int) -> None:
        self.client = client
        self.left = crash_after

    def __getattr__(self, name):
        method = getattr(self.client, name)
        if name not in ("put_item", "delete_item", "transact_write_items"):
            return method

        def call(**kwargs):
            if self.left == 0:
                raise SimulatedCrash("process is gone")
            result = method(**kwargs)
            self.left -= 1
            if self.left == 0:
                raise SimulatedCrash(f"crashed after {name}")
            return result

        return call


def test_crash_after_every_dynamodb_write_then_resume(rig_factory):
    from moto import mock_aws

    from telemetry_shunt.agent_rollout.aws import make_session
    from telemetry_shunt.agent_rollout.state import DynamoStateStore, RolloutNotFound, create_state_table

    counts = {A: 1, B: 3}
    settings = RolloutSettings(bake_seconds=120, poll_seconds=60, lease_seconds=150, command_timeout_seconds=300)
    with mock_aws():
        client = make_session(region="us-east-1", profile=None).client("dynamodb")
        create_state_table(client, "clean")
        never = CrashingDynamo(client, -1)
        clean = rig_factory(counts, settings=settings).start(store=DynamoStateStore(never, "clean"))
        total = -1 - never.left  # writes of an uninterrupted run (lease, batches, meta, renewals, release)
        assert total > 20
        for k in range(1, total + 1):
            rig = rig_factory(counts, settings=settings)
            table = f"crash-{k}"
            create_state_table(client, table)
            rig.audit.path = rig.audit.path.with_name(f"audit-dynamo-{k}.jsonl")
            rig.store = DynamoStateStore(client, table)
            try:
                state = rig.start(store=DynamoStateStore(CrashingDynamo(client, k), table))
            except SimulatedCrash:
                rig.clock.advance(settings.lease_seconds + 1)
                try:
                    state = rig.engine("op-2").resume("r-test")
                except RolloutNotFound:  # died before the rollout existed: the operator starts again
                    state = rig.start(owner="op-2")
            assert state.status == COMPLETED, k
            assert state.host_statuses() == clean.host_statuses(), k
            check_invariants(rig, state)


def test_unreadable_kill_switch_aborts(rig_factory):
    rig = rig_factory({A: 2, B: 2})
    reads = []

    def broken():
        reads.append(1)
        if len(reads) > 3:  # preflight and the first checks pass, then AppConfig becomes unreachable
            raise ShuntError("AppConfig unreachable")
        return {"telemetry": {"enabled": True}}

    rig.kill.read_flags = broken
    state = rig.start()
    assert state.status == ABORTED and "kill switch unreadable" in state.meta["reason"]
    check_invariants(rig, state)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    counts=st.dictionaries(st.sampled_from([A, B, C]), st.integers(1, 70), min_size=1),
    fail_ratio=st.floats(0, 0.3), silent_ratio=st.floats(0, 0.05), kill_at=st.none() | st.floats(1, 6000),
    alarm_at=st.none() | st.floats(1, 6000), crash_after=st.none() | st.integers(1, 60),
    seed=st.integers(0, 10_000),
)
def test_random_faults_keep_the_invariants(rig_factory, counts, fail_ratio, silent_ratio, kill_at, alarm_at,
                                           crash_after, seed):
    import random
    import tempfile
    from pathlib import Path

    rng = random.Random(seed)
    rig = rig_factory(counts)
    scratch = Path(tempfile.mkdtemp(prefix="shunt-hyp-"))  # one per example: the fixture's tmp_path is shared
    rig.store = LocalStateStore(scratch / "state", create=True)
    rig.audit.path = scratch / "audit.jsonl"
    ids = rig.fleet.ids()
    rig.fleet.fail_upgrade.update(i for i in ids if rng.random() < fail_ratio)
    rig.fleet.silent.update(i for i in ids if rng.random() < silent_ratio)
    t0 = rig.clock.now()
    if kill_at is not None:
        rig.kill.flip_at.append((t0 + kill_at, "telemetry", False))
    if alarm_at is not None:
        rig.fleet.alarm_schedule.append((t0 + alarm_at, heartbeat_alarm_name(rng.choice(sorted(counts))), "ALARM"))
    store = CrashingStore(rig.store, crash_after) if crash_after else rig.store
    try:
        state = rig.start(store=store)
    except SimulatedCrash:
        rig.clock.advance(rig.settings.lease_seconds + 1)
        try:
            state = rig.engine("op-2").resume("r-test")
        except RolloutNotFound:
            event("crashed before the rollout existed")
            return
        except ShuntError as exc:  # resuming an aborted rollout while the switch is still engaged
            assert "still ENGAGED" in str(exc)
            state = rig.store.load("r-test")
    assert state.status in (COMPLETED, ROLLED_BACK, ABORTED, HALTED)
    event(state.status)
    if state.status == COMPLETED:
        statuses = state.host_statuses()
        assert all(k["upgrade"] in ("upgraded", "failed") for k in statuses.values())
        assert len(statuses) == len(ids)
    if state.status == ROLLED_BACK:
        halted = [az for az, phase in state.meta["zones"].items() if phase == "rolled_back"]
        assert len(halted) == 1 and all(rig.fleet.hosts[i].version != NEW for i in rig.fleet.ids(halted[0]))
    check_invariants(rig, state)


def test_kill_switch_that_cannot_be_read_fails_preflight(rig_factory):
    from rollout_fakes import client_error

    rig = rig_factory({A: 2})

    def unreachable():
        raise client_error("ResourceNotFoundException", "StartConfigurationSession", "no such application")

    rig.kill.read_flags = unreachable
    with pytest.raises(PreflightFailed, match="kill switch: cannot read it: .*ResourceNotFoundException"):
        rig.start()
    assert rig.fleet.commands == []


def test_summary_counts_each_hosts_latest_outcome(rig_factory):
    from telemetry_shunt.agent_rollout.engine import summarize

    rig = rig_factory({A: 2, B: 11})
    rig.fleet.fail_upgrade.update(rig.fleet.ids(B)[1:3])  # 2 of 10 > MaxErrors 1
    state = rig.start()
    zones = {z["az"]: z for z in summarize(state)["zones"]}
    assert zones[A]["upgraded"] == 2 and "rolled_back" not in zones[A]
    assert zones[B]["rolled_back"] == 11 and "upgraded" not in zones[B] and "failed" not in zones[B]
    assert zones[B]["hosts"] == 11


def test_without_list_metrics_permission_preflight_asks_for_the_rollback_version(rig_factory):
    from rollout_fakes import client_error

    rig = rig_factory({A: 2})
    clients = rig.fleet.clients()

    def denied(**_):
        raise client_error("AccessDenied", "ListMetrics", "not authorized to perform cloudwatch:ListMetrics")

    clients.cloudwatch.list_metrics = denied
    engine = RolloutEngine(clients=clients, store=rig.store, audit=rig.audit, kill_switch=rig.kill, clock=rig.clock)
    check = engine.preflight(rig.plan(), NEW, rig.settings)
    assert [c.detail for c in check.checks if not c.ok] == [
        "cannot read the hosts' heartbeat metrics (AccessDenied on cloudwatch:ListMetrics): pass --rollback-version"]
    given = RolloutSettings(bake_seconds=600, poll_seconds=30, lease_seconds=120, rollback_version=OLD)
    assert engine.preflight(rig.plan(), NEW, given).ok
