"""What the rollout engine needs in the account: SSM documents, a state table, per-AZ heartbeat alarms, a role.

- One SSM Command document per agent action (``install``, ``upgrade``, ``rollback``, ``stop``, ``start``),
  named by :func:`telemetry_shunt.core.contract.agent_document_name`, rendered by ``core/hostside``. The
  install-type documents take the target ``version``, install the agent (an SSM Distributor package, or a
  versioned S3 artifact verified against its SHA-256) and install/refresh the kill-switch watcher and the
  heartbeat publisher on the host.
- A DynamoDB table for rollout state and locks (pay per request, point-in-time recovery, TTL, encrypted).
- One heartbeat alarm per AZ; missing data is breaching, because a dead agent sends nothing.
- An operator role for the rollout engine, assumable by a principal you choose.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aws_cdk import Annotations, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_ssm as ssm
from constructs import Construct, IConstruct

from telemetry_shunt.constructs._nag import acknowledge
from telemetry_shunt.constructs.kill_switch import KillSwitch
from telemetry_shunt.core import agent_config as agent_config_module
from telemetry_shunt.core import hostside, validation
from telemetry_shunt.core.agent_files import AgentConfigFile, AgentDataPath
from telemetry_shunt.core.contract import (
    AGENT_ACTIONS,
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
    agent_package_name,
    heartbeat_alarm_name,
)
from telemetry_shunt.core.gateway_ref import GatewayRef
from telemetry_shunt.core.host_budgets import AgentBudgets
from telemetry_shunt.errors import ValidationError

_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,39}\Z", re.ASCII)
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}\Z", re.ASCII)
_DEFAULT_RPM_INSTALL = 'rpm -U --oldpackage --replacepkgs "$ARTIFACT"'


class AgentSource:
    """What the SSM documents install; build one with the static methods."""

    def __init__(self, package: hostside.AgentPackage, *, bucket: s3.IBucket | None = None) -> None:
        self.package = package
        self.bucket = bucket

    @property
    def service(self) -> str:
        """The agent's systemd unit, which the kill-switch watcher starts and stops."""
        return self.package.service

    @staticmethod
    def distributor(*, service: str, package_name: str | None = None) -> AgentSource:
        """An SSM Distributor package. Default: the project's own package, ``TelemetryShunt-Agent-Package``."""
        return AgentSource(hostside.DistributorPackage(name=package_name or agent_package_name(), service=service))

    @staticmethod
    def cloudwatch_agent() -> AgentSource:
        """The Amazon CloudWatch agent from AWS's Distributor package ``AmazonCloudWatchAgent``."""
        return AgentSource.distributor(package_name="AmazonCloudWatchAgent", service="amazon-cloudwatch-agent")

    @staticmethod
    def adot_collector() -> AgentSource:
        """The AWS Distro for OpenTelemetry collector from AWS's Distributor package ``AWSDistroOTel-Collector``."""
        return AgentSource.distributor(package_name="AWSDistroOTel-Collector", service="aws-otel-collector")

    @staticmethod
    def s3_artifact(
        *,
        bucket: s3.IBucket,
        key_pattern: str,
        sha256_by_version: Mapping[str, str],
        service: str,
        install_command: str = _DEFAULT_RPM_INSTALL,
    ) -> AgentSource:
        """A versioned artifact in ``bucket`` at ``key_pattern`` (``agents/{version}/agent.rpm``).

        Every installable version needs its SHA-256 here; the documents refuse any other version and any
        download whose checksum differs. ``install_command`` runs with ``$ARTIFACT`` set to the verified
        file; the default installs an RPM and allows downgrades (rollbacks).
        """
        return AgentSource(
            hostside.S3Artifact(bucket_name=bucket.bucket_name, key_pattern=key_pattern,
                                sha256_by_version=sha256_by_version, service=service, install_command=install_command),
            bucket=bucket,
        )


def nag_resource(scope: IConstruct, value: str) -> str:
    """How cdk-nag spells a (possibly tokenized) ARN in an IAM5 finding: ``<Logical.Attr>``, ``<AWS::Region>``."""
    def render(v: Any) -> str:
        if isinstance(v, str):
            return v
        if isinstance(v, dict) and "Ref" in v:
            return f"<{v['Ref']}>"
        if isinstance(v, dict) and "Fn::GetAtt" in v:
            return f"<{v['Fn::GetAtt'][0]}.{v['Fn::GetAtt'][1]}>"
        if isinstance(v, dict) and "Fn::Join" in v:
            sep, parts = v["Fn::Join"]
            return sep.join(render(p) for p in parts)
        raise ValueError(f"cannot render {v!r} for a cdk-nag finding")
    return render(Stack.of(scope).resolve(value))


class AgentRolloutSupport(Construct):
    """SSM documents, rollout state table, per-AZ heartbeat alarms and operator role for agent rollouts.

    :param kill_switch: the kill switch the host watcher obeys; its AZs get heartbeat alarms.
    :param agent: what to install (:class:`AgentSource`).
    :param fleet: the ``telemetry-shunt:fleet`` tag value of the hosts the operator role may command, taken
        literally (``StringEquals``; no wildcards). Required: one fleet per operator role. Whoever may set
        that tag (``ec2:CreateTags``) decides which hosts are in the fleet: restrict it (docs/rollouts.md).
    :param operator_principal: who may assume the operator role. Default: this account's root, i.e. whoever
        this account's IAM policies allow to ``sts:AssumeRole`` it.
    :param prefix: prefix of document and alarm names (contract). Default ``TelemetryShunt``.
    :param table_name: state table name. Default ``telemetry-shunt-rollouts`` (contract).
    :param boot_cache_max_age: at boot with AppConfig unreachable, hosts may use a last-known-good decision up
        to this old. Default 0: fail closed, the agent stays stopped until the flag is read.
    :param heartbeat_missing_minutes: minutes without any heartbeat from an AZ before its alarm fires. Default 3.
    :param gateway: the gateway the agents push to (the concentrator's :class:`GatewayRef`). The documents
        install the host's signing forwarder for it (loopback HTTP in, SigV4 with an unsigned payload out), and
        with the ADOT collector its configuration, whose exporters go through the forwarder (``core/agent_config``). Default:
        none; the agent keeps its own configuration (ADOT's default sends nothing to the gateway: a warning).
    :param budgets: CPU, memory, disk I/O, niceness and Lattice bandwidth the agent may use on each host, and
        ADOT's queue sizes (:class:`AgentBudgets`); applied to whatever agent. Default ``AgentBudgets()``.
    :param agent_config: your agent's own configuration file (:class:`AgentConfigFile`), validated on each
        host before it replaces the running one. Default: none (ADOT with ``gateway``: the rendered one). With
        ``gateway`` too, the hosts also get the signing forwarder, to which your agent POSTs plain HTTP.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        kill_switch: KillSwitch,
        agent: AgentSource,
        fleet: str,
        operator_principal: iam.IPrincipal | None = None,
        prefix: str = DEFAULT_RESOURCE_PREFIX,
        table_name: str = DEFAULT_STATE_TABLE_NAME,
        boot_cache_max_age: Duration | None = None,  # None: Duration.seconds(0) (no jsii call at import)
        heartbeat_missing_minutes: int = 3,
        gateway: GatewayRef | None = None,
        budgets: AgentBudgets | None = None,
        agent_config: AgentConfigFile | None = None,
    ) -> None:
        super().__init__(scope, id)
        boot_cache_max_age = Duration.seconds(0) if boot_cache_max_age is None else boot_cache_max_age
        if not _PREFIX.match(prefix):
            raise ValidationError(f"prefix must be 1-40 letters, digits, '-' or '_', starting with a letter, got {prefix!r}")
        validation.fleet_name(fleet)
        if not Token.is_unresolved(table_name) and not _TABLE_NAME.match(table_name):
            raise ValidationError(f"table name must be 3-255 of letters, digits, '_', '-', '.', got {table_name!r}")
        if not isinstance(heartbeat_missing_minutes, int) or not 1 <= heartbeat_missing_minutes <= 60:
            raise ValidationError(f"heartbeat_missing_minutes must be 1-60, got {heartbeat_missing_minutes!r}")
        self.kill_switch = kill_switch
        self.agent = agent
        self.fleet = fleet
        self.prefix = prefix
        self.budgets = budgets or AgentBudgets()
        self.data_path = self._data_path(agent, gateway, agent_config)
        self.host_config = hostside.HostConfig(
            agent_service=agent.service,
            poll_seconds=int(kill_switch.poll_interval.to_seconds()),
            boot_cache_max_age_seconds=int(boot_cache_max_age.to_seconds()),
        )

        self.documents: dict[str, ssm.CfnDocument] = {}
        for action in AGENT_ACTIONS:
            content = hostside.agent_document(action, agent=agent.package, config=self.host_config,
                                              data_path=self.data_path)
            self.documents[action] = ssm.CfnDocument(
                self, f"{action.capitalize()}Document",
                name=agent_document_name(action, prefix), document_type="Command", document_format="JSON",
                content=content, target_type="/AWS::EC2::Instance",
                # A named document cannot be replaced in place; content changes become a new default version.
                update_method="NewVersion",
            )

        self.table = dynamodb.Table(
            self, "StateTable",
            table_name=table_name,
            partition_key=dynamodb.Attribute(name=STATE_TABLE_PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=STATE_TABLE_SORT_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            time_to_live_attribute=STATE_TABLE_TTL_ATTRIBUTE,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=kms.Key(self, "StateTableKey", enable_key_rotation=True, removal_policy=RemovalPolicy.RETAIN,
                                   description="telemetry-shunt: encrypts the agent rollout state table"),
            removal_policy=RemovalPolicy.RETAIN,
        )

        self.heartbeat_alarms: dict[str, cloudwatch.Alarm] = {}
        for az in kill_switch.availability_zones:
            self.heartbeat_alarms[az] = self.metric_heartbeats(az).create_alarm(
                self, f"Heartbeat-{az}",
                alarm_name=heartbeat_alarm_name(az, prefix),
                alarm_description=(f"No agent heartbeat from {az} for {heartbeat_missing_minutes} min: agents there "
                                   "are down, killed by the kill switch, or not reporting. Missing data is breaching."),
                threshold=1,
                comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                evaluation_periods=heartbeat_missing_minutes,
                datapoints_to_alarm=heartbeat_missing_minutes,
                treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
            )

        self.operator_role = iam.Role(
            self, "OperatorRole",
            assumed_by=operator_principal or iam.AccountRootPrincipal(),
            description="telemetry-shunt rollout engine: SSM documents on the fleet, alarms, state table, kill switch",
            max_session_duration=Duration.hours(1),
        )
        self.grant_operate(self.operator_role)

    def _data_path(self, agent: AgentSource, gateway: GatewayRef | None,
                   agent_config: AgentConfigFile | None) -> AgentDataPath:
        # Lattice is regional: hosts sign for their own Region when the gateway's is a deploy-time token.
        region = None if gateway is None or gateway.region else Stack.of(self).region
        if agent_config is not None:
            # With a gateway, the signing forwarder comes too: the custom agent POSTs plain HTTP to it on loopback.
            return AgentDataPath.for_file(agent_service=agent.service, file=agent_config, budgets=self.budgets,
                                          gateway=gateway, region=region)
        is_adot = agent.service == agent_config_module.ADOT_SERVICE
        if gateway is not None:
            if not is_adot:
                raise ValidationError(f"the documents configure only the ADOT collector for a gateway; agent "
                                      f"{agent.service!r} needs agent_config=AgentConfigFile(...) with its own config")
            return AgentDataPath.adot(gateway, self.budgets, region=region)
        if is_adot:
            Annotations.of(self).add_warning_v2(
                "telemetry-shunt:adot-without-gateway",
                "ADOT collector without gateway=: the documents leave its default configuration, which sends "
                "nothing to the telemetry gateway; pass the concentrator's GatewayRef")
        return AgentDataPath.budgets_only(agent_service=agent.service, budgets=self.budgets)

    # --- metrics ---------------------------------------------------------------------------------------

    def metric_heartbeats(self, az: str) -> cloudwatch.Metric:
        """Heartbeats per minute from ``az`` (one per live agent host)."""
        return cloudwatch.Metric(
            namespace=HEARTBEAT_NAMESPACE, metric_name=HEARTBEAT_METRIC,
            dimensions_map={HEARTBEAT_AZ_DIMENSION: az}, statistic="SampleCount",
            period=Duration.seconds(HEARTBEAT_PERIOD_SECONDS),
        )

    # --- grants ----------------------------------------------------------------------------------------

    @property
    def document_arns(self) -> list[str]:
        stack = Stack.of(self)
        return [stack.format_arn(service="ssm", resource="document", resource_name=agent_document_name(a, self.prefix))
                for a in AGENT_ACTIONS]

    def grant_operate(self, grantee: iam.IGrantable) -> iam.Grant:
        """What the rollout engine does: find hosts, run these documents on the fleet, watch, record, flip."""
        stack = Stack.of(self)
        instances = stack.format_arn(service="ec2", resource="instance", resource_name="*")
        grant = iam.Grant.add_to_principal(
            grantee=grantee, actions=["ssm:SendCommand"], resource_arns=self.document_arns,
        )
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
            sid="SendCommandToFleet",
            actions=["ssm:SendCommand"], resources=[instances],
            conditions={"StringEquals": {f"ssm:resourceTag/{FLEET_TAG_KEY}": self.fleet}},
        ))
        readable_documents = list(self.document_arns)
        package = self.agent.package
        if isinstance(package, hostside.DistributorPackage) and ":" not in package.name:
            # The engine checks that a target version exists (DescribeDocument with VersionName). The
            # package is either this account's or published by AWS (no account in its ARN).
            readable_documents += [
                stack.format_arn(service="ssm", resource="document", resource_name=package.name),
                stack.format_arn(service="ssm", resource="document", resource_name=package.name, account=""),
            ]
        iam.Grant.add_to_principal(
            # GetDocument: for S3-artifact agents the engine reads the upgrade document's allowed versions.
            grantee=grantee, actions=["ssm:DescribeDocument", "ssm:GetDocument", "ssm:ListDocumentVersions"],
            resource_arns=readable_documents,
        )
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["ec2:DescribeInstances", "ssm:ListCommands", "ssm:ListCommandInvocations",
                     "ssm:GetCommandInvocation", "ssm:DescribeInstanceInformation", "ssm:CancelCommand",
                     "cloudwatch:GetMetricData", "cloudwatch:ListMetrics", "cloudwatch:DescribeAlarms"],
            resource_arns=["*"],
        )
        self.table.grant(grantee, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                         "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:ConditionCheckItem")
        # The table's customer-managed key: what DynamoDB needs on the caller's behalf to read and write items.
        self.table.encryption_key.grant(grantee, "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey")
        self.kill_switch.grant_read(grantee)
        self.kill_switch.grant_flip(grantee)
        self._acknowledge_wildcards(grantee, [
            ("Resource::*", "EC2 DescribeInstances, SSM ListCommands/ListCommandInvocations/GetCommandInvocation/"
             "DescribeInstanceInformation/CancelCommand, CloudWatch GetMetricData/ListMetrics and AppConfig ListApplications/"
             "ListDeploymentStrategies support no resource-level permissions; CancelCommand only stops commands "
             "already sent (SendCommand is scoped). DescribeAlarms is read-only and covers the engine's extra "
             "alarms, whose names only the operator knows."),
            (f"Resource::{nag_resource(self, instances)}",
             f"SendCommand reaches only instances tagged {FLEET_TAG_KEY}={self.fleet} (ssm:resourceTag condition), "
             "and only with this construct's documents."),
            (f"Resource::{nag_resource(self, self.kill_switch._arn('application', self.kill_switch.application_id + '/*'))}",
             "Limited to the kill switch's own AppConfig application: its environment, profile, hosted versions "
             "and deployments, whose ids and version numbers are created at run time."),
        ])
        return grant

    def grant_host(self, grantee: iam.IGrantable) -> iam.Grant:
        """What each host's instance role needs: read the kill switch, publish heartbeats, fetch the artifact."""
        grant = self.kill_switch.grant_read(grantee)
        iam.Grant.add_to_principal(
            grantee=grantee, actions=["cloudwatch:PutMetricData"], resource_arns=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": HEARTBEAT_NAMESPACE}},
        )
        reasons = [("Resource::*", f"PutMetricData supports no resource-level permissions; the cloudwatch:namespace "
                                   f"condition limits it to {HEARTBEAT_NAMESPACE}.")]
        package = self.agent.package
        if isinstance(package, hostside.S3Artifact) and self.agent.bucket is not None:
            key = package.key_pattern.replace("{version}", "*")
            self.agent.bucket.grant_read(grantee, key)
            reasons.append((f"Resource::{nag_resource(self, self.agent.bucket.arn_for_objects(key))}",
                            "Hosts read only the agent artifact keys; the version part of the key varies."))
            reasons.append(("Action::s3:GetBucket*", "grant_read's bucket-level reads, on the artifact bucket only."))
            reasons.append(("Action::s3:GetObject*", "grant_read's object reads, on the artifact keys only."))
            reasons.append(("Action::s3:List*", "grant_read's listing, on the artifact bucket only."))
        self._acknowledge_wildcards(grantee, reasons)
        return grant

    @staticmethod
    def _acknowledge_wildcards(grantee: iam.IGrantable, findings: list[tuple[str, str]]) -> None:
        # The statements land in the principal's default policy (a role, user or group of this app, or an
        # imported role's attached policy); principals outside the app carry their own acknowledgements.
        principal = grantee.grant_principal
        node = getattr(principal, "node", None)
        if node is None:
            return
        for policy in node.children:
            if isinstance(policy, iam.Policy):
                for applies_to, reason in findings:
                    acknowledge(policy, f"AwsSolutions-IAM5[{applies_to}]", reason)
