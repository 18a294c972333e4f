"""The in-app telemetry client (``pip install telemetry-shunt[client]``: stdlib and botocore only).

    from telemetry_shunt.client import TelemetryClient

    client = TelemetryClient("https://telemetry-gateway-0123.7d67968.vpc-lattice-svcs.us-east-1.on.aws",
                             region="us-east-1")
    client.emit("checkout.latency_ms", 12.5, route="/pay")

See ``docs/client.md`` for behaviour under each fault and the measured costs.
"""

from telemetry_shunt.client._client import (
    AT_LEAST_ONCE,
    AT_MOST_ONCE,
    DELIVERY_GUARANTEES,
    DROP_REASONS,
    ClientStats,
    TelemetryClient,
)
from telemetry_shunt.client._killswitch import KillSwitchSource

__all__ = [
    "AT_LEAST_ONCE",
    "AT_MOST_ONCE",
    "DELIVERY_GUARANTEES",
    "DROP_REASONS",
    "ClientStats",
    "KillSwitchSource",
    "TelemetryClient",
]
