"""Attach an application VPC to the telemetry service network, and let its agents push."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Annotations, Aws
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_vpclattice as lattice
from constructs import Construct

from telemetry_shunt.constructs._prefix_lists import lattice_prefix_lists
from telemetry_shunt.constructs.service_network import ITelemetryServiceNetwork, TelemetryServiceNetwork
from telemetry_shunt.core.gateway_ref import GatewayRef
from telemetry_shunt.core.policy import push_grant_statement
from telemetry_shunt.core.routes import Route
from telemetry_shunt.core.validation import is_token, private_dns
from telemetry_shunt.errors import ValidationError

#: CDK's placeholder egress rule for a group that must allow no traffic (ICMP type 252, code 86, to one address).
MATCH_NO_TRAFFIC = {"CidrIp": "255.255.255.255/32", "Description": "Disallow all traffic", "IpProtocol": "icmp",
                    "FromPort": 252, "ToPort": 86}

ALREADY_ASSOCIATED_WARNING = (
    "A VPC can be associated with only one VPC Lattice service network. If this VPC already is, the "
    "deployment fails: use a service-network VPC endpoint instead (AppVpcAttachment(..., "
    "mode='endpoint', subnets=...)); see docs/cross-account.md. If you know it is not, acknowledge the "
    "warning: Annotations.of(attachment).acknowledge_warning('telemetry-shunt:vpc-maybe-associated', reason)."
)
ALREADY_ASSOCIATED_ID = "telemetry-shunt:vpc-maybe-associated"

NO_ROUTES_ERROR = (
    "grant_push cannot know the gateway's routes, and granting the library's defaults would deny a gateway "
    "with other routes at runtime: pass gateway=GatewayRef (AppVpcAttachment(..., gateway=...) or "
    "grant_push(role, gateway=...); GatewayRef.from_json of the concentrator stack's GatewayRef output), or "
    "routes=[...] naming exactly the gateway's routes"
)


def _as_ref(gateway: object, what: str) -> GatewayRef:
    """A GatewayRef from a GatewayRef, its JSON, or anything exposing ``gateway_ref`` (a gateway construct)."""
    if isinstance(gateway, str):
        return GatewayRef.from_json(gateway, source=what)
    ref = getattr(gateway, "gateway_ref", gateway)
    if not isinstance(ref, GatewayRef):
        raise ValidationError(f"{what} {gateway!r} is not a GatewayRef: pass GatewayRef.from_json(<the concentrator "
                              "stack's GatewayRef output>), a TelemetryGateway, or TelemetryGateway.from_gateway_ref(...)")
    return ref


class AppVpcAttachment(Construct):
    """Connect an application VPC to the (possibly RAM-shared) telemetry service network.

    ``mode="association"`` (default) associates the VPC with the service network; agents reach the
    gateway at its Lattice DNS name via the link-local 169.254.171.0/24 range, never through the
    app's NAT. ``mode="endpoint"`` creates a service-network VPC endpoint in ``subnets`` instead,
    for VPCs already associated with another service network.

    Private DNS: ``private_dns_enabled`` (default: the resource's default, on for an endpoint) and, for
    resources shared with custom domain names, ``private_dns_preference`` (``VERIFIED_DOMAINS_ONLY``,
    ``ALL_DOMAINS``, ``VERIFIED_DOMAINS_AND_SPECIFIED_DOMAINS``, ``SPECIFIED_DOMAINS_ONLY``) with
    ``private_dns_specified_domains``; see docs/cross-account.md, "Cross-account DNS". The gateway's own
    Lattice-generated name resolves in any associated VPC without these.

    Either way the attachment's security group has no ingress and its only egress is HTTPS to the
    VPC Lattice managed prefix lists (IPv4 and IPv6) on ``listener_port``. Use :meth:`grant_push`
    to give agent roles the identity-policy half of Lattice authorization.

    ``gateway`` (a :class:`GatewayRef`, its JSON, or a gateway construct) is the gateway agents push to:
    ``service_network`` then defaults to its service network, and :meth:`grant_push` grants exactly its
    routes. In association mode the attachment always warns that a VPC can be associated with only one
    service network (an existing ``ec2.Vpc`` may already be); acknowledge the warning when you know.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        service_network: ITelemetryServiceNetwork | None = None,
        gateway: GatewayRef | str | None = None,
        mode: str = "association",
        subnets: ec2.SubnetSelection | None = None,
        listener_port: int = 443,
        private_dns_enabled: bool | None = None,
        private_dns_preference: str | None = None,
        private_dns_specified_domains: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, id)
        self.gateway: GatewayRef | None = None if gateway is None else _as_ref(gateway, "gateway")
        if service_network is None:
            if self.gateway is None:
                raise ValidationError("AppVpcAttachment needs gateway=GatewayRef (preferred) or service_network=...: "
                                      "nothing says which service network to attach to")
            service_network = TelemetryServiceNetwork.from_service_network_arn(
                self, "ServiceNetwork", self.gateway.service_network_arn)
        elif self.gateway is not None:
            mine, theirs = service_network.service_network_arn, self.gateway.service_network_arn
            if not is_token(mine) and not is_token(theirs) and mine != theirs:
                raise ValidationError(f"service_network {mine!r} is not the gateway's service network {theirs!r}: "
                                      "drop service_network= (the gateway reference says which)")
        preference, domains = private_dns(private_dns_preference, private_dns_specified_domains)
        if preference is not None and private_dns_enabled is False:
            raise ValidationError(f"private_dns_preference {preference!r} needs private DNS: drop private_dns_enabled=False")
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
            # Any VPC: one defined with ec2.Vpc in an existing stack is as likely to be associated as an imported one.
            Annotations.of(self).add_warning_v2(ALREADY_ASSOCIATED_ID, ALREADY_ASSOCIATED_WARNING)
            self.resource: Construct = lattice.CfnServiceNetworkVpcAssociation(
                self, "Resource",
                service_network_identifier=service_network.service_network_arn,
                vpc_identifier=vpc.vpc_id,
                security_group_ids=[self.security_group.security_group_id],
                private_dns_enabled=private_dns_enabled,
                dns_options=lattice.CfnServiceNetworkVpcAssociation.DnsOptionsProperty(
                    private_dns_preference=preference, private_dns_specified_domains=list(domains) or None,
                ) if preference else None,
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
                private_dns_enabled=True if private_dns_enabled is None else private_dns_enabled,
                dns_options=ec2.CfnVPCEndpoint.DnsOptionsSpecificationProperty(
                    private_dns_preference=preference, private_dns_specified_domains=list(domains) or None,
                ) if preference else None,
            )

    def grant_push(
        self,
        grantee: iam.IGrantable,
        *,
        gateway: GatewayRef | str | None = None,
        gateway_arn: str | None = None,
        routes: Sequence[Route] | None = None,
    ) -> iam.Grant:
        """Allow ``grantee`` to ``POST`` telemetry to the gateway's routes (the identity-policy half).

        ``gateway`` (default: the attachment's) scopes the grant to that Lattice service and, without
        ``routes``, to exactly its routes; ``routes`` must then be among them. Without a gateway,
        ``routes`` is required (there is no way to know a gateway's routes from its ARN) and
        ``gateway_arn`` scopes the grant to one service; without that, any service's routed paths (the
        service network's and gateway's auth policies still decide).
        """
        ref = _as_ref(gateway, "gateway") if gateway is not None else self.gateway
        if ref is not None:
            if gateway_arn is not None and not is_token(gateway_arn) and not is_token(ref.service_arn) \
                    and gateway_arn != ref.service_arn:
                raise ValidationError(f"gateway_arn {gateway_arn!r} is not the gateway's {ref.service_arn!r}: "
                                      "drop gateway_arn= (the gateway reference says which)")
            gateway_arn = ref.service_arn
        elif routes is None:
            raise ValidationError(NO_ROUTES_ERROR)
        statement = push_grant_statement(routes=routes, gateway_routes=ref.routes if ref is not None else None,
                                         gateway_arn=gateway_arn, partition=Aws.PARTITION, region=Aws.REGION)
        return iam.Grant.add_to_principal(grantee=grantee, actions=[statement["Action"]],
                                          resource_arns=statement["Resource"], conditions=statement["Condition"])
