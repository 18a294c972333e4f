"""The buffer fleet in Terraform: the same collector configs (byte for byte, as the container receives them),
images, commands, ports, security-group rules and scaling as the CDK flavour's BufferFleet."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest

from telemetry_shunt import constructs as cdk_flavour
from telemetry_shunt.core import collectors as cc
from telemetry_shunt.core import contract
from telemetry_shunt.core.routes import default_routes
from telemetry_shunt.core.template import Environment, Resolver
from telemetry_shunt.core.tfjson import TerraformResolver
from telemetry_shunt.errors import ValidationError
from telemetry_shunt.terraform import BufferFleet, ConcentratorVpc, TelemetryGateway, TelemetryServiceNetwork
from telemetry_shunt.terraform import _aws as aws
from tests.cdk_support import new_app, template_of
from tests.terraform.conftest import resources, synth

pytestmark = pytest.mark.xdist_group("terraform")
PUSHERS = ["222222222222"]
AZS = ["us-east-1a", "us-east-1b"]


def tf_network(stack):
    aws.AwsProvider(stack, "aws", region="us-east-1")
    vpc = ConcentratorVpc(stack, "Vpc", availability_zones=AZS, vendor_egress=True)
    network = TelemetryServiceNetwork(stack, "Network", pushers=PUSHERS)
    return vpc, TelemetryGateway(stack, "Gateway", vpc=vpc, service_network=network, routes=default_routes())


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    app = aws.App(outdir=str(tmp_path_factory.mktemp("tff")))
    stack = aws.TerraformStack(app, "fleet")
    vpc, gateway = tf_network(stack)
    BufferFleet(stack, "Fleet", vpc=vpc, gateway=gateway, fleet_name="telemetry")
    tf = synth(app)["fleet"]
    cdk_stack = cdk.Stack(new_app(tmp_path_factory.mktemp("cdkf")), "Fleet")
    cvpc = cdk_flavour.ConcentratorVpc(cdk_stack, "Vpc", vendor_egress=True)
    cnetwork = cdk_flavour.TelemetryServiceNetwork(cdk_stack, "Network", pushers=PUSHERS)
    cgateway = cdk_flavour.TelemetryGateway(cdk_stack, "Gateway", vpc=cvpc.vpc, service_network=cnetwork,
                                            routes=default_routes())
    cdk_flavour.BufferFleet(cdk_stack, "Fleet", vpc=cvpc.vpc, gateway=cgateway, fleet_name="telemetry")
    return tf, template_of(cdk_stack)


def tf_containers(tf):
    resolver = TerraformResolver(tf, Environment())
    out = {}
    for task in resources(tf, "aws_ecs_task_definition").values():
        (container,) = json.loads(resolver.resolve(task["container_definitions"]))
        out["otel" if "otel" in container["image"] else "vector"] = container
    return out


def cfn_containers(template):
    resolver = Resolver(template, Environment())
    out = {}
    for r in template["Resources"].values():
        if r["Type"] == "AWS::ECS::TaskDefinition":
            (container,) = resolver.resolve(r["Properties"]["ContainerDefinitions"])
            out["otel" if "otel" in container["Image"] else "vector"] = container
    return out


def test_each_collector_receives_the_same_config_image_and_command(both):
    tf, template = both
    tfc, cfc = tf_containers(tf), cfn_containers(template)
    assert set(tfc) == set(cfc) == {"vector", "otel"}
    for kind in tfc:
        tf_env = {e["name"]: e["value"] for e in tfc[kind]["environment"]}
        cfn_env = {e["Name"]: e["Value"] for e in cfc[kind]["Environment"]}
        name = cc.CONFIG_ENV[kind]
        assert tf_env[name] == cfn_env[name] == cc.encode_config(kind, json.loads(json.dumps(
            cc.render_config(kind, paths=cc.group_paths(default_routes())[kind], sinks=[cc.S3ArchiveSink()],
                             ephemeral_storage_gib=50, buffer=cc.BufferPolicy(), fleet_name="telemetry"))))
        assert set(tf_env) == set(cfn_env)
        assert tfc[kind]["image"] == cfc[kind]["Image"]
        assert tfc[kind].get("command") == cfc[kind].get("Command")
        assert tfc[kind].get("entryPoint") == cfc[kind].get("EntryPoint")
        assert tfc[kind].get("user") == cfc[kind].get("User")
        assert [(m["containerPath"], m["sourceVolume"]) for m in tfc[kind]["mountPoints"]] == \
            [(m["ContainerPath"], m["SourceVolume"]) for m in cfc[kind]["MountPoints"]]
        assert [(p["containerPort"], p["name"]) for p in tfc[kind]["portMappings"]] == \
            [(p["ContainerPort"], p["Name"]) for p in cfc[kind]["PortMappings"]]


def test_security_groups_admit_only_the_lattice_prefix_lists_on_the_collector_ports(both):
    tf, template = both
    ingress = resources(tf, "aws_vpc_security_group_ingress_rule").values()
    assert all(r["prefix_list_id"].startswith("${data.aws_ec2_managed_prefix_list.") and "cidr_ipv4" not in r
               for r in ingress)
    tf_ports = sorted((r["from_port"], r["to_port"]) for r in ingress)
    cfn_ports = sorted((r["Properties"]["FromPort"], r["Properties"]["ToPort"]) for r in template["Resources"].values()
                       if r["Type"] == "AWS::EC2::SecurityGroupIngress" and "SourcePrefixListId" in r["Properties"])
    expected = sorted((p, p) for k in ("vector", "otel") for p in (contract.COLLECTOR_PORTS[k].traffic,
                                                                  contract.COLLECTOR_PORTS[k].health) for _ in range(2))
    assert tf_ports == cfn_ports == expected


def test_services_roll_back_stay_at_full_capacity_and_register_in_lattice(both):
    tf, template = both
    cfn_services = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::ECS::Service"]
    for svc in resources(tf, "aws_ecs_service").values():
        assert svc["deployment_circuit_breaker"] == {"enable": True, "rollback": True}
        assert (svc["deployment_minimum_healthy_percent"], svc["deployment_maximum_percent"]) == (100, 200)
        assert svc["network_configuration"]["assign_public_ip"] is False
        (lattice,) = svc["vpc_lattice_configurations"]
        assert lattice["port_name"] == "traffic" and "aws_vpclattice_target_group." in lattice["target_group_arn"]
        assert svc["desired_count"] == 2 == cfn_services[0]["DesiredCount"]
    targets = resources(tf, "aws_appautoscaling_target").values()
    cfn_targets = [r["Properties"] for r in template["Resources"].values()
                   if r["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"]
    assert sorted((t["min_capacity"], t["max_capacity"]) for t in targets) == \
        sorted((t["MinCapacity"], t["MaxCapacity"]) for t in cfn_targets)
    tf_values = sorted(p["target_tracking_scaling_policy_configuration"]["target_value"]
                       for p in resources(tf, "aws_appautoscaling_policy").values())
    cfn_values = sorted(r["Properties"]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"]
                        for r in template["Resources"].values() if r["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy")
    assert tf_values == cfn_values


@pytest.mark.parametrize("kwargs, match", [
    ({"secrets": {"VENDOR_API_KEY": "plain-text-key"}}, "not referenced|must be a Secrets Manager secret ARN"),
    ({"sinks": [cc.OtlpHttpSink(endpoint="https://otlp.vendor.example", headers={"api-key": cc.SecretEnv("VENDOR_API_KEY")})]},
     "secrets has no entry"),
    ({"archive_retention_days": 90}, "archive_retention_days"),
    ({"max_tasks": 1}, "max_tasks"),
    ({"target_cpu_percent": 100}, "target_cpu_percent"),
])
def test_bad_input_is_one_error_naming_the_value(tmp_path, kwargs, match):
    stack = aws.TerraformStack(aws.App(outdir=str(tmp_path)), "s")
    vpc, gateway = tf_network(stack)
    with pytest.raises(ValidationError, match=match):
        BufferFleet(stack, "Fleet", vpc=vpc, gateway=gateway, **kwargs)


@pytest.fixture(scope="module")
def both_alarms(tmp_path_factory):
    app = aws.App(outdir=str(tmp_path_factory.mktemp("tfa")))
    stack = aws.TerraformStack(app, "fleet")
    vpc, gateway = tf_network(stack)
    BufferFleet(stack, "Fleet", vpc=vpc, gateway=gateway, fleet_name="telemetry", alarms=True,
                alarm_topic_arn="arn:aws:sns:us-east-1:111111111111:telemetry-alarms")
    tf = synth(app)["fleet"]
    cdk_stack = cdk.Stack(new_app(tmp_path_factory.mktemp("cdka")), "Fleet")
    cvpc = cdk_flavour.ConcentratorVpc(cdk_stack, "Vpc", vendor_egress=True)
    cnetwork = cdk_flavour.TelemetryServiceNetwork(cdk_stack, "Network", pushers=PUSHERS)
    cgateway = cdk_flavour.TelemetryGateway(cdk_stack, "Gateway", vpc=cvpc.vpc, service_network=cnetwork,
                                            routes=default_routes())
    cdk_flavour.BufferFleet(cdk_stack, "Fleet", vpc=cvpc.vpc, gateway=cgateway, fleet_name="telemetry", alarms=True)
    return tf, template_of(cdk_stack)


def _tf_metrics(a):
    if "metric_query" in a:
        return sorted((q.get("expression") or f"{q['metric']['namespace']}:{q['metric']['metric_name']}:{q['metric']['stat']}"
                       f":{q['metric']['period']}") for q in a["metric_query"])
    return [f"{a['namespace']}:{a['metric_name']}:{a['statistic']}:{a['period']}"]


def _cfn_metrics(a):
    if "Metrics" in a:
        def one(m):
            stat = m.get("MetricStat")
            return m.get("Expression") or (f"{stat['Metric']['Namespace']}:{stat['Metric']['MetricName']}"
                                           f":{stat['Stat']}:{stat['Period']}")
        return sorted(one(m) for m in a["Metrics"])
    return [f"{a['Namespace']}:{a['MetricName']}:{a['Statistic']}:{a['Period']}"]


def test_fleet_alarms_are_the_cdk_flavours_alarms(both_alarms):
    tf, template = both_alarms
    tf_alarms = {a["alarm_description"]: a for a in resources(tf, "aws_cloudwatch_metric_alarm").values()}
    cfn_alarms = {r["Properties"]["AlarmDescription"]: r["Properties"] for r in template["Resources"].values()
                  if r["Type"] == "AWS::CloudWatch::Alarm" and "telemetry" not in r["Properties"].get("AlarmName", "")}
    cfn_alarms = {d: a for d, a in cfn_alarms.items() if d in tf_alarms or any(k in d for k in ("vector", "otel"))}
    assert len(tf_alarms) == 10 and set(tf_alarms) == set(cfn_alarms)
    for description, a in tf_alarms.items():
        c = cfn_alarms[description]
        assert (a["threshold"], a["evaluation_periods"], a["comparison_operator"], a["treat_missing_data"]) == \
            (c["Threshold"], c["EvaluationPeriods"], c["ComparisonOperator"], c["TreatMissingData"]), description
        assert _tf_metrics(a) == _cfn_metrics(c), description
        assert a["alarm_actions"] == a["ok_actions"] == ["arn:aws:sns:us-east-1:111111111111:telemetry-alarms"]
