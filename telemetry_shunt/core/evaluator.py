"""Offline evaluation of VPC Lattice auth policies: is this request allowed, and which statement decided?

Lattice with ``AWS_IAM`` auth allows a request only if the caller's identity policy (when given), the
service network's auth policy and the service's auth policy each contain a matching Allow, and none
contains a matching Deny. An explicit Deny anywhere wins; a layer with no matching Allow denies
implicitly. This module implements that evaluation for the subset of IAM policy grammar auth
policies use, and refuses (with a clear error) anything it does not understand rather than guessing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from telemetry_shunt.core.policy import ACTION_INVOKE
from telemetry_shunt.core.validation import ACCOUNT_ID, ACCOUNT_ROOT_ARN
from telemetry_shunt.errors import ValidationError

LAYERS = ("identity", "service network", "service")

_ROLE = re.compile(r"arn:([A-Za-z0-9_-]+):iam::([0-9]{12}):role/(?:.*/)?([^/]+)\Z", re.ASCII)
_ASSUMED = re.compile(r"arn:([A-Za-z0-9_-]+):sts::([0-9]{12}):assumed-role/([^/]+)/[^/]+\Z", re.ASCII)
_USER = re.compile(r"arn:([A-Za-z0-9_-]+):iam::([0-9]{12}):user/(?:.*/)?([^/]+)\Z", re.ASCII)


@dataclass(frozen=True)
class Caller:
    """Who signs the request, normalised: ``kind`` is role, user, account or anonymous."""

    kind: str
    arn: str | None = None
    account: str | None = None
    name: str | None = None
    partition: str = "aws"

    @staticmethod
    def parse(principal: str | None) -> Caller:
        if principal in (None, "", "anonymous", "*"):
            return Caller("anonymous")
        assert principal is not None
        if m := _ASSUMED.match(principal):
            part, acct, name = m.groups()
            return Caller("role", f"arn:{part}:iam::{acct}:role/{name}", acct, name, part)
        if m := _ROLE.match(principal):
            part, acct, name = m.groups()
            return Caller("role", principal, acct, name, part)
        if m := _USER.match(principal):
            part, acct, name = m.groups()
            return Caller("user", principal, acct, name, part)
        if m := ACCOUNT_ROOT_ARN.match(principal):
            part, acct = m.groups()
            return Caller("account", principal, acct, None, part)
        raise ValidationError(
            f"principal {principal!r} is not an IAM role, assumed-role session, user or account root ARN "
            "(e.g. 'arn:aws:iam::111111111111:role/agent'); use 'anonymous' for an unsigned request"
        )

    @property
    def principal_type(self) -> str:
        return {"role": "AssumedRole", "user": "User", "account": "Account", "anonymous": "Anonymous"}[self.kind]


@dataclass(frozen=True)
class Request:
    """One HTTP request through Lattice, with the values its condition keys take."""

    principal: str | None
    method: str
    path: str
    org_id: str | None = None
    source_vpc: str | None = None
    source_vpc_owner: str | None = None
    port: int = 443
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    principal_tags: Mapping[str, str] = field(default_factory=dict)
    action: str = ACTION_INVOKE

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValidationError(f"request path must start with '/', got {self.path!r}")
        if not re.fullmatch(r"[A-Za-z]+", self.method, re.ASCII):
            raise ValidationError(f"HTTP method {self.method!r} is not a method name such as POST")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: "allow", "explicit-deny" or "implicit-deny"
    outcome: str
    #: the layer whose statement (or lack of one) decided: "identity", "service network" or "service"
    layer: str
    #: the deciding statement's Sid (or "#<index>"), None for an implicit deny
    statement: str | None
    explanation: str
    #: per layer: the Sids of matching Allow and Deny statements
    matched: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": "ALLOW" if self.allowed else "DENY",
            "outcome": self.outcome,
            "layer": self.layer,
            "statement": self.statement,
            "explanation": self.explanation,
            "matched": self.matched,
        }


def evaluate(
    request: Request,
    *,
    service_arn: str,
    service_policy: Mapping[str, Any] | None,
    service_network_policy: Mapping[str, Any] | None,
    service_network_arn: str | None = None,
    identity_policy: Mapping[str, Any] | None = None,
) -> Decision:
    """Decide ``request`` against the policies of the layers that use ``AWS_IAM`` auth.

    A layer whose policy is ``None`` is treated as having auth type ``NONE`` (it neither allows nor
    denies); pass ``identity_policy=None`` to assume the caller's own IAM policy allows the call.
    """
    caller = Caller.parse(request.principal)
    context = _context(request, caller, service_arn, service_network_arn)
    resource = f"{service_arn}{request.path}"
    layers = {"identity": identity_policy, "service network": service_network_policy, "service": service_policy}
    matched: dict[str, dict[str, list[str]]] = {}
    for layer, policy in layers.items():
        if policy is None or (layer == "identity" and caller.kind == "anonymous"):
            continue
        allows, denies = _matching(policy, caller, request.action, resource, context,
                                   resource_policy=(layer != "identity"))
        matched[layer] = {"Allow": allows, "Deny": denies}
    for layer in LAYERS:
        if layer in matched and matched[layer]["Deny"]:
            sid = matched[layer]["Deny"][0]
            return Decision(False, "explicit-deny", layer, sid,
                            f"explicitly denied by statement {sid} of the {layer} policy", matched)
    for layer in LAYERS:
        if layer in matched and not matched[layer]["Allow"]:
            return Decision(False, "implicit-deny", layer, None,
                            f"implicitly denied: no statement of the {layer} policy allows "
                            f"{request.method} {request.path} for {request.principal or 'anonymous'}", matched)
    decider = "service" if "service" in matched else ("service network" if "service network" in matched else "identity")
    if decider not in matched:
        return Decision(True, "allow", "none", None, "no layer uses AWS_IAM auth: every request is allowed", matched)
    sid = matched[decider]["Allow"][0]
    return Decision(True, "allow", decider, sid, f"allowed by statement {sid} of the {decider} policy", matched)


def _context(request: Request, caller: Caller, service_arn: str, service_network_arn: str | None) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "vpc-lattice-svcs:requestmethod": request.method,
        "vpc-lattice-svcs:requestpath": request.path,
        "vpc-lattice-svcs:port": str(request.port),
        "vpc-lattice-svcs:servicearn": service_arn,
        "aws:principaltype": caller.principal_type,
    }
    if service_network_arn is not None:
        ctx["vpc-lattice-svcs:servicenetworkarn"] = service_network_arn
    if request.source_vpc is not None:
        ctx["vpc-lattice-svcs:sourcevpc"] = request.source_vpc
    if request.source_vpc_owner is not None:
        ctx["vpc-lattice-svcs:sourcevpcowneraccount"] = request.source_vpc_owner
    for name, value in request.headers.items():
        ctx[f"vpc-lattice-svcs:requestheader/{name.lower()}"] = value
    for key, value in request.query.items():
        ctx[f"vpc-lattice-svcs:requestquerystring/{key.lower()}"] = value
    if caller.kind != "anonymous":
        ctx["aws:principalaccount"] = caller.account
        ctx["aws:principalarn"] = caller.arn
        if request.org_id:
            ctx["aws:principalorgid"] = request.org_id
        for key, value in request.principal_tags.items():
            ctx[f"aws:principaltag/{key.lower()}"] = value
    return ctx


def _statements(policy: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    raw = policy.get("Statement", [])
    if isinstance(raw, Mapping):
        raw = [raw]
    return [(str(s.get("Sid") or f"#{i}"), s) for i, s in enumerate(raw)]


def _matching(policy: Mapping[str, Any], caller: Caller, action: str, resource: str, ctx: Mapping[str, Any],
              *, resource_policy: bool) -> tuple[list[str], list[str]]:
    allows: list[str] = []
    denies: list[str] = []
    for sid, stmt in _statements(policy):
        effect = stmt.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise ValidationError(f"statement {sid} has Effect {effect!r}; expected Allow or Deny")
        _refuse_variables(stmt, sid)
        if resource_policy and not _principal_matches(stmt, caller):
            continue
        if not _element_matches(stmt, "Action", "NotAction", action, case_insensitive=True):
            continue
        if not _element_matches(stmt, "Resource", "NotResource", resource, case_insensitive=False):
            continue
        if not all(_condition(op, key, values, ctx) for op, key, values in _conditions(stmt, sid)):
            continue
        (allows if effect == "Allow" else denies).append(sid)
    return allows, denies


def _refuse_variables(stmt: Mapping[str, Any], sid: str) -> None:
    """Policy variables (``${aws:username}``) and unresolved CDK tokens would be matched literally: refuse them."""
    values = [v for element in ("Action", "NotAction", "Resource", "NotResource") for v in _as_list(stmt.get(element))]
    values += [v for block in (stmt.get("Condition") or {}).values() for vs in block.values() for v in _as_list(vs)]
    for value in values:
        if isinstance(value, str) and "${" in value:
            raise ValidationError(f"statement {sid} uses {value!r}: this evaluator does not substitute policy variables "
                                  "or CDK tokens; resolve the template first (shunt policy check --template ...)")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _principal_matches(stmt: Mapping[str, Any], caller: Caller) -> bool:
    if "Principal" in stmt:
        return _principal_in(stmt["Principal"], caller)
    if "NotPrincipal" in stmt:
        return not _principal_in(stmt["NotPrincipal"], caller)
    return False


def _principal_in(element: Any, caller: Caller) -> bool:
    if element == "*":
        return True
    if not isinstance(element, Mapping):
        raise ValidationError(f"Principal {element!r} must be '*' or an object such as {{'AWS': [...]}}")
    for entry in _as_list(element.get("AWS")):
        if entry == "*":
            return True
        if caller.kind == "anonymous":
            continue
        if ACCOUNT_ID.match(entry):
            if caller.account == entry:
                return True
        elif m := ACCOUNT_ROOT_ARN.match(entry):
            if (m.group(1), m.group(2)) == (caller.partition, caller.account):
                return True
        elif m := _ROLE.match(entry):
            if caller.kind == "role" and (m.group(1), m.group(2), m.group(3)) == (caller.partition, caller.account, caller.name):
                return True
        elif entry == caller.arn:
            return True
    return False


def _glob(pattern: str, value: str, *, case_insensitive: bool) -> bool:
    if case_insensitive:
        pattern, value = pattern.lower(), value.lower()
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _element_matches(stmt: Mapping[str, Any], positive: str, negative: str, value: str, *, case_insensitive: bool) -> bool:
    if positive in stmt:
        return any(_glob(p, value, case_insensitive=case_insensitive) for p in _as_list(stmt[positive]))
    if negative in stmt:
        return not any(_glob(p, value, case_insensitive=case_insensitive) for p in _as_list(stmt[negative]))
    return False


_NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike",
            "NumericNotEquals", "NotIpAddress", "DateNotEquals"}
_OPERATORS = {
    "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase", "StringLike",
    "StringNotLike", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike", "NumericEquals", "NumericNotEquals",
    "NumericLessThan", "NumericLessThanEquals", "NumericGreaterThan", "NumericGreaterThanEquals", "Bool",
    "Null", "IpAddress", "NotIpAddress",
}


def _conditions(stmt: Mapping[str, Any], sid: str) -> list[tuple[str, str, list[str]]]:
    out = []
    for op, block in (stmt.get("Condition") or {}).items():
        base = op.split(":", 1)[-1]
        base = base[: -len("IfExists")] if base.endswith("IfExists") else base
        if base not in _OPERATORS:
            raise ValidationError(f"statement {sid} uses condition operator {op!r}, which this evaluator does not model")
        for key, values in block.items():
            out.append((op, key, [str(v).lower() if isinstance(v, bool) else str(v) for v in _as_list(values)]))
    return out


def _condition(op: str, key: str, values: Sequence[str], ctx: Mapping[str, Any]) -> bool:
    qualifier, _, base = op.rpartition(":")
    if_exists = base.endswith("IfExists")
    if if_exists:
        base = base[: -len("IfExists")]
    actual = ctx.get(key.lower())
    if base == "Null":
        want_absent = values[0].lower() == "true"
        return (actual is None) == want_absent
    if actual is None:
        # Set operators over no values: ForAllValues is vacuously true, ForAnyValue false (IAM docs).
        if qualifier == "ForAllValues":
            return True
        if qualifier == "ForAnyValue":
            return False
        return if_exists or base in _NEGATED
    actual_values = [str(v) for v in _as_list(actual)]
    if qualifier == "ForAllValues":
        return all(_test(base, a, values) for a in actual_values)
    hit = any(_test(base, a, values) for a in actual_values)
    return hit


def _test(base: str, actual: str, values: Sequence[str]) -> bool:
    negated = base in _NEGATED
    positive = {
        "StringNotEquals": "StringEquals", "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
        "StringNotLike": "StringLike", "ArnNotEquals": "ArnEquals", "ArnNotLike": "ArnLike",
        "NumericNotEquals": "NumericEquals", "NotIpAddress": "IpAddress",
    }.get(base, base)
    match = any(_positive(positive, actual, v) for v in values)
    return not match if negated else match


def _positive(op: str, actual: str, expected: str) -> bool:
    if op == "StringEquals":
        return actual == expected
    if op == "StringEqualsIgnoreCase":
        return actual.lower() == expected.lower()
    if op in ("StringLike", "ArnLike", "ArnEquals"):
        return _glob(expected, actual, case_insensitive=False)
    if op == "Bool":
        return actual.lower() == expected.lower()
    if op.startswith("Numeric"):
        a, e = float(actual), float(expected)
        return {"NumericEquals": a == e, "NumericLessThan": a < e, "NumericLessThanEquals": a <= e,
                "NumericGreaterThan": a > e, "NumericGreaterThanEquals": a >= e}[op]
    if op == "IpAddress":
        return ipaddress.ip_address(actual) in ipaddress.ip_network(expected, strict=False)
    raise ValidationError(f"condition operator {op!r} is not modelled")


__all__ = ["Caller", "Decision", "Request", "evaluate"]
