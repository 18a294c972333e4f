"""The constructs imported into existing stacks (docs/importing.md): the three worked examples run as
written, and each trap of issue 10 now either works or stops synthesis with one line naming the fix.

The examples are exec'd from the doc (so the doc stays true) once per module. Their synthesized policies
are read back with ``core.template`` and decided by the offline evaluator (``core.evaluator``), with the
agents' identity policy from the app-account templates: every pusher may POST every gateway route and
nothing else.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Annotations, Match, Template

import telemetry_shunt.constructs as public
from telemetry_shunt.constructs import (
    AppVpcAttachment,
    ConcentratorVpc,
    TelemetryGateway,
    TelemetryServiceNetwork,
    collector_subnets_of,
)
from telemetry_shunt.core.evaluator import Request, evaluate
from telemetry_shunt.core.gateway_ref import GatewayRef
from telemetry_shunt.core.routes import Pusher, Route
from telemetry_shunt.core.template import Environment, Resolver, lattice_policies
from telemetry_shunt.errors import ValidationError
from telemetry_shunt.stacks.app_account import AppAccountStack
from tests.cdk_support import ROOT, new_app, resources
from tools.cdkcheck import lint_template, read_nag_report

DOC = ROOT / "docs" / "importing.md"
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
ROUTES = ["/v1/logs", "/ingest/app-a"]
ORG = "o-a1b2c3d4e5"
SN_ARN = "arn:aws:vpc-lattice:us-east-1:999999999999:servicenetwork/sn-0123456789abcdef0"
REF = GatewayRef(
    service_arn="arn:aws:vpc-lattice:us-east-1:999999999999:service/svc-0123456789abcdef0",
    dns_name="telemetry-gateway-0123456789abcdef0.7d67968.vpc-lattice-svcs.us-east-1.on.aws",
    routes=(Route("/v1/logs", "otel"), Route("/ingest/app-a", "vector")),
    service_network_arn=SN_ARN,
)


def one_line_naming(exc: pytest.ExceptionInfo, *needles: str) -> None:
    text = str(exc.value)
    assert "\n" not in text, f"error is not one line: {text!r}"
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"


# --- the three worked examples ------------------------------------------------------------------
@pytest.fixture(scope="module")
def examples() -> list[dict[str, Any]]:
    """Run each python block of docs/importing.md once, as written; keep its namespace.

    Each example's ``cdk.App()`` synthesizes into its own temporary directory, with cdk-nag as a
    validation plugin (a finding fails the example here).
    """
    blocks = _BLOCK.findall(DOC.read_text())
    assert len(blocks) == 3, "docs/importing.md has three worked examples"
    out = []
    for i, code in enumerate(blocks):
        ns: dict[str, Any] = {"__name__": "__doc_example__"}
        exec(compile(code, f"<importing.md#{i + 1}>", "exec"), ns)
        out.append(ns)
    return out


def template(ns: dict[str, Any]) -> dict[str, Any]:
    return ns["app"].synth().get_stack_by_name(ns["stack"].stack_name).template


@pytest.mark.parametrize("index", [0, 1, 2], ids=["existing-vpc", "association", "endpoint"])
def test_example_is_cdk_nag_and_cfn_lint_clean(examples, index):
    ns = examples[index]
    assert read_nag_report(Path(ns["app"].outdir)) == []
    findings = lint_template(template(ns), name=ns["stack"].stack_name)
    assert findings == [], "\n".join(map(str, findings))


def test_the_doc_pastes_what_the_concentrator_exports(examples):
    """The GatewayRef output (Fn::Join JSON) resolves to the value examples 2 and 3 read from context."""
    concentrator, *apps = examples
    t = template(concentrator)
    pasted = apps[0]["gateway"]
    assert apps[1]["gateway"] == pasted
    env = Environment("aws", "us-east-1", "999999999999")
    lp = lattice_policies([t], env=env)
    exported = Resolver(t, env).resolve(t["Outputs"]["GatewayRef"]["Value"])
    dns_logical = next(iter(resources(t, "AWS::VpcLattice::Service")))
    exported = (exported.replace(lp.service_arn, pasted.service_arn)
                .replace(lp.service_network_arn, pasted.service_network_arn)
                .replace(f"{dns_logical}.DnsEntry.DomainName", pasted.dns_name))
    assert GatewayRef.from_json(exported) == pasted
    assert [r.path for r in concentrator["gateway"].routes] == ROUTES
    assert Resolver(t, env).resolve(t["Outputs"]["GatewayRoutes"]["Value"]) == ",".join(ROUTES)


def _identity_policy(t: dict[str, Any], env: Environment, role: Any) -> dict[str, Any]:
    policies = [p["Properties"] for p in resources(t, "AWS::IAM::Policy").values() if p["Properties"]["Roles"] == [role]]
    assert len(policies) == 1, policies
    return Resolver(t, env).resolve(policies[0]["PolicyDocument"])


@pytest.fixture(scope="module")
def deployed(examples):
    """The three layers as deployed: the concentrator's policies under the pasted ARNs, and each agent's."""
    concentrator, payments, legacy = examples
    ref = payments["gateway"]
    t = template(concentrator)
    lp = lattice_policies([t], env=Environment("aws", "us-east-1", "999999999999"))
    text = json.dumps([lp.service_policy, lp.service_network_policy])
    text = text.replace(lp.service_arn, ref.service_arn).replace(lp.service_network_arn, ref.service_network_arn)
    service_policy, network_policy = json.loads(text)
    pt = template(payments)
    host_role = {"Ref": next(k for k in resources(pt, "AWS::IAM::Role") if k.startswith("HostRole"))}
    identities = {
        "payments": _identity_policy(pt, Environment(account="222222222222"), host_role),
        "legacy": _identity_policy(template(legacy), Environment(account="444444444444"), "legacy-agents"),
    }
    return ref, service_policy, network_policy, identities


def sts(account: str, role: str) -> str:
    return f"arn:aws:sts::{account}:assumed-role/{role}/i-0123456789abcdef0"


# (label, principal, org id, identity policy key, is a pusher)
CALLERS = [
    ("role pusher", sts("111111111111", "telemetry-agent"), None, None, True),
    ("account pusher: payments hosts", sts("222222222222", "Payments-HostRole-1A2B3C"), None, "payments", True),
    ("organization pusher: legacy agents", sts("444444444444", "legacy-agents"), ORG, "legacy", True),
    ("another role of the role pusher's account", sts("111111111111", "builder"), None, None, False),
    ("another account", sts("333333333333", "telemetry-agent"), None, None, False),
    ("another organization", sts("555555555555", "agent"), "o-zzzzzzzzzz", None, False),
    ("anonymous", None, None, None, False),
]
PATHS = [*ROUTES, "/metrics", "/v1/traces", "/ingest/app-b", "/ingest/app-a/x", "/", "/Ingest/app-a"]
METHODS = ["POST", "GET", "PUT", "DELETE"]


@pytest.mark.parametrize(("label", "principal", "org", "identity", "pusher"), CALLERS, ids=[c[0] for c in CALLERS])
def test_every_pusher_may_post_every_gateway_route_and_nothing_else(deployed, label, principal, org, identity, pusher):
    ref, service_policy, network_policy, identities = deployed
    wrong = []
    for method in METHODS:
        for path in PATHS:
            d = evaluate(Request(principal, method, path, org_id=org), service_arn=ref.service_arn,
                         service_policy=service_policy, service_network_policy=network_policy,
                         service_network_arn=ref.service_network_arn,
                         identity_policy=identities.get(identity) if identity else None)
            want = pusher and method == "POST" and path in ROUTES
            if d.allowed is not want:
                wrong.append(f"{method} {path}: {d.explanation}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("agent", ["payments", "legacy"])
def test_grant_push_is_exactly_the_gateways_routes_on_that_gateway(deployed, agent):
    """The identity policy alone (the other layers switched off): POST to the routes of this service only."""
    ref, _, _, identities = deployed
    principal = sts("222222222222", "x") if agent == "payments" else sts("444444444444", "legacy-agents")
    other_service = ref.service_arn.replace("svc-0", "svc-f")
    for service_arn in (ref.service_arn, other_service):
        for method in METHODS:
            for path in PATHS:
                d = evaluate(Request(principal, method, path), service_arn=service_arn, service_policy=None,
                             service_network_policy=None, identity_policy=identities[agent])
                want = service_arn == ref.service_arn and method == "POST" and path in ROUTES
                assert d.allowed is want, (service_arn, method, path, d.explanation)


def test_fleet_runs_in_the_private_subnets_with_egress_and_serves_the_gateway(examples):
    concentrator = examples[0]
    t = template(concentrator)
    services = resources(t, "AWS::ECS::Service")
    assert len(services) == 2  # one per collector the routes name: otel (/v1/logs) and vector (/ingest/app-a)
    for svc in services.values():
        subnets = svc["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"]
        assert len(subnets) == 2
        assert all(s["Ref"].startswith("VpcServicesSubnet") for s in subnets), subnets
        groups = [c["TargetGroupArn"] for c in svc["Properties"]["VpcLatticeConfigurations"]]
        assert all(g["Fn::GetAtt"][0].startswith("TelemetryGateway") for g in groups), groups
    # The sink defaults to the stack's: an S3 archive.
    assert concentrator["fleet"].archive_bucket is not None
    assert concentrator["network"].collector_subnets.subnet_type == ec2.SubnetType.PRIVATE_WITH_EGRESS


def test_prefix_lists_resolve_at_deploy_time_with_or_without_an_env(examples, tmp_path):
    """One behaviour: env'd (example 3, and an attachment in an env'd stack) or not, never a dummy id."""
    stack, vpc, _ = _app_stack(tmp_path, env=cdk.Environment(account="222222222222", region="eu-west-1"))
    AppVpcAttachment(stack, "Att", vpc=vpc, gateway=REF)
    stacks = [(ns["app"].synth(), template(ns)) for ns in examples]
    assembly = cdk.Stage.of(stack).synth()
    stacks.append((assembly, assembly.get_stack_by_name(stack.stack_name).template))
    assert examples[2]["stack"].region == "us-east-1"
    for assembly, t in stacks:
        assert "pl-xxxxxxxx" not in json.dumps(t)
        lookups = [json.dumps(r["Properties"]["Create"]) for r in resources(t, "Custom::AWS").values()]
        assert len(lookups) == 2 and all("describeManagedPrefixLists" in lk for lk in lookups)
        manifest = json.loads((Path(assembly.directory) / "manifest.json").read_text())
        pending = [m["key"] for m in manifest.get("missing", []) if "vpc-lattice" in json.dumps(m)]
        assert pending == [], "no synth-time prefix-list lookup is left pending"
    rules = [r["Properties"] for r in resources(stacks[-1][1], "AWS::EC2::SecurityGroupEgress").values()]
    assert len(rules) == 2 and all("Fn::GetAtt" in json.dumps(r["DestinationPrefixListId"]) for r in rules)


def test_acknowledged_association_warning_is_gone_and_endpoint_mode_has_none(examples):
    _, payments, legacy = examples
    for ns in (payments, legacy):
        Annotations.from_stack(ns["stack"]).has_no_warning("*", Match.string_like_regexp("only one VPC Lattice"))
    Template.from_stack(legacy["stack"]).has_resource_properties("AWS::EC2::VPCEndpoint", {
        "VpcEndpointType": "ServiceNetwork", "ServiceNetworkArn": legacy["gateway"].service_network_arn,
        "SubnetIds": ["subnet-0a1b2c3d4e5f60718", "subnet-0b1c2d3e4f5a60718"],
    })


# --- trap 1: grant_push and the gateway's routes -------------------------------------------------
def _app_stack(tmp_path, name="App", env: cdk.Environment | None = None) -> tuple[cdk.Stack, ec2.IVpc, iam.Role]:
    stack = cdk.Stack(new_app(tmp_path), name, env=env)
    vpc = ec2.Vpc(stack, "Vpc", availability_zones=["eu-west-1a", "eu-west-1b"] if env else None,
                  max_azs=None if env else 2, nat_gateways=0, restrict_default_security_group=False,
                  subnet_configuration=[ec2.SubnetConfiguration(name="p", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)])
    role = iam.Role(stack, "Agents", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"))
    return stack, vpc, role


def test_grant_push_without_gateway_or_routes_refuses_to_guess(tmp_path):
    stack, vpc, role = _app_stack(tmp_path)
    att = AppVpcAttachment(stack, "Att", vpc=vpc,
                           service_network=TelemetryServiceNetwork.from_service_network_arn(stack, "SN", SN_ARN))
    with pytest.raises(ValidationError) as exc:
        att.grant_push(role, gateway_arn=REF.service_arn)
    one_line_naming(exc, "pass gateway=GatewayRef", "routes=[...]")


def test_grant_push_refuses_routes_the_gateway_does_not_have(tmp_path):
    stack, vpc, role = _app_stack(tmp_path)
    att = AppVpcAttachment(stack, "Att", vpc=vpc, gateway=REF)
    with pytest.raises(ValidationError) as exc:
        att.grant_push(role, routes=[Route.vector_http("/metrics")])
    one_line_naming(exc, "['/metrics'] are not routes of the gateway")


def test_attachment_and_gateway_ref_must_name_the_same_service_network(tmp_path):
    stack, vpc, _ = _app_stack(tmp_path)
    other = TelemetryServiceNetwork.from_service_network_arn(stack, "SN", SN_ARN.replace("sn-0", "sn-f"))
    with pytest.raises(ValidationError) as exc:
        AppVpcAttachment(stack, "Att", vpc=vpc, service_network=other, gateway=REF)
    one_line_naming(exc, "is not the gateway's service network")


def test_app_account_stack_takes_the_gateway_ref(tmp_path):
    stack = AppAccountStack(new_app(tmp_path), "AppAcct", gateway=REF.to_json())
    t = Template.from_stack(stack)
    t.has_resource_properties("AWS::VpcLattice::ServiceNetworkVpcAssociation", {"ServiceNetworkIdentifier": SN_ARN})
    t.has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": {"Statement": [Match.object_like({
        "Resource": [f"{REF.service_arn}{p}" for p in ROUTES]})]}})
    Annotations.from_stack(stack).has_no_warning("*", Match.any_value())


def test_app_account_stack_without_gateway_ref_says_what_it_assumed(tmp_path):
    stack = AppAccountStack(new_app(tmp_path), "Legacy", service_network_arn=SN_ARN, gateway_arn=REF.service_arn)
    Annotations.from_stack(stack).has_warning("/Legacy", Match.string_like_regexp("assumes the default routes"))


# --- trap 2: collector subnets -------------------------------------------------------------------
def _imported(stack: cdk.Stack, **subnets: list[str]) -> ec2.IVpc:
    return ec2.Vpc.from_vpc_attributes(stack, "V", vpc_id="vpc-0123456789abcdef0", vpc_cidr_block="10.50.0.0/16",
                                       availability_zones=["us-east-1a", "us-east-1b"], **subnets)


def test_vpc_without_isolated_subnets_uses_its_private_ones(tmp_path):
    stack = cdk.Stack(new_app(tmp_path), "S")
    net = ConcentratorVpc(stack, "Net", vpc=_imported(stack, private_subnet_ids=["subnet-0a", "subnet-0b"]))
    assert net.collector_subnets.subnet_type == ec2.SubnetType.PRIVATE_WITH_EGRESS


def test_vpc_with_isolated_subnets_only_uses_them(tmp_path):
    stack = cdk.Stack(new_app(tmp_path), "S")
    vpc = _imported(stack, isolated_subnet_ids=["subnet-0a", "subnet-0b"], public_subnet_ids=["subnet-0c", "subnet-0d"])
    assert collector_subnets_of(vpc).subnet_type == ec2.SubnetType.PRIVATE_ISOLATED


@pytest.mark.parametrize(("subnets", "selection", "needles"), [
    ({"public_subnet_ids": ["subnet-0a", "subnet-0b"]}, None, ["has no private subnets", "add a private subnet group"]),
    ({"private_subnet_ids": ["subnet-0a", "subnet-0b"]}, ec2.SubnetSelection(subnet_group_name="Nope"),
     ["do not exist", "select an existing private subnet group"]),
    ({"private_subnet_ids": ["subnet-0a", "subnet-0b"]},
     ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED), ["do not exist"]),
    ({"private_subnet_ids": ["subnet-0a", "subnet-0b"]},
     ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, availability_zones=["us-east-1a"]),
     ["span 1 Availability Zone(s)", "select subnets in two zones"]),
], ids=["public-only", "unknown-group", "no-isolated-group", "one-zone"])
def test_unusable_subnets_fail_in_our_words(tmp_path, subnets, selection, needles):
    stack = cdk.Stack(new_app(tmp_path), "S")
    vpc = _imported(stack, **subnets)
    with pytest.raises(ValidationError) as exc:
        ConcentratorVpc(stack, "Net", vpc=vpc, collector_subnets=selection)
    one_line_naming(exc, *needles)
    assert "There are no" not in str(exc.value)


# --- trap 3: CIDRs with vpc= ---------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "needles"), [
    ({"app_vpc_cidrs": ["10.50.128.0/20"]}, ["app VPC CIDR #1 '10.50.128.0/20' overlaps concentrator VPC CIDR"]),
    ({"cidr": "10.200.0.0/16"}, ["is not the existing VPC's CIDR '10.50.0.0/16'", "drop cidr="]),
    ({"vendor_egress": True}, ["drop vendor_egress="]),
    ({"az_count": 3}, ["drop az_count="]),
], ids=["overlap", "other-cidr", "vendor-egress", "az-count"])
def test_cidrs_are_checked_against_an_existing_vpc(tmp_path, kwargs, needles):
    stack = cdk.Stack(new_app(tmp_path), "C")
    vpc = ec2.Vpc(stack, "Vpc", ip_addresses=ec2.IpAddresses.cidr("10.50.0.0/16"), max_azs=2, nat_gateways=0,
                  subnet_configuration=[ec2.SubnetConfiguration(name="p", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)])
    with pytest.raises(ValidationError) as exc:
        ConcentratorVpc(stack, "Net", vpc=vpc, **kwargs)
    one_line_naming(exc, *needles)


@pytest.mark.parametrize("kwargs", [{"app_vpc_cidrs": ["10.60.0.0/16"]}, {"cidr": "10.50.0.0/16"}], ids=["app", "cidr"])
def test_cidrs_against_a_vpc_of_unknown_range_are_refused_not_ignored(tmp_path, kwargs):
    stack = cdk.Stack(new_app(tmp_path), "C")
    vpc = ec2.Vpc.from_vpc_attributes(stack, "V", vpc_id="vpc-0123456789abcdef0", availability_zones=["us-east-1a", "us-east-1b"],
                                      private_subnet_ids=["subnet-0a", "subnet-0b"])
    with pytest.raises(ValidationError) as exc:
        ConcentratorVpc(stack, "Net", vpc=vpc, **kwargs)
    one_line_naming(exc, "cannot be checked", "vpc_cidr_block=")


def test_matching_cidrs_against_an_imported_range_pass(tmp_path):
    stack = cdk.Stack(new_app(tmp_path), "C")
    vpc = _imported(stack, private_subnet_ids=["subnet-0a", "subnet-0b"])
    ConcentratorVpc(stack, "Net", vpc=vpc, cidr="10.50.0.0/16", app_vpc_cidrs=["10.60.0.0/16"])


# --- trap 4: pushers declared once ---------------------------------------------------------------
def _concentrator(tmp_path):
    stack = cdk.Stack(new_app(tmp_path), "G")
    net = ConcentratorVpc(stack, "Net")
    return stack, net


def test_gateway_pushers_that_differ_from_the_network_stop_synthesis(tmp_path):
    stack, net = _concentrator(tmp_path)
    sn = TelemetryServiceNetwork(stack, "SN", pushers=["222222222222"])
    with pytest.raises(ValidationError) as exc:
        TelemetryGateway(stack, "GW", vpc=net.vpc, service_network=sn, routes=list(REF.routes),
                         pushers=["222222222222", "arn:aws:iam::111111111111:role/agent"])
    one_line_naming(exc, "only on the gateway ['role:arn:aws:iam::111111111111:role/agent']", "drop pushers=")


def test_gateway_takes_pushers_from_the_network_and_accepts_an_equal_list(tmp_path):
    stack, net = _concentrator(tmp_path)
    sn = TelemetryServiceNetwork(stack, "SN", pushers=["222222222222", ORG])
    gw = TelemetryGateway(stack, "GW", vpc=net.vpc, service_network=sn, routes=list(REF.routes))
    assert gw.pushers == [Pusher.account("222222222222"), Pusher.organization(ORG)]
    same = TelemetryGateway(stack, "GW2", vpc=net.vpc, service_network=sn, routes=list(REF.routes), name="other-gateway",
                            pushers=[Pusher.organization(ORG), "222222222222"])
    assert {str(p) for p in same.pushers} == {str(p) for p in gw.pushers}


def test_gateway_on_an_imported_network_needs_its_pushers_once(tmp_path):
    stack, net = _concentrator(tmp_path)
    bare = TelemetryServiceNetwork.from_service_network_arn(stack, "Bare", SN_ARN)
    with pytest.raises(ValidationError) as exc:
        TelemetryGateway(stack, "GW", vpc=net.vpc, service_network=bare, routes=list(REF.routes))
    one_line_naming(exc, "from_service_network_arn(..., pushers=[...])")
    known = TelemetryServiceNetwork.from_service_network_arn(stack, "Known", SN_ARN, pushers=["222222222222"])
    gw = TelemetryGateway(stack, "GW2", vpc=net.vpc, service_network=known, routes=list(REF.routes))
    assert gw.pushers == [Pusher.account("222222222222")]


# --- trap 7: access logs on an imported service network ------------------------------------------
def _gateway_on_imported(tmp_path, **kwargs):
    stack, net = _concentrator(tmp_path)
    sn = TelemetryServiceNetwork.from_service_network_arn(stack, "SN", SN_ARN, pushers=["222222222222"],
                                                          **kwargs.pop("network", {}))
    TelemetryGateway(stack, "GW", vpc=net.vpc, service_network=sn, routes=list(REF.routes), **kwargs)
    return stack


def test_gateway_on_imported_network_without_destination_warns(tmp_path):
    stack = _gateway_on_imported(tmp_path)
    Template.from_stack(stack).resource_count_is("AWS::VpcLattice::AccessLogSubscription", 0)
    Annotations.from_stack(stack).has_warning("/G/GW", Match.string_like_regexp("no access logs.*access_logs="))


def test_gateway_access_logs_to_a_given_bucket(tmp_path):
    stack, net = _concentrator(tmp_path)
    bucket = s3.Bucket.from_bucket_name(stack, "Logs", "telemetry-access-logs")
    sn = TelemetryServiceNetwork.from_service_network_arn(stack, "SN", SN_ARN, pushers=["222222222222"])
    TelemetryGateway(stack, "GW", vpc=net.vpc, service_network=sn, routes=list(REF.routes), access_logs=bucket)
    Template.from_stack(stack).has_resource_properties("AWS::VpcLattice::AccessLogSubscription", {
        "DestinationArn": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::telemetry-access-logs"]]}})


def test_imported_network_carries_a_log_group_destination_to_its_gateways(tmp_path):
    stack, net = _concentrator(tmp_path)
    group = logs.LogGroup.from_log_group_name(stack, "Logs", "/telemetry/access")
    sn = TelemetryServiceNetwork.from_service_network_arn(stack, "SN", SN_ARN, pushers=["222222222222"],
                                                          access_logs=group)
    TelemetryGateway(stack, "GW", vpc=net.vpc, service_network=sn, routes=list(REF.routes))
    arn = Template.from_stack(stack).to_json()
    subs = list(resources(arn, "AWS::VpcLattice::AccessLogSubscription").values())
    assert len(subs) == 1
    destination = json.dumps(subs[0]["Properties"]["DestinationArn"])
    assert ":log-group:/telemetry/access" in destination and ":*" not in destination


# --- trap 8: imports in our words, plain pushers, exports ----------------------------------------
@pytest.mark.parametrize(("arn", "needles"), [
    ("sn-0123456789abcdef0", ["that is a service network id", "ServiceNetworkArn output"]),
    ("arn:aws:vpc-lattice:us-east-1:999999999999:service/svc-0123456789abcdef0", ["must look like"]),
    (SN_ARN + "\n", ["must look like"]),
])
def test_from_service_network_arn_refuses_in_our_words(tmp_path, arn, needles):
    stack = cdk.Stack(new_app(tmp_path), "I")
    with pytest.raises(ValidationError) as exc:
        TelemetryServiceNetwork.from_service_network_arn(stack, "SN", arn)
    assert "\n" not in str(exc.value).replace(repr(arn), "")
    for needle in needles:
        assert needle in str(exc.value)


@pytest.mark.parametrize(("ref", "needle"), [
    ("{not json", "is not valid JSON"),
    ('{"version": 1}', "missing keys"),
    (42, "is not a GatewayRef"),
])
def test_from_gateway_ref_refuses_in_our_words(tmp_path, ref, needle):
    stack = cdk.Stack(new_app(tmp_path), "I")
    with pytest.raises(ValidationError, match=re.escape(needle)):
        TelemetryGateway.from_gateway_ref(stack, "GW", ref)


def test_from_gateway_ref_gives_what_agents_need(tmp_path):
    stack = cdk.Stack(new_app(tmp_path), "I")
    gw = TelemetryGateway.from_gateway_ref(stack, "GW", REF.to_json())
    assert (gw.service_arn, gw.endpoint, [r.path for r in gw.routes]) == (REF.service_arn, REF.dns_name, ROUTES)


def test_plain_string_pushers_are_parsed_and_bad_ones_named(tmp_path):
    stack = cdk.Stack(new_app(tmp_path), "P")
    sn = TelemetryServiceNetwork(stack, "SN", pushers=["arn:aws:iam::111111111111:role/agent", "222222222222", ORG])
    assert [p.kind for p in sn.pushers] == ["role", "account", "organization"]
    with pytest.raises(ValidationError, match="pusher '\\*' is a wildcard"):
        TelemetryServiceNetwork(stack, "SN2", pushers=["*"])
    with pytest.raises(ValidationError, match="must be a list"):
        TelemetryServiceNetwork(stack, "SN3", pushers="222222222222")


def test_the_package_exports_the_public_constructs():
    for name in public.__all__:
        assert getattr(public, name).__name__ == name
    assert {"ConcentratorVpc", "TelemetryServiceNetwork", "TelemetryGateway", "AppVpcAttachment", "BufferFleet",
            "KillSwitch", "AgentRolloutSupport"} <= set(public.__all__)


def test_gateway_ref_from_stack_outputs_at_deploy_time(tmp_path):
    """docs/cross-account.md: ARNs through Fn::GetStackOutput, routes known at synth time."""
    stack, vpc, role = _app_stack(tmp_path)
    where = {"region": "us-east-1", "role_arn": "arn:aws:iam::999999999999:role/read-telemetry-outputs"}
    ref = GatewayRef(
        service_arn=cdk.Fn.get_stack_output("TelemetryConcentrator", "GatewayArn", **where),
        dns_name=cdk.Fn.get_stack_output("TelemetryConcentrator", "GatewayEndpoint", **where),
        service_network_arn=cdk.Fn.get_stack_output("TelemetryConcentrator", "ServiceNetworkArn", **where),
        routes=REF.routes,
    )
    AppVpcAttachment(stack, "Att", vpc=vpc, gateway=ref).grant_push(role)
    t = Template.from_stack(stack).to_json()
    association = next(iter(resources(t, "AWS::VpcLattice::ServiceNetworkVpcAssociation").values()))
    assert association["Properties"]["ServiceNetworkIdentifier"] == {"Fn::GetStackOutput": {
        "StackName": "TelemetryConcentrator", "OutputName": "ServiceNetworkArn", **{
            "Region": "us-east-1", "RoleArn": "arn:aws:iam::999999999999:role/read-telemetry-outputs"}}}
    policy = next(iter(resources(t, "AWS::IAM::Policy").values()))["Properties"]["PolicyDocument"]
    granted = [r["Fn::Join"][1][1] for r in policy["Statement"][0]["Resource"]]
    assert granted == ROUTES
    with pytest.raises(ValidationError, match="holds deploy-time tokens"):
        ref.to_json()


CONFIG_ARN = "arn:aws:appconfig:us-east-1:999999999999:application/abc1234/environment/def5678/configuration/ghi9012"


@pytest.mark.parametrize("arn", [
    "abc1234",
    "arn:aws:appconfig:us-east-1:999999999999:application/abc1234",
    CONFIG_ARN.replace("ghi9012", "GHI9012"),
    CONFIG_ARN + "\n",
], ids=["id", "application-arn", "upper-case-id", "trailing-newline"])
def test_kill_switch_import_refuses_in_our_words(tmp_path, arn):
    stack = cdk.Stack(new_app(tmp_path), "K")
    with pytest.raises(ValidationError, match="kill-switch configuration ARN .* must look like"):
        public.KillSwitch.from_configuration_arn(stack, "KS", arn)


def test_kill_switch_import_grants_reading_that_configuration(tmp_path):
    stack, _, role = _app_stack(tmp_path)
    public.KillSwitch.from_configuration_arn(stack, "KS", CONFIG_ARN).grant_read(role)
    Template.from_stack(stack).has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": {"Statement": [{
        "Effect": "Allow", "Resource": CONFIG_ARN,
        "Action": ["appconfig:StartConfigurationSession", "appconfig:GetLatestConfiguration"]}], "Version": "2012-10-17"}})


# --- trap 6: BufferFleet wired from the gateway ----------------------------------------------------
def test_fleet_needs_the_gateway_or_both_wirings_and_never_both(tmp_path):
    stack, net = _concentrator(tmp_path)
    sn = TelemetryServiceNetwork(stack, "SN", pushers=["222222222222"])
    gw = TelemetryGateway(stack, "GW", vpc=net.vpc, service_network=sn, routes=list(REF.routes))
    with pytest.raises(ValidationError) as exc:
        public.BufferFleet(stack, "F1", vpc=net.vpc)
    one_line_naming(exc, "BufferFleet needs gateway=")
    with pytest.raises(ValidationError) as exc:
        public.BufferFleet(stack, "F2", vpc=net.vpc, gateway=gw, target_groups=gw.target_groups)
    one_line_naming(exc, "drop target_groups= and paths_by_collector=")


def test_fleet_on_an_isolated_only_vpc_uses_it_and_warns(tmp_path):
    stack, net = _concentrator(tmp_path)  # the ConcentratorVpc default: isolated, no NAT
    sn = TelemetryServiceNetwork(stack, "SN", pushers=["222222222222"])
    gw = TelemetryGateway(stack, "GW", vpc=net.vpc, service_network=sn, routes=[Route.vector_http("/ingest/app-a")])
    fleet = public.BufferFleet(stack, "Fleet", vpc=net.vpc, gateway=gw)
    assert net.collector_subnets.subnet_type == ec2.SubnetType.PRIVATE_ISOLATED
    assert fleet.az_count == 2 and list(fleet.services) == ["vector"]
    Annotations.from_stack(stack).has_warning("/G/Fleet", Match.string_like_regexp("subnets are isolated"))


def test_log_group_destination_in_another_account_keeps_its_arn(tmp_path):
    stack, net = _concentrator(tmp_path)
    arn = "arn:aws:logs:us-east-1:888888888888:log-group:/central/lattice-access"
    group = logs.LogGroup.from_log_group_arn(stack, "Central", arn + ":*")
    sn = TelemetryServiceNetwork.from_service_network_arn(stack, "SN", SN_ARN, pushers=["222222222222"])
    TelemetryGateway(stack, "GW", vpc=net.vpc, service_network=sn, routes=list(REF.routes), access_logs=group)
    Template.from_stack(stack).has_resource_properties("AWS::VpcLattice::AccessLogSubscription", {"DestinationArn": arn})


def test_access_logs_refuse_what_is_neither_bucket_nor_log_group(tmp_path):
    stack = cdk.Stack(new_app(tmp_path), "X")
    with pytest.raises(ValidationError, match="neither an S3 bucket nor a CloudWatch Logs log group"):
        TelemetryServiceNetwork.from_service_network_arn(stack, "SN", SN_ARN, access_logs="my-bucket")
