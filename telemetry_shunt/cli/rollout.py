"""Staged agent rollouts over SSM Run Command: plan, start, status, resume, abort, rollback.

\b
Exit codes:
  0    success (plan printed, rollout completed, status shown)
  1    user or configuration error (bad input, preflight failed, AWS error)
  2    rollout halted and rolled back, or aborted (kill switch engaged, operator abort)
  3    another operator holds the fleet's lease (the message names holder and expiry)
  130  interrupted (Ctrl-C): state is saved; 'shunt rollout resume ID' continues
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from telemetry_shunt.cli.common import (
    ALARM_NAME,
    AZ,
    FLEET,
    PACKAGE,
    PREFIX,
    ROLLOUT_ID,
    TABLE_NAME,
    VERSION,
    FiniteFloat,
    aws_options,
    check_region,
    cli_boundary,
    existing_dir,
    file_path,
    output_option,
    progress,
    render,
)
from telemetry_shunt.core.contract import DEFAULT_RESOURCE_PREFIX, DEFAULT_STATE_TABLE_NAME, HEARTBEAT_PERIOD_SECONDS
from telemetry_shunt.errors import ShuntError

EXIT_CODES_HELP = """\b
Exit codes: 0 success; 1 user/config error or failed preflight; 2 halted and
rolled back, or aborted; 3 fleet locked by another operator; 130 interrupted
(state saved: run 'shunt rollout resume ID')."""

# Injection points for tests (a simulated clock, extra hooks); the CLI uses the real ones.
CLOCK_FACTORY: Callable[[], Any] | None = None


def _clock():
    from telemetry_shunt.agent_rollout.clock import SystemClock

    return CLOCK_FACTORY() if CLOCK_FACTORY else SystemClock()


def state_options(func: Callable) -> Callable:
    func = click.option("--audit-log", envvar="SHUNT_AUDIT_LOG", default=".shunt/audit.jsonl", show_default=True,
                        help="Append-only JSON Lines audit log (env SHUNT_AUDIT_LOG).")(func)
    func = click.option("--state-dir", envvar="SHUNT_STATE_DIR", default=None,
                        help="Keep state and the lease in local files in this existing directory instead of "
                             "DynamoDB (env SHUNT_STATE_DIR).")(func)
    func = click.option("--state-table", type=TABLE_NAME, default=DEFAULT_STATE_TABLE_NAME, show_default=True,
                        help="DynamoDB table holding rollout state and the fleet lease.")(func)
    return func


def kill_switch_options(func: Callable) -> Callable:
    func = click.option("--kill-switch-file", envvar="SHUNT_KILL_SWITCH_FILE", default=None,
                        help="Read/flip a local kill-switch file instead of AppConfig (the sandbox; "
                             "env SHUNT_KILL_SWITCH_FILE).")(func)
    return func


def confirm(yes: bool, message: str) -> None:
    """Destructive steps need --yes, or an interactive 'y'."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise ShuntError(f"{message}: pass --yes to confirm (no terminal to ask on)")
    click.confirm(message + "?", abort=True, err=True)


class Context:
    """Clients, store, audit log and kill switch built once from the command's options."""

    def __init__(self, params: dict[str, Any]) -> None:
        from telemetry_shunt.agent_rollout.aws import make_client, make_clients, make_session
        from telemetry_shunt.agent_rollout.state import AuditLog, DynamoStateStore, LocalStateStore

        self.params = params
        self.clock = _clock()
        check_paths(params)
        region = params.get("region") or check_region(os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
        endpoint = params.get("endpoint_url")
        self.clients = make_clients(region=region, profile=params.get("profile"), endpoint_url=endpoint)
        session = make_session(region=region, profile=params.get("profile"))
        if params.get("state_dir"):
            self.store = LocalStateStore(params["state_dir"], create=bool(params.get("create_state_dir")))
        else:
            self.store = DynamoStateStore(make_client(session, "dynamodb", endpoint_url=endpoint),
                                          params.get("state_table") or DEFAULT_STATE_TABLE_NAME)
        self.audit = AuditLog(params.get("audit_log") or ".shunt/audit.jsonl")
        self.kill_switch = build_kill_switch(params, session, endpoint)

    def engine(self):
        from telemetry_shunt.agent_rollout.engine import RolloutEngine

        return RolloutEngine(clients=self.clients, store=self.store, audit=self.audit,
                             kill_switch=self.kill_switch, clock=self.clock, progress=progress)


def check_paths(params: dict[str, Any]) -> None:
    """State dir, audit log and kill-switch file: exist and are the right kind, before anything is built."""
    if params.get("state_dir"):
        existing_dir(params["state_dir"], what="state directory (--state-dir)",
                     create=bool(params.get("create_state_dir")),
                     advice="check the path (a typo would split the state and sidestep the fleet lease); "
                            "'shunt rollout start --create-state-dir' starts a new one")
    if params.get("audit_log"):
        file_path(params["audit_log"], what="audit log (--audit-log)", must_exist=False)
    if params.get("kill_switch_file"):
        file_path(params["kill_switch_file"], what="kill-switch file (--kill-switch-file)", must_exist=True)


def build_kill_switch(params: dict[str, Any], session: Any, endpoint: str | None):
    from telemetry_shunt.agent_rollout.aws import make_client
    from telemetry_shunt.agent_rollout.killswitch import AppConfigKillSwitchFlags, FileKillSwitchFlags
    from telemetry_shunt.core import contract

    if params.get("kill_switch_file"):
        return FileKillSwitchFlags(params["kill_switch_file"])
    sandbox_file = sandbox_kill_switch_file(endpoint or os.environ.get("AWS_ENDPOINT_URL"))
    if sandbox_file:
        progress(f"endpoint is the sandbox: kill switch is the local file {sandbox_file} (moto has no AppConfig)")
        return FileKillSwitchFlags(sandbox_file)
    return AppConfigKillSwitchFlags(
        make_client(session, "appconfig", endpoint_url=endpoint),
        make_client(session, "appconfigdata", endpoint_url=endpoint),
        application=params.get("appconfig_application") or contract.APPCONFIG_APPLICATION,
        environment=params.get("appconfig_environment") or contract.APPCONFIG_ENVIRONMENT,
        profile=params.get("appconfig_profile") or contract.APPCONFIG_PROFILE,
        strategy=params.get("appconfig_strategy"),
    )


def sandbox_kill_switch_file(endpoint: str | None) -> str | None:
    """The sandbox's kill-switch file when ``endpoint`` is a running sandbox (its ``sandbox.json`` in
    ``SHUNT_SANDBOX_DIR``, default ``.shunt/sandbox``), else None."""
    if not endpoint:
        return None
    path = Path(os.environ.get("SHUNT_SANDBOX_DIR", ".shunt/sandbox")) / "sandbox.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if info.get("endpoint_url", "").rstrip("/") != endpoint.rstrip("/"):
        return None
    return info.get("env", {}).get("SHUNT_KILL_SWITCH_FILE")


def plan_options(func: Callable) -> Callable:
    func = click.option("--max-concurrency-percent", type=int, default=50, show_default=True,
                        help="SSM MaxConcurrency per batch, as a percentage of the batch.")(func)
    func = click.option("--max-errors-percent", type=int, default=10, show_default=True,
                        help="Failures a batch tolerates (SSM MaxErrors), as a percentage rounded down; "
                             "the one-box canary tolerates none.")(func)
    func = click.option("--batch-size", type=int, default=50, show_default=True,
                        help="Instance ids per SendCommand after the one-box canary (1-50).")(func)
    func = click.option("--az", "azs", type=AZ, multiple=True,
                        help="Zone to include, in rollout order (repeat). Default: every zone of the fleet, sorted.")(func)
    func = click.option("--fleet", type=FLEET, required=True,
                        help="Value of the telemetry-shunt:fleet tag, taken literally (no wildcards).")(func)
    return func


def _check_plan_params(params: dict[str, Any]) -> None:
    """Fail on bad numbers before any AWS call (the planner checks them again)."""
    from telemetry_shunt.core.rollout_plan import plan_rollout

    try:
        plan_rollout([], batch_size=params["batch_size"], max_errors_percent=params["max_errors_percent"],
                     max_concurrency_percent=params["max_concurrency_percent"])
    except ShuntError as exc:
        if "fleet is empty" not in str(exc):
            raise


def _plan(ctx: Context, params: dict[str, Any], engine=None):
    from telemetry_shunt.core.rollout_plan import plan_rollout

    engine = engine or ctx.engine()
    progress(f"discovering fleet {params['fleet']!r} ...")
    hosts = engine.discover(params["fleet"])
    if not hosts:
        raise ShuntError(f"fleet {params['fleet']!r} is empty: no running instance is tagged "
                         f"telemetry-shunt:fleet={params['fleet']}")
    plan = plan_rollout(hosts, batch_size=params["batch_size"], az_order=list(params["azs"]) or None,
                        max_errors_percent=params["max_errors_percent"],
                        max_concurrency_percent=params["max_concurrency_percent"])
    return engine, plan


def _settings(params: dict[str, Any]):
    from telemetry_shunt.agent_rollout.engine import RolloutSettings

    settings = RolloutSettings(
        bake_seconds=params["bake_seconds"], poll_seconds=params["poll_seconds"],
        heartbeat_period_seconds=params["heartbeat_period_seconds"],
        command_timeout_seconds=params["command_timeout_seconds"], lease_seconds=params["lease_seconds"],
        resource_prefix=params["prefix"], package=params["package"], extra_alarms=tuple(params["alarms"]),
        rollback_version=params["rollback_version"],
    )
    settings.validate()
    return settings


def _next_step(state) -> str:
    meta = state.meta
    if meta["status"] in ("completed", "rolled_back", "halted"):
        return f"rollout is {meta['status']}: nothing to resume"
    if meta["status"] == "rolling_back":
        return "would finish rolling back " + ", ".join(meta.get("rollback_zones", []))
    for az in meta["zone_order"]:
        if meta["zones"][az] == "done":
            continue
        for key, wave in state.waves.items():
            if not key.startswith(az + "/") or wave.phase == "baked":
                continue
            if wave.phase == "failed":
                return f"would halt and roll back {az} ({wave.reason})"
            for b in meta["zone_batches"][az]:
                batch = state.batches[b]
                if key == f"{az}/{batch.wave}" and batch.phase != "done":
                    return f"would continue in {az} with batch {b} ({batch.phase})"
            return f"would bake {key} again from the start, then go on"
    return "would mark the rollout completed"


class Interrupted(ShuntError):
    exit_code = 130


def _interruptible(rollout_id: str, run: Callable[[], Any]) -> Any:
    """Ctrl-C: the last transition is persisted and the lease released; say how to continue."""
    try:
        return run()
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; state is saved: run 'shunt rollout resume {rollout_id}' to continue") from None


def _finish(state, output: str) -> None:
    from telemetry_shunt.agent_rollout.engine import RolloutStopped, summarize
    from telemetry_shunt.agent_rollout.state import COMPLETED

    summary = summarize(state)
    _render_summary(summary, output)
    failed = sum(z.get("failed", 0) for z in summary["zones"])
    if failed:
        progress(f"warning: {failed} host(s) failed the upgrade within MaxErrors and keep their old version: "
                 f"'shunt rollout status {state.rollout_id} --hosts' lists them")
    if state.status != COMPLETED and state.status != "running":
        raise RolloutStopped(f"rollout {state.rollout_id} {state.status}: {state.meta.get('reason')}")


def _render_summary(summary: dict[str, Any], output: str) -> None:
    if output == "json":
        render(summary, output)
        return
    render({k: v for k, v in summary.items() if k != "zones"}, output)
    click.echo("")
    # every zone's columns (a halted zone has rolled_back, a finished one may not)
    columns = list(dict.fromkeys(c for zone in summary["zones"] for c in zone))
    render(summary["zones"], output, columns=columns)


@click.group(name="rollout", help=__doc__, short_help="Staged agent rollouts: plan, start, status, resume, abort, rollback.")
def rollout() -> None:
    pass


@rollout.command("plan")
@plan_options
@output_option
@aws_options
@cli_boundary
def plan_cmd(**params: Any) -> None:
    """Discover the fleet and print the plan: zones one at a time, one-box then batches of <= 50."""
    _check_plan_params(params)
    ctx = Context(params)
    _, plan = _plan(ctx, params)
    if params["output"] == "json":
        render(plan.to_dict(), "json")
    else:
        render(plan.summary(), "table")
    progress(f"{plan.host_count} hosts, {len(plan.zones)} zones, {len(plan.batches)} commands")


def run_options(func: Callable) -> Callable:
    func = click.option("--lease-seconds", type=FiniteFloat(1, 86_400), default=300, show_default=True,
                        help="Fleet lease length; renewed while the controller works.")(func)
    func = click.option("--command-timeout-seconds", type=FiniteFloat(1, 172_800), default=900, show_default=True,
                        help="A batch still in progress after this is cancelled; unfinished hosts count as failed.")(func)
    func = click.option("--heartbeat-period-seconds", type=FiniteFloat(1, 3_600), envvar="SHUNT_HEARTBEAT_PERIOD_SECONDS",
                        default=HEARTBEAT_PERIOD_SECONDS, show_default=True,
                        help="How often hosts publish heartbeats (env SHUNT_HEARTBEAT_PERIOD_SECONDS).")(func)
    func = click.option("--poll-seconds", type=FiniteFloat(0.1, 3_600), default=30, show_default=True,
                        help="How often the bake checks alarms and the kill switch.")(func)
    func = click.option("--bake-seconds", type=FiniteFloat(1, 604_800), default=600, show_default=True,
                        help="Bake after each wave; at least one heartbeat period.")(func)
    return func


@rollout.command("start", epilog=EXIT_CODES_HELP)
@plan_options
@click.option("--version", "version", type=VERSION, required=True,
              help="Agent version to roll out (must be one the upgrade document allows, or exist in the package).")
@click.option("--package", type=PACKAGE, default=None, help="SSM Distributor package holding the versions "
              "(default: <prefix>-Agent-Package).")
@click.option("--prefix", type=PREFIX, default=DEFAULT_RESOURCE_PREFIX, show_default=True,
              help="Resource prefix of the SSM documents and heartbeat alarms.")
@click.option("--alarm", "alarms", type=ALARM_NAME, multiple=True,
              help="Extra CloudWatch alarm that must stay OK (repeat).")
@click.option("--rollback-version", type=VERSION, default=None,
              help="Version a rollback installs. Default: each host's current version, read from its "
                   "heartbeats (preflight fails if a host's version is unclear).")
@click.option("--rollout-id", type=ROLLOUT_ID, default=None, help="Id for the rollout (default: generated).")
@click.option("--create-state-dir", is_flag=True,
              help="With --state-dir: create the directory if it does not exist (else a missing one is an error).")
@run_options
@click.option("--dry-run", is_flag=True, help="Run preflight and print the plan; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@state_options
@kill_switch_options
@output_option
@aws_options
@cli_boundary
def start_cmd(**params: Any) -> None:
    """Preflight, take the fleet lease, and roll out zone by zone (one-box, bake, rest, bake)."""
    settings = _settings(params)
    _check_plan_params(params)
    ctx = Context(params)
    engine = ctx.engine()
    # a second operator learns that the fleet is locked before discovery and a long preflight
    engine.check_lease(params["fleet"])
    engine, plan = _plan(ctx, params, engine)
    progress("preflight: kill switch, version, documents, alarms, SSM agents ...")
    check = engine.preflight(plan, params["version"], settings)
    if params["dry_run"]:
        result = {"dry_run": True, "preflight": check.rows(), "plan": plan.summary()}
        if params["output"] == "json":
            render(result, "json")
        else:
            render(check.rows(), "table")
            click.echo("")
            render(plan.summary(), "table")
        check.raise_if_failed()
        return
    check.raise_if_failed()
    confirm(params["yes"], f"Roll out {params['version']} to {plan.host_count} hosts of fleet {params['fleet']!r}")
    from telemetry_shunt.agent_rollout.engine import new_rollout_id

    rollout_id = params["rollout_id"] or new_rollout_id(ctx.clock)
    state = _interruptible(rollout_id, lambda: engine.start(
        fleet=params["fleet"], version=params["version"], plan=plan, settings=settings, rollout_id=rollout_id,
        preflight=check))
    _finish(state, params["output"])


@rollout.command("status")
@click.argument("rollout_id", type=ROLLOUT_ID, required=False)
@click.option("--hosts", "show_hosts", is_flag=True, help="One row per host instead of per zone.")
@state_options
@output_option
@aws_options
@cli_boundary
def status_cmd(rollout_id: str | None, show_hosts: bool, **params: Any) -> None:
    """Show one rollout (per zone, or per host), or list rollouts when no id is given."""
    from telemetry_shunt.agent_rollout.clock import iso
    from telemetry_shunt.agent_rollout.engine import summarize

    ctx = Context(params)
    if rollout_id is None:
        rows = [{"rollout_id": m["rollout_id"], "fleet": m["fleet"], "version": m["version"],
                 "status": m["status"], "created_at": iso(m["created_at"]), "reason": m.get("reason")}
                for m in ctx.store.list_rollouts()]
        render(rows, params["output"])
        return
    state = ctx.store.load(rollout_id)
    if show_hosts:
        rows = []
        for b in state.batches.values():
            for iid in b.instance_ids:
                rows.append({"instance_id": iid, "az": b.az, "batch": b.batch_id, "kind": b.kind,
                             "phase": b.phase, "result": b.hosts.get(iid, "-")})
        render(rows, params["output"])
        return
    summary = summarize(state)
    lease = ctx.store.read_lease(state.meta["fleet"])
    now = ctx.clock.now()
    summary["controller"] = (f"{lease.owner} (lease until {iso(lease.expires_at)})"
                             if lease and lease.expires_at > now and lease.rollout_id == rollout_id else
                             "none" + (" (resume it to continue)" if state.status in ("running", "aborted",
                                                                                         "rolling_back") else ""))
    _render_summary(summary, params["output"])


@rollout.command("resume", epilog=EXIT_CODES_HELP)
@click.argument("rollout_id", type=ROLLOUT_ID)
@click.option("--dry-run", is_flag=True, help="Show where the rollout would continue; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@state_options
@kill_switch_options
@output_option
@aws_options
@cli_boundary
def resume_cmd(rollout_id: str, **params: Any) -> None:
    """Continue an interrupted or aborted rollout exactly where its state says (nothing is sent twice)."""
    from telemetry_shunt.agent_rollout.engine import summarize

    ctx = Context(params)
    state = ctx.store.load(rollout_id)
    if params["dry_run"]:
        _render_summary(summarize(state), params["output"])
        progress(f"dry run: {_next_step(state)}; nothing changed")
        return
    if state.status not in ("completed", "rolled_back", "halted"):
        confirm(params["yes"], f"Resume rollout {rollout_id} ({state.status})")
    engine = ctx.engine()
    state = _interruptible(rollout_id, lambda: engine.resume(rollout_id))
    _finish(state, params["output"])


@rollout.command("abort", epilog=EXIT_CODES_HELP)
@click.argument("rollout_id", type=ROLLOUT_ID)
@click.option("--dry-run", is_flag=True, help="Show the rollout and who would be asked to stop; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@state_options
@kill_switch_options
@output_option
@aws_options
@cli_boundary
def abort_cmd(rollout_id: str, **params: Any) -> None:
    """Stop a rollout before its next batch or bake check; hosts keep the version they have."""
    from telemetry_shunt.agent_rollout.engine import summarize
    from telemetry_shunt.agent_rollout.state import FINAL_STATUSES

    ctx = Context(params)
    state = ctx.store.load(rollout_id)
    if state.status in FINAL_STATUSES:
        _render_summary(summarize(state), params["output"])
        progress(f"rollout {rollout_id} is already {state.status}: nothing to abort")
        return
    if params["dry_run"]:
        lease = ctx.store.read_lease(state.meta["fleet"])
        _render_summary(summarize(state), params["output"])
        who = (f"controller {lease.owner} would stop at its next check"
               if lease and lease.rollout_id == rollout_id and lease.expires_at > ctx.clock.now()
               else "no controller runs: the rollout would be marked aborted now")
        progress(f"dry run: {who}; nothing changed")
        return
    confirm(params["yes"], f"Abort rollout {rollout_id}")
    state = ctx.engine().request_abort(rollout_id)
    _render_summary(summarize(state), params["output"])


@rollout.command("rollback", epilog=EXIT_CODES_HELP)
@click.argument("rollout_id", type=ROLLOUT_ID)
@click.option("--dry-run", is_flag=True, help="List the hosts that would be rolled back; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@state_options
@kill_switch_options
@output_option
@aws_options
@cli_boundary
def rollback_cmd(rollout_id: str, dry_run: bool, **params: Any) -> None:
    """Roll back every host this rollout upgraded, newest zone first, in batches of <= 50."""
    ctx = Context(params)
    state = ctx.store.load(rollout_id)
    engine = ctx.engine()
    targets = {az: engine.hosts_to_roll_back(state, az) for az in reversed(state.meta["zone_order"])}
    targets = {az: ids for az, ids in targets.items() if ids}
    if dry_run:
        render([{"az": az, "hosts": len(ids), "instance_ids": ids} for az, ids in targets.items()],
               params["output"])
        return
    confirm(params["yes"], f"Roll back {sum(len(v) for v in targets.values())} hosts of rollout {rollout_id}")
    state = _interruptible(rollout_id, lambda: engine.rollback(rollout_id))
    from telemetry_shunt.agent_rollout.engine import summarize

    _render_summary(summarize(state), params["output"])
    if state.status != "rolled_back":
        from telemetry_shunt.agent_rollout.engine import RolloutStopped

        raise RolloutStopped(f"rollback of {rollout_id} ended {state.status}: {state.meta.get('reason')}")
