"""BufferFleet on a synthesized stack: Lattice registration, security groups, buffers, sinks, scaling, alarms.

One app with two stacks is synthesized once for the module (cdk-nag and cfn-lint included): ``Fleet``
runs both collectors with a vendor and the archive and every alarm; ``FleetB`` runs Vector alone
with a blocking 1 GiB buffer and only the archive, so the two differ only by configuration.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile

import pytest
from aws_cdk import App, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_vpclattice as vpclattice
from aws_cdk.assertions import Capture, Match, Template

from telemetry_shunt.constructs._nag import acknowledge
from telemetry_shunt.constructs.buffer_fleet import BufferFleet
from telemetry_shunt.core import collectors as cc
from telemetry_shunt.core import contract
from telemetry_shunt.core.images import IMAGES
from telemetry_shunt.errors import ValidationError
from tools.cdkcheck import lint_template, synth_with_nag

# Synthesize once: keep every test of this module on one xdist worker (make test uses --dist loadgroup).
pytestmark = pytest.mark.xdist_group("buffer_fleet_synth")

PATHS = {"vector": [contract.METRICS_PATH], "otel": list(contract.OTLP_PATHS)}
VENDOR = cc.OtlpHttpSink(endpoint="https://otlp.vendor.example", headers={"api-key": cc.SecretEnv("VENDOR_API_KEY")})
PORTS = {
    "vector": (contract.VECTOR_HTTP_PORT, contract.VECTOR_HEALTH_PORT, contract.VECTOR_HEALTH_PATH),
    "otel": (contract.OTEL_HTTP_PORT, contract.OTEL_HEALTH_PORT, contract.OTEL_HEALTH_PATH),
}


def concentrator_vpc(stack: Stack, *, max_azs: int = 2) -> ec2.Vpc:
    return ec2.Vpc(
        stack,
        "Vpc",
        max_azs=max_azs,
        nat_gateways=1,
        flow_logs={"all": ec2.FlowLogOptions()},
        subnet_configuration=[
            ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC),
            ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        ],
    )


def target_group(stack: Stack, vpc: ec2.IVpc, kind: str, type_: str = "IP") -> vpclattice.CfnTargetGroup:
    port, health_port, health_path = PORTS[kind]
    return vpclattice.CfnTargetGroup(
        stack,
        f"Tg{kind.capitalize()}",
        type=type_,
        config=vpclattice.CfnTargetGroup.TargetGroupConfigProperty(
            vpc_identifier=vpc.vpc_id,
            port=port,
            protocol="HTTP",
            protocol_version="HTTP1",
            ip_address_type="IPV4",
            health_check=vpclattice.CfnTargetGroup.HealthCheckConfigProperty(
                enabled=True, protocol="HTTP", port=health_port, path=health_path
            ),
        ),
    )


def vendor_secret(stack: Stack) -> secretsmanager.Secret:
    secret = secretsmanager.Secret(stack, "VendorApiKey")
    acknowledge(secret, "AwsSolutions-SMG4", "Test fixture: vendor API keys are rotated from the vendor's console.")
    return secret


@pytest.fixture(scope="module")
def synth():
    app = App(outdir=tempfile.mkdtemp())
    stack = Stack(app, "Fleet")
    vpc = concentrator_vpc(stack)
    fleet = BufferFleet(
        stack,
        "Fleet",
        vpc=vpc,
        target_groups={kind: target_group(stack, vpc, kind) for kind in PATHS},
        paths_by_collector=PATHS,
        sinks=[VENDOR, cc.S3ArchiveSink()],
        secrets={"VENDOR_API_KEY": vendor_secret(stack)},
        alarms=True,
    )
    stack_b = Stack(app, "FleetB")
    vpc_b = concentrator_vpc(stack_b)
    fleet_b = BufferFleet(
        stack_b,
        "Fleet",
        vpc=vpc_b,
        target_groups={"vector": target_group(stack_b, vpc_b, "vector")},
        paths_by_collector={"vector": ["/metrics"]},
        sinks=[cc.S3ArchiveSink()],
        buffer=cc.BufferPolicy.mib(1024, "block"),
        ephemeral_storage_gib=21,
        min_tasks_per_az=2,
        archive_retention=Duration.days(120),
    )
    assembly, findings = synth_with_nag(app)
    assert assembly is not None, "\n".join(map(str, findings))
    templates = {name: assembly.get_stack_by_name(name).template for name in ("Fleet", "FleetB")}
    return {
        "findings": findings,
        "templates": templates,
        "t": Template.from_json(templates["Fleet"]),
        "tb": Template.from_json(templates["FleetB"]),
        "fleet": fleet,
        "fleet_b": fleet_b,
    }


def resources(template: dict, type_: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def container(template: dict, kind: str) -> dict:
    (td,) = [v for k, v in resources(template, "AWS::ECS::TaskDefinition").items() if kind.capitalize() in k]
    return td["Properties"]["ContainerDefinitions"][0]


def environment(template: dict, kind: str) -> dict[str, object]:
    return {e["Name"]: e["Value"] for e in container(template, kind)["Environment"]}


# --- verification: cdk-nag and cfn-lint ---------------------------------------------------------------


def test_cdk_nag_finds_nothing_unacknowledged(synth):
    assert synth["findings"] == []


def test_cfn_lint_reports_no_errors_or_warnings(synth):
    # FleetB is built from the same code paths with other options; one template keeps the module fast.
    assert [str(f) for f in lint_template(synth["templates"]["Fleet"], name="Fleet")] == []


# --- services in the private subnets of >= 2 AZs, registered by ECS in the Lattice target groups -------


def test_one_fargate_service_per_collector_in_private_subnets_without_public_ips(synth):
    t = synth["t"]
    t.resource_count_is("AWS::ECS::Service", 2)
    subnets = Capture()
    t.has_resource_properties(
        "AWS::ECS::Service",
        {
            "LaunchType": "FARGATE",
            "DesiredCount": 2,
            "AvailabilityZoneRebalancing": "ENABLED",
            "NetworkConfiguration": {
                "AwsvpcConfiguration": {"AssignPublicIp": "DISABLED", "Subnets": subnets},
            },
        },
    )
    assert len(subnets.as_array()) == 2
    assert all("private" in s["Ref"] for s in subnets.as_array())


def test_services_register_in_the_gateway_target_groups_through_ecs(synth):
    t = synth["t"]
    role = Capture()
    for kind in ("vector", "otel"):
        t.has_resource_properties(
            "AWS::ECS::Service",
            {
                "VpcLatticeConfigurations": [
                    {
                        "RoleArn": {"Fn::GetAtt": [role, "Arn"]},
                        "TargetGroupArn": {"Fn::GetAtt": [f"Tg{kind.capitalize()}", "Arn"]},
                        "PortName": "traffic",
                    }
                ]
            },
        )
    roles = synth["templates"]["Fleet"]["Resources"]
    infra = roles[role.as_string()]["Properties"]
    assert infra["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "ecs.amazonaws.com"}
    assert "AmazonECSInfrastructureRolePolicyForVpcLattice" in json.dumps(infra["ManagedPolicyArns"])


def test_named_port_mappings_match_the_contract_ports(synth):
    for kind, (port, health_port, _) in PORTS.items():
        mappings = container(synth["templates"]["Fleet"], kind)["PortMappings"]
        assert {(m["Name"], m["ContainerPort"]) for m in mappings} == {("traffic", port), ("health", health_port)}


def test_config_changes_roll_the_service_with_circuit_breaker_rollback(synth):
    for t in (synth["t"], synth["tb"]):
        t.all_resources_properties(
            "AWS::ECS::Service",
            {
                "DeploymentConfiguration": Match.object_like(
                    {"DeploymentCircuitBreaker": {"Enable": True, "Rollback": True}, "MinimumHealthyPercent": 100}
                )
            },
        )
    # The rendered config is part of the task definition, so any change is a new revision and a deployment.
    config_a = environment(synth["templates"]["Fleet"], "vector")["SHUNT_VECTOR_CONFIG"]
    config_b = environment(synth["templates"]["FleetB"], "vector")["SHUNT_VECTOR_CONFIG"]
    assert config_a != config_b
    assert cc.decode_config("vector", config_a) == synth["fleet"].configs["vector"]
    assert cc.decode_config("vector", config_b) == synth["fleet_b"].configs["vector"]


# --- security groups: only the Lattice prefix lists, on traffic and health-check ports ----------------


def test_security_groups_admit_only_lattice_prefix_lists_on_traffic_and_health_ports(synth):
    template = synth["templates"]["Fleet"]
    groups = resources(template, "AWS::EC2::SecurityGroup")
    ingress = resources(template, "AWS::EC2::SecurityGroupIngress")
    for kind, (port, health_port, _) in PORTS.items():
        (sg_id,) = [k for k in groups if f"Fleet{kind.capitalize()}SecurityGroup" in k]
        assert "SecurityGroupIngress" not in groups[sg_id]["Properties"]
        rules = [r["Properties"] for r in ingress.values() if r["Properties"]["GroupId"]["Fn::GetAtt"][0] == sg_id]
        seen = set()
        for rule in rules:
            assert "CidrIp" not in rule and "CidrIpv6" not in rule and "SourceSecurityGroupId" not in rule
            lookup = rule["SourcePrefixListId"]["Fn::GetAtt"][0]
            assert rule["FromPort"] == rule["ToPort"]
            seen.add(("IPv6" if "IPv6" in lookup else "IPv4", rule["FromPort"]))
        assert seen == {(ip, p) for ip in ("IPv4", "IPv6") for p in (port, health_port)}


def test_vendor_egress_is_https_only_and_s3_goes_through_a_gateway_endpoint(synth):
    template = synth["templates"]["Fleet"]
    for sg in resources(template, "AWS::EC2::SecurityGroup").values():
        if "collectors" in sg["Properties"]["GroupDescription"]:
            assert [(e["FromPort"], e["ToPort"]) for e in sg["Properties"]["SecurityGroupEgress"]] == [(443, 443)]
    synth["t"].has_resource_properties(
        "AWS::EC2::VPCEndpoint",
        {
            "VpcEndpointType": "Gateway",
            "ServiceName": {"Fn::Join": ["", ["com.amazonaws.", {"Ref": "AWS::Region"}, ".s3"]]},
            "RouteTableIds": Match.array_with([{"Ref": Match.string_like_regexp("private")}]),
        },
    )


# --- buffers, health endpoints and configs in the task definitions -------------------------------------


def test_task_definitions_size_ephemeral_storage_and_mount_the_buffer_volume(synth):
    synth["t"].has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "EphemeralStorage": {"SizeInGiB": 50},
            "Volumes": [{"Name": "buffer"}],
            "RequiresCompatibilities": ["FARGATE"],
        },
    )
    for kind in ("vector", "otel"):
        mounts = container(synth["templates"]["Fleet"], kind)["MountPoints"]
        assert mounts == [{"ContainerPath": cc.BUFFER_DIRECTORY[kind], "ReadOnly": False, "SourceVolume": "buffer"}]
    # 21 GiB (FleetB): blocking 1 GiB buffer, one sink.
    synth["tb"].has_resource_properties("AWS::ECS::TaskDefinition", {"EphemeralStorage": {"SizeInGiB": 21}})
    archive = synth["fleet_b"].configs["vector"]["sinks"]["archive"]["buffer"]
    assert archive == {"type": "disk", "max_size": 1024 * cc.MIB, "when_full": "block"}


def test_every_buffer_in_the_template_fits_its_tasks_ephemeral_storage(synth):
    """Read from the synthesized template: the task's EphemeralStorage and the config the container decodes.
    Vector: one disk buffer per sink. Collector: one bbolt queue per exporter per signal pipeline, each
    growing to the next power of two up to 1 GiB then by 1 GiB (bbolt's mmapSize), plus one queue's worth
    for compaction on start. All of it within the storage less the 4 GiB kept for image and logs."""
    template = synth["templates"]["Fleet"]
    for kind in ("vector", "otel"):
        (td,) = [v for k, v in resources(template, "AWS::ECS::TaskDefinition").items() if kind.capitalize() in k]
        usable = td["Properties"]["EphemeralStorage"]["SizeInGiB"] * cc.GIB - cc.STORAGE_HEADROOM_BYTES
        config = cc.decode_config(kind, environment(template, kind)[cc.CONFIG_ENV[kind]])
        if kind == "vector":
            disk = sum(s["buffer"]["max_size"] for s in config["sinks"].values() if s["buffer"]["type"] == "disk")
            assert sum(1 for s in config["sinks"].values() if s["buffer"]["type"] == "disk") == 2
        else:
            files = []
            for name, exporter in config["exporters"].items():
                queue = exporter.get("sending_queue")
                if not queue:
                    continue
                assert queue["sizer"] == "bytes"
                q = queue["queue_size"]
                grown = 1 << (q - 1).bit_length() if q <= cc.GIB else -(-q // cc.GIB) * cc.GIB
                signals = {p.split("/")[0] for p, pipe in config["service"]["pipelines"].items()
                           if name in pipe["exporters"]}
                files += [grown] * len(signals)
            assert len(files) == 6  # vendor and archive x traces, metrics, logs
            disk = sum(files) + max(files)
        assert disk <= usable, (kind, disk, usable)


def test_the_rendered_configs_in_the_template_bind_health_to_all_interfaces(synth):
    vector = cc.decode_config("vector", environment(synth["templates"]["Fleet"], "vector")["SHUNT_VECTOR_CONFIG"])
    otel = cc.from_json(environment(synth["templates"]["Fleet"], "otel")["SHUNT_OTEL_CONFIG"])
    assert vector["api"]["address"] == f"0.0.0.0:{contract.VECTOR_HEALTH_PORT}"
    assert otel["extensions"]["health_check"]["endpoint"] == f"0.0.0.0:{contract.OTEL_HEALTH_PORT}"
    assert vector["sources"]["gateway_http"]["path"] == contract.METRICS_PATH
    assert {p["receivers"][0] for n, p in otel["service"]["pipelines"].items() if n != "metrics/self"} == {"otlp"}


def test_images_come_from_the_one_pin_and_configs_are_delivered_without_baking_secrets(synth):
    template = synth["templates"]["Fleet"]
    vector, otel = container(template, "vector"), container(template, "otel")
    assert (vector["Image"], otel["Image"]) == (IMAGES["vector"], IMAGES["otel"])
    assert vector["EntryPoint"] == ["/bin/sh", "-c"]
    assert vector["Command"] == [cc.vector_launch_command(["VENDOR_API_KEY"])]
    assert f"exec vector --config-json {cc.VECTOR_CONFIG_FILE}" in vector["Command"][0]
    assert otel["Command"] == ["--config=env:SHUNT_OTEL_CONFIG"]
    for c in (vector, otel):
        (secret,) = c["Secrets"]
        assert secret["Name"] == "VENDOR_API_KEY"
        assert secret["ValueFrom"] == {"Ref": Match.string_like_regexp("VendorApiKey")} or "Ref" in secret["ValueFrom"]
        assert "VENDOR_API_KEY" not in {e["Name"] for e in c["Environment"]}


def test_vector_launch_command_writes_the_config_vector_will_read(synth, tmp_path):
    """Run the task's shell command here (sh and sed, as in the debian image), with vector swapped for cat."""
    c = container(synth["templates"]["Fleet"], "vector")
    target = tmp_path / "vector.json"
    command = c["Command"][0].replace(cc.VECTOR_CONFIG_FILE, str(target)).replace("exec vector --config-json", "exec cat")
    config = environment(synth["templates"]["Fleet"], "vector")["SHUNT_VECTOR_CONFIG"]
    env = {"PATH": "/usr/bin:/bin", "SHUNT_VECTOR_CONFIG": config, "VENDOR_API_KEY": "k"}
    out = subprocess.run([*c["EntryPoint"], command], env=env, capture_output=True, text=True, check=True).stdout
    assert "${VENDOR_API_KEY}" in out and "${ARCHIVE_BUCKET}" in out  # Vector interpolates these at start
    assert json.loads(target.read_text()) == synth["fleet"].configs["vector"]


def test_credentials_appear_in_the_template_only_as_references(synth):
    text = json.dumps(synth["templates"]["Fleet"])
    assert "${VENDOR_API_KEY}" not in text  # $ is JSON-escaped in the env var
    config = cc.from_json(environment(synth["templates"]["Fleet"], "otel")["SHUNT_OTEL_CONFIG"])
    assert config["exporters"]["otlphttp/vendor"]["headers"] == {"api-key": "${env:VENDOR_API_KEY}"}
    assert "GenerateSecretString" in json.dumps(resources(synth["templates"]["Fleet"], "AWS::SecretsManager::Secret"))


# --- the archive ---------------------------------------------------------------------------------------


def test_archive_bucket_is_encrypted_private_tls_only_with_lifecycle_rules(synth):
    t = synth["t"]
    t.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
            },
            "VersioningConfiguration": {"Status": "Enabled"},
            "LifecycleConfiguration": {
                "Rules": [
                    Match.object_like(
                        {
                            "Status": "Enabled",
                            "ExpirationInDays": 400,
                            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                            "Transitions": [
                                {"StorageClass": "STANDARD_IA", "TransitionInDays": 30},
                                {"StorageClass": "GLACIER_IR", "TransitionInDays": 90},
                            ],
                        }
                    )
                ]
            },
        },
    )
    t.has_resource("AWS::S3::Bucket", {"DeletionPolicy": "Retain"})
    t.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {"PolicyDocument": {"Statement": Match.array_with([Match.object_like(
            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
        )])}},
    )


def test_task_roles_may_only_put_archive_objects_and_publish_their_own_metrics(synth):
    t = synth["t"]
    t.has_resource_properties(
        "AWS::IAM::Policy",
        {"PolicyDocument": {"Statement": Match.array_with([
            Match.object_like({"Sid": "WriteArchive", "Action": "s3:PutObject", "Effect": "Allow"}),
            Match.object_like({
                "Sid": "PublishCollectorMetrics",
                "Action": "cloudwatch:PutMetricData",
                "Condition": {"StringEquals": {"cloudwatch:namespace": cc.METRICS_NAMESPACE}},
            }),
        ])}},
    )
    t.has_resource_properties(
        "AWS::IAM::Policy",
        {"PolicyDocument": {"Statement": Match.array_with([
            Match.object_like({"Sid": "PublishCollectorMetricsAsEmf", "Action": Match.array_with(["logs:PutLogEvents"])}),
        ])}},
    )
    for policy in resources(synth["templates"]["Fleet"], "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert "s3:*" not in json.dumps(statement["Action"]) and "s3:Delete" not in json.dumps(statement["Action"])


# --- scaling, metrics, alarms, dashboard --------------------------------------------------------------


def test_autoscaling_on_cpu_and_ingest_rate_with_a_minimum_per_az(synth):
    t = synth["t"]
    t.has_resource_properties("AWS::ApplicationAutoScaling::ScalableTarget", {"MinCapacity": 2, "MaxCapacity": 20})
    synth["tb"].has_resource_properties("AWS::ApplicationAutoScaling::ScalableTarget", {"MinCapacity": 4})
    t.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {"TargetTrackingScalingPolicyConfiguration": Match.object_like({
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
            "TargetValue": 60,
        })},
    )
    for kind in ("vector", "otel"):
        t.has_resource_properties(
            "AWS::ApplicationAutoScaling::ScalingPolicy",
            {"TargetTrackingScalingPolicyConfiguration": Match.object_like({
                "CustomizedMetricSpecification": {
                    "Namespace": cc.METRICS_NAMESPACE,
                    "MetricName": cc.METRIC_INGESTED,
                    "Dimensions": [
                        {"Name": cc.COLLECTOR_DIMENSION, "Value": kind},
                        {"Name": cc.FLEET_DIMENSION, "Value": "Fleet-Fleet"},
                    ],
                    "Statistic": "Average",
                },
                "TargetValue": 5000 * 60,
            })},
        )


def test_alarms_are_opt_in_and_cover_disk_drops_sink_errors_health_and_task_count(synth):
    synth["t"].resource_count_is("AWS::CloudWatch::Alarm", 10)
    synth["tb"].resource_count_is("AWS::CloudWatch::Alarm", 0)
    alarms = [a["Properties"] for a in resources(synth["templates"]["Fleet"], "AWS::CloudWatch::Alarm").values()]
    text = json.dumps(alarms)
    for name in ("EphemeralStorageUtilized", "EphemeralStorageReserved", cc.METRIC_DROPPED, cc.METRIC_SINK_ERRORS,
                 "RunningTaskCount", "DesiredTaskCount"):
        assert name in text
    below = [a for a in alarms if a.get("MetricName") == "RunningTaskCount"]
    assert len(below) == 2
    assert all(a["Threshold"] == 2 and a["ComparisonOperator"] == "LessThanThreshold" for a in below)
    assert all(a["TreatMissingData"] == "breaching" for a in below)
    disk = [a for a in alarms if "EphemeralStorageUtilized" in json.dumps(a)]
    assert {a["Threshold"] for a in disk} == {80}


def test_dashboard_shows_each_collector(synth):
    synth["t"].resource_count_is("AWS::CloudWatch::Dashboard", 1)
    body = json.dumps(resources(synth["templates"]["Fleet"], "AWS::CloudWatch::Dashboard"))
    for text in ("vector collectors", "otel collectors", cc.METRIC_INGESTED, "EphemeralStorageUtilized"):
        assert text in body


def published_collector_metrics(configs: dict) -> set[tuple[str, str, tuple[str, ...]]]:
    """(namespace, metric, dimension names) each rendered config publishes, read from the configs as data."""
    out = set()
    vector = configs.get("vector")
    if vector:
        rename = vector["transforms"]["self_rename"]["source"]
        names = set(re.findall(r'\.name = "(\w+)"', rename))
        namespace = re.search(r'\.namespace = "([^"]+)"', rename).group(1)
        dims = tuple(sorted(json.loads(re.search(r"\.tags = (\{.*\})", rename).group(1))))
        assert vector["sinks"]["self_cloudwatch"]["inputs"] == ["self_rename"]
        out |= {(namespace, n, dims) for n in names}
    otel = configs.get("otel")
    if otel:
        emf = otel["exporters"]["awsemf/self"]
        produced = {t["new_name"] for t in otel["processors"]["metricstransform/self"]["transforms"]}
        for decl in emf["metric_declarations"]:
            for n in produced:
                if any(re.search(sel, n) for sel in decl["metric_name_selectors"]):
                    out |= {(emf["namespace"], n, tuple(sorted(d))) for d in decl["dimensions"]}
    return out


def collector_metric_reads(template: dict) -> set[tuple[str, str, tuple[str, ...]]]:
    """Every (namespace, metric, dimension names) in the collectors' namespace that an alarm, the dashboard or a
    scaling policy of the template reads."""
    reads = set()

    def walk(node):
        if isinstance(node, dict):
            if node.get("Namespace") == cc.METRICS_NAMESPACE and "MetricName" in node:
                dims = tuple(sorted(d["Name"] for d in node.get("Dimensions", [])))
                reads.add((node["Namespace"], node["MetricName"], dims))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(template["Resources"])
    return reads


def test_every_collector_metric_the_alarms_dashboard_and_scaling_read_is_published(synth):
    published = published_collector_metrics(synth["fleet"].configs)
    assert {m for _, m, _ in published} == set(cc.COLLECTOR_METRICS)
    reads = collector_metric_reads(synth["templates"]["Fleet"])
    alarm_and_scaling = {r for r in reads if r[2]}
    assert {m for _, m, _ in alarm_and_scaling} >= {cc.METRIC_DROPPED, cc.METRIC_SINK_ERRORS, cc.METRIC_INGESTED}
    assert alarm_and_scaling <= published, alarm_and_scaling - published
    # The dashboard's graphs (a JSON body CloudFormation joins): the same metrics, per collector and fleet.
    body = json.dumps(resources(synth["templates"]["Fleet"], "AWS::CloudWatch::Dashboard"))
    q = r'\\"'
    pattern = (f"{q}{re.escape(cc.METRICS_NAMESPACE)}{q},{q}(\\w+){q},{q}{cc.COLLECTOR_DIMENSION}{q},{q}(\\w+){q},"
               f"{q}{cc.FLEET_DIMENSION}{q}")
    graphed = set(re.findall(pattern, body))
    assert graphed == {(m, k) for m in cc.COLLECTOR_METRICS for k in ("vector", "otel")}, graphed
    dims = (cc.COLLECTOR_DIMENSION, cc.FLEET_DIMENSION)
    assert all((cc.METRICS_NAMESPACE, m, tuple(sorted(dims))) in published for m, _ in graphed)


def test_metric_methods_name_the_shared_namespace_and_dimension(synth):
    fleet = synth["fleet"]
    m = fleet.metric_dropped_events("otel")
    assert (m.namespace, m.metric_name, m.dimensions, m.statistic) == (
        cc.METRICS_NAMESPACE, cc.METRIC_DROPPED, {cc.COLLECTOR_DIMENSION: "otel", cc.FLEET_DIMENSION: "Fleet-Fleet"}, "Sum",
    )
    # The configs tag what they publish with the same fleet name.
    assert '"Fleet": "Fleet-Fleet"' in fleet.configs["vector"]["transforms"]["self_rename"]["source"]
    assert {"key": "Fleet", "value": "Fleet-Fleet", "action": "upsert"} in (
        fleet.configs["otel"]["processors"]["attributes/self"]["actions"]
    )
    assert fleet.metric_ingested_events(statistic="Average").statistic == "Average"
    assert fleet.metric_sink_errors().metric_name == cc.METRIC_SINK_ERRORS
    assert fleet.metric_disk_used_percent("vector").expression == "100 * used / reserved"
    assert fleet.metric_running_tasks("otel").metric_name == "RunningTaskCount"
    with pytest.raises(ValidationError, match="not 'otel'"):
        synth["fleet_b"].metric_ingested_events("otel")


# --- bad input ----------------------------------------------------------------------------------------


def fleet_args(stack: Stack, **overrides):
    vpc = overrides.pop("vpc") if "vpc" in overrides else concentrator_vpc(stack)
    args = dict(overrides, vpc=vpc)
    args.setdefault("paths_by_collector", PATHS)
    args.setdefault("sinks", [VENDOR, cc.S3ArchiveSink()])
    if "target_groups" not in args:
        args["target_groups"] = {kind: target_group(stack, vpc, kind) for kind in args["paths_by_collector"]
                                 if kind in PORTS}
    if "secrets" not in args:
        args["secrets"] = {"VENDOR_API_KEY": vendor_secret(stack)}
    return args


@pytest.mark.xdist_group("buffer_fleet_errors")
def test_vendor_credentials_passed_as_plain_text_are_refused():
    stack = Stack(App(), "S")
    with pytest.raises(ValidationError, match=r"secrets\['VENDOR_API_KEY'\] was passed as plain text"):
        BufferFleet(stack, "F", **fleet_args(stack, secrets={"VENDOR_API_KEY": "sk_live_abcdef0123456789"}))
    with pytest.raises(ValidationError, match="plain-text credential"):
        BufferFleet(stack, "G", **fleet_args(
            stack, sinks=[cc.parse_sink({"type": "otlp_http", "endpoint": "https://v.example",
                                         "headers": {"Authorization": "Bearer abcdefghijklmnop"}})],
        ))


@pytest.mark.xdist_group("buffer_fleet_errors")
def test_secrets_must_match_the_sinks():
    stack = Stack(App(), "S")
    with pytest.raises(ValidationError, match=r"read credentials from \['VENDOR_API_KEY'\] but secrets has no entry"):
        BufferFleet(stack, "F", **fleet_args(stack, secrets={}))


@pytest.mark.xdist_group("buffer_fleet_errors")
def test_a_route_whose_collector_has_no_target_group_is_refused():
    stack = Stack(App(), "S")
    vpc = concentrator_vpc(stack)
    with pytest.raises(ValidationError, match=r"go to collector 'otel', but target_groups has no 'otel'"):
        BufferFleet(stack, "F", **fleet_args(stack, vpc=vpc, target_groups={"vector": target_group(stack, vpc, "vector")}))
    with pytest.raises(ValidationError, match="which is no collector"):
        BufferFleet(stack, "G", **fleet_args(Stack(App(), "T"), paths_by_collector={"fluentd": ["/logs"]}))


@pytest.mark.xdist_group("buffer_fleet_errors")
def test_instance_target_groups_are_refused():
    stack = Stack(App(), "S")
    vpc = concentrator_vpc(stack)
    with pytest.raises(ValidationError, match="type 'INSTANCE'; ECS registers Fargate tasks only in IP"):
        BufferFleet(stack, "F", **fleet_args(
            stack, vpc=vpc, paths_by_collector={"vector": ["/metrics"]},
            target_groups={"vector": target_group(stack, vpc, "vector", "INSTANCE")},
        ))


@pytest.mark.xdist_group("buffer_fleet_errors")
def test_buffers_that_do_not_fit_or_are_too_small_are_refused_at_synth_time():
    stack = Stack(App(), "S")
    with pytest.raises(ValidationError, match="does not fit the task's 21 GiB ephemeral storage"):
        BufferFleet(stack, "F", **fleet_args(stack, ephemeral_storage_gib=21, buffer=cc.BufferPolicy.mib(30 * 1024)))
    stack = Stack(App(), "T")
    with pytest.raises(ValidationError, match="below the vector minimum"):
        BufferFleet(stack, "G", **fleet_args(stack, buffer=cc.BufferPolicy.mib(300)))


@pytest.mark.xdist_group("buffer_fleet_errors")
def test_unknown_sink_types_are_refused():
    stack = Stack(App(), "S")
    with pytest.raises(ValidationError, match="unknown sink type 'kafka'"):
        BufferFleet(stack, "F", **fleet_args(stack, sinks=[{"type": "kafka"}]))


@pytest.mark.xdist_group("buffer_fleet_errors")
def test_a_single_availability_zone_is_refused():
    stack = Stack(App(), "S")
    with pytest.raises(ValidationError, match="span 1 Availability Zone"):
        BufferFleet(stack, "F", **fleet_args(stack, vpc=concentrator_vpc(stack, max_azs=1)))


@pytest.mark.xdist_group("buffer_fleet_errors")
def test_isolated_subnets_get_a_synth_time_warning_about_vendor_egress():
    stack = Stack(App(), "S")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0, subnet_configuration=[
        ec2.SubnetConfiguration(name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
    ])
    fleet = BufferFleet(stack, "F", **fleet_args(stack, vpc=vpc))
    warnings = [m.data for m in fleet.node.metadata if m.type == "aws:cdk:warning"]
    assert any("subnets are isolated" in str(w) and "NAT" in str(w) for w in warnings), warnings


@pytest.mark.xdist_group("buffer_fleet_errors")
def test_an_existing_s3_gateway_endpoint_is_reused_not_duplicated():
    stack = Stack(App(), "S")
    vpc = concentrator_vpc(stack)
    vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
    fleet = BufferFleet(stack, "F", **fleet_args(stack, vpc=vpc))
    assert fleet.s3_endpoint is None
    other = Stack(App(), "T")
    assert BufferFleet(other, "F", **fleet_args(other)).s3_endpoint is not None
