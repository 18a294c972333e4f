"""The telemetry service network: AWS_IAM auth, a coarse network policy, access logs, RAM sharing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from aws_cdk import Arn, ArnFormat, Aws, Duration, Fn, RemovalPolicy, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_ram as ram
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_vpclattice as lattice
from constructs import Construct

from telemetry_shunt.constructs._nag import acknowledge
from telemetry_shunt.core.policy import WORST_CASE_PARTITION, check_policy_size, service_network_auth_policy
from telemetry_shunt.core.routes import Pusher, validate_pushers
from telemetry_shunt.core.validation import lattice_name, share_principal
from telemetry_shunt.errors import ValidationError


class ITelemetryServiceNetwork(Protocol):
    """What attachments and gateways need from a service network, local or imported."""

    @property
    def service_network_arn(self) -> str: ...

    @property
    def service_network_id(self) -> str: ...


class _ImportedServiceNetwork(Construct):
    """A service network defined elsewhere (typically shared with this account through RAM)."""

    def __init__(self, scope: Construct, id: str, *, arn: str) -> None:
        super().__init__(scope, id)
        if not Token.is_unresolved(arn):
            parts = Arn.split(arn, ArnFormat.SLASH_RESOURCE_NAME)
            name = parts.resource_name or ""
            if parts.service != "vpc-lattice" or parts.resource != "servicenetwork" or not name.startswith("sn-"):
                raise ValidationError(
                    f"service network ARN {arn!r} must look like "
                    "'arn:aws:vpc-lattice:us-east-1:111111111111:servicenetwork/sn-0123456789abcdef0'"
                )
        self._arn = arn

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
        pushers: Sequence[Pusher],
        name: str = "telemetry",
        share_with: Sequence[str] = (),
        allow_external_principals: bool = False,
        access_log_bucket: s3.IBucket | None = None,
        log_retention: Duration = Duration.days(365),
    ) -> None:
        super().__init__(scope, id)
        # Grant S3 server-access-log delivery with a bucket policy, not the legacy LogDeliveryWrite ACL.
        self.node.set_context("@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy", True)
        self.pushers = validate_pushers(pushers)
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

    @staticmethod
    def from_service_network_arn(scope: Construct, id: str, arn: str) -> ITelemetryServiceNetwork:
        """A service network created in another stack or account (e.g. shared with you through RAM)."""
        return _ImportedServiceNetwork(scope, id, arn=arn)

    def _log_bucket(self, retention: Duration) -> s3.Bucket:
        server_logs = s3.Bucket(
            self, "ServerAccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=retention)],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(server_logs, "AwsSolutions-S1",
                    "This bucket receives the access-log bucket's server access logs; logging it too would loop.")
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
