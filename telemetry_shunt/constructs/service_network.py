"""The telemetry service network: AWS_IAM auth, a coarse network policy, access logs, RAM sharing."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

from aws_cdk import ArnFormat, Aws, Duration, Fn, RemovalPolicy, Stack, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ram as ram
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_vpclattice as lattice
from constructs import Construct

from telemetry_shunt.constructs._nag import acknowledge, skip_checkov
from telemetry_shunt.core.contract import DEFAULT_LOG_RETENTION_DAYS
from telemetry_shunt.core.policy import WORST_CASE_PARTITION, check_policy_size, service_network_auth_policy
from telemetry_shunt.core.routes import Pusher, validate_pushers
from telemetry_shunt.core.validation import lattice_name, share_principal
from telemetry_shunt.errors import ValidationError

#: Where access logs go: an S3 bucket or a CloudWatch Logs log group (VPC Lattice accepts both, and Firehose).
AccessLogDestination = s3.IBucket | logs.ILogGroup

_SERVICE_NETWORK_ARN = re.compile(
    r"arn:(aws|aws-cn|aws-us-gov):vpc-lattice:[a-z]{2}(?:-[a-z]+)+-\d:\d{12}:servicenetwork/sn-[0-9a-z]{17}", re.ASCII)
_SERVICE_NETWORK_EXAMPLE = "arn:aws:vpc-lattice:us-east-1:111111111111:servicenetwork/sn-0123456789abcdef0"


class ITelemetryServiceNetwork(Protocol):
    """What attachments and gateways need from a service network, local or imported."""

    @property
    def service_network_arn(self) -> str: ...

    @property
    def service_network_id(self) -> str: ...


def parse_pushers(pushers: Sequence[Pusher | str], *, what: str = "pushers") -> list[Pusher]:
    """``Pusher`` values or their configuration strings (role ARN, account id, ``o-...``), validated."""
    if isinstance(pushers, (str, bytes)) or not isinstance(pushers, Sequence):
        raise ValidationError(f"{what} must be a list of Pusher values or strings, got {pushers!r}")
    parsed = [Pusher.parse(p) if isinstance(p, str) else p for p in pushers]
    return validate_pushers(parsed)


def access_log_destination_arn(scope: Construct, destination: AccessLogDestination) -> str:
    """The ARN VPC Lattice wants for an access-log destination (a log group's ARN without the ``:*``)."""
    # jsii interfaces are not runtime-checkable protocols: tell the two apart by what they expose.
    if hasattr(destination, "bucket_arn") and hasattr(destination, "bucket_name"):
        return destination.bucket_arn
    if hasattr(destination, "log_group_name") and hasattr(destination, "log_group_arn"):
        arn = destination.log_group_arn
        if not Token.is_unresolved(arn):  # imported by ARN, possibly from another account: keep its account
            return arn[:-2] if arn.endswith(":*") else arn
        # Created here or imported by name: this stack's account and Region.
        return Stack.of(destination).format_arn(service="logs", resource="log-group",
                                                resource_name=destination.log_group_name,
                                                arn_format=ArnFormat.COLON_RESOURCE_NAME)
    raise ValidationError(
        f"access-log destination {destination!r} is neither an S3 bucket nor a CloudWatch Logs log group: "
        "pass s3.Bucket/Bucket.from_bucket_name(...) or logs.LogGroup/LogGroup.from_log_group_name(...)"
    )


def check_service_network_arn(arn: object) -> str:
    """A service network ARN (or a deploy-time token), with our own message for anything else."""
    if isinstance(arn, str) and Token.is_unresolved(arn):
        return arn
    if not isinstance(arn, str) or not _SERVICE_NETWORK_ARN.fullmatch(arn):
        hint = ""
        if isinstance(arn, str) and arn.startswith("sn-"):
            hint = " (that is a service network id; pass its full ARN, the concentrator stack's ServiceNetworkArn output)"
        raise ValidationError(f"service network ARN {arn!r} must look like {_SERVICE_NETWORK_EXAMPLE!r}{hint}")
    return arn


class _ImportedServiceNetwork(Construct):
    """A service network defined elsewhere (typically shared with this account through RAM)."""

    def __init__(self, scope: Construct, id: str, *, arn: str, pushers: Sequence[Pusher | str] | None = None,
                 access_logs: AccessLogDestination | None = None) -> None:
        super().__init__(scope, id)
        self._arn = check_service_network_arn(arn)
        #: The pushers its auth policy admits, when the importer says so (gateways then take them from here).
        self.pushers: list[Pusher] | None = None if pushers is None else parse_pushers(pushers)
        if access_logs is not None:
            access_log_destination_arn(self, access_logs)  # validates the kind now, not at synth
        #: Where gateways on this network send access logs (None: they must be given one or warn).
        self.access_log_destination: AccessLogDestination | None = access_logs

    @property
    def service_network_arn(self) -> str:
        return self._arn

    @property
    def service_network_id(self) -> str:
        return Fn.select(1, Fn.split("/", self._arn))


def _share_principal(value: str) -> str:
    """An account id, an OU ARN or an organization ARN: what RAM accepts as a share principal."""
    return share_principal(value)


class TelemetryServiceNetwork(Construct):
    """A VPC Lattice service network dedicated to telemetry.

    - ``AWS_IAM`` auth with a coarse network policy: only authenticated principals of the pushers'
      accounts and organizations may invoke anything in it (the gateway's own policy is the fine one).
    - Access logs to an encrypted S3 bucket that expires them after ``log_retention`` (or to
      ``access_log_bucket``).
    - Shared through AWS RAM with ``share_with`` (account ids, OU ARNs, organization ARNs) so app accounts
      can associate their VPCs. ``allow_external_principals`` must be True to share outside your organization.

    Import one created elsewhere with :meth:`from_service_network_arn`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        pushers: Sequence[Pusher | str],
        name: str = "telemetry",
        share_with: Sequence[str] = (),
        allow_external_principals: bool = False,
        access_log_bucket: s3.IBucket | None = None,
        log_retention: Duration | None = None,  # None: DEFAULT_LOG_RETENTION_DAYS (no jsii call at import)
    ) -> None:
        super().__init__(scope, id)
        log_retention = Duration.days(DEFAULT_LOG_RETENTION_DAYS) if log_retention is None else log_retention
        # Grant S3 server-access-log delivery with a bucket policy, not the legacy LogDeliveryWrite ACL.
        self.node.set_context("@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy", True)
        self.pushers = parse_pushers(pushers)
        lattice_name("service network", name)
        if not Token.is_unresolved(log_retention.to_days()) and log_retention.to_days() < 1:
            raise ValidationError(f"log_retention {log_retention.to_human_string()} must be at least 1 day")

        self.resource = lattice.CfnServiceNetwork(self, "Resource", name=name, auth_type="AWS_IAM")
        check_policy_size(service_network_auth_policy(pushers=self.pushers, partition=WORST_CASE_PARTITION),
                          what="service network")
        policy = service_network_auth_policy(pushers=self.pushers, partition=Aws.PARTITION)
        self.auth_policy = lattice.CfnAuthPolicy(
            self, "AuthPolicy", resource_identifier=self.resource.attr_arn, policy=policy
        )

        #: The bucket that receives the access-log bucket's S3 server access logs (None with access_log_bucket).
        self.server_access_log_bucket: s3.Bucket | None = None
        self.access_log_bucket = access_log_bucket or self._log_bucket(log_retention)
        self.access_logs = lattice.CfnAccessLogSubscription(
            self, "AccessLogs", resource_identifier=self.resource.attr_arn,
            destination_arn=self.access_log_bucket.bucket_arn,
        )

        self.share: ram.CfnResourceShare | None = None
        if share_with:
            principals = [_share_principal(p) for p in share_with]
            self.share = ram.CfnResourceShare(
                self, "Share",
                name=f"{Aws.STACK_NAME}-{name}",
                resource_arns=[self.resource.attr_arn],
                principals=principals,
                allow_external_principals=allow_external_principals,
            )

    @property
    def service_network_arn(self) -> str:
        return self.resource.attr_arn

    @property
    def service_network_id(self) -> str:
        return self.resource.attr_id

    @property
    def access_log_destination(self) -> AccessLogDestination:
        """Where this network's (and, by default, its gateways') access logs go."""
        return self.access_log_bucket

    @staticmethod
    def from_service_network_arn(
        scope: Construct,
        id: str,
        arn: str,
        *,
        pushers: Sequence[Pusher | str] | None = None,
        access_logs: AccessLogDestination | None = None,
    ) -> ITelemetryServiceNetwork:
        """A service network created in another stack or account (e.g. shared with you through RAM).

        ``arn`` is its full ARN (the concentrator stack's ``ServiceNetworkArn`` output), checked here.
        ``pushers``: the principals its auth policy admits; a gateway on it then takes them from here.
        ``access_logs``: an S3 bucket or log group for the access logs of gateways created on it.
        """
        return _ImportedServiceNetwork(scope, id, arn=arn, pushers=pushers, access_logs=access_logs)

    def _log_bucket(self, retention: Duration) -> s3.Bucket:
        server_logs = s3.Bucket(
            self, "ServerAccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            versioned=True,
            lifecycle_rules=[s3.LifecycleRule(expiration=retention, noncurrent_version_expiration=Duration.days(7))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(server_logs, "AwsSolutions-S1",
                    "This bucket receives the access-log bucket's server access logs; logging it too would loop.")
        skip_checkov(server_logs, "CKV_AWS_18",
                     "This bucket receives the other buckets' server access logs; logging it too would loop.")
        self.server_access_log_bucket = server_logs
        bucket = s3.Bucket(
            self, "AccessLogBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=server_logs,
            lifecycle_rules=[s3.LifecycleRule(expiration=retention, noncurrent_version_expiration=Duration.days(7))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        # VPC Lattice delivers access logs through CloudWatch vended-log delivery.
        delivery = iam.ServicePrincipal("delivery.logs.amazonaws.com")
        source = {"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
        bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="AWSLogDeliveryWrite", principals=[delivery], actions=["s3:PutObject"],
            resources=[bucket.arn_for_objects(f"AWSLogs/{Aws.ACCOUNT_ID}/*")],
            conditions={**source, "ArnLike": {"aws:SourceArn": f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:*"}},
        ))
        bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="AWSLogDeliveryAclCheck", principals=[delivery], actions=["s3:GetBucketAcl"],
            resources=[bucket.bucket_arn], conditions=source,
        ))
        return bucket
