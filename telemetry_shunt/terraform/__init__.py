"""The Terraform flavour (CDK Terrain): the same isolated telemetry network as the CDK constructs.

Install with ``pip install 'telemetry-shunt[terraform]'``. Same names and keyword arguments as
:mod:`telemetry_shunt.constructs` where the concept is the same; every policy, route, priority and
validation comes from :mod:`telemetry_shunt.core`.
"""

from telemetry_shunt.terraform.control import AgentRolloutSupport, KillSwitch
from telemetry_shunt.terraform.fleet import BufferFleet
from telemetry_shunt.terraform.network import (
    AppVpcAttachment,
    ConcentratorVpc,
    TelemetryGateway,
    TelemetryServiceNetwork,
)

__all__ = ["AgentRolloutSupport", "AppVpcAttachment", "BufferFleet", "ConcentratorVpc", "KillSwitch", "TelemetryGateway",
           "TelemetryServiceNetwork"]
