"""The dedicated concentrator VPC: where telemetry lands, is buffered, and (only from here) leaves."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Annotations, RemovalPolicy, Stack, Token
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from telemetry_shunt.core.validation import availability_zones as check_azs
from telemetry_shunt.core.validation import cidr as check_cidr
from telemetry_shunt.core.validation import disjoint_cidrs
from telemetry_shunt.errors import ValidationError

DEFAULT_CIDR = "10.200.0.0/16"


class ConcentratorVpc(Construct):
    """A VPC for the telemetry concentrator, isolated by default.

    - ``az_count`` zones (default 2, at least 2) with private subnets for the buffer fleet.
    - No internet gateway and no NAT unless ``vendor_egress=True``; then one NAT gateway per zone, so a
      zone's loss does not cut the others' egress, and public subnets only for the NAT gateways.
    - VPC flow logs (all traffic) to a CloudWatch log group kept ``flow_log_retention``.
    - Pass ``vpc`` to use an existing VPC instead (nothing is created; flow logs are then yours).

    ``app_vpc_cidrs`` are the application VPCs' ranges, checked not to overlap this VPC's so that flow
    logs and access logs name sources unambiguously.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cidr: str = DEFAULT_CIDR,
        az_count: int = 2,
        availability_zones: Sequence[str] | None = None,
        vendor_egress: bool = False,
        app_vpc_cidrs: Sequence[str] = (),
        flow_log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        vpc: ec2.IVpc | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.vendor_egress = vendor_egress
        if vpc is not None:
            self.vpc = vpc
            azs = vpc.availability_zones
            if not any(Token.is_unresolved(a) for a in azs) and len(azs) < 2:
                check_azs(azs)
            Annotations.of(self).add_info(
                "The concentrator uses an existing VPC: make sure it has flow logs and no route from app VPCs."
            )
            return
        if availability_zones is not None:
            azs = check_azs(availability_zones)
            az_count = len(azs)
        elif az_count < 2:
            raise ValidationError(
                f"az_count={az_count}: the concentrator needs at least 2 Availability Zones so that losing one "
                "zone does not lose the telemetry path"
            )
        elif az_count > 2 and Token.is_unresolved(Stack.of(self).region):
            raise ValidationError(
                f"az_count={az_count}, but an environment-agnostic stack sees only 2 Availability Zones: "
                "pass availability_zones=[...] or give the stack an env with account and region"
            )
        check_cidr(cidr, what="concentrator VPC CIDR")
        disjoint_cidrs([("concentrator VPC CIDR", cidr)] + [(f"app VPC CIDR #{i + 1}", c) for i, c in enumerate(app_vpc_cidrs)])

        subnets = [ec2.SubnetConfiguration(
            name="Collectors",
            subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS if vendor_egress else ec2.SubnetType.PRIVATE_ISOLATED,
            cidr_mask=20,
        )]
        if vendor_egress:
            subnets.insert(0, ec2.SubnetConfiguration(name="Egress", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=26))
        self.flow_log_group = logs.LogGroup(
            self, "FlowLogs", retention=flow_log_retention, removal_policy=RemovalPolicy.RETAIN
        )
        vpc_kwargs = {"availability_zones": list(availability_zones)} if availability_zones else {"max_azs": az_count}
        self.vpc = ec2.Vpc(
            self,
            "Resource",
            ip_addresses=ec2.IpAddresses.cidr(cidr),
            subnet_configuration=subnets,
            nat_gateways=az_count if vendor_egress else 0,
            # Restricting the default group costs a Lambda custom resource; nothing here uses that group,
            # and its default rules admit only its own (non-existent) members.
            restrict_default_security_group=False,
            flow_logs={
                "All": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group),
                    traffic_type=ec2.FlowLogTrafficType.ALL,
                )
            },
            **vpc_kwargs,
        )

    @property
    def collector_subnets(self) -> ec2.SubnetSelection:
        """Where the buffer fleet runs: the private subnets, one per zone."""
        subnet_type = ec2.SubnetType.PRIVATE_WITH_EGRESS if self.vendor_egress else ec2.SubnetType.PRIVATE_ISOLATED
        return ec2.SubnetSelection(subnet_type=subnet_type)
