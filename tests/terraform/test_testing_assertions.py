"""Each Terraform construct checked with CDK Terrain's own assertions (cdktn.Testing), one stack per construct;
the failing cases of each construct's validation are in test_network, test_control and test_fleet."""

from __future__ import annotations

import pytest

from telemetry_shunt.core.contract import agent_document_name
from telemetry_shunt.core.hostside import DistributorPackage
from telemetry_shunt.core.routes import default_routes
from telemetry_shunt.terraform import (
    AgentRolloutSupport,
    AppVpcAttachment,
    BufferFleet,
    ConcentratorVpc,
    KillSwitch,
    TelemetryGateway,
    TelemetryServiceNetwork,
)
from telemetry_shunt.terraform import _aws as aws
from tests.terraform.conftest import REF

pytestmark = pytest.mark.xdist_group("terraform")
T = aws.Testing


def stack():
    s = aws.TerraformStack(T.app(), "s")
    aws.AwsProvider(s, "aws", region="us-east-1")
    return s


@pytest.fixture(scope="module")
def network_synth():
    s = stack()
    vpc = ConcentratorVpc(s, "Vpc", availability_zones=["us-east-1a", "us-east-1b"])
    network = TelemetryServiceNetwork(s, "Network", pushers=["222222222222"])
    gateway = TelemetryGateway(s, "Gateway", vpc=vpc, service_network=network, routes=default_routes())
    BufferFleet(s, "Fleet", vpc=vpc, gateway=gateway, fleet_name="telemetry")
    return T.synth(s)


def test_concentrator_vpc(network_synth):
    assert T.to_have_resource_with_properties(network_synth, "aws_vpc", {"cidr_block": "10.200.0.0/16",
                                                                         "enable_dns_support": True})
    assert T.to_have_resource_with_properties(network_synth, "aws_flow_log", {"traffic_type": "ALL"})
    assert T.to_have_resource(network_synth, "aws_default_security_group")
    assert not T.to_have_resource(network_synth, "aws_nat_gateway")  # no vendor egress unless asked


def test_service_network(network_synth):
    assert T.to_have_resource_with_properties(network_synth, "aws_vpclattice_service_network",
                                              {"name": "telemetry", "auth_type": "AWS_IAM"})
    assert T.to_have_resource(network_synth, "aws_vpclattice_access_log_subscription")
    assert T.to_have_resource_with_properties(network_synth, "aws_s3_bucket_public_access_block",
                                              {"block_public_acls": True, "restrict_public_buckets": True})


def test_gateway(network_synth):
    assert T.to_have_resource_with_properties(network_synth, "aws_vpclattice_service",
                                              {"name": "telemetry-gateway", "auth_type": "AWS_IAM"})
    assert T.to_have_resource_with_properties(network_synth, "aws_vpclattice_listener",
                                              {"protocol": "HTTPS", "port": 443,
                                               "default_action": {"fixed_response": {"status_code": 404}}})
    for route in default_routes():
        assert T.to_have_resource_with_properties(network_synth, "aws_vpclattice_listener_rule", {
            "priority": route.rule_priority,
            "match": {"http_match": {"method": "POST", "path_match": {"case_sensitive": True,
                                                                      "match": {"exact": route.path}}}}})


def test_buffer_fleet(network_synth):
    assert T.to_have_resource_with_properties(network_synth, "aws_ecs_service", {
        "launch_type": "FARGATE", "deployment_circuit_breaker": {"enable": True, "rollback": True}})
    assert T.to_have_resource_with_properties(network_synth, "aws_vpc_endpoint", {"vpc_endpoint_type": "Gateway"})
    assert T.to_have_resource_with_properties(network_synth, "aws_appautoscaling_target",
                                              {"min_capacity": 2, "max_capacity": 20})


def test_app_vpc_attachment():
    s = stack()
    AppVpcAttachment(s, "A", vpc_id="vpc-0123456789abcdef0", gateway=REF, mode="endpoint",
                     subnet_ids=["subnet-0a", "subnet-0b"], private_dns_enabled=True).grant_push("agent")
    out = T.synth(s)
    assert T.to_have_resource_with_properties(out, "aws_vpc_endpoint", {"vpc_endpoint_type": "ServiceNetwork",
                                                                        "service_network_arn": REF.service_network_arn,
                                                                        "private_dns_enabled": True})
    assert T.to_have_resource_with_properties(out, "aws_iam_role_policy", {"role": "agent", "name": "telemetry-shunt-push"})
    assert T.to_have_data_source(out, "aws_ec2_managed_prefix_list")
    assert not T.to_have_resource(out, "aws_vpc_security_group_ingress_rule")


def test_kill_switch_and_rollout_support():
    s = stack()
    ks = KillSwitch(s, "K", availability_zones=["us-east-1a", "us-east-1b"])
    AgentRolloutSupport(s, "R", kill_switch=ks, fleet="demo",
                        agent=DistributorPackage(name="AmazonCloudWatchAgent", service="amazon-cloudwatch-agent"))
    out = T.synth(s)
    assert T.to_have_resource_with_properties(out, "aws_appconfig_deployment_strategy",
                                              {"deployment_duration_in_minutes": 0, "final_bake_time_in_minutes": 0})
    assert T.to_have_resource_with_properties(out, "aws_ssm_document", {"name": agent_document_name("upgrade"),
                                                                        "document_type": "Command"})
    assert T.to_have_resource_with_properties(out, "aws_cloudwatch_metric_alarm", {"treat_missing_data": "breaching"})
    assert T.to_have_resource_with_properties(out, "aws_dynamodb_table", {"billing_mode": "PAY_PER_REQUEST",
                                                                          "point_in_time_recovery": {"enabled": True}})
