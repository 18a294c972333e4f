"""The push-only proof: holds on the builder's policies, fails (with a real counterexample) on broken ones."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry_shunt.core.evaluator import Request, evaluate
from telemetry_shunt.core.policy import service_auth_policy, service_network_auth_policy
from telemetry_shunt.core.routes import Pusher, Route
from telemetry_shunt.core.template import LatticePolicies
from telemetry_shunt.verify.proof import (
    EVERY_PUSHER_CAN_PUSH,
    NOBODY_BUT_PUSHERS,
    NOTHING_BUT_POST,
    NOTHING_OUTSIDE_ROUTES,
    ONLY_THROUGH_SERVICE_NETWORK,
    ProofError,
    ProofResult,
    context_pushers,
    prove_push_only,
    prove_push_only_from_policies,
    smt_allows,
)

ROUTES = ["/metrics", "/v1/traces"]
CDK_JSON = Path(__file__).resolve().parents[2] / "cdk.json"
INVARIANTS = [NOBODY_BUT_PUSHERS, NOTHING_BUT_POST, NOTHING_OUTSIDE_ROUTES, ONLY_THROUGH_SERVICE_NETWORK,
              EVERY_PUSHER_CAN_PUSH]


def arns(partition: str = "aws") -> tuple[str, str]:
    return (f"arn:{partition}:vpc-lattice:us-east-1:123456789012:service/svc-0123456789abcdef0",
            f"arn:{partition}:vpc-lattice:us-east-1:123456789012:servicenetwork/sn-0123456789abcdef0")


def pushers_for(kind: str, partition: str = "aws") -> list[str]:
    return {
        "role": [f"arn:{partition}:iam::111111111111:role/telemetry-agent"],
        "account": ["222222222222"],
        "organization": ["o-a1b2c3d4e5"],
        "mixed": [f"arn:{partition}:iam::111111111111:role/team/telemetry-agent", "222222222222", "o-a1b2c3d4e5"],
    }[kind]


def build(pushers: list[str], partition: str = "aws", *, with_network_condition: bool = True) -> tuple[dict, dict]:
    svc, sn = arns(partition)
    parsed = [Pusher.parse(p) for p in pushers]
    service = service_auth_policy(service_arn=svc, routes=[Route(r) for r in ROUTES], pushers=parsed, partition=partition,
                                  service_network_arn=sn if with_network_condition else None)
    return service, service_network_auth_policy(pushers=parsed, partition=partition)


def prove(service: dict | None, network: dict | None, pushers: list[str], partition: str = "aws",
          routes: list[str] = ROUTES) -> dict[str, ProofResult]:
    svc, sn = arns(partition)
    results = prove_push_only(service, network, service_arn=svc, service_network_arn=sn, pushers=pushers, routes=routes)
    assert [r.invariant for r in results] == INVARIANTS
    return {r.invariant: r for r in results}


def replay(result: ProofResult, service: dict, network: dict, partition: str = "aws"):
    """Run the counterexample through the offline evaluator: it must really be allowed."""
    w = result.witness
    assert w is not None and result.counterexample and w["principal"] in result.counterexample
    request = Request(None if w["principal"] == "anonymous" else w["principal"], w["method"], w["path"], org_id=w["org_id"])
    decision = evaluate(request, service_arn=arns(partition)[0], service_policy=service, service_network_policy=network,
                        service_network_arn=w["service_network_arn"])
    assert decision.allowed, f"counterexample {result.counterexample} is denied offline: {decision.explanation}"
    return w


def only_failing(results: dict[str, ProofResult], *failing: str) -> None:
    assert {name for name, r in results.items() if not r.holds} == set(failing), {n: str(r) for n, r in results.items()}


# --- the builder's policies are push-only ----------------------------------------------------------------
@pytest.mark.parametrize("partition", ["aws", "aws-cn", "aws-us-gov"])
@pytest.mark.parametrize("kind", ["role", "account", "organization", "mixed"])
def test_builder_policies_are_push_only(kind, partition):
    pushers = pushers_for(kind, partition)
    results = prove(*build(pushers, partition), pushers, partition)
    only_failing(results)
    assert all(r.counterexample is None and r.witness is None for r in results.values())


# --- each invariant fails on a policy broken for it --------------------------------------------------
def test_an_extra_get_is_caught():
    pushers = pushers_for("mixed")
    service, network = build(pushers)
    service["Statement"] = [s for s in service["Statement"] if s["Sid"] != "DenyEveryMethodButPost"]
    service["Statement"].append({**copy.deepcopy(service["Statement"][0]), "Sid": "AlsoGet"})
    service["Statement"][-1]["Condition"]["StringEquals"]["vpc-lattice-svcs:RequestMethod"] = "GET"
    results = prove(service, network, pushers)
    only_failing(results, NOTHING_BUT_POST)
    assert replay(results[NOTHING_BUT_POST], service, network)["method"] == "GET"


def test_dropping_the_method_deny_alone_keeps_post_only_thanks_to_the_allow_condition():
    pushers = pushers_for("role")
    service, network = build(pushers)
    service["Statement"] = [s for s in service["Statement"] if s["Sid"] != "DenyEveryMethodButPost"]
    only_failing(prove(service, network, pushers))


def test_a_deny_that_does_not_cover_every_method_is_caught():
    pushers = pushers_for("role")
    service, network = build(pushers)
    for s in service["Statement"]:
        s.get("Condition", {}).get("StringEquals", {}).pop("vpc-lattice-svcs:RequestMethod", None)
        if s["Sid"] == "DenyEveryMethodButPost":
            s["Condition"] = {"StringEquals": {"vpc-lattice-svcs:RequestMethod": ["GET", "PUT", "DELETE", "PATCH"]}}
    results = prove(service, network, pushers)
    only_failing(results, NOTHING_BUT_POST)
    assert replay(results[NOTHING_BUT_POST], service, network)["method"] not in ("POST", "GET", "PUT", "DELETE", "PATCH")


def test_a_wildcard_principal_without_an_org_condition_is_caught():
    pushers = pushers_for("organization")
    service, network = build(pushers)
    for doc in (service, network):
        for s in doc["Statement"]:
            if s["Effect"] == "Allow":
                s["Condition"].get("StringEquals", {}).pop("aws:PrincipalOrgID")
                s["Condition"] = {k: v for k, v in s["Condition"].items() if v}
    results = prove(service, network, pushers)
    only_failing(results, NOBODY_BUT_PUSHERS)
    w = replay(results[NOBODY_BUT_PUSHERS], service, network)
    assert w["principal"] != "anonymous" and w["org_id"] != "o-a1b2c3d4e5"


def test_a_role_pusher_widened_to_its_account_is_caught():
    pushers = pushers_for("role")
    service, network = build(pushers)
    service["Statement"][0]["Principal"] = {"AWS": "111111111111"}
    results = prove(service, network, pushers)
    only_failing(results, NOBODY_BUT_PUSHERS)
    w = replay(results[NOBODY_BUT_PUSHERS], service, network)
    assert ":111111111111:" in w["principal"] and "assumed-role/telemetry-agent/" not in w["principal"]


def test_a_wildcard_resource_is_caught():
    pushers = pushers_for("account")
    service, network = build(pushers)
    service["Statement"][0]["Resource"] = arns()[0] + "/*"
    results = prove(service, network, pushers)
    only_failing(results, NOTHING_OUTSIDE_ROUTES)
    assert replay(results[NOTHING_OUTSIDE_ROUTES], service, network)["path"] not in ROUTES


def test_a_route_the_caller_did_not_list_is_caught():
    pushers = pushers_for("account")
    service, network = build(pushers)
    only_failing(prove(service, network, pushers, routes=["/metrics"]), NOTHING_OUTSIDE_ROUTES)


def test_a_missing_service_network_condition_is_caught():
    pushers = pushers_for("mixed")
    service, network = build(pushers, with_network_condition=False)
    results = prove(service, network, pushers)
    only_failing(results, ONLY_THROUGH_SERVICE_NETWORK)
    assert replay(results[ONLY_THROUGH_SERVICE_NETWORK], service, network)["service_network_arn"] != arns()[1]


def test_a_method_condition_that_exists_only_for_http_lets_other_actions_through():
    """Connect (TLS passthrough) carries no RequestMethod: ...IfExists on the method lets it through."""
    pushers = pushers_for("account")
    service, network = build(pushers)
    service["Statement"] = [s for s in service["Statement"] if s["Sid"] != "DenyEveryMethodButPost"]
    allow = service["Statement"][0]
    allow["Action"] = "vpc-lattice-svcs:*"
    allow["Condition"]["StringEqualsIfExists"] = {"vpc-lattice-svcs:RequestMethod": allow["Condition"]["StringEquals"].pop(
        "vpc-lattice-svcs:RequestMethod")}
    network["Statement"][0]["Action"] = "vpc-lattice-svcs:*"
    results = prove(service, network, pushers)
    only_failing(results, NOTHING_BUT_POST)
    assert results[NOTHING_BUT_POST].witness["action"] != "vpc-lattice-svcs:invoke"
    # With the builder's deny back, the absent method matches StringNotEquals and Connect is denied.
    service["Statement"].append(build(pushers)[0]["Statement"][1])
    only_failing(prove(service, network, pushers))


def test_a_missing_policy_allows_everything():
    pushers = pushers_for("role")
    service, _ = build(pushers)
    results = prove(None, None, pushers)
    only_failing(results, NOBODY_BUT_PUSHERS, NOTHING_BUT_POST, NOTHING_OUTSIDE_ROUTES, ONLY_THROUGH_SERVICE_NETWORK)
    only_failing(prove(service, None, pushers))  # the gateway policy alone is push-only


# --- anonymous callers, absent keys and case: where iamprover alone would be wrong -----------------------
def account_scoped_by_ifexists(deny_anonymous: dict | None) -> dict:
    """Everyone whose aws:PrincipalAccount is 222222222222 -- or who has none: the classic IfExists hole."""
    statements = [{"Sid": "IfExistsHole", "Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke",
                   "Resource": [arns()[0] + r for r in ROUTES],
                   "Condition": {"StringEquals": {"vpc-lattice-svcs:RequestMethod": "POST",
                                                  "vpc-lattice-svcs:ServiceNetworkArn": arns()[1]},
                                 "StringEqualsIfExists": {"aws:PrincipalAccount": "222222222222"}}}]
    if deny_anonymous is not None:
        statements.append({"Sid": "DenyAnonymous", "Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*",
                           "Condition": deny_anonymous})
    return {"Version": "2012-10-17", "Statement": statements}


def test_an_ignorecase_deny_of_anonymous_is_modelled_exactly():
    # iamprover reads StringEqualsIgnoreCase on a Deny as never matching; this proof must not.
    service = account_scoped_by_ifexists({"StringEqualsIgnoreCase": {"aws:PrincipalType": "anonymous"}})
    only_failing(prove(service, None, ["222222222222"]))


@pytest.mark.parametrize("deny", [None, {"StringEquals": {"aws:PrincipalType": "anonymous"}},
                                  {"StringLike": {"aws:PrincipalType": "anon*"}}])
def test_anonymous_through_an_ifexists_hole_is_caught(deny):
    service = account_scoped_by_ifexists(deny)
    results = prove(service, None, ["222222222222"])
    only_failing(results, NOBODY_BUT_PUSHERS)
    w = replay(results[NOBODY_BUT_PUSHERS], service, None)
    assert (w["principal"], w["principal_type"]) == ("anonymous", "Anonymous")


def test_not_principal_deny_keeps_everyone_else_out():
    pushers = ["arn:aws:iam::111111111111:role/telemetry-agent", "222222222222"]
    service, network = build(pushers)
    service["Statement"][0]["Principal"] = "*"
    fence = {"Sid": "OnlyPushers", "Effect": "Deny", "Action": "*", "Resource": "*",
             "NotPrincipal": {"AWS": ["arn:aws:iam::111111111111:role/telemetry-agent", "arn:aws:iam::222222222222:root"]}}
    only_failing(prove(service, network, pushers), NOBODY_BUT_PUSHERS)
    only_failing(prove({**service, "Statement": [*service["Statement"], fence]}, network, pushers))


# --- non-vacuity: pushers can push ------------------------------------------------------------------------
def test_a_role_of_the_wrong_partition_cannot_push_and_is_named():
    pushers = ["arn:aws:iam::111111111111:role/telemetry-agent", "222222222222"]
    service, network = build(pushers, "aws-cn")
    results = prove(service, network, pushers, "aws-cn")
    only_failing(results, EVERY_PUSHER_CAN_PUSH)
    assert results[EVERY_PUSHER_CAN_PUSH].counterexample == (
        "role:arn:aws:iam::111111111111:role/telemetry-agent cannot POST /metrics; "
        "role:arn:aws:iam::111111111111:role/telemetry-agent cannot POST /v1/traces")


def test_a_policy_that_allows_nothing_is_not_push_only_by_accident():
    pushers = pushers_for("mixed")
    _, network = build(pushers)
    results = prove({"Version": "2012-10-17", "Statement": []}, network, pushers)
    only_failing(results, EVERY_PUSHER_CAN_PUSH)
    assert results[EVERY_PUSHER_CAN_PUSH].counterexample.count("cannot POST") == 3 * len(ROUTES)


def test_a_route_missing_from_the_policy_is_named():
    pushers = pushers_for("account")
    service, network = build(pushers)
    results = prove(service, network, pushers, routes=[*ROUTES, "/v1/logs"])
    only_failing(results, EVERY_PUSHER_CAN_PUSH)
    assert results[EVERY_PUSHER_CAN_PUSH].counterexample == "account:222222222222 cannot POST /v1/logs"


# --- what the prover refuses ---------------------------------------------------------------------------
@pytest.mark.parametrize(("mutate", "message"), [
    (lambda s: s["Condition"].update({"ForAnyValue:StringEquals": {"aws:PrincipalOrgPaths": "o-x/*"}}), "set operator"),
    (lambda s: s["Condition"].update({"NumericLessThan": {"vpc-lattice-svcs:Port": "1024"}}), "'NumericLessThan' is not"),
    (lambda s: s.update(Resource="arn:aws:vpc-lattice:*:*:service/*/${aws:username}"), "policy variable"),
    (lambda s: s.update(Principal={"AWS": "${Token[TOKEN.1]}"}), "unresolved CDK token"),
    (lambda s: s.update(Principal={"Service": "lambda.amazonaws.com"}), "models AWS principals only"),
    (lambda s: s.update(Principal={"AWS": "arn:aws:iam::111111111111:group/g"}), "is not an account id"),
    (lambda s: s.pop("Principal"), "has no Principal"),
    (lambda s: s.update(NotAction="x:y"), "exactly one of Action/NotAction"),
    (lambda s: s.update(Effect="Audit"), "Effect 'Audit'"),
])
def test_unmodelled_policies_are_refused_not_approximated(mutate, message):
    pushers = pushers_for("role")
    service, network = build(pushers)
    mutate(service["Statement"][0])
    with pytest.raises(ProofError, match=message):
        prove(service, network, pushers)


def test_bad_arguments_are_refused():
    service, network = build(pushers_for("role"))
    svc, sn = arns()
    with pytest.raises(ProofError, match=r"service ARN '\$\{Token\[X.1\]\}' is not a concrete"):
        prove_push_only(service, network, service_arn="${Token[X.1]}", service_network_arn=sn, pushers=["222222222222"],
                        routes=ROUTES)
    with pytest.raises(ProofError, match="no pushers"):
        prove_push_only(service, network, service_arn=svc, service_network_arn=sn, pushers=[], routes=ROUTES)
    with pytest.raises(ProofError, match="no routes"):
        prove_push_only(service, network, service_arn=svc, service_network_arn=sn, pushers=["222222222222"], routes=[])


# --- the entry point used by `make synth` -------------------------------------------------------------
def lattice(service: dict | None, network: dict | None) -> LatticePolicies:
    svc, sn = arns()
    return LatticePolicies(service_arn=svc, service_policy=service, service_network_arn=sn,
                           service_network_policy=network, service_logical_id="GatewayResource")


def test_from_policies_defaults_to_the_pushers_the_service_policy_names():
    assert context_pushers(CDK_JSON) == ["arn:aws:iam::111111111111:role/telemetry-agent", "222222222222"]
    service, network = build(context_pushers(CDK_JSON))
    results = prove_push_only_from_policies(lattice(service, network), routes=ROUTES)
    assert [r.invariant for r in results] == INVARIANTS and all(r.holds for r in results)
    # The default routes are four; a policy for two of them cannot serve the other two.
    defaults = prove_push_only_from_policies(lattice(service, network))
    assert [r.invariant for r in defaults if not r.holds] == [EVERY_PUSHER_CAN_PUSH]


def test_from_policies_reports_what_it_could_not_prove():
    service, network = build(context_pushers(CDK_JSON))
    (missing,) = prove_push_only_from_policies(lattice(service, None), routes=ROUTES)
    assert not missing.holds and missing.counterexample == "not proven: no service network auth policy found in the template(s)"
    service["Statement"][0]["Condition"]["NumericEquals"] = {"vpc-lattice-svcs:Port": "443"}
    (refused,) = prove_push_only_from_policies(lattice(service, network), routes=ROUTES)
    assert not refused.holds and "'NumericEquals' is not modelled" in refused.counterexample
    assert refused.unknown and str(refused).startswith("NOT PROVEN  nobody but listed pushers  e.g. not proven:")


def test_a_negated_deny_also_catches_callers_without_the_key():
    """StringNotEquals on an absent key matches (IAM): callers outside any organization hit the fence too."""
    svc, sn = arns()
    service = {"Version": "2012-10-17", "Statement": [
        {"Sid": "Anyone", "Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke",
         "Resource": [svc + r for r in ROUTES],
         "Condition": {"StringEquals": {"vpc-lattice-svcs:RequestMethod": "POST", "vpc-lattice-svcs:ServiceNetworkArn": sn}}},
        {"Sid": "OrgFence", "Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*",
         "Condition": {"StringNotEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}},
    ]}
    only_failing(prove(service, None, ["o-a1b2c3d4e5"]))
    service["Statement"][1]["Condition"] = {"StringNotEqualsIfExists": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}
    only_failing(prove(service, None, ["o-a1b2c3d4e5"]))
    # The same fence written as a positive test on the other value lets key-less callers through.
    service["Statement"][1]["Condition"] = {"StringLike": {"aws:PrincipalOrgID": "o-?*"},
                                            "StringNotLike": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}
    results = prove(service, None, ["o-a1b2c3d4e5"])
    only_failing(results, NOBODY_BUT_PUSHERS)
    assert replay(results[NOBODY_BUT_PUSHERS], service, None)["org_id"] is None


# --- the encoding agrees with the offline evaluator on concrete requests ---------------------------------
SVC, SN = arns()
PRINCIPAL_ELEMENTS = ["*", {"AWS": "*"}, {"AWS": "111111111111"}, {"AWS": "arn:aws:iam::222222222222:root"},
                      {"AWS": "arn:aws:iam::111111111111:role/agent"}, {"AWS": "arn:aws:iam::111111111111:role/ops/agent"},
                      {"AWS": "arn:aws:iam::222222222222:user/bob"},
                      {"AWS": ["arn:aws:iam::111111111111:role/agent", "222222222222"]}]
ACTIONS = ["vpc-lattice-svcs:Invoke", "vpc-lattice-svcs:*", "*", "VPC-Lattice-Svcs:invoke", "vpc-lattice-svcs:Connect", "s3:*"]
RESOURCES = ["*", f"{SVC}/metrics", f"{SVC}/*", f"{SVC}/v1/*", f"{SVC}/m?trics", "arn:aws:vpc-lattice:*:*:service/*",
             [f"{SVC}/metrics", f"{SVC}/v1/logs"]]
CONDITIONS = [
    ("StringEquals", "vpc-lattice-svcs:RequestMethod", "POST"),
    ("StringNotEquals", "vpc-lattice-svcs:RequestMethod", ["POST", "PUT"]),
    ("StringEqualsIgnoreCase", "vpc-lattice-svcs:RequestMethod", "post"),
    ("StringEqualsIgnoreCase", "aws:PrincipalType", "anonymous"),
    ("StringNotEqualsIgnoreCase", "aws:PrincipalType", "ANONYMOUS"),
    ("StringEquals", "aws:PrincipalType", "AssumedRole"),
    ("StringEquals", "aws:PrincipalOrgID", "o-a1b2c3d4e5"),
    ("StringNotEqualsIfExists", "aws:PrincipalOrgID", "o-a1b2c3d4e5"),
    ("StringEqualsIfExists", "aws:PrincipalOrgID", "o-a1b2c3d4e5"),
    ("Null", "aws:PrincipalOrgID", "true"),
    ("Null", "aws:PrincipalOrgID", "false"),
    ("StringLike", "vpc-lattice-svcs:RequestPath", "/v1/*"),
    ("StringNotLike", "vpc-lattice-svcs:RequestPath", "/m*"),
    ("ArnEquals", "vpc-lattice-svcs:ServiceNetworkArn", SN),
    ("ArnLike", "vpc-lattice-svcs:ServiceNetworkArn", "arn:aws:vpc-lattice:*:*:servicenetwork/*"),
    ("StringEquals", "aws:PrincipalAccount", "222222222222"),
    ("ArnLike", "aws:PrincipalArn", "arn:aws:iam::111111111111:role/*"),
    ("StringEquals", "vpc-lattice-svcs:ServiceArn", SVC),
    ("StringEquals", "vpc-lattice-svcs:SourceVpc", "vpc-1"),
    ("StringNotEquals", "vpc-lattice-svcs:SourceVpc", "vpc-1"),
]


@st.composite
def statements(draw) -> dict:
    stmt: dict = {"Effect": draw(st.sampled_from(["Allow", "Deny"]))}
    stmt[draw(st.sampled_from(["Principal", "Principal", "NotPrincipal"]))] = draw(st.sampled_from(PRINCIPAL_ELEMENTS))
    stmt[draw(st.sampled_from(["Action", "Action", "NotAction"]))] = draw(st.sampled_from(ACTIONS))
    stmt[draw(st.sampled_from(["Resource", "Resource", "NotResource"]))] = draw(st.sampled_from(RESOURCES))
    for op, key, values in draw(st.lists(st.sampled_from(CONDITIONS), max_size=3, unique_by=lambda c: c[:2])):
        stmt.setdefault("Condition", {}).setdefault(op, {})[key] = values
    return stmt


POLICIES = st.one_of(st.none(), st.lists(statements(), max_size=3).map(lambda s: {"Version": "2012-10-17", "Statement": s}))
CALLERS = [None, "arn:aws:sts::111111111111:assumed-role/agent/s", "arn:aws:sts::111111111111:assumed-role/builder/s",
           "arn:aws:iam::222222222222:user/bob", "arn:aws:iam::222222222222:root",
           "arn:aws:sts::333333333333:assumed-role/agent/s"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(service=POLICIES, network=POLICIES, principal=st.sampled_from(CALLERS), method=st.sampled_from(["POST", "GET", "post"]),
       path=st.sampled_from(["/metrics", "/mitrics", "/v1/logs", "/admin", "/"]),
       org_id=st.sampled_from([None, "o-a1b2c3d4e5", "o-zzzzzzzzzz"]),
       sn=st.sampled_from([SN, None, SN.replace("sn-0", "sn-f")]),
       action=st.sampled_from(["vpc-lattice-svcs:Invoke", "vpc-lattice-svcs:Connect"]))
def test_encoding_agrees_with_the_evaluator(service, network, principal, method, path, org_id, sn, action):
    offline = evaluate(Request(principal, method, path, org_id=org_id, action=action), service_arn=SVC,
                       service_policy=service, service_network_policy=network, service_network_arn=sn)
    smt = smt_allows(service, network, service_arn=SVC, principal=principal, method=method, path=path, org_id=org_id,
                     service_network_arn=sn, action=action)
    assert smt is offline.allowed, offline.explanation


def test_iamprover_alone_does_not_model_the_operators_that_deny_anonymous():
    """Why the proof encodes IgnoreCase itself: iamprover returns "unknown" for these (then a Deny never matches)."""
    from iamprover.engine.conditions import encode_condition
    from iamprover.engine.context import Context
    from iamprover.model import Condition

    for op in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        assert encode_condition(Condition(op, "aws:PrincipalType", ["anonymous"]), Context()) is None
    service, network = build(pushers_for("organization"))
    used = {op for doc in (service, network) for s in doc["Statement"] for op in s.get("Condition", {})}
    assert used == {"StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"}
