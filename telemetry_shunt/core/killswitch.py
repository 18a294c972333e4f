"""The kill-switch decision, shared by host agents, the rollout engine and the in-app client.

The rule itself lives in ``core/hostfiles/killswitch_rule.py``, the file the host watcher runs with python3:
one copy, so the hosts and the Python side cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from telemetry_shunt.core.contract import AZ_FLAG_PREFIX, GLOBAL_FLAG
from telemetry_shunt.core.hostfiles import killswitch_rule


def az_flag_key(az: str) -> str:
    """The per-AZ flag key for ``az`` (``"us-east-1a"`` -> ``"telemetry-us-east-1a"``)."""
    return f"{AZ_FLAG_PREFIX}{az}"


def telemetry_enabled(flags: Mapping[str, Any], az: str | None = None) -> bool:
    """Whether telemetry may run, given AppConfig feature-flag data (``{"telemetry": {"enabled": true}}``).

    On only if the global flag is enabled and, when ``az`` is given, its per-AZ flag is not disabled
    (an absent per-AZ flag follows the global one). A missing global flag means off: a kill switch
    that cannot be read as "on" must not keep telemetry running.
    """
    return killswitch_rule.telemetry_enabled(flags, az, GLOBAL_FLAG, AZ_FLAG_PREFIX)
