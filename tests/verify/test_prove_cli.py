"""``shunt policy prove`` on the default app's committed template snapshot, and on broken copies of it.

Every counterexample is replayed through the offline evaluator (an independent implementation of
Lattice's rules), so a VIOLATED line is a request Lattice would really allow.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from telemetry_shunt.cli import cli
from telemetry_shunt.cli.common import EXIT_NOT_PROVEN
from telemetry_shunt.core.evaluator import Request, evaluate
from telemetry_shunt.core.routes import default_routes
from telemetry_shunt.core.template import lattice_policies
from telemetry_shunt.errors import ShuntError
from telemetry_shunt.verify.proof import (
    NOTHING_OUTSIDE_ROUTES,
    ONLY_THROUGH_SERVICE_NETWORK,
    context_pushers,
)
from telemetry_shunt.verify.subject import CLOUDFORMATION, Flavour, proof_subject

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTS = ROOT / "tests" / "stacks" / "snapshots"
CONCENTRATOR = json.loads((SNAPSHOTS / "TelemetryConcentrator.json").read_text())


def prove(*args: str):
    return CliRunner().invoke(cli, ["policy", "prove", *args])


def write(tmp_path: Path, template: dict, name: str = "t.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(template))
    return str(path)


def resources(template: dict, rtype: str) -> dict[str, dict]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == rtype}


def service_allow(template: dict) -> dict:
    (policy,) = [r for r in resources(template, "AWS::VpcLattice::AuthPolicy").values()
                 if any(s.get("Sid") == "AllowPushersToPostToRoutes" for s in r["Properties"]["Policy"]["Statement"])]
    return policy["Properties"]["Policy"]["Statement"][0]


def replay(template: dict, witness: dict) -> str:
    """What the offline evaluator says about the counterexample request."""
    found = lattice_policies([template])
    principal = None if witness["principal"] == "anonymous" else witness["principal"]
    decision = evaluate(Request(principal, witness["method"], witness["path"], org_id=witness["org_id"],
                                action=witness["action"]),
                        service_arn=found.service_arn, service_policy=found.service_policy,
                        service_network_policy=found.service_network_policy,
                        service_network_arn=witness["service_network_arn"])
    return "ALLOW" if decision.allowed else "DENY"


def test_the_default_app_is_proven_against_what_its_template_names():
    result = prove(str(SNAPSHOTS / "TelemetryConcentrator.json"), "--output", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["proven"] and [r["result"] for r in report["invariants"]] == ["PROVEN"] * 5
    # Read from the template, and equal to what the app was configured with (cdk.json, the intent).
    assert (report["pushers_from"], report["routes_from"]) == ("template", "template")
    assert report["pushers"] == context_pushers(ROOT / "cdk.json")
    assert sorted(report["routes"]) == sorted(r.path for r in default_routes())


def test_table_output_with_every_template_of_the_app():
    result = prove(*sorted(str(p) for p in SNAPSHOTS.glob("*.json")))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("service ") and "(from the service policy's Allow statements)" in result.stdout
    table = lines[lines.index("") + 1:]
    assert table[0].split() == ["RESULT", "INVARIANT", "COUNTEREXAMPLE"]
    assert [row.split()[0] for row in table[1:]] == ["PROVEN"] * 5


def test_a_lost_service_network_condition_is_a_counterexample_lattice_would_allow(tmp_path):
    broken = copy.deepcopy(CONCENTRATOR)
    del service_allow(broken)["Condition"]["StringEquals"]["vpc-lattice-svcs:ServiceNetworkArn"]
    result = prove(write(tmp_path, broken), "--output", "json")
    assert result.exit_code == EXIT_NOT_PROVEN
    report = json.loads(result.stdout)
    failed = {r["invariant"]: r for r in report["invariants"] if r["result"] != "PROVEN"}
    assert list(failed) == [ONLY_THROUGH_SERVICE_NETWORK] and failed[ONLY_THROUGH_SERVICE_NETWORK]["result"] == "VIOLATED"
    witness = failed[ONLY_THROUGH_SERVICE_NETWORK]["witness"]
    assert witness["service_network_arn"] != report["service_network"]
    assert replay(broken, witness) == "ALLOW"
    assert result.stderr.splitlines()[-1] == (f"shunt: 1 of 5 invariants not proven for {report['service_logical_id']}: "
                                              f"{ONLY_THROUGH_SERVICE_NETWORK}")


def test_an_allowed_path_that_no_listener_rule_routes_is_found(tmp_path):
    """Routes come from the listener rules, not from the policy: a rule removed, its Allow kept, is caught."""
    broken = copy.deepcopy(CONCENTRATOR)
    rules = resources(broken, "AWS::VpcLattice::Rule")
    dropped = next(lid for lid, r in rules.items() if r["Properties"]["Match"]["HttpMatch"]["PathMatch"]["Match"]["Exact"]
                   == "/v1/logs")
    del broken["Resources"][dropped]
    result = prove(write(tmp_path, broken), "--output", "json")
    assert result.exit_code == EXIT_NOT_PROVEN
    report = json.loads(result.stdout)
    assert "/v1/logs" not in report["routes"]
    failed = [r for r in report["invariants"] if r["result"] != "PROVEN"]
    assert [r["invariant"] for r in failed] == [NOTHING_OUTSIDE_ROUTES]
    assert failed[0]["witness"]["path"] == "/v1/logs" and replay(broken, failed[0]["witness"]) == "ALLOW"


def test_pushers_and_routes_from_options(tmp_path):
    result = prove(str(SNAPSHOTS / "TelemetryConcentrator.json"), "--pusher", "222222222222", "--route", "/metrics",
                   "--output", "json")
    assert result.exit_code == EXIT_NOT_PROVEN
    report = json.loads(result.stdout)
    assert (report["pushers"], report["pushers_from"], report["routes"], report["routes_from"]) == (
        ["222222222222"], "options", ["/metrics"], "options")
    verdicts = {r["invariant"]: r for r in report["invariants"]}
    # The template also admits the 111111111111 role and three more paths: both are counterexamples.
    nobody = verdicts["nobody but listed pushers"]
    assert nobody["result"] == "VIOLATED" and ":111111111111:" in nobody["witness"]["principal"]
    assert replay(CONCENTRATOR, nobody["witness"]) == "ALLOW"
    assert verdicts[NOTHING_OUTSIDE_ROUTES]["result"] == "VIOLATED"


def test_an_unmodelled_operator_is_not_proven_and_says_why(tmp_path):
    broken = copy.deepcopy(CONCENTRATOR)
    service_allow(broken)["Condition"]["NumericLessThan"] = {"vpc-lattice-svcs:Port": "1024"}
    result = prove(write(tmp_path, broken))
    assert result.exit_code == EXIT_NOT_PROVEN
    assert "NOT PROVEN" in result.stdout and "'NumericLessThan' is not modelled" in result.stdout


def _without(rtype: str) -> dict:
    template = copy.deepcopy(CONCENTRATOR)
    for lid in resources(template, rtype):
        del template["Resources"][lid]
    return template


@pytest.mark.parametrize(("content", "extra_args", "message"), [
    (None, [], "cannot read template"),
    ("{not json", [], "is not JSON"),
    ([1, 2], [], "is JSON but not an object"),
    ({"Resources": {"X": {"Properties": {}}}}, [], "is neither a CloudFormation template"),
    ({"resource": {"aws_vpclattice_service": {}}}, [], "no aws_vpclattice_service resource"),
    (json.loads((SNAPSHOTS / "TelemetryAppAccount.json").read_text()), [], "no AWS::VpcLattice::Service"),
    (_without("AWS::VpcLattice::AuthPolicy"), [], "no auth policy on Lattice service"),
    (_without("AWS::VpcLattice::Rule"), [], "has no listener rules"),
    (CONCENTRATOR, ["--pusher", "*"], "pusher '*' is a wildcard"),
    (CONCENTRATOR, ["--route", "metrics"], "route path must start with '/'"),
    (CONCENTRATOR, ["--service", "nope"], "no Lattice service 'nope'"),
])
def test_bad_input_is_one_line_exit_1(tmp_path, content, extra_args, message):
    path = tmp_path / "template.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    result = prove(str(path), *extra_args)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("shunt: ") and message in line, line


def test_principal_star_without_an_organization_names_no_pushers(tmp_path):
    broken = copy.deepcopy(CONCENTRATOR)
    service_allow(broken)["Principal"] = "*"
    result = prove(write(tmp_path, broken))
    assert result.exit_code == 1 and "names no pushers: name them with --pusher" in result.stderr
    # Told whom to expect, the proof finds the hole: another role of a pusher account gets in.
    result = prove(write(tmp_path, broken), *[a for p in context_pushers(ROOT / "cdk.json") for a in ("--pusher", p)],
                   "--output", "json")
    assert result.exit_code == EXIT_NOT_PROVEN
    (nobody,) = [r for r in json.loads(result.stdout)["invariants"] if r["result"] == "VIOLATED"]
    assert nobody["witness"]["principal"] != "anonymous" and replay(broken, nobody["witness"]) == "ALLOW"


def test_without_the_verify_extra_the_message_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "z3", None)  # `import z3` now fails as if z3-solver were not installed
    monkeypatch.delitem(sys.modules, "telemetry_shunt.verify.proof", raising=False)
    result = prove(str(SNAPSHOTS / "TelemetryConcentrator.json"))
    assert result.exit_code == 1
    assert result.stderr.strip() == "shunt: this command needs the 'z3' package: pip install 'telemetry-shunt[verify]'"


# --- the input side: a second flavour plugs in without touching the rest ------------------------------------
def test_a_second_flavour_is_used_for_its_documents(tmp_path):
    seen = []

    def extract(docs, env, service):
        seen.append(len(docs))
        return CLOUDFORMATION.extract([d["wrapped"] for d in docs], env, service)

    def routes(docs, env, found):
        return CLOUDFORMATION.routes([d["wrapped"] for d in docs], env, found)

    wrapped = Flavour("wrapped", lambda doc: "wrapped" in doc, extract, routes)
    path = write(tmp_path, {"wrapped": CONCENTRATOR})
    subject = proof_subject([path], flavours=[CLOUDFORMATION, wrapped])
    assert subject.flavour == "wrapped" and seen == [1] and subject.pushers_from == "template"
    with pytest.raises(ShuntError, match="templates of different kinds"):
        proof_subject([path, write(tmp_path, CONCENTRATOR, "cfn.json")], flavours=[CLOUDFORMATION, wrapped])


def test_the_docs_example_prints_what_the_docs_show():
    """docs/policy-model.md: the `shunt policy prove` command and its output block, run on the committed snapshot."""
    doc = (ROOT / "docs" / "policy-model.md").read_text()
    section = doc[doc.index("## Proofs"):]
    command_block, output_block = re.findall(r"```(?:bash)?\n(.*?)```", section, re.DOTALL)[:2]
    (command,) = [line for line in command_block.splitlines() if "shunt policy prove" in line]
    args = command.split("shunt policy prove", 1)[1].split()
    assert args == ["cdk.out/TelemetryConcentrator.template.json"]
    result = prove(str(SNAPSHOTS / "TelemetryConcentrator.json"))
    assert result.exit_code == 0, result.output
    assert result.stdout == output_block


def test_make_synth_proves_through_the_shipped_code_against_cdk_json(tmp_path):
    """tools/synth_report.py: the same subject and proof as the command, with cdk.json's pushers (the intent)."""
    from tools.synth_report import proof_lines

    templates = {p.stem: p for p in sorted(SNAPSHOTS.glob("*.json"))}
    assert proof_lines(templates) == [f"  PROVEN  {name}" for name in (
        "nobody but listed pushers", "nothing but POST", NOTHING_OUTSIDE_ROUTES, ONLY_THROUGH_SERVICE_NETWORK,
        "every pusher can POST to every route")]
    broken = copy.deepcopy(CONCENTRATOR)
    service_allow(broken)["Principal"]["AWS"].append("arn:aws:iam::111111111111:role/someone-else")
    lines = proof_lines({**templates, "TelemetryConcentrator": Path(write(tmp_path, broken))})
    assert lines[0].startswith("  VIOLATED  nobody but listed pushers  e.g. arn:aws:sts::111111111111:assumed-role/someone-else/")
    assert lines[-1] == "FAILED"
