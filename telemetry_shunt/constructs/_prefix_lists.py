"""The VPC Lattice managed prefix lists (IPv4 and IPv6) of the stack's Region.

Lattice reaches targets from, and serves clients at, addresses in these prefix lists
(``com.amazonaws.<region>.vpc-lattice`` and ``com.amazonaws.<region>.ipv6.vpc-lattice``); security
groups must reference them rather than hard-code 169.254.171.0/24. Their ids differ per Region and
partition, so every stack, environment-agnostic or with an explicit account and Region, resolves them the
same way: at deploy time, with one ``DescribeManagedPrefixLists`` call per list (a read-only custom
resource, shared by everything in the stack). There is no synth-time lookup: a lookup that cannot run
(no credentials, a CI synth) would leave CDK's dummy ``pl-xxxxxxxx`` in the security groups, and nothing
would say so until the deployment failed or, worse, the group admitted the wrong list.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from aws_cdk import Aws, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import custom_resources as cr
from constructs import Construct

from telemetry_shunt.constructs._nag import acknowledge, skip_checkov

_ID = "LatticePrefixLists"
_ATTRIBUTE = "_telemetry_shunt_lattice_prefix_lists"
# AwsCustomResource's singleton provider function id (aws-cdk-lib custom-resources).
_PROVIDER_ID = "AWS679f53fac002430cb0da5b7982bd2287"


# CDK's AwsCustomResource provider function exposes none of these settings; each reason says why none matters.
_PROVIDER_CHECKOV_SKIPS = {
    "CKV_AWS_116": "Invoked synchronously by CloudFormation during deployments only; a failed call fails the "
                   "deployment and is retried by redeploying, so there is no async event for a DLQ to keep.",
    "CKV_AWS_115": "Runs once per deployment; reserving concurrency would take capacity from the account's "
                   "pool (new accounts have 10) for a function that is idle between deployments.",
    "CKV_AWS_117": "Calls only the public EC2 API (DescribeManagedPrefixLists) and touches no VPC resource; inside "
                   "a VPC it would need a NAT gateway or an EC2 interface endpoint just to make that call.",
}


@dataclass(frozen=True)
class LatticePrefixLists:
    ipv4: str
    ipv6: str

    def peers(self) -> list[ec2.IPeer]:
        return list(self._peers)

    @functools.cached_property
    def _peers(self) -> tuple[ec2.IPeer, ...]:
        # Peers are immutable values: made once per stack, shared by every security group rule.
        return (ec2.Peer.prefix_list(self.ipv4), ec2.Peer.prefix_list(self.ipv6))


def prefix_list_names(region: str) -> tuple[str, str]:
    return (f"com.amazonaws.{region}.vpc-lattice", f"com.amazonaws.{region}.ipv6.vpc-lattice")


def lattice_prefix_lists(scope: Construct) -> LatticePrefixLists:
    """The Lattice prefix list ids for ``scope``'s stack (one lookup per stack, however many callers)."""
    stack = scope if isinstance(scope, Stack) else Stack.of(scope)
    # Remembered on the stack's Python object too: each tree lookup is a jsii round-trip.
    cached = stack.__dict__.get(_ATTRIBUTE) or stack.node.try_find_child(_ID)
    if cached is None:
        cached = _PrefixListLookup(stack, _ID)
    stack.__dict__[_ATTRIBUTE] = cached
    return cached.prefix_lists  # type: ignore[attr-defined]


class _PrefixListLookup(Construct):
    def __init__(self, scope: Stack, id: str) -> None:
        super().__init__(scope, id)
        ids = []
        lookups = []
        for label, name in zip(("IPv4", "IPv6"), prefix_list_names(Aws.REGION), strict=True):
            call = cr.AwsSdkCall(
                service="EC2",
                action="describeManagedPrefixLists",
                parameters={"Filters": [{"Name": "prefix-list-name", "Values": [name]}]},
                physical_resource_id=cr.PhysicalResourceId.of(f"lattice-prefix-list-{label.lower()}"),
                output_paths=["PrefixLists.0.PrefixListId"],
            )
            lookup = cr.AwsCustomResource(
                self,
                label,
                on_create=call,
                on_update=call,
                install_latest_aws_sdk=False,
                policy=cr.AwsCustomResourcePolicy.from_sdk_calls(resources=cr.AwsCustomResourcePolicy.ANY_RESOURCE),
            )
            lookups.append(lookup)
            ids.append(lookup.get_response_field("PrefixLists.0.PrefixListId"))
        self.prefix_lists = LatticePrefixLists(ipv4=ids[0], ipv6=ids[1])
        self._acknowledge_provider(scope, lookups)

    @staticmethod
    def _acknowledge_provider(stack: Stack, lookups: list[cr.AwsCustomResource]) -> None:
        for lookup in lookups:
            policy = lookup.node.find_child("CustomResourcePolicy")
            acknowledge(
                policy,
                "AwsSolutions-IAM5[Resource::*]",
                "ec2:DescribeManagedPrefixLists supports no resource-level permissions; the call is read-only.",
            )
        # The shared provider Lambda (one per stack) carries a DependsOn on its role that its GetAtt
        # already implies; cfn-lint warns W3005 about the redundancy, which is CDK's and harmless.
        # Found by its id, not by walking the stack's children (each child read is a jsii round-trip).
        provider = stack.node.try_find_child(_PROVIDER_ID)
        if provider is None:
            raise AssertionError(f"AwsCustomResource's provider {_PROVIDER_ID} is not in {stack.node.path}: "
                                 "aws-cdk-lib renamed it; update _PROVIDER_ID")
        acknowledge(
            provider,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            "The AwsCustomResource provider only writes its own logs; this managed policy grants just that.",
        )
        fn = provider.node.find_child("Resource")
        fn.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})
        for check, reason in _PROVIDER_CHECKOV_SKIPS.items():
            skip_checkov(fn, check, reason)
