"""The observability account's stack: concentrator VPC, service network, gateway."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from telemetry_shunt.constructs.buffer_fleet import BufferFleet
from telemetry_shunt.constructs.concentrator_vpc import ConcentratorVpc
from telemetry_shunt.constructs.gateway import TelemetryGateway
from telemetry_shunt.constructs.operations import AlarmTopic, telemetry_dashboard
from telemetry_shunt.constructs.service_network import TelemetryServiceNetwork
from telemetry_shunt.core.collectors import Sink
from telemetry_shunt.core.contract import DEFAULT_CONCENTRATOR_CIDR
from telemetry_shunt.core.gateway_ref import GatewayRef
from telemetry_shunt.core.routes import Pusher, Route, default_routes


class ConcentratorStack(Stack):
    """Everything on the receiving side of the shunt, in the observability account.

    Outputs the gateway's :class:`GatewayRef` (``TelemetryGateway.add_ref_outputs``): one output per field
    and ``GatewayRef``, the whole value as JSON for app accounts (context ``telemetry-shunt:gateway``).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        pushers: Sequence[Pusher],
        routes: Sequence[Route] | None = None,
        share_with: Sequence[str] = (),
        allow_external_principals: bool = False,
        vpc_cidr: str = DEFAULT_CONCENTRATOR_CIDR,
        app_vpc_cidrs: Sequence[str] = (),
        vendor_egress: bool = False,
        az_count: int = 2,
        fleet_sinks: Sequence[Sink] | None = None,
        fleet_secrets: Mapping[str, secretsmanager.ISecret] | None = None,
        alarm_email: str | None = None,
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
        # Pushers are declared once, on the service network; the gateway takes them from there.
        self.gateway = TelemetryGateway(
            self, "Gateway", vpc=self.network.vpc, service_network=self.service_network,
            routes=default_routes() if routes is None else routes,
        )
        # The collectors behind the gateway; archive-only unless a vendor sink is given.
        self.buffer_fleet = BufferFleet(
            self, "BufferFleet", vpc=self.network.vpc, vpc_subnets=self.network.collector_subnets, gateway=self.gateway,
            sinks=list(fleet_sinks) if fleet_sinks else None, secrets=fleet_secrets,
            access_logs_bucket=self.service_network.server_access_log_bucket,
        )
        # Operable by default: the gateway's and the fleet's alarms on one topic (alarm_email subscribes to
        # it), one dashboard for the path. Runbook: docs/alarms.md.
        self.alarm_topic = AlarmTopic(self, "AlarmTopic", email=alarm_email)
        self.alarms = [*self.gateway.add_alarms(), *self.buffer_fleet.add_alarms()]
        self.alarm_topic.notify(self.alarms)
        self.dashboard = telemetry_dashboard(self, "Dashboard", gateway=self.gateway, fleet=self.buffer_fleet,
                                             alarms=self.alarms)
        self.outputs = self.gateway.add_ref_outputs(self)

    @property
    def gateway_ref(self) -> GatewayRef:
        """The gateway for app-account stacks in this app (``AppAccountStack(gateway=...)``)."""
        return self.gateway.gateway_ref
