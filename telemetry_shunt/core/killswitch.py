"""The kill-switch decision, shared by host agents, the rollout engine and the in-app client."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from telemetry_shunt.core.contract import AZ_FLAG_PREFIX, GLOBAL_FLAG


def az_flag_key(az: str) -> str:
    """The per-AZ flag key for ``az`` (``"us-east-1a"`` -> ``"telemetry-us-east-1a"``)."""
    return f"{AZ_FLAG_PREFIX}{az}"


def telemetry_enabled(flags: Mapping[str, Any], az: str | None = None) -> bool:
    """Whether telemetry may run, given AppConfig feature-flag data (``{"telemetry": {"enabled": true}}``).

    On only if the global flag is enabled and, when ``az`` is given, its per-AZ flag is not disabled
    (an absent per-AZ flag follows the global one). A missing global flag means off: a kill switch
    that cannot be read as "on" must not keep telemetry running.
    """
    def enabled(key: str, default: bool) -> bool:
        value = flags.get(key)
        if not isinstance(value, Mapping) or "enabled" not in value:
            return default
        return value["enabled"] is True

    if not enabled(GLOBAL_FLAG, False):
        return False
    return az is None or enabled(az_flag_key(az), True)
