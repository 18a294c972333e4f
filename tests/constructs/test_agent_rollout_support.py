"""AgentRolloutSupport: SSM documents, state table, per-AZ heartbeat alarms, least-privilege operator role."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import App, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match, Template

from telemetry_shunt.constructs._nag import acknowledge
from telemetry_shunt.constructs.agent_rollout_support import AgentRolloutSupport, AgentSource
from telemetry_shunt.constructs.kill_switch import KillSwitch
from telemetry_shunt.core import hostside
from telemetry_shunt.core.contract import (
    AGENT_ACTIONS,
    AGENT_VERSION_PARAMETER,
    DEFAULT_STATE_TABLE_NAME,
    FLEET_TAG_KEY,
    HEARTBEAT_AZ_DIMENSION,
    HEARTBEAT_METRIC,
    HEARTBEAT_NAMESPACE,
    STATE_TABLE_PARTITION_KEY,
    STATE_TABLE_SORT_KEY,
    STATE_TABLE_TTL_ATTRIBUTE,
    agent_document_name,
    heartbeat_alarm_name,
)
from telemetry_shunt.errors import ValidationError
from tools.cdkcheck import lint_template, synth_with_nag

AZS = ["us-east-1a", "us-east-1b"]
OPERATOR_ARN = "arn:aws:iam::111111111111:role/release-engineers"
SHA = "0123456789abcdef" * 4

# What the rollout engine does, and nothing else.
OPERATOR_ACTIONS = {
    "ec2:DescribeInstances",
    "ssm:SendCommand", "ssm:ListCommands", "ssm:ListCommandInvocations", "ssm:GetCommandInvocation",
    "ssm:DescribeInstanceInformation", "ssm:CancelCommand", "ssm:DescribeDocument", "ssm:GetDocument",
    "ssm:ListDocumentVersions",
    "cloudwatch:DescribeAlarms", "cloudwatch:GetMetricData", "cloudwatch:ListMetrics",
    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query",
    "dynamodb:Scan", "dynamodb:ConditionCheckItem",
    # The state table's customer-managed key (scoped to that key; see the table statement below).
    "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey",
    "appconfig:StartConfigurationSession", "appconfig:GetLatestConfiguration",
    "appconfig:GetApplication", "appconfig:ListEnvironments", "appconfig:GetEnvironment",
    "appconfig:ListConfigurationProfiles", "appconfig:GetConfigurationProfile",
    "appconfig:ListHostedConfigurationVersions", "appconfig:GetHostedConfigurationVersion",
    "appconfig:CreateHostedConfigurationVersion", "appconfig:GetDeploymentStrategy", "appconfig:StartDeployment",
    "appconfig:GetDeployment", "appconfig:ListDeployments", "appconfig:StopDeployment",
    "appconfig:ListApplications", "appconfig:ListDeploymentStrategies",
}
# Actions that support no resource-level permissions (Service Authorization Reference), plus DescribeAlarms
# for the engine's extra alarms; all read-only except CancelCommand, which only stops commands already sent.
STAR_ACTIONS = {
    "ec2:DescribeInstances", "ssm:ListCommands", "ssm:ListCommandInvocations", "ssm:GetCommandInvocation",
    "ssm:DescribeInstanceInformation", "ssm:CancelCommand", "cloudwatch:GetMetricData", "cloudwatch:ListMetrics",
    "cloudwatch:DescribeAlarms",
    "appconfig:ListApplications", "appconfig:ListDeploymentStrategies",
}


def _build(stack: Stack, agent: AgentSource, **kwargs: Any) -> AgentRolloutSupport:
    switch = KillSwitch(stack, "KillSwitch", availability_zones=AZS)
    support = AgentRolloutSupport(stack, "AgentRollout", kill_switch=switch, agent=agent,
                                  operator_principal=iam.ArnPrincipal(OPERATOR_ARN), **{"fleet": "web", **kwargs})
    host_role = iam.Role(stack, "HostRole", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"))
    support.grant_host(host_role)
    return support


@pytest.fixture(scope="module")
def synthesized() -> dict[str, Any]:
    app = App()
    distributor = Stack(app, "Distributor")
    dist_support = _build(distributor, AgentSource.cloudwatch_agent(), fleet="payments")
    artifact = Stack(app, "Artifact")
    bucket = s3.Bucket(artifact, "Artifacts", enforce_ssl=True)
    acknowledge(bucket, "AwsSolutions-S1", "Test fixture bucket: access logging is the bucket owner's concern.")
    s3_support = _build(artifact, AgentSource.s3_artifact(
        bucket=bucket, key_pattern="agents/{version}/agent.rpm",
        sha256_by_version={"1.2.0": SHA, "1.3.0": SHA[::-1]}, service="my-agent"))
    assembly, findings = synth_with_nag(app)
    out: dict[str, Any] = {"nag": findings}
    for name, stack, support in (("distributor", distributor, dist_support), ("s3", artifact, s3_support)):
        tpl = assembly.get_stack_by_name(name.capitalize() if name == "distributor" else "Artifact").template
        out[name] = {"json": tpl, "template": Template.from_json(tpl), "stack": stack, "support": support}
    return out


@pytest.fixture(scope="module")
def dist(synthesized: dict[str, Any]) -> dict[str, Any]:
    return synthesized["distributor"]


def _documents(tpl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["Properties"]["Name"]: r["Properties"] for r in tpl["Resources"].values()
            if r["Type"] == "AWS::SSM::Document"}


# --- SSM documents ------------------------------------------------------------------------------------------


def test_one_command_document_per_action_named_by_the_contract(dist: dict[str, Any]) -> None:
    docs = _documents(dist["json"])
    assert sorted(docs) == sorted(agent_document_name(a) for a in AGENT_ACTIONS)
    for props in docs.values():
        assert props["DocumentType"] == "Command"
        assert props["DocumentFormat"] == "JSON"
        assert props["UpdateMethod"] == "NewVersion"
        assert props["TargetType"] == "/AWS::EC2::Instance"
        assert props["Content"]["schemaVersion"] == "2.2"


def test_distributor_documents_are_the_rendered_ones(dist: dict[str, Any]) -> None:
    docs = _documents(dist["json"])
    config = dist["support"].host_config
    assert config.agent_service == "amazon-cloudwatch-agent"
    assert config.poll_seconds == 45 and config.boot_cache_max_age_seconds == 0
    for action in AGENT_ACTIONS:
        expected = hostside.agent_document(action, agent=hostside.DistributorPackage(
            "AmazonCloudWatchAgent", "amazon-cloudwatch-agent"), config=config)
        assert docs[agent_document_name(action)]["Content"] == expected
    upgrade = docs[agent_document_name("upgrade")]["Content"]
    assert upgrade["parameters"][AGENT_VERSION_PARAMETER]["allowedPattern"] == hostside.VERSION_PATTERN
    steps = {s["name"]: s for s in upgrade["mainSteps"]}
    assert list(steps)[0] == "GateAgentOnKillSwitch"  # before the package's install script can start the agent
    package_step = steps["InstallAgentPackage"]
    assert package_step["action"] == "aws:configurePackage"
    assert package_step["inputs"]["name"] == "AmazonCloudWatchAgent"
    assert package_step["inputs"]["version"] == "{{ version }}"
    # and the host pieces ride along
    commands = steps["InstallKillSwitchAndHeartbeat"]["inputs"]["runCommand"]
    assert any(hostside.WATCHER_PATH in c for c in commands)
    assert any(hostside.HEARTBEAT_TIMER in c for c in commands)


def test_s3_documents_download_and_verify_from_the_bucket(synthesized: dict[str, Any]) -> None:
    s3_stack = synthesized["s3"]
    docs = _documents(s3_stack["json"])
    install = docs[agent_document_name("install")]["Content"]
    assert install["parameters"]["version"]["allowedValues"] == ["1.2.0", "1.3.0"]
    download = next(s for s in install["mainSteps"] if s["name"] == "InstallAgentArtifact")
    assert download["action"] == "aws:runShellScript"
    text = json.dumps(download["inputs"]["runCommand"])
    assert f"'1.2.0') expected='{SHA}'" in text
    assert "sha256sum" in text and "checksum mismatch" in text
    copy = next(c for c in download["inputs"]["runCommand"] if isinstance(c, dict))
    parts = copy["Fn::Join"][1]
    assert parts[0] == "aws s3 cp --only-show-errors 's3://"
    assert parts[1]["Ref"].startswith("Artifacts")
    assert parts[2] == "/agents/{{ version }}/agent.rpm' \"$ARTIFACT\""


# --- state table ---------------------------------------------------------------------------------------------


def test_state_table(dist: dict[str, Any]) -> None:
    dist["template"].has_resource("AWS::DynamoDB::Table", {
        "DeletionPolicy": "Retain",
        "Properties": {
            "TableName": DEFAULT_STATE_TABLE_NAME,
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": STATE_TABLE_PARTITION_KEY, "KeyType": "HASH"},
                          {"AttributeName": STATE_TABLE_SORT_KEY, "KeyType": "RANGE"}],
            "AttributeDefinitions": Match.array_with([
                {"AttributeName": STATE_TABLE_PARTITION_KEY, "AttributeType": "S"},
                {"AttributeName": STATE_TABLE_SORT_KEY, "AttributeType": "S"}]),
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "TimeToLiveSpecification": {"AttributeName": STATE_TABLE_TTL_ATTRIBUTE, "Enabled": True},
            "SSESpecification": {"SSEEnabled": True},
        },
    })


# --- heartbeat alarms ----------------------------------------------------------------------------------------


def test_one_heartbeat_alarm_per_az_missing_data_breaching(dist: dict[str, Any]) -> None:
    template = dist["template"]
    template.resource_count_is("AWS::CloudWatch::Alarm", len(AZS))
    for az in AZS:
        template.has_resource_properties("AWS::CloudWatch::Alarm", {
            "AlarmName": heartbeat_alarm_name(az),
            "Namespace": HEARTBEAT_NAMESPACE,
            "MetricName": HEARTBEAT_METRIC,
            "Dimensions": [{"Name": HEARTBEAT_AZ_DIMENSION, "Value": az}],
            "Statistic": "SampleCount",
            "Period": 60,
            "ComparisonOperator": "LessThanThreshold",
            "Threshold": 1,
            "EvaluationPeriods": 3,
            "DatapointsToAlarm": 3,
            "TreatMissingData": "breaching",
        })


# --- operator role -------------------------------------------------------------------------------------------


def _statements(tpl: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    out = []
    for r in tpl["Resources"].values():
        if r["Type"] == "AWS::IAM::Policy" and r["Properties"]["Roles"][0]["Ref"].startswith(role_prefix):
            out += r["Properties"]["PolicyDocument"]["Statement"]
    return out


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_operator_role_is_assumable_by_the_given_principal(dist: dict[str, Any]) -> None:
    dist["template"].has_resource_properties("AWS::IAM::Role", {
        "AssumeRolePolicyDocument": {"Statement": [{
            "Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"AWS": OPERATOR_ARN}}]},
        "MaxSessionDuration": 3600,
    })
    assert not any(r["Type"] == "AWS::IAM::Role" and r["Properties"].get("ManagedPolicyArns")
                   for r in dist["json"]["Resources"].values())


def test_operator_role_is_least_privilege(dist: dict[str, Any]) -> None:
    statements = _statements(dist["json"], "AgentRolloutOperatorRole")
    actions = {a for s in statements for a in _as_list(s["Action"])}
    assert actions == OPERATOR_ACTIONS
    assert all(s["Effect"] == "Allow" for s in statements)
    for s in statements:
        if "*" in _as_list(s["Resource"]):
            assert set(_as_list(s["Action"])) <= STAR_ACTIONS, s
            assert s["Resource"] == "*"


def test_send_command_only_with_these_documents_on_the_tagged_fleet(dist: dict[str, Any]) -> None:
    stack = dist["stack"]
    send = [s for s in _statements(dist["json"], "AgentRolloutOperatorRole") if s["Action"] == "ssm:SendCommand"]
    assert len(send) == 2
    documents = next(s for s in send if "Condition" not in s)
    assert documents["Resource"] == [stack.resolve(stack.format_arn(
        service="ssm", resource="document", resource_name=agent_document_name(a))) for a in AGENT_ACTIONS]
    fleet = next(s for s in send if "Condition" in s)
    assert fleet["Condition"] == {"StringEquals": {f"ssm:resourceTag/{FLEET_TAG_KEY}": "payments"}}
    assert fleet["Resource"] == stack.resolve(stack.format_arn(service="ec2", resource="instance", resource_name="*"))


def test_table_and_package_access_are_scoped(dist: dict[str, Any]) -> None:
    stack = dist["stack"]
    statements = _statements(dist["json"], "AgentRolloutOperatorRole")
    table = next(s for s in statements if "dynamodb:PutItem" in _as_list(s["Action"]))
    assert [r["Fn::GetAtt"][0].startswith("AgentRolloutStateTable") for r in table["Resource"]] == [True]
    key = next(s for s in statements if "kms:Decrypt" in _as_list(s["Action"]))
    assert key["Resource"]["Fn::GetAtt"][0].startswith("AgentRolloutStateTableKey")
    assert not any(a in _as_list(table["Action"]) for a in ("dynamodb:DeleteTable", "dynamodb:*"))
    describe = next(s for s in statements if "ssm:DescribeDocument" in _as_list(s["Action"]))
    package_arns = [stack.resolve(stack.format_arn(service="ssm", resource="document", account=account,
                                                   resource_name="AmazonCloudWatchAgent")) for account in (None, "")]
    assert describe["Resource"][-2:] == package_arns
    assert json.dumps(package_arns[1]).count("AWS::AccountId") == 0


# --- host grants ---------------------------------------------------------------------------------------------


def test_grant_host_reads_the_switch_and_publishes_heartbeats_only(dist: dict[str, Any]) -> None:
    statements = _statements(dist["json"], "HostRole")
    actions = {a for s in statements for a in _as_list(s["Action"])}
    assert actions == {"appconfig:StartConfigurationSession", "appconfig:GetLatestConfiguration",
                       "cloudwatch:PutMetricData"}
    put = next(s for s in statements if s["Action"] == "cloudwatch:PutMetricData")
    assert put["Condition"] == {"StringEquals": {"cloudwatch:namespace": HEARTBEAT_NAMESPACE}}


def test_grant_host_reads_only_the_artifact_keys(synthesized: dict[str, Any]) -> None:
    statements = _statements(synthesized["s3"]["json"], "HostRole")
    s3_statement = next(s for s in statements if any(a.startswith("s3:") for a in _as_list(s["Action"])))
    assert not any(a in ("s3:PutObject*", "s3:DeleteObject*", "s3:*") for a in s3_statement["Action"])
    rendered = json.dumps(s3_statement["Resource"])
    assert "/agents/*/agent.rpm" in rendered


# --- verification --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["distributor", "s3"])
def test_cfn_lint_is_clean(synthesized: dict[str, Any], name: str) -> None:
    assert [str(f) for f in lint_template(synthesized[name]["json"], name=name)] == []


def test_cdk_nag_is_clean_with_specific_acknowledgements(synthesized: dict[str, Any]) -> None:
    assert [str(f) for f in synthesized["nag"]] == []


# --- validation ----------------------------------------------------------------------------------------------


def _support(**kwargs: Any) -> AgentRolloutSupport:
    stack = Stack(App(), "Bad")
    switch = KillSwitch(stack, "KillSwitch", availability_zones=["us-east-1a"])
    return AgentRolloutSupport(stack, "AgentRollout", kill_switch=switch,
                               **{"agent": AgentSource.cloudwatch_agent(), "fleet": "web", **kwargs})


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"prefix": "9lives"}, "prefix must.*'9lives'"),
    ({"fleet": ""}, "fleet name '' must be a literal tag value"),
    ({"fleet": "a\nb"}, "fleet name 'a\\\\nb' must be a literal tag value"),
    ({"fleet": "*"}, "fleet name '\\*' must be a literal tag value.*no '\\*' or '\\?' wildcards"),
    ({"fleet": "payments-?"}, "fleet name 'payments-\\?' must be a literal"),
    ({"table_name": "x"}, "table name.*'x'"),
    ({"heartbeat_missing_minutes": 0}, "heartbeat_missing_minutes must be 1-60, got 0"),
])
def test_bad_input_fails_at_synth_naming_the_value(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        _support(**kwargs)


def test_bad_agent_service_is_refused() -> None:
    with pytest.raises(ValidationError, match="systemd unit.*'no spaces please'"):
        AgentSource.distributor(service="no spaces please")


def _bucket() -> s3.IBucket:
    return s3.Bucket.from_bucket_name(Stack(App(), "B"), "Bucket", "artifacts")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"sha256_by_version": {}}, "needs a SHA-256 checksum per version"),
    ({"sha256_by_version": {"1.0": "not-a-sha"}}, "SHA-256 for agent version '1.0'.*'not-a-sha'"),
    ({"sha256_by_version": {"1.0 beta": SHA}}, "agent version must match.*'1.0 beta'"),
    ({"key_pattern": "agent.rpm"}, "must contain '\\{version\\}'"),
])
def test_s3_artifact_without_a_valid_checksum_is_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        AgentSource.s3_artifact(**{"bucket": _bucket(), "key_pattern": "a/{version}.rpm",
                                   "sha256_by_version": {"1.0": SHA}, "service": "my-agent", **kwargs})


def test_boot_cache_and_poll_interval_reach_the_host_script() -> None:
    stack = Stack(App(), "Cache")
    switch = KillSwitch(stack, "KillSwitch", availability_zones=["us-east-1a"], poll_interval=Duration.seconds(30))
    support = AgentRolloutSupport(stack, "AgentRollout", kill_switch=switch, agent=AgentSource.adot_collector(), fleet="web",
                                  boot_cache_max_age=Duration.hours(1))
    script = hostside.render_killswitch_watcher(support.host_config)
    # The rendered poll is fixed on the host (issue 15: the override variable is for tests only).
    assert "\nPOLL_SECONDS=30\n" in script
    assert 'BOOT_CACHE_MAX_AGE="${TELEMETRY_SHUNT_BOOT_CACHE_MAX_AGE:-3600}"' in script
    assert 'AGENT_SERVICE="${TELEMETRY_SHUNT_AGENT_SERVICE:-aws-otel-collector}"' in script
