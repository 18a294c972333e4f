"""Real processes: ``.venv/bin/shunt`` against a moto server on 127.0.0.1 (the sandbox)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from telemetry_shunt.agent_rollout.sandbox import Sandbox
from telemetry_shunt.core.hostside import VERSION_FILE

SHUNT = str(Path(sys.executable).with_name("shunt"))
pytestmark = pytest.mark.slow

QUICK = ["--bake-seconds", "10", "--poll-seconds", "1"]  # ten heartbeat periods: generous on a loaded machine


def shunt(*args: str, env: dict[str, str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([SHUNT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SHUNT_"))}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


def test_sandbox_process_then_plan_start_status_kill(tmp_path):
    proc = subprocess.Popen(
        [SHUNT, "sandbox", "start", "--print-env", "--state-dir", str(tmp_path / "sb"), "--instances-per-az", "1",
         "--heartbeat-seconds", "1"],
        cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        env = clean_env()
        # No deadline of our own: a loaded machine may take minutes to start moto, and the sandbox bounds its
        # own bootstrap (it exits with an error if its hosts do not come up).
        while "SHUNT_HEARTBEAT_PERIOD_SECONDS" not in env:
            line = proc.stdout.readline()
            if not line:  # it ended before printing its environment: fail now, with why, not after a wait
                pytest.fail(f"shunt sandbox start exited {proc.wait(timeout=300)} before it was ready:\n"
                            f"{proc.stderr.read()}")
            if line.startswith("export "):
                key, _, value = line[len("export "):].strip().partition("=")
                env[key] = value.strip("'")
        endpoint = env.pop("AWS_ENDPOINT_URL")
        assert endpoint.startswith("http://127.0.0.1:")

        plan = shunt("rollout", "plan", "--fleet", "demo", "--output", "json", "--endpoint-url", endpoint,
                     env=env, cwd=tmp_path)
        assert plan.returncode == 0, plan.stderr
        assert [z["az"] for z in json.loads(plan.stdout)["zones"]] == ["us-east-1a", "us-east-1b", "us-east-1c"]

        start = shunt("rollout", "start", "--fleet", "demo", "--version", "1.1.0", "--rollout-id", "r-proc",
                      "--yes", "--output", "json", "--endpoint-url", endpoint, *QUICK, env=env, cwd=tmp_path)
        assert start.returncode == 0, start.stderr
        assert json.loads(start.stdout)["status"] == "completed"

        status = shunt("rollout", "status", "r-proc", "--output", "json", "--endpoint-url", endpoint,
                       env=env, cwd=tmp_path)
        assert json.loads(status.stdout)["status"] == "completed"

        kill = shunt("kill", "on", "--az", "us-east-1b", "--yes", "--endpoint-url", endpoint, env=env, cwd=tmp_path)
        assert kill.returncode == 0, kill.stderr
        blocked = shunt("rollout", "start", "--fleet", "demo", "--version", "1.0.0", "--yes",
                        "--endpoint-url", endpoint, *QUICK, env=env, cwd=tmp_path)
        assert blocked.returncode == 1
        assert blocked.stderr.strip().splitlines()[-1] == (
            "shunt: preflight failed: kill switch: ENGAGED (telemetry OFF) in us-east-1b: run 'shunt kill off' first")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)  # a hang guard
    assert proc.returncode == 0, err
    assert "sandbox stopped" in err
    assert not (tmp_path / "sb" / "sandbox.json").exists()


def test_broken_version_halts_with_exit_2_against_an_in_process_server(tmp_path):
    with Sandbox(tmp_path / "sb", instances_per_az=1, heartbeat_seconds=1) as box:
        env = {**clean_env(), **box.env()}
        endpoint = env.pop("AWS_ENDPOINT_URL")
        result = shunt("rollout", "start", "--fleet", "demo", "--version", "1.2.0-broken", "--yes",
                       "--endpoint-url", endpoint, *QUICK, env=env, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "HALTED: no heartbeat at 1.2.0-broken" in result.stderr
        # every host ran the rollback document: back at 1.0.0 with its agent running
        for host in box.fleet.hosts.values():
            assert host.path(VERSION_FILE).read_text().strip() == "1.0.0"
            deadline = time.time() + 600  # a hang guard
            while host.unit_state("sandbox-agent") != "active":
                assert time.time() < deadline, f"{host.instance_id}: agent not running after the rollback"
                time.sleep(0.2)
        env_out = shunt("sandbox", "env", "--state-dir", str(tmp_path / "sb"), "--output", "json",
                        env=clean_env(), cwd=tmp_path)
        assert json.loads(env_out.stdout)["AWS_ENDPOINT_URL"] == box.endpoint_url


def test_a_host_whose_install_fails_is_a_one_line_error_that_says_why(tmp_path, monkeypatch):
    """A sandbox whose bootstrap fails on one host says which host, the step's exit code and its last error
    lines, and where that host keeps each step's script and output; it leaves no process behind."""
    from telemetry_shunt.agent_rollout.sandbox_hosts import SimulatedHost
    from telemetry_shunt.errors import ShuntError

    real_run_step = SimulatedHost.run_step
    victims: list[SimulatedHost] = []
    hosts: dict[str, SimulatedHost] = {}

    def run_step(self, name, script, *, timeout, work_dir):
        hosts[self.instance_id] = self
        if name == "InstallKillSwitchAndHeartbeat" and self.az == "us-east-1b":
            victims.append(self)
            script = "echo 'writing the watcher' >&2\necho 'disk full' >&2\nexit 3\n"
        return real_run_step(self, name, script, timeout=timeout, work_dir=work_dir)

    monkeypatch.setattr(SimulatedHost, "run_step", run_step)
    box = Sandbox(tmp_path / "sb", instances_per_az=1, heartbeat_seconds=1)
    with pytest.raises(ShuntError) as raised:
        box.start()
    [host] = victims
    message = str(raised.value)
    assert message.startswith(f"the install document failed on 1 sandbox host(s), e.g. {host.instance_id} "
                              "(exit 3: writing the watcher | disk full); each step's script and output on that host: ")
    steps = Path(message.rsplit(": ", 1)[1])
    assert (steps / "InstallKillSwitchAndHeartbeat" / "stderr").read_text() == "writing the watcher\ndisk full\n"
    assert (steps / "GateAgentOnKillSwitch" / "_script.sh").is_file()
    assert len(hosts) == 3 and box.fleet is None
    assert all(not h.unit_pids() for h in hosts.values())  # stopped: every host's processes too
    assert not (tmp_path / "sb" / "sandbox.json").exists()


def test_a_busy_port_is_a_one_line_error(tmp_path):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = shunt("sandbox", "start", "--port", str(port), "--state-dir", str(tmp_path / "sb"),
                       env=clean_env(), cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"shunt: cannot listen on 127.0.0.1:{port}")


def test_ctrl_c_exits_130_and_resume_finishes(tmp_path):
    # One zone and a 30 s bake: the interrupt lands inside the bake however slowly the machine brings the
    # hosts up (no deadline on that: a loaded machine took over 60 s to reach the first bake). The only
    # timing this test needs is that it is scheduled once in the 30 s bake, 150 of its 0.2 s polls.
    with Sandbox(tmp_path / "sb", instances_per_az=1, heartbeat_seconds=1) as box:
        env = {**clean_env(), **box.env()}
        endpoint = env.pop("AWS_ENDPOINT_URL")
        proc = subprocess.Popen(
            [SHUNT, "rollout", "start", "--fleet", "demo", "--version", "1.1.0", "--rollout-id", "r-sigint", "--yes",
             "--endpoint-url", endpoint, "--az", "us-east-1a", "--bake-seconds", "30", "--poll-seconds", "1"],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as from a terminal
        )
        hang_guard = time.monotonic() + 900  # a hang, not a slow machine
        audit = Path(env["SHUNT_AUDIT_LOG"])
        while "bake_started" not in (audit.read_text() if audit.exists() else ""):
            if proc.poll() is not None:
                pytest.fail(f"the rollout ended (exit {proc.returncode}) before its bake was seen: "
                            f"{proc.communicate()}")
            if time.monotonic() > hang_guard:
                proc.kill()
                pytest.fail(f"no bake after 900 s: {proc.communicate()}")
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)  # a hang guard
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1] == (
            "shunt: interrupted; state is saved: run 'shunt rollout resume r-sigint' to continue")
        resumed = shunt("rollout", "resume", "r-sigint", "--yes", "--output", "json", "--endpoint-url", endpoint,
                        env=env, cwd=tmp_path, timeout=900)  # a hang guard
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["status"] == "completed"
