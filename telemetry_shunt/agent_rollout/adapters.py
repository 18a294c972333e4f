"""The AWS side of a rollout, one adapter per concern: which hosts are in the fleet (EC2, SSM), the
documents and versions (SSM), commands (SSM Run Command) and the evidence (CloudWatch heartbeats and
alarms). The state machine (engine.py) decides; these only ask and send.

Every call goes through one :class:`~telemetry_shunt.agent_rollout.aws.AwsCaller` (counted, throttling
retried), and every paginated answer is followed to its end.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from telemetry_shunt.agent_rollout.aws import AwsCaller, AwsClients, error_code
from telemetry_shunt.agent_rollout.clock import Clock, to_datetime
from telemetry_shunt.core import validation
from telemetry_shunt.core.contract import (
    AGENT_VERSION_PARAMETER,
    FLEET_TAG_KEY,
    HEARTBEAT_INSTANCE_DIMENSION,
    HEARTBEAT_METRIC,
    HEARTBEAT_NAMESPACE,
    HEARTBEAT_VERSION_DIMENSION,
)
from telemetry_shunt.core.rollout_plan import Host, chunk

ACCESS_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}
TERMINAL_INVOCATION = {"Success", "Failed", "TimedOut", "Cancelled"}


class FleetDiscovery:
    """The fleet's running instances (EC2) and whether their SSM agents are online."""

    def __init__(self, clients: AwsClients, aws: AwsCaller) -> None:
        self.clients, self.aws = clients, aws

    def discover(self, fleet: str) -> list[Host]:
        """Running EC2 instances tagged ``telemetry-shunt:fleet=<fleet>`` (a literal name: in an EC2 filter
        ``*`` and ``?`` are wildcards, so a pattern would reach other fleets)."""
        hosts: list[Host] = []
        kwargs: dict[str, Any] = {"Filters": [
            {"Name": f"tag:{FLEET_TAG_KEY}", "Values": [validation.fleet_name(fleet)]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]}
        while True:
            page = self.aws(self.clients.ec2, "describe_instances", **kwargs)
            for reservation in page.get("Reservations", []):
                for inst in reservation.get("Instances", []):
                    hosts.append(Host(inst["InstanceId"], inst["Placement"]["AvailabilityZone"]))
            if not page.get("NextToken"):
                return hosts
            kwargs["NextToken"] = page["NextToken"]

    def agents_online(self, instance_ids: Sequence[str]) -> set[str]:
        online: set[str] = set()
        for group in chunk(list(instance_ids), 50):
            kwargs: dict[str, Any] = {"Filters": [{"Key": "InstanceIds", "Values": group}]}
            while True:
                page = self.aws(self.clients.ssm, "describe_instance_information", **kwargs)
                for info in page.get("InstanceInformationList", []):
                    if info.get("PingStatus") == "Online" and info["InstanceId"] in group:
                        online.add(info["InstanceId"])
                if not page.get("NextToken"):
                    break
                kwargs["NextToken"] = page["NextToken"]
        return online


class Documents:
    """The rollout's SSM documents and the agent versions they (or the Distributor package) offer."""

    def __init__(self, clients: AwsClients, aws: AwsCaller, warn) -> None:
        self.clients, self.aws, self.warn = clients, aws, warn

    def exists(self, name: str) -> bool:
        try:
            self.aws(self.clients.ssm, "describe_document", Name=name)
        except Exception as exc:
            if error_code(exc) != "InvalidDocument":
                raise
            return False
        return True

    def allowed_versions(self, upgrade_document: str) -> list[str] | None:
        """The upgrade document's ``allowedValues`` for the version (S3 artifacts list the checksummed
        versions there), or None when it has none (a Distributor package: ask the package)."""
        try:
            doc = self.aws(self.clients.ssm, "get_document", Name=upgrade_document,
                           DocumentVersion="$LATEST", DocumentFormat="JSON")
        except Exception as exc:
            if error_code(exc) in ("InvalidDocument", "InvalidDocumentVersion"):
                return None  # reported by the document check
            if error_code(exc) in ACCESS_DENIED:
                self.warn("warning: no ssm:GetDocument permission: versions are checked against the "
                          "Distributor package only")
                return None
            raise
        try:
            content = json.loads(doc.get("Content") or "{}")
        except ValueError:
            return None
        allowed = content.get("parameters", {}).get(AGENT_VERSION_PARAMETER, {}).get("allowedValues")
        return list(allowed) if isinstance(allowed, list) else None

    def version_exists(self, package: str, version: str) -> bool:
        try:
            self.aws(self.clients.ssm, "describe_document", Name=package, VersionName=version)
        except Exception as exc:
            if error_code(exc) in ("InvalidDocument", "InvalidDocumentVersion", "ValidationException"):
                return False
            raise
        return True


class Commands:
    """SSM Run Command: send a batch, find one already sent (by its comment), poll, cancel."""

    def __init__(self, clients: AwsClients, aws: AwsCaller) -> None:
        self.clients, self.aws = clients, aws

    def send(self, *, document: str, version: str, instance_ids: Sequence[str], comment: str,
             max_concurrency: str, max_errors: str, timeout_seconds: float) -> str:
        response = self.aws(
            self.clients.ssm, "send_command",
            InstanceIds=list(instance_ids), DocumentName=document,
            # the newest content: CloudFormation may not promote a document's new default version
            DocumentVersion="$LATEST",
            Comment=comment, Parameters={AGENT_VERSION_PARAMETER: [version]}, MaxConcurrency=max_concurrency,
            MaxErrors=max_errors,
            # SSM's delivery timeout has a floor of 30 s; the engine's own deadline is what cancels
            TimeoutSeconds=max(30, int(timeout_seconds)),
        )
        return response["Command"]["CommandId"]

    def find_sent(self, comment: str, since: float) -> str | None:
        """A command already sent with this comment (e.g. before a crash), invoked after ``since``."""
        kwargs: dict[str, Any] = {"Filters": [
            {"key": "InvokedAfter", "value": to_datetime(since).strftime("%Y-%m-%dT%H:%M:%SZ")}]}
        while True:
            page = self.aws(self.clients.ssm, "list_commands", **kwargs)
            for command in page.get("Commands", []):
                if command.get("Comment") == comment:
                    return command["CommandId"]
            if not page.get("NextToken"):
                return None
            kwargs["NextToken"] = page["NextToken"]

    def invocations(self, command_id: str) -> dict[str, str]:
        statuses: dict[str, str] = {}
        kwargs: dict[str, Any] = {"CommandId": command_id}
        while True:
            page = self.aws(self.clients.ssm, "list_command_invocations", **kwargs)
            for inv in page.get("CommandInvocations", []):
                statuses[inv["InstanceId"]] = inv["Status"]
            if not page.get("NextToken"):
                return statuses
            kwargs["NextToken"] = page["NextToken"]

    def cancel(self, command_id: str, instance_ids: Sequence[str]) -> None:
        self.aws(self.clients.ssm, "cancel_command", CommandId=command_id, InstanceIds=list(instance_ids))


class Heartbeats:
    """The evidence: per-host heartbeat datapoints (InstanceId, AgentVersion) and the alarms' states."""

    def __init__(self, clients: AwsClients, aws: AwsCaller, clock: Clock) -> None:
        self.clients, self.aws, self.clock = clients, aws, clock

    def alarm_states(self, names: Sequence[str]) -> dict[str, str | None]:
        """``{alarm: StateValue or None when it does not exist}``."""
        states: dict[str, str | None] = dict.fromkeys(names)
        for group in chunk(list(names), 100):
            page = self.aws(self.clients.cloudwatch, "describe_alarms", AlarmNames=group,
                            AlarmTypes=["MetricAlarm", "CompositeAlarm"])
            for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
                states[alarm["AlarmName"]] = alarm["StateValue"]
        return states

    def current_versions(self, instance_ids: Sequence[str], period_seconds: float) -> dict[str, set[str]]:
        """The agent versions each host is heartbeating right now (last 5 heartbeat periods, at least 60 s;
        the newest datapoint wins).

        ListMetrics finds the (InstanceId, AgentVersion) pairs of the last 3 hours; GetMetricData keeps
        the pairs with datapoints in the last five periods.
        """
        wanted = set(instance_ids)
        # ListMetrics lists a metric once per stream it has seen: a busy fleet repeats the same
        # (instance, version) pair many times; query each pair once
        pairs: dict[tuple[str, str], None] = {}
        kwargs: dict[str, Any] = {"Namespace": HEARTBEAT_NAMESPACE, "MetricName": HEARTBEAT_METRIC,
                                  "Dimensions": [{"Name": HEARTBEAT_INSTANCE_DIMENSION}], "RecentlyActive": "PT3H"}
        while True:
            page = self.aws(self.clients.cloudwatch, "list_metrics", **kwargs)
            for metric in page.get("Metrics", []):
                dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
                iid, version = dims.get(HEARTBEAT_INSTANCE_DIMENSION), dims.get(HEARTBEAT_VERSION_DIMENSION)
                if iid in wanted and version and len(dims) == 2:
                    pairs[(iid, version)] = None
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        now = self.clock.now()
        window = max(5 * period_seconds, 60.0)  # a few periods; generous for fast (sandbox) heartbeats
        latest = self.latest_beats(list(pairs), now - window, now, period_seconds)
        newest: dict[str, float] = {}
        for (iid, _), ts in latest.items():
            newest[iid] = max(ts, newest.get(iid, ts))
        out: dict[str, set[str]] = {i: set() for i in instance_ids}
        for (iid, version), ts in latest.items():
            if ts == newest[iid]:  # a host that just changed version beat at both: the newest counts
                out[iid].add(version)
        return out

    def silent_hosts(self, instance_ids: Sequence[str], version: str, since: float, until: float,
                     period_seconds: float) -> list[str]:
        """Hosts with no heartbeat datapoint at ``version`` in [since, until]."""
        alive = {i for i, _ in self.latest_beats([(i, version) for i in instance_ids], since, until, period_seconds)}
        return [i for i in instance_ids if i not in alive]

    def latest_beats(self, pairs: Sequence[tuple[str, str]], since: float, until: float,
                     period_seconds: float) -> dict[tuple[str, str], float]:
        """``{(instance, version): newest datapoint time}`` for pairs that beat in [since, until]
        (GetMetricData, 500 queries a call)."""
        period = int(period_seconds)
        period = 60 if period >= 60 else max(1, period)
        seen: dict[tuple[str, str], float] = {}
        for group in chunk(list(pairs), 500):
            queries = [{
                "Id": f"h{n}",
                "MetricStat": {"Metric": {
                    "Namespace": HEARTBEAT_NAMESPACE, "MetricName": HEARTBEAT_METRIC,
                    "Dimensions": [{"Name": HEARTBEAT_INSTANCE_DIMENSION, "Value": iid},
                                   {"Name": HEARTBEAT_VERSION_DIMENSION, "Value": version}]},
                    "Period": period, "Stat": "SampleCount"},
                "ReturnData": True,
            } for n, (iid, version) in enumerate(group)]
            kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": to_datetime(since),
                                      "EndTime": to_datetime(until + 1)}
            while True:
                page = self.aws(self.clients.cloudwatch, "get_metric_data", **kwargs)
                for result in page.get("MetricDataResults", []):
                    stamps = [t for t, v in zip(result.get("Timestamps", []), result.get("Values", []), strict=False)
                              if v > 0]
                    if stamps:
                        pair = tuple(group[int(result["Id"][1:])])
                        seen[pair] = max([seen.get(pair, 0.0), *(t.timestamp() for t in stamps)])
                if not page.get("NextToken"):
                    break
                kwargs["NextToken"] = page["NextToken"]
        return seen
