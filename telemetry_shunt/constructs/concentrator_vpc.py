"""The dedicated concentrator VPC: where telemetry lands, is buffered, and (only from here) leaves."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Annotations, RemovalPolicy, Stack, Token
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from telemetry_shunt.constructs._logs import log_group_key
from telemetry_shunt.core.contract import DEFAULT_CONCENTRATOR_CIDR
from telemetry_shunt.core.validation import availability_zones as check_azs
from telemetry_shunt.core.validation import cidr as check_cidr
from telemetry_shunt.core.validation import disjoint_cidrs
from telemetry_shunt.errors import ValidationError


def collector_subnets_of(vpc: ec2.IVpc, selection: ec2.SubnetSelection | None = None) -> ec2.SubnetSelection:
    """THE rule for where collectors run in ``vpc`` (``ConcentratorVpc`` and ``BufferFleet`` both use it).

    ``selection`` when given (checked to select something); otherwise the VPC's private subnets with egress
    when it has any (vendor sinks and image pulls work), else its isolated subnets (the fleet then warns
    ``fleet-no-egress``: only S3 and AWS APIs through endpoints are reachable). Public subnets never: a
    VPC with no private subnet is refused with what to add. Every answer must span at least 2 AZs.
    """
    if selection is None:
        if vpc.private_subnets:
            selection = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        elif vpc.isolated_subnets:
            selection = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        else:
            raise ValidationError(
                f"VPC {vpc.node.path} has no private subnets (with egress or isolated) for the collectors: add a "
                "private subnet group in at least 2 Availability Zones (public subnets are never used), or pass "
                "the subnets to use (collector_subnets= / vpc_subnets=)"
            )
    select_collector_subnets(vpc, selection)
    return selection


def select_collector_subnets(vpc: ec2.IVpc, selection: ec2.SubnetSelection) -> ec2.SelectedSubnets:
    """``vpc.select_subnets(selection)`` with our own error (never CDK's raw one) and the 2-AZ minimum."""
    try:
        selected = vpc.select_subnets(**{k: v for k, v in {
            "subnet_type": selection.subnet_type, "subnets": selection.subnets,
            "subnet_group_name": selection.subnet_group_name, "availability_zones": selection.availability_zones,
            "one_per_az": selection.one_per_az, "subnet_filters": selection.subnet_filters,
        }.items() if v is not None})
    except RuntimeError:
        have = (f"{len(vpc.private_subnets)} private-with-egress, {len(vpc.isolated_subnets)} isolated and "
                f"{len(vpc.public_subnets)} public subnets")
        raise ValidationError(
            f"the collector subnets selected in VPC {vpc.node.path} do not exist (it has {have}); "
            "select an existing private subnet group (subnet_group_name=...) or leave the choice to the default"
        ) from None
    if not selected.subnets:
        raise ValidationError(f"the collector subnet selection matches no subnet of VPC {vpc.node.path}; "
                              "select an existing private subnet group or leave the choice to the default")
    azs = set(selected.availability_zones)
    # Env-agnostic stacks list AZs as distinct tokens (Fn::Select 0, 1, ...), so counting still works.
    if len(azs) < 2:
        raise ValidationError(f"the collector subnets of VPC {vpc.node.path} span {len(azs)} Availability Zone(s); "
                              "the fleet needs at least 2: select subnets in two zones or add some")
    return selected


def known_cidr(vpc: ec2.IVpc) -> str | None:
    """``vpc``'s IPv4 CIDR when it is known at synth time (a Vpc built here, a lookup, or given on import)."""
    if isinstance(vpc, ec2.Vpc):
        value = getattr(vpc.node.default_child, "cidr_block", None)
    else:
        try:
            value = vpc.vpc_cidr_block
        except RuntimeError:  # imported without vpc_cidr_block
            return None
    return None if value is None or Token.is_unresolved(value) else value


class ConcentratorVpc(Construct):
    """A VPC for the telemetry concentrator, isolated by default.

    - ``az_count`` zones (default 2, at least 2) with private subnets for the buffer fleet.
    - No internet gateway and no NAT unless ``vendor_egress=True``; then one NAT gateway per zone, so a
      zone's loss does not cut the others' egress, and public subnets only for the NAT gateways.
    - VPC flow logs (all traffic) to a CloudWatch log group kept ``flow_log_retention``.
    - Pass ``vpc`` to use an existing VPC instead (nothing is created; flow logs are then yours). Its
      collector subnets follow :func:`collector_subnets_of` (private with egress, else isolated) unless
      ``collector_subnets`` says which; ``cidr``, ``az_count``, ``availability_zones`` and ``vendor_egress``
      describe a VPC to create and are refused with ``vpc`` (``cidr`` is accepted if it is the VPC's own).

    ``app_vpc_cidrs`` are the application VPCs' ranges, checked not to overlap this VPC's so that flow
    logs and access logs name sources unambiguously (with ``vpc``, its CIDR must be known at synth time:
    import it with ``vpc_cidr_block`` or ``Vpc.from_lookup``).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cidr: str | None = None,
        az_count: int | None = None,
        availability_zones: Sequence[str] | None = None,
        vendor_egress: bool | None = None,
        app_vpc_cidrs: Sequence[str] = (),
        flow_log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        vpc: ec2.IVpc | None = None,
        collector_subnets: ec2.SubnetSelection | None = None,
    ) -> None:
        super().__init__(scope, id)
        if isinstance(app_vpc_cidrs, str):
            raise ValidationError(f"app_vpc_cidrs must be a list of CIDRs, got the string {app_vpc_cidrs!r}")
        if vpc is not None:
            self._use_existing(vpc, cidr=cidr, az_count=az_count, availability_zones=availability_zones,
                               vendor_egress=vendor_egress, app_vpc_cidrs=app_vpc_cidrs)
            self._collector_subnets = collector_subnets_of(vpc, collector_subnets)
            return
        if collector_subnets is not None:
            raise ValidationError("collector_subnets= chooses among an existing VPC's subnets (vpc=...); the VPC "
                                  "created here has one private subnet group, Collectors, which is used")
        cidr = DEFAULT_CONCENTRATOR_CIDR if cidr is None else cidr
        az_count = 2 if az_count is None else az_count
        self.vendor_egress = bool(vendor_egress)
        vendor_egress = self.vendor_egress
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
            self, "FlowLogs", retention=flow_log_retention, removal_policy=RemovalPolicy.RETAIN,
            encryption_key=log_group_key(self),
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
        self._collector_subnets = collector_subnets_of(self.vpc)

    def _use_existing(self, vpc: ec2.IVpc, *, cidr: str | None, az_count: int | None,
                      availability_zones: Sequence[str] | None, vendor_egress: bool | None,
                      app_vpc_cidrs: Sequence[str]) -> None:
        for name, value in (("az_count", az_count), ("availability_zones", availability_zones),
                            ("vendor_egress", vendor_egress)):
            if value is not None:
                raise ValidationError(
                    f"{name}= describes a VPC to create, but vpc= uses an existing one whose layout decides; drop {name}="
                )
        self.vpc = vpc
        self.flow_log_group = None
        azs = vpc.availability_zones
        if not any(Token.is_unresolved(a) for a in azs) and len(azs) < 2:
            check_azs(azs)
        existing = known_cidr(vpc)
        if cidr is not None:
            check_cidr(cidr, what="concentrator VPC CIDR")
            if existing is None:
                raise ValidationError(
                    f"cidr={cidr!r} cannot be checked against the existing VPC (its CIDR is unknown at synth time) "
                    "and changes nothing: drop cidr=, or import the VPC with vpc_cidr_block=... to have it checked"
                )
            if cidr != existing:
                raise ValidationError(f"cidr={cidr!r} is not the existing VPC's CIDR {existing!r}: drop cidr= "
                                      "(an existing VPC keeps its range)")
        if app_vpc_cidrs:
            if existing is None:
                raise ValidationError(
                    "app_vpc_cidrs cannot be checked against the existing VPC: its CIDR is unknown at synth time; "
                    "import it with vpc_cidr_block=... (Vpc.from_vpc_attributes) or Vpc.from_lookup, or drop app_vpc_cidrs"
                )
            disjoint_cidrs([("concentrator VPC CIDR", existing)]
                           + [(f"app VPC CIDR #{i + 1}", c) for i, c in enumerate(app_vpc_cidrs)])
        # Egress is whatever the existing VPC has; the fleet warns if its subnets are isolated.
        self.vendor_egress = bool(vpc.private_subnets)
        Annotations.of(self).add_info(
            "The concentrator uses an existing VPC: make sure it has flow logs and no route from app VPCs."
        )

    @property
    def collector_subnets(self) -> ec2.SubnetSelection:
        """Where the buffer fleet runs (:func:`collector_subnets_of`): private with egress, else isolated."""
        return self._collector_subnets
