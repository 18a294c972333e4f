"""Rollout state, where it is kept (DynamoDB or a local JSON file), the lease lock and the audit log.

The state is a ``meta`` record (status, zone and wave phases, settings) plus one record per batch
(instance ids, phase, command id, per-host outcome), so a 10,000-host rollout never writes one huge
item: each transition writes the meta record and only the batches it changed. The meta record carries a
sequence number and every save is conditional on it, so two controllers can never interleave writes:
in DynamoDB the meta item and the batch records of a save go in one transaction; locally the file is
replaced atomically and durably.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from telemetry_shunt.agent_rollout.clock import iso
from telemetry_shunt.agent_rollout.records import BatchRecord, WaveState
from telemetry_shunt.core import validation
from telemetry_shunt.core.contract import (
    DEFAULT_STATE_TABLE_NAME,
    STATE_TABLE_PARTITION_KEY,
    STATE_TABLE_SORT_KEY,
    STATE_TABLE_TTL_ATTRIBUTE,
)
from telemetry_shunt.core.rollout_plan import chunk
from telemetry_shunt.errors import ShuntError, ValidationError

# Rollout statuses. "running" also covers a controller that crashed or was interrupted: resume it.
RUNNING = "running"
COMPLETED = "completed"
ROLLING_BACK = "rolling_back"
ROLLED_BACK = "rolled_back"
ABORTED = "aborted"
HALTED = "halted"  # rolled back, but some rollback commands failed: needs a human
FINAL_STATUSES = (COMPLETED, ROLLED_BACK, HALTED)


class LeaseHeld(ShuntError):
    """Another controller holds the fleet's lease."""

    exit_code = 3


class StateConflict(ShuntError):
    """The state changed under us: another controller wrote it."""

    exit_code = 3


class RolloutNotFound(ShuntError):
    pass


class RolloutExists(ShuntError):
    pass


class CorruptStateFile(ShuntError):
    """A state, lease or audit file that cannot be parsed (torn or damaged): the message names it."""


_ROLLOUT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,47}", re.ASCII)


def validate_rollout_id(rollout_id: object) -> str:
    """The one rollout-id check: ids become file names, DynamoDB keys and SSM command comments (100
    characters with the batch id), so no path separators and nothing that could climb out of a directory."""
    if isinstance(rollout_id, str) and _ROLLOUT_ID.fullmatch(rollout_id):
        return rollout_id
    raise ValidationError(
        f"rollout id must be 1-48 letters, digits, '.', '_' or '-' (starting with a letter or digit), "
        f"got {rollout_id!r}"
    )


@dataclass
class RolloutState:
    """A rollout: the ``meta`` record (status, zones, settings), its waves and its batch records.

    Stored as ``{"meta": {..., "waves": {...}}, "batches": {...}}``: the waves live inside the meta record
    and each batch is a record of its own (see records.py for their fields).
    """

    meta: dict[str, Any]
    batches: dict[str, BatchRecord]
    dirty: set[str] = field(default_factory=set)
    waves: dict[str, WaveState] = field(default_factory=dict)
    # where the DynamoDB store keeps batch records written outside the meta transaction (not persisted here)
    locations: dict[str, str] = field(default_factory=dict)

    @property
    def rollout_id(self) -> str:
        return self.meta["rollout_id"]

    @property
    def status(self) -> str:
        return self.meta["status"]

    def batch(self, batch_id: str) -> BatchRecord:
        return self.batches[batch_id]

    def touch(self, batch_id: str) -> BatchRecord:
        """The batch record, marked as changed so the next save writes it."""
        self.dirty.add(batch_id)
        return self.batches[batch_id]

    def add_batch(self, record: BatchRecord) -> None:
        self.batches[record.batch_id] = record
        self.dirty.add(record.batch_id)

    def host_statuses(self) -> dict[str, dict[str, str]]:
        """``{instance_id: {"upgrade": status, "rollback": status}}`` over all batches."""
        out: dict[str, dict[str, str]] = {}
        for record in self.batches.values():
            for iid, status in record.hosts.items():
                out.setdefault(iid, {})[record.kind] = status
        return out

    def meta_record(self) -> dict[str, Any]:
        return {**self.meta, "waves": {k: w.to_dict() for k, w in self.waves.items()}}

    def batch_record(self, batch_id: str) -> dict[str, Any]:
        return self.batches[batch_id].to_dict()

    def to_record(self) -> dict[str, Any]:
        """The stored form (the local file's content)."""
        return {"meta": self.meta_record(), "batches": {b: self.batch_record(b) for b in self.batches}}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RolloutState:
        meta = dict(record["meta"])
        waves = {k: WaveState.from_dict(v) for k, v in (meta.pop("waves", None) or {}).items()}
        batches = {b: BatchRecord.from_dict(r) for b, r in record["batches"].items()}
        return cls(meta, batches, waves=waves)


@dataclass(frozen=True)
class Lease:
    fleet: str
    owner: str
    expires_at: float
    rollout_id: str | None = None


def lease_held_error(lease: Lease) -> LeaseHeld:
    what = f" (rollout {lease.rollout_id})" if lease.rollout_id else ""
    return LeaseHeld(
        f"fleet {lease.fleet!r} is locked by {lease.owner}{what} until {iso(lease.expires_at)}: "
        "wait for it to finish, or 'shunt rollout status' to see progress"
    )


class StateStore(Protocol):
    def create(self, state: RolloutState) -> None: ...
    def load(self, rollout_id: str) -> RolloutState: ...
    def save(self, state: RolloutState) -> None: ...
    def list_rollouts(self) -> list[dict[str, Any]]: ...
    def acquire_lease(self, fleet: str, owner: str, now: float, ttl: float,
                      rollout_id: str | None = None) -> Lease: ...
    def renew_lease(self, lease: Lease, now: float, ttl: float) -> Lease: ...
    def release_lease(self, lease: Lease) -> None: ...
    def read_lease(self, fleet: str) -> Lease | None: ...
    def request_abort(self, rollout_id: str, by: str, now: float) -> None: ...
    def abort_requested(self, rollout_id: str) -> dict[str, Any] | None: ...
    def clear_abort(self, rollout_id: str) -> None: ...


# --- local JSON files (sandbox, tests, single-operator use) --------------------------------------

class FileSystem:
    """The file operations the local store and the audit log make, in one place so that a test can inject
    a file system that crashes mid-write or loses renames that were not made durable (power loss)."""

    def write_synced(self, path: Path, data: bytes) -> None:
        """Create ``path`` (it must not exist) with ``data``, flushed to disk."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def replace(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)

    def link(self, src: Path, dst: Path) -> None:
        """Give ``src`` the name ``dst``; FileExistsError if ``dst`` exists (atomic create-if-absent)."""
        os.link(src, dst)

    def unlink(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def fsync_dir(self, directory: Path) -> None:
        """Make renames, links and unlinks in ``directory`` durable."""
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def mkdir(self, directory: Path) -> None:
        """Create ``directory`` and any missing parents, each made durable in its parent."""
        if directory.is_dir():
            return
        self.mkdir(directory.parent)
        directory.mkdir(exist_ok=True)
        self.fsync_dir(directory.parent)

    def read_bytes(self, path: Path) -> bytes:
        return path.read_bytes()

    def append_synced(self, path: Path, data: bytes) -> bool:
        """Append ``data`` and fsync; returns True when the file was created by this call."""
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return created


def atomic_write(fs: FileSystem, path: Path, data: str) -> None:
    """Write a temp file, fsync it, rename it over ``path`` and fsync the directory: after a power loss
    the file is either the old or the new version, and once this returns it is the new one (without the
    directory fsync the rename can be lost and an old state come back, so a command could be sent twice)."""
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        fs.write_synced(tmp, data.encode("utf-8"))
        fs.replace(tmp, path)
    except BaseException:
        fs.unlink(tmp)
        raise
    fs.fsync_dir(path.parent)


def _load_json(fs: FileSystem, path: Path, what: str, advice: str) -> Any:
    """Parse ``path``; a torn or corrupt file is one error naming the file and what to do."""
    raw = fs.read_bytes(path)
    try:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except ValueError as exc:
        raise CorruptStateFile(
            f"{what} {path} is torn or corrupt ({len(raw)} bytes, {exc.__class__.__name__}: {exc}): {advice}"
        ) from None


class LocalStateStore:
    """State in ``<dir>/rollouts/<id>.json`` (written atomically and durably), leases in ``<dir>/locks/``.

    The directory must exist (``create=True`` makes it: ``shunt rollout start --create-state-dir``), so a
    typo cannot split the state and sidestep the lease. A lease file appears complete or not at all (a
    hard link of a written temp file); an expired lease is taken over. Good for one machine (the sandbox,
    dry runs, tests); use the DynamoDB store when several operators share a fleet.
    """

    def __init__(self, directory: str | os.PathLike[str], *, create: bool = False,
                 fs: FileSystem | None = None) -> None:
        self.dir = Path(directory)
        self.fs = fs or FileSystem()
        if self.dir.exists() and not self.dir.is_dir():
            raise ShuntError(f"state directory {self.dir} is not a directory: pass the directory that holds "
                             "rollouts/ and locks/ (--state-dir)")
        if not self.dir.exists():
            if not create:
                raise ShuntError(f"state directory {self.dir} does not exist: check --state-dir (a typo would split "
                                 "the state and sidestep the fleet lease), or pass --create-state-dir to start one")
            if not self.dir.parent.is_dir():
                raise ShuntError(f"cannot create state directory {self.dir}: {self.dir.parent} is not a directory")
            self.dir.mkdir()
            self.fs.fsync_dir(self.dir.parent)

    def _subdir(self, name: str) -> Path:
        path = self.dir / name
        self.fs.mkdir(path)
        return path

    def _path(self, rollout_id: str) -> Path:
        return self.dir / "rollouts" / f"{validate_rollout_id(rollout_id)}.json"

    def _read(self, rollout_id: str) -> dict[str, Any]:
        path = self._path(rollout_id)
        try:
            data = _load_json(self.fs, path, "rollout state file", _STATE_ADVICE)
        except FileNotFoundError:
            raise RolloutNotFound(
                f"no rollout {rollout_id!r} in {self.dir}: check the id with 'shunt rollout status'"
            ) from None
        if not isinstance(data.get("meta"), dict) or not isinstance(data.get("batches"), dict) \
                or "seq" not in data["meta"]:
            raise CorruptStateFile(f"rollout state file {path} has no meta/batches records: {_STATE_ADVICE}")
        return data

    def create(self, state: RolloutState) -> None:
        self._subdir("rollouts")
        path = self._path(state.rollout_id)
        if path.exists():
            raise RolloutExists(f"rollout {state.rollout_id!r} already exists: pick another --rollout-id")
        state.meta["seq"] = 1
        atomic_write(self.fs, path, json.dumps(state.to_record()))
        state.dirty.clear()

    def load(self, rollout_id: str) -> RolloutState:
        return RolloutState.from_record(self._read(rollout_id))

    def save(self, state: RolloutState) -> None:
        current = self._read(state.rollout_id)["meta"]["seq"]
        if current != state.meta["seq"]:
            raise StateConflict(
                f"rollout {state.rollout_id} was changed by another controller (seq {current}, "
                f"expected {state.meta['seq']}): run 'shunt rollout status'"
            )
        state.meta["seq"] += 1
        try:
            atomic_write(self.fs, self._path(state.rollout_id), json.dumps(state.to_record()))
        except BaseException:
            state.meta["seq"] -= 1
            raise
        state.dirty.clear()

    def list_rollouts(self) -> list[dict[str, Any]]:
        out = []
        directory = self.dir / "rollouts"
        for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
            data = _load_json(self.fs, path, "rollout state file", _STATE_ADVICE)
            if not isinstance(data.get("meta"), dict):
                raise CorruptStateFile(f"rollout state file {path} has no meta record: {_STATE_ADVICE}")
            out.append(data["meta"])
        return sorted(out, key=lambda m: m["created_at"])

    def _lock_path(self, fleet: str) -> Path:
        # fleet names may contain '/' and ':' (tag values): the file name encodes them
        return self.dir / "locks" / f"{quote(validation.fleet_name(fleet), safe='')}.lock"

    def read_lease(self, fleet: str) -> Lease | None:
        path = self._lock_path(fleet)
        try:
            data = _load_json(self.fs, path, "lease file", _LEASE_ADVICE)
        except FileNotFoundError:
            return None
        try:
            return Lease(fleet, str(data["owner"]), float(data["expires_at"]), data.get("rollout_id"))
        except (KeyError, TypeError, ValueError):
            raise CorruptStateFile(f"lease file {path} has no owner/expiry: {_LEASE_ADVICE}") from None

    def acquire_lease(self, fleet: str, owner: str, now: float, ttl: float,
                      rollout_id: str | None = None) -> Lease:
        path = self._lock_path(fleet)
        self._subdir("locks")
        lease = Lease(fleet, owner, now + ttl, rollout_id)
        body = json.dumps({"owner": owner, "expires_at": lease.expires_at, "rollout_id": rollout_id})
        for _attempt in range(3):
            tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
            self.fs.write_synced(tmp, body.encode("utf-8"))
            try:
                self.fs.link(tmp, path)  # complete or absent: never an empty lease file
            except FileExistsError:
                held = self.read_lease(fleet)
                if held is not None and held.owner != owner and held.expires_at > now:
                    raise lease_held_error(held) from None
                if held is not None and held.owner == owner:
                    self.fs.replace(tmp, path)
                    self.fs.fsync_dir(path.parent)
                    return lease
                # expired: move it aside; of two controllers taking it over, only one rename succeeds
                try:
                    self.fs.replace(path, path.parent / f".{path.name}.expired.{uuid.uuid4().hex[:8]}")
                except FileNotFoundError:
                    pass
                continue
            finally:
                self.fs.unlink(tmp)
            self.fs.fsync_dir(path.parent)
            return lease
        held = self.read_lease(fleet)
        raise lease_held_error(held) if held else LeaseHeld(f"could not take the lease on fleet {fleet!r}: retry")

    def renew_lease(self, lease: Lease, now: float, ttl: float) -> Lease:
        held = self.read_lease(lease.fleet)
        if held is None or held.owner != lease.owner:
            raise lease_held_error(held) if held else LeaseHeld(f"lost the lease on fleet {lease.fleet!r}")
        renewed = Lease(lease.fleet, lease.owner, now + ttl, lease.rollout_id)
        atomic_write(self.fs, self._lock_path(lease.fleet), json.dumps(
            {"owner": renewed.owner, "expires_at": renewed.expires_at, "rollout_id": renewed.rollout_id}))
        return renewed

    def release_lease(self, lease: Lease) -> None:
        held = self.read_lease(lease.fleet)
        if held is not None and held.owner == lease.owner:
            path = self._lock_path(lease.fleet)
            self.fs.unlink(path)
            self.fs.fsync_dir(path.parent)

    def _abort_path(self, rollout_id: str) -> Path:
        return self.dir / "control" / f"{validate_rollout_id(rollout_id)}.abort"

    def request_abort(self, rollout_id: str, by: str, now: float) -> None:
        self._read(rollout_id)
        self._subdir("control")
        atomic_write(self.fs, self._abort_path(rollout_id), json.dumps({"by": by, "at": now}))

    def abort_requested(self, rollout_id: str) -> dict[str, Any] | None:
        try:
            return _load_json(self.fs, self._abort_path(rollout_id), "abort request file",
                              "delete it and run 'shunt rollout abort' again if the rollout should stop")
        except FileNotFoundError:
            return None

    def clear_abort(self, rollout_id: str) -> None:
        path = self._abort_path(rollout_id)
        self.fs.unlink(path)
        if path.parent.is_dir():
            self.fs.fsync_dir(path.parent)


_STATE_ADVICE = ("the store writes it atomically, so the disk or an editor damaged it. Nothing was changed; keep "
                 "a copy, restore it from a backup, or move it aside and rebuild what happened from the audit "
                 "log (every transition is there) and 'shunt rollout status --hosts' of a good copy")
_LEASE_ADVICE = ("if no controller is running on this fleet, delete the file and retry; otherwise wait for "
                 "that controller to finish")


# --- DynamoDB (shared between operators) ---------------------------------------------------------

PK, SK, TTL = STATE_TABLE_PARTITION_KEY, STATE_TABLE_SORT_KEY, STATE_TABLE_TTL_ATTRIBUTE


class DynamoStateStore:
    """State in the rollout table: ``pk=rollout#<id>`` with ``sk=meta``, ``sk=batch#<id>`` (or
    ``batch#<id>#<location>`` for records written outside the meta transaction, named by the meta item)
    and ``sk=control``; the fleet lease at ``pk=lease#<fleet>, sk=lease`` (conditional puts, expiry in
    the table's TTL attribute). Records are JSON strings, so no float/Decimal conversions.

    Every save is one TransactWriteItems carrying the meta item's ``seq`` condition: a controller whose
    save is refused as stale has written nothing the current holder reads. The operator role needs no
    extra permission for it (a transaction is authorized per item: PutItem and ConditionCheckItem)."""

    def __init__(self, client: Any, table: str = DEFAULT_STATE_TABLE_NAME) -> None:
        self.client = client
        self.table = table

    @staticmethod
    def _key(pk: str, sk: str) -> dict[str, Any]:
        return {PK: {"S": pk}, SK: {"S": sk}}

    def _conditional_failed(self, exc: Exception) -> bool:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        return code == "ConditionalCheckFailedException"

    # A TransactWriteItems takes at most 100 items: the meta item (with its seq condition) and up to 99
    # batch records go in one transaction. Records beyond that (a new rollout or a rollback plan for a large
    # zone adds hundreds of batches) are written first, each under a key of its own
    # (batch#<id>#<seq>.<token>, attribute_not_exists) and under a ConditionCheck of the meta item; the
    # meta transaction then names them (attribute "locations"). A stale controller can only add keys that
    # no meta names: it never overwrites another controller's records.
    TRANSACTION_ITEMS = 100

    def _meta_put(self, state: RolloutState, condition: str, values: dict[str, Any] | None,
                  locations: dict[str, str]) -> dict[str, Any]:
        item = {**self._key(f"rollout#{state.rollout_id}", "meta"), **self._meta_attrs(state.meta_record())}
        if locations:
            item["locations"] = {"S": json.dumps(locations, sort_keys=True)}
        put: dict[str, Any] = {"TableName": self.table, "Item": item, "ConditionExpression": condition,
                               "ExpressionAttributeNames": {"#pk": PK} if "#pk" in condition else {"#seq": "seq"}}
        if values:
            put["ExpressionAttributeValues"] = values
        return {"Put": put}

    def _batch_put(self, state: RolloutState, batch_id: str, sk: str, *, new_key: bool) -> dict[str, Any]:
        put: dict[str, Any] = {"TableName": self.table,
                               "Item": {**self._key(f"rollout#{state.rollout_id}", sk),
                                        "data": {"S": json.dumps(state.batch_record(batch_id))}}}
        if new_key:
            put["ConditionExpression"] = "attribute_not_exists(#pk)"
            put["ExpressionAttributeNames"] = {"#pk": PK}
        return {"Put": put}

    def _write(self, state: RolloutState, *, creating: bool) -> None:
        """One save: overflow records first (fresh keys), then one transaction with the meta item."""
        expected = state.meta["seq"]
        new_seq = 1 if creating else expected + 1
        if creating:
            meta_condition, meta_values = "attribute_not_exists(#pk)", None
        else:
            meta_condition, meta_values = "#seq = :expected", {":expected": {"N": str(expected)}}
        dirty = sorted(state.batches) if creating else sorted(state.dirty)
        inline, overflow = dirty[:self.TRANSACTION_ITEMS - 1], dirty[self.TRANSACTION_ITEMS - 1:]
        locations = {b: loc for b, loc in state.locations.items() if b not in inline}
        token = uuid.uuid4().hex[:8]
        check: dict[str, Any] = {"ConditionCheck": {
            "TableName": self.table, "Key": self._key(f"rollout#{state.rollout_id}", "meta"),
            "ConditionExpression": meta_condition,
            "ExpressionAttributeNames": {"#pk": PK} if creating else {"#seq": "seq"},
            **({"ExpressionAttributeValues": meta_values} if meta_values else {})}}
        for group in chunk(overflow, self.TRANSACTION_ITEMS - 1):
            items = [check]
            for batch_id in group:
                locations[batch_id] = f"{new_seq}.{token}"
                items.append(self._batch_put(state, batch_id, f"batch#{batch_id}#{locations[batch_id]}", new_key=True))
            self._transact(state, items, creating=creating)
        state.meta["seq"] = new_seq
        try:
            items = [self._meta_put(state, meta_condition, meta_values, locations)]
            items += [self._batch_put(state, b, f"batch#{b}", new_key=False) for b in inline]
            self._transact(state, items, creating=creating)
        except BaseException:
            state.meta["seq"] = expected
            raise
        state.locations = locations
        state.dirty.clear()

    def _transact(self, state: RolloutState, items: list[dict[str, Any]], *, creating: bool) -> None:
        try:
            self.client.transact_write_items(TransactItems=items)
        except Exception as exc:
            response = getattr(exc, "response", {}) or {}
            if response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") for r in response.get("CancellationReasons", [])]
            if "ConditionalCheckFailed" not in reasons and reasons:
                raise
            if creating:
                raise RolloutExists(f"rollout {state.rollout_id!r} already exists: pick another --rollout-id") from None
            raise StateConflict(
                f"rollout {state.rollout_id} was changed by another controller: run 'shunt rollout status'"
            ) from None

    def create(self, state: RolloutState) -> None:
        validate_rollout_id(state.rollout_id)
        self._write(state, creating=True)

    def save(self, state: RolloutState) -> None:
        self._write(state, creating=False)

    @staticmethod
    def _meta_attrs(meta: dict[str, Any]) -> dict[str, Any]:
        return {
            "data": {"S": json.dumps(meta)}, "seq": {"N": str(meta["seq"])},
            "status": {"S": meta["status"]}, "fleet": {"S": meta["fleet"]},
        }

    def load(self, rollout_id: str) -> RolloutState:
        validate_rollout_id(rollout_id)
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table, "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": PK}, "ExpressionAttributeValues": {":pk": {"S": f"rollout#{rollout_id}"}},
            "ConsistentRead": True,
        }
        while True:
            page = self.client.query(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        meta_item = next((i for i in items if i[SK]["S"] == "meta"), None)
        if meta_item is None:
            raise RolloutNotFound(f"no rollout {rollout_id!r} in table {self.table}: check the id with 'shunt rollout status'")
        locations = json.loads(meta_item["locations"]["S"]) if "locations" in meta_item else {}
        wanted = {f"batch#{b}#{loc}": b for b, loc in locations.items()}
        batches: dict[str, dict[str, Any]] = {}
        for item in items:
            sk = item[SK]["S"]
            if sk in wanted:
                batches[wanted[sk]] = json.loads(item["data"]["S"])
            elif sk.startswith("batch#") and "#" not in sk[len("batch#"):]:
                batch_id = sk[len("batch#"):]
                if batch_id not in locations:
                    batches[batch_id] = json.loads(item["data"]["S"])
            # other batch#<id>#<loc> keys: records of a save that never committed (a stale controller)
        missing = set(locations) - set(batches)
        if missing:
            raise CorruptStateFile(f"rollout {rollout_id} in table {self.table} names batch records that are "
                                   f"missing ({', '.join(sorted(missing)[:3])}): restore the table from its "
                                   "point-in-time backup")
        state = RolloutState.from_record({"meta": json.loads(meta_item["data"]["S"]), "batches": batches})
        state.locations = locations
        return state

    def list_rollouts(self) -> list[dict[str, Any]]:
        out = []
        kwargs: dict[str, Any] = {
            "TableName": self.table, "FilterExpression": "#sk = :meta",
            "ExpressionAttributeNames": {"#sk": SK}, "ExpressionAttributeValues": {":meta": {"S": "meta"}},
        }
        while True:
            page = self.client.scan(**kwargs)
            out.extend(json.loads(i["data"]["S"]) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(out, key=lambda m: m["created_at"])

    def read_lease(self, fleet: str) -> Lease | None:
        item = self.client.get_item(TableName=self.table, Key=self._key(f"lease#{validation.fleet_name(fleet)}", "lease"),
                                    ConsistentRead=True).get("Item")
        if not item:
            return None
        return Lease(fleet, item["owner"]["S"], float(item[TTL]["N"]),
                     item.get("rollout_id", {}).get("S"))

    def _put_lease(self, lease: Lease, condition: str, values: dict[str, Any]) -> None:
        item = {**self._key(f"lease#{validation.fleet_name(lease.fleet)}", "lease"), "owner": {"S": lease.owner},
                TTL: {"N": repr(lease.expires_at)}}
        if lease.rollout_id:
            item["rollout_id"] = {"S": lease.rollout_id}
        self.client.put_item(
            TableName=self.table, Item=item, ConditionExpression=condition,
            ExpressionAttributeNames={"#pk": PK, "#owner": "owner", "#exp": TTL},
            ExpressionAttributeValues=values,
        )

    def acquire_lease(self, fleet: str, owner: str, now: float, ttl: float,
                      rollout_id: str | None = None) -> Lease:
        lease = Lease(fleet, owner, now + ttl, rollout_id)
        try:
            self._put_lease(lease, "attribute_not_exists(#pk) OR #exp < :now OR #owner = :me",
                            {":now": {"N": repr(now)}, ":me": {"S": owner}})
        except Exception as exc:
            if not self._conditional_failed(exc):
                raise
            held = self.read_lease(fleet)
            raise lease_held_error(held or Lease(fleet, "unknown", now)) from None
        return lease

    def renew_lease(self, lease: Lease, now: float, ttl: float) -> Lease:
        renewed = Lease(lease.fleet, lease.owner, now + ttl, lease.rollout_id)
        try:
            self._put_lease(renewed, "#owner = :me AND attribute_exists(#pk) AND #exp >= :zero",
                            {":me": {"S": lease.owner}, ":zero": {"N": "0"}})
        except Exception as exc:
            if not self._conditional_failed(exc):
                raise
            held = self.read_lease(lease.fleet)
            raise (lease_held_error(held) if held else LeaseHeld(f"lost the lease on fleet {lease.fleet!r}")) from None
        return renewed

    def release_lease(self, lease: Lease) -> None:
        try:
            self.client.delete_item(
                TableName=self.table, Key=self._key(f"lease#{lease.fleet}", "lease"),
                ConditionExpression="#owner = :me", ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":me": {"S": lease.owner}},
            )
        except Exception as exc:
            if not self._conditional_failed(exc):
                raise

    def request_abort(self, rollout_id: str, by: str, now: float) -> None:
        self.load(rollout_id)  # validates the id
        self.client.put_item(TableName=self.table, Item={
            **self._key(f"rollout#{rollout_id}", "control"), "data": {"S": json.dumps({"by": by, "at": now})}})

    def abort_requested(self, rollout_id: str) -> dict[str, Any] | None:
        item = self.client.get_item(TableName=self.table, Key=self._key(f"rollout#{rollout_id}", "control"),
                                    ConsistentRead=True).get("Item")
        return json.loads(item["data"]["S"]) if item else None

    def clear_abort(self, rollout_id: str) -> None:
        self.client.delete_item(TableName=self.table, Key=self._key(f"rollout#{rollout_id}", "control"))


def create_state_table(client: Any, table: str = DEFAULT_STATE_TABLE_NAME) -> None:
    """Create the rollout table (sandbox and tests; in AWS the CDK stack owns it)."""
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": PK, "KeyType": "HASH"}, {"AttributeName": SK, "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": PK, "AttributeType": "S"},
                              {"AttributeName": SK, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


# --- audit log -----------------------------------------------------------------------------------

REPAIRED_EVENT = "audit_torn_line_closed"


class AuditLog:
    """Append-only JSON Lines: one line per transition, written (and fsynced) before the state is saved,
    so a crash can repeat an event on resume but never lose one.

    A crash in the middle of an append leaves a torn last line. ``read`` skips it and reports it
    (``torn_lines``); the next ``append`` ends it with a newline and records an ``audit_torn_line_closed``
    event naming it, so the log stays readable and says what happened.
    """

    def __init__(self, path: str | os.PathLike[str], *, fs: FileSystem | None = None) -> None:
        self.path = Path(path)
        self.fs = fs or FileSystem()
        self.torn_lines: list[int] = []

    def _lines(self) -> tuple[list[str], bool]:
        try:
            raw = self.fs.read_bytes(self.path)
        except FileNotFoundError:
            return [], True
        text = raw.decode("utf-8", errors="replace")
        return text.splitlines(), text.endswith("\n") or not text

    def _ends_with_newline(self) -> bool:
        try:
            with open(self.path, "rb") as fh:
                if fh.seek(0, os.SEEK_END) == 0:
                    return True
                fh.seek(-1, os.SEEK_END)
                return fh.read(1) == b"\n"
        except FileNotFoundError:
            return True

    def append(self, event: dict[str, Any]) -> None:
        if self.path.exists() and not self.path.is_file():
            raise ShuntError(f"audit log {self.path} is not a file: pass a file path with --audit-log")
        if not self.path.parent.is_dir():
            self.fs.mkdir(self.path.parent)
        prefix = ""
        if not self._ends_with_newline():
            lines, _ = self._lines()  # only after a crash: name the torn line
            closing = {"ts": event.get("ts"), "rollout_id": event.get("rollout_id"), "seq": event.get("seq"),
                       "event": REPAIRED_EVENT,
                       "line": len(lines), "note": "the previous line was torn by a crash mid-append"}
            prefix = "\n" + json.dumps(closing, sort_keys=True, default=str) + "\n"
        line = prefix + json.dumps(event, sort_keys=True, default=str) + "\n"
        if self.fs.append_synced(self.path, line.encode("utf-8")):
            self.fs.fsync_dir(self.path.parent)

    def read(self, rollout_id: str | None = None) -> list[dict[str, Any]]:
        """The events (of one rollout); a torn line (the last one, or one closed by a later append) is
        skipped and listed in ``torn_lines``; any other unreadable line is an error naming it."""
        lines, complete = self._lines()
        closed: set[int] = set()
        events: list[dict[str, Any]] = []
        self.torn_lines = []
        parsed: list[tuple[int, dict[str, Any] | None]] = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
                if not isinstance(event, dict):
                    raise ValueError("not a JSON object")
            except ValueError:
                parsed.append((n, None))
                continue
            if event.get("event") == REPAIRED_EVENT and isinstance(event.get("line"), int):
                closed.add(event["line"])
            parsed.append((n, event))
        for n, event in parsed:
            if event is None:
                if n in closed or (n == len(lines) and not complete):
                    self.torn_lines.append(n)
                    continue
                raise CorruptStateFile(
                    f"audit log {self.path} line {n} is not a JSON event and is not a torn last line: the file "
                    "was edited or damaged; keep a copy and restore it from a backup (the rollout state itself "
                    "is intact)"
                )
            events.append(event)
        return [e for e in events if rollout_id is None or e.get("rollout_id") == rollout_id]
