"""Agent control in Terraform: the AppConfig kill switch and the rollout engine's resources.

Same names, keyword arguments and content as :mod:`telemetry_shunt.constructs.kill_switch` and
:mod:`telemetry_shunt.constructs.agent_rollout_support`: the flags document, the five SSM documents and every
name the rollout engine looks up come from ``core``, so ``shunt rollout`` and ``shunt kill`` work the same
against a Terraform-deployed account. Durations are whole seconds (``poll_interval_seconds``) where CDK
takes ``Duration``; IAM principals and roles are ARNs and names where CDK takes objects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from constructs import Construct

from telemetry_shunt.core import agent_config as agent_config_module
from telemetry_shunt.core import hostside, validation
from telemetry_shunt.core.agent_files import AgentConfigFile, AgentDataPath
from telemetry_shunt.core.contract import (
    AGENT_ACTIONS,
    APPCONFIG_APPLICATION,
    APPCONFIG_ENVIRONMENT,
    APPCONFIG_MIN_POLL_SECONDS,
    APPCONFIG_PROFILE,
    DEFAULT_POLL_SECONDS,
    DEFAULT_RESOURCE_PREFIX,
    DEFAULT_STATE_TABLE_NAME,
    FLEET_TAG_KEY,
    HEARTBEAT_AZ_DIMENSION,
    HEARTBEAT_METRIC,
    HEARTBEAT_NAMESPACE,
    HEARTBEAT_PERIOD_SECONDS,
    STATE_TABLE_PARTITION_KEY,
    STATE_TABLE_SORT_KEY,
    STATE_TABLE_TTL_ATTRIBUTE,
    agent_document_name,
    heartbeat_alarm_name,
    kill_switch_strategy_name,
)
from telemetry_shunt.core.gateway_ref import GatewayRef
from telemetry_shunt.core.host_budgets import AgentBudgets
from telemetry_shunt.core.killswitch import FEATURE_FLAGS_TYPE, feature_flags_content, validate_availability_zones
from telemetry_shunt.core.policy import policy_json
from telemetry_shunt.errors import ValidationError
from telemetry_shunt.terraform import _aws as aws
from telemetry_shunt.terraform.network import StackEnvironment

_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,39}", re.ASCII)
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}", re.ASCII)


class KillSwitch(Construct):
    """AppConfig application, feature-flag profile, environment and all-at-once strategy for the kill switch;
    the first flags (every flag on unless ``initial_flags`` says otherwise) are deployed with the stack."""

    def __init__(self, scope: Construct, id: str, *, availability_zones: list[str] | tuple[str, ...],
                 poll_interval_seconds: int = DEFAULT_POLL_SECONDS, initial_flags: Mapping[str, bool] | None = None,
                 prefix: str = DEFAULT_RESOURCE_PREFIX) -> None:
        super().__init__(scope, id)
        if isinstance(poll_interval_seconds, bool) or not isinstance(poll_interval_seconds, int) \
                or poll_interval_seconds < APPCONFIG_MIN_POLL_SECONDS:
            raise ValidationError(f"kill-switch poll interval must be whole seconds, at least {APPCONFIG_MIN_POLL_SECONDS} s "
                                  f"(AppConfig's data-plane limit), got {poll_interval_seconds!r}")
        self.availability_zones = validate_availability_zones(availability_zones)
        self.poll_interval_seconds = poll_interval_seconds
        content = feature_flags_content(self.availability_zones, initial_flags)
        self.flag_keys = tuple(content["flags"])
        self.env = StackEnvironment.of(self)
        self.application = aws.AppconfigApplication(
            self, "Resource", name=APPCONFIG_APPLICATION,
            description="telemetry-shunt kill switch: telemetry runs only while its flags allow")
        self.environment = aws.AppconfigEnvironment(
            self, "Environment", application_id=self.application.id, name=APPCONFIG_ENVIRONMENT,
            description="The one environment every host, client and rollout reads; per-AZ control is per-AZ flags.")
        self.profile = aws.AppconfigConfigurationProfile(
            self, "Profile", application_id=self.application.id, name=APPCONFIG_PROFILE, location_uri="hosted",
            type=FEATURE_FLAGS_TYPE, description=f"Flags: {', '.join(self.flag_keys)}")
        # All at once, no bake, no alarm rollback (an automatic rollback of a kill would turn telemetry back on).
        self.deployment_strategy = aws.AppconfigDeploymentStrategy(
            self, "AllAtOnce", name=kill_switch_strategy_name(prefix), deployment_duration_in_minutes=0,
            growth_factor=100, growth_type="LINEAR", final_bake_time_in_minutes=0, replicate_to="NONE",
            description="Kill-switch flips: every poller at once, no bake")
        self.initial_version = aws.AppconfigHostedConfigurationVersion(
            self, "InitialFlags", application_id=self.application.id,
            configuration_profile_id=self.profile.configuration_profile_id,
            content=json.dumps(content, sort_keys=True), content_type="application/json",
            description="Flags as deployed by the stack")
        self.initial_deployment = aws.AppconfigDeployment(
            self, "InitialDeployment", application_id=self.application.id,
            environment_id=self.environment.environment_id,
            configuration_profile_id=self.profile.configuration_profile_id,
            configuration_version=aws.Token.as_string(self.initial_version.version_number),
            deployment_strategy_id=self.deployment_strategy.id,
            description="Initial kill-switch flags from the stack")

    def _arn(self, resource: str) -> str:
        return f"arn:{self.env.partition}:appconfig:{self.env.region}:{self.env.account}:{resource}"

    @property
    def application_arn(self) -> str:
        return self.application.arn

    @property
    def configuration_arn(self) -> str:
        """What hosts and clients read: ``application/<app>/environment/<env>/configuration/<profile>``."""
        return self._arn(f"application/{self.application.id}/environment/{self.environment.environment_id}"
                         f"/configuration/{self.profile.configuration_profile_id}")

    def read_statements(self) -> list[dict[str, Any]]:
        return [{"Effect": "Allow", "Action": ["appconfig:StartConfigurationSession", "appconfig:GetLatestConfiguration"],
                 "Resource": self.configuration_arn}]

    def flip_statements(self) -> list[dict[str, Any]]:
        return [
            {"Effect": "Allow", "Action": [
                "appconfig:GetApplication", "appconfig:ListEnvironments", "appconfig:GetEnvironment",
                "appconfig:ListConfigurationProfiles", "appconfig:GetConfigurationProfile",
                "appconfig:ListHostedConfigurationVersions", "appconfig:GetHostedConfigurationVersion",
                "appconfig:CreateHostedConfigurationVersion", "appconfig:GetDeploymentStrategy",
                "appconfig:StartDeployment", "appconfig:GetDeployment", "appconfig:ListDeployments",
                "appconfig:StopDeployment"],
             "Resource": [self.application.arn, f"{self.application.arn}/*", self.deployment_strategy.arn]},
            {"Effect": "Allow", "Action": ["appconfig:ListApplications", "appconfig:ListDeploymentStrategies"],
             "Resource": "*"},
        ]


class AgentRolloutSupport(Construct):
    """The SSM documents (install/upgrade/rollback/stop/start, rendered by ``core``), the rollout state table
    (customer-managed key, point-in-time recovery, TTL), one heartbeat alarm per AZ (missing data breaching)
    and an operator role for the rollout engine, whose ``SendCommand`` reaches only hosts tagged with ``fleet``.

    ``agent`` is the core package description (:class:`hostside.DistributorPackage` or :class:`hostside.S3Artifact`).
    """

    def __init__(self, scope: Construct, id: str, *, kill_switch: KillSwitch, agent: hostside.AgentPackage, fleet: str,
                 operator_principal_arn: str | None = None, prefix: str = DEFAULT_RESOURCE_PREFIX,
                 table_name: str = DEFAULT_STATE_TABLE_NAME, boot_cache_max_age_seconds: int = 0,
                 heartbeat_missing_minutes: int = 3, gateway: GatewayRef | None = None,
                 budgets: AgentBudgets | None = None, agent_config: AgentConfigFile | None = None,
                 alarm_topic_arn: str | None = None) -> None:
        super().__init__(scope, id)
        if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
            raise ValidationError(f"prefix must be 1-40 letters, digits, '-' or '_', starting with a letter, got {prefix!r}")
        validation.fleet_name(fleet)
        if not validation.is_token(table_name) and (not isinstance(table_name, str) or not _TABLE_NAME.fullmatch(table_name)):
            raise ValidationError(f"table name must be 3-255 of letters, digits, '_', '-', '.', got {table_name!r}")
        if isinstance(heartbeat_missing_minutes, bool) or not isinstance(heartbeat_missing_minutes, int) \
                or not 1 <= heartbeat_missing_minutes <= 60:
            raise ValidationError(f"heartbeat_missing_minutes must be 1-60, got {heartbeat_missing_minutes!r}")
        if isinstance(boot_cache_max_age_seconds, bool) or not isinstance(boot_cache_max_age_seconds, int) \
                or boot_cache_max_age_seconds < 0:
            raise ValidationError(f"boot_cache_max_age_seconds must be whole seconds >= 0, got {boot_cache_max_age_seconds!r}")
        self.kill_switch, self.agent, self.fleet, self.prefix = kill_switch, agent, fleet, prefix
        self._grants: dict[str, int] = {}
        self.env = kill_switch.env
        self.budgets = budgets or AgentBudgets()
        self.data_path = self._data_path(gateway, agent_config)
        self.host_config = hostside.HostConfig(agent_service=agent.service, poll_seconds=kill_switch.poll_interval_seconds,
                                               boot_cache_max_age_seconds=boot_cache_max_age_seconds)
        self.documents: dict[str, aws.SsmDocument] = {}
        for action in AGENT_ACTIONS:
            content = hostside.agent_document(action, agent=agent, config=self.host_config, data_path=self.data_path)
            self.documents[action] = aws.SsmDocument(
                self, f"{action.capitalize()}Document", name=agent_document_name(action, prefix), document_type="Command",
                document_format="JSON", content=json.dumps(content), target_type="/AWS::EC2::Instance")
        # Key policy: the account administers the key and delegates its use to IAM policies (the operator role's),
        # as the CDK flavour's key policy does.
        self.table_key = aws.KmsKey(
            self, "StateTableKey", description="telemetry-shunt: encrypts the agent rollout state table",
            enable_key_rotation=True, deletion_window_in_days=30, policy=policy_json([
                {"Sid": "AccountAdmin", "Effect": "Allow", "Action": "kms:*", "Resource": "*",
                 "Principal": {"AWS": f"arn:{self.env.partition}:iam::{self.env.account}:root"}}]))
        self.table = aws.DynamodbTable(
            self, "StateTable", name=table_name, billing_mode="PAY_PER_REQUEST",
            hash_key=STATE_TABLE_PARTITION_KEY, range_key=STATE_TABLE_SORT_KEY,
            attribute=[aws.DynamodbTableAttribute(name=STATE_TABLE_PARTITION_KEY, type="S"),
                       aws.DynamodbTableAttribute(name=STATE_TABLE_SORT_KEY, type="S")],
            point_in_time_recovery=aws.DynamodbTablePointInTimeRecovery(enabled=True),
            ttl=aws.DynamodbTableTtl(attribute_name=STATE_TABLE_TTL_ATTRIBUTE, enabled=True),
            server_side_encryption=aws.DynamodbTableServerSideEncryption(enabled=True, kms_key_arn=self.table_key.arn),
            deletion_protection_enabled=True)
        actions = [alarm_topic_arn] if alarm_topic_arn else None
        self.heartbeat_alarms: dict[str, aws.CloudwatchMetricAlarm] = {}
        for az in kill_switch.availability_zones:
            self.heartbeat_alarms[az] = aws.CloudwatchMetricAlarm(
                self, f"Heartbeat-{az}", alarm_name=heartbeat_alarm_name(az, prefix),
                alarm_description=(f"No agent heartbeat from {az} for {heartbeat_missing_minutes} min: agents there "
                                   "are down, killed by the kill switch, or not reporting. Missing data is breaching."),
                namespace=HEARTBEAT_NAMESPACE, metric_name=HEARTBEAT_METRIC, dimensions={HEARTBEAT_AZ_DIMENSION: az},
                statistic="SampleCount", period=HEARTBEAT_PERIOD_SECONDS, threshold=1,
                comparison_operator="LessThanThreshold", evaluation_periods=heartbeat_missing_minutes,
                datapoints_to_alarm=heartbeat_missing_minutes, treat_missing_data="breaching",
                alarm_actions=actions, ok_actions=actions)
        principal = operator_principal_arn or f"arn:{self.env.partition}:iam::{self.env.account}:root"
        self.operator_role = aws.IamRole(
            self, "OperatorRole", name_prefix=f"{prefix}-operator-"[:38], max_session_duration=3600,
            description="telemetry-shunt rollout engine: SSM documents on the fleet, alarms, state table, kill switch",
            assume_role_policy=policy_json([{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": principal}}]))
        self.grant_operate(self.operator_role.name)

    def _data_path(self, gateway: GatewayRef | None, agent_config: AgentConfigFile | None) -> AgentDataPath:
        # Lattice is regional: hosts sign for their own Region when the gateway's is a deploy-time value.
        region = None if gateway is None or gateway.region else self.env.region
        if agent_config is not None:
            # With a gateway, the signing forwarder comes too: the custom agent POSTs plain HTTP to it on loopback
            # (as the CDK flavour's AgentRolloutSupport does).
            return AgentDataPath.for_file(agent_service=self.agent.service, file=agent_config, budgets=self.budgets,
                                          gateway=gateway, region=region)
        if gateway is not None:
            if self.agent.service != agent_config_module.ADOT_SERVICE:
                raise ValidationError(f"the documents configure only the ADOT collector for a gateway; agent "
                                      f"{self.agent.service!r} needs agent_config=AgentConfigFile(...) with its own config")
            return AgentDataPath.adot(gateway, self.budgets, region=region)
        return AgentDataPath.budgets_only(agent_service=self.agent.service, budgets=self.budgets)

    @property
    def document_arns(self) -> list[str]:
        base = f"arn:{self.env.partition}:ssm:{self.env.region}:{self.env.account}:document/"
        return [base + agent_document_name(a, self.prefix) for a in AGENT_ACTIONS]

    def operate_statements(self) -> list[dict[str, Any]]:
        """What the rollout engine does: find hosts, run these documents on the fleet, watch, record, flip."""
        env = self.env
        readable = list(self.document_arns)
        if isinstance(self.agent, hostside.DistributorPackage) and ":" not in self.agent.name:
            readable += [f"arn:{env.partition}:ssm:{env.region}:{env.account}:document/{self.agent.name}",
                         f"arn:{env.partition}:ssm:{env.region}::document/{self.agent.name}"]
        return [
            {"Effect": "Allow", "Action": "ssm:SendCommand", "Resource": self.document_arns},
            {"Sid": "SendCommandToFleet", "Effect": "Allow", "Action": "ssm:SendCommand",
             "Resource": f"arn:{env.partition}:ec2:{env.region}:{env.account}:instance/*",
             "Condition": {"StringEquals": {f"ssm:resourceTag/{FLEET_TAG_KEY}": self.fleet}}},
            {"Effect": "Allow", "Action": ["ssm:DescribeDocument", "ssm:GetDocument", "ssm:ListDocumentVersions"],
             "Resource": readable},
            {"Effect": "Allow", "Action": ["ec2:DescribeInstances", "ssm:ListCommands", "ssm:ListCommandInvocations",
                                           "ssm:GetCommandInvocation", "ssm:DescribeInstanceInformation",
                                           "ssm:CancelCommand", "cloudwatch:GetMetricData", "cloudwatch:ListMetrics",
                                           "cloudwatch:DescribeAlarms"], "Resource": "*"},
            {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                                           "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:Scan",
                                           "dynamodb:ConditionCheckItem"], "Resource": [self.table.arn]},
            {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
             "Resource": self.table_key.arn},
            *self.kill_switch.read_statements(),
            *self.kill_switch.flip_statements(),
        ]

    def host_statements(self) -> list[dict[str, Any]]:
        """What each host's instance role needs: read the kill switch and publish heartbeats."""
        return [*self.kill_switch.read_statements(),
                {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
                 "Condition": {"StringEquals": {"cloudwatch:namespace": HEARTBEAT_NAMESPACE}}}]

    def grant_operate(self, role_name: str) -> aws.IamRolePolicy:
        """Attach :meth:`operate_statements` to the role ``role_name`` (an inline policy)."""
        return self._grant("Operate", role_name, self.operate_statements())

    def grant_host(self, role_name: str) -> aws.IamRolePolicy:
        """Attach :meth:`host_statements` to the hosts' instance role ``role_name`` (an inline policy)."""
        return self._grant("Host", role_name, self.host_statements())

    def _grant(self, kind: str, role_name: str, statements: list[dict[str, Any]]) -> aws.IamRolePolicy:
        self._grants[kind] = self._grants.get(kind, 0) + 1
        return aws.IamRolePolicy(self, f"{kind}Policy{self._grants[kind]}", role=role_name,
                                 name=f"telemetry-shunt-{kind.lower()}", policy=policy_json(statements))
