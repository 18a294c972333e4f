"""The VPC Lattice managed prefix lists (IPv4 and IPv6) of the stack's Region.

Lattice reaches targets from, and serves clients at, addresses in these prefix lists
(``com.amazonaws.<region>.vpc-lattice`` and ``com.amazonaws.<region>.ipv6.vpc-lattice``); security
groups must reference them rather than hard-code 169.254.171.0/24. Their ids differ per Region and
account partition, so:

- a stack with a concrete Region and account looks them up at synth time (``cdk.context.json``);
- an environment-agnostic stack resolves them at deploy time with one ``DescribeManagedPrefixLists``
  call per list (a read-only custom resource, shared by everything in the stack).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, Stack, Token
from aws_cdk import aws_ec2 as ec2
from aws_cdk import custom_resources as cr
from constructs import Construct

from telemetry_shunt.constructs._nag import acknowledge

_ID = "LatticePrefixLists"
# AwsCustomResource's singleton provider function id (aws-cdk-lib custom-resources).
_PROVIDER_ID = "AWS679f53fac002430cb0da5b7982bd2287"


@dataclass(frozen=True)
class LatticePrefixLists:
    ipv4: str
    ipv6: str

    def peers(self) -> list[ec2.IPeer]:
        return [ec2.Peer.prefix_list(self.ipv4), ec2.Peer.prefix_list(self.ipv6)]


def prefix_list_names(region: str) -> tuple[str, str]:
    return (f"com.amazonaws.{region}.vpc-lattice", f"com.amazonaws.{region}.ipv6.vpc-lattice")


def lattice_prefix_lists(scope: Construct) -> LatticePrefixLists:
    """The Lattice prefix list ids for ``scope``'s stack (one lookup per stack, however many callers)."""
    stack = Stack.of(scope)
    cached = stack.node.try_find_child(_ID)
    if cached is not None:
        return cached.prefix_lists  # type: ignore[attr-defined]
    holder = _PrefixListLookup(stack, _ID)
    return holder.prefix_lists


class _PrefixListLookup(Construct):
    def __init__(self, scope: Stack, id: str) -> None:
        super().__init__(scope, id)
        if not Token.is_unresolved(scope.region) and not Token.is_unresolved(scope.account):
            ids = [
                ec2.PrefixList.from_lookup(self, f"Lookup{i}", prefix_list_name=name).prefix_list_id
                for i, name in enumerate(prefix_list_names(scope.region))
            ]
            self.prefix_lists = LatticePrefixLists(ipv4=ids[0], ipv6=ids[1])
            return
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
        for child in stack.node.children:
            if child.node.id.startswith(_PROVIDER_ID):
                acknowledge(
                    child,
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
                    "The AwsCustomResource provider only writes its own logs; this managed policy grants just that.",
                )
                fn = child.node.find_child("Resource")
                fn.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})
