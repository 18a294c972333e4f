"""Host-side scripts, run for real: bash against a fake AppConfig agent on 127.0.0.1, stub systemctl/aws."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_shunt.core import agent_files, hostside
from telemetry_shunt.core.contract import (
    AGENT_ACTIONS,
    AGENT_VERSION_PARAMETER,
    AZ_FLAG_PREFIX,
    GLOBAL_FLAG,
    HEARTBEAT_AZ_DIMENSION,
    HEARTBEAT_INSTANCE_DIMENSION,
    HEARTBEAT_METRIC,
    HEARTBEAT_NAMESPACE,
    HEARTBEAT_VERSION_DIMENSION,
    KILLSWITCH_READ_AGE_METRIC,
)
from telemetry_shunt.core.hostfiles import killswitch_rule
from telemetry_shunt.core.killswitch import telemetry_enabled
from telemetry_shunt.errors import ValidationError

pytestmark = pytest.mark.skipif(not (shutil.which("bash") and shutil.which("python3")), reason="needs bash, python3")

AZ = "us-east-1a"
SERVICE = "amazon-cloudwatch-agent"
CONFIG = hostside.HostConfig(agent_service=SERVICE)
PROFILE_PATH = hostside.appconfig_agent_path()


class FakeAppConfigAgent:
    """Serves the kill-switch profile like the AppConfig agent: 200 + flag JSON, or a chosen failure."""

    def __init__(self) -> None:
        self.flags: object = {"telemetry": {"enabled": True}}
        self.status = 200
        self.raw: bytes | None = None
        self.requests: list[str] = []
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                agent.requests.append(self.path)
                if self.path != PROFILE_PATH:
                    self.send_error(404)
                    return
                body = agent.raw if agent.raw is not None else json.dumps(agent.flags).encode()
                self.send_response(agent.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


SYSTEMCTL_STUB = """#!/usr/bin/env bash
# is-active prints the unit's state like systemctl (and is not recorded: the watcher asks on every poll).
quiet=""; [ "${2:-}" = "--quiet" ] && quiet=1
unit=${quiet:+$3}; unit=${unit:-${2:-}}
[ "$1" = is-active ] || echo "systemctl $*" >> "$STUB_DIR/calls"
case "$1" in
  is-active) if [ -e "$STUB_DIR/$unit.active" ]; then state=active; else state=inactive; fi
             [ -n "$quiet" ] || echo "$state"; [ "$state" = active ] ;;
  start|restart) touch "$STUB_DIR/$unit.active"; echo "noise on stdout" ;;
  stop) rm -f "$STUB_DIR/$unit.active" ;;
esac
"""

PYTHON3 = os.path.realpath(sys.executable)

AWS_STUB = """#!/usr/bin/env python3
import json, os, sys
with open(os.path.join(os.environ["STUB_DIR"], "aws-calls"), "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
"""


class Host:
    """A temp dir with the rendered scripts, stub systemctl/aws first on PATH, and the watcher's dirs."""

    def __init__(self, root: Path, appconfig_url: str, config: hostside.HostConfig = CONFIG) -> None:
        self.root = root
        self.appconfig_url = appconfig_url
        self.stub = root / "stub"
        self.stub.mkdir()
        for name, text in (("systemctl", SYSTEMCTL_STUB), ("aws", AWS_STUB)):
            (self.stub / name).write_text(text)
            (self.stub / name).chmod(0o755)
        # The host's python3, without a version manager's shim in front (much faster to start).
        (self.stub / "python3").symlink_to(PYTHON3)
        self.watcher = root / "telemetry-shunt-killswitch"
        self.watcher.write_text(hostside.render_killswitch_watcher(config))
        self.heartbeat = root / "telemetry-shunt-heartbeat"
        self.heartbeat.write_text(hostside.render_heartbeat_script(config))
        self.run_dir = root / "run"
        self.state_dir = root / "state"
        self.az: str | None = AZ

    def env(self) -> dict[str, str]:
        env = {
            "PATH": f"{self.stub}:{os.environ['PATH']}",
            "HOME": str(self.root),
            "STUB_DIR": str(self.stub),
            "TELEMETRY_SHUNT_APPCONFIG_URL": self.appconfig_url,
            "TELEMETRY_SHUNT_RUN_DIR": str(self.run_dir),
            "TELEMETRY_SHUNT_STATE_DIR": str(self.state_dir),
            "TELEMETRY_SHUNT_IMDS_URL": closed_port_url(),
            "TELEMETRY_SHUNT_INSTANCE_ID": "i-0123456789abcdef0",
            "TELEMETRY_SHUNT_REGION": "us-east-1",
        }
        if self.az is not None:
            env["TELEMETRY_SHUNT_AZ"] = self.az
        return env

    def check(self) -> str:
        done = subprocess.run(["bash", str(self.watcher), "--once"], env=self.env(), capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        self.last_stderr = done.stderr
        return done.stdout.strip()

    def calls(self) -> list[str]:
        path = self.stub / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def clear_calls(self) -> None:
        (self.stub / "calls").unlink(missing_ok=True)

    def agent_running(self) -> bool:
        return (self.stub / f"{SERVICE}.active").exists()

    def set_agent_running(self, running: bool) -> None:
        path = self.stub / f"{SERVICE}.active"
        path.touch() if running else path.unlink(missing_ok=True)

    def reboot(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.set_agent_running(False)
        self.clear_calls()


@pytest.fixture
def appconfig() -> Iterator[FakeAppConfigAgent]:
    agent = FakeAppConfigAgent()
    yield agent
    agent.close()


@pytest.fixture
def host(tmp_path: Path, appconfig: FakeAppConfigAgent) -> Host:
    return Host(tmp_path, appconfig.url)


# --- The watcher's decision is telemetry_enabled's decision ------------------------------------------

DECISION_CASES = [
    ({"telemetry": {"enabled": True}}, AZ),
    ({"telemetry": {"enabled": False}}, AZ),
    ({}, AZ),
    ({"telemetry-us-east-1a": {"enabled": True}}, AZ),
    ({"telemetry": {"enabled": True}, "telemetry-us-east-1a": {"enabled": False}}, AZ),
    ({"telemetry": {"enabled": True}, "telemetry-us-east-1a": {"enabled": True}}, AZ),
    ({"telemetry": {"enabled": True}, "telemetry-us-east-1b": {"enabled": False}}, AZ),
    ({"telemetry": {"enabled": False}, "telemetry-us-east-1a": {"enabled": True}}, AZ),
    ({"telemetry": {"enabled": "true"}}, AZ),
    ({"telemetry": {"enabled": 1}}, AZ),
    ({"telemetry": True}, AZ),
    ({"telemetry": {}}, AZ),
    ({"telemetry": {"enabled": True}, "telemetry-us-east-1a": {}}, AZ),
    ({"telemetry": {"enabled": True}, "telemetry-us-east-1a": {"enabled": None}}, AZ),
    ({"telemetry": {"enabled": True}, "telemetry-us-east-1a": "off"}, AZ),
    ({"telemetry": {"enabled": True, "reason": "x"}, "telemetry-us-east-1b": {"enabled": False}}, AZ),
]
# The rule without an AZ (the rollout engine's global view); the watcher always decides for its zone.
GLOBAL_CASES = [
    ({"telemetry": {"enabled": True, "reason": "x"}, "telemetry-us-east-1a": {"enabled": False}}, None),
    ({"telemetry": {"enabled": False}}, None),
    ({"telemetry": {"enabled": True}}, None),
]


RULE_ARGS = [GLOBAL_FLAG, AZ_FLAG_PREFIX]


def test_one_decision_rule_for_the_host_and_python() -> None:
    """The watcher embeds killswitch_rule.py byte for byte, and core.killswitch decides with that same module."""
    rule_file = Path(killswitch_rule.__file__)
    assert hostside.render_decide_program() == rule_file.read_text()
    watcher = hostside.render_killswitch_watcher(CONFIG)
    assert f"KILLSWITCH_RULE_PY=$(cat <<'PY'\n{rule_file.read_text()}PY\n)" in watcher
    assert telemetry_enabled.__module__ == "telemetry_shunt.core.killswitch"
    sentinel = {GLOBAL_FLAG: {"enabled": True}, "telemetry-z": {"enabled": False}}
    assert killswitch_rule.telemetry_enabled(sentinel, "z", GLOBAL_FLAG, AZ_FLAG_PREFIX) is telemetry_enabled(sentinel, "z")


@pytest.mark.parametrize(("flags", "az"), DECISION_CASES)
def test_watcher_decides_like_telemetry_enabled(flags: dict, az: str, host: Host,
                                                appconfig: FakeAppConfigAgent) -> None:
    appconfig.flags = flags
    host.az = az
    expected = "on" if telemetry_enabled(flags, az) else "off"
    assert host.check() == expected
    assert appconfig.requests == [PROFILE_PATH]
    assert host.agent_running() is (expected == "on")


_FLAG_VALUES = st.one_of(
    st.fixed_dictionaries({"enabled": st.one_of(st.booleans(), st.none(), st.integers(0, 1), st.sampled_from(["true", ""]))}),
    st.just({}), st.booleans(), st.text(max_size=3), st.none(),
)


@settings(max_examples=40, deadline=None)
@given(flags=st.dictionaries(st.sampled_from(["telemetry", "telemetry-us-east-1a", "telemetry-us-east-1b", "x"]),
                             _FLAG_VALUES),
       az=st.sampled_from([None, "us-east-1a", "us-east-1b"]))
def test_embedded_decision_program_agrees_on_generated_flags(flags: dict, az: str | None) -> None:
    done = subprocess.run([PYTHON3, "-c", hostside.render_decide_program(), *RULE_ARGS, az or ""],
                          input=json.dumps(flags), text=True, capture_output=True, check=True)
    assert done.stdout.strip() == ("on" if telemetry_enabled(flags, az) else "off")


def test_embedded_decision_program_matches_python_function() -> None:
    program = hostside.render_decide_program()
    for flags, az in DECISION_CASES + GLOBAL_CASES:
        done = subprocess.run([PYTHON3, "-c", program, *RULE_ARGS, az or ""], input=json.dumps(flags), text=True,
                              capture_output=True, check=True)
        assert done.stdout.strip() == ("on" if telemetry_enabled(flags, az) else "off"), (flags, az)


# --- Lifecycle: on, off, per-AZ off, unreachable at boot and later, back on ---------------------------


def test_flag_on_starts_the_agent_once(host: Host) -> None:
    assert host.check() == "on"
    assert host.agent_running()
    assert host.calls() == [f"systemctl start {SERVICE}"]
    host.clear_calls()
    assert host.check() == "on"
    assert host.calls() == []  # already active: nothing to do
    # Level-triggered: an agent that stopped behind the watcher's back is started again while the flag is on
    # (to keep it stopped, an operator runs the stop document, which stops the watcher first).
    host.set_agent_running(False)
    assert host.check() == "on"
    assert host.agent_running()


def test_unknown_zone_never_decides_on_the_global_flag_alone(host: Host, appconfig: FakeAppConfigAgent) -> None:
    """No AZ override and instance metadata unreachable at first boot: fail closed, not "global flag only"."""
    host.az = None
    appconfig.flags = {"telemetry": {"enabled": True}, "telemetry-us-east-1a": {"enabled": False}}
    assert host.check() == "off"
    assert not host.agent_running()
    assert "reason=imds-unavailable" in host.last_stderr
    assert appconfig.requests == []


def test_global_off_stops_a_running_agent(host: Host, appconfig: FakeAppConfigAgent) -> None:
    host.check()
    appconfig.flags = {"telemetry": {"enabled": False}}
    host.clear_calls()
    assert host.check() == "off"
    assert not host.agent_running()
    assert f"systemctl stop {SERVICE}" in host.calls()
    # Level-triggered while off: an agent started by anything else is stopped again on the next poll.
    host.set_agent_running(True)
    assert host.check() == "off"
    assert not host.agent_running()


def test_per_az_flag_off_stops_only_that_zone(host: Host, appconfig: FakeAppConfigAgent, tmp_path: Path) -> None:
    appconfig.flags = {"telemetry": {"enabled": True}, "telemetry-us-east-1a": {"enabled": False},
                       "telemetry-us-east-1b": {"enabled": True}}
    (tmp_path / "other").mkdir()
    other = Host(tmp_path / "other", appconfig.url)
    other.az = "us-east-1b"
    assert host.check() == "off"
    assert not host.agent_running()
    assert other.check() == "on"
    assert other.agent_running()


def test_unreachable_at_first_boot_fails_closed(host: Host, appconfig: FakeAppConfigAgent) -> None:
    host.appconfig_url = closed_port_url()
    host.set_agent_running(True)  # e.g. a package's post-install started it
    assert host.check() == "off"
    assert not host.agent_running()
    assert "failing closed" in host.last_stderr
    # AppConfig comes back with the flag on: the agent starts.
    host.appconfig_url = appconfig.url
    assert host.check() == "on"
    assert host.agent_running()


@pytest.mark.parametrize("failure", ["http-500", "not-json", "json-array"])
def test_unreadable_answer_at_boot_is_treated_as_unreachable(failure: str, host: Host,
                                                             appconfig: FakeAppConfigAgent) -> None:
    if failure == "http-500":
        appconfig.status = 500
    else:
        appconfig.raw = b"<html>oops" if failure == "not-json" else b'[{"telemetry": {"enabled": true}}]'
    assert host.check() == "off"
    assert not host.agent_running()


def test_unreachable_later_keeps_the_last_decision(host: Host, appconfig: FakeAppConfigAgent) -> None:
    assert host.check() == "on"
    host.appconfig_url = closed_port_url()
    host.clear_calls()
    assert host.check() == "on"
    assert host.agent_running()
    assert host.calls() == []
    assert "keeping the last decision 'on'" in host.last_stderr
    # and a kill read before the outage stays in force during it
    host.appconfig_url = appconfig.url
    appconfig.flags = {"telemetry": {"enabled": False}}
    assert host.check() == "off"
    host.appconfig_url = closed_port_url()
    assert host.check() == "off"
    assert not host.agent_running()


def test_flag_flips_back_on(host: Host, appconfig: FakeAppConfigAgent) -> None:
    assert host.check() == "on"
    appconfig.flags = {"telemetry": {"enabled": True}, "telemetry-us-east-1a": {"enabled": False}}
    assert host.check() == "off"
    assert not host.agent_running()
    appconfig.flags = {"telemetry": {"enabled": True}, "telemetry-us-east-1a": {"enabled": True}}
    host.clear_calls()
    assert host.check() == "on"
    assert host.agent_running()
    assert host.calls() == [f"systemctl start {SERVICE}"]


def test_reboot_with_appconfig_down_fails_closed_without_cache(host: Host, appconfig: FakeAppConfigAgent) -> None:
    assert host.check() == "on"
    host.reboot()
    host.appconfig_url = closed_port_url()
    assert host.check() == "off"
    assert not host.agent_running()
    assert "No such file" not in host.last_stderr


def test_reboot_with_appconfig_down_uses_fresh_last_known_good_when_configured(
        tmp_path: Path, appconfig: FakeAppConfigAgent) -> None:
    cached = Host(tmp_path, appconfig.url, hostside.HostConfig(agent_service=SERVICE, boot_cache_max_age_seconds=3600))
    assert cached.check() == "on"
    cached.reboot()
    cached.appconfig_url = closed_port_url()
    assert cached.check() == "on"
    assert cached.agent_running()
    assert "last-known-good decision 'on'" in cached.last_stderr
    # A stale cache is not trusted.
    cached.reboot()
    (cached.state_dir / "last-known-good").write_text("on 1000\n")
    assert cached.check() == "off"
    # Nor a garbled one, and it fails closed quietly.
    cached.reboot()
    (cached.state_dir / "last-known-good").write_text("on yesterday\n")
    assert cached.check() == "off"
    assert "failing closed" in cached.last_stderr and "syntax error" not in cached.last_stderr
    # Nor is a cached kill ignored.
    cached.reboot()
    appconfig_down = cached.appconfig_url
    cached.appconfig_url = appconfig.url
    appconfig.flags = {"telemetry": {"enabled": False}}
    assert cached.check() == "off"
    cached.reboot()
    cached.appconfig_url = appconfig_down
    assert cached.check() == "off"


def _wait_until(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_watcher_loop_keeps_checking_while_running(host: Host, appconfig: FakeAppConfigAgent) -> None:
    """The service mode: poll, stop on a kill, start again when released (poll interval shortened for the test)."""
    env = {**host.env(), "TELEMETRY_SHUNT_TEST_POLL_SECONDS": "1"}
    proc = subprocess.Popen(["bash", str(host.watcher)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert _wait_until(host.agent_running)
        appconfig.flags = {"telemetry": {"enabled": True}, "telemetry-us-east-1a": {"enabled": False}}
        assert _wait_until(lambda: not host.agent_running())
        appconfig.flags = {"telemetry": {"enabled": True}}
        assert _wait_until(host.agent_running)
        assert len(appconfig.requests) >= 3
        assert proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def test_watcher_rejects_unknown_arguments(host: Host) -> None:
    done = subprocess.run(["bash", str(host.watcher), "--bogus"], env=host.env(), capture_output=True, text=True)
    assert done.returncode == 64


# --- Heartbeat ---------------------------------------------------------------------------------------


def test_heartbeat_publishes_both_dimension_sets(host: Host) -> None:
    host.set_agent_running(True)
    host.state_dir.mkdir()
    (host.state_dir / "agent-version").write_text("1.300032.2b361\n")
    done = subprocess.run(["bash", str(host.heartbeat)], env=host.env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    (call,) = [json.loads(line) for line in (host.stub / "aws-calls").read_text().splitlines()]
    assert call[:2] == ["cloudwatch", "put-metric-data"]
    args = dict(zip(call[2::2], call[3::2], strict=True))
    assert args["--namespace"] == HEARTBEAT_NAMESPACE
    assert args["--region"] == "us-east-1"
    data = json.loads(args["--metric-data"])
    heartbeats = [d for d in data if d["MetricName"] == HEARTBEAT_METRIC]
    assert [d["Dimensions"] for d in heartbeats] == [
        [{"Name": HEARTBEAT_AZ_DIMENSION, "Value": AZ}],
        [{"Name": HEARTBEAT_INSTANCE_DIMENSION, "Value": "i-0123456789abcdef0"},
         {"Name": HEARTBEAT_VERSION_DIMENSION, "Value": "1.300032.2b361"}],
    ]
    assert all(d["Value"] == 1 and d["Unit"] == "Count" for d in heartbeats)
    ages = [d for d in data if d["MetricName"] == KILLSWITCH_READ_AGE_METRIC]
    assert [d["Dimensions"] for d in ages] == [[{"Name": HEARTBEAT_AZ_DIMENSION, "Value": AZ}],
                                               [{"Name": HEARTBEAT_INSTANCE_DIMENSION, "Value": "i-0123456789abcdef0"}]]
    assert all(d["Unit"] == "Seconds" and d["Value"] >= 0 for d in ages)
    assert len(data) == 4


def test_heartbeat_reports_how_stale_the_last_kill_switch_read_is(host: Host) -> None:
    host.set_agent_running(True)
    host.run_dir.mkdir()
    (host.run_dir / "last-read").write_text(f"{int(time.time()) - 3600}\n")  # an hour ago
    subprocess.run(["bash", str(host.heartbeat)], env=host.env(), check=True, capture_output=True, timeout=30)
    call = json.loads((host.stub / "aws-calls").read_text())
    data = json.loads(call[call.index("--metric-data") + 1])
    ages = {d["Value"] for d in data if d["MetricName"] == KILLSWITCH_READ_AGE_METRIC}
    assert len(ages) == 1 and 3600 <= ages.pop() < 3600 + 300


def test_watcher_records_its_last_successful_read(host: Host, appconfig: FakeAppConfigAgent) -> None:
    before = int(time.time())
    assert host.check() == "on"
    stamp = int((host.run_dir / "last-read").read_text())
    assert before <= stamp <= int(time.time())
    host.appconfig_url = closed_port_url()
    (host.run_dir / "last-read").write_text("12345\n")
    host.check()
    assert (host.run_dir / "last-read").read_text() == "12345\n"  # a failed read does not refresh it


def test_heartbeat_is_silent_while_the_agent_is_stopped(host: Host) -> None:
    done = subprocess.run(["bash", str(host.heartbeat)], env=host.env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    assert not (host.stub / "aws-calls").exists()


def test_heartbeat_reports_unknown_for_a_garbled_version_file(host: Host) -> None:
    host.set_agent_running(True)
    host.state_dir.mkdir()
    (host.state_dir / "agent-version").write_text('1.0", "evil": "x\n')
    subprocess.run(["bash", str(host.heartbeat)], env=host.env(), check=True, capture_output=True, timeout=30)
    call = json.loads((host.stub / "aws-calls").read_text())
    data = json.loads(call[call.index("--metric-data") + 1])
    assert data[1]["Dimensions"][1] == {"Name": HEARTBEAT_VERSION_DIMENSION, "Value": "unknown"}


def test_heartbeat_without_instance_metadata_fails_loudly(host: Host) -> None:
    host.set_agent_running(True)
    host.az = None
    done = subprocess.run(["bash", str(host.heartbeat)], env=host.env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "instance metadata unavailable" in done.stderr


# --- Units ---------------------------------------------------------------------------------------------


def test_units_run_the_scripts() -> None:
    watcher = hostside.render_watcher_unit(CONFIG)
    assert f"ExecStart={hostside.WATCHER_PATH}\n" in watcher
    assert "Restart=always" in watcher
    assert "WantedBy=multi-user.target" in watcher
    assert f"ExecStart={hostside.HEARTBEAT_PATH}\n" in hostside.render_heartbeat_unit(CONFIG)
    timer = hostside.render_heartbeat_timer()
    assert "OnUnitActiveSec=60\n" in timer and "WantedBy=timers.target" in timer


def test_scripts_are_valid_bash() -> None:
    for f in hostside.host_files(CONFIG):
        if f.path.startswith("/usr/local/bin/"):
            subprocess.run(["bash", "-n", "-c", f.content], check=True)


# --- SSM documents ---------------------------------------------------------------------------------------

DISTRIBUTOR = hostside.DistributorPackage(name="AmazonCloudWatchAgent", service=SERVICE)
S3 = hostside.S3Artifact(bucket_name="artifacts-bucket", key_pattern="agents/{version}/agent.rpm",
                         sha256_by_version={"1.2.0": "a" * 64, "1.3.0": "b" * 64}, service=SERVICE)


def _decoded_files(doc: dict) -> dict[str, str]:
    lines = [c for step in doc["mainSteps"] if step["action"] == "aws:runShellScript"
             for c in step["inputs"]["runCommand"]]
    out = {}
    for line in lines:
        m = re.match(r"^echo '([A-Za-z0-9+/=]+)' \| base64 -d > '(.+)\.new'$", line)
        if m:
            out[m.group(2)] = base64.b64decode(m.group(1)).decode()
    return out


@pytest.mark.parametrize("action", ["install", "upgrade", "rollback"])
def test_distributor_documents_configure_the_package_at_the_version(action: str) -> None:
    doc = hostside.agent_document(action, agent=DISTRIBUTOR, config=CONFIG)
    assert doc["schemaVersion"] == "2.2"
    assert doc["parameters"][AGENT_VERSION_PARAMETER]["allowedPattern"] == hostside.VERSION_PATTERN
    gate, package, host_setup = doc["mainSteps"]
    # first the kill-switch gate, so that the package's own install script cannot start the agent
    assert gate["name"] == "GateAgentOnKillSwitch" and gate["inputs"]["runCommand"][-1] == "systemctl daemon-reload"
    assert package == {"action": "aws:configurePackage", "name": "InstallAgentPackage", "inputs": {
        "name": "AmazonCloudWatchAgent", "action": "Install", "installationType": "Uninstall and reinstall",
        "version": "{{ version }}"}}
    assert host_setup["action"] == "aws:runShellScript"
    assert host_setup["precondition"] == {"StringEquals": ["platformType", "Linux"]}
    commands = host_setup["inputs"]["runCommand"]
    assert commands[:2] == ["#!/bin/bash", "set -euo pipefail"]
    assert f"echo '{{{{ version }}}}' > '{hostside.VERSION_FILE}'" in commands
    assert any(hostside.PREVIOUS_VERSION_FILE in c for c in commands)
    assert f"systemctl disable {SERVICE} 2>/dev/null || true" in commands
    assert f"systemctl enable {hostside.WATCHER_UNIT} {hostside.HEARTBEAT_TIMER}" in commands
    # with the agent's host budgets (drop-in, bandwidth cap, config tool), whatever the agent
    budgets = agent_files.AgentDataPath.budgets_only(agent_service=SERVICE)
    assert _decoded_files(doc) == {f.path: f.content for f in (
        *hostside.host_files(CONFIG), *agent_files.host_files(budgets, version_pattern=hostside.VERSION_PATTERN))} | {
        agent_files.gate_dropin_path(SERVICE): agent_files.render_gate_dropin(hostside.WATCHER_PATH)}


def test_s3_documents_download_verify_then_install() -> None:
    doc = hostside.agent_document("upgrade", agent=S3, config=CONFIG)
    assert doc["parameters"]["version"]["allowedValues"] == ["1.2.0", "1.3.0"]
    assert doc["mainSteps"][0]["name"] == "GateAgentOnKillSwitch"
    step = doc["mainSteps"][1]
    assert step["action"] == "aws:runShellScript"
    script = "\n".join(step["inputs"]["runCommand"])
    assert f"  '1.2.0') expected='{'a' * 64}' ;;" in script
    assert "aws s3 cp --only-show-errors 's3://artifacts-bucket/agents/{{ version }}/agent.rpm'" in script
    assert script.index("sha256sum") < script.index("rpm -U --oldpackage")
    assert 'if [ "$actual" != "$expected" ]; then' in script


def test_s3_download_script_refuses_a_bad_checksum(tmp_path: Path) -> None:
    """Run the rendered download step with a stub aws that 'downloads' the wrong bytes."""
    doc = hostside.agent_document("install", agent=hostside.S3Artifact(
        bucket_name="bucket-b", key_pattern="a/{version}.rpm", sha256_by_version={
            "1.0.0": hashlib.sha256(b"good").hexdigest()},
        service=SERVICE, install_command='echo "installed $ARTIFACT" > "$STUB_DIR/installed"'), config=CONFIG)
    step = next(s for s in doc["mainSteps"] if s["name"] == "InstallAgentArtifact")
    script = "\n".join(step["inputs"]["runCommand"]).replace("{{ version }}", "1.0.0")
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "aws").write_text('#!/usr/bin/env bash\nprintf "%s" "$PAYLOAD" > "$5"\n')
    (stub / "aws").chmod(0o755)
    env = {"PATH": f"{stub}:{os.environ['PATH']}", "STUB_DIR": str(stub)}
    bad = subprocess.run(["bash", "-c", script], env={**env, "PAYLOAD": "evil"}, capture_output=True, text=True)
    assert bad.returncode == 1 and "checksum mismatch" in bad.stderr
    assert not (stub / "installed").exists()
    good = subprocess.run(["bash", "-c", script], env={**env, "PAYLOAD": "good"}, capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    assert (stub / "installed").exists()


def _run_document_step(doc: dict, step_name: str, host: Host, version: str = "2.0.0") -> subprocess.CompletedProcess:
    """Run a runShellScript step as SSM would, with the host's absolute paths moved under a temp root."""
    step = next(s for s in doc["mainSteps"] if s["name"] == step_name)
    script = "\n".join(step["inputs"]["runCommand"]).replace("{{ version }}", version)
    root = host.root / "fsroot"
    for path in ("/usr/local/bin", hostside.SYSTEMD_DIR, hostside.STATE_DIR):
        script = script.replace(path, f"{root}{path}")
    # never touch this machine's own /etc, /var, /usr or /opt: a step with a path not moved above is refused
    escaped = re.search(r"(?<![\w/.-])/(var|etc|usr|opt)/\S*", script)
    assert escaped is None, f"step {step_name}: host path {escaped.group(0)} is outside the temp root"
    env = {**host.env(), "TELEMETRY_SHUNT_STATE_DIR": f"{root}{hostside.STATE_DIR}"}
    # As the SSM agent runs it: the commands in an executable _script.sh, started with `sh -c <path>`.
    script_path = host.root / f"_script-{step_name}.sh"
    script_path.write_text(script + "\n")
    script_path.chmod(0o700)
    return subprocess.run(["sh", "-c", str(script_path)], env=env, capture_output=True, text=True,
                          timeout=300)  # a hang guard


@pytest.mark.parametrize(("flag_on", "expected"), [(True, "running"), (False, "left stopped")])
def test_install_step_writes_the_host_files_and_obeys_the_switch(flag_on: bool, expected: str, host: Host,
                                                               appconfig: FakeAppConfigAgent) -> None:
    appconfig.flags = {"telemetry": {"enabled": flag_on}}
    host.set_agent_running(True)  # as a package's post-install would leave it
    doc = hostside.agent_document("install", agent=DISTRIBUTOR, config=CONFIG)
    done = _run_document_step(doc, "InstallKillSwitchAndHeartbeat", host)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
    root = host.root / "fsroot"
    for f in hostside.host_files(CONFIG):
        installed = Path(f"{root}{f.path}")
        assert installed.read_text() == f.content
        assert oct(installed.stat().st_mode & 0o777) == oct(int(f.mode, 8))
    assert Path(f"{root}{hostside.VERSION_FILE}").read_text() == "2.0.0\n"
    calls = host.calls()
    assert calls[:5] == [
        "systemctl daemon-reload", f"systemctl disable {SERVICE}",
        f"systemctl enable {hostside.WATCHER_UNIT} {hostside.HEARTBEAT_TIMER}",
        f"systemctl restart {hostside.WATCHER_UNIT}", f"systemctl start {hostside.HEARTBEAT_TIMER}",
    ]
    assert host.agent_running() is flag_on
    # An upgrade keeps the version it replaces.
    assert _run_document_step(doc, "InstallKillSwitchAndHeartbeat", host, version="2.1.0").returncode == 0
    assert Path(f"{root}{hostside.PREVIOUS_VERSION_FILE}").read_text() == "2.0.0\n"
    assert Path(f"{root}{hostside.VERSION_FILE}").read_text() == "2.1.0\n"


def test_stop_then_start_documents_on_an_installed_host(host: Host, appconfig: FakeAppConfigAgent) -> None:
    install = hostside.agent_document("install", agent=DISTRIBUTOR, config=CONFIG)
    assert _run_document_step(install, "InstallKillSwitchAndHeartbeat", host).returncode == 0
    assert host.agent_running()
    stop = _run_document_step(hostside.agent_document("stop", agent=DISTRIBUTOR, config=CONFIG), "StopAgent", host)
    assert stop.returncode == 0, stop.stderr
    assert not host.agent_running()
    assert f"systemctl disable --now {hostside.WATCHER_UNIT}" in host.calls()
    start_doc = hostside.agent_document("start", agent=DISTRIBUTOR, config=CONFIG)
    start = _run_document_step(start_doc, "StartAgent", host)
    assert start.returncode == 0, start.stderr
    assert host.agent_running()
    # Started while the switch is off: the kill wins.
    _run_document_step(hostside.agent_document("stop", agent=DISTRIBUTOR, config=CONFIG), "StopAgent", host)
    appconfig.flags = {"telemetry": {"enabled": True}, "telemetry-us-east-1a": {"enabled": False}}
    start = _run_document_step(start_doc, "StartAgent", host)
    assert start.returncode == 0 and "left stopped" in start.stdout
    assert not host.agent_running()


def test_start_document_refuses_a_host_without_telemetry_shunt(host: Host) -> None:
    done = _run_document_step(hostside.agent_document("start", agent=DISTRIBUTOR, config=CONFIG), "StartAgent", host)
    assert done.returncode == 1 and "run the install document first" in done.stderr


def test_stop_and_start_documents() -> None:
    stop = hostside.agent_document("stop", agent=DISTRIBUTOR, config=CONFIG)
    assert "parameters" not in stop
    commands = stop["mainSteps"][0]["inputs"]["runCommand"]
    assert f"systemctl disable --now {hostside.WATCHER_UNIT}" in commands
    assert f"systemctl stop {SERVICE}" in commands
    start = hostside.agent_document("start", agent=DISTRIBUTOR, config=CONFIG)
    commands = start["mainSteps"][0]["inputs"]["runCommand"]
    assert f"decision=$({hostside.WATCHER_PATH} --once)" in commands
    assert f"  systemctl start {SERVICE}" in commands


@pytest.mark.parametrize("action", AGENT_ACTIONS)
@pytest.mark.parametrize("agent", [DISTRIBUTOR, S3], ids=["distributor", "s3"])
def test_every_document_is_valid_and_its_shell_parses(action: str, agent: hostside.AgentPackage) -> None:
    doc = hostside.agent_document(action, agent=agent, config=CONFIG)
    assert set(doc) <= {"schemaVersion", "description", "parameters", "mainSteps"}
    assert len(json.dumps(doc)) < hostside.SSM_DOCUMENT_MAX_BYTES
    for step in doc["mainSteps"]:
        assert re.match(r"^[A-Za-z0-9_.-]{1,100}$", step["name"])
        if step["action"] == "aws:runShellScript":
            assert step["inputs"]["runCommand"][0] == "#!/bin/bash"  # SSM runs `sh -c _script.sh`: bash, not dash
            script = "\n".join(step["inputs"]["runCommand"]).replace("{{ version }}", "1.0.0")
            subprocess.run(["bash", "-n", "-c", script], check=True)
    for f in hostside.host_files(CONFIG):
        assert "{{" not in f.content and "}}" not in f.content  # SSM would treat them as parameters


# --- Validation names the bad value ------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"poll_seconds": 14}, "at least 15 s.*14"),
    ({"poll_seconds": 0}, "at least 15 s.*0"),
    ({"boot_cache_max_age_seconds": -1}, "boot cache.*-1"),
    ({"agent_service": "bad service; rm -rf /"}, "systemd unit.*bad service"),
    ({"appconfig_agent_url": "http://example.com:2772"}, "localhost.*example.com"),
])
def test_host_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        hostside.HostConfig(**{"agent_service": SERVICE, **kwargs})


@pytest.mark.parametrize("version", ["", "1.0 ", "1.0\n", "../1.0", "1.0;reboot", "{{ x }}", "-1.0", "a" * 65])
def test_invalid_versions_are_refused(version: str) -> None:
    with pytest.raises(ValidationError, match="agent version must match"):
        hostside.validate_version(version)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"sha256_by_version": {}}, "needs a SHA-256 checksum per version"),
    ({"sha256_by_version": {"1.0": "abc"}}, "SHA-256 for agent version '1.0'.*'abc'"),
    ({"sha256_by_version": {"1.0": "A" * 64}}, "64 lowercase hex"),
    ({"sha256_by_version": {"1 0": "a" * 64}}, "agent version must match.*'1 0'"),
    ({"key_pattern": "agents/agent.rpm"}, "must contain '\\{version\\}'.*'agents/agent.rpm'"),
    ({"key_pattern": "agents/{version}/{arch}.rpm"}, "no other braces"),
    ({"key_pattern": "agents/{version}/$(reboot).rpm"}, "shell command.*reboot"),
    ({"key_pattern": "agents/{version}/it's.rpm"}, "shell command"),
    ({"bucket_name": "Bad_Bucket"}, "bucket name.*'Bad_Bucket'"),
    ({"bucket_name": "bucket-b\n"}, "bucket name"),
    ({"sha256_by_version": {"1.0\n": "a" * 64}}, "agent version must match"),
    ({"sha256_by_version": {"1.0": "a" * 64 + "\n"}}, "64 lowercase hex"),
])
def test_s3_artifact_validation(kwargs: dict, match: str) -> None:
    base = {"bucket_name": "bucket-b", "key_pattern": "a/{version}.rpm", "sha256_by_version": {"1.0": "a" * 64},
            "service": SERVICE}
    with pytest.raises(ValidationError, match=match):
        hostside.S3Artifact(**{**base, **kwargs})


def test_s3_artifact_accepts_a_bucket_token() -> None:
    """A bucket defined in the same app is a CDK token at synth time; its real name is checked by S3."""
    artifact = hostside.S3Artifact(bucket_name="${Token[TOKEN.123]}", key_pattern="a/{version}.rpm",
                                   sha256_by_version={"1.0": "a" * 64}, service=SERVICE)
    assert artifact.bucket_name == "${Token[TOKEN.123]}"


def test_distributor_package_validation() -> None:
    with pytest.raises(ValidationError, match="Distributor package.*'no spaces allowed'"):
        hostside.DistributorPackage(name="no spaces allowed", service=SERVICE)
    hostside.DistributorPackage(name="arn:aws:ssm:us-east-1:123456789012:package/MyAgent", service=SERVICE)


def test_document_for_unknown_action_or_mismatched_service() -> None:
    with pytest.raises(ValidationError, match="unknown agent action 'restart'"):
        hostside.agent_document("restart", agent=DISTRIBUTOR, config=CONFIG)
    with pytest.raises(ValidationError, match="'aws-otel-collector' differs"):
        hostside.agent_document("install", agent=hostside.DistributorPackage("AWSDistroOTel-Collector",
                                                                             "aws-otel-collector"), config=CONFIG)
