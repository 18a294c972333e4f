"""Service-network associations and endpoints expose the private-DNS options; the rendered DnsOptions are
checked against CloudFormation's own resource schemas (cfn-lint), bad options are refused by name."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2

from telemetry_shunt.constructs.app_attachment import AppVpcAttachment
from telemetry_shunt.constructs.service_network import TelemetryServiceNetwork
from telemetry_shunt.errors import ValidationError
from tests.cdk_support import new_app, resources
from tools.cdkcheck import lint_template

SN_ARN = "arn:aws:vpc-lattice:us-east-1:999999999999:servicenetwork/sn-0123456789abcdef0"


def _attachment(tmp_path, **kwargs):
    stack = cdk.Stack(new_app(tmp_path), "App", env=cdk.Environment(account="111111111111", region="us-east-1"))
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0, restrict_default_security_group=False,
                  subnet_configuration=[ec2.SubnetConfiguration(name="app", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)])
    network = TelemetryServiceNetwork.from_service_network_arn(stack, "SN", SN_ARN)
    AppVpcAttachment(stack, "Attach", vpc=vpc, service_network=network, **kwargs)
    return cdk.assertions.Template.from_stack(stack).to_json()


@pytest.mark.parametrize(("mode", "rtype", "extra"), [
    ("association", "AWS::VpcLattice::ServiceNetworkVpcAssociation", {}),
    ("endpoint", "AWS::EC2::VPCEndpoint", {"subnets": ec2.SubnetSelection(subnet_group_name="app")}),
])
def test_private_dns_options_reach_the_resource_and_pass_the_schema(tmp_path, mode, rtype, extra):
    template = _attachment(tmp_path, mode=mode, private_dns_enabled=True,
                           private_dns_preference="VERIFIED_DOMAINS_AND_SPECIFIED_DOMAINS",
                           private_dns_specified_domains=["telemetry.example.com", "*.corp.example"], **extra)
    (resource,) = resources(template, rtype).values()
    assert resource["Properties"]["PrivateDnsEnabled"] is True
    assert resource["Properties"]["DnsOptions"] == {
        "PrivateDnsPreference": "VERIFIED_DOMAINS_AND_SPECIFIED_DOMAINS",
        "PrivateDnsSpecifiedDomains": ["telemetry.example.com", "*.corp.example"],
    }
    assert [f for f in lint_template(template) if "DnsOptions" in f.path or "PrivateDns" in f.path] == []


def test_without_options_nothing_changes(tmp_path):
    (association,) = resources(_attachment(tmp_path), "AWS::VpcLattice::ServiceNetworkVpcAssociation").values()
    assert "DnsOptions" not in association["Properties"] and "PrivateDnsEnabled" not in association["Properties"]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"private_dns_preference": "SOME_DOMAINS"}, "private DNS preference 'SOME_DOMAINS' must be one of"),
    ({"private_dns_preference": "SPECIFIED_DOMAINS_ONLY"}, "needs 1-10 specified domains"),
    ({"private_dns_specified_domains": ["example.com"]}, "need preference VERIFIED_DOMAINS_AND_SPECIFIED_DOMAINS"),
    ({"private_dns_preference": "SPECIFIED_DOMAINS_ONLY", "private_dns_specified_domains": ["Example.com\n"]},
     r"private DNS domain 'Example.com\\n'"),
    ({"private_dns_preference": "SPECIFIED_DOMAINS_ONLY", "private_dns_specified_domains": [f"d{i}.example" for i in range(11)]},
     "needs 1-10 specified domains"),
    ({"private_dns_preference": "ALL_DOMAINS", "private_dns_enabled": False}, "needs private DNS"),
])
def test_bad_private_dns_options_are_refused(tmp_path, kwargs, match):
    with pytest.raises(ValidationError, match=match):
        _attachment(tmp_path, **kwargs)
