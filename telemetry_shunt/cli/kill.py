"""The telemetry kill switch (AWS AppConfig feature flags): on, off, status.

\b
  kill on   ENGAGE the kill switch: telemetry OFF (globally, or in one zone with --az)
  kill off  RELEASE the kill switch: telemetry ON again
  kill status  show what hosts currently see, globally and per zone

A flip creates a new hosted configuration version of the kill-switch profile and deploys it all at
once with the KillSwitch stack's strategy (no bake, so an undo never waits for the previous flip);
hosts pick it up at their next poll (>= 15 s). Telemetry
in a zone runs only while the global flag AND the zone's flag allow it.

\b
Exit codes: 0 success; 1 user/config error (unknown AZ, AppConfig resources missing, no --yes).
"""

from __future__ import annotations

import os
from typing import Any

import click

from telemetry_shunt.cli.common import (
    APPCONFIG_NAME,
    APPCONFIG_PROFILE_NAME,
    AZ,
    aws_options,
    check_region,
    cli_boundary,
    file_path,
    output_option,
    progress,
    render,
)
from telemetry_shunt.cli.rollout import build_kill_switch, confirm, kill_switch_options
from telemetry_shunt.core import contract
from telemetry_shunt.errors import ShuntError


def appconfig_options(func):
    func = click.option("--appconfig-strategy", default=None, type=APPCONFIG_NAME,
                        help="Deployment strategy name or id (default: the KillSwitch stack's "
                             "TelemetryShunt-KillSwitch-AllAtOnce, all at once without bake).")(func)
    func = click.option("--appconfig-profile", default=contract.APPCONFIG_PROFILE, show_default=True,
                        type=APPCONFIG_PROFILE_NAME,
                        help="AppConfig configuration profile (feature flags).")(func)
    func = click.option("--appconfig-environment", default=contract.APPCONFIG_ENVIRONMENT, show_default=True,
                        type=APPCONFIG_NAME,
                        help="AppConfig environment.")(func)
    func = click.option("--appconfig-application", default=contract.APPCONFIG_APPLICATION, show_default=True,
                        type=APPCONFIG_NAME,
                        help="AppConfig application.")(func)
    return func


def _session_and_switch(params: dict[str, Any]):
    from telemetry_shunt.agent_rollout.aws import make_session

    if params.get("kill_switch_file"):
        file_path(params["kill_switch_file"], what="kill-switch file (--kill-switch-file)", must_exist=True)
    region = params.get("region") or check_region(os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    session = make_session(region=region, profile=params.get("profile"))
    return session, build_kill_switch(params, session, params.get("endpoint_url"))


def validate_az(session: Any, az: str, endpoint_url: str | None) -> None:
    """An AZ of this Region, or a one-line error naming the ones that exist."""
    from telemetry_shunt.agent_rollout.aws import error_code, make_client

    ec2 = make_client(session, "ec2", endpoint_url=endpoint_url)
    try:
        zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]]
    except Exception as exc:  # noqa: BLE001 - only a permission problem is worth a softer message
        if error_code(exc) in ("UnauthorizedOperation", "AccessDenied"):
            raise ShuntError(f"cannot list Availability Zones to check {az!r}: {exc}") from None
        raise
    if az not in zones:
        raise ShuntError(f"unknown AZ {az!r}: this Region has {', '.join(sorted(zones))}")


@click.group(name="kill", help=__doc__, short_help="Kill switch: 'on' turns telemetry OFF, 'off' turns it ON, status.")
def kill() -> None:
    pass


def _flip(params: dict[str, Any], enabled: bool) -> None:
    session, switch = _session_and_switch(params)
    az = params.get("az")
    if az:
        validate_az(session, az, params.get("endpoint_url"))
    scope = f"zone {az}" if az else "ALL zones"
    action = "RELEASE the kill switch: telemetry ON" if enabled else "ENGAGE the kill switch: telemetry OFF"
    if not params["dry_run"]:
        confirm(params["yes"], f"{action} in {scope}")
    result = switch.set_telemetry(az, enabled, dry_run=params["dry_run"],
                                  description=f"shunt kill {'off' if enabled else 'on'} {az or 'global'}")
    if params["dry_run"]:
        progress(f"dry run: would {action.lower()} in {scope}; nothing changed")
    elif result.deployment:
        progress(f"deployed version {result.version} (deployment {result.deployment}, all at once): {action} in {scope}")
    else:
        progress(f"{action} in {scope}")
    out = result.to_dict()
    if enabled and az:
        flags = switch.read_flags() if not params["dry_run"] else {}
        from telemetry_shunt.core.killswitch import telemetry_enabled

        if flags and not telemetry_enabled(flags):
            out["warning"] = "the GLOBAL kill switch is still engaged: telemetry stays OFF everywhere"
            progress("warning: " + out["warning"])
    render(out, params["output"])


def flip_options(func):
    func = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")(func)
    func = click.option("--dry-run", is_flag=True, help="Show the flag that would change; deploy nothing.")(func)
    func = click.option("--az", type=AZ, default=None, help="Only this Availability Zone (per-AZ flag telemetry-<az>).")(func)
    return func


@kill.command("on")
@flip_options
@appconfig_options
@kill_switch_options
@output_option
@aws_options
@cli_boundary
def kill_on(**params: Any) -> None:
    """ENGAGE the kill switch: turn telemetry OFF (globally, or in --az)."""
    _flip(params, enabled=False)


@kill.command("off")
@flip_options
@appconfig_options
@kill_switch_options
@output_option
@aws_options
@cli_boundary
def kill_off(**params: Any) -> None:
    """RELEASE the kill switch: turn telemetry back ON (globally, or in --az)."""
    _flip(params, enabled=True)


@kill.command("status")
@click.option("--az", type=AZ, default=None, help="Show only this zone (and the global flag).")
@appconfig_options
@kill_switch_options
@output_option
@aws_options
@cli_boundary
def kill_status(az: str | None, **params: Any) -> None:
    """Show the deployed flags: for each zone, whether telemetry is ON or OFF (kill switch engaged)."""
    from telemetry_shunt.agent_rollout.killswitch import describe

    session, switch = _session_and_switch(params)
    if az:
        validate_az(session, az, params.get("endpoint_url"))
    flags = switch.read_flags()
    picture = describe(flags, [az] if az else [])
    if az:
        picture = {k: v for k, v in picture.items() if k in ("global", az)}
    render(picture, params["output"])
