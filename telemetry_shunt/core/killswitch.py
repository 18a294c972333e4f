"""The kill-switch decision, shared by host agents, the rollout engine and the in-app client.

Also the flags document both flavours deploy (:func:`feature_flags_content`) and its validation. The rule
itself lives in ``core/hostfiles/killswitch_rule.py``, the file the host watcher runs with python3:
one copy, so the hosts and the Python side cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from telemetry_shunt.core.contract import AZ_FLAG_PREFIX, GLOBAL_FLAG
from telemetry_shunt.core.hostfiles import killswitch_rule
from telemetry_shunt.core.validation import is_token
from telemetry_shunt.errors import ValidationError


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


# --- The flags document (AppConfig hosted configuration), the same for the CDK and Terraform flavours ---
# AppConfig feature-flag keys (AWS.AppConfig.FeatureFlags); the project also leaves out '_'.
FLAG_KEY_PATTERN = r"^[a-z][a-zA-Z0-9-]{0,63}$"
_FLAG_KEY = re.compile(FLAG_KEY_PATTERN, re.ASCII)
# us-east-1a, us-gov-west-1b, ap-southeast-2c, and Local Zones such as us-west-2-lax-1a.
AZ_NAME_PATTERN = r"^[a-z]{2}(-[a-z]+)+-\d+(-[a-z]+-\d+)?[a-z]$"
_AZ_NAME = re.compile(AZ_NAME_PATTERN, re.ASCII)
FEATURE_FLAGS_TYPE = "AWS.AppConfig.FeatureFlags"


def validate_flag_key(key: str) -> str:
    if not isinstance(key, str) or not _FLAG_KEY.fullmatch(key):
        raise ValidationError(f"feature flag key must match {FLAG_KEY_PATTERN} (AppConfig), got {key!r}")
    return key


def region_of_az(az: str) -> str:
    """``us-east-1a`` -> ``us-east-1``; ``us-west-2-lax-1a`` -> ``us-west-2``."""
    return re.match(r"[a-z]{2}(-[a-z]+)+-[0-9]+", az, re.ASCII).group(0)  # type: ignore[union-attr]


def validate_availability_zones(availability_zones: Sequence[str]) -> tuple[str, ...]:
    """AZ names (not ids), all in one Region, no duplicates; each must make a valid per-AZ flag key."""
    if isinstance(availability_zones, str):
        raise ValidationError(f"availability_zones must be a list of AZ names, got the string {availability_zones!r}")
    azs = tuple(availability_zones)
    if not azs:
        raise ValidationError("availability_zones must name at least one Availability Zone, got an empty list")
    for az in azs:
        if not isinstance(az, str) or is_token(az):
            raise ValidationError(
                f"availability zone names must be literal strings (they become flag keys at synth time), got {az!r}; "
                "pass names from app context, not Stack.availability_zones of an environment-agnostic stack"
            )
        if not _AZ_NAME.fullmatch(az):
            looks_like_id = re.fullmatch(r"[a-z]{3,4}[0-9]+-az[0-9]+", az, re.ASCII)
            hint = " (that looks like an AZ id; use the AZ name)" if looks_like_id else ""
            raise ValidationError(f"availability zone must be a name such as 'us-east-1a', got {az!r}{hint}")
        validate_flag_key(az_flag_key(az))
    if len(set(azs)) != len(azs):
        raise ValidationError(f"availability zones must be distinct, got {list(azs)}")
    regions = sorted({region_of_az(az) for az in azs})
    if len(regions) > 1:
        raise ValidationError(f"availability zones must be in one Region, got {list(azs)} (Regions {regions})")
    return azs


def feature_flags_content(availability_zones: Sequence[str], values: Mapping[str, bool] | None = None) -> dict[str, Any]:
    """The ``AWS.AppConfig.FeatureFlags`` document: the global flag plus one flag per AZ.

    ``values`` overrides the initial value of any of those flags (default: every flag enabled).
    """
    azs = validate_availability_zones(availability_zones)
    keys = [GLOBAL_FLAG, *(az_flag_key(az) for az in azs)]
    for key in keys:
        validate_flag_key(key)
    values = dict(values or {})
    for key, value in values.items():
        validate_flag_key(key)
        if key not in keys:
            raise ValidationError(f"initial flag {key!r} is not one of this kill switch's flags: {', '.join(keys)}")
        if not isinstance(value, bool):
            raise ValidationError(f"initial value of flag {key!r} must be True or False, got {value!r}")
    flags = {GLOBAL_FLAG: {
        "name": "Telemetry",
        "description": "Global kill switch: telemetry agents and clients run only while this is enabled.",
    }}
    for az in azs:
        name = f"Telemetry in {az}"
        flags[az_flag_key(az)] = {
            "name": name if len(name) <= 64 else az_flag_key(az),  # AppConfig: names up to 64 characters
            "description": f"Per-AZ kill switch for {az}: disabled stops telemetry there even if the global flag is on.",
        }
    return {
        "version": "1",
        "flags": flags,
        "values": {key: {"enabled": values.get(key, True)} for key in keys},
    }
