"""One customer-managed KMS key per stack for its CloudWatch Logs log groups.

Every construct that creates a log group encrypts it with :func:`log_group_key`, so a stack holds one key
whatever it contains. The key policy lets CloudWatch Logs of the stack's own Region use the key only for
log groups of the stack's own account and Region (the ``kms:EncryptionContext:aws:logs:arn`` condition
that the CloudWatch Logs user guide, "Encrypt log data in CloudWatch Logs using AWS KMS", prescribes);
the account keeps administering it through IAM (CDK's default key policy).
"""

from __future__ import annotations

from aws_cdk import Aws, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

_ID = "LogGroupKey"
_ATTRIBUTE = "_telemetry_shunt_log_group_key"


def log_group_key(scope: Construct) -> kms.IKey:
    """The stack's log-group key, created on first use (rotation on, retained with the logs it encrypts)."""
    stack = scope if isinstance(scope, Stack) else Stack.of(scope)
    # Remembered on the stack's Python object too: every log group asks, and each tree lookup is a jsii round-trip.
    found = stack.__dict__.get(_ATTRIBUTE) or stack.node.try_find_child(_ID)
    if found is not None:
        stack.__dict__[_ATTRIBUTE] = found
        return found  # type: ignore[return-value]
    key = kms.Key(
        stack, _ID,
        description="telemetry-shunt: encrypts this stack's CloudWatch Logs log groups",
        enable_key_rotation=True,
        removal_policy=RemovalPolicy.RETAIN,
    )
    stack.__dict__[_ATTRIBUTE] = key
    key.add_to_resource_policy(iam.PolicyStatement(
        sid="AllowCloudWatchLogsForThisAccountsLogGroups",
        principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
        actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
        resources=["*"],
        conditions={"ArnLike": {
            "kms:EncryptionContext:aws:logs:arn": f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*",
        }},
    ))
    return key
