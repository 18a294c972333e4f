"""checkov (pinned, in its own locked environment) over every template the suite synthesizes: the default
app and a stack per construct configuration it does not cover. 0 failed checks; every skip is the resource's
own ``Metadata.checkov.skip`` entry with a reason (constructs/_nag.skip_checkov), never a global skip."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager

import app as default_app
from telemetry_shunt.constructs._nag import acknowledge, skip_checkov
from telemetry_shunt.constructs.buffer_fleet import BufferFleet
from telemetry_shunt.constructs.concentrator_vpc import ConcentratorVpc
from telemetry_shunt.constructs.gateway import TelemetryGateway
from telemetry_shunt.constructs.service_network import TelemetryServiceNetwork
from telemetry_shunt.core import collectors as cc
from telemetry_shunt.core.routes import Pusher, default_routes
from tests.cdk_support import new_app, resources
from tools.cdkcheck import CHECKOV, checkov_scan, synth_with_nag

pytestmark = pytest.mark.skipif(not CHECKOV.exists(), reason="checkov not installed: run `make checkov`")

PUSHERS = [Pusher.account("222222222222")]
ORG_ARN = "arn:aws:organizations::111111111111:organization/o-a1b2c3d4e5"


def _construct_stacks(app: cdk.App) -> None:
    """What the default app leaves out: a fleet with a vendor sink, alarms and no access-log bucket; a
    concentrator VPC with vendor egress; a network shared with an organization."""
    fleet = cdk.Stack(app, "ScanFleet")
    net = ConcentratorVpc(fleet, "Net")
    gateway = TelemetryGateway(fleet, "GW", vpc=net.vpc, pushers=PUSHERS, routes=default_routes(),
                               service_network=TelemetryServiceNetwork(fleet, "SN", pushers=PUSHERS))
    secret = secretsmanager.Secret(fleet, "VendorApiKey")
    acknowledge(secret, "AwsSolutions-SMG4", "Test fixture: vendor API keys are rotated from the vendor's console.")
    skip_checkov(secret, "CKV_AWS_149", "Test fixture standing in for the operator's own vendor secret and its key.")
    vendor = cc.OtlpHttpSink(endpoint="https://otlp.vendor.example", headers={"api-key": cc.SecretEnv("VENDOR_API_KEY")})
    BufferFleet(fleet, "Fleet", vpc=net.vpc, gateway=gateway, sinks=[vendor, cc.S3ArchiveSink()],
                secrets={"VENDOR_API_KEY": secret}, alarms=True)
    network = cdk.Stack(app, "ScanNetwork")
    net = ConcentratorVpc(network, "Net", vendor_egress=True, availability_zones=["us-east-1a", "us-east-1b"])
    sn = TelemetryServiceNetwork(network, "SN", pushers=PUSHERS, share_with=[ORG_ARN])
    TelemetryGateway(network, "GW", vpc=net.vpc, service_network=sn, pushers=PUSHERS, routes=default_routes())


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("scan")
    app = new_app(outdir)
    default_app.build(app)
    _construct_stacks(app)
    assembly, findings = synth_with_nag(app)
    assert assembly is not None, "\n".join(map(str, findings))
    templates = {s.stack_name: Path(outdir) / s.template_file for s in assembly.stacks}
    return templates, checkov_scan(templates.values())


def test_every_template_is_scanned(scanned):
    templates, report = scanned
    assert {"TelemetryConcentrator", "TelemetryAppAccount", "TelemetryAgentControl", "ScanFleet",
            "ScanNetwork"} <= set(templates)
    assert report.passed > 100


def test_checkov_fails_no_check(scanned):
    _, report = scanned
    assert report.failed == [], "\n".join(map(str, report.failed))


def test_every_skip_is_on_its_resource_with_a_reason(scanned):
    templates, report = scanned
    by_file = {path.name: json.loads(path.read_text()) for path in templates.values()}
    for skip in report.skipped:
        logical_id = skip.resource.split(".", 1)[1]
        metadata = by_file[skip.template]["Resources"][logical_id].get("Metadata", {})
        entries = {e["id"]: e["comment"] for e in metadata.get("checkov", {}).get("skip", [])}
        assert skip.check in entries, f"{skip} is not skipped on its resource"
        assert len(entries[skip.check]) >= 25 and skip.comment == entries[skip.check]


def test_log_groups_share_one_customer_managed_key_per_stack_scoped_to_cloudwatch_logs(scanned):
    templates, _ = scanned
    for name, path in templates.items():
        template = json.loads(path.read_text())
        groups = resources(template, "AWS::Logs::LogGroup")
        if not groups:
            continue
        keys = {json.dumps(g["Properties"]["KmsKeyId"]) for g in groups.values()}
        assert len(keys) == 1, f"{name}: log groups use {keys}"
        key_id = next(iter(json.loads(k) for k in keys))["Fn::GetAtt"][0]
        key = template["Resources"][key_id]
        assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True
        logs_principal = {"Fn::Join": ["", ["logs.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
        (logs,) = [s for s in key["Properties"]["KeyPolicy"]["Statement"]
                   if s.get("Principal", {}).get("Service") == logs_principal]
        assert set(logs["Condition"]) == {"ArnLike"}
        assert set(logs["Condition"]["ArnLike"]) == {"kms:EncryptionContext:aws:logs:arn"}
        assert "kms:CreateGrant" not in json.dumps(logs["Action"]) and "kms:*" not in json.dumps(logs["Action"])


def test_rollout_state_table_uses_a_customer_managed_key(scanned):
    templates, _ = scanned
    template = json.loads(templates["TelemetryAgentControl"].read_text())
    (table,) = resources(template, "AWS::DynamoDB::Table").values()
    sse = table["Properties"]["SSESpecification"]
    assert sse["SSEEnabled"] is True and sse["SSEType"] == "KMS"
    assert template["Resources"][sse["KMSMasterKeyId"]["Fn::GetAtt"][0]]["Type"] == "AWS::KMS::Key"


@pytest.mark.parametrize(("check", "reason", "match"), [
    ("CKV_AWS_18\n", "a reason that is long enough to read", "must look like 'CKV_AWS_116'"),
    ("AwsSolutions-S1", "a reason that is long enough to read", "must look like"),
    ("CKV_AWS_18", "todo", "needs a real reason"),
])
def test_skip_helper_refuses_vague_skips(check, reason, match):
    bucket = s3.Bucket(cdk.Stack(cdk.App(), "S"), "B")
    with pytest.raises(ValueError, match=match):
        skip_checkov(bucket, check, reason)
