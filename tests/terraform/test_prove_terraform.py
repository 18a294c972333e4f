"""`shunt policy prove` on Terraform JSON: the five invariants hold on the Terraform flavour's output, and each
broken policy gives a counterexample that the offline evaluator, replayed on the Terraform policies, allows."""

from __future__ import annotations

import copy
import json

import pytest
from click.testing import CliRunner

from telemetry_shunt.cli import cli
from telemetry_shunt.cli.common import EXIT_NOT_PROVEN
from telemetry_shunt.core import tfjson
from telemetry_shunt.core.evaluator import Request, evaluate
from tests.terraform.conftest import PUSHERS, ROUTES, resources

pytestmark = pytest.mark.xdist_group("terraform")
pytest.importorskip("z3", reason="the verify extra is not installed")


def prove(tmp_path, doc, *args):
    path = tmp_path / "cdk.tf.json"
    path.write_text(json.dumps(doc))
    result = CliRunner().invoke(cli, ["policy", "prove", str(path), "--output", "json", *args])
    return result, (json.loads(result.stdout) if result.stdout.strip().startswith("{") else None)


def service_policy(doc):
    return next(p for p in resources(doc, "aws_vpclattice_auth_policy").values()
                if p["resource_identifier"].startswith("${aws_vpclattice_service."))


def replay(doc, witness) -> bool:
    found = tfjson.lattice_policies([doc])
    principal = None if witness["principal"] == "anonymous" else witness["principal"]
    return evaluate(Request(principal, witness["method"], witness["path"], org_id=witness["org_id"], action=witness["action"]),
                    service_arn=found.service_arn, service_policy=found.service_policy,
                    service_network_policy=found.service_network_policy,
                    service_network_arn=witness["service_network_arn"]).allowed


def test_the_terraform_network_is_proven_push_only(tmp_path, tf):
    result, report = prove(tmp_path, tf["concentrator"])
    assert result.exit_code == 0, result.output
    assert [r["result"] for r in report["invariants"]] == ["PROVEN"] * 5
    assert sorted(report["routes"]) == sorted(r.path for r in ROUTES)
    assert len(report["pushers"]) == len(PUSHERS)


def test_a_lost_service_network_condition_is_a_counterexample_terraform_would_allow(tmp_path, tf):
    broken = copy.deepcopy(tf["concentrator"])
    policy = service_policy(broken)
    doc = json.loads(policy["policy"])
    for stmt in doc["Statement"]:
        stmt.get("Condition", {}).get("StringEquals", {}).pop("vpc-lattice-svcs:ServiceNetworkArn", None)
    policy["policy"] = json.dumps(doc)
    result, report = prove(tmp_path, broken)
    assert result.exit_code == EXIT_NOT_PROVEN, result.output
    failed = [r for r in report["invariants"] if r["result"] != "PROVEN"]
    assert [r["result"] for r in failed] == ["VIOLATED"]
    assert replay(broken, failed[0]["witness"]) is True


def test_a_wildcard_principal_is_a_counterexample(tmp_path, tf):
    broken = copy.deepcopy(tf["concentrator"])
    policy = service_policy(broken)
    doc = json.loads(policy["policy"])
    allow = next(s for s in doc["Statement"] if s["Effect"] == "Allow")
    allow["Principal"] = {"AWS": "*"}
    policy["policy"] = json.dumps(doc)
    result, report = prove(tmp_path, broken, *sum((["--pusher", p] for p in PUSHERS), []))
    assert result.exit_code == EXIT_NOT_PROVEN, result.output
    nobody = next(r for r in report["invariants"] if r["invariant"] == "nobody but listed pushers")
    assert nobody["result"] == "VIOLATED" and replay(broken, nobody["witness"]) is True


def test_an_allowed_path_no_terraform_rule_routes_is_found(tmp_path, tf):
    broken = copy.deepcopy(tf["concentrator"])
    rules = resources(broken, "aws_vpclattice_listener_rule")
    dropped = next(k for k, r in rules.items() if r["match"]["http_match"]["path_match"]["match"]["exact"] == "/v1/logs")
    del rules[dropped]
    result, report = prove(tmp_path, broken)
    assert result.exit_code == EXIT_NOT_PROVEN
    failed = [r for r in report["invariants"] if r["result"] != "PROVEN"]
    assert len(failed) == 1 and failed[0]["witness"]["path"] == "/v1/logs" and replay(broken, failed[0]["witness"])


@pytest.mark.parametrize("principal, method, path, verdict", [
    ("arn:aws:sts::111111111111:assumed-role/agent/i-0abc", "POST", "/ingest/app-a", "ALLOW"),
    ("arn:aws:sts::111111111111:assumed-role/agent/i-0abc", "GET", "/metrics", "DENY"),
    ("arn:aws:iam::444444444444:role/stranger", "POST", "/metrics", "DENY"),
])
def test_policy_check_reads_terraform_json(tmp_path, tf, principal, method, path, verdict):
    target = tmp_path / "cdk.tf.json"
    target.write_text(json.dumps(tf["concentrator"]))
    result = CliRunner().invoke(cli, ["policy", "check", "--template", str(target), "--principal", principal,
                                      "--method", method, "--path", path, "--output", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["decision"] == verdict
