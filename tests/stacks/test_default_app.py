"""The default app: both stacks synthesize offline, pass cdk-nag and cfn-lint, and are wired together."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk.assertions import Match, Template

import app as default_app
from telemetry_shunt.core.gateway_ref import GatewayRef
from telemetry_shunt.core.routes import default_routes
from telemetry_shunt.core.template import Environment, Resolver, lattice_policies
from tests.cdk_support import ROOT, new_app, resources
from tools.cdkcheck import lint_template, synth_with_nag


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("app")
    app = new_app(outdir)
    stacks = default_app.build(app)
    assembly, findings = synth_with_nag(app)
    return stacks, assembly, findings, outdir


def test_no_unacknowledged_cdk_nag_findings(synthesized):
    _, assembly, findings, _ = synthesized
    assert findings == [], "\n".join(map(str, findings))
    assert assembly is not None


def test_every_template_is_cfn_lint_clean(synthesized):
    _, assembly, _, _ = synthesized
    templates = {s.stack_name: s.template for s in assembly.stacks}
    assert set(templates) == {"TelemetryConcentrator", "TelemetryAppAccount", "TelemetryAgentControl"}
    for name, template in templates.items():
        findings = lint_template(template, name=name)
        assert findings == [], "\n".join(map(str, findings))


def test_every_acknowledgement_is_specific_and_on_a_resource(synthesized):
    _, _, _, outdir = synthesized
    acks = []
    for meta in Path(outdir).glob("*.metadata.json"):
        for path, entries in json.loads(meta.read_text()).items():
            for e in entries:
                if e["type"] == "aws:cdk:acknowledged-rules":
                    acks += [(path, rule, reason) for rule, reason in e["data"].items() if "AwsSolutions" in rule]
    assert acks, "expected the provider and log-bucket acknowledgements"
    for path, rule, reason in acks:
        assert path.count("/") >= 2, f"{rule} acknowledged on a whole stack ({path}); put it on the resource"
        assert len(reason) >= 25, f"{rule} at {path} has a placeholder reason {reason!r}"


def test_app_account_is_wired_to_the_concentrator(synthesized):
    stacks, _, _, _ = synthesized
    t = Template.from_stack(stacks["app_account"])
    t.has_resource_properties("AWS::VpcLattice::ServiceNetworkVpcAssociation", {
        "ServiceNetworkIdentifier": {"Fn::ImportValue": Match.string_like_regexp("ServiceNetwork")},
    })
    # The demo app VPC has no way to the internet: telemetry needs none.
    t.resource_count_is("AWS::EC2::NatGateway", 0)
    t.resource_count_is("AWS::EC2::InternetGateway", 0)


def test_concentrator_outputs_what_app_accounts_need(synthesized):
    stacks, _, _, _ = synthesized
    outputs = Template.from_stack(stacks["concentrator"]).to_json()["Outputs"]
    assert {"ServiceNetworkArn", "GatewayArn", "GatewayEndpoint", "GatewayRoutes", "GatewayRef"} <= set(outputs)


def test_gateway_ref_output_is_one_json_value_app_accounts_can_read(synthesized):
    """Resolved as CloudFormation would (Fn::Join), the GatewayRef output parses as the gateway's GatewayRef."""
    stacks, _, _, _ = synthesized
    template = Template.from_stack(stacks["concentrator"]).to_json()
    env = Environment("aws", "us-east-1", "999999999999")
    resolver = Resolver(template, env)
    service = next(iter(resources(template, "AWS::VpcLattice::Service")))
    dns = "telemetry-gateway-0123456789abcdef0.7d67968.vpc-lattice-svcs.us-east-1.on.aws"
    text = resolver.resolve(template["Outputs"]["GatewayRef"]["Value"]).replace(f"{service}.DnsEntry.DomainName", dns)
    ref = GatewayRef.from_json(text)
    lp = lattice_policies([template], env=env)
    assert (ref.service_arn, ref.service_network_arn, ref.dns_name) == (lp.service_arn, lp.service_network_arn, dns)
    assert [(r.path, r.collector) for r in ref.routes] == [(r.path, r.collector) for r in default_routes()]
    assert resolver.resolve(template["Outputs"]["GatewayRoutes"]["Value"]) == ",".join(r.path for r in default_routes())


def test_stacks_are_environment_agnostic(synthesized):
    stacks, _, _, _ = synthesized
    for stack in stacks.values():
        assert stack.resolve(stack.account) == {"Ref": "AWS::AccountId"}


def test_pushers_from_context_reach_the_policy(synthesized):
    stacks, _, _, _ = synthesized
    policies = resources(Template.from_stack(stacks["concentrator"]).to_json(), "AWS::VpcLattice::AuthPolicy")
    text = json.dumps(policies)
    assert "arn:aws:iam::111111111111:role/telemetry-agent" in text
    assert ":iam::222222222222:root" in text


def _run_app(context: dict, tmp_path) -> subprocess.CompletedProcess:
    env = dict(os.environ, CDK_CONTEXT_JSON=json.dumps(context), CDK_OUTDIR=str(tmp_path))
    return subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"telemetry-shunt:pushers": ["*"]}, "pusher '*' is a wildcard"),
        ({"telemetry-shunt:pushers": []}, "no pushers"),
        ({"telemetry-shunt:pushers": ["222222222222"], "telemetry-shunt:app-vpc-cidr": "10.200.1.0/24"},
         "app VPC CIDR #1 '10.200.1.0/24' overlaps concentrator VPC CIDR"),
        ({"telemetry-shunt:pushers": ["222222222222"], "telemetry-shunt:vendor-egress": "maybe"},
         "telemetry-shunt:vendor-egress must be true or false"),
    ],
)
def test_bad_context_is_one_clear_line_and_exit_1(capsys, context, message):
    with pytest.raises(SystemExit) as exit_info:
        default_app.main(context)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_bad_context_from_the_command_line_has_no_traceback(tmp_path):
    proc = _run_app({"telemetry-shunt:pushers": ["arn:aws:iam::111111111111:role/*"]}, tmp_path)
    assert proc.returncode == 1
    assert "is a wildcard" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_make_synth_report_with_the_pinned_cdk_cli(tmp_path):
    """The README's main command: pinned CDK CLI synth, cfn-lint, summary."""
    if not (ROOT / "node_modules" / ".bin" / "cdk").exists():
        pytest.fail("node_modules/.bin/cdk missing: run 'make install' (the Makefile installs the pinned CLI)")
    # Both flavours: CDK (cdk.out/) and Terraform (cdktf.out/); the timeout is a hang guard, not a speed check.
    proc = subprocess.run([sys.executable, "tools/synth_report.py"], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Synthesized 3 stacks" in proc.stdout
    assert "cfn-lint: 0 errors/warnings" in proc.stdout
    assert "route POST /metrics" in proc.stdout
    assert "Terraform flavour: synthesized 3 stacks" in proc.stdout
    assert re.search(r"checkov \(pinned, terraform_json\): \d+ passed, 0 failed", proc.stdout), proc.stdout
    assert proc.stdout.count("PROVEN") >= 10, proc.stdout  # five invariants, each flavour


def test_an_app_account_elsewhere_takes_the_gateway_ref_as_one_context_value(tmp_path):
    """-c telemetry-shunt:gateway='<GatewayRef output>': the agents' grant is exactly that gateway's routes."""
    from telemetry_shunt.core.routes import Route

    ref = GatewayRef(service_arn="arn:aws:vpc-lattice:eu-west-1:111111111111:service/svc-0123456789abcdef0",
                     dns_name="telemetry-gateway-0123456789abcdef0.7d67968.vpc-lattice-svcs.eu-west-1.on.aws",
                     routes=(Route("/ingest/app-a"), *Route.otlp_http(["logs"])),
                     service_network_arn="arn:aws:vpc-lattice:eu-west-1:111111111111:servicenetwork/sn-0123456789abcdef0")
    app = new_app(tmp_path, **{"telemetry-shunt:gateway": ref.to_json()})
    stacks = default_app.build(app)
    template = Template.from_stack(stacks["app_account"]).to_json()
    (policy,) = [r["Properties"]["PolicyDocument"] for r in resources(template, "AWS::IAM::Policy").values()
                 if "vpc-lattice-svcs:Invoke" in json.dumps(r)]
    (statement,) = [s for s in policy["Statement"] if s["Action"] == "vpc-lattice-svcs:Invoke"]
    assert statement["Resource"] == [f"{ref.service_arn}/ingest/app-a", f"{ref.service_arn}/v1/logs"]
