"""The synthesized apps' auth policies are push-only: a request matrix through the offline evaluator, and
an SMT proof over every request (telemetry_shunt/verify/proof.py).

Two apps are synthesized once each per module (per xdist worker): the default app (cdk.json context: a
role pusher and an account pusher) and a variant with an account and an organization pusher, which is
read in the aws-cn and aws-us-gov partitions. Intrinsics are resolved by ``lattice_policies``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import aws_cdk as cdk
import pytest

import app as default_app
from telemetry_shunt.core.evaluator import Request, evaluate
from telemetry_shunt.core.routes import default_routes
from telemetry_shunt.core.template import Environment, LatticePolicies, Resolver, lattice_policies
from telemetry_shunt.verify.proof import EVERY_PUSHER_CAN_PUSH, prove_push_only, prove_push_only_from_policies

ROOT = Path(__file__).resolve().parents[2]
CONTEXT = json.loads((ROOT / "cdk.json").read_text())["context"]
PUSHERS_KEY = "telemetry-shunt:pushers"
VARIANT_PUSHERS = ["222222222222", "o-a1b2c3d4e5"]

METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"]
ROUTED = [r.path for r in default_routes()]
PATHS = ["/metrics", "/v1/traces", "/v1/logs", "/admin", "/metrics/extra", "/Metrics", "/"]
ALLOW_ARNS = "AllowPushersToPostToRoutes"
ALLOW_ORG = "AllowOrganizationToPostToRoutes"


def synth_concentrator(outdir: Path, **context: object) -> dict:
    app = cdk.App(outdir=str(outdir), context={**CONTEXT, **context})
    stacks = default_app.build(app)
    return app.synth().get_stack_by_name(stacks["concentrator"].stack_name).template


@pytest.fixture(scope="module")
def default_template(tmp_path_factory) -> dict:
    return synth_concentrator(tmp_path_factory.mktemp("default-app"))


@pytest.fixture(scope="module")
def variant_template(tmp_path_factory) -> dict:
    return synth_concentrator(tmp_path_factory.mktemp("variant-app"), **{PUSHERS_KEY: VARIANT_PUSHERS})


@dataclass(frozen=True)
class Who:
    label: str
    principal: str | None
    org_id: str | None = None
    #: admitted by the service network policy (an authenticated principal of a pusher account or org)
    in_network: bool = False
    #: the gateway statement that lets it push, None if none does
    allowed_by: str | None = None


@dataclass(frozen=True)
class Scenario:
    template: str  # fixture name
    env: Environment
    pushers: list[str]
    callers: list[Who] = field(default_factory=list)


def sts(partition: str, account: str, role: str) -> str:
    return f"arn:{partition}:sts::{account}:assumed-role/{role}/i-0123456789abcdef0"


def strangers(p: str) -> list[Who]:
    return [
        Who("anonymous", None),
        Who("anonymous claiming the org", None, org_id="o-a1b2c3d4e5"),
        Who("another account", sts(p, "333333333333", "telemetry-agent")),
        Who("another organization", sts(p, "333333333333", "agent"), org_id="o-zzzzzzzzzz"),
        Who("another account's root", f"arn:{p}:iam::333333333333:root", org_id="o-zzzzzzzzzz"),
    ]


def account_222(p: str, *, org_id: str | None = None) -> list[Who]:
    return [
        Who("pusher account: role session", sts(p, "222222222222", "anything"), org_id, True, ALLOW_ARNS),
        Who("pusher account: user", f"arn:{p}:iam::222222222222:user/bob", org_id, True, ALLOW_ARNS),
        Who("pusher account: root", f"arn:{p}:iam::222222222222:root", org_id, True, ALLOW_ARNS),
    ]


def variant(p: str, region: str) -> Scenario:
    return Scenario("variant_template", Environment(p, region, "123456789012"), VARIANT_PUSHERS, [
        *account_222(p),
        Who("org member", sts(p, "444444444444", "collector"), "o-a1b2c3d4e5", True, ALLOW_ORG),
        Who("org member's user", f"arn:{p}:iam::555555555555:user/ci", "o-a1b2c3d4e5", True, ALLOW_ORG),
        *strangers(p),
    ])


SCENARIOS = {
    "default-aws": Scenario("default_template", Environment(), CONTEXT[PUSHERS_KEY], [
        Who("pusher role session", sts("aws", "111111111111", "telemetry-agent"), None, True, ALLOW_ARNS),
        Who("pusher role", "arn:aws:iam::111111111111:role/telemetry-agent", None, True, ALLOW_ARNS),
        Who("pusher role's account: another role", sts("aws", "111111111111", "builder"), None, True, None),
        Who("pusher role's account: root", "arn:aws:iam::111111111111:root", None, True, None),
        *account_222("aws"),
        *strangers("aws"),
    ]),
    "variant-aws-cn": variant("aws-cn", "cn-north-1"),
    "variant-aws-us-gov": variant("aws-us-gov", "us-gov-west-1"),
}


@pytest.fixture(scope="module")
def policies() -> dict[str, LatticePolicies]:
    """The resolved policies of every scenario whose template this worker has synthesized (lazily)."""
    return {}


def found(name: str, request, cache: dict[str, LatticePolicies]) -> LatticePolicies:
    if name not in cache:
        s = SCENARIOS[name]
        cache[name] = lattice_policies([request.getfixturevalue(s.template)], env=s.env)
    return cache[name]


def expected(who: Who, method: str, path: str) -> tuple[str, str, str | None]:
    """(outcome, deciding layer, deciding statement) for the push-only design."""
    if who.principal is None:
        return "explicit-deny", "service network", "DenyAnonymous"
    if method != "POST":
        return "explicit-deny", "service", "DenyEveryMethodButPost"
    if not who.in_network:
        return "implicit-deny", "service network", None
    if who.allowed_by is None or path not in ROUTED:
        return "implicit-deny", "service", None
    return "allow", "service", who.allowed_by


# --- the template holds what the proof needs ----------------------------------------------------------
@pytest.mark.parametrize("name", SCENARIOS)
def test_template_resolves_to_concrete_policies_in_the_partition(name, request, policies):
    lp = found(name, request, policies)
    env = SCENARIOS[name].env
    assert lp.service_policy is not None and lp.service_network_policy is not None
    assert lp.service_arn.startswith(f"arn:{env.partition}:vpc-lattice:{env.region}:{env.account}:service/svc-")
    assert lp.service_network_arn.startswith(f"arn:{env.partition}:vpc-lattice:{env.region}:{env.account}:servicenetwork/sn-")
    text = json.dumps([lp.service_policy, lp.service_network_policy])
    assert "Token[" not in text and "Fn::" not in text and '"Ref"' not in text
    sn_condition = lp.service_policy["Statement"][0]["Condition"]["StringEquals"]["vpc-lattice-svcs:ServiceNetworkArn"]
    assert sn_condition == lp.service_network_arn


def test_resolver_unescapes_fn_sub_literals():
    """``${!Literal}`` in Fn::Sub is CloudFormation's escape for ``${Literal}`` (e.g. a policy variable)."""
    template = {"Resources": {"Svc": {"Type": "AWS::VpcLattice::Service", "Properties": {}}}}
    resolved = Resolver(template, Environment("aws-us-gov", "us-gov-west-1", "123456789012")).resolve(
        {"Fn::Sub": ["${Svc}/${!aws:username}/${Path}-${AWS::Region}", {"Path": "metrics"}]})
    assert resolved == ("arn:aws-us-gov:vpc-lattice:us-gov-west-1:123456789012:service/svc-"
                        f"{Resolver(template, Environment()).fake_id('Svc')}/${{aws:username}}/metrics-us-gov-west-1")


# --- request matrix -----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("name", "who"), [(n, w) for n, s in SCENARIOS.items() for w in s.callers],
                         ids=[f"{n}-{w.label}" for n, s in SCENARIOS.items() for w in s.callers])
def test_request_matrix(name, who, method, request, policies):
    lp = found(name, request, policies)
    wrong = []
    for path in PATHS:
        d = evaluate(Request(who.principal, method, path, org_id=who.org_id), service_arn=lp.service_arn,
                     service_policy=lp.service_policy, service_network_policy=lp.service_network_policy,
                     service_network_arn=lp.service_network_arn)
        want = expected(who, method, path)
        assert d.allowed is (want[0] == "allow")
        if (d.outcome, d.layer, d.statement) != want:
            wrong.append(f"{method} {path}: got {(d.outcome, d.layer, d.statement)}, want {want} ({d.explanation})")
    assert not wrong, "\n".join(wrong)


def test_matrix_covers_allow_and_every_kind_of_deny():
    outcomes = {expected(w, m, p) for s in SCENARIOS.values() for w in s.callers for m in METHODS for p in PATHS}
    assert {o[:2] for o in outcomes} == {("allow", "service"), ("explicit-deny", "service network"),
                                         ("explicit-deny", "service"), ("implicit-deny", "service network"),
                                         ("implicit-deny", "service")}
    assert {o[2] for o in outcomes if o[0] == "allow"} == {ALLOW_ARNS, ALLOW_ORG}


@pytest.mark.parametrize("name", SCENARIOS)
def test_pushers_cannot_push_through_another_service_network(name, request, policies):
    lp = found(name, request, policies)
    elsewhere = lp.service_network_arn.replace("servicenetwork/sn-", "servicenetwork/sn-f")
    for who in (w for w in SCENARIOS[name].callers if w.allowed_by):
        for sn in (elsewhere, None):
            d = evaluate(Request(who.principal, "POST", "/metrics", org_id=who.org_id), service_arn=lp.service_arn,
                         service_policy=lp.service_policy, service_network_policy=lp.service_network_policy,
                         service_network_arn=sn)
            assert (d.outcome, d.layer) == ("implicit-deny", "service"), (who.label, sn)


# --- proof over every request -------------------------------------------------------------------------
@pytest.mark.parametrize("name", SCENARIOS)
def test_synthesized_policies_are_proven_push_only(name, request, policies):
    lp = found(name, request, policies)
    results = prove_push_only(lp.service_policy, lp.service_network_policy, service_arn=lp.service_arn,
                              service_network_arn=lp.service_network_arn, pushers=SCENARIOS[name].pushers, routes=ROUTED)
    assert len(results) == 5
    failed = [str(r) for r in results if not r.holds]
    assert not failed, "\n".join(failed)


def test_default_app_read_in_aws_cn_is_caught_by_the_proof(default_template):
    """cdk.json's role pusher names partition aws: deployed to aws-cn it could never push, and the proof says so."""
    lp = lattice_policies([default_template], env=Environment("aws-cn", "cn-north-1", "123456789012"))
    results = {r.invariant: r for r in prove_push_only(
        lp.service_policy, lp.service_network_policy, service_arn=lp.service_arn,
        service_network_arn=lp.service_network_arn, pushers=CONTEXT[PUSHERS_KEY], routes=ROUTED)}
    assert [n for n, r in results.items() if not r.holds] == [EVERY_PUSHER_CAN_PUSH]
    blocked = results[EVERY_PUSHER_CAN_PUSH].counterexample
    assert "role:arn:aws:iam::111111111111:role/telemetry-agent cannot POST /metrics" in blocked
    assert "account:222222222222" not in blocked


def test_make_synth_summary_proves_the_default_app(default_template):
    """What `make synth` prints: the proof with cdk.json's pushers and the default routes."""
    results = prove_push_only_from_policies(lattice_policies([default_template]))
    assert len(results) == 5 and all(r.holds for r in results), [str(r) for r in results]
