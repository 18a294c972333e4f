"""The rollout engine: preflight and a persisted state machine over SSM Run Command.

Order of work: zones one at a time; in each zone the one-box wave then the rest; each wave's batches are
sent one after the other, then the wave bakes on time *and* on evidence (a heartbeat from every
upgraded host, alarms OK the whole time; missing data is a failure). A failed wave halts the rollout
and rolls back every host of that zone that was sent the upgrade. An engaged kill switch aborts.

Every transition is appended to the audit log and persisted before the engine acts on it. Sending is
two transitions: the intent (batch id + comment) and then the CommandId; a controller resuming a batch
whose intent was saved but whose CommandId was not looks the command up by its comment before sending,
so no host is sent the upgrade twice.

The AWS calls live in adapters.py (fleet discovery, documents, commands, heartbeats); the wave and batch
records are the typed dataclasses of records.py.
"""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from telemetry_shunt.agent_rollout.adapters import (
    ACCESS_DENIED,
    TERMINAL_INVOCATION,
    Commands,
    Documents,
    FleetDiscovery,
    Heartbeats,
)
from telemetry_shunt.agent_rollout.aws import AwsCaller, AwsClients, error_code
from telemetry_shunt.agent_rollout.clock import Clock, iso
from telemetry_shunt.agent_rollout.killswitch import KillSwitchFlags
from telemetry_shunt.agent_rollout.records import (
    BAKED,
    BAKING,
    DONE,
    FAILED,
    PENDING,
    ROLLBACK,
    ROLLBACK_FAILED,
    ROLLED_BACK_HOST,
    SENDING,
    SENT,
    UPGRADE,
    UPGRADED,
    WAVE_FAILED,
    BatchRecord,
    WaveState,
)
from telemetry_shunt.agent_rollout.state import (
    ABORTED,
    COMPLETED,
    FINAL_STATUSES,
    HALTED,
    ROLLED_BACK,
    ROLLING_BACK,
    RUNNING,
    AuditLog,
    Lease,
    RolloutExists,
    RolloutNotFound,
    RolloutState,
    StateStore,
    lease_held_error,
    validate_rollout_id,
)
from telemetry_shunt.core import validation
from telemetry_shunt.core.contract import (
    DEFAULT_RESOURCE_PREFIX,
    HEARTBEAT_PERIOD_SECONDS,
    agent_document_name,
    agent_package_name,
    heartbeat_alarm_name,
)
from telemetry_shunt.core.hostside import validate_version
from telemetry_shunt.core.killswitch import telemetry_enabled
from telemetry_shunt.core.rollout_plan import Host, RolloutPlan, chunk
from telemetry_shunt.errors import ShuntError, ValidationError

__all__ = ["UPGRADE", "ROLLBACK", "RolloutEngine", "RolloutSettings", "RolloutStopped", "PreflightFailed",
           "Preflight", "summarize", "validate_rollout_id", "new_rollout_id"]


class RolloutStopped(ShuntError):
    """The rollout halted (rolled back) or was aborted: exit code 2."""

    exit_code = 2


class PreflightFailed(ShuntError):
    pass


@dataclass(frozen=True)
class RolloutSettings:
    """What an operator tunes; defaults follow the contract (heartbeat period 60 s)."""

    bake_seconds: float = 600
    poll_seconds: float = 30
    heartbeat_period_seconds: float = HEARTBEAT_PERIOD_SECONDS
    command_timeout_seconds: float = 900
    lease_seconds: float = 300
    resource_prefix: str = DEFAULT_RESOURCE_PREFIX
    package: str | None = None
    extra_alarms: tuple[str, ...] = ()
    rollback_version: str | None = None

    def validate(self) -> None:
        if self.bake_seconds < self.heartbeat_period_seconds:
            raise ValidationError(
                f"bake of {self.bake_seconds:g}s is shorter than the heartbeat period "
                f"({self.heartbeat_period_seconds:g}s): a host could not prove it is alive; use "
                f"--bake-seconds {self.heartbeat_period_seconds:g} or more"
            )
        if not 0 < self.poll_seconds <= self.bake_seconds:
            raise ValidationError(f"poll interval must be > 0 and <= the bake, got {self.poll_seconds:g}s")
        if self.command_timeout_seconds <= 0:
            raise ValidationError(f"command timeout must be > 0, got {self.command_timeout_seconds:g}s")
        if self.lease_seconds < 2 * self.poll_seconds:
            raise ValidationError(
                f"lease of {self.lease_seconds:g}s must be at least twice the poll interval ({self.poll_seconds:g}s)"
            )

    @property
    def package_name(self) -> str:
        return self.package or agent_package_name(self.resource_prefix)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["extra_alarms"] = list(self.extra_alarms)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutSettings:
        return cls(**{**data, "extra_alarms": tuple(data.get("extra_alarms", ()))})


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Preflight:
    checks: list[Check] = field(default_factory=list)
    # the version each host runs now: where a rollback takes it
    previous_versions: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    def rows(self) -> list[dict[str, Any]]:
        return [{"check": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks]

    def raise_if_failed(self) -> None:
        failed = [c for c in self.checks if not c.ok]
        if failed:
            raise PreflightFailed("preflight failed: " + "; ".join(f"{c.name}: {c.detail}" for c in failed))


def default_owner() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def new_rollout_id(clock: Clock) -> str:
    return "r-" + iso(clock.now()).replace("-", "").replace(":", "").rstrip("Z") + "-" + uuid.uuid4().hex[:4]


class RolloutEngine:
    """The state machine. AWS is reached only through the adapters built from ``clients``."""

    def __init__(self, *, clients: AwsClients, store: StateStore, audit: AuditLog, kill_switch: KillSwitchFlags,
                 clock: Clock, owner: str | None = None, progress: Callable[[str], None] | None = None,
                 caller: AwsCaller | None = None) -> None:
        self.clients = clients
        self.store = store
        self.audit = audit
        self.kill_switch = kill_switch
        self.clock = clock
        self.owner = owner or default_owner()
        self.progress = progress or (lambda _m: None)
        self.aws = caller or AwsCaller(clock)
        self.fleet = FleetDiscovery(clients, self.aws)
        self.documents = Documents(clients, self.aws, self.progress)
        self.commands = Commands(clients, self.aws)
        self.heartbeats = Heartbeats(clients, self.aws, clock)
        self._lease: Lease | None = None
        self._settings: RolloutSettings | None = None

    # --- discovery and preflight ---------------------------------------------------------------------

    def discover(self, fleet: str) -> list[Host]:
        """Running EC2 instances tagged ``telemetry-shunt:fleet=<fleet>`` (a literal name)."""
        return self.fleet.discover(fleet)

    def current_versions(self, instance_ids: Sequence[str], period_seconds: float) -> dict[str, set[str]]:
        return self.heartbeats.current_versions(instance_ids, period_seconds)

    def alarm_states(self, names: Sequence[str]) -> dict[str, str | None]:
        return self.heartbeats.alarm_states(names)

    def check_version(self, version: str, settings: RolloutSettings) -> tuple[bool, str]:
        try:
            validate_version(version)  # an empty or odd version never reaches SSM
        except ValidationError as exc:
            return False, str(exc)
        allowed = self.documents.allowed_versions(agent_document_name(UPGRADE, settings.resource_prefix))
        if allowed is not None:
            if version in allowed:
                return True, f"{version} is an allowed version of the upgrade document"
            return False, (f"version {version!r} is not one the upgrade document allows "
                           f"({', '.join(allowed[:8])}{' ...' if len(allowed) > 8 else ''})")
        if self.documents.version_exists(settings.package_name, version):
            return True, f"{settings.package_name} {version} exists"
        return False, f"version {version!r} of package {settings.package_name} does not exist"

    def alarms_for(self, azs: Iterable[str], settings: RolloutSettings) -> list[str]:
        return [heartbeat_alarm_name(az, settings.resource_prefix) for az in azs] + list(settings.extra_alarms)

    def preflight(self, plan: RolloutPlan, version: str, settings: RolloutSettings) -> Preflight:
        settings.validate()
        result = Preflight()
        azs = [z.az for z in plan.zones]
        try:
            flags = self.kill_switch.read_flags()
            engaged = [az for az in azs if not telemetry_enabled(flags, az)]
            result.add("kill switch", not engaged,
                       "released (telemetry ON) in every zone" if not engaged else
                       f"ENGAGED (telemetry OFF) in {', '.join(engaged)}: run 'shunt kill off' first")
        except Exception as exc:  # noqa: BLE001 - reported as a failed check, with what went wrong
            hint = " (in the sandbox, set SHUNT_KILL_SWITCH_FILE: moto has no AppConfig)" \
                if not isinstance(exc, ShuntError) else ""
            result.add("kill switch", False, f"cannot read it: {exc}{hint}")
        result.add("version", *self.check_version(version, settings))
        for action in (UPGRADE, ROLLBACK):
            doc = agent_document_name(action, settings.resource_prefix)
            found = self.documents.exists(doc)
            result.add(f"document {action}", found, doc if found else f"{doc} does not exist: deploy AgentRolloutSupport")
        states = self.alarm_states(self.alarms_for(azs, settings))
        bad = {n: s for n, s in states.items() if s != "OK"}
        result.add("alarms", not bad, f"{len(states)} OK" if not bad else
                   ", ".join(f"{n} is {s or 'missing'}" for n, s in sorted(bad.items())))
        ids = [i for b in plan.batches for i in b.instance_ids]
        self._check_rollback_versions(result, ids, settings)
        online = self.fleet.agents_online(ids)
        offline = [i for i in ids if i not in online]
        result.add("ssm agents", not offline, f"{len(online)} online" if not offline else
                   f"{len(offline)} not online: {', '.join(offline[:5])}{' ...' if len(offline) > 5 else ''}")
        return result

    def _check_rollback_versions(self, result: Preflight, ids: Sequence[str], settings: RolloutSettings) -> None:
        if settings.rollback_version:
            present, detail = self.check_version(settings.rollback_version, settings)
            result.previous_versions = dict.fromkeys(ids, settings.rollback_version)
            result.add("rollback version", present, f"{settings.rollback_version} (given)" if present else
                       f"rollback {detail}")
            return
        try:
            seen = self.current_versions(ids, settings.heartbeat_period_seconds)
        except Exception as exc:
            if error_code(exc) not in ACCESS_DENIED:
                raise
            result.add("rollback version", False, f"cannot read the hosts' heartbeat metrics ({error_code(exc)} "
                       "on cloudwatch:ListMetrics): pass --rollback-version")
            return
        unclear = sorted(i for i, versions in seen.items() if len(versions) != 1)
        if unclear:
            result.add("rollback version", False,
                       f"cannot tell the current agent version of {len(unclear)} host(s) from their heartbeats "
                       f"({', '.join(unclear[:3])}{' ...' if len(unclear) > 3 else ''}): pass --rollback-version")
            return
        result.previous_versions = {i: next(iter(v)) for i, v in seen.items()}
        counts: dict[str, int] = {}
        for v in result.previous_versions.values():
            counts[v] = counts.get(v, 0) + 1
        result.add("rollback version", True, "hosts run " + ", ".join(
            f"{v} ({n})" for v, n in sorted(counts.items())) + "; a rollback returns them there")

    # --- state transitions --------------------------------------------------------------------------

    def _transition(self, state: RolloutState, event: str, **details: Any) -> None:
        now = self.clock.now()
        state.meta["updated_at"] = now
        self.audit.append({
            "ts": iso(now), "rollout_id": state.rollout_id, "seq": state.meta.get("seq", 0) + 1,
            "event": event, "actor": self.owner, **details,
        })
        self.store.save(state)

    def _renew(self) -> None:
        if self._lease is not None and self._settings is not None:
            self._lease = self.store.renew_lease(self._lease, self.clock.now(), self._settings.lease_seconds)

    def _acquire(self, fleet: str, settings: RolloutSettings, rollout_id: str | None) -> None:
        self._settings = settings
        self._lease = self.store.acquire_lease(validation.fleet_name(fleet), self.owner, self.clock.now(),
                                               settings.lease_seconds, rollout_id)

    def _release(self) -> None:
        if self._lease is not None:
            lease, self._lease = self._lease, None
            self.store.release_lease(lease)

    # --- public operations --------------------------------------------------------------------------

    def check_lease(self, fleet: str) -> None:
        """Fail fast (before discovery and a long preflight) when another controller holds the lease."""
        held = self.store.read_lease(validation.fleet_name(fleet))
        if held is not None and held.owner != self.owner and held.expires_at > self.clock.now():
            raise lease_held_error(held)

    def start(self, *, fleet: str, version: str, plan: RolloutPlan, settings: RolloutSettings,
              rollout_id: str | None = None, preflight: Preflight | None = None) -> RolloutState:
        """Acquire the fleet lease, run preflight, create the state and run it to a final status."""
        settings.validate()
        validation.fleet_name(fleet)
        rollout_id = rollout_id or new_rollout_id(self.clock)
        validate_rollout_id(rollout_id)
        self._acquire(fleet, settings, rollout_id)
        try:
            check = preflight or self.preflight(plan, version, settings)
            check.raise_if_failed()
            state = self._new_state(rollout_id, fleet, version, plan, settings, check.previous_versions)
            try:
                self.store.load(rollout_id)
            except RolloutNotFound:
                pass
            else:
                raise RolloutExists(f"rollout {rollout_id!r} already exists: pick another --rollout-id")
            self.audit.append({"ts": iso(self.clock.now()), "rollout_id": rollout_id, "seq": 1, "event": "created",
                               "actor": self.owner, "fleet": fleet, "version": version,
                               "hosts": plan.host_count, "zones": [z.az for z in plan.zones]})
            self.store.create(state)
            self.progress(f"rollout {rollout_id}: {plan.host_count} hosts in {len(plan.zones)} zones -> {version}")
            return self._run(state)
        finally:
            self._release()

    def resume(self, rollout_id: str) -> RolloutState:
        state = self.store.load(rollout_id)
        settings = RolloutSettings.from_dict(state.meta["settings"])
        if state.status in FINAL_STATUSES:
            self.progress(f"rollout {rollout_id} is already {state.status}: nothing to resume")
            return state
        self._acquire(state.meta["fleet"], settings, rollout_id)
        try:
            state = self.store.load(rollout_id)  # re-read under the lease
            # nobody watched the alarms while no controller ran: an interrupted bake starts over
            for wave in state.waves.values():
                if wave.phase == BAKING:
                    wave.bake_started_at = None
            if state.status == ABORTED:
                flags = self.kill_switch.read_flags()
                pending = [z for z in state.meta["zone_order"] if state.meta["zones"][z] != "done"]
                engaged = [az for az in pending if not telemetry_enabled(flags, az)]
                if engaged:
                    raise ShuntError(f"kill switch still ENGAGED (telemetry OFF) in {', '.join(engaged)}: "
                                     "run 'shunt kill off' before resuming")
                self.store.clear_abort(rollout_id)
                state.meta["status"] = RUNNING
                state.meta["reason"] = None
                self._transition(state, "resumed", after="aborted")
            else:
                self._transition(state, "resumed", after=state.status)
            return self._run(state)
        finally:
            self._release()

    def request_abort(self, rollout_id: str) -> RolloutState:
        """Ask the running controller to stop; if none holds the lease, mark the rollout aborted now."""
        state = self.store.load(rollout_id)
        if state.status in FINAL_STATUSES or state.status == ABORTED:
            return state
        self.store.request_abort(rollout_id, self.owner, self.clock.now())
        held = self.store.read_lease(state.meta["fleet"])
        if held is not None and held.expires_at > self.clock.now() and held.rollout_id == rollout_id:
            self.progress(f"abort requested; {held.owner} stops at its next check")
            return state
        settings = RolloutSettings.from_dict(state.meta["settings"])
        self._acquire(state.meta["fleet"], settings, rollout_id)
        try:
            state = self.store.load(rollout_id)
            self._abort(state, f"aborted by {self.owner}")
            return state
        finally:
            self._release()

    def rollback(self, rollout_id: str) -> RolloutState:
        """Roll back every host this rollout upgraded, zone by zone (newest zone first)."""
        state = self.store.load(rollout_id)
        settings = RolloutSettings.from_dict(state.meta["settings"])
        self._acquire(state.meta["fleet"], settings, rollout_id)
        try:
            state = self.store.load(rollout_id)
            if state.status != ROLLING_BACK:
                self._settle_in_flight(state)
                touched = [az for az in reversed(state.meta["zone_order"])
                           if self.hosts_to_roll_back(state, az)]
                state.meta["rollback_zones"] = touched
                state.meta["status"] = ROLLING_BACK
                state.meta["reason"] = f"rollback requested by {self.owner}"
                for az in touched:
                    state.meta["zones"][az] = "rolling_back"
                self._transition(state, "rollback_requested", zones=touched)
            return self._run(state)
        finally:
            self._release()

    def _settle_in_flight(self, state: RolloutState) -> None:
        """Before a rollback: learn the outcome of upgrade batches a dead controller left in flight, so
        every host that may have been upgraded is rolled back."""
        self._settings = RolloutSettings.from_dict(state.meta["settings"])
        for batch_id, batch in sorted(state.batches.items()):
            if batch.kind != UPGRADE or batch.phase not in (SENDING, SENT):
                continue
            if batch.phase == SENDING:
                command_id = self._find_sent(batch)
                if command_id is None:
                    state.touch(batch_id).phase = PENDING
                    self._transition(state, "batch_not_sent", batch=batch_id)
                    continue
                self._record_sent(state, batch_id, command_id, found=True)
            self._wait(state, batch_id)

    # --- the state machine --------------------------------------------------------------------------

    def _new_state(self, rollout_id: str, fleet: str, version: str, plan: RolloutPlan,
                   settings: RolloutSettings, previous_versions: dict[str, str]) -> RolloutState:
        now = self.clock.now()
        batches = {b.batch_id: BatchRecord(
            batch_id=b.batch_id, az=b.az, wave=b.wave, kind=UPGRADE, instance_ids=list(b.instance_ids),
            max_concurrency=b.max_concurrency, max_errors=b.max_errors,
            previous_versions={i: previous_versions[i] for i in b.instance_ids}) for b in plan.batches}
        waves = {f"{z.az}/{w}": WaveState() for z in plan.zones for w in z.waves}
        meta = {
            "rollout_id": rollout_id, "fleet": fleet, "version": version, "status": RUNNING, "reason": None,
            "created_at": now, "updated_at": now, "created_by": self.owner, "seq": 0,
            "settings": settings.to_dict(), "plan": {k: v for k, v in plan.to_dict().items() if k != "zones"},
            "zone_order": [z.az for z in plan.zones],
            "zone_batches": {z.az: [b.batch_id for b in z.batches] for z in plan.zones},
            "zones": {z.az: "pending" for z in plan.zones},
            "rollback_zones": [],
        }
        return RolloutState(meta, batches, set(batches), waves=waves)

    def _run(self, state: RolloutState) -> RolloutState:
        self._settings = RolloutSettings.from_dict(state.meta["settings"])
        if state.status == ROLLING_BACK:
            return self._finish_rollbacks(state)
        for az in state.meta["zone_order"]:
            phase = state.meta["zones"][az]
            if phase == "done":
                continue
            if phase != "pending" and phase != "in_progress":
                return self._finish_rollbacks(state)
            if phase == "pending":
                if self._stop_requested(state, az):
                    return state
                state.meta["zones"][az] = "in_progress"
                self._transition(state, "zone_started", az=az)
                self.progress(f"zone {az}: started")
            for wave in self._waves(state, az):
                reason = self._run_wave(state, az, wave)
                if state.status == ABORTED:
                    return state
                if reason:
                    return self._halt(state, az, reason)
            state.meta["zones"][az] = "done"
            self._transition(state, "zone_done", az=az)
            self.progress(f"zone {az}: done")
        state.meta["status"] = COMPLETED
        self._transition(state, "completed")
        self.progress(f"rollout {state.rollout_id}: completed")
        return state

    def _waves(self, state: RolloutState, az: str) -> list[str]:
        return [key.split("/", 1)[1] for key in state.waves if key.startswith(az + "/")]

    def _wave_batches(self, state: RolloutState, az: str, wave: str) -> list[BatchRecord]:
        return [state.batches[b] for b in state.meta["zone_batches"][az] if state.batches[b].wave == wave]

    def _stop_requested(self, state: RolloutState, az: str) -> bool:
        """Abort (persisted) if an operator asked or the kill switch is engaged for ``az``."""
        request = self.store.abort_requested(state.rollout_id)
        if request:
            self._abort(state, f"aborted by {request.get('by')}")
            return True
        try:
            flags = self.kill_switch.read_flags()
            on = telemetry_enabled(flags, az)
            reason = None if on else f"kill switch ENGAGED (telemetry OFF) for {az}"
        except Exception as exc:  # noqa: BLE001 - an unreadable kill switch must stop the rollout
            reason = f"kill switch unreadable ({exc})"
        if reason:
            self._abort(state, reason)
            return True
        return False

    def _abort(self, state: RolloutState, reason: str) -> None:
        state.meta["status"] = ABORTED
        state.meta["reason"] = reason
        self._transition(state, "aborted", reason=reason)
        self.progress(f"rollout {state.rollout_id}: ABORTED: {reason}")

    def _run_wave(self, state: RolloutState, az: str, wave: str) -> str | None:
        """Send the wave's batches, then bake. Returns a halt reason, or None (also when aborted)."""
        w = state.waves[f"{az}/{wave}"]
        if w.phase == BAKED:
            return None
        if w.phase == WAVE_FAILED:
            return w.reason or "wave failed"
        for batch in self._wave_batches(state, az, wave):
            if batch.phase != DONE:
                if batch.phase == PENDING and self._stop_requested(state, az):
                    return None
                self._send_and_wait(state, batch.batch_id)
                batch = state.batches[batch.batch_id]
            failures = batch.failures()
            if len(failures) > int(batch.max_errors):
                reason = (f"batch {batch.batch_id}: {len(failures)} of {len(batch.instance_ids)} hosts "
                          f"failed (MaxErrors {batch.max_errors}): {', '.join(failures[:5])}")
                w.phase, w.reason = WAVE_FAILED, reason
                self._transition(state, "wave_failed", az=az, wave=wave, reason=reason)
                return reason
        return self._bake(state, az, wave)

    # sending ------------------------------------------------------------------------------------------

    def _document(self, kind: str) -> str:
        return agent_document_name(kind, self._settings.resource_prefix)

    def _send_and_wait(self, state: RolloutState, batch_id: str) -> None:
        batch = state.batches[batch_id]
        if batch.phase == PENDING:
            batch = state.touch(batch_id)
            self._assert_not_sent_before(state, batch)
            batch.phase = SENDING
            batch.comment = f"shunt {state.rollout_id} {batch_id}"[:100]
            batch.intent_at = self.clock.now()
            self._transition(state, "batch_sending", batch=batch_id, kind=batch.kind,
                             instance_ids=batch.instance_ids)
            command_id = self._send(state, batch)
            self._record_sent(state, batch_id, command_id, found=False)
        elif batch.phase == SENDING:
            command_id = self._find_sent(batch)
            found = command_id is not None
            if command_id is None:
                command_id = self._send(state, batch)
            self._record_sent(state, batch_id, command_id, found=found)
        self._wait(state, batch_id)

    def _assert_not_sent_before(self, state: RolloutState, batch: BatchRecord) -> None:
        if batch.kind != UPGRADE:
            return
        ids = set(batch.instance_ids)
        for other in state.batches.values():
            if other is not batch and other.kind == UPGRADE and other.phase != PENDING \
                    and ids & set(other.instance_ids):
                raise AssertionError(f"hosts of {batch.batch_id} already sent in {other.batch_id}")

    def _record_sent(self, state: RolloutState, batch_id: str, command_id: str, *, found: bool) -> None:
        batch = state.touch(batch_id)
        batch.phase = SENT
        batch.command_id = command_id
        batch.sent_at = self.clock.now()
        self._transition(state, "batch_sent", batch=batch_id, command_id=command_id, recovered=found)
        what = f"rollback to {batch.version}" if batch.kind == ROLLBACK else f"upgrade to {state.meta['version']}"
        self.progress(f"  {batch_id}: {what} sent to {len(batch.instance_ids)} hosts ({command_id})")

    def _send(self, state: RolloutState, batch: BatchRecord) -> str:
        return self.commands.send(
            document=self._document(batch.kind),
            version=state.meta["version"] if batch.kind == UPGRADE else batch.version,
            instance_ids=batch.instance_ids, comment=batch.comment, max_concurrency=batch.max_concurrency,
            max_errors=batch.max_errors, timeout_seconds=self._settings.command_timeout_seconds)

    def _find_sent(self, batch: BatchRecord) -> str | None:
        """A command already sent for this batch (same comment), e.g. before a crash."""
        return self.commands.find_sent(batch.comment, batch.intent_at - 300)

    def _wait(self, state: RolloutState, batch_id: str) -> None:
        batch = state.batches[batch_id]
        if batch.phase != SENT:
            return
        ok, bad = (UPGRADED, FAILED) if batch.kind == UPGRADE else (ROLLED_BACK_HOST, ROLLBACK_FAILED)
        deadline = batch.sent_at + self._settings.command_timeout_seconds
        interval = min(self._settings.poll_seconds, 5.0)
        while True:
            statuses = self.commands.invocations(batch.command_id)
            mine = {i: statuses.get(i, "Pending") for i in batch.instance_ids}
            unfinished = [i for i, s in mine.items() if s not in TERMINAL_INVOCATION]
            if not unfinished:
                break
            if self.clock.now() >= deadline:
                self.commands.cancel(batch.command_id, unfinished)
                for i in unfinished:
                    mine[i] = "Stuck"
                break
            self._renew()
            self.clock.sleep(interval)
        batch = state.touch(batch_id)
        batch.hosts = {i: (ok if s == "Success" else bad) for i, s in mine.items()}
        batch.outcomes = mine
        batch.phase = DONE
        batch.finished_at = self.clock.now()
        failed = sorted(i for i, s in mine.items() if s != "Success")
        self._transition(state, "batch_done", batch=batch_id, kind=batch.kind,
                         succeeded=len(mine) - len(failed), failed=failed,
                         outcomes={s: sum(1 for v in mine.values() if v == s) for s in sorted(set(mine.values()))})
        self.progress(f"  {batch_id}: {len(mine) - len(failed)} ok, {len(failed)} failed")

    # baking -------------------------------------------------------------------------------------------

    def _bake(self, state: RolloutState, az: str, wave: str) -> str | None:
        w = state.waves[f"{az}/{wave}"]
        if w.phase != BAKING or w.bake_started_at is None:
            finished = max(state.batches[b].finished_at for b in state.meta["zone_batches"][az]
                           if state.batches[b].wave == wave)
            w.phase = BAKING
            w.bake_started_at = self.clock.now()
            w.evidence_since = w.evidence_since or finished
            self._transition(state, "bake_started", az=az, wave=wave,
                             seconds=self._settings.bake_seconds)
            self.progress(f"  {az}/{wave}: baking {self._settings.bake_seconds:g}s")
        end = w.bake_started_at + self._settings.bake_seconds
        alarms = self.alarms_for([az], self._settings)
        while True:
            if self._stop_requested(state, az):
                return None
            bad = {n: s for n, s in self.alarm_states(alarms).items() if s != "OK"}
            if bad:
                return self._fail_wave(state, az, wave, "alarm " + ", ".join(
                    f"{n} is {s or 'missing'}" for n, s in sorted(bad.items())))
            self._renew()
            now = self.clock.now()
            if now >= end:
                break
            self.clock.sleep(min(self._settings.poll_seconds, end - now))
        upgraded = sorted(i for b in state.meta["zone_batches"][az] for i, s in state.batches[b].hosts.items()
                          if s == UPGRADED)
        silent = self.heartbeats.silent_hosts(upgraded, state.meta["version"], w.evidence_since, self.clock.now(),
                                              self._settings.heartbeat_period_seconds)
        if silent:
            return self._fail_wave(state, az, wave, f"no heartbeat at {state.meta['version']} from "
                                   f"{len(silent)} upgraded host(s): {', '.join(silent[:5])}")
        w.phase = BAKED
        w.baked_at = self.clock.now()
        self._transition(state, "baked", az=az, wave=wave, hosts_with_heartbeat=len(upgraded))
        self.progress(f"  {az}/{wave}: baked, heartbeats from {len(upgraded)} hosts")
        return None

    def _fail_wave(self, state: RolloutState, az: str, wave: str, reason: str) -> str:
        w = state.waves[f"{az}/{wave}"]
        w.phase, w.reason = WAVE_FAILED, reason
        self._transition(state, "wave_failed", az=az, wave=wave, reason=reason)
        return reason

    # halting and rolling back ---------------------------------------------------------------------------

    def hosts_to_roll_back(self, state: RolloutState, az: str) -> list[str]:
        """Every host of ``az`` that was sent the upgrade (failed ones too: they may be half-upgraded) and
        has not been rolled back yet."""
        done = {i for b in state.meta.get("rollback_batches", {}).get(az, [])
                for i, s in state.batches[b].hosts.items() if s == ROLLED_BACK_HOST}
        return sorted(i for b in state.meta["zone_batches"][az] if state.batches[b].kind == UPGRADE
                      for i, s in state.batches[b].hosts.items() if s in (UPGRADED, FAILED) and i not in done)

    def rollback_targets(self, state: RolloutState, az: str) -> dict[str, list[str]]:
        """``{version to return to: [instance ids]}`` for the hosts of ``az`` to roll back."""
        previous = {i: v for b in state.meta["zone_batches"][az] for i, v in
                    (state.batches[b].previous_versions or {}).items()}
        out: dict[str, list[str]] = {}
        for iid in self.hosts_to_roll_back(state, az):
            out.setdefault(previous[iid], []).append(iid)
        return out

    def _halt(self, state: RolloutState, az: str, reason: str) -> RolloutState:
        state.meta["status"] = ROLLING_BACK
        state.meta["reason"] = f"{az}: {reason}"
        state.meta["zones"][az] = "rolling_back"
        state.meta["rollback_zones"] = [az]
        self._transition(state, "halted", az=az, reason=reason)
        self.progress(f"zone {az}: HALTED: {reason}; rolling back")
        return self._finish_rollbacks(state)

    def _finish_rollbacks(self, state: RolloutState) -> RolloutState:
        all_ok = True
        for az in state.meta["rollback_zones"]:
            if state.meta["zones"][az] == "rolled_back":
                continue
            rb_ids = state.meta.setdefault("rollback_batches", {}).get(az)
            if rb_ids is None:
                rb_ids = []
                for version, ids in sorted(self.rollback_targets(state, az).items()):
                    for group in chunk(ids):
                        batch_id = f"{az}.rollback.{len(rb_ids):03d}"
                        state.add_batch(BatchRecord(
                            batch_id=batch_id, az=az, wave=ROLLBACK, kind=ROLLBACK, version=version,
                            instance_ids=group, max_concurrency=str(len(group)), max_errors=str(len(group))))
                        rb_ids.append(batch_id)
                state.meta["rollback_batches"][az] = rb_ids
                self._transition(state, "rollback_planned", az=az, batches=rb_ids,
                                 hosts=sum(len(state.batches[b].instance_ids) for b in rb_ids))
            for batch_id in rb_ids:
                self._send_and_wait(state, batch_id)
            failed = sorted(i for b in rb_ids for i, s in state.batches[b].hosts.items() if s != ROLLED_BACK_HOST)
            all_ok = all_ok and not failed
            state.meta["zones"][az] = "rolled_back"
            self._transition(state, "zone_rolled_back", az=az, rollback_failed=failed)
            self.progress(f"zone {az}: rolled back" + (f" ({len(failed)} rollback failures)" if failed else ""))
        state.meta["status"] = ROLLED_BACK if all_ok else HALTED
        self._transition(state, state.meta["status"], reason=state.meta["reason"])
        return state


def summarize(state: RolloutState) -> dict[str, Any]:
    """Status for humans and JSON: one record with per-zone counts of each host's latest outcome
    (``upgraded``, ``failed``, ``rolled_back``, ``rollback_failed``; hosts not reached are not counted)."""
    meta = state.meta
    zones = []
    for az in meta["zone_order"]:
        latest: dict[str, str] = {}
        hosts = 0
        for b in meta["zone_batches"][az]:
            hosts += len(state.batches[b].instance_ids)
            latest.update(state.batches[b].hosts)
        for b in meta.get("rollback_batches", {}).get(az, []):
            latest.update(state.batches[b].hosts)  # a rollback outcome replaces the upgrade's
        counts: dict[str, int] = {}
        for outcome in latest.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        waves = {k.split("/", 1)[1]: v.phase for k, v in state.waves.items() if k.startswith(az + "/")}
        zones.append({"az": az, "phase": meta["zones"][az], "hosts": hosts, "waves": waves, **counts})
    return {
        "rollout_id": meta["rollout_id"], "fleet": meta["fleet"], "version": meta["version"],
        "status": meta["status"], "reason": meta["reason"], "created_at": iso(meta["created_at"]),
        "updated_at": iso(meta["updated_at"]), "seq": meta["seq"], "zones": zones,
    }
