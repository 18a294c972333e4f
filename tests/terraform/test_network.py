"""The Terraform flavour's network: the same push-only product as the CDK constructs, from the same core.

Parity is checked on what each flavour deploys after resolving its references (CloudFormation intrinsics,
Terraform interpolations) to the same kind of fakes; the evaluator then decides requests on the Terraform
policies as it does on the CloudFormation ones.
"""

from __future__ import annotations

import json
import re

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam

from telemetry_shunt import constructs as cdk_flavour
from telemetry_shunt.core import template as cfn
from telemetry_shunt.core import tfjson
from telemetry_shunt.core.evaluator import Request, evaluate
from telemetry_shunt.core.routes import Pusher, Route
from telemetry_shunt.errors import ValidationError
from telemetry_shunt.terraform import AppVpcAttachment, ConcentratorVpc, TelemetryGateway, TelemetryServiceNetwork
from telemetry_shunt.terraform import _aws as aws
from tests.cdk_support import new_app, template_of
from tests.terraform.conftest import AZS, PUSHERS, REF, ROUTES, resources, synth

pytestmark = pytest.mark.xdist_group("terraform")

def cdk_templates(outdir):
    app = new_app(outdir)
    stack = cdk.Stack(app, "Concentrator")
    vpc = cdk_flavour.ConcentratorVpc(stack, "Vpc")
    network = cdk_flavour.TelemetryServiceNetwork(stack, "Network", pushers=PUSHERS, share_with=["222222222222"])
    cdk_flavour.TelemetryGateway(stack, "Gateway", vpc=vpc.vpc, service_network=network, routes=ROUTES,
                                 pushers=[Pusher.parse(p) for p in PUSHERS])
    app_stack = cdk.Stack(app, "App")
    app_vpc = ec2.Vpc(app_stack, "AppVpc", max_azs=2, nat_gateways=0,
                      subnet_configuration=[ec2.SubnetConfiguration(name="p", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)])
    role = iam.Role(app_stack, "Agent", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"))
    cdk_flavour.AppVpcAttachment(app_stack, "Association", vpc=app_vpc, gateway=REF).grant_push(role)
    return template_of(stack), template_of(app_stack)


@pytest.fixture(scope="module")
def cfn_templates(tmp_path_factory):
    return cdk_templates(tmp_path_factory.mktemp("cdk"))


def _anonymised(lp) -> str:
    """A policy pair with each flavour's (fake) service and network ARNs replaced by placeholders."""
    text = json.dumps([lp.service_policy, lp.service_network_policy], sort_keys=True)
    return text.replace(lp.service_arn, "<service>").replace(lp.service_network_arn, "<network>")


def test_auth_policies_are_the_same_documents_in_both_flavours(tf, cfn_templates):
    tf_lp = tfjson.lattice_policies([tf["concentrator"]])
    cfn_lp = cfn.lattice_policies([cfn_templates[0]])
    assert tf_lp.service_policy and tf_lp.service_network_policy
    assert _anonymised(tf_lp) == _anonymised(cfn_lp)


def test_routes_and_priorities_are_the_same_in_both_flavours(tf, cfn_templates):
    tf_rules = {r["match"]["http_match"]["path_match"]["match"]["exact"]: (r["priority"], r["match"]["http_match"]["method"])
                for r in resources(tf["concentrator"], "aws_vpclattice_listener_rule").values()}
    cfn_rules = {r["Properties"]["Match"]["HttpMatch"]["PathMatch"]["Match"]["Exact"]:
                 (r["Properties"]["Priority"], r["Properties"]["Match"]["HttpMatch"]["Method"])
                 for r in cfn_templates[0]["Resources"].values() if r["Type"] == "AWS::VpcLattice::Rule"}
    assert tf_rules == cfn_rules == {r.path: (r.rule_priority, "POST") for r in ROUTES}
    listener = next(iter(resources(tf["concentrator"], "aws_vpclattice_listener").values()))
    assert (listener["protocol"], listener["port"], listener["default_action"]) == \
        ("HTTPS", 443, {"fixed_response": {"status_code": 404}})


def test_app_side_security_group_egress_is_the_lattice_prefix_lists_only_in_both_flavours(tf, cfn_templates):
    doc = tf["app"]
    rules = resources(doc, "aws_vpc_security_group_egress_rule")
    lists = doc["data"]["aws_ec2_managed_prefix_list"]
    names = sorted(lists[re.search(r"managed_prefix_list\.([^.]+)\.id", r["prefix_list_id"]).group(1)]["name"]
                   for r in rules.values() if "Association" in r["//"]["metadata"]["path"])
    region_source = next(iter(doc["data"]["aws_region"]))
    region = "${data.aws_region." + region_source + ".region}"
    assert names == [f"com.amazonaws.{region}.ipv6.vpc-lattice", f"com.amazonaws.{region}.vpc-lattice"]
    assert {(r["ip_protocol"], r["from_port"], r["to_port"]) for r in rules.values()} == {("tcp", 443, 443)}
    assert not resources(doc, "aws_vpc_security_group_ingress_rule")
    for sg in resources(doc, "aws_security_group").values():
        assert "egress" not in sg and "ingress" not in sg  # inline rules would fight the rule resources
    cfn_egress = [r["Properties"] for r in cfn_templates[1]["Resources"].values()
                  if r["Type"] == "AWS::EC2::SecurityGroupEgress"]
    assert {(e["IpProtocol"], e["FromPort"], e["ToPort"]) for e in cfn_egress} == {("tcp", 443, 443)}
    assert len(cfn_egress) == len([r for r in rules.values() if "Association" in r["//"]["metadata"]["path"]]) == 2


def test_grant_push_is_the_same_identity_policy_in_both_flavours(tf, cfn_templates):
    tf_doc = json.loads(next(iter(resources(tf["app"], "aws_iam_role_policy").values()))["policy"])
    cfn_doc = next(r["Properties"]["PolicyDocument"] for r in cfn_templates[1]["Resources"].values()
                   if r["Type"] == "AWS::IAM::Policy")
    (tf_stmt,), (cfn_stmt,) = tf_doc["Statement"], cfn_doc["Statement"]
    assert tf_stmt["Action"] == cfn_stmt["Action"] == "vpc-lattice-svcs:Invoke"
    assert tf_stmt["Condition"] == cfn_stmt["Condition"]
    assert tf_stmt["Resource"] == cfn_stmt["Resource"] == [f"{REF.service_arn}{r.path}" for r in ROUTES]


@pytest.mark.parametrize("method", ["POST", "GET", "PUT", "DELETE"])
def test_request_matrix_on_the_terraform_policies(tf, method):
    lp = tfjson.lattice_policies([tf["concentrator"]])
    callers = {"arn:aws:iam::111111111111:role/agent": None, "arn:aws:iam::222222222222:role/any": None,
               "arn:aws:iam::333333333333:role/org-member": "o-a1b2c3d4e5",
               "arn:aws:iam::444444444444:role/stranger": None, None: None}
    pushers = set(list(callers)[:3])
    for principal, org in callers.items():
        for path in [*(r.path for r in ROUTES), "/", "/admin", "/metrics/x", "/METRICS"]:
            d = evaluate(Request(principal, method, path, org_id=org), service_arn=lp.service_arn,
                         service_policy=lp.service_policy, service_network_policy=lp.service_network_policy,
                         service_network_arn=lp.service_network_arn)
            want = principal in pushers and method == "POST" and path in {r.path for r in ROUTES}
            assert d.allowed is want, f"{principal} {method} {path}: {d.explanation}"


def test_output_names_no_absolute_path_and_pins_backend_and_provider(tf):
    for name, doc in tf.items():
        text = json.dumps(doc)
        assert "/tmp/" not in text and "/work/" not in text and "/home/" not in text, name
        assert doc["terraform"]["backend"] == {"local": {"path": f"terraform.{name}.tfstate"}}
        assert doc["terraform"]["required_providers"]["aws"]["source"] == "hashicorp/aws"
    assert set(tf["concentrator"]["output"]) == {"service_network_arn", "gateway_arn", "gateway_endpoint",
                                                 "gateway_routes", "gateway_ref"}


def test_rule_ids_depend_on_their_own_route_only(tmp_path):
    def rule_ids(routes):
        app = aws.App(outdir=str(tmp_path / str(len(routes))))
        stack = aws.TerraformStack(app, "s")
        aws.AwsProvider(stack, "aws", region="us-east-1")
        network = TelemetryServiceNetwork(stack, "Network", pushers=PUSHERS)
        TelemetryGateway(stack, "Gateway", vpc="vpc-0123456789abcdef0", service_network=network, routes=routes)
        rules = resources(synth(app)["s"], "aws_vpclattice_listener_rule")
        return {r["match"]["http_match"]["path_match"]["match"]["exact"]: (k, r["priority"], r["name"]) for k, r in rules.items()}
    before, after = rule_ids(ROUTES), rule_ids([r for r in ROUTES if r.path != "/v1/metrics"])
    assert after == {p: v for p, v in before.items() if p != "/v1/metrics"}


@pytest.mark.parametrize("build, match", [
    (lambda s, n: ConcentratorVpc(s, "V", availability_zones=["us-east-1a"]), "at least 2 Availability Zones"),
    (lambda s, n: ConcentratorVpc(s, "V", availability_zones=AZS, cidr="10.0.0.0/16", app_vpc_cidrs=["10.0.1.0/24"]),
     "overlaps"),
    (lambda s, n: ConcentratorVpc(s, "V", availability_zones=AZS, flow_log_retention_days=0), "flow_log_retention_days"),
    (lambda s, n: TelemetryServiceNetwork(s, "N", pushers=["*"]), "wildcard"),
    (lambda s, n: TelemetryServiceNetwork(s, "N", pushers=PUSHERS, share_with=["arn:aws:organizations::*:ou/*"]), "share target"),
    (lambda s, n: TelemetryServiceNetwork(s, "N", pushers=PUSHERS, name="Bad_Name"), "service network name"),
    (lambda s, n: TelemetryGateway(s, "G", vpc="vpc-1", service_network=n, routes=[]), "no routes"),
    (lambda s, n: TelemetryGateway(s, "G", vpc="vpc-1", service_network=n, routes=ROUTES, pushers=["333333333333"]),
     "differ from the service network's"),
    (lambda s, n: TelemetryGateway(s, "G", vpc="vpc-1", service_network=n, routes=ROUTES, idle_timeout_seconds=30),
     "idle_timeout_seconds"),
    (lambda s, n: AppVpcAttachment(s, "A", vpc_id="vpc-1"), "needs gateway=GatewayRef"),
    (lambda s, n: AppVpcAttachment(s, "A", vpc_id="vpc-1", gateway=REF, mode="peering"), "mode 'peering'"),
    (lambda s, n: AppVpcAttachment(s, "A", vpc_id="vpc-1", gateway=REF, mode="endpoint"), "at least 2"),
    (lambda s, n: AppVpcAttachment(s, "A", vpc_id="vpc-1", gateway="{"), "not valid JSON"),
    (lambda s, n: AppVpcAttachment(s, "A", vpc_id="vpc-1", service_network_arn=REF.service_network_arn).grant_push("r"),
     "needs the gateway's routes"),
    (lambda s, n: AppVpcAttachment(s, "A", vpc_id="vpc-1", gateway=REF).grant_push("r", routes=[Route("/other")]),
     "not routes of the gateway"),
])
def test_bad_input_is_one_error_naming_the_value(tmp_path, build, match):
    stack = aws.TerraformStack(aws.App(outdir=str(tmp_path)), "s")
    network = TelemetryServiceNetwork(stack, "Network", pushers=PUSHERS)
    with pytest.raises(ValidationError, match=match):
        build(stack, network)


def test_the_same_bad_pusher_gives_the_same_message_in_both_flavours(tmp_path):
    with pytest.raises(ValidationError) as tf_error:
        TelemetryServiceNetwork(aws.TerraformStack(aws.App(outdir=str(tmp_path)), "s"), "N",
                                pushers=["\u0661" * 12])
    with pytest.raises(ValidationError) as cdk_error:
        cdk_flavour.TelemetryServiceNetwork(cdk.Stack(new_app(tmp_path / "c"), "S"), "N",
                                            pushers=["\u0661" * 12])
    assert str(tf_error.value) == str(cdk_error.value)


@pytest.mark.parametrize("mode, kwargs", [("association", {}), ("endpoint", {"subnet_ids": ["subnet-0a", "subnet-0b"]})])
def test_private_dns_options_as_in_the_cdk_flavour(tmp_path, mode, kwargs):
    stack = aws.TerraformStack(aws.App(outdir=str(tmp_path)), "s")
    aws.AwsProvider(stack, "aws", region="us-east-1")
    AppVpcAttachment(stack, "A", vpc_id="vpc-1", gateway=REF, mode=mode, private_dns_enabled=True,
                     private_dns_preference="SPECIFIED_DOMAINS_ONLY", private_dns_specified_domains=["*.example.com"],
                     **kwargs)
    doc = synth(stack.node.scope)["s"]
    rtype = "aws_vpclattice_service_network_vpc_association" if mode == "association" else "aws_vpc_endpoint"
    (resource,) = resources(doc, rtype).values()
    assert resource["dns_options"] == {"private_dns_preference": "SPECIFIED_DOMAINS_ONLY",
                                       "private_dns_specified_domains": ["*.example.com"]}
    with pytest.raises(ValidationError, match="needs 1-10 specified domains"):
        AppVpcAttachment(stack, "B", vpc_id="vpc-1", gateway=REF, private_dns_preference="SPECIFIED_DOMAINS_ONLY")
    with pytest.raises(ValidationError, match="needs private DNS"):
        AppVpcAttachment(stack, "C", vpc_id="vpc-1", gateway=REF, private_dns_enabled=False,
                         private_dns_preference="ALL_DOMAINS")
