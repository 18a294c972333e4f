"""The kill switch: AppConfig calls checked against the service model with Stubber, and the file backend.

moto implements none of AppConfig's environments, deployments or appconfigdata, so these tests stub
them: Stubber rejects any request whose parameters do not match the real API's shapes.
"""

from __future__ import annotations

import io
import json

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from telemetry_shunt.agent_rollout.killswitch import (
    AppConfigKillSwitchFlags,
    FileKillSwitchFlags,
    describe,
    flag_key,
)
from telemetry_shunt.errors import ShuntError, ValidationError


def body(data) -> StreamingBody:
    raw = json.dumps(data).encode() if data != "" else b""
    return StreamingBody(io.BytesIO(raw), len(raw))


@pytest.fixture
def clients():
    appconfig = boto3.client("appconfig", region_name="us-east-1")
    data = boto3.client("appconfigdata", region_name="us-east-1")
    with Stubber(appconfig) as s1, Stubber(data) as s2:
        yield appconfig, data, s1, s2
        s1.assert_no_pending_responses()
        s2.assert_no_pending_responses()


def stub_ids(stub: Stubber) -> None:
    stub.add_response("list_applications", {"Items": [{"Id": "app1234", "Name": "telemetry-shunt"}]}, {})
    stub.add_response("list_environments", {"Items": [{"Id": "env1234", "Name": "production"}]},
                      {"ApplicationId": "app1234"})
    stub.add_response("list_configuration_profiles", {"Items": [{"Id": "prof123", "Name": "kill-switch"}]},
                      {"ApplicationId": "app1234"})
    stub.add_response("list_deployment_strategies", {"Items": [
        {"Id": "AppConfig.AllAtOnce", "Name": "AppConfig.AllAtOnce"},
        {"Id": "strat12", "Name": "TelemetryShunt-KillSwitch-AllAtOnce"}]}, {})


def test_read_flags_uses_the_data_plane(clients):
    appconfig, data, _, s2 = clients
    s2.add_response("start_configuration_session", {"InitialConfigurationToken": "tok-1"}, {
        "ApplicationIdentifier": "telemetry-shunt", "EnvironmentIdentifier": "production",
        "ConfigurationProfileIdentifier": "kill-switch", "RequiredMinimumPollIntervalInSeconds": 15})
    s2.add_response("get_latest_configuration", {
        "NextPollConfigurationToken": "tok-2", "NextPollIntervalInSeconds": 15, "ContentType": "application/json",
        "Configuration": body({"telemetry": {"enabled": True}, "telemetry-us-east-1b": {"enabled": False}})},
        {"ConfigurationToken": "tok-1"})
    s2.add_response("get_latest_configuration", {
        "NextPollConfigurationToken": "tok-3", "NextPollIntervalInSeconds": 15, "ContentType": "application/json",
        "Configuration": body("")}, {"ConfigurationToken": "tok-2"})
    t = [100.0]
    switch = AppConfigKillSwitchFlags(appconfig, data, monotonic=lambda: t[0])
    flags = switch.read_flags()
    assert flags["telemetry-us-east-1b"] == {"enabled": False}
    t[0] += 5
    assert switch.read_flags() == flags  # within the 15 s minimum: served from the last read, no call
    t[0] += 15
    assert switch.read_flags() == flags  # empty body: unchanged, one call with the next token
    assert describe(flags, ["us-east-1a"]) == {
        "global": "telemetry ON (kill switch released)",
        "us-east-1a": "telemetry ON (kill switch released)",
        "us-east-1b": "telemetry OFF (kill switch engaged)",
    }


def test_kill_on_for_one_az_creates_a_version_and_deploys_it_all_at_once(clients):
    appconfig, data, s1, _ = clients
    stub_ids(s1)
    s1.add_response("list_hosted_configuration_versions", {"Items": [
        {"ApplicationId": "app1234", "ConfigurationProfileId": "prof123", "VersionNumber": 3},
        {"ApplicationId": "app1234", "ConfigurationProfileId": "prof123", "VersionNumber": 4}]},
        {"ApplicationId": "app1234", "ConfigurationProfileId": "prof123"})
    current = {"version": "1",
               "flags": {"telemetry": {"name": "telemetry"}, "telemetry-us-east-1b": {"name": "Telemetry in b"}},
               "values": {"telemetry": {"enabled": True}, "telemetry-us-east-1b": {"enabled": True}}}
    s1.add_response("get_hosted_configuration_version", {"VersionNumber": 4, "Content": body(current),
                                                         "ContentType": "application/json"},
                    {"ApplicationId": "app1234", "ConfigurationProfileId": "prof123", "VersionNumber": 4})
    expected = {"version": "1",
                "flags": {"telemetry": {"name": "telemetry"}, "telemetry-us-east-1b": {"name": "Telemetry in b"}},
                "values": {"telemetry": {"enabled": True}, "telemetry-us-east-1b": {"enabled": False}}}
    s1.add_response("create_hosted_configuration_version", {"VersionNumber": 5, "ContentType": "application/json"}, {
        "ApplicationId": "app1234", "ConfigurationProfileId": "prof123",
        "Content": json.dumps(expected, sort_keys=True).encode(), "ContentType": "application/json",
        "Description": ANY, "LatestVersionNumber": 4})
    s1.add_response("start_deployment", {"DeploymentNumber": 9, "State": "DEPLOYING"}, {
        "ApplicationId": "app1234", "EnvironmentId": "env1234", "DeploymentStrategyId": "strat12",
            "ConfigurationProfileId": "prof123", "ConfigurationVersion": "5", "Description": ANY})
    result = AppConfigKillSwitchFlags(appconfig, data).set_telemetry("us-east-1b", False)
    assert result.to_dict() == {"flag": "telemetry-us-east-1b", "telemetry": "OFF", "kill_switch": "ENGAGED",
                                "changed": True, "version": "5", "deployment": "9", "dry_run": False}


def test_an_empty_profile_is_refused(clients):
    appconfig, data, s1, _ = clients
    stub_ids(s1)
    s1.add_response("list_hosted_configuration_versions", {"Items": []},
                    {"ApplicationId": "app1234", "ConfigurationProfileId": "prof123"})
    with pytest.raises(ShuntError, match="no hosted version yet: deploy the KillSwitch stack first"):
        AppConfigKillSwitchFlags(appconfig, data).set_telemetry(None, False)


def stub_latest(s1, document):
    s1.add_response("list_hosted_configuration_versions", {"Items": [
        {"ApplicationId": "app1234", "ConfigurationProfileId": "prof123", "VersionNumber": 2}]},
        {"ApplicationId": "app1234", "ConfigurationProfileId": "prof123"})
    s1.add_response("get_hosted_configuration_version", {"VersionNumber": 2, "Content": body(document)},
                    {"ApplicationId": "app1234", "ConfigurationProfileId": "prof123", "VersionNumber": 2})


def test_an_az_the_stack_does_not_define_is_refused(clients):
    appconfig, data, s1, _ = clients
    stub_ids(s1)
    stub_latest(s1, {"version": "1", "flags": {"telemetry": {"name": "t"}}, "values": {"telemetry": {"enabled": True}}})
    with pytest.raises(ShuntError, match="flag 'telemetry-us-east-1d' is not in the kill-switch profile"):
        AppConfigKillSwitchFlags(appconfig, data).set_telemetry("us-east-1d", False)


def test_dry_run_writes_nothing(clients):
    appconfig, data, s1, _ = clients
    stub_ids(s1)
    stub_latest(s1, {"version": "1", "flags": {"telemetry": {"name": "t"}}, "values": {"telemetry": {"enabled": True}}})
    result = AppConfigKillSwitchFlags(appconfig, data).set_telemetry(None, False, dry_run=True)
    assert result.dry_run and result.changed and result.version is None  # no create/start stubbed: none made


def test_missing_appconfig_application_is_a_one_line_error(clients):
    appconfig, data, s1, _ = clients
    s1.add_response("list_applications", {"Items": [{"Id": "other12", "Name": "other"}]}, {})
    with pytest.raises(ShuntError, match="AppConfig application 'telemetry-shunt' not found"):
        AppConfigKillSwitchFlags(appconfig, data).set_telemetry(None, True)


def test_file_kill_switch_round_trip(tmp_path):
    path = tmp_path / "kill.json"
    path.write_text('{"telemetry": {"enabled": true}}')
    switch = FileKillSwitchFlags(path)
    assert switch.set_telemetry(None, False).changed
    assert not switch.set_telemetry(None, False).changed
    assert switch.set_telemetry("us-east-1a", False, dry_run=True).changed
    assert json.loads(path.read_text()) == {"telemetry": {"enabled": False}}
    with pytest.raises(ShuntError, match="does not exist"):
        FileKillSwitchFlags(tmp_path / "missing.json").read_flags()


def test_concurrent_flips_of_the_file_kill_switch_all_land(tmp_path):
    """Six writers (processes, as six ``shunt kill`` calls) flip their own zone 40 times each, ending off: every
    zone ends off and the global flag is untouched. A lost update would leave one of them on."""
    import subprocess
    import sys

    path = tmp_path / "kill.json"
    path.write_text('{"telemetry": {"enabled": true}}')
    zones = [f"us-east-1{letter}" for letter in "abcdef"]
    flipper = ("import sys\nfrom telemetry_shunt.agent_rollout.killswitch import FileKillSwitchFlags\n"
               "switch = FileKillSwitchFlags(sys.argv[1])\n"
               "for n in range(40):\n    switch.set_telemetry(sys.argv[2], n % 2 == 0)\n")
    runs = [subprocess.Popen([sys.executable, "-c", flipper, str(path), az], stderr=subprocess.PIPE, text=True)
            for az in zones]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    assert json.loads(path.read_text()) == {"telemetry": {"enabled": True},
                                            **{f"telemetry-{az}": {"enabled": False} for az in zones}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kill.json", "kill.json.lock"]  # no temporary left


def test_flag_keys_follow_the_appconfig_rule():
    assert flag_key(None) == "telemetry"
    assert flag_key("eu-west-3c") == "telemetry-eu-west-3c"
    with pytest.raises(ValidationError, match="not a valid AppConfig flag key"):
        flag_key("us_east_1a")
