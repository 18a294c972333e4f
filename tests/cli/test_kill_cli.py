"""``shunt kill on|off|status``: the file backend against moto EC2 (AZ validation), and the AppConfig
backend through the CLI with Stubber checking every request against the service model."""

from __future__ import annotations

import io
import json

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from click.testing import CliRunner
from moto import mock_aws

from telemetry_shunt.agent_rollout.killswitch import AppConfigKillSwitchFlags
from telemetry_shunt.cli import cli
from telemetry_shunt.cli import kill as kill_cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def kill_file(tmp_path, monkeypatch):
    path = tmp_path / "kill.json"
    path.write_text('{"telemetry": {"enabled": true}}')
    monkeypatch.setenv("SHUNT_KILL_SWITCH_FILE", str(path))
    with mock_aws():
        yield path


def test_kill_on_engages_and_says_telemetry_off(kill_file):
    result = run("kill", "on", "--yes", "--output", "json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["telemetry"] == "OFF" and out["kill_switch"] == "ENGAGED" and out["flag"] == "telemetry"
    assert "ENGAGE the kill switch: telemetry OFF in ALL zones" in result.stderr
    assert json.loads(kill_file.read_text())["telemetry"] == {"enabled": False}
    status = run("kill", "status", "--output", "json")
    assert json.loads(status.stdout) == {"global": "telemetry OFF (kill switch engaged)"}


def test_kill_on_one_az_then_off(kill_file):
    assert run("kill", "on", "--az", "us-east-1b", "--yes").exit_code == 0
    status = json.loads(run("kill", "status", "--output", "json").stdout)
    assert status == {"global": "telemetry ON (kill switch released)",
                      "us-east-1b": "telemetry OFF (kill switch engaged)"}
    one = json.loads(run("kill", "status", "--az", "us-east-1a", "--output", "json").stdout)
    assert one == {"global": "telemetry ON (kill switch released)", "us-east-1a": "telemetry ON (kill switch released)"}
    off = run("kill", "off", "--az", "us-east-1b", "--yes", "--output", "json")
    assert json.loads(off.stdout)["telemetry"] == "ON"
    assert json.loads(kill_file.read_text())["telemetry-us-east-1b"] == {"enabled": True}


def test_releasing_one_zone_warns_when_the_global_switch_is_engaged(kill_file):
    run("kill", "on", "--yes")
    result = run("kill", "off", "--az", "us-east-1a", "--yes", "--output", "json")
    assert "GLOBAL kill switch is still engaged" in json.loads(result.stdout)["warning"]


def test_dry_run_and_confirmation(kill_file):
    dry = run("kill", "on", "--dry-run", "--output", "json")
    assert dry.exit_code == 0 and json.loads(dry.stdout)["dry_run"] is True
    refused = run("kill", "on")
    assert refused.exit_code == 1 and "pass --yes" in refused.stderr
    assert json.loads(kill_file.read_text())["telemetry"] == {"enabled": True}


@pytest.mark.parametrize("verb", ["on", "off", "status"])
def test_unknown_az_is_one_line_exit_1(kill_file, verb):
    args = ["kill", verb, "--az", "us-east-1z"] + (["--yes"] if verb != "status" else [])
    result = run(*args)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("shunt: unknown AZ 'us-east-1z': this Region has us-east-1a")
    assert json.loads(kill_file.read_text()) == {"telemetry": {"enabled": True}}


def test_kill_on_through_appconfig_with_stubbed_clients(monkeypatch):
    monkeypatch.delenv("SHUNT_KILL_SWITCH_FILE", raising=False)
    appconfig = boto3.client("appconfig", region_name="us-east-1")
    data = boto3.client("appconfigdata", region_name="us-east-1")
    monkeypatch.setattr(kill_cli, "build_kill_switch",
                        lambda params, session, endpoint: AppConfigKillSwitchFlags(appconfig, data))
    with Stubber(appconfig) as stub, mock_aws():
        stub.add_response("list_applications", {"Items": [{"Id": "app1234", "Name": "telemetry-shunt"}]}, {})
        stub.add_response("list_environments", {"Items": [{"Id": "env1234", "Name": "production"}]},
                          {"ApplicationId": "app1234"})
        stub.add_response("list_configuration_profiles", {"Items": [{"Id": "prof123", "Name": "kill-switch"}]},
                          {"ApplicationId": "app1234"})
        stub.add_response("list_deployment_strategies", {"Items": [
            {"Id": "strat12", "Name": "TelemetryShunt-KillSwitch-AllAtOnce"}]}, {})
        stub.add_response("list_hosted_configuration_versions", {"Items": [
            {"ApplicationId": "app1234", "ConfigurationProfileId": "prof123", "VersionNumber": 1}]},
            {"ApplicationId": "app1234", "ConfigurationProfileId": "prof123"})
        raw = json.dumps({"version": "1", "flags": {"telemetry": {"name": "telemetry"}},
                          "values": {"telemetry": {"enabled": True}}}).encode()
        stub.add_response("get_hosted_configuration_version",
                          {"VersionNumber": 1, "Content": StreamingBody(io.BytesIO(raw), len(raw))},
                          {"ApplicationId": "app1234", "ConfigurationProfileId": "prof123", "VersionNumber": 1})
        stub.add_response("create_hosted_configuration_version", {"VersionNumber": 2}, {
            "ApplicationId": "app1234", "ConfigurationProfileId": "prof123", "Content": ANY,
            "ContentType": "application/json", "Description": "shunt kill on global", "LatestVersionNumber": 1})
        stub.add_response("start_deployment", {"DeploymentNumber": 7, "State": "DEPLOYING"}, {
            "ApplicationId": "app1234", "EnvironmentId": "env1234", "DeploymentStrategyId": "strat12",
            "ConfigurationProfileId": "prof123", "ConfigurationVersion": "2", "Description": "shunt kill on global"})
        result = run("kill", "on", "--yes", "--output", "json")
        stub.assert_no_pending_responses()
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["deployment"] == "7"
    assert "deployed version 2 (deployment 7, all at once)" in result.stderr


def test_help_is_unambiguous():
    text = run("kill", "--help").stdout
    assert "ENGAGE the kill switch: telemetry OFF" in text
    assert "RELEASE the kill switch: telemetry ON" in text


def test_the_sandbox_endpoint_selects_the_sandbox_kill_switch_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHUNT_KILL_SWITCH_FILE", raising=False)
    kill_file = tmp_path / "sb-kill.json"
    kill_file.write_text('{"telemetry": {"enabled": false}}')
    (tmp_path / ".shunt" / "sandbox").mkdir(parents=True)
    (tmp_path / ".shunt" / "sandbox" / "sandbox.json").write_text(json.dumps(
        {"endpoint_url": "http://127.0.0.1:4567", "env": {"SHUNT_KILL_SWITCH_FILE": str(kill_file)}}))
    with mock_aws():
        result = run("kill", "status", "--output", "json", "--endpoint-url", "http://127.0.0.1:4567")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"global": "telemetry OFF (kill switch engaged)"}
    assert "endpoint is the sandbox" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["kill", "status", "--kill-switch-file", "/etc/passwd"], "/etc/passwd is not a kill-switch file"),
        (["kill", "status", "--kill-switch-file", "/etc"], "kill-switch file (--kill-switch-file) /etc is not a regular file"),
        (["kill", "status", "--kill-switch-file", "/nonexistent/k.json"], "/nonexistent/k.json does not exist"),
        (["kill", "on", "--yes", "--az", "us-east-1a; rm"], "Availability Zone 'us-east-1a; rm'"),
        (["kill", "on", "--yes", "--region", "nowhere-1"], "'nowhere-1' is not an AWS Region name"),
        (["kill", "on", "--yes", "--endpoint-url", "not-a-url"], "endpoint URL 'not-a-url'"),
        (["kill", "sideways"], "No such command 'sideways'"),
        # AppConfig names (botocore's model: 1-64, the profile 1-128): an empty one is refused, not defaulted
        (["kill", "on", "--yes", "--appconfig-application", ""], "AppConfig name '' must be 1-64 characters"),
        (["kill", "status", "--appconfig-environment", " Prod"], "AppConfig name ' Prod' must be"),
        (["kill", "off", "--yes", "--appconfig-strategy", "a" * 65], "must be 1-64 characters"),
        (["kill", "status", "--appconfig-profile", "p\tx"], "AppConfig profile name 'p\\tx' must be 1-128"),
        (["kill", "status", "--appconfig-profile", "p" * 129], "must be 1-128 characters"),
    ],
)
def test_bad_values_are_one_line_exit_1(kill_file, args, message):
    result = run(*args)
    assert result.exit_code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("shunt: ") and message in lines[0], result.stderr
    assert json.loads(kill_file.read_text()) == {"telemetry": {"enabled": True}}
