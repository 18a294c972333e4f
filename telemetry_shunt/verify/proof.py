"""Prove, with Z3, that a service's VPC Lattice auth policies are push-only (``shunt policy prove``).

Needs the ``verify`` extra (``pip install 'telemetry-shunt[verify]'``: z3-solver and iamprover).
:func:`prove_subject` proves what :func:`telemetry_shunt.verify.subject.proof_subject` read out of
synthesized templates; :func:`prove_push_only` proves two policy documents directly.

The proof quantifies over every request (every principal, method, path, action and context value), not
over a sample. Lattice allows a request only if the service network's policy and the service's policy
each contain a matching Allow and neither contains a matching Deny; the caller's identity policy is
assumed to allow everything (the worst case). Invariants:

- **nobody but listed pushers**: no principal outside the pushers (another account, another organization,
  anonymous) is allowed;
- **nothing but POST**: no request whose ``vpc-lattice-svcs:RequestMethod`` is not ``POST`` is allowed;
- **nothing outside the routes**: no resource other than ``<service ARN><route>`` is allowed;
- **only through the service network**: no request arriving through another service network (or without
  ``vpc-lattice-svcs:ServiceNetworkArn``) is allowed;
- **every pusher can push** (non-vacuity): each pusher can ``POST`` to each route through the service
  network, so the other invariants do not hold merely because nothing at all is allowed.

Encoding. iamprover supplies the building blocks: Action/NotAction and Resource/NotResource wildcard
matching (``statement_matches``), the Z3 encoding of ``String*``/``Arn*``/``Bool`` conditions on a
value (``encode_condition``) and the per-key context variables (``Context``). iamprover has no notion
of a key being absent, does not model ``StringEqualsIgnoreCase``/``StringNotEqualsIgnoreCase``, ``Null``
or ``...IfExists`` (it would read them as always true on Allow and always false on Deny, so a Deny of
anonymous callers would silently vanish), and it enumerates principals rather than quantifying over
them. Those parts are encoded here: a presence flag per condition key (an absent key fails positive
operators and satisfies negated ones, as in IAM), case-insensitive equality as a regular expression, a
symbolic principal (anonymous or a role session, user or account root in some 12-digit account and
organization, in the service's partition) matched against ``Principal``/``NotPrincipal`` exactly, and
the facts Lattice guarantees (for ``Invoke`` the resource is ``<service ARN><RequestPath>`` and
``RequestMethod`` and ``RequestPath`` are present; ``ServiceArn`` and ``aws:PrincipalType`` always are; anonymous callers have
type ``anonymous`` in some letter case and no organization, account, ARN or tags). Everything else
(other keys, their presence, the principal's organization and type) is left free, which only enlarges
the set of requests considered.

Anything this module does not model (set operators, numeric/date/IP operators, policy variables,
unresolved CDK tokens, non-AWS principals) raises :class:`ProofError` instead of being approximated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import z3
from iamprover.engine.conditions import encode_condition
from iamprover.engine.context import Context
from iamprover.engine.encoder import statement_matches
from iamprover.model import Condition, Statement

from telemetry_shunt.core import policy
from telemetry_shunt.core.routes import Pusher, Route, default_routes
from telemetry_shunt.core.validation import ACCOUNT_ID, ACCOUNT_ROOT_ARN
from telemetry_shunt.errors import ShuntError
from telemetry_shunt.verify.subject import ProofSubject, pushers_named_by

NOBODY_BUT_PUSHERS = "nobody but listed pushers"
NOTHING_BUT_POST = "nothing but POST"
NOTHING_OUTSIDE_ROUTES = "nothing outside the routes"
ONLY_THROUGH_SERVICE_NETWORK = "only through the service network"
EVERY_PUSHER_CAN_PUSH = "every pusher can POST to every route"

ACTION_INVOKE = "vpc-lattice-svcs:invoke"  # lower-cased, as the action variable is
KEY_METHOD = "vpc-lattice-svcs:requestmethod"
KEY_PATH = "vpc-lattice-svcs:requestpath"
KEY_SERVICE_ARN = "vpc-lattice-svcs:servicearn"
KEY_SERVICE_NETWORK = "vpc-lattice-svcs:servicenetworkarn"
KEY_PORT = "vpc-lattice-svcs:port"
KEY_PRINCIPAL_TYPE = "aws:principaltype"
KEY_ORG = "aws:principalorgid"
KEY_ACCOUNT = "aws:principalaccount"
KEY_PRINCIPAL_ARN = "aws:principalarn"

# Per query; the policies here decide in milliseconds.
SOLVER_TIMEOUT_MS = 60_000

_ROLE = re.compile(r"arn:([\w-]+):iam::(\d{12}):role/(?:.*/)?([^/*?]+)", re.ASCII)
_USER = re.compile(r"arn:([\w-]+):iam::(\d{12}):user/(?:.*/)?([^/*?]+)", re.ASCII)
_SERVICE_ARN = re.compile(r"arn:([\w-]+):vpc-lattice:[^:]*:\d{12}:service/svc-[0-9a-zA-Z]+", re.ASCII)
# Operators whose value test iamprover encodes exactly; presence is handled here.
_IAMPROVER_OPERATORS = {
    "StringEquals", "StringNotEquals", "StringLike", "StringNotLike",
    "ArnEquals", "ArnNotEquals", "ArnLike", "ArnNotLike", "Bool",
}
_NEGATED = {"StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike", "StringNotEqualsIgnoreCase"}
_KINDS = ("role", "user", "root")
# Keys an unsigned request cannot carry: they describe a signed-in principal.
_ABSENT_WHEN_ANONYMOUS = {KEY_ORG, KEY_ACCOUNT, KEY_PRINCIPAL_ARN, "aws:principalorgpaths"}
_PRINCIPAL_TYPES = {"role": "AssumedRole", "user": "User", "root": "Account"}


class ProofError(ShuntError):
    """The policy uses something the prover does not model; nothing was proven."""


@dataclass(frozen=True)
class ProofResult:
    invariant: str
    holds: bool
    #: a request that breaks the invariant, in words (None when it holds)
    counterexample: str | None = None
    #: the same request as data: principal, method, path, org_id, service_network_arn (None when it holds)
    witness: Mapping[str, Any] | None = None
    #: True when nothing was decided (the policy uses something not modelled, or Z3 gave up)
    unknown: bool = False

    @property
    def verdict(self) -> str:
        """``PROVEN``, ``VIOLATED`` (a counterexample) or ``NOT PROVEN`` (undecided)."""
        return "PROVEN" if self.holds else "NOT PROVEN" if self.unknown else "VIOLATED"

    def __str__(self) -> str:
        return f"{self.verdict}  {self.invariant}" + ("" if self.holds else f"  e.g. {self.counterexample}")


# --- the symbolic request ------------------------------------------------------------------------------
class _Request:
    """Z3 variables for one request through Lattice, and the facts Lattice guarantees about them."""

    def __init__(self, service_arn: str) -> None:
        m = _SERVICE_ARN.fullmatch(service_arn)
        if not m:
            raise ProofError(f"service ARN {service_arn!r} is not a concrete VPC Lattice service ARN "
                             "(arn:<partition>:vpc-lattice:<region>:<account>:service/svc-...); resolve tokens first")
        self.service_arn = service_arn
        self.partition = m.group(1)
        self.ctx = Context()  # iamprover: one string variable per condition key
        self._present: dict[str, z3.BoolRef] = {}
        self.action = z3.String("action")  # lower-cased: iamprover matches actions case-insensitively that way
        self.resource = z3.String("resource")
        self.path = z3.String("path")
        self.anonymous = z3.Bool("anonymous")
        self.kind = z3.String("principal_kind")
        self.account = z3.String("principal_account")
        self.name = z3.String("principal_name")
        for key in (KEY_METHOD, KEY_PATH, KEY_SERVICE_ARN, KEY_SERVICE_NETWORK, KEY_PRINCIPAL_TYPE, KEY_ORG):
            self.has(key)

    def value(self, key: str) -> z3.SeqRef:
        return self.ctx.string(key)

    def has(self, key: str) -> z3.BoolRef:
        key = key.lower()
        if key not in self._present:
            self._present[key] = z3.Bool(f"has[{key}]")
            self.ctx.string(key)
        return self._present[key]

    def facts(self) -> list[z3.BoolRef]:
        """What holds of every real request (call after encoding, so every key used is covered)."""
        anon = self.anonymous
        # An HTTP request (Invoke) has a method and a path, and its resource is <service ARN><path>; other
        # actions (Connect, for TLS passthrough) may lack both and are only known to target this service.
        http = self.action == z3.StringVal(ACTION_INVOKE)
        facts = [
            z3.PrefixOf(z3.StringVal(self.service_arn), self.resource),
            z3.Implies(http, z3.And(
                z3.PrefixOf(z3.StringVal("/"), self.path),
                self.resource == z3.Concat(z3.StringVal(self.service_arn), self.path),
                self.has(KEY_PATH), self.value(KEY_PATH) == self.path,
                self.has(KEY_METHOD), z3.Length(self.value(KEY_METHOD)) > 0,
            )),
            self.has(KEY_SERVICE_ARN), self.value(KEY_SERVICE_ARN) == z3.StringVal(self.service_arn),
            z3.Not(z3.InRe(self.action, z3.Concat(_ANY, z3.Range("A", "Z"), _ANY))),
            self.has(KEY_PRINCIPAL_TYPE),
            z3.Implies(anon, z3.InRe(self.value(KEY_PRINCIPAL_TYPE), _ci_re("anonymous"))),
            z3.Implies(z3.Not(anon), z3.Not(z3.InRe(self.value(KEY_PRINCIPAL_TYPE), _ci_re("anonymous")))),
            z3.Implies(z3.Not(anon), z3.And(
                z3.InRe(self.account, _DIGITS12),
                z3.Or(*[self.kind == z3.StringVal(k) for k in _KINDS]),
                z3.Implies(self.kind != z3.StringVal("root"), z3.Length(self.name) > 0),
            )),
        ]
        for key, present in self._present.items():
            if key in _ABSENT_WHEN_ANONYMOUS or key.startswith("aws:principaltag/"):
                facts.append(z3.Implies(anon, z3.Not(present)))
        if KEY_ACCOUNT in self._present:
            facts.append(z3.Implies(z3.Not(anon), z3.And(self.has(KEY_ACCOUNT), self.value(KEY_ACCOUNT) == self.account)))
        return facts

    def plausible(self) -> list[z3.BoolRef]:
        """Preferences for a readable counterexample that the offline evaluator can replay (not facts)."""
        word = z3.Union(z3.Range("a", "z"), z3.Range("0", "9"), z3.Re("-"))
        path_char = z3.Union(z3.Range("a", "z"), z3.Range("A", "Z"), z3.Range("0", "9"), z3.Re("/"), z3.Re("-"),
                             z3.Re("_"), z3.Re("."))
        ptype = self.value(KEY_PRINCIPAL_TYPE)
        out = [
            self.action == z3.StringVal(ACTION_INVOKE),
            z3.InRe(self.value(KEY_METHOD), z3.Plus(z3.Range("A", "Z"))),
            z3.InRe(self.path, z3.Star(path_char)),
            z3.InRe(self.name, z3.Concat(z3.Range("a", "z"), z3.Star(word))),
            z3.Implies(self.has(KEY_ORG), z3.InRe(self.value(KEY_ORG), z3.Concat(z3.Re("o-"), z3.Loop(word, 10, 10)))),
            z3.Implies(self.has(KEY_SERVICE_NETWORK), z3.InRe(self.value(KEY_SERVICE_NETWORK), z3.Concat(
                z3.Re(f"arn:{self.partition}:vpc-lattice:"), z3.Star(word), z3.Re(":"), _DIGITS12,
                z3.Re(":servicenetwork/sn-"), z3.Plus(word)))),
        ]
        out.append(z3.Implies(self.anonymous, ptype == z3.StringVal("Anonymous")))
        for kind, type_name in _PRINCIPAL_TYPES.items():
            out.append(z3.Implies(z3.And(z3.Not(self.anonymous), self.kind == z3.StringVal(kind)),
                                  ptype == z3.StringVal(type_name)))
        for key, present in self._present.items():
            if key == KEY_PORT:
                out.append(z3.And(present, self.value(key) == z3.StringVal("443")))
            elif key == KEY_PRINCIPAL_ARN:
                out.append(present == z3.Not(self.anonymous))
            elif key not in (KEY_METHOD, KEY_PATH, KEY_SERVICE_ARN, KEY_SERVICE_NETWORK, KEY_PRINCIPAL_TYPE,
                             KEY_ORG, KEY_ACCOUNT):
                out.append(z3.Not(present))  # keys the evaluator's Request cannot carry
        return out

    def is_principal(self, *, account: str, kind: str | None = None, name: str | None = None,
                     partition: str | None = None) -> z3.BoolRef:
        if partition is not None and partition != self.partition:
            return z3.BoolVal(False)  # partitions are isolated: no caller of another partition reaches us
        terms = [z3.Not(self.anonymous), self.account == z3.StringVal(account)]
        if kind is not None:
            terms.append(self.kind == z3.StringVal(kind))
        if name is not None:
            terms.append(self.name == z3.StringVal(name))
        return z3.And(*terms)

    def in_org(self, org_id: str) -> z3.BoolRef:
        return z3.And(z3.Not(self.anonymous), self.has(KEY_ORG), self.value(KEY_ORG) == z3.StringVal(org_id))


_ANY = z3.Star(z3.AllChar(z3.ReSort(z3.StringSort())))
_DIGITS12 = z3.Loop(z3.Range("0", "9"), 12, 12)


def _ci_re(text: str) -> z3.ReRef:
    """ASCII case-insensitive equality to ``text`` as a regular expression (what ``...IgnoreCase`` means)."""
    parts = [z3.Union(z3.Re(c.lower()), z3.Re(c.upper())) if c.isascii() and c.isalpha() else z3.Re(c) for c in text]
    if not parts:
        return z3.Re("")
    return parts[0] if len(parts) == 1 else z3.Concat(*parts)


# --- policies to formulas ----------------------------------------------------------------------------
def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _no_variables(values: Sequence[Any], where: str) -> list[str]:
    out = []
    for v in values:
        if not isinstance(v, (str, bool, int)):
            raise ProofError(f"{where}: value {v!r} is not a string")
        text = str(v).lower() if isinstance(v, bool) else str(v)
        if "${" in text:
            raise ProofError(f"{where}: {text!r} holds a policy variable or an unresolved CDK token; "
                             "prove the policy with deploy-time values resolved (telemetry_shunt.core.template)")
        out.append(text)
    return out


def _principal_term(element: Any, req: _Request, where: str) -> z3.BoolRef:
    if element == "*":
        return z3.BoolVal(True)
    if not isinstance(element, Mapping) or set(element) != {"AWS"}:
        raise ProofError(f"{where}: Principal {element!r} is not '*' or {{'AWS': [...]}}; the prover models AWS principals only")
    terms = []
    for entry in _no_variables(_as_list(element["AWS"]), where):
        if entry == "*":
            return z3.BoolVal(True)
        if ACCOUNT_ID.fullmatch(entry):
            terms.append(req.is_principal(account=entry))
        elif m := ACCOUNT_ROOT_ARN.fullmatch(entry):
            terms.append(req.is_principal(account=m.group(2), partition=m.group(1)))
        elif m := _ROLE.fullmatch(entry):
            # A role principal matches the role's sessions; role names are unique in an account, paths aside.
            terms.append(req.is_principal(account=m.group(2), kind="role", name=m.group(3), partition=m.group(1)))
        elif m := _USER.fullmatch(entry):
            terms.append(req.is_principal(account=m.group(2), kind="user", name=m.group(3), partition=m.group(1)))
        else:
            raise ProofError(f"{where}: principal {entry!r} is not an account id, account root, role or user ARN")
    return z3.Or(*terms) if terms else z3.BoolVal(False)


def _condition_term(op: str, key: str, raw_values: Any, req: _Request, where: str) -> z3.BoolRef:
    if ":" in op:
        raise ProofError(f"{where}: set operator {op!r} is not modelled (the keys Lattice policies use are single-valued)")
    base = op[: -len("IfExists")] if op.endswith("IfExists") else op
    if_exists = base != op
    values = _no_variables(_as_list(raw_values), f"{where} {op} {key}")
    if not values:
        raise ProofError(f"{where}: condition {op} on {key} has no values")
    present = req.has(key)
    if base == "Null":
        if values[0].lower() not in ("true", "false"):
            raise ProofError(f"{where}: Null takes true or false, got {values[0]!r}")
        return z3.Not(present) if values[0].lower() == "true" else present
    if base in _IAMPROVER_OPERATORS:
        term = encode_condition(Condition(base, key, values), req.ctx)
        if term is None:
            raise ProofError(f"{where}: iamprover could not encode {op} on {key}")
    elif base in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        hit = z3.Or(*[z3.InRe(req.value(key), _ci_re(v)) for v in values])
        term = z3.Not(hit) if base in _NEGATED else hit
    else:
        raise ProofError(f"{where}: condition operator {op!r} is not modelled; nothing was proven")
    if base in _NEGATED or if_exists:
        return z3.Or(z3.Not(present), term)  # an absent key satisfies negated and ...IfExists operators
    return z3.And(present, term)


def _statement_term(sid: str, stmt: Mapping[str, Any], req: _Request, layer: str) -> z3.BoolRef:
    where = f"{layer} policy statement {sid}"
    if "Principal" in stmt:
        principal = _principal_term(stmt["Principal"], req, where)
    elif "NotPrincipal" in stmt:
        principal = z3.Not(_principal_term(stmt["NotPrincipal"], req, where))
    else:
        raise ProofError(f"{where} has no Principal; an auth policy statement needs one")
    if ("Action" in stmt) == ("NotAction" in stmt) or ("Resource" in stmt) == ("NotResource" in stmt):
        raise ProofError(f"{where} needs exactly one of Action/NotAction and one of Resource/NotResource")
    shape = Statement(
        effect=stmt["Effect"],
        actions=_no_variables(_as_list(stmt.get("Action")), where),
        not_actions=_no_variables(_as_list(stmt.get("NotAction")), where),
        resources=_no_variables(_as_list(stmt.get("Resource")), where),
        not_resources=_no_variables(_as_list(stmt.get("NotResource")), where),
    )
    # iamprover: Action/NotAction and Resource/NotResource wildcard matching (no conditions given here).
    action_resource = statement_matches(shape, req.action, req.resource, req.ctx)
    conditions = [
        _condition_term(op, key, values, req, where)
        for op, block in (stmt.get("Condition") or {}).items()
        for key, values in block.items()
    ]
    return z3.And(principal, action_resource, *conditions)


def _layer_allows(policy: Mapping[str, Any] | None, req: _Request, layer: str) -> z3.BoolRef:
    """A matching Allow and no matching Deny. ``None`` means the layer does not use AWS_IAM auth."""
    if policy is None:
        return z3.BoolVal(True)
    raw = policy.get("Statement", [])
    statements = [raw] if isinstance(raw, Mapping) else list(raw)
    allows, denies = [], []
    for i, stmt in enumerate(statements):
        sid = str(stmt.get("Sid") or f"#{i}")
        if stmt.get("Effect") not in ("Allow", "Deny"):
            raise ProofError(f"{layer} policy statement {sid} has Effect {stmt.get('Effect')!r}; expected Allow or Deny")
        (allows if stmt["Effect"] == "Allow" else denies).append(_statement_term(sid, stmt, req, layer))
    return z3.And(z3.Or(*allows) if allows else z3.BoolVal(False), z3.Not(z3.Or(*denies)) if denies else z3.BoolVal(True))


# --- solving -----------------------------------------------------------------------------------------
def _solve(req: _Request, formula: z3.BoolRef) -> tuple[str, z3.ModelRef | None]:
    def check(*constraints: z3.BoolRef) -> tuple[z3.CheckSatResult, z3.Solver]:
        # A fresh solver per query: Z3's incremental (push/pop) string solving can stall on these.
        solver = z3.Solver()
        solver.set("timeout", SOLVER_TIMEOUT_MS)
        solver.add(formula, *req.facts(), *constraints)
        return solver.check(), solver

    verdict, solver = check()
    if verdict == z3.unsat:
        return "unsat", None
    if verdict == z3.unknown:
        return f"unknown ({solver.reason_unknown()})", None
    plausible, nicer = check(*req.plausible())
    return "sat", (nicer if plausible == z3.sat else solver).model()


def _witness(req: _Request, model: z3.ModelRef) -> dict[str, Any]:
    def text(var: z3.SeqRef) -> str:
        return model.eval(var, model_completion=True).as_string()

    def present(key: str) -> bool:
        return z3.is_true(model.eval(req.has(key), model_completion=True))

    anonymous = z3.is_true(model.eval(req.anonymous, model_completion=True))
    account, name, kind = text(req.account), text(req.name), text(req.kind)
    if anonymous:
        principal = "anonymous"
    elif kind == "role":
        principal = f"arn:{req.partition}:sts::{account}:assumed-role/{name}/proof-session"
    elif kind == "user":
        principal = f"arn:{req.partition}:iam::{account}:user/{name}"
    else:
        principal = f"arn:{req.partition}:iam::{account}:root"
    return {
        "principal": principal,
        "principal_type": text(req.value(KEY_PRINCIPAL_TYPE)),
        "action": text(req.action),
        "method": text(req.value(KEY_METHOD)),
        "path": text(req.path),
        "org_id": text(req.value(KEY_ORG)) if present(KEY_ORG) else None,
        "service_network_arn": text(req.value(KEY_SERVICE_NETWORK)) if present(KEY_SERVICE_NETWORK) else None,
    }


def _describe(w: Mapping[str, Any]) -> str:
    extras = [f"action {w['action']}", f"aws:PrincipalType={w['principal_type']!r}",
              f"aws:PrincipalOrgID={w['org_id']!r}" if w["org_id"] is not None else "no aws:PrincipalOrgID",
              f"via {w['service_network_arn']}" if w["service_network_arn"] is not None else "no ServiceNetworkArn"]
    return f"{w['principal']} {w['method']!r} {w['path']!r} ({', '.join(extras)})"


def _never(invariant: str, req: _Request, bad: z3.BoolRef) -> ProofResult:
    verdict, model = _solve(req, bad)
    if verdict == "unsat":
        return ProofResult(invariant, True)
    if model is None:
        return ProofResult(invariant, False, f"not proven: Z3 returned {verdict}", unknown=True)
    witness = _witness(req, model)
    return ProofResult(invariant, False, _describe(witness), witness)


def _pusher_term(p: Pusher, req: _Request) -> z3.BoolRef:
    if p.kind == "organization":
        return req.in_org(p.value)
    if p.kind == "account":
        return req.is_principal(account=p.value)
    m = _ROLE.fullmatch(p.value)
    assert m is not None  # Pusher.role validated it
    return req.is_principal(account=m.group(2), kind="role", name=m.group(3), partition=m.group(1))


def prove_push_only(
    service_policy: Mapping[str, Any] | None,
    network_policy: Mapping[str, Any] | None,
    *,
    service_arn: str,
    service_network_arn: str,
    pushers: Sequence[str | Pusher],
    routes: Sequence[str | Route],
) -> list[ProofResult]:
    """Prove the push-only invariants (see the module docstring) for one service and its network.

    ``pushers`` are role ARNs, 12-digit account ids or ``o-...`` organization ids (or :class:`Pusher`);
    ``routes`` are exact request paths (or :class:`Route`). Raises :class:`ProofError` if a policy uses
    anything the prover does not model.
    """
    parsed = [p if isinstance(p, Pusher) else Pusher.parse(p) for p in pushers]
    if not parsed:
        raise ProofError("no pushers: name who should be able to push, or every invariant is trivially about nobody")
    paths = [r.path if isinstance(r, Route) else Route(r).path for r in routes]
    if not paths:
        raise ProofError("no routes: name the paths the gateway routes")
    req = _Request(service_arn)
    allowed = z3.And(_layer_allows(network_policy, req, "service network"), _layer_allows(service_policy, req, "service"))
    method = req.value(KEY_METHOD)
    routed = [req.resource == z3.StringVal(service_arn + p) for p in paths]
    through_network = z3.And(req.has(KEY_SERVICE_NETWORK), req.value(KEY_SERVICE_NETWORK) == z3.StringVal(service_network_arn))
    listed = z3.Or(*[_pusher_term(p, req) for p in parsed])
    results = [
        _never(NOBODY_BUT_PUSHERS, req, z3.And(allowed, z3.Not(listed))),
        _never(NOTHING_BUT_POST, req, z3.And(allowed, method != z3.StringVal("POST"))),
        _never(NOTHING_OUTSIDE_ROUTES, req, z3.And(allowed, z3.Not(z3.Or(*routed)))),
        _never(ONLY_THROUGH_SERVICE_NETWORK, req, z3.And(allowed, z3.Not(through_network))),
    ]
    blocked, undecided = [], False
    for p in parsed:
        for path, at_route in zip(paths, routed, strict=True):
            push = z3.And(allowed, _pusher_term(p, req), at_route, method == z3.StringVal("POST"), through_network)
            verdict, _ = _solve(req, push)
            if verdict != "sat":
                undecided = undecided or verdict != "unsat"
                blocked.append(f"{p} cannot POST {path}" + ("" if verdict == "unsat" else f" (Z3 returned {verdict})"))
    results.append(ProofResult(EVERY_PUSHER_CAN_PUSH, not blocked, "; ".join(blocked) or None, unknown=undecided))
    return results


_SESSION = re.compile(r"arn:([\w-]+):sts::(\d{12}):assumed-role/([^/]+)/[^/]+", re.ASCII)


def smt_allows(
    service_policy: Mapping[str, Any] | None,
    network_policy: Mapping[str, Any] | None,
    *,
    service_arn: str,
    principal: str | None,
    method: str,
    path: str,
    org_id: str | None = None,
    service_network_arn: str | None = None,
    action: str = policy.ACTION_INVOKE,
) -> bool:
    """Whether the proof's encoding allows one concrete request (the evaluator's context, pinned).

    For cross-checking the encoding against :func:`telemetry_shunt.core.evaluator.evaluate`, which
    must agree on every request; the proofs above quantify over all of them instead.
    """
    req = _Request(service_arn)
    allowed = z3.And(_layer_allows(network_policy, req, "service network"), _layer_allows(service_policy, req, "service"))
    pins = [req.action == z3.StringVal(action.lower()), req.has(KEY_METHOD), req.value(KEY_METHOD) == z3.StringVal(method),
            req.path == z3.StringVal(path), req.has(KEY_PATH), req.value(KEY_PATH) == z3.StringVal(path),
            req.resource == z3.StringVal(service_arn + path), req.has(KEY_PORT), req.value(KEY_PORT) == z3.StringVal("443")]
    if service_network_arn is None:
        pins.append(z3.Not(req.has(KEY_SERVICE_NETWORK)))
    else:
        pins += [req.has(KEY_SERVICE_NETWORK), req.value(KEY_SERVICE_NETWORK) == z3.StringVal(service_network_arn)]
    if principal in (None, "", "anonymous", "*"):
        pins += [req.anonymous, req.value(KEY_PRINCIPAL_TYPE) == z3.StringVal("Anonymous")]
    else:
        assert principal is not None
        if m := _SESSION.fullmatch(principal) or _ROLE.fullmatch(principal):
            kind, arn = "role", f"arn:{m.group(1)}:iam::{m.group(2)}:role/{m.group(3)}"
        elif m := _USER.fullmatch(principal):
            kind, arn = "user", principal
        elif m := ACCOUNT_ROOT_ARN.fullmatch(principal):
            kind, arn = "root", principal
        else:
            raise ProofError(f"principal {principal!r} is not a role session, role, user or account root ARN")
        if m.group(1) != req.partition:
            return False  # partitions are isolated
        pins += [z3.Not(req.anonymous), req.kind == z3.StringVal(kind), req.account == z3.StringVal(m.group(2)),
                 req.value(KEY_PRINCIPAL_TYPE) == z3.StringVal(_PRINCIPAL_TYPES[kind]),
                 req.has(KEY_PRINCIPAL_ARN), req.value(KEY_PRINCIPAL_ARN) == z3.StringVal(principal if kind != "role" else arn)]
        if kind != "root":
            pins.append(req.name == z3.StringVal(m.group(3)))
        if org_id is None:
            pins.append(z3.Not(req.has(KEY_ORG)))
        else:
            pins += [req.has(KEY_ORG), req.value(KEY_ORG) == z3.StringVal(org_id)]
    described = {KEY_METHOD, KEY_PATH, KEY_SERVICE_ARN, KEY_SERVICE_NETWORK, KEY_PORT, KEY_PRINCIPAL_TYPE, KEY_ORG,
                 KEY_PRINCIPAL_ARN, KEY_ACCOUNT}
    pins += [z3.Not(present) for key, present in req._present.items() if key not in described]
    verdict, _ = _solve(req, z3.And(allowed, *pins))
    if verdict not in ("sat", "unsat"):
        raise ProofError(f"Z3 could not decide the request: {verdict}")
    return verdict == "sat"


def context_pushers(cdk_json: str | Path) -> list[str]:
    """An app's intended pushers: ``telemetry-shunt:pushers`` in its cdk.json (``make synth`` proves against them)."""
    value = json.loads(Path(cdk_json).read_text())["context"].get("telemetry-shunt:pushers", [])
    return [value] if isinstance(value, str) else list(value)


def prove_push_only_from_policies(
    found: Any, *, pushers: Sequence[str | Pusher] | None = None, routes: Sequence[str | Route] | None = None
) -> list[ProofResult]:
    """Prove a :class:`~telemetry_shunt.core.template.LatticePolicies` push-only.

    Pushers default to those the service policy's Allow statements name
    (:func:`~telemetry_shunt.verify.subject.pushers_named_by`), routes to :func:`default_routes`. A
    policy that cannot be proven (missing, or using something not modelled) is reported as not proven.
    """
    missing = [what for what, doc in (("service", found.service_policy), ("service network", found.service_network_policy))
               if doc is None]
    if missing or found.service_network_arn is None:
        reason = f"not proven: no {' or '.join(missing) or 'service network'} auth policy found in the template(s)"
        return [ProofResult(NOBODY_BUT_PUSHERS, False, reason, unknown=True)]
    routes = default_routes() if routes is None else routes
    try:
        pushers = pushers_named_by(found.service_policy) if pushers is None else pushers
        return prove_push_only(found.service_policy, found.service_network_policy, service_arn=found.service_arn,
                               service_network_arn=found.service_network_arn, pushers=pushers, routes=routes)
    except ShuntError as exc:
        return [ProofResult(NOBODY_BUT_PUSHERS, False, f"not proven: {exc}", unknown=True)]


def prove_subject(subject: ProofSubject) -> list[ProofResult]:
    """Prove what :func:`~telemetry_shunt.verify.subject.proof_subject` read (``shunt policy prove``, ``make synth``).

    One result per invariant, in a fixed order; a policy the prover does not model gives one
    ``NOT PROVEN`` result that says what it could not model.
    """
    return prove_push_only_from_policies(subject.policies, pushers=list(subject.pushers), routes=list(subject.routes))


__all__ = [
    "EVERY_PUSHER_CAN_PUSH", "NOBODY_BUT_PUSHERS", "NOTHING_BUT_POST", "NOTHING_OUTSIDE_ROUTES",
    "ONLY_THROUGH_SERVICE_NETWORK", "ProofError", "ProofResult", "context_pushers", "prove_push_only",
    "prove_push_only_from_policies", "prove_subject", "smt_allows",
]
