"""The observability account's stack: concentrator VPC, service network, gateway."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from telemetry_shunt.constructs.buffer_fleet import BufferFleet
from telemetry_shunt.constructs.concentrator_vpc import DEFAULT_CIDR, ConcentratorVpc
from telemetry_shunt.constructs.gateway import TelemetryGateway
from telemetry_shunt.constructs.service_network import TelemetryServiceNetwork
from telemetry_shunt.core.collectors import S3ArchiveSink, Sink, group_paths
from telemetry_shunt.core.routes import Pusher, Route, default_routes


class ConcentratorStack(Stack):
    """Everything on the receiving side of the shunt, in the observability account."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        pushers: Sequence[Pusher],
        routes: Sequence[Route] | None = None,
        share_with: Sequence[str] = (),
        allow_external_principals: bool = False,
        vpc_cidr: str = DEFAULT_CIDR,
        app_vpc_cidrs: Sequence[str] = (),
        vendor_egress: bool = False,
        az_count: int = 2,
        fleet_sinks: Sequence[Sink] | None = None,
        fleet_secrets: Mapping[str, secretsmanager.ISecret] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        self.network = ConcentratorVpc(
            self, "Network", cidr=vpc_cidr, az_count=az_count, vendor_egress=vendor_egress, app_vpc_cidrs=app_vpc_cidrs
        )
        self.service_network = TelemetryServiceNetwork(
            self, "ServiceNetwork", pushers=pushers, share_with=share_with,
            allow_external_principals=allow_external_principals,
        )
        self.gateway = TelemetryGateway(
            self, "Gateway", vpc=self.network.vpc, service_network=self.service_network, pushers=pushers,
            routes=default_routes() if routes is None else routes,
        )
        # The collectors behind the gateway; archive-only unless a vendor sink is given.
        self.buffer_fleet = BufferFleet(
            self, "BufferFleet", vpc=self.network.vpc, vpc_subnets=self.network.collector_subnets,
            target_groups=self.gateway.target_groups, paths_by_collector=group_paths(self.gateway.routes),
            sinks=list(fleet_sinks) if fleet_sinks else [S3ArchiveSink()], secrets=fleet_secrets,
        )
        CfnOutput(self, "ServiceNetworkArn", value=self.service_network.service_network_arn,
                  description="Pass to app-account stacks as context telemetry-shunt:service-network-arn")
        CfnOutput(self, "GatewayArn", value=self.gateway.service_arn,
                  description="Pass to app-account stacks as context telemetry-shunt:gateway-arn")
        CfnOutput(self, "GatewayEndpoint", value=self.gateway.endpoint,
                  description="Agents push to https://<this>/metrics")
