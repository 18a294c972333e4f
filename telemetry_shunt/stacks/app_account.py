"""An application account's stack: attach the app VPC to the telemetry service network, grant agents."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from telemetry_shunt.constructs.app_attachment import AppVpcAttachment
from telemetry_shunt.constructs.service_network import TelemetryServiceNetwork
from telemetry_shunt.core.validation import cidr as check_cidr

DEFAULT_APP_CIDR = "10.0.0.0/16"


class AppAccountStack(Stack):
    """Attach an app VPC (``vpc``, or a demo VPC with no NAT at all) and create the agents' role.

    The demo VPC has only isolated subnets: telemetry reaches the concentrator without any NAT or
    internet gateway, which is the point.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        service_network_arn: str,
        gateway_arn: str | None = None,
        vpc: ec2.IVpc | None = None,
        vpc_cidr: str = DEFAULT_APP_CIDR,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        if vpc is None:
            check_cidr(vpc_cidr, what="app VPC CIDR")
            flow_logs = logs.LogGroup(self, "FlowLogs", retention=logs.RetentionDays.ONE_YEAR,
                                      removal_policy=RemovalPolicy.RETAIN)
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
        service_network = TelemetryServiceNetwork.from_service_network_arn(self, "ServiceNetwork", service_network_arn)
        self.attachment = AppVpcAttachment(self, "Telemetry", vpc=vpc, service_network=service_network)
        self.agent_role = iam.Role(
            self, "AgentRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="Telemetry agents on app hosts: may POST telemetry to the gateway, nothing else",
        )
        self.attachment.grant_push(self.agent_role, gateway_arn=gateway_arn)
        CfnOutput(self, "AgentRoleArn", value=self.agent_role.role_arn,
                  description="Add to the concentrator's pushers (context telemetry-shunt:pushers)")
        CfnOutput(self, "TelemetrySecurityGroup", value=self.attachment.security_group.security_group_id)
