"""KillSwitch: AppConfig application, feature-flag profile, environment, all-at-once strategy, grants."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
from aws_cdk import App, Duration, Stack, Token
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Capture, Match, Template

from telemetry_shunt.constructs.kill_switch import KillSwitch
from telemetry_shunt.core.contract import (
    APPCONFIG_APPLICATION,
    APPCONFIG_ENVIRONMENT,
    APPCONFIG_PROFILE,
    GLOBAL_FLAG,
    kill_switch_strategy_name,
)
from telemetry_shunt.core.killswitch import FLAG_KEY_PATTERN, feature_flags_content, region_of_az, telemetry_enabled
from telemetry_shunt.errors import ValidationError
from tools.cdkcheck import lint_template, synth_with_nag

AZS = ["us-east-1a", "us-east-1b", "us-east-1c"]


@pytest.fixture(scope="module")
def synthesized() -> dict[str, Any]:
    app = App()
    stack = Stack(app, "KillSwitchTest")
    switch = KillSwitch(stack, "KillSwitch", availability_zones=AZS)
    reader = iam.Role(stack, "Reader", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"))
    switch.grant_read(reader)
    assembly, findings = synth_with_nag(app)
    template = assembly.get_stack_by_name("KillSwitchTest").template
    return {"template": Template.from_json(template), "json": template, "nag": findings, "stack": stack,
            "switch": switch}


@pytest.fixture(scope="module")
def template(synthesized: dict[str, Any]) -> Template:
    return synthesized["template"]


def test_application_environment_and_feature_flag_profile(template: Template) -> None:
    template.resource_count_is("AWS::AppConfig::Application", 1)
    template.has_resource_properties("AWS::AppConfig::Application", {"Name": APPCONFIG_APPLICATION})
    template.resource_count_is("AWS::AppConfig::Environment", 1)
    template.has_resource_properties("AWS::AppConfig::Environment", {
        "Name": APPCONFIG_ENVIRONMENT,
        "ApplicationId": {"Fn::GetAtt": [Match.string_like_regexp("^KillSwitch"), "ApplicationId"]},
    })
    template.has_resource_properties("AWS::AppConfig::ConfigurationProfile", {
        "Name": APPCONFIG_PROFILE,
        "LocationUri": "hosted",
        "Type": "AWS.AppConfig.FeatureFlags",
    })


def test_all_at_once_strategy_without_bake(template: Template) -> None:
    template.resource_count_is("AWS::AppConfig::DeploymentStrategy", 1)
    template.has_resource_properties("AWS::AppConfig::DeploymentStrategy", {
        "DeploymentDurationInMinutes": 0,
        "GrowthFactor": 100,
        "GrowthType": "LINEAR",
        "FinalBakeTimeInMinutes": 0,
        "ReplicateTo": "NONE",
        "Name": kill_switch_strategy_name(),
    })


def test_initial_flags_are_deployed_from_the_template(template: Template) -> None:
    content = Capture()
    template.has_resource_properties("AWS::AppConfig::HostedConfigurationVersion", {
        "ContentType": "application/json",
        "Content": content,
        "ConfigurationProfileId": {"Fn::GetAtt": [Match.string_like_regexp("^KillSwitchProfile"),
                                                  "ConfigurationProfileId"]},
    })
    flags = json.loads(content.as_string())
    assert flags["version"] == "1"
    assert set(flags) == {"version", "flags", "values"}
    assert list(flags["flags"]) == [GLOBAL_FLAG, *(f"telemetry-{az}" for az in AZS)]
    assert all(re.match(FLAG_KEY_PATTERN, key) for key in flags["flags"])
    assert all(set(f) == {"name", "description"} and len(f["name"]) <= 64 for f in flags["flags"].values())
    assert flags["values"] == {key: {"enabled": True} for key in flags["flags"]}
    assert all(telemetry_enabled(flags["values"], az) for az in AZS)

    template.has_resource_properties("AWS::AppConfig::Deployment", {
        "ConfigurationVersion": {"Fn::GetAtt": [Match.string_like_regexp("^KillSwitchInitialFlags"), "VersionNumber"]},
        "DeploymentStrategyId": {"Fn::GetAtt": [Match.string_like_regexp("^KillSwitchAllAtOnce"), "Id"]},
        "EnvironmentId": {"Fn::GetAtt": [Match.string_like_regexp("^KillSwitchEnvironment"), "EnvironmentId"]},
    })


def test_grant_read_allows_exactly_the_data_plane_calls_on_this_configuration(synthesized: dict[str, Any]) -> None:
    stack, switch = synthesized["stack"], synthesized["switch"]
    synthesized["template"].has_resource_properties("AWS::IAM::Policy", {
        "Roles": [{"Ref": Match.string_like_regexp("^Reader")}],
        "PolicyDocument": {"Statement": [{
            "Effect": "Allow",
            "Action": ["appconfig:StartConfigurationSession", "appconfig:GetLatestConfiguration"],
            "Resource": stack.resolve(switch.configuration_arn),
        }]},
    })
    arn = json.dumps(stack.resolve(switch.configuration_arn))
    for part in ('":appconfig:"', '"/environment/"', '"/configuration/"', '"ApplicationId"', '"EnvironmentId"',
                 '"ConfigurationProfileId"'):
        assert part in arn


def test_grant_flip_is_scoped_to_this_application_and_strategy() -> None:
    stack = Stack(App(), "Flip")
    switch = KillSwitch(stack, "KillSwitch", availability_zones=["eu-west-1a"])
    role = iam.Role(stack, "Operator", assumed_by=iam.AccountRootPrincipal())
    switch.grant_flip(role)
    statements = stack.resolve(role.node.find_child("DefaultPolicy").document.to_json())["Statement"]
    scoped, listing = statements
    assert "appconfig:StartDeployment" in scoped["Action"]
    assert "appconfig:CreateHostedConfigurationVersion" in scoped["Action"]
    assert not any(a.endswith("*") for a in scoped["Action"])
    assert "*" not in scoped["Resource"]
    assert stack.resolve(switch.deployment_strategy_arn) in scoped["Resource"]
    assert listing == {"Action": ["appconfig:ListApplications", "appconfig:ListDeploymentStrategies"],
                       "Effect": "Allow", "Resource": "*"}


def test_cfn_lint_is_clean(synthesized: dict[str, Any]) -> None:
    assert [str(f) for f in lint_template(synthesized["json"], name="KillSwitchTest")] == []


def test_cdk_nag_is_clean(synthesized: dict[str, Any]) -> None:
    assert [str(f) for f in synthesized["nag"]] == []


# --- pure pieces and validation -----------------------------------------------------------------------


# The parts of the AWS.AppConfig.FeatureFlags JSON schema (AppConfig user guide, "type reference for
# AWS.AppConfig.FeatureFlags") that a document of plain on/off flags touches.
_KEY = "^[a-z][a-zA-Z\\d_-]{0,63}$"
FEATURE_FLAGS_SCHEMA = {
    "type": "object",
    "required": ["version"],
    "additionalProperties": False,
    "properties": {
        "version": {"type": "string", "enum": ["1"]},
        "flags": {"type": "object", "additionalProperties": False, "patternProperties": {_KEY: {
            "type": "object", "additionalProperties": False, "properties": {
                "name": {"type": "string", "pattern": "^[^\\n]{1,64}$"},
                "description": {"type": "string", "maxLength": 1024},
            }}}},
        "values": {"type": "object", "additionalProperties": False, "patternProperties": {_KEY: {
            "type": "object", "additionalProperties": False, "properties": {"enabled": {"type": "boolean"}}}}},
    },
}


@pytest.mark.parametrize("azs", [AZS, ["us-west-2-lax-1a"], ["us-" + "a" * 48 + "-1a"], ["us-gov-west-1a"]])
def test_flag_document_validates_against_the_feature_flags_schema(azs: list[str]) -> None:
    content = feature_flags_content(azs, {"telemetry": False})
    jsonschema.validate(content, FEATURE_FLAGS_SCHEMA)
    assert set(content["flags"]) == set(content["values"])


def test_initial_flags_override_values() -> None:
    content = feature_flags_content(["us-east-1a", "us-east-1b"], {"telemetry-us-east-1b": False})
    assert content["values"]["telemetry-us-east-1b"] == {"enabled": False}
    assert content["values"]["telemetry-us-east-1a"] == {"enabled": True}
    assert telemetry_enabled(content["values"], "us-east-1a")
    assert not telemetry_enabled(content["values"], "us-east-1b")
    assert not telemetry_enabled(feature_flags_content(["us-east-1a"], {"telemetry": False})["values"], "us-east-1a")


@pytest.mark.parametrize(("az", "region"), [
    ("us-east-1a", "us-east-1"), ("us-gov-west-1b", "us-gov-west-1"), ("ap-southeast-2c", "ap-southeast-2"),
    ("us-west-2-lax-1a", "us-west-2"),
])
def test_az_names_accepted(az: str, region: str) -> None:
    assert region_of_az(az) == region
    assert f"telemetry-{az}" in feature_flags_content([az])["flags"]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"availability_zones": []}, "at least one Availability Zone"),
    ({"availability_zones": "us-east-1a"}, "list of AZ names.*'us-east-1a'"),
    ({"availability_zones": ["US-EAST-1A"]}, "name such as 'us-east-1a', got 'US-EAST-1A'"),
    ({"availability_zones": ["us-east-1"]}, "got 'us-east-1'"),
    ({"availability_zones": ["use1-az1"]}, "got 'use1-az1' \\(that looks like an AZ id"),
    ({"availability_zones": ["us-east-1a", "us-east-1a"]}, "distinct"),
    ({"availability_zones": ["us-east-1a", "eu-west-1a"]}, "one Region.*eu-west-1"),
    ({"availability_zones": ["us-" + "a" * 60 + "-1a"]}, "flag key must match.*'telemetry-us-aaaa"),
    ({"availability_zones": ["us-east-1a"], "poll_interval": Duration.seconds(14)}, "at least 15 s.*14 seconds"),
    ({"availability_zones": ["us-east-1a"], "poll_interval": Duration.millis(15500)}, "whole seconds"),
    ({"availability_zones": ["us-east-1a"], "initial_flags": {"Telemetry": False}}, "flag key must match.*'Telemetry'"),
    ({"availability_zones": ["us-east-1a"], "initial_flags": {"telemetry-us-east-1b": False}},
     "'telemetry-us-east-1b' is not one of this kill switch's flags"),
    ({"availability_zones": ["us-east-1a"], "initial_flags": {"telemetry": "off"}}, "True or False, got 'off'"),
])
def test_bad_input_fails_at_synth_naming_the_value(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        KillSwitch(Stack(App(), "Bad"), "KillSwitch", **kwargs)


def test_token_azs_are_refused() -> None:
    stack = Stack(App(), "Tokens")
    azs = stack.availability_zones
    assert Token.is_unresolved(azs[0])
    with pytest.raises(ValidationError, match="literal strings"):
        KillSwitch(stack, "KillSwitch", availability_zones=azs)
