"""Rollout state, where it is kept (DynamoDB or a local JSON file), the lease lock and the audit log.

The state is a ``meta`` record (status, zone and wave phases, settings) plus one record per batch
(instance ids, phase, command id, per-host outcome), so a 10,000-host rollout never writes one huge
item: each transition writes the meta record and only the batches it changed. The meta record carries a
sequence number and every save is conditional on it, so two controllers can never interleave writes.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from telemetry_shunt.agent_rollout.clock import iso
from telemetry_shunt.core.contract import (
    DEFAULT_STATE_TABLE_NAME,
    STATE_TABLE_PARTITION_KEY,
    STATE_TABLE_SORT_KEY,
    STATE_TABLE_TTL_ATTRIBUTE,
)
from telemetry_shunt.errors import ShuntError

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


@dataclass
class RolloutState:
    meta: dict[str, Any]
    batches: dict[str, dict[str, Any]]
    dirty: set[str] = field(default_factory=set)

    @property
    def rollout_id(self) -> str:
        return self.meta["rollout_id"]

    @property
    def status(self) -> str:
        return self.meta["status"]

    def batch(self, batch_id: str) -> dict[str, Any]:
        return self.batches[batch_id]

    def touch(self, batch_id: str) -> dict[str, Any]:
        """The batch record, marked as changed so the next save writes it."""
        self.dirty.add(batch_id)
        return self.batches[batch_id]

    def add_batch(self, record: dict[str, Any]) -> None:
        self.batches[record["batch_id"]] = record
        self.dirty.add(record["batch_id"])

    def host_statuses(self) -> dict[str, dict[str, str]]:
        """``{instance_id: {"upgrade": status, "rollback": status}}`` over all batches."""
        out: dict[str, dict[str, str]] = {}
        for record in self.batches.values():
            for iid, status in record.get("hosts", {}).items():
                out.setdefault(iid, {})[record["kind"]] = status
        return out

    def copy(self) -> RolloutState:
        return RolloutState(copy.deepcopy(self.meta), copy.deepcopy(self.batches), set(self.dirty))


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

def _atomic_write(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class LocalStateStore:
    """State in ``<dir>/rollouts/<id>.json`` (written atomically), leases in ``<dir>/locks/``.

    The lease file is created with ``O_EXCL``; an expired lease is taken over. Good for one machine
    (the sandbox, dry runs, tests); use the DynamoDB store when several operators share a fleet.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)

    def _path(self, rollout_id: str) -> Path:
        return self.dir / "rollouts" / f"{rollout_id}.json"

    def _read(self, rollout_id: str) -> dict[str, Any]:
        try:
            return json.loads(self._path(rollout_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RolloutNotFound(
                f"no rollout {rollout_id!r} in {self.dir}: check the id with 'shunt rollout status'"
            ) from None

    def create(self, state: RolloutState) -> None:
        if self._path(state.rollout_id).exists():
            raise RolloutExists(f"rollout {state.rollout_id!r} already exists: pick another --rollout-id")
        state.meta["seq"] = 1
        _atomic_write(self._path(state.rollout_id), json.dumps({"meta": state.meta, "batches": state.batches}))
        state.dirty.clear()

    def load(self, rollout_id: str) -> RolloutState:
        data = self._read(rollout_id)
        return RolloutState(data["meta"], data["batches"])

    def save(self, state: RolloutState) -> None:
        current = self._read(state.rollout_id)["meta"]["seq"]
        if current != state.meta["seq"]:
            raise StateConflict(
                f"rollout {state.rollout_id} was changed by another controller (seq {current}, "
                f"expected {state.meta['seq']}): run 'shunt rollout status'"
            )
        state.meta["seq"] += 1
        _atomic_write(self._path(state.rollout_id), json.dumps({"meta": state.meta, "batches": state.batches}))
        state.dirty.clear()

    def list_rollouts(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted((self.dir / "rollouts").glob("*.json")):
            out.append(json.loads(path.read_text(encoding="utf-8"))["meta"])
        return sorted(out, key=lambda m: m["created_at"])

    def _lock_path(self, fleet: str) -> Path:
        return self.dir / "locks" / f"{fleet}.lock"

    def read_lease(self, fleet: str) -> Lease | None:
        try:
            data = json.loads(self._lock_path(fleet).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return Lease(fleet, data["owner"], data["expires_at"], data.get("rollout_id"))

    def acquire_lease(self, fleet: str, owner: str, now: float, ttl: float,
                      rollout_id: str | None = None) -> Lease:
        path = self._lock_path(fleet)
        path.parent.mkdir(parents=True, exist_ok=True)
        lease = Lease(fleet, owner, now + ttl, rollout_id)
        body = json.dumps({"owner": owner, "expires_at": lease.expires_at, "rollout_id": rollout_id})
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            held = self.read_lease(fleet)
            if held is not None and held.owner != owner and held.expires_at > now:
                raise lease_held_error(held) from None
            _atomic_write(path, body)  # expired (or ours): take it over
            return lease
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
        return lease

    def renew_lease(self, lease: Lease, now: float, ttl: float) -> Lease:
        held = self.read_lease(lease.fleet)
        if held is None or held.owner != lease.owner:
            raise lease_held_error(held) if held else LeaseHeld(f"lost the lease on fleet {lease.fleet!r}")
        renewed = Lease(lease.fleet, lease.owner, now + ttl, lease.rollout_id)
        _atomic_write(self._lock_path(lease.fleet), json.dumps(
            {"owner": renewed.owner, "expires_at": renewed.expires_at, "rollout_id": renewed.rollout_id}))
        return renewed

    def release_lease(self, lease: Lease) -> None:
        held = self.read_lease(lease.fleet)
        if held is not None and held.owner == lease.owner:
            self._lock_path(lease.fleet).unlink(missing_ok=True)

    def _abort_path(self, rollout_id: str) -> Path:
        return self.dir / "control" / f"{rollout_id}.abort"

    def request_abort(self, rollout_id: str, by: str, now: float) -> None:
        self._read(rollout_id)
        _atomic_write(self._abort_path(rollout_id), json.dumps({"by": by, "at": now}))

    def abort_requested(self, rollout_id: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._abort_path(rollout_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def clear_abort(self, rollout_id: str) -> None:
        self._abort_path(rollout_id).unlink(missing_ok=True)


# --- DynamoDB (shared between operators) ---------------------------------------------------------

PK, SK, TTL = STATE_TABLE_PARTITION_KEY, STATE_TABLE_SORT_KEY, STATE_TABLE_TTL_ATTRIBUTE


class DynamoStateStore:
    """State in the rollout table: ``pk=rollout#<id>`` with ``sk=meta``, ``sk=batch#<id>`` and
    ``sk=control``; the fleet lease at ``pk=lease#<fleet>, sk=lease`` (conditional puts, expiry in
    the table's TTL attribute). Records are JSON strings, so no float/Decimal conversions."""

    def __init__(self, client: Any, table: str = DEFAULT_STATE_TABLE_NAME) -> None:
        self.client = client
        self.table = table

    @staticmethod
    def _key(pk: str, sk: str) -> dict[str, Any]:
        return {PK: {"S": pk}, SK: {"S": sk}}

    def _conditional_failed(self, exc: Exception) -> bool:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        return code == "ConditionalCheckFailedException"

    def create(self, state: RolloutState) -> None:
        state.meta["seq"] = 1
        self._write_batches(state, state.batches)
        try:
            self.client.put_item(
                TableName=self.table,
                Item={**self._key(f"rollout#{state.rollout_id}", "meta"), **self._meta_attrs(state.meta)},
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": PK},
            )
        except Exception as exc:
            if self._conditional_failed(exc):
                raise RolloutExists(f"rollout {state.rollout_id!r} already exists: pick another --rollout-id") from None
            raise
        state.dirty.clear()

    @staticmethod
    def _meta_attrs(meta: dict[str, Any]) -> dict[str, Any]:
        return {
            "data": {"S": json.dumps(meta)}, "seq": {"N": str(meta["seq"])},
            "status": {"S": meta["status"]}, "fleet": {"S": meta["fleet"]},
        }

    def _write_batches(self, state: RolloutState, ids: Iterable[str]) -> None:
        for batch_id in sorted(ids):
            self.client.put_item(
                TableName=self.table,
                Item={**self._key(f"rollout#{state.rollout_id}", f"batch#{batch_id}"),
                      "data": {"S": json.dumps(state.batches[batch_id])}},
            )

    def load(self, rollout_id: str) -> RolloutState:
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
        meta = None
        batches: dict[str, dict[str, Any]] = {}
        for item in items:
            sk = item[SK]["S"]
            if sk == "meta":
                meta = json.loads(item["data"]["S"])
            elif sk.startswith("batch#"):
                batches[sk[len("batch#"):]] = json.loads(item["data"]["S"])
        if meta is None:
            raise RolloutNotFound(f"no rollout {rollout_id!r} in table {self.table}: check the id with 'shunt rollout status'")
        return RolloutState(meta, batches)

    def save(self, state: RolloutState) -> None:
        self._write_batches(state, state.dirty)
        expected = state.meta["seq"]
        state.meta["seq"] = expected + 1
        try:
            self.client.put_item(
                TableName=self.table,
                Item={**self._key(f"rollout#{state.rollout_id}", "meta"), **self._meta_attrs(state.meta)},
                ConditionExpression="#seq = :expected",
                ExpressionAttributeNames={"#seq": "seq"},
                ExpressionAttributeValues={":expected": {"N": str(expected)}},
            )
        except Exception as exc:
            state.meta["seq"] = expected
            if self._conditional_failed(exc):
                raise StateConflict(
                    f"rollout {state.rollout_id} was changed by another controller: run 'shunt rollout status'"
                ) from None
            raise
        state.dirty.clear()

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
        item = self.client.get_item(TableName=self.table, Key=self._key(f"lease#{fleet}", "lease"),
                                    ConsistentRead=True).get("Item")
        if not item:
            return None
        return Lease(fleet, item["owner"]["S"], float(item[TTL]["N"]),
                     item.get("rollout_id", {}).get("S"))

    def _put_lease(self, lease: Lease, condition: str, values: dict[str, Any]) -> None:
        item = {**self._key(f"lease#{lease.fleet}", "lease"), "owner": {"S": lease.owner},
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
        self.load(rollout_id)
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

class AuditLog:
    """Append-only JSON Lines: one line per transition, written (and fsynced) before the state is saved,
    so a crash can repeat an event on resume but never lose one."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def append(self, event: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(event, sort_keys=True, default=str) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, rollout_id: str | None = None) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        events = [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [e for e in events if rollout_id is None or e.get("rollout_id") == rollout_id]
