"""Agent control in Terraform: the same kill-switch flags, SSM documents, alarms and operator scope as the
CDK flavour, so the rollout engine and `shunt kill` work the same against either."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest

from telemetry_shunt import constructs as cdk_flavour
from telemetry_shunt.core import agent_config as ac
from telemetry_shunt.core import agent_files as af
from telemetry_shunt.core import hostside
from telemetry_shunt.core.agent_files import AgentConfigFile
from telemetry_shunt.core.contract import AGENT_ACTIONS, agent_document_name, heartbeat_alarm_name
from telemetry_shunt.errors import ValidationError
from telemetry_shunt.terraform import AgentRolloutSupport, KillSwitch
from telemetry_shunt.terraform import _aws as aws
from tests.cdk_support import new_app, template_of, written_files
from tests.terraform.conftest import REF, resources, synth

pytestmark = pytest.mark.xdist_group("terraform")
AZS = ["us-east-1a", "us-east-1b", "us-east-1c"]
INITIAL = {"telemetry-us-east-1c": False}
ADOT = hostside.DistributorPackage(name="AWSDistroOTel-Collector", service="aws-otel-collector")


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    app = aws.App(outdir=str(tmp_path_factory.mktemp("tfc")))
    stack = aws.TerraformStack(app, "control")
    aws.AwsProvider(stack, "aws", region="us-east-1")
    ks = KillSwitch(stack, "KillSwitch", availability_zones=AZS, initial_flags=INITIAL)
    AgentRolloutSupport(stack, "Rollout", kill_switch=ks, agent=ADOT, fleet="payments", gateway=REF)
    tf = synth(app)["control"]
    cdk_stack = cdk.Stack(new_app(tmp_path_factory.mktemp("cdkc")), "Control")
    cks = cdk_flavour.KillSwitch(cdk_stack, "KillSwitch", availability_zones=AZS, initial_flags=INITIAL)
    cdk_flavour.AgentRolloutSupport(cdk_stack, "Rollout", kill_switch=cks, agent=cdk_flavour.AgentSource.adot_collector(),
                                    fleet="payments", gateway=REF)
    return tf, template_of(cdk_stack)


def cfn(template, rtype):
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == rtype]


def test_the_kill_switch_deploys_the_same_flags_and_strategy(both):
    tf, template = both
    (version,) = resources(tf, "aws_appconfig_hosted_configuration_version").values()
    (cfn_version,) = cfn(template, "AWS::AppConfig::HostedConfigurationVersion")
    assert json.loads(version["content"]) == json.loads(cfn_version["Content"])
    assert json.loads(version["content"])["values"]["telemetry-us-east-1c"] == {"enabled": False}
    (strategy,) = resources(tf, "aws_appconfig_deployment_strategy").values()
    (cfn_strategy,) = cfn(template, "AWS::AppConfig::DeploymentStrategy")
    assert (strategy["name"], strategy["deployment_duration_in_minutes"], strategy["final_bake_time_in_minutes"],
            strategy["growth_factor"]) == (cfn_strategy["Name"], 0, 0, 100) == (
        cfn_strategy["Name"], cfn_strategy["DeploymentDurationInMinutes"], cfn_strategy["FinalBakeTimeInMinutes"],
        cfn_strategy["GrowthFactor"])
    (profile,) = resources(tf, "aws_appconfig_configuration_profile").values()
    (cfn_profile,) = cfn(template, "AWS::AppConfig::ConfigurationProfile")
    assert (profile["name"], profile["type"]) == (cfn_profile["Name"], cfn_profile["Type"])


def test_the_ssm_documents_are_the_same_in_both_flavours(both):
    tf, template = both
    documents = {d["name"]: d for d in resources(tf, "aws_ssm_document").values()}
    cfn_documents = {d["Name"]: d for d in cfn(template, "AWS::SSM::Document")}
    assert set(documents) == set(cfn_documents) == {agent_document_name(a) for a in AGENT_ACTIONS}
    for name, doc in documents.items():
        assert json.loads(doc["content"]) == cfn_documents[name]["Content"], name
        assert (doc["document_type"], doc["target_type"]) == ("Command", "/AWS::EC2::Instance")


def test_heartbeat_alarms_match_and_missing_data_breaches(both):
    tf, template = both
    alarms = {a["alarm_name"]: a for a in resources(tf, "aws_cloudwatch_metric_alarm").values()}
    cfn_alarms = {a["AlarmName"]: a for a in cfn(template, "AWS::CloudWatch::Alarm")}
    assert set(alarms) == {heartbeat_alarm_name(az) for az in AZS} <= set(cfn_alarms)
    for name, a in alarms.items():
        c = cfn_alarms[name]
        assert (a["namespace"], a["metric_name"], a["statistic"], a["period"], a["threshold"], a["evaluation_periods"],
                a["comparison_operator"], a["treat_missing_data"]) == (
            c["Namespace"], c["MetricName"], c["Statistic"], c["Period"], c["Threshold"], c["EvaluationPeriods"],
            c["ComparisonOperator"], c["TreatMissingData"])
        assert a["dimensions"] == {d["Name"]: d["Value"] for d in c["Dimensions"]}


def test_the_operator_reaches_only_the_fleet_and_the_state_table_is_protected(both):
    tf, _ = both
    (policy,) = [p for p in resources(tf, "aws_iam_role_policy").values() if p["name"] == "telemetry-shunt-operate"]
    statements = json.loads(policy["policy"])["Statement"]
    send = [s for s in statements if "ssm:SendCommand" in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])]
    to_instances = [s for s in send if "instance/*" in json.dumps(s["Resource"])]
    assert to_instances and all(s["Condition"] == {"StringEquals": {"ssm:resourceTag/telemetry-shunt:fleet": "payments"}}
                                for s in to_instances)
    assert all(str(s["Resource"]).count("document/") for s in send if s not in to_instances)
    (table,) = resources(tf, "aws_dynamodb_table").values()
    assert table["point_in_time_recovery"] == {"enabled": True} and table["server_side_encryption"]["enabled"] is True
    assert table["ttl"] == {"attribute_name": "expires_at", "enabled": True}


@pytest.mark.parametrize("build, match", [
    (lambda s, ks: KillSwitch(s, "K", availability_zones=AZS, poll_interval_seconds=10), "at least 15 s"),
    (lambda s, ks: KillSwitch(s, "K", availability_zones=["use1-az1", "us-east-1b"]), "AZ id"),
    (lambda s, ks: KillSwitch(s, "K", availability_zones=["us-east-1a", "us-west-2a"]), "one Region"),
    (lambda s, ks: AgentRolloutSupport(s, "R", kill_switch=ks, agent=ADOT, fleet="*"), "fleet"),
    (lambda s, ks: AgentRolloutSupport(s, "R", kill_switch=ks, agent=ADOT, fleet="demo\n"), "fleet"),
    (lambda s, ks: AgentRolloutSupport(s, "R", kill_switch=ks, agent=ADOT, fleet="demo", heartbeat_missing_minutes=0),
     "heartbeat_missing_minutes"),
    (lambda s, ks: AgentRolloutSupport(s, "R", kill_switch=ks, fleet="demo", gateway=REF,
                                       agent=hostside.DistributorPackage(name="AmazonCloudWatchAgent",
                                                                         service="amazon-cloudwatch-agent")),
     "only the ADOT collector"),
])
def test_bad_input_is_one_error_naming_the_value(tmp_path, build, match):
    stack = aws.TerraformStack(aws.App(outdir=str(tmp_path)), "s")
    ks = KillSwitch(stack, "KillSwitch", availability_zones=AZS)
    with pytest.raises(ValidationError, match=match):
        build(stack, ks)


def _custom_documents(tmp_path, gateway):
    """The Upgrade document's host step for a custom agent with its own config (and ``gateway``), in both
    flavours, plus the Terraform construct."""
    config = AgentConfigFile(path="/etc/otelcol-contrib/config.yaml", text="receivers: {}\n",
                             validate_command='/usr/bin/otelcol-contrib validate --config="$CONFIG"')
    package = hostside.DistributorPackage(name="OtelcolContrib", service="otelcol-contrib")
    app = aws.App(outdir=str(tmp_path / "tf"))
    stack = aws.TerraformStack(app, "custom")
    aws.AwsProvider(stack, "aws", region="us-east-1")
    ks = KillSwitch(stack, "KillSwitch", availability_zones=AZS)
    rollout = AgentRolloutSupport(stack, "Rollout", kill_switch=ks, agent=package, fleet="web", gateway=gateway,
                                  agent_config=config)
    tf_docs = {d["name"]: json.loads(d["content"]) for d in resources(synth(app)["custom"], "aws_ssm_document").values()}
    cdk_stack = cdk.Stack(new_app(tmp_path / "cdk"), "Custom")
    cks = cdk_flavour.KillSwitch(cdk_stack, "KillSwitch", availability_zones=AZS)
    cdk_flavour.AgentRolloutSupport(cdk_stack, "Rollout", kill_switch=cks, fleet="web", gateway=gateway,
                                    agent=cdk_flavour.AgentSource.distributor(service="otelcol-contrib",
                                                                              package_name="OtelcolContrib"),
                                    agent_config=config)
    cdk_docs = {d["Name"]: d["Content"] for d in cfn(template_of(cdk_stack), "AWS::SSM::Document")}
    return config, rollout, tf_docs, cdk_docs


def _host_step(document):
    step = next(s for s in document["mainSteps"] if s["name"] == "InstallKillSwitchAndHeartbeat")
    return step["inputs"]["runCommand"]


def test_your_agent_with_a_gateway_gets_the_forwarder_too_as_in_cdk(tmp_path):
    config, rollout, tf_docs, cdk_docs = _custom_documents(tmp_path, REF)
    assert tf_docs == cdk_docs
    for action in ("install", "upgrade", "rollback"):
        files = written_files(_host_step(tf_docs[agent_document_name(action)]))
        assert json.loads(files[af.FORWARDER_CANDIDATE_PATH]) == ac.render_forwarder_config(REF), action
        assert "PartOf=otelcol-contrib.service" in files[f"/etc/systemd/system/{af.FORWARDER_UNIT}"]
        assert files[af.CANDIDATE_PATH] == config.text
    assert rollout.data_path.forwarder_config_text is not None
    assert f"  {af.CONFIG_TOOL_PATH} forwarder-verify" in _host_step(tf_docs[agent_document_name("upgrade")])


def test_your_agent_without_a_gateway_gets_no_forwarder_as_in_cdk(tmp_path):
    config, rollout, tf_docs, cdk_docs = _custom_documents(tmp_path, None)
    assert tf_docs == cdk_docs
    commands = _host_step(tf_docs[agent_document_name("upgrade")])
    assert written_files(commands)[af.CANDIDATE_PATH] == config.text
    assert rollout.data_path.forwarder_config_text is None
    assert not any("forwarder" in line for line in commands)
