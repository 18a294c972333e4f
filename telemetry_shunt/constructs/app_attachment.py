"""Attach an application VPC to the telemetry service network, and let its agents push."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Annotations, Aws
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_vpclattice as lattice
from constructs import Construct

from telemetry_shunt.constructs._prefix_lists import lattice_prefix_lists
from telemetry_shunt.constructs.service_network import ITelemetryServiceNetwork
from telemetry_shunt.core.policy import ACTION_INVOKE, KEY_METHOD, PUSH_METHOD
from telemetry_shunt.core.routes import Route, default_routes, validate_routes
from telemetry_shunt.errors import ValidationError

#: CDK's placeholder egress rule for a group that must allow no traffic (ICMP type 252, code 86, to one address).
MATCH_NO_TRAFFIC = {"CidrIp": "255.255.255.255/32", "Description": "Disallow all traffic", "IpProtocol": "icmp",
                    "FromPort": 252, "ToPort": 86}

ALREADY_ASSOCIATED_WARNING = (
    "A VPC can be associated with only one VPC Lattice service network. If this VPC already is, the "
    "deployment fails: use a service-network VPC endpoint instead (AppVpcAttachment(..., "
    "mode='endpoint', subnets=...)); see docs/cross-account.md."
)


class AppVpcAttachment(Construct):
    """Connect an application VPC to the (possibly RAM-shared) telemetry service network.

    ``mode="association"`` (default) associates the VPC with the service network; agents reach the
    gateway at its Lattice DNS name via the link-local 169.254.171.0/24 range, never through the
    app's NAT. ``mode="endpoint"`` creates a service-network VPC endpoint in ``subnets`` instead,
    for VPCs already associated with another service network.

    Either way the attachment's security group has no ingress and its only egress is HTTPS to the
    VPC Lattice managed prefix lists (IPv4 and IPv6) on ``listener_port``. Use :meth:`grant_push`
    to give agent roles the identity-policy half of Lattice authorization.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        service_network: ITelemetryServiceNetwork,
        mode: str = "association",
        subnets: ec2.SubnetSelection | None = None,
        listener_port: int = 443,
    ) -> None:
        super().__init__(scope, id)
        if mode not in ("association", "endpoint"):
            raise ValidationError(f"mode {mode!r} must be 'association' or 'endpoint'")
        if not (1 <= listener_port <= 65535):
            raise ValidationError(f"listener_port {listener_port} is not a TCP port (1-65535)")
        self.service_network = service_network
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, allow_all_outbound=False,
            description="Telemetry to VPC Lattice only: HTTPS egress to the Lattice prefix lists, no ingress",
        )
        for peer in lattice_prefix_lists(self).peers():
            self.security_group.add_egress_rule(peer, ec2.Port.tcp(listener_port), "Telemetry push to VPC Lattice")
        # Rules to deploy-time prefix-list ids become separate SecurityGroupEgress resources, which leaves
        # the group itself with no inline egress; CloudFormation would then add its default allow-all
        # egress. CDK's own "match no traffic" placeholder keeps the group closed except for those rules.
        cfn_group = self.security_group.node.default_child
        cfn_group.add_property_override("SecurityGroupEgress", [MATCH_NO_TRAFFIC])

        if mode == "association":
            if not isinstance(vpc, ec2.Vpc):
                Annotations.of(self).add_warning_v2("telemetry-shunt:vpc-maybe-associated", ALREADY_ASSOCIATED_WARNING)
            self.resource: Construct = lattice.CfnServiceNetworkVpcAssociation(
                self, "Resource",
                service_network_identifier=service_network.service_network_arn,
                vpc_identifier=vpc.vpc_id,
                security_group_ids=[self.security_group.security_group_id],
            )
        else:
            if subnets is None:
                raise ValidationError("mode='endpoint' needs subnets=ec2.SubnetSelection(...): one subnet per AZ, /28 or larger")
            selected = vpc.select_subnets(
                subnet_type=subnets.subnet_type, subnet_group_name=subnets.subnet_group_name,
                subnets=subnets.subnets, availability_zones=subnets.availability_zones, one_per_az=True,
            )
            self.resource = ec2.CfnVPCEndpoint(
                self, "Resource",
                vpc_id=vpc.vpc_id,
                vpc_endpoint_type="ServiceNetwork",
                service_network_arn=service_network.service_network_arn,
                subnet_ids=selected.subnet_ids,
                security_group_ids=[self.security_group.security_group_id],
                private_dns_enabled=True,
            )

    def grant_push(
        self,
        grantee: iam.IGrantable,
        *,
        gateway_arn: str | None = None,
        routes: Sequence[Route] | None = None,
    ) -> iam.Grant:
        """Allow ``grantee`` to ``POST`` telemetry to the gateway's routes (the identity-policy half).

        ``gateway_arn`` scopes the grant to one Lattice service; without it, any service's routed paths
        (the service network's and gateway's auth policies still decide). ``routes`` default to the
        standard routes.
        """
        routes = validate_routes(routes if routes is not None else default_routes())
        base = gateway_arn or f"arn:{Aws.PARTITION}:vpc-lattice:{Aws.REGION}:*:service/*"
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=[ACTION_INVOKE],
            resource_arns=[f"{base}{r.path}" for r in routes],
            conditions={"StringEquals": {KEY_METHOD: PUSH_METHOD}},
        )
