"""A fake fleet: EC2, SSM, CloudWatch and a kill switch with failures on demand.

moto reports every command as an instant success; these fakes model what a real fleet does:
per-host failures, commands stuck in progress, throttling, silent hosts, alarms changing state,
and a kill switch flipped mid-rollout. Hosts keep their agent version so tests can check that no host
was upgraded twice and that rollbacks restored the previous version.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from telemetry_shunt.agent_rollout.aws import AwsClients
from telemetry_shunt.agent_rollout.clock import SimulatedClock
from telemetry_shunt.agent_rollout.killswitch import FlipResult, flag_key
from telemetry_shunt.core.contract import (
    AGENT_VERSION_PARAMETER,
    FLEET_TAG_KEY,
    agent_document_name,
    agent_package_name,
    heartbeat_alarm_name,
)

OLD, NEW = "1.0.0", "1.1.0"
UPGRADE_DOC = agent_document_name("upgrade")
ROLLBACK_DOC = agent_document_name("rollback")


class SimulatedCrash(BaseException):
    """The controller process dies here (not an Exception: nothing may catch it)."""


def client_error(code: str, op: str, message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message or code}}, op)


@dataclass
class FakeHost:
    instance_id: str
    az: str
    version: str = OLD
    previous: list[str] = field(default_factory=list)
    upgrades: int = 0
    rollbacks: int = 0
    upgraded_at: float | None = None


class FakeFleet:
    def __init__(self, counts: dict[str, int], clock: SimulatedClock, fleet: str = "web") -> None:
        self.clock = clock
        self.fleet = fleet
        n = itertools.count(1)
        self.hosts: dict[str, FakeHost] = {}
        for az, count in counts.items():
            for _ in range(count):
                iid = f"i-{next(n):017x}"
                self.hosts[iid] = FakeHost(iid, az)
        # faults
        self.fail_upgrade: set[str] = set()        # these hosts report Failed
        self.stuck: set[str] = set()               # upgrades stay InProgress on these until cancelled
        self.stuck_always: set[str] = set()        # every command stays InProgress on these
        self.slow_polls = 0                        # invocations report InProgress this many polls first
        self.silent: set[str] = set()              # these hosts stop heartbeating once upgraded
        self.dark: set[str] = set()                # these hosts never heartbeat
        self.offline: set[str] = set()             # SSM agent not online
        self.alarm_states: dict[str, str] = {heartbeat_alarm_name(az): "OK" for az in counts}
        self.alarm_schedule: list[tuple[float, str, str]] = []  # (at, alarm, state)
        self.throttle: Counter[str] = Counter()    # operation -> throttled calls left
        self.crash_after_send: int | None = None   # crash once the n-th command was accepted
        self.versions = {"0.9.0", OLD, NEW}
        self.allowed_values: list[str] | None = None  # an S3-artifact upgrade document lists its versions
        self.metric_repeats = 1                    # ListMetrics lists a pair once per stream seen (busy fleets: many)
        self.metric_queries = 0                    # GetMetricData queries answered
        # records
        self.commands: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self.zone_log: list[tuple[float, str, str]] = []  # (time, az, document)

    def ids(self, az: str | None = None) -> list[str]:
        return sorted(i for i, h in self.hosts.items() if az is None or h.az == az)

    def clients(self) -> AwsClients:
        return AwsClients(ec2=FakeEc2(self), ssm=FakeSsm(self), cloudwatch=FakeCloudWatch(self))

    def _enter(self, op: str) -> None:
        self.calls[op] += 1
        if self.throttle[op] > 0:
            self.throttle[op] -= 1
            raise client_error("ThrottlingException", op, "Rate exceeded")


class FakeEc2:
    def __init__(self, fleet: FakeFleet) -> None:
        self.f = fleet

    def describe_instances(self, Filters, NextToken=None):  # noqa: N803 - boto3 names
        self.f._enter("describe_instances")
        tag = next(x["Values"][0] for x in Filters if x["Name"] == f"tag:{FLEET_TAG_KEY}")
        hosts = list(self.f.hosts.values()) if tag == self.f.fleet else []
        start = int(NextToken or 0)
        page = hosts[start:start + 1000]
        out = {"Reservations": [{"Instances": [
            {"InstanceId": h.instance_id, "Placement": {"AvailabilityZone": h.az}} for h in page]}]}
        if start + 1000 < len(hosts):
            out["NextToken"] = str(start + 1000)
        return out


class FakeSsm:
    def __init__(self, fleet: FakeFleet) -> None:
        self.f = fleet

    def describe_document(self, Name, VersionName=None):  # noqa: N803
        self.f._enter("describe_document")
        if Name in (UPGRADE_DOC, ROLLBACK_DOC) and VersionName is None:
            return {"Document": {"Name": Name}}
        if Name == agent_package_name() and (VersionName is None or VersionName in self.f.versions):
            return {"Document": {"Name": Name, "VersionName": VersionName}}
        raise client_error("InvalidDocument", "DescribeDocument", "The specified document does not exist.")

    def describe_instance_information(self, Filters, NextToken=None):  # noqa: N803
        self.f._enter("describe_instance_information")
        ids = next(x["Values"] for x in Filters if x["Key"] == "InstanceIds")
        assert len(ids) <= 50
        return {"InstanceInformationList": [
            {"InstanceId": i, "PingStatus": "ConnectionLost" if i in self.f.offline else "Online"}
            for i in ids if i in self.f.hosts]}

    def get_document(self, Name, DocumentVersion=None, DocumentFormat=None):  # noqa: N803
        self.f._enter("get_document")
        if Name not in (UPGRADE_DOC, ROLLBACK_DOC):
            raise client_error("InvalidDocument", "GetDocument", "The specified document does not exist.")
        version = {"type": "String"}
        if self.f.allowed_values is not None:
            version["allowedValues"] = list(self.f.allowed_values)
        return {"Name": Name, "Content": json.dumps({"schemaVersion": "2.2", "parameters": {"version": version}})}

    def send_command(self, InstanceIds, DocumentName, Comment, Parameters, MaxConcurrency, MaxErrors,  # noqa: N803
                     TimeoutSeconds, DocumentVersion=None):
        self.f._enter("send_command")
        assert DocumentVersion == "$LATEST"
        assert 1 <= len(InstanceIds) <= 50, "SSM takes at most 50 instance ids"
        assert len(Comment) <= 100
        assert int(MaxErrors) >= 0 and int(MaxConcurrency) >= 1
        command = {
            "CommandId": f"cmd-{len(self.f.commands) + 1:04d}", "Comment": Comment, "DocumentName": DocumentName,
            "InstanceIds": list(InstanceIds), "Parameters": Parameters, "polls": 0, "cancelled": set(),
            "at": self.f.clock.now(),
        }
        self.f.commands.append(command)
        azs = {self.f.hosts[i].az for i in InstanceIds}
        assert len(azs) == 1, "a command never spans zones"
        self.f.zone_log.append((self.f.clock.now(), azs.pop(), DocumentName))
        for iid in InstanceIds:
            host = self.f.hosts[iid]
            if iid in self.f.fail_upgrade and DocumentName == UPGRADE_DOC:
                host.upgrades += 1
                continue
            if DocumentName == UPGRADE_DOC:
                host.upgrades += 1
                if iid not in self.f.stuck and iid not in self.f.stuck_always:
                    host.previous.append(host.version)
                    host.version = Parameters[AGENT_VERSION_PARAMETER][0]
                    host.upgraded_at = self.f.clock.now()
            elif DocumentName == ROLLBACK_DOC:
                host.rollbacks += 1
                expected = host.previous.pop() if host.previous else host.version
                assert Parameters[AGENT_VERSION_PARAMETER] == [expected], (iid, Parameters, expected)
                host.version = expected
        if self.f.crash_after_send is not None and len(self.f.commands) >= self.f.crash_after_send:
            self.f.crash_after_send = None
            raise SimulatedCrash("crashed after SendCommand was accepted")
        return {"Command": {"CommandId": command["CommandId"], "Status": "Pending"}}

    def list_commands(self, Filters=None, NextToken=None):  # noqa: N803
        self.f._enter("list_commands")
        return {"Commands": [{"CommandId": c["CommandId"], "Comment": c["Comment"]} for c in self.f.commands]}

    def _status(self, command: dict[str, Any], iid: str) -> str:
        if iid in command["cancelled"]:
            return "Cancelled"
        if iid in self.f.stuck_always or (iid in self.f.stuck and command["DocumentName"] == UPGRADE_DOC):
            return "InProgress"
        if command["polls"] <= self.f.slow_polls:
            return "InProgress"
        if iid in self.f.fail_upgrade and command["DocumentName"] == UPGRADE_DOC:
            return "Failed"
        return "Success"

    def list_command_invocations(self, CommandId, NextToken=None):  # noqa: N803
        self.f._enter("list_command_invocations")
        command = next(c for c in self.f.commands if c["CommandId"] == CommandId)
        command["polls"] += 1
        return {"CommandInvocations": [
            {"CommandId": CommandId, "InstanceId": i, "Status": self._status(command, i)}
            for i in command["InstanceIds"]]}

    def cancel_command(self, CommandId, InstanceIds):  # noqa: N803
        self.f._enter("cancel_command")
        command = next(c for c in self.f.commands if c["CommandId"] == CommandId)
        command["cancelled"].update(InstanceIds)
        return {}


class FakeCloudWatch:
    def __init__(self, fleet: FakeFleet) -> None:
        self.f = fleet

    def describe_alarms(self, AlarmNames, AlarmTypes=None):  # noqa: N803
        self.f._enter("describe_alarms")
        now = self.f.clock.now()
        for at, name, state in list(self.f.alarm_schedule):
            if now >= at:
                self.f.alarm_states[name] = state
                self.f.alarm_schedule.remove((at, name, state))
        return {"MetricAlarms": [{"AlarmName": n, "StateValue": self.f.alarm_states[n]}
                                 for n in AlarmNames if n in self.f.alarm_states], "CompositeAlarms": []}

    def list_metrics(self, Namespace, MetricName, Dimensions, RecentlyActive=None, NextToken=None):  # noqa: N803
        self.f._enter("list_metrics")
        if NextToken is None:  # a listing is built once and paged through
            self._listing = []
            for h in self.f.hosts.values():
                if h.instance_id in self.f.dark:
                    continue
                # the last 3 hours may show older versions too
                for version in sorted({h.version, *h.previous}) * self.f.metric_repeats:
                    self._listing.append({"Namespace": Namespace, "MetricName": MetricName, "Dimensions": [
                        {"Name": "InstanceId", "Value": h.instance_id}, {"Name": "AgentVersion", "Value": version}]})
        metrics = self._listing
        start = int(NextToken or 0)
        out = {"Metrics": metrics[start:start + 500]}
        if start + 500 < len(metrics):
            out["NextToken"] = str(start + 500)
        return out

    def get_metric_data(self, MetricDataQueries, StartTime, EndTime, NextToken=None):  # noqa: N803
        self.f._enter("get_metric_data")
        assert len(MetricDataQueries) <= 500
        self.f.metric_queries += len(MetricDataQueries)
        results = []
        for q in MetricDataQueries:
            dims = {d["Name"]: d["Value"] for d in q["MetricStat"]["Metric"]["Dimensions"]}
            host = self.f.hosts[dims["InstanceId"]]
            silent = host.instance_id in self.f.dark or (
                host.instance_id in self.f.silent and host.upgraded_at is not None)
            alive = (not silent and host.version == dims["AgentVersion"]
                     and (host.upgraded_at is None or host.upgraded_at <= EndTime.timestamp()))
            results.append({"Id": q["Id"], "Values": [1.0] if alive else [], "Timestamps": [EndTime] if alive else [],
                            "StatusCode": "Complete"})
        return {"MetricDataResults": results}


class FakeKillSwitchFlags:
    """Flags in data-plane form; ``flip_at`` engages the kill switch at a simulated time."""

    def __init__(self, clock: SimulatedClock, flags: dict[str, Any] | None = None) -> None:
        self.clock = clock
        self.flags = flags if flags is not None else {"telemetry": {"enabled": True}}
        self.flip_at: list[tuple[float, str, bool]] = []
        self.reads = 0

    def read_flags(self) -> dict[str, Any]:
        self.reads += 1
        for at, key, enabled in list(self.flip_at):
            if self.clock.now() >= at:
                self.flags[key] = {"enabled": enabled}
                self.flip_at.remove((at, key, enabled))
        return dict(self.flags)

    def set_telemetry(self, az, enabled, *, dry_run=False, description=""):
        key = flag_key(az)
        changed = self.flags.get(key, {}).get("enabled") is not enabled
        if not dry_run:
            self.flags[key] = {"enabled": enabled}
        return FlipResult(key, enabled, changed, dry_run=dry_run)
