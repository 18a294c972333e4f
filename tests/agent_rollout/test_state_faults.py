"""The state stores under faults: a stale controller, a torn file at every write point, a power loss that
undoes renames, wildcard fleets, and states written by the pre-dataclass engine.

Every scenario checks what an operator relies on: the current holder's records are intact, a resumed
rollout finishes without sending any host the upgrade twice, and a damaged file is one error naming it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from moto import mock_aws
from rollout_fakes import SimulatedCrash
from test_rollout_faults import A, B, C, check_invariants

from telemetry_shunt.agent_rollout.aws import make_session
from telemetry_shunt.agent_rollout.engine import summarize
from telemetry_shunt.agent_rollout.records import BatchRecord
from telemetry_shunt.agent_rollout.state import (
    COMPLETED,
    ROLLED_BACK,
    AuditLog,
    CorruptStateFile,
    DynamoStateStore,
    FileSystem,
    LocalStateStore,
    RolloutExists,
    RolloutState,
    StateConflict,
    create_state_table,
)
from telemetry_shunt.errors import ShuntError, ValidationError

DATA = Path(__file__).resolve().parent / "data"


def _state(rollout_id: str, n_batches: int, *, tag: str = "holder") -> RolloutState:
    batches = {f"{A}.rest.{i:03d}": BatchRecord(batch_id=f"{A}.rest.{i:03d}", az=A, wave="rest", kind="upgrade",
                                                instance_ids=[f"i-{i:017x}"], max_concurrency="1", max_errors="0",
                                                extra={"note": tag})
               for i in range(n_batches)}
    meta = {"rollout_id": rollout_id, "fleet": "web", "version": "1.1.0", "status": "running", "reason": tag,
            "created_at": 1.0, "updated_at": 1.0, "seq": 0}
    return RolloutState(meta, batches, set(batches))


@pytest.fixture
def dynamo():
    with mock_aws():
        client = make_session(region="us-east-1", profile=None).client("dynamodb")
        create_state_table(client, "t")
        yield client


def _stores(kind, tmp_path, client=None):
    if kind == "local":
        return LocalStateStore(tmp_path / "state", create=True)
    return DynamoStateStore(client, "t")


# --- a stale controller's save leaves the holder's records intact ------------------------------------

@pytest.mark.parametrize("kind", ["local", "dynamodb"])
@pytest.mark.parametrize("new_batches", [1, 150])  # 150: more than one 100-item transaction
def test_a_stale_save_changes_nothing_the_holder_wrote(kind, new_batches, tmp_path, dynamo):
    store = _stores(kind, tmp_path, dynamo)
    store.create(_state("r-1", 3))
    holder, stale = store.load("r-1"), store.load("r-1")
    holder.touch(f"{A}.rest.001").phase = "sent by the holder"
    holder.meta["reason"] = "holder"
    store.save(holder)
    # the stale controller (asleep past the lease) changed a batch the holder also changed, one the holder
    # did not touch, and planned new batches (a rollback plan)
    stale.touch(f"{A}.rest.001").phase = "stale"
    stale.touch(f"{A}.rest.002").phase = "stale"
    for i in range(new_batches):
        stale.add_batch(BatchRecord(batch_id=f"{B}.rollback.{i:03d}", az=B, wave="rollback", kind="rollback",
                                    instance_ids=[], max_concurrency="1", max_errors="1"))
    stale.meta["reason"] = "stale"
    with pytest.raises(StateConflict, match="changed by another controller"):
        store.save(stale)
    after = store.load("r-1")
    assert after.meta["reason"] == "holder" and after.meta["seq"] == holder.meta["seq"]
    assert after.batches[f"{A}.rest.001"].phase == "sent by the holder"
    assert after.batches[f"{A}.rest.002"].phase == "pending"
    assert sorted(after.batches) == sorted(holder.batches)


class RacingClient:
    """Lets another controller's save land between two transactions of a multi-transaction save."""

    def __init__(self, client, between) -> None:
        self.client = client
        self.between = between
        self.transactions = 0

    def __getattr__(self, name):
        return getattr(self.client, name)

    def transact_write_items(self, **kwargs):
        result = self.client.transact_write_items(**kwargs)
        self.transactions += 1
        if self.transactions == 1 and self.between:
            self.between()
            self.between = None
        return result


def test_a_stale_multi_transaction_save_leaves_only_records_nobody_reads(dynamo):
    store = DynamoStateStore(dynamo, "t")
    store.create(_state("r-1", 3))
    holder, stale = store.load("r-1"), store.load("r-1")
    for i in range(250):  # three transactions: two of records under their own keys, then the meta one
        stale.add_batch(BatchRecord(batch_id=f"{B}.rollback.{i:03d}", az=B, wave="rollback", kind="rollback",
                                    instance_ids=[], max_concurrency="1", max_errors="1", phase="stale"))

    def holder_saves():
        holder.touch(f"{A}.rest.000").phase = "holder"
        store.save(holder)

    racing = DynamoStateStore(RacingClient(dynamo, holder_saves), "t")
    with pytest.raises(StateConflict):
        racing.save(stale)
    after = store.load("r-1")
    assert sorted(after.batches) == sorted(holder.batches)  # the 99 records written first are never read
    assert after.batches[f"{A}.rest.000"].phase == "holder"
    items = dynamo.scan(TableName="t")["Items"]
    assert sum(1 for i in items if i["sk"]["S"].startswith(f"batch#{B}.rollback.")) == 99


@pytest.mark.parametrize("kind", ["local", "dynamodb"])
def test_create_on_an_existing_id_writes_nothing(kind, tmp_path, dynamo):
    store = _stores(kind, tmp_path, dynamo)
    store.create(_state("r-1", 150))
    with pytest.raises(RolloutExists, match="already exists"):
        store.create(_state("r-1", 150, tag="second"))
    after = store.load("r-1")
    assert after.meta["reason"] == "holder" and {b.extra["note"] for b in after.batches.values()} == {"holder"}


def test_a_large_state_round_trips_through_dynamodb(dynamo):
    store = DynamoStateStore(dynamo, "t")
    state = _state("r-big", 230)
    store.create(state)
    loaded = store.load("r-big")
    assert loaded.batches == state.batches and loaded.meta == state.meta
    loaded.touch(f"{A}.rest.200").phase = "sent"  # a record kept under its own key, saved again
    store.save(loaded)
    again = store.load("r-big")
    assert again.batches[f"{A}.rest.200"].phase == "sent" and len(again.batches) == 230


# --- a torn file at every write point ---------------------------------------------------------------------

class TearingFs(FileSystem):
    """Dies in the middle of its n-th write: half the bytes reach the disk, then the process is gone."""

    def __init__(self, tear_at: int) -> None:
        self.left = tear_at
        self.writes: list[str] = []

    def _maybe_tear(self, path: Path, data: bytes, write) -> None:
        self.left -= 1
        self.writes.append(path.name)
        if self.left == 0:
            write(path, data[: len(data) // 2])
            raise SimulatedCrash(f"torn write of {path.name}")
        write(path, data)

    def write_synced(self, path, data):
        self._maybe_tear(path, data, super().write_synced)

    def append_synced(self, path, data):
        created = not path.exists()
        self._maybe_tear(path, data, super().append_synced)
        return created


def _count_writes(rig_factory, counts):
    rig = rig_factory(counts)
    fs = TearingFs(-1)
    rig.store = LocalStateStore(rig.store.dir, fs=fs)
    rig.audit = AuditLog(rig.audit.path, fs=fs)
    rig.start()
    return len(fs.writes)


def test_a_torn_write_at_every_write_point_then_resume(rig_factory, tmp_path):
    counts = {A: 1, B: 2}
    total = _count_writes(rig_factory, counts)
    assert total > 40  # state files, lease files and audit lines
    kinds = set()
    for k in range(1, total + 1):
        rig = rig_factory(counts)
        rig.store = LocalStateStore(tmp_path / f"torn-{k}", create=True, fs=TearingFs(k))
        rig.audit = AuditLog(tmp_path / f"audit-{k}.jsonl", fs=rig.store.fs)
        with pytest.raises(SimulatedCrash):
            rig.start()
        kinds.add(rig.store.fs.writes[-1].split(".")[-3] if rig.store.fs.writes[-1].startswith(".") else "audit")
        rig.clock.advance(rig.settings.lease_seconds + 1)
        rig.store = LocalStateStore(rig.store.dir)
        rig.audit = AuditLog(rig.audit.path)
        try:
            state = rig.engine("op-2").resume("r-test")
        except ShuntError as exc:  # died before the rollout existed: the operator starts it again
            assert "no rollout 'r-test'" in str(exc), k
            state = rig.start(owner="op-2")
        assert state.status == COMPLETED, k
        check_invariants(rig, state)
        rig.audit.read("r-test")  # readable; a torn line is reported, not fatal
    assert {"json", "lock", "audit"} <= kinds


def test_a_corrupt_state_file_is_one_error_naming_it(rig_factory):
    rig = rig_factory({A: 2})
    rig.start()
    path = rig.store.dir / "rollouts" / "r-test.json"
    path.write_text(path.read_text()[:100])
    for call in (lambda: rig.store.load("r-test"), rig.store.list_rollouts,
                 lambda: rig.engine("op-2").resume("r-test")):
        with pytest.raises(CorruptStateFile, match=f"rollout state file {path} is torn or corrupt .*restore it"):
            call()


def test_a_corrupt_lease_file_names_it_and_says_what_to_do(rig_factory):
    rig = rig_factory({A: 2})
    lock = rig.store.dir / "locks" / "web.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text('{"owner": "op-')
    with pytest.raises(CorruptStateFile, match=f"lease file {lock} is torn .*delete the file and retry"):
        rig.start()
    assert rig.fleet.commands == []


def test_a_torn_last_audit_line_is_reported_and_closed_by_the_next_append(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append({"rollout_id": "r", "event": "created", "seq": 1})
    with open(log.path, "a", encoding="utf-8") as fh:
        fh.write('{"rollout_id": "r", "event": "batch_se')  # the crash
    assert [e["event"] for e in log.read("r")] == ["created"] and log.torn_lines == [2]
    log.append({"rollout_id": "r", "event": "resumed", "seq": 2})
    events = log.read("r")
    assert [e["event"] for e in events] == ["created", "audit_torn_line_closed", "resumed"]
    assert log.torn_lines == [2] and events[1]["line"] == 2
    # a damaged line that is not a torn tail is an error naming the file and the line
    log.path.write_text(log.path.read_text().replace('"created"', '"created'))
    with pytest.raises(CorruptStateFile, match=f"audit log {log.path} line 1 "):
        log.read()


# --- a power loss that undoes renames the directory never made durable ----------------------------------

class PowerLossFs(FileSystem):
    """A disk where a rename, link or unlink survives a power loss only once its directory was fsynced."""

    def __init__(self, *, fsync_dirs: bool = True) -> None:
        self.fsync_dirs = fsync_dirs
        self.pending: list[tuple[Path, bytes | None]] = []  # (name, its durable content before the change)

    def _remember(self, path: Path) -> None:
        self.pending.append((path, path.read_bytes() if path.exists() else None))

    def replace(self, src, dst):
        self._remember(dst)
        super().replace(src, dst)

    def link(self, src, dst):
        if dst.exists():
            raise FileExistsError(dst)
        self._remember(dst)
        super().link(src, dst)

    def unlink(self, path):
        if path.exists():
            self._remember(path)
        super().unlink(path)

    def fsync_dir(self, directory):
        if self.fsync_dirs:
            self.pending = [(p, old) for p, old in self.pending if p.parent != directory]
            super().fsync_dir(directory)

    def power_loss(self) -> None:
        for path, old in reversed(self.pending):
            if old is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(old)
        self.pending = []


class LosePowerAfterSave:
    def __init__(self, store: LocalStateStore, after: int) -> None:
        self.store, self.left = store, after

    def __getattr__(self, name):
        attr = getattr(self.store, name)
        if name not in ("save", "create"):
            return attr

        def call(state):
            attr(state)
            self.left -= 1
            if self.left == 0:
                self.store.fs.power_loss()
                raise SimulatedCrash("power lost")

        return call


@pytest.mark.parametrize("after", [1, 2, 5, 9, 14, 20])
def test_a_power_loss_after_a_save_keeps_it(rig_factory, tmp_path, after):
    rig = rig_factory({A: 2, B: 3})
    fs = PowerLossFs()
    rig.store = LocalStateStore(tmp_path / "pl", create=True, fs=fs)
    with pytest.raises(SimulatedCrash):
        rig.start(store=LosePowerAfterSave(rig.store, after))
    saved_seq = after  # create is seq 1, each save one more
    assert rig.store.load("r-test").meta["seq"] == saved_seq
    rig.clock.advance(rig.settings.lease_seconds + 1)
    state = rig.engine("op-2").resume("r-test")
    assert state.status == COMPLETED
    check_invariants(rig, state)


def test_without_the_directory_fsync_a_power_loss_brings_an_old_state_back(tmp_path):
    """The control for the test above: the simulated disk does lose renames that were not made durable."""
    store = LocalStateStore(tmp_path / "pl", create=True, fs=PowerLossFs(fsync_dirs=False))
    store.create(_state("r-1", 2))
    state = store.load("r-1")
    state.touch(f"{A}.rest.000").phase = "sending"
    store.save(state)
    store.fs.power_loss()
    with pytest.raises(ShuntError, match="no rollout 'r-1'"):
        store.load("r-1")  # even the create is gone


# --- wildcard and path-like names -------------------------------------------------------------------------

@pytest.mark.parametrize("fleet", ["*", "?", "web*", "", " web", "web\n", "aws:web"])
def test_a_wildcard_fleet_never_reaches_ec2_or_the_lease(rig_factory, fleet):
    rig = rig_factory({A: 2})
    engine = rig.engine()
    with pytest.raises(ValidationError, match="must be a literal tag value"):
        engine.discover(fleet)
    with pytest.raises(ValidationError, match="must be a literal tag value"):
        engine.start(fleet=fleet, version="1.1.0", plan=rig.plan(), settings=rig.settings, rollout_id="r-w")
    with pytest.raises(ValidationError):
        rig.store.acquire_lease(fleet, "op-1", 0, 60)
    assert rig.fleet.calls["describe_instances"] == 0 and rig.fleet.commands == []
    assert not (rig.store.dir / "locks").exists() or list((rig.store.dir / "locks").iterdir()) == []


def test_a_fleet_name_with_a_slash_stays_inside_the_lock_directory(rig_factory):
    rig = rig_factory({A: 1})
    lease = rig.store.acquire_lease("team/web:prod", "op-1", 0, 60)
    assert [p.name for p in (rig.store.dir / "locks").iterdir()] == ["team%2Fweb%3Aprod.lock"]
    assert rig.store.read_lease("team/web:prod") == lease


@pytest.mark.parametrize("rollout_id", ["../../outside/evil", "a/b", ".hidden", "", "x" * 49, "r\n"])
def test_rollout_ids_never_become_paths_outside_the_state_dir(rig_factory, rollout_id):
    rig = rig_factory({A: 1})
    for call in (rig.store.load, lambda i: rig.store.request_abort(i, "op", 0), rig.store.abort_requested,
                 rig.store.clear_abort):
        with pytest.raises(ValidationError, match="rollout id must be"):
            call(rollout_id)


def test_a_missing_state_dir_is_refused_unless_asked_to_create_it(tmp_path):
    with pytest.raises(ShuntError, match="does not exist: check --state-dir .* --create-state-dir"):
        LocalStateStore(tmp_path / "typo")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ShuntError, match="is not a directory"):
        LocalStateStore(tmp_path / "file")
    LocalStateStore(tmp_path / "new", create=True)
    assert (tmp_path / "new").is_dir()


# --- states written by the engine before wave and batch state were typed -------------------------------

@pytest.mark.parametrize("name", ["r-legacy-halted", "r-legacy-completed"])
def test_a_state_written_by_the_previous_engine_loads_unchanged(tmp_path, rig_factory, name):
    store = LocalStateStore(tmp_path / "st", create=True)
    (store.dir / "rollouts").mkdir()
    shutil.copy(DATA / f"{name}.json", store.dir / "rollouts" / f"{name}.json")
    state = store.load(name)
    assert json.loads(json.dumps(summarize(state))) == json.loads((DATA / f"{name}.summary.json").read_text())
    # a save writes exactly the stored format back (only the sequence number moves)
    original = json.loads((DATA / f"{name}.json").read_text())
    store.save(state)
    written = json.loads((store.dir / "rollouts" / f"{name}.json").read_text())
    assert written["meta"].pop("seq") == original["meta"].pop("seq") + 1
    assert written == original
    # and the engine can still act on it: resume of a final state is a no-op, rollback targets are known
    rig = rig_factory({A: 1})
    engine = rig.engine()
    engine.store = store
    assert engine.resume(name).status in (COMPLETED, ROLLED_BACK)
    for az in state.meta["zone_order"]:
        targets = engine.rollback_targets(state, az)
        assert all(version == "1.0.0" for version in targets)


def test_preflight_queries_each_heartbeat_pair_once_on_a_long_history(rig_factory):
    rig = rig_factory({A: 3, B: 3, C: 3})
    rig.fleet.metric_repeats = 60  # ListMetrics lists each (instance, version) once per stream it saw
    check = rig.engine().preflight(rig.plan(), "1.1.0", rig.settings)
    assert check.ok
    assert rig.fleet.metric_queries == 9  # one GetMetricData query per unique pair, not 540
