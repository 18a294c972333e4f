"""A local moto server with a demo fleet of simulated hosts, so rollouts and the kill switch run without AWS.

\b
  shunt sandbox start --print-env      # foreground until Ctrl-C; prints the env to use
  eval "$(shunt sandbox env)"           # in another terminal
  shunt rollout plan --fleet demo
  shunt rollout start --fleet demo --version 1.1.0 --bake-seconds 10 --poll-seconds 2 --yes
  shunt kill on --az us-east-1b --yes

The server binds 127.0.0.1 only. EC2, SSM, CloudWatch and DynamoDB are moto. Each host is a directory
under STATE_DIR/hosts that runs the real SSM document steps, kill-switch watcher and heartbeat (systemd,
the package download and the agent are stand-ins). The kill switch is a local file (moto has no AppConfig),
selected by SHUNT_KILL_SWITCH_FILE and served to the hosts' watchers. Version 1.2.0-broken cannot start
anywhere; 1.3.0-badconfig refuses the agent config the documents install (the hosts keep the current one);
--broken-az ZONE makes every version but 1.0.0 fail in ZONE (a halt in a later zone).
"""

from __future__ import annotations

import json
import shlex
import signal
import time
from pathlib import Path

import click

from telemetry_shunt.cli.common import cli_boundary, output_option, progress, render
from telemetry_shunt.errors import ShuntError

DEFAULT_DIR = ".shunt/sandbox"


def _exports(env: dict[str, str]) -> str:
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())


@click.group(name="sandbox", help=__doc__, short_help="Local moto sandbox with a demo fleet (no AWS account).")
def sandbox() -> None:
    pass


@sandbox.command("start")
@click.option("--port", type=int, default=0, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@click.option("--state-dir", default=DEFAULT_DIR, show_default=True,
              help="Where the kill-switch file, audit log, sandbox.json and the hosts' directories go.")
@click.option("--instances-per-az", type=click.IntRange(1, 20), default=4, show_default=True,
              help="Demo instances in each of us-east-1a/b/c (each one runs real processes: keep it small).")
@click.option("--heartbeat-seconds", type=click.FloatRange(1, 60), default=2, show_default=True,
              help="Heartbeat timer period on the simulated hosts.")
@click.option("--broken-az", default=None, metavar="ZONE",
              help="Agents in this zone cannot start at any version but 1.0.0 (shows a halt in a later zone).")
@click.option("--print-env", is_flag=True, help="Print 'export ...' lines for the shell on stdout.")
@output_option
@cli_boundary
def start_cmd(port: int, state_dir: str, instances_per_az: int, heartbeat_seconds: float, broken_az: str | None,
              print_env: bool, output: str) -> None:
    """Start the sandbox in the foreground; Ctrl-C stops it (all sandbox data is in memory)."""
    from telemetry_shunt.agent_rollout.sandbox import FLEET, Sandbox

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    # also when started in the background (where SIGINT is ignored) or stopped by a supervisor
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    box = Sandbox(state_dir, port=port, instances_per_az=instances_per_az, heartbeat_seconds=heartbeat_seconds,
                  broken_az=broken_az)
    progress(f"sandbox: starting {instances_per_az * 3} simulated hosts (each runs the real install document) ...")
    box.start()
    try:
        if print_env:
            click.echo(_exports(box.env()))
        else:
            render({"endpoint_url": box.endpoint_url, "fleet": FLEET, "hosts": len(box.hosts),
                    "kill_switch_file": str(box.kill_switch_file), **box.env()}, output)
        broken = f"; agents in {broken_az} fail at any version but 1.0.0" if broken_az else ""
        progress(f"sandbox on {box.endpoint_url}: fleet {FLEET!r}, {len(box.hosts)} hosts in 3 zones{broken}; "
                 f"in another shell: eval \"$(shunt sandbox env --state-dir {state_dir})\"; Ctrl-C stops")
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        progress("sandbox stopped")
    finally:
        box.stop()


@sandbox.command("env")
@click.option("--state-dir", default=DEFAULT_DIR, show_default=True, help="The running sandbox's --state-dir.")
@output_option
@cli_boundary
def env_cmd(state_dir: str, output: str) -> None:
    """Print the environment for the running sandbox ('export' lines; --output json for a mapping)."""
    path = Path(state_dir) / "sandbox.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ShuntError(f"no sandbox running for {state_dir} ({path} missing): run 'shunt sandbox start'") from None
    if output == "json":
        render(info["env"], "json")
    else:
        click.echo(_exports(info["env"]))
