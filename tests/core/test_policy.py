"""The push-only policy builder: statements per pusher kind, partitions, size accounting, bad input."""

from __future__ import annotations

import json
import re

import pytest

from telemetry_shunt.core.policy import (
    MAX_POLICY_BYTES,
    check_policy_size,
    minify,
    policy_size,
    push_grant_statement,
    route_resources,
    service_auth_policy,
    service_network_auth_policy,
)
from telemetry_shunt.core.routes import Pusher, Route, default_routes, validate_routes
from telemetry_shunt.errors import ValidationError

SVC = "arn:aws:vpc-lattice:us-east-1:123456789012:service/svc-0123456789abcdef0"
SN = "arn:aws:vpc-lattice:us-east-1:123456789012:servicenetwork/sn-0123456789abcdef0"
ROLE = "arn:aws:iam::111111111111:role/telemetry-agent"
ORG = "o-a1b2c3d4e5"
TOKEN = "${Token[TOKEN.123]}"


def by_sid(document: dict) -> dict[str, dict]:
    sids = [s["Sid"] for s in document["Statement"]]
    assert len(sids) == len(set(sids)), f"duplicate Sids {sids}"
    return {s["Sid"]: s for s in document["Statement"]}


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# --- service (gateway) policy ------------------------------------------------------------------------
def test_role_and_account_pushers_share_one_allow_with_exact_route_resources():
    doc = service_auth_policy(service_arn=SVC, routes=default_routes(),
                              pushers=[Pusher.role(ROLE), Pusher.account("222222222222")])
    stmts = by_sid(doc)
    assert set(stmts) == {"AllowPushersToPostToRoutes", "DenyEveryMethodButPost", "DenyAnonymous"}
    allow = stmts["AllowPushersToPostToRoutes"]
    assert allow["Effect"] == "Allow"
    assert allow["Principal"] == {"AWS": [ROLE, "arn:aws:iam::222222222222:root"]}
    assert allow["Action"] == "vpc-lattice-svcs:Invoke"
    assert as_list(allow["Resource"]) == [f"{SVC}/metrics", f"{SVC}/v1/traces", f"{SVC}/v1/metrics", f"{SVC}/v1/logs"]
    assert not any("*" in r for r in as_list(allow["Resource"]))
    assert allow["Condition"] == {"StringEquals": {"vpc-lattice-svcs:RequestMethod": "POST"}}


def test_single_pusher_and_route_are_scalars_not_lists():
    doc = service_auth_policy(service_arn=SVC, routes=[Route.vector_http()], pushers=[Pusher.role(ROLE)])
    allow = by_sid(doc)["AllowPushersToPostToRoutes"]
    assert allow["Principal"] == {"AWS": ROLE}
    assert allow["Resource"] == f"{SVC}/metrics"


def test_every_method_but_post_and_anonymous_are_denied_explicitly():
    stmts = by_sid(service_auth_policy(service_arn=SVC, routes=default_routes(), pushers=[Pusher.role(ROLE)]))
    deny_method = stmts["DenyEveryMethodButPost"]
    assert (deny_method["Effect"], deny_method["Principal"], deny_method["Resource"]) == ("Deny", "*", "*")
    assert deny_method["Action"] == "vpc-lattice-svcs:*"
    assert deny_method["Condition"] == {"StringNotEquals": {"vpc-lattice-svcs:RequestMethod": "POST"}}
    deny_anon = stmts["DenyAnonymous"]
    assert (deny_anon["Effect"], deny_anon["Principal"], deny_anon["Action"]) == ("Deny", "*", "vpc-lattice-svcs:*")
    assert deny_anon["Condition"] == {"StringEqualsIgnoreCase": {"aws:PrincipalType": "anonymous"}}


def test_organization_pusher_gets_its_own_allow_bound_to_the_org_and_not_anonymous():
    doc = service_auth_policy(service_arn=SVC, routes=[Route.vector_http()], pushers=[Pusher.organization(ORG)])
    stmts = by_sid(doc)
    assert "AllowPushersToPostToRoutes" not in stmts  # no ARN principals to list
    org = stmts["AllowOrganizationToPostToRoutes"]
    assert org["Principal"] == "*"
    assert org["Condition"] == {
        "StringEquals": {"vpc-lattice-svcs:RequestMethod": "POST", "aws:PrincipalOrgID": ORG},
        "StringNotEqualsIgnoreCase": {"aws:PrincipalType": "anonymous"},
    }


def test_mixed_pushers_get_both_allows_and_the_org_condition_stays_off_the_arn_allow():
    doc = service_auth_policy(service_arn=SVC, routes=[Route.vector_http()], service_network_arn=SN,
                              pushers=[Pusher.role(ROLE), Pusher.organization(ORG), Pusher.organization("o-zzzzzzzzzz")])
    stmts = by_sid(doc)
    arn_allow, org_allow = stmts["AllowPushersToPostToRoutes"], stmts["AllowOrganizationToPostToRoutes"]
    assert "aws:PrincipalOrgID" not in arn_allow["Condition"]["StringEquals"]
    assert org_allow["Condition"]["StringEquals"]["aws:PrincipalOrgID"] == [ORG, "o-zzzzzzzzzz"]
    for allow in (arn_allow, org_allow):
        assert allow["Condition"]["StringEquals"]["vpc-lattice-svcs:ServiceNetworkArn"] == SN


def test_service_network_arn_condition_only_when_given():
    without = by_sid(service_auth_policy(service_arn=SVC, routes=[Route.vector_http()], pushers=[Pusher.role(ROLE)]))
    assert "vpc-lattice-svcs:ServiceNetworkArn" not in json.dumps(without)
    with_sn = by_sid(service_auth_policy(service_arn=SVC, routes=[Route.vector_http()], pushers=[Pusher.role(ROLE)],
                                         service_network_arn=SN))
    assert with_sn["AllowPushersToPostToRoutes"]["Condition"]["StringEquals"] == {
        "vpc-lattice-svcs:RequestMethod": "POST", "vpc-lattice-svcs:ServiceNetworkArn": SN}
    # The denies stay unconditional on the network: a request through another network is still denied.
    assert "ServiceNetworkArn" not in json.dumps(with_sn["DenyEveryMethodButPost"])


@pytest.mark.parametrize("partition", ["aws", "aws-cn", "aws-us-gov"])
def test_account_roots_follow_the_partition(partition):
    pushers = [Pusher.account("222222222222"), Pusher.role(f"arn:{partition}:iam::111111111111:role/agent")]
    svc = by_sid(service_auth_policy(service_arn=SVC, routes=[Route.vector_http()], pushers=pushers, partition=partition))
    assert svc["AllowPushersToPostToRoutes"]["Principal"]["AWS"] == [
        f"arn:{partition}:iam::222222222222:root", f"arn:{partition}:iam::111111111111:role/agent"]
    net = by_sid(service_network_auth_policy(pushers=pushers, partition=partition))
    # The network policy admits the role's whole account (the gateway policy narrows it to the role).
    assert net["AllowAuthenticatedPrincipalsOfPusherAccounts"]["Principal"]["AWS"] == [
        f"arn:{partition}:iam::222222222222:root", f"arn:{partition}:iam::111111111111:root"]
    other = {"aws", "aws-cn", "aws-us-gov"} - {partition}
    assert not any(f"arn:{p}:iam" in json.dumps([svc, net]) for p in other)


def test_route_resources_are_service_arn_plus_exact_path():
    assert route_resources(SVC, [Route("/a"), Route("/b/c", "otel")]) == [f"{SVC}/a", f"{SVC}/b/c"]


# --- service network policy -------------------------------------------------------------------------
def test_network_policy_dedupes_accounts_and_denies_anonymous():
    pushers = [Pusher.role(ROLE), Pusher.role("arn:aws:iam::111111111111:role/other"), Pusher.account("111111111111")]
    stmts = by_sid(service_network_auth_policy(pushers=pushers))
    assert set(stmts) == {"AllowAuthenticatedPrincipalsOfPusherAccounts", "DenyAnonymous"}
    allow = stmts["AllowAuthenticatedPrincipalsOfPusherAccounts"]
    assert allow["Principal"] == {"AWS": "arn:aws:iam::111111111111:root"}
    assert (allow["Action"], allow["Resource"]) == ("vpc-lattice-svcs:Invoke", "*")
    assert allow["Condition"] == {"StringNotEqualsIgnoreCase": {"aws:PrincipalType": "anonymous"}}
    assert stmts["DenyAnonymous"]["Condition"] == {"StringEqualsIgnoreCase": {"aws:PrincipalType": "anonymous"}}


def test_network_policy_for_an_organization_only():
    stmts = by_sid(service_network_auth_policy(pushers=[Pusher.organization(ORG)]))
    assert set(stmts) == {"AllowAuthenticatedPrincipalsOfPusherOrganizations", "DenyAnonymous"}
    org = stmts["AllowAuthenticatedPrincipalsOfPusherOrganizations"]
    assert org["Principal"] == "*"
    assert org["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": ORG},
                                "StringNotEqualsIgnoreCase": {"aws:PrincipalType": "anonymous"}}


def test_network_policy_keeps_a_token_role_arn_as_is():
    stmts = by_sid(service_network_auth_policy(pushers=[Pusher.role(TOKEN)]))
    assert stmts["AllowAuthenticatedPrincipalsOfPusherAccounts"]["Principal"] == {"AWS": TOKEN}


def test_returned_documents_share_no_mutable_state():
    """Callers (CDK, tests, the CLI) may edit a returned document; the next one must not change."""
    for build in (lambda: service_network_auth_policy(pushers=[Pusher.organization(ORG), Pusher.account("222222222222")]),
                  lambda: service_auth_policy(service_arn=SVC, routes=[Route.vector_http()],
                                              pushers=[Pusher.organization(ORG)])):
        first = build()
        pristine = json.loads(json.dumps(first))
        for stmt in first["Statement"]:
            for block in stmt.get("Condition", {}).values():
                block.clear()
        assert build() == pristine


# --- size ------------------------------------------------------------------------------------------
def test_policy_size_is_minified_utf8_bytes():
    doc = service_auth_policy(service_arn=SVC, routes=default_routes(), pushers=[Pusher.role(ROLE)])
    text = minify(doc)
    assert "\n" not in text and ": " not in text and ", " not in text
    assert json.loads(text) == doc
    assert policy_size(doc) == len(text.encode("utf-8"))


def test_tokens_are_counted_at_their_worst_case_length():
    plain = {"Statement": [{"Resource": ""}]}
    assert policy_size({"Statement": [{"Resource": TOKEN}]}) - policy_size(plain) == 100
    # Two tokens in one string each count in full, whatever the token's own text length.
    two = {"Statement": [{"Resource": "${Token[A.1]}/${Token[SOME.LONGER.NAME.98765]}"}]}
    assert policy_size(two) - policy_size(plain) == 201
    # Worst case covers the longest ARN a token stands for here (a GovCloud service network ARN).
    longest = "arn:aws-us-gov:vpc-lattice:us-gov-west-1:123456789012:servicenetwork/sn-0123456789abcdef0"
    assert policy_size({"Statement": [{"Resource": TOKEN}]}) >= policy_size({"Statement": [{"Resource": longest}]})


def test_a_tokenised_policy_is_sized_larger_than_any_resolution():
    doc = service_auth_policy(service_arn=TOKEN, routes=default_routes(), pushers=[Pusher.role(ROLE)],
                              partition=TOKEN, service_network_arn=TOKEN)
    resolved = json.loads(minify(doc).replace(TOKEN, SVC))
    assert policy_size(doc) > policy_size(resolved)


def many_role_pushers(n: int) -> list[Pusher]:
    return [Pusher.role(f"arn:aws:iam::{i:012d}:role/telemetry-agent-with-a-long-descriptive-name") for i in range(n)]


def test_size_check_returns_the_size_under_the_limit():
    doc = service_auth_policy(service_arn=SVC, routes=default_routes(), pushers=[Pusher.role(ROLE)])
    assert check_policy_size(doc, what="gateway service") == policy_size(doc) < MAX_POLICY_BYTES


def test_size_check_names_the_size_and_the_limit_when_over():
    doc = service_auth_policy(service_arn=SVC, routes=default_routes(), pushers=many_role_pushers(120))
    size = policy_size(doc)
    assert size > MAX_POLICY_BYTES
    with pytest.raises(ValidationError, match=rf"gateway service auth policy is {size} bytes minified, over .*10240-byte"):
        check_policy_size(doc, what="gateway service")


def test_size_limit_is_exactly_10_kib():
    pad = "x" * (MAX_POLICY_BYTES - policy_size({"Sid": ""}))
    assert check_policy_size({"Sid": pad}, what="t") == MAX_POLICY_BYTES
    with pytest.raises(ValidationError, match=rf"is {MAX_POLICY_BYTES + 1} bytes"):
        check_policy_size({"Sid": pad + "x"}, what="t")


# --- bad input --------------------------------------------------------------------------------------
def test_no_pushers_is_refused():
    with pytest.raises(ValidationError, match=r"no pushers: name who may push"):
        service_auth_policy(service_arn=SVC, routes=default_routes(), pushers=[])
    with pytest.raises(ValidationError, match=r"no pushers"):
        service_network_auth_policy(pushers=[])


def test_no_routes_is_refused():
    with pytest.raises(ValidationError, match=r"no routes"):
        service_auth_policy(service_arn=SVC, routes=[], pushers=[Pusher.role(ROLE)])


@pytest.mark.parametrize("text", ["*", " * ", "arn:aws:iam::111111111111:role/*", "1111*", ""])
def test_wildcard_pusher_is_refused_by_parse(text):
    with pytest.raises(ValidationError, match=r"pusher '.*' is a wildcard"):
        Pusher.parse(text)


def test_a_wildcard_smuggled_past_parse_is_refused_by_the_builder():
    with pytest.raises(ValidationError, match=r"pusher '\*' is a wildcard"):
        service_auth_policy(service_arn=SVC, routes=default_routes(), pushers=[Pusher("account", "*")])


@pytest.mark.parametrize(("text", "kind"), [
    (ROLE, "role"), ("arn:aws-us-gov:iam::111111111111:role/team/agent", "role"),
    ("222222222222", "account"), (ORG, "organization"), (f"  {ORG} ", "organization"),
])
def test_parse_recognises_each_pusher_kind(text, kind):
    assert Pusher.parse(text) == Pusher(kind, text.strip())


@pytest.mark.parametrize(("text", "message"), [
    ("22222222222", r"account id '22222222222' must be 12 digits"),
    ("o-short", r"organization id 'o-short' must look like"),
    ("arn:aws:iam::111111111111:user/bob", r"role ARN 'arn:aws:iam::111111111111:user/bob' must look like"),
    ("arn:aws-iso:iam::111111111111:role/x", r"role ARN 'arn:aws-iso:iam::111111111111:role/x'"),
])
def test_parse_names_the_bad_value(text, message):
    with pytest.raises(ValidationError, match=message):
        Pusher.parse(text)


def test_duplicate_pushers_are_refused():
    with pytest.raises(ValidationError, match=r"duplicate pusher\(s\) \['role:arn:aws:iam::111111111111:role/telemetry-agent'\]"):
        service_auth_policy(service_arn=SVC, routes=default_routes(), pushers=[Pusher.role(ROLE), Pusher.parse(ROLE)])


@pytest.mark.parametrize("path", ["metrics", "v1/traces", ""])
def test_route_path_without_leading_slash_is_refused(path):
    with pytest.raises(ValidationError, match=rf"route path must start with '/', got {path!r}"):
        Route(path)


@pytest.mark.parametrize("path", ["/metrics/*", "/a?b=c", "/a//b", "/ spaces"])
def test_route_path_must_be_exact(path):
    with pytest.raises(ValidationError, match=re.escape(f"route path {path!r} may contain only")):
        Route(path)


def test_duplicate_routes_are_refused():
    with pytest.raises(ValidationError, match=r"duplicate route path\(s\) \['/metrics'\]"):
        service_auth_policy(service_arn=SVC, routes=[Route.vector_http(), Route("/metrics", "otel")],
                            pushers=[Pusher.role(ROLE)])


def test_ten_routes_fit_eleven_do_not():
    ten = [Route(f"/r{i}") for i in range(10)]
    assert validate_routes(ten) == ten
    doc = service_auth_policy(service_arn=SVC, routes=ten, pushers=[Pusher.role(ROLE)])
    assert len(by_sid(doc)["AllowPushersToPostToRoutes"]["Resource"]) == 10
    with pytest.raises(ValidationError, match=r"11 routes need 11 listener rules, but a VPC Lattice listener allows 10"):
        service_auth_policy(service_arn=SVC, routes=[*ten, Route("/r10")], pushers=[Pusher.role(ROLE)])


def test_unknown_otlp_signal_and_collector_are_named():
    with pytest.raises(ValidationError, match=r"OTLP signal 'profiles'"):
        Route.otlp_http(["traces", "profiles"])
    with pytest.raises(ValidationError, match=r"route '/x' names collector 'fluentd'"):
        Route("/x", "fluentd")


SERVICE = "arn:aws:vpc-lattice:us-east-1:111122223333:service/svc-0123456789abcdef0"


def test_the_push_grant_allows_post_to_exactly_the_gateways_routes():
    # What grant_push adds in both flavours (CDK: iam.Grant; Terraform: an inline role policy), in AWS's terms.
    routes = default_routes()
    assert push_grant_statement(routes=None, gateway_routes=routes, gateway_arn=SERVICE, partition="aws",
                                region="us-east-1") == {
        "Effect": "Allow", "Action": "vpc-lattice-svcs:Invoke", "Resource": [SERVICE + r.path for r in routes],
        "Condition": {"StringEquals": {"vpc-lattice-svcs:RequestMethod": "POST"}}}
    # Fewer routes than the gateway's: only those; without a gateway ARN, any service's routed paths.
    one = push_grant_statement(routes=routes[:1], gateway_routes=None, gateway_arn=None, partition="aws-cn",
                               region="cn-north-1")
    assert one["Resource"] == [f"arn:aws-cn:vpc-lattice:cn-north-1:*:service/*{routes[0].path}"]


def test_the_push_grant_refuses_a_route_the_gateway_does_not_have():
    with pytest.raises(ValidationError, match=re.escape("['/elsewhere'] are not routes of the gateway")):
        push_grant_statement(routes=[Route("/elsewhere", "otel")], gateway_routes=default_routes(), gateway_arn=SERVICE,
                             partition="aws", region="us-east-1")
    with pytest.raises(ValidationError, match="needs routes= or gateway_routes="):
        push_grant_statement(routes=None, gateway_routes=None, gateway_arn=SERVICE, partition="aws", region="us-east-1")
    with pytest.raises(ValidationError, match="'/metrics'"):  # the routes themselves are checked too (a duplicate)
        push_grant_statement(routes=[default_routes()[0], default_routes()[0]], gateway_routes=None, gateway_arn=None,
                             partition="aws", region="us-east-1")
