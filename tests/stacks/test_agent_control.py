"""AgentControlStack: the kill switch and the rollout support wired together, deployable as is."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Capture, Match, Template

from telemetry_shunt.constructs.agent_rollout_support import AgentSource
from telemetry_shunt.core.contract import (
    AGENT_ACTIONS,
    APPCONFIG_APPLICATION,
    agent_document_name,
    heartbeat_alarm_name,
)
from telemetry_shunt.core.killswitch import telemetry_enabled
from telemetry_shunt.errors import ValidationError
from telemetry_shunt.stacks.agent_control import AgentControlStack
from tests.cdk_support import new_app
from tools.cdkcheck import lint_template, synth_with_nag

AZS = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    outdir = tmp_path_factory.mktemp("agent-control")
    app = new_app(outdir)  # the project's cdk.json context, as app.py has
    stack = AgentControlStack(
        app, "AgentControl", availability_zones=AZS, agent=AgentSource.adot_collector(),
        operator_principal=iam.ArnPrincipal("arn:aws:iam::222222222222:role/deployer"), fleet="edge",
        host_role_arn="arn:aws:iam::222222222222:role/app-hosts",
    )
    assembly, findings = synth_with_nag(app)
    tpl = assembly.get_stack_by_name("AgentControl").template
    return {"json": tpl, "template": Template.from_json(tpl), "nag": findings, "stack": stack, "outdir": outdir}


def test_env_agnostic(synthesized: dict[str, Any]) -> None:
    stack = synthesized["stack"]
    assert stack.resolve(stack.region) == {"Ref": "AWS::Region"}


def test_kill_switch_and_rollout_resources(synthesized: dict[str, Any]) -> None:
    template: Template = synthesized["template"]
    template.has_resource_properties("AWS::AppConfig::Application", {"Name": APPCONFIG_APPLICATION})
    template.has_resource_properties("AWS::AppConfig::DeploymentStrategy", {
        "DeploymentDurationInMinutes": 0, "GrowthFactor": 100, "FinalBakeTimeInMinutes": 0})
    content = Capture()
    template.has_resource_properties("AWS::AppConfig::HostedConfigurationVersion", {"Content": content})
    flags = json.loads(content.as_string())
    assert set(flags["flags"]) == {"telemetry", *(f"telemetry-{az}" for az in AZS)}
    assert all(telemetry_enabled(flags["values"], az) for az in AZS)
    template.resource_count_is("AWS::AppConfig::Deployment", 1)
    template.resource_count_is("AWS::SSM::Document", len(AGENT_ACTIONS))
    for action in AGENT_ACTIONS:
        template.has_resource_properties("AWS::SSM::Document", {"Name": agent_document_name(action)})
    template.resource_count_is("AWS::DynamoDB::Table", 1)
    template.resource_count_is("AWS::CloudWatch::Alarm", len(AZS))
    for az in AZS:
        template.has_resource_properties("AWS::CloudWatch::Alarm", {
            "AlarmName": heartbeat_alarm_name(az), "TreatMissingData": "breaching"})


def test_host_watcher_polls_like_the_kill_switch(synthesized: dict[str, Any]) -> None:
    stack = synthesized["stack"]
    assert stack.rollout.host_config.poll_seconds == int(stack.kill_switch.poll_interval.to_seconds())
    assert stack.rollout.host_config.agent_service == "aws-otel-collector"


def test_operator_role_and_fleet(synthesized: dict[str, Any]) -> None:
    template: Template = synthesized["template"]
    template.has_resource_properties("AWS::IAM::Role", {
        "AssumeRolePolicyDocument": {"Statement": [Match.object_like({
            "Principal": {"AWS": "arn:aws:iam::222222222222:role/deployer"}})]}})
    template.has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Action": "ssm:SendCommand",
                           "Condition": {"StringEquals": {"ssm:resourceTag/telemetry-shunt:fleet": "edge"}}})])}})


def test_host_role_gets_the_host_grants(synthesized: dict[str, Any]) -> None:
    template: Template = synthesized["template"]
    template.has_resource_properties("AWS::IAM::Policy", {
        "Roles": ["app-hosts"],
        "PolicyDocument": {"Statement": Match.array_with([
            Match.object_like({"Action": ["appconfig:StartConfigurationSession",
                                          "appconfig:GetLatestConfiguration"]}),
            Match.object_like({"Action": "cloudwatch:PutMetricData"}),
        ])},
    })


def test_outputs_for_the_engine(synthesized: dict[str, Any]) -> None:
    outputs = synthesized["json"]["Outputs"]
    for name in ("KillSwitchApplicationId", "KillSwitchEnvironmentId", "KillSwitchProfileId",
                 "KillSwitchDeploymentStrategyId", "OperatorRoleArn", "StateTableName"):
        assert name in outputs
    assert outputs["AgentPackageName"]["Value"] == "AWSDistroOTel-Collector"


def test_cfn_lint_is_clean(synthesized: dict[str, Any]) -> None:
    assert [str(f) for f in lint_template(synthesized["json"], name="AgentControl")] == []


def test_cdk_nag_is_clean(synthesized: dict[str, Any]) -> None:
    assert [str(f) for f in synthesized["nag"]] == []


def test_acknowledgements_are_specific_and_next_to_their_policies(synthesized: dict[str, Any]) -> None:
    acks = []
    for meta in Path(synthesized["outdir"]).glob("*.metadata.json"):
        for path, entries in json.loads(meta.read_text()).items():
            acks += [(path, rule, reason) for e in entries if e["type"] == "aws:cdk:acknowledged-rules"
                     for rule, reason in e["data"].items()]
    assert acks
    for path, rule, reason in acks:
        assert re.search(r"AwsSolutions-IAM5\[(Resource|Action)::.+\]$", rule), rule
        assert path.endswith(("/OperatorRole/DefaultPolicy", "/HostRole/Policy")), path
        assert len(reason) >= 25
    rules = {rule.split("::", 1)[-1] if rule.startswith("AwsSolutions::") else rule for _, rule, _ in acks}
    assert any("instance/*" in r for r in rules)


def test_bad_input_fails_at_synth() -> None:
    with pytest.raises(ValidationError, match="at least one Availability Zone"):
        AgentControlStack(App(), "Empty", availability_zones=[], agent=AgentSource.cloudwatch_agent(), fleet="web")
    with pytest.raises(ValidationError, match="got 'euw1-az1'"):
        AgentControlStack(App(), "Ids", availability_zones=["euw1-az1"], agent=AgentSource.cloudwatch_agent(), fleet="web")


_DOCS = Path(__file__).resolve().parent.parent.parent / "docs"


@pytest.mark.parametrize(("doc", "index"), [("kill-switch.md", 0), ("kill-switch.md", 1),
                                            ("agent-rollout-support.md", 0)])
def test_doc_examples_run(doc: str, index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (_DOCS / doc).read_text(), re.DOTALL)
    monkeypatch.setenv("CDK_OUTDIR", str(tmp_path))
    exec(compile(blocks[index], f"<{doc}#{index}>", "exec"), {"__name__": "__doc_example__"})


def test_default_app_wires_the_stack_from_context(tmp_path: Path) -> None:
    import app as default_app

    stacks = default_app.build(new_app(tmp_path, **{"telemetry-shunt:agent-azs": ["eu-west-1a", "eu-west-1b"]}))
    control = stacks["agent_control"]
    assert isinstance(control, AgentControlStack)
    assert control.kill_switch.availability_zones == ("eu-west-1a", "eu-west-1b")
    assert "agent_control" not in default_app.build(new_app(tmp_path / "off", **{"telemetry-shunt:agent-azs": ""}))
    # cdk.json (the context the default app synthesizes with) names two zones.
    assert "agent_control" in default_app.build(new_app(tmp_path / "default"))
