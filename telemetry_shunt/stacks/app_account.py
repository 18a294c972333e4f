"""An application account's stack: attach the app VPC to the telemetry service network, grant agents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Annotations, CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from telemetry_shunt.constructs._logs import log_group_key
from telemetry_shunt.constructs.app_attachment import ALREADY_ASSOCIATED_ID, AppVpcAttachment
from telemetry_shunt.constructs.service_network import TelemetryServiceNetwork
from telemetry_shunt.core.gateway_ref import GatewayRef
from telemetry_shunt.core.routes import Route, default_routes
from telemetry_shunt.core.validation import cidr as check_cidr
from telemetry_shunt.errors import ValidationError

DEFAULT_APP_CIDR = "10.0.0.0/16"


class AppAccountStack(Stack):
    """Attach an app VPC (``vpc``, or a demo VPC with no NAT at all) and create the agents' role.

    The demo VPC has only isolated subnets: telemetry reaches the concentrator without any NAT or
    internet gateway, which is the point.

    ``gateway`` (a :class:`GatewayRef` or its JSON: the concentrator stack's ``GatewayRef`` output, or
    ``ConcentratorStack.gateway_ref`` in the same app) says where agents push and which routes they are
    granted. The older ``service_network_arn``/``gateway_arn`` pair still works; ``routes`` must then name
    the gateway's routes, and when it is left out the grant assumes the default routes and warns.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        gateway: GatewayRef | str | None = None,
        service_network_arn: str | None = None,
        gateway_arn: str | None = None,
        routes: Sequence[Route] | None = None,
        vpc: ec2.IVpc | None = None,
        vpc_cidr: str = DEFAULT_APP_CIDR,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        if gateway is None and service_network_arn is None:
            raise ValidationError("AppAccountStack needs gateway=GatewayRef (the concentrator stack's GatewayRef "
                                  "output, context telemetry-shunt:gateway) or service_network_arn=...")
        created_vpc = vpc is None
        if vpc is None:
            check_cidr(vpc_cidr, what="app VPC CIDR")
            flow_logs = logs.LogGroup(self, "FlowLogs", retention=logs.RetentionDays.ONE_YEAR,
                                      removal_policy=RemovalPolicy.RETAIN, encryption_key=log_group_key(self))
            vpc = ec2.Vpc(
                self, "AppVpc",
                ip_addresses=ec2.IpAddresses.cidr(vpc_cidr),
                max_azs=2,
                nat_gateways=0,
                restrict_default_security_group=False,
                subnet_configuration=[ec2.SubnetConfiguration(name="App", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)],
                flow_logs={"All": ec2.FlowLogOptions(destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs))},
            )
        self.vpc = vpc
        service_network = (None if service_network_arn is None else
                           TelemetryServiceNetwork.from_service_network_arn(self, "ServiceNetwork", service_network_arn))
        self.attachment = AppVpcAttachment(self, "Telemetry", vpc=vpc, service_network=service_network,
                                           gateway=gateway)
        if created_vpc:
            Annotations.of(self.attachment).acknowledge_warning(
                ALREADY_ASSOCIATED_ID, "the demo VPC is created by this stack, so it has no other association")
        self.agent_role = iam.Role(
            self, "AgentRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="Telemetry agents on app hosts: may POST telemetry to the gateway, nothing else",
        )
        if gateway is None and routes is None:
            routes = default_routes()
            Annotations.of(self).add_warning_v2(
                "telemetry-shunt:grant-assumes-default-routes",
                "the agents' grant assumes the default routes (/metrics, /v1/traces, /v1/metrics, /v1/logs); a "
                "gateway with other routes would deny them at runtime: pass gateway=GatewayRef (context "
                "telemetry-shunt:gateway, the concentrator stack's GatewayRef output) or routes=[...]",
            )
        self.attachment.grant_push(self.agent_role, gateway_arn=gateway_arn, routes=routes)
        CfnOutput(self, "AgentRoleArn", value=self.agent_role.role_arn,
                  description="Add to the concentrator's pushers (context telemetry-shunt:pushers)")
        CfnOutput(self, "TelemetrySecurityGroup", value=self.attachment.security_group.security_group_id)
