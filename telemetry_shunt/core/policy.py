"""Push-only VPC Lattice auth policies, built as plain data.

Two documents, evaluated together by Lattice (a request needs an Allow in both and no Deny in either):

- the **service network** policy is coarse: authenticated principals of the pushers' accounts and
  organizations may invoke services in the network; anonymous callers are denied;
- the **service** (gateway) policy is push-only: listed pushers may ``POST`` to routed paths; every
  other method is explicitly denied, anonymous callers are explicitly denied, and anything not
  allowed (another path, another principal) is implicitly denied.

ARNs are partition-aware (``aws``, ``aws-cn``, ``aws-us-gov``). ``service_arn`` and friends may be CDK
tokens: the construct passes deploy-time values and CloudFormation fills them in.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from typing import Any

from telemetry_shunt.core.routes import Pusher, Route, validate_pushers, validate_routes
from telemetry_shunt.errors import ValidationError

# The policy language version every document here declares.
POLICY_VERSION = "2012-10-17"
ACTION_INVOKE = "vpc-lattice-svcs:Invoke"
ACTION_ALL = "vpc-lattice-svcs:*"
KEY_METHOD = "vpc-lattice-svcs:RequestMethod"
KEY_SERVICE_NETWORK = "vpc-lattice-svcs:ServiceNetworkArn"
KEY_ORG = "aws:PrincipalOrgID"
KEY_PRINCIPAL_TYPE = "aws:PrincipalType"
PUSH_METHOD = "POST"
# VPC Lattice quota: an auth policy is at most 10 KB of minified JSON.
MAX_POLICY_BYTES = 10 * 1024
# Deploy-time values (tokens) are counted at the longest they can resolve to, e.g.
# arn:aws-us-gov:vpc-lattice:us-gov-west-1:123456789012:servicenetwork/sn-0123456789abcdef0
_TOKEN_WORST_CASE = 100
# Constructs size their policies with these in place of the deploy-time values they know about (the
# partition and the Lattice ARNs), so a partition token counts 10 bytes, not 100.
WORST_CASE_PARTITION = "aws-us-gov"
WORST_CASE_SERVICE_ARN = "arn:aws-us-gov:vpc-lattice:us-gov-west-1:123456789012:service/svc-0123456789abcdef0"
WORST_CASE_SERVICE_NETWORK_ARN = (
    "arn:aws-us-gov:vpc-lattice:us-gov-west-1:123456789012:servicenetwork/sn-0123456789abcdef0"
)
_TOKEN = re.compile(r"\$\{Token\[[^\]]+\]\}")

NOT_ANONYMOUS = {"StringNotEqualsIgnoreCase": {KEY_PRINCIPAL_TYPE: "anonymous"}}


def account_root(account: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account}:root"


def _principal_arns(pushers: Sequence[Pusher], partition: str) -> list[str]:
    arns: list[str] = []
    for p in pushers:
        if p.kind == "role":
            arns.append(p.value)
        elif p.kind == "account":
            arns.append(account_root(p.value, partition))
    return arns


def _orgs(pushers: Sequence[Pusher]) -> list[str]:
    return [p.value for p in pushers if p.kind == "organization"]


def _one_or_list(values: list[str]) -> str | list[str]:
    return values[0] if len(values) == 1 else values


def route_resources(service_arn: str, routes: Sequence[Route]) -> list[str]:
    """Lattice resources for the routes: ``<service ARN>/<request path>`` (exact paths, no wildcards)."""
    return [f"{service_arn}{r.path}" for r in routes]


def push_grant_statement(*, routes: Sequence[Route] | None, gateway_routes: Sequence[Route] | None,
                         gateway_arn: str | None, partition: str, region: str) -> dict[str, Any]:
    """The identity-policy half of pushing (``grant_push`` in both flavours): allow ``POST`` to exactly
    ``routes`` (default: the gateway's; they must be among them: another path's rule would answer 404) on
    ``gateway_arn``, or on any service's routed paths when it is not known (the service network's and the
    gateway's auth policies still decide). The flavours check that there are routes at all."""
    if gateway_routes is not None:
        paths = [r.path for r in gateway_routes]
        if routes is None:
            routes = gateway_routes
        else:
            extra = [r.path for r in routes if r.path not in paths]
            if extra:
                raise ValidationError(f"routes {extra} are not routes of the gateway ({', '.join(paths)}): "
                                      "its rules would answer 404; drop routes= to grant exactly the gateway's")
    if routes is None:
        raise ValidationError("push_grant_statement needs routes= or gateway_routes=")
    base = gateway_arn or f"arn:{partition}:vpc-lattice:{region}:*:service/*"
    return {"Effect": "Allow", "Action": ACTION_INVOKE, "Resource": route_resources(base, validate_routes(routes)),
            "Condition": {"StringEquals": {KEY_METHOD: PUSH_METHOD}}}


def service_auth_policy(
    *,
    service_arn: str,
    routes: Sequence[Route],
    pushers: Sequence[Pusher],
    partition: str = "aws",
    service_network_arn: str | None = None,
) -> dict[str, Any]:
    """The gateway's push-only auth policy.

    With ``service_network_arn``, pushes are allowed only when they arrive through that service
    network (``vpc-lattice-svcs:ServiceNetworkArn``), so sharing the service elsewhere grants nothing.
    """
    routes = validate_routes(routes)
    pushers = validate_pushers(pushers)
    resources = route_resources(service_arn, routes)
    allow_condition: dict[str, Any] = {"StringEquals": {KEY_METHOD: PUSH_METHOD}}
    if service_network_arn is not None:
        allow_condition["StringEquals"][KEY_SERVICE_NETWORK] = service_network_arn
    statements: list[dict[str, Any]] = []
    arns = _principal_arns(pushers, partition)
    if arns:
        statements.append({
            "Sid": "AllowPushersToPostToRoutes",
            "Effect": "Allow",
            "Principal": {"AWS": _one_or_list(arns)},
            "Action": ACTION_INVOKE,
            "Resource": _one_or_list(resources),
            "Condition": allow_condition,
        })
    orgs = _orgs(pushers)
    if orgs:
        org_condition = json.loads(json.dumps(allow_condition))
        org_condition["StringEquals"][KEY_ORG] = _one_or_list(orgs)
        org_condition.update(copy.deepcopy(NOT_ANONYMOUS))
        statements.append({
            "Sid": "AllowOrganizationToPostToRoutes",
            "Effect": "Allow",
            "Principal": "*",
            "Action": ACTION_INVOKE,
            "Resource": _one_or_list(resources),
            "Condition": org_condition,
        })
    statements.append({
        "Sid": "DenyEveryMethodButPost",
        "Effect": "Deny",
        "Principal": "*",
        "Action": ACTION_ALL,
        "Resource": "*",
        "Condition": {"StringNotEquals": {KEY_METHOD: PUSH_METHOD}},
    })
    statements.append(_deny_anonymous())
    return {"Version": POLICY_VERSION, "Statement": statements}


def service_network_auth_policy(*, pushers: Sequence[Pusher], partition: str = "aws") -> dict[str, Any]:
    """The coarse network policy: authenticated principals of the pushers' accounts and organizations."""
    pushers = validate_pushers(pushers)
    statements: list[dict[str, Any]] = []
    principals: list[str] = []
    for p in pushers:
        if p.kind == "organization":
            continue
        acct = p.account_id
        # A role whose ARN is a deploy-time token keeps its own ARN; otherwise its whole account.
        arn = account_root(acct, partition) if acct else p.value
        if arn not in principals:
            principals.append(arn)
    if principals:
        statements.append({
            "Sid": "AllowAuthenticatedPrincipalsOfPusherAccounts",
            "Effect": "Allow",
            "Principal": {"AWS": _one_or_list(principals)},
            "Action": ACTION_INVOKE,
            "Resource": "*",
            "Condition": copy.deepcopy(NOT_ANONYMOUS),
        })
    orgs = _orgs(pushers)
    if orgs:
        statements.append({
            "Sid": "AllowAuthenticatedPrincipalsOfPusherOrganizations",
            "Effect": "Allow",
            "Principal": "*",
            "Action": ACTION_INVOKE,
            "Resource": "*",
            "Condition": {"StringEquals": {KEY_ORG: _one_or_list(orgs)}, **copy.deepcopy(NOT_ANONYMOUS)},
        })
    statements.append(_deny_anonymous())
    return {"Version": POLICY_VERSION, "Statement": statements}


def _deny_anonymous() -> dict[str, Any]:
    return {
        "Sid": "DenyAnonymous",
        "Effect": "Deny",
        "Principal": "*",
        "Action": ACTION_ALL,
        "Resource": "*",
        "Condition": {"StringEqualsIgnoreCase": {KEY_PRINCIPAL_TYPE: "anonymous"}},
    }


def minify(document: dict[str, Any]) -> str:
    """The policy as Lattice stores it: JSON without whitespace or newlines."""
    return json.dumps(document, separators=(",", ":"))


def policy_json(statements: list[dict[str, Any]]) -> str:
    """A policy document of ``statements``, minified: what the Terraform flavour writes into every policy
    attribute it builds from statements (identity, key, bucket and auth policies alike)."""
    return minify({"Version": POLICY_VERSION, "Statement": statements})


def policy_size(document: dict[str, Any]) -> int:
    """Bytes of minified JSON, counting each deploy-time token at its longest possible value."""
    text = _TOKEN.sub("x" * _TOKEN_WORST_CASE, minify(document))
    return len(text.encode("utf-8"))


def check_policy_size(document: dict[str, Any], *, what: str) -> int:
    size = policy_size(document)
    if size > MAX_POLICY_BYTES:
        raise ValidationError(
            f"{what} auth policy is {size} bytes minified, over VPC Lattice's {MAX_POLICY_BYTES}-byte limit: "
            "list accounts or an organization instead of many roles, or merge routes"
        )
    return size
