"""The sandbox runs the real host side: its documents are the construct's, its hosts run their steps, the
real watcher obeys ``shunt kill``, and a broken document or a zone whose agents fail halts the rollout.

One sandbox (one host per zone, us-east-1b's agents broken at any version but 1.0.0) serves the module:
its tests run in order on one worker (xdist group). Rollouts go through the real ``shunt`` CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from telemetry_shunt.agent_rollout import sandbox as sb
from telemetry_shunt.agent_rollout.sandbox_hosts import AGENT_CONFIG_PATH, AGENT_SERVICE, SimulatedHost, under_root
from telemetry_shunt.core import agent_files as af
from telemetry_shunt.core import hostside
from telemetry_shunt.core.contract import agent_document_name

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sandbox-hosts")]
SHUNT = str(Path(sys.executable).with_name("shunt"))
QUICK = ["--bake-seconds", "10", "--poll-seconds", "1"]  # ten heartbeat periods: generous on a loaded machine
BROKEN_AZ = "us-east-1b"
HANG_GUARD = 120.0


def wait_until(condition: Callable[[], object], what: str, timeout: float = HANG_GUARD) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    assert condition(), f"timed out waiting for: {what}"


def test_sandbox_documents_are_the_constructs() -> None:
    """What the sandbox installs is what AgentRolloutSupport deploys for the same agent source and agent config
    (the data path: the config is written, validated and installed by the install/upgrade/rollback documents)."""
    from aws_cdk import App, Duration, Stack
    from aws_cdk.assertions import Template

    from telemetry_shunt.constructs.agent_rollout_support import AgentRolloutSupport, AgentSource
    from telemetry_shunt.constructs.kill_switch import KillSwitch

    stack = Stack(App(), "S", env={"account": "111111111111", "region": "us-east-1"})
    ks = KillSwitch(stack, "KillSwitch", availability_zones=list(sb.AZS), poll_interval=Duration.seconds(15))
    AgentRolloutSupport(stack, "AgentRollout", kill_switch=ks, agent=AgentSource.distributor(service=AGENT_SERVICE),
                        fleet=sb.FLEET, agent_config=sb.sandbox_agent_config())
    deployed = {doc["Properties"]["Name"]: doc["Properties"]["Content"]
                for doc in Template.from_stack(stack).find_resources("AWS::SSM::Document").values()}
    ours = {agent_document_name(action): doc for action, doc in sb.sandbox_documents().items()}
    assert json.dumps(deployed, sort_keys=True) == json.dumps(ours, sort_keys=True)
    for action in ("install", "upgrade", "rollback"):
        step = next(s for s in ours[agent_document_name(action)]["mainSteps"]
                    if s["name"] == "InstallKillSwitchAndHeartbeat")["inputs"]["runCommand"]
        assert f"{af.CONFIG_TOOL_PATH} install '{af.CANDIDATE_PATH}' '{{{{ version }}}}'" in step, action
        assert not any("forwarder" in line for line in step), action  # no gateway: no forwarder


def test_paths_move_under_the_host_root_and_nothing_else(tmp_path: Path) -> None:
    script = ("#!/bin/bash\ninstall -d /var/lib/telemetry-shunt /etc/systemd/system /usr/local/bin\n"
              "x=$(/usr/local/bin/telemetry-shunt-killswitch --once) 2>/dev/null\n"
              "echo 'aGVsbG8+/etc/x' | base64 -d > '/etc/x.new'\ncat /proc/uptime\n")
    moved = under_root(script, tmp_path)
    assert moved.startswith("#!/bin/bash\n")
    assert f"install -d {tmp_path}/var/lib/telemetry-shunt {tmp_path}/etc/systemd/system {tmp_path}/usr/local/bin" in moved
    assert f"x=$({tmp_path}/usr/local/bin/telemetry-shunt-killswitch --once) 2>/dev/null" in moved
    assert f"echo 'aGVsbG8+/etc/x' | base64 -d > '{tmp_path}/etc/x.new'" in moved  # base64 text untouched
    assert "cat /proc/uptime" in moved


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sb.Sandbox]:
    sandbox = sb.Sandbox(tmp_path_factory.mktemp("sandbox"), instances_per_az=1, heartbeat_seconds=1,
                         broken_az=BROKEN_AZ)
    with sandbox:
        yield sandbox


def shunt(box: sb.Sandbox, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SHUNT_"))}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env.update(box.env())
    endpoint = env.pop("AWS_ENDPOINT_URL")
    return subprocess.run([SHUNT, *args, "--endpoint-url", endpoint], env=env, cwd=box.state_dir,
                          capture_output=True, text=True, timeout=timeout)


def hosts_in(box: sb.Sandbox, az: str) -> list[SimulatedHost]:
    assert box.fleet is not None
    return [h for h in box.fleet.hosts.values() if h.az == az]


def version_on(host: SimulatedHost) -> str:
    return host.path(hostside.VERSION_FILE).read_text().strip()


def assert_installed(host: SimulatedHost, version: str, *, agent_running: bool) -> None:
    """The files and processes the documents leave on a host."""
    config = sb.sandbox_host_config()
    for f in hostside.host_files(config):
        installed = host.path(f.path)
        assert installed.read_text() == f.content, f"{host.instance_id}: {f.path}"
        assert oct(installed.stat().st_mode & 0o777) == oct(int(f.mode, 8))
    assert version_on(host) == version
    program = host.path(f"/opt/{AGENT_SERVICE}/bin/{AGENT_SERVICE}").read_text()
    assert f"version {version} " in program
    running = host.unit_pids()
    assert {hostside.WATCHER_UNIT, hostside.HEARTBEAT_TIMER} <= set(running)
    assert (host.unit_state(AGENT_SERVICE) == "active") is agent_running
    zone = host.path(hostside.ZONE_FILE).read_text().strip()
    assert zone == host.az  # learned from (simulated) instance metadata
    assert host.path(hostside.RUN_DIR + "/decision").read_text().strip() == ("on" if agent_running else "off")
    config = sb.sandbox_agent_config().text
    assert host.path(AGENT_CONFIG_PATH).read_text() == config
    assert host.path(f"{af.STATE_DIR}/agent-config/{version}/config").read_text() == config  # saved for a rollback
    if agent_running:  # the stand-in agent read the installed config when it started
        assert host.path(f"/run/{AGENT_SERVICE}/loaded.conf").read_text() == config


def test_bootstrap_ran_the_install_document_on_every_host(box: sb.Sandbox) -> None:
    assert box.fleet is not None
    for host in box.fleet.hosts.values():
        assert_installed(host, sb.START_VERSION, agent_running=True)
        calls = host.systemctl_calls()
        assert f"systemctl enable {hostside.WATCHER_UNIT} {hostside.HEARTBEAT_TIMER}" in calls
        assert f"systemctl restart {hostside.WATCHER_UNIT}" in calls


def test_kill_on_az_stops_that_zones_agents_through_the_real_watcher(box: sb.Sandbox) -> None:
    kill = shunt(box, "kill", "on", "--az", "us-east-1c", "--yes")
    assert kill.returncode == 0, kill.stderr
    wait_until(lambda: all(h.unit_state(AGENT_SERVICE) == "inactive" for h in hosts_in(box, "us-east-1c")),
               "us-east-1c agents stopped by their watchers")
    for az in ("us-east-1a", BROKEN_AZ):
        assert all(h.unit_state(AGENT_SERVICE) == "active" for h in hosts_in(box, az))
    for host in hosts_in(box, "us-east-1c"):
        assert f"systemctl stop {AGENT_SERVICE}" in host.systemctl_calls()
        assert "kill switch off: stopping sandbox-agent" in host.path("/var/log/telemetry-shunt-killswitch.service.log")\
            .read_text()
    released = shunt(box, "kill", "off", "--az", "us-east-1c", "--yes")
    assert released.returncode == 0, released.stderr
    wait_until(lambda: all(h.unit_state(AGENT_SERVICE) == "active" for h in hosts_in(box, "us-east-1c")),
               "us-east-1c agents started again")


def test_a_broken_document_step_halts_the_first_zone(box: sb.Sandbox) -> None:
    """The upgrade document's host step calls a unit that does not exist: the command fails on the host,
    the zone halts and is rolled back with the (intact) rollback document."""
    import boto3

    ssm = boto3.client("ssm", endpoint_url=box.endpoint_url, region_name=sb.REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    good = sb.sandbox_documents()["upgrade"]
    broken = json.loads(json.dumps(good).replace(f"systemctl restart {hostside.WATCHER_UNIT}",
                                                 "systemctl restart telemetry-shunt-killswitch-typo.service"))
    name = agent_document_name("upgrade")
    ssm.update_document(Name=name, Content=json.dumps(broken), DocumentVersion="$LATEST", DocumentFormat="JSON")
    try:
        result = shunt(box, "rollout", "start", "--fleet", sb.FLEET, "--version", "1.1.0", "--yes", *QUICK)
    finally:
        # the same document again (SSM refuses identical content as a new version: differ in whitespace only)
        ssm.update_document(Name=name, Content=json.dumps(good, indent=1), DocumentVersion="$LATEST",
                            DocumentFormat="JSON")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "HALTED" in result.stderr and "us-east-1a" in result.stderr
    upgrades = [c for c in ssm.list_commands()["Commands"] if c["DocumentName"] == name]
    for host in hosts_in(box, "us-east-1a"):
        sent = [c for c in upgrades if host.instance_id in c["InstanceIds"]]
        assert len(sent) == 1
        invocation = ssm.get_command_invocation(CommandId=sent[0]["CommandId"], InstanceId=host.instance_id)
        assert invocation["Status"] == "Failed"
        assert "Unit telemetry-shunt-killswitch-typo.service not found" in invocation["StandardErrorContent"]
        wait_until(lambda h=host: version_on(h) == sb.START_VERSION, "rolled back to 1.0.0")
        wait_until(lambda h=host: h.unit_state(AGENT_SERVICE) == "active", "agent running again")
    for az in (BROKEN_AZ, "us-east-1c"):  # later zones were never touched
        assert all(version_on(h) == sb.START_VERSION for h in hosts_in(box, az))


def test_a_zone_whose_agents_fail_halts_in_zone_2_through_the_cli(box: sb.Sandbox) -> None:
    result = shunt(box, "rollout", "start", "--fleet", sb.FLEET, "--version", "1.1.0", "--rollout-id", "r-zone2",
                   "--yes", *QUICK)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"zone {BROKEN_AZ}: HALTED: no heartbeat at 1.1.0" in result.stderr, result.stderr
    status = shunt(box, "rollout", "status", "r-zone2", "--output", "json")
    assert status.returncode in (0, 2), status.stderr
    for host in hosts_in(box, "us-east-1a"):  # zone 1 upgraded and healthy
        assert_installed(host, "1.1.0", agent_running=True)
    for host in hosts_in(box, BROKEN_AZ):  # zone 2: the upgrade ran, its agent never came up; rolled back
        wait_until(lambda h=host: version_on(h) == sb.START_VERSION, "zone 2 rolled back")
        wait_until(lambda h=host: h.unit_state(AGENT_SERVICE) == "active", "zone 2 agent running at 1.0.0")
        assert host.path(hostside.PREVIOUS_VERSION_FILE).read_text().strip() == "1.1.0"
    for host in hosts_in(box, "us-east-1c"):  # zone 3 never touched
        assert_installed(host, sb.START_VERSION, agent_running=True)


def test_a_version_that_refuses_its_config_halts_and_rolls_back_through_the_cli(box: sb.Sandbox) -> None:
    """1.3.0-badconfig reads only the next config format: on each upgraded host the config tool's validation (the
    installed stand-in's --check-config) refuses the shipped config, the current config stays, the command fails,
    the zone halts and the rollback brings the agent back running the config it had."""
    import boto3

    assert box.fleet is not None
    config = sb.sandbox_agent_config().text
    before = {h.instance_id: version_on(h) for h in box.fleet.hosts.values()}
    result = shunt(box, "rollout", "start", "--fleet", sb.FLEET, "--version", "1.3.0-badconfig",
                   "--rollout-id", "r-badconfig", "--yes", *QUICK)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "HALTED" in result.stderr and "us-east-1a" in result.stderr, result.stderr
    ssm = boto3.client("ssm", endpoint_url=box.endpoint_url, region_name=sb.REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    upgrades = [c for c in ssm.list_commands()["Commands"] if c["DocumentName"] == agent_document_name("upgrade")
                and c["Parameters"]["version"] == ["1.3.0-badconfig"]]
    for host in hosts_in(box, "us-east-1a"):
        (sent,) = [c for c in upgrades if host.instance_id in c["InstanceIds"]]
        invocation = ssm.get_command_invocation(CommandId=sent["CommandId"], InstanceId=host.instance_id)
        assert invocation["Status"] == "Failed"
        assert f"{AGENT_SERVICE} refused the new config, keeping the current one" in invocation["StandardErrorContent"]
        assert "is not format=2" in invocation["StandardErrorContent"]
        assert not host.path(f"{af.STATE_DIR}/agent-config/1.3.0-badconfig").exists()  # never installed
        wait_until(lambda h=host: version_on(h) == before[h.instance_id], "rolled back")
        wait_until(lambda h=host: h.unit_state(AGENT_SERVICE) == "active", "agent running again")
        assert host.path(AGENT_CONFIG_PATH).read_text() == config
        assert host.path(f"/run/{AGENT_SERVICE}/loaded.conf").read_text() == config
        assert "version " + before[host.instance_id] + " " in host.path(
            f"/opt/{AGENT_SERVICE}/bin/{AGENT_SERVICE}").read_text()
    for az in (BROKEN_AZ, "us-east-1c"):  # later zones were never touched
        assert all(version_on(h) == before[h.instance_id] for h in hosts_in(box, az))


def _one_host(tmp_path: Path, instance_id: str, *, kill_switch_on: bool = True):
    """A fleet of one simulated host (no moto: its SSM agent is driven directly)."""
    from telemetry_shunt.agent_rollout.sandbox_hosts import ArtifactStore, HostFleet

    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps({"telemetry": {"enabled": kill_switch_on}}))
    fleet = HostFleet(tmp_path / "hosts", hosts=[{"instance_id": instance_id, "az": "us-east-1a"}],
                      region=sb.REGION, endpoint_url="http://127.0.0.1:9", flags_file=flags,
                      store=ArtifactStore(package="TelemetryShunt-Agent-Package", versions=sb.VERSIONS,
                                          healthy_version=sb.START_VERSION),
                      watcher_poll_seconds=1, heartbeat_seconds=60, credentials=sb.FAKE_CREDENTIALS)
    return fleet, fleet.hosts[instance_id]


def test_a_refused_config_changes_nothing_on_the_host_and_the_rollback_restores_the_agent(tmp_path: Path) -> None:
    """The documents' config steps on one host: the install validates and installs the config, an upgrade to a
    build that refuses it fails before touching it (same file, nothing saved for that version), and the
    rollback starts the agent again on the config it had."""
    fleet, host = _one_host(tmp_path, "i-0000000000000000c")
    docs = sb.sandbox_documents()
    config = host.path(AGENT_CONFIG_PATH)
    try:
        installed = fleet.run_document(host, docs["install"], {"version": ["1.0.0"]}, "c-install")
        assert [r.code for r in installed] == [0, 0, 0], [r.stderr for r in installed]
        assert "installed the config for sandbox-agent 1.0.0" in installed[-1].stderr
        wait_until(lambda: host.unit_state(AGENT_SERVICE) == "active", "the agent started by the watcher")
        assert config.read_text() == sb.sandbox_agent_config().text
        inode = config.stat().st_ino

        refused = fleet.run_document(host, docs["upgrade"], {"version": ["1.3.0-badconfig"]}, "c-bad")
        assert [r.code for r in refused] == [0, 0, 1], [r.stderr for r in refused]
        assert "sandbox-agent refused the new config, keeping the current one" in refused[-1].stderr
        assert "this build reads only format=2" in refused[-1].stderr
        assert config.stat().st_ino == inode and config.read_text() == sb.sandbox_agent_config().text
        assert not host.path(f"{af.STATE_DIR}/agent-config/1.3.0-badconfig").exists()
        assert version_on(host) == "1.0.0"  # the step stopped before recording the new version
        # The package step replaced and stopped the agent before the config step ran (Distributor's "Uninstall
        # and reinstall"): this host's agent is down until the rollback.
        assert host.unit_state(AGENT_SERVICE) != "active"

        back = fleet.run_document(host, docs["rollback"], {"version": ["1.0.0"]}, "c-back")
        assert [r.code for r in back] == [0, 0, 0], [r.stderr for r in back]
        wait_until(lambda: host.unit_state(AGENT_SERVICE) == "active", "the agent running again at 1.0.0")
        assert host.path(f"/run/{AGENT_SERVICE}/loaded.conf").read_text() == sb.sandbox_agent_config().text
        assert config.read_text() == sb.sandbox_agent_config().text
    finally:
        fleet.close()


def test_a_bad_config_in_the_document_is_refused_and_the_installed_one_kept(tmp_path: Path) -> None:
    """The same, with the build unchanged and the document's config bad (another format): refused by 1.1.0's
    validate command, nothing saved for 1.1.0, the 1.0.0 config in place, and the rollback restarts on it."""
    import base64

    fleet, host = _one_host(tmp_path, "i-0000000000000000e")
    good = sb.sandbox_agent_config().text
    upgrade = json.dumps(sb.sandbox_documents()["upgrade"])
    bad_upgrade = json.loads(upgrade.replace(base64.b64encode(good.encode()).decode(),
                                             base64.b64encode(good.replace("format=1", "format=9").encode()).decode()))
    assert json.dumps(bad_upgrade) != upgrade
    config = host.path(AGENT_CONFIG_PATH)
    try:
        installed = fleet.run_document(host, sb.sandbox_documents()["install"], {"version": ["1.0.0"]}, "c-install")
        assert [r.code for r in installed] == [0, 0, 0], [r.stderr for r in installed]
        inode = config.stat().st_ino
        refused = fleet.run_document(host, bad_upgrade, {"version": ["1.1.0"]}, "c-bad")
        assert [r.code for r in refused] == [0, 0, 1], [r.stderr for r in refused]
        assert "refused the new config, keeping the current one" in refused[-1].stderr
        assert "format=9" in refused[-1].stderr
        assert config.stat().st_ino == inode and config.read_text() == good
        assert not host.path(f"{af.STATE_DIR}/agent-config/1.1.0").exists()
        back = fleet.run_document(host, sb.sandbox_documents()["rollback"], {"version": ["1.0.0"]}, "c-back")
        assert [r.code for r in back] == [0, 0, 0], [r.stderr for r in back]
        wait_until(lambda: host.unit_state(AGENT_SERVICE) == "active", "the agent running again at 1.0.0")
        assert host.path(f"/run/{AGENT_SERVICE}/loaded.conf").read_text() == good
    finally:
        fleet.close()


def test_an_agent_without_a_valid_config_does_not_start(tmp_path: Path) -> None:
    """The stand-in reads the installed config: with a config of another format it cannot start (the unit fails),
    so a sandbox host whose config is wrong shows it as a real one would."""
    fleet, host = _one_host(tmp_path, "i-0000000000000000d")
    try:
        installed = fleet.run_document(host, sb.sandbox_documents()["install"], {"version": ["1.0.0"]}, "c-install")
        assert [r.code for r in installed] == [0, 0, 0], [r.stderr for r in installed]
        wait_until(lambda: host.unit_state(AGENT_SERVICE) == "active", "the agent started by the watcher")
        host.path(AGENT_CONFIG_PATH).write_text("format=2\n")
        host.systemctl("restart", AGENT_SERVICE)
        wait_until(lambda: host.unit_state(AGENT_SERVICE) == "failed", "the agent failing on its config")
        assert "is not format=1" in host.path(f"/var/log/{AGENT_SERVICE}.service.log").read_text()
    finally:
        fleet.close()


def _one_host_fleet(tmp_path: Path, instance_id: str, *, enabled: bool):
    """A fleet of one simulated host in us-east-1a (no moto: the fleet's SSM agent is driven directly) whose
    kill switch reads the returned flags file, set to ``enabled``."""
    from telemetry_shunt.agent_rollout.sandbox_hosts import ArtifactStore, HostFleet

    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps({"telemetry": {"enabled": enabled}}))
    fleet = HostFleet(tmp_path / "hosts", hosts=[{"instance_id": instance_id, "az": "us-east-1a"}],
                      region=sb.REGION, endpoint_url="http://127.0.0.1:9", flags_file=flags,
                      store=ArtifactStore(package="TelemetryShunt-Agent-Package", versions=sb.VERSIONS,
                                          healthy_version=sb.START_VERSION),
                      watcher_poll_seconds=1, heartbeat_seconds=60, credentials=sb.FAKE_CREDENTIALS)
    return fleet, flags


def _install_with(tmp_path: Path, path: str, content: str) -> tuple[list, SimulatedHost]:
    """Run the install document on one simulated host (no moto: the fleet's SSM agent directly), with the
    file at ``path`` replaced by ``content`` in the document."""
    import base64

    fleet, _ = _one_host_fleet(tmp_path, "i-0000000000000000a", enabled=True)
    document = sb.sandbox_documents()["install"]
    original = next(f.content for f in hostside.host_files(sb.sandbox_host_config()) if f.path == path)
    text = json.dumps(document).replace(base64.b64encode(original.encode()).decode(),
                                        base64.b64encode(content.encode()).decode())
    assert text != json.dumps(document)
    host = fleet.hosts["i-0000000000000000a"]
    try:
        return fleet.run_document(host, json.loads(text), {"version": ["1.0.0"]}, "c-test"), host
    finally:
        fleet.close()


@pytest.mark.parametrize(("path", "breakage", "message"), [
    (f"{hostside.SYSTEMD_DIR}/{hostside.WATCHER_UNIT}", lambda text: text.replace("ExecStart=", "ExecStrat="),
     "bad unit file setting"),
    (hostside.WATCHER_PATH, lambda text: text.replace('case "${1:-}" in', 'case "${1:-}" in\n  (( ;;', 1),
     "syntax error"),
])
def test_a_broken_unit_file_or_watcher_fails_the_install_step(tmp_path: Path, path: str, breakage, message: str) -> None:
    original = next(f.content for f in hostside.host_files(sb.sandbox_host_config()) if f.path == path)
    results, host = _install_with(tmp_path, path, breakage(original))
    # the kill-switch gate, the package, then the host setup that fails
    assert [r.code == 0 for r in results] == [True, True, False], [r.stderr for r in results]
    assert message in results[-1].stderr
    assert host.unit_state(AGENT_SERVICE) != "active"


def test_the_agent_starts_only_after_the_kill_switch_decided_on_whoever_starts_it(tmp_path: Path) -> None:
    """The documents' first step gates the agent's unit (ExecCondition=<watcher> --gate): with the kill switch off,
    a start from anyone else (a package's install script) is skipped; once on, the watcher's start goes through."""
    fleet, flags = _one_host_fleet(tmp_path, "i-0000000000000000b", enabled=False)
    host = fleet.hosts["i-0000000000000000b"]
    try:
        results = fleet.run_document(host, sb.sandbox_documents()["install"], {"version": ["1.0.0"]}, "c-gate")
        assert [r.code for r in results] == [0, 0, 0], [r.stderr for r in results]
        assert "left stopped" in results[-1].stdout
        started = host.systemctl("start", AGENT_SERVICE)  # as ADOT's install script would
        assert started.returncode == 0 and host.unit_state(AGENT_SERVICE) == "inactive"
        flags.write_text('{"telemetry": {"enabled": true}}')
        wait_until(lambda: host.unit_state(AGENT_SERVICE) == "active", "the watcher starting the agent")
    finally:
        fleet.close()
