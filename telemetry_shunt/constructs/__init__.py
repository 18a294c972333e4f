"""CDK L3 constructs for the isolated telemetry network (``pip install telemetry-shunt[cdk]``).

VPC Lattice has only L1 ``Cfn*`` classes in aws-cdk-lib; these constructs are the L2/L3 layer.
Import them from here (``from telemetry_shunt.constructs import TelemetryGateway``); the module paths
are not part of the public contract. Names load on first use, so importing one does not load them all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the module that defines it.
_EXPORTS = {
    "ConcentratorVpc": "concentrator_vpc",
    "collector_subnets_of": "concentrator_vpc",
    "TelemetryServiceNetwork": "service_network",
    "ITelemetryServiceNetwork": "service_network",
    "TelemetryGateway": "gateway",
    "ImportedGateway": "gateway",
    "AppVpcAttachment": "app_attachment",
    "BufferFleet": "buffer_fleet",
    "KillSwitch": "kill_switch",
    "ImportedKillSwitch": "kill_switch",
    "AgentRolloutSupport": "agent_rollout_support",
    "AgentSource": "agent_rollout_support",
}

__all__ = [
    "AgentRolloutSupport", "AgentSource", "AppVpcAttachment", "BufferFleet", "ConcentratorVpc", "ITelemetryServiceNetwork",
    "ImportedGateway", "ImportedKillSwitch", "KillSwitch", "TelemetryGateway", "TelemetryServiceNetwork", "collector_subnets_of",
]

if TYPE_CHECKING:
    from telemetry_shunt.constructs.agent_rollout_support import AgentRolloutSupport, AgentSource
    from telemetry_shunt.constructs.app_attachment import AppVpcAttachment
    from telemetry_shunt.constructs.buffer_fleet import BufferFleet
    from telemetry_shunt.constructs.concentrator_vpc import ConcentratorVpc, collector_subnets_of
    from telemetry_shunt.constructs.gateway import ImportedGateway, TelemetryGateway
    from telemetry_shunt.constructs.kill_switch import ImportedKillSwitch, KillSwitch
    from telemetry_shunt.constructs.service_network import ITelemetryServiceNetwork, TelemetryServiceNetwork


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'telemetry_shunt.constructs' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"telemetry_shunt.constructs.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
