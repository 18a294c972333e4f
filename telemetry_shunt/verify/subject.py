"""What ``shunt policy prove`` proves: one Lattice service's auth policies, and whom and what they should allow.

Pure Python (no Z3): reading the input and deciding the expectations is separate from the proof, so bad
input is reported the same way with or without the ``verify`` extra.

Input flavours. A document is read as JSON and handed to the first :class:`Flavour` whose ``detect``
accepts it; that flavour's ``extract`` finds the service's policies and its ``routes`` the paths its
listener rules route, and :func:`proof_subject` makes a :class:`ProofSubject` of them. CloudFormation
(a synthesized CDK template) and Terraform JSON (the Terraform flavour's ``cdk.tf.json``) are the two
flavours; another is added by appending a :class:`Flavour` to :data:`FLAVOURS`, nothing else changes.

Expectations, when not given:

- **pushers** come from the service policy's ``Allow`` statements: each AWS principal (role ARN,
  account id or account root) and each ``aws:PrincipalOrgID`` an ``Allow`` to ``*`` is conditioned on.
  The proof then shows that nothing else in either policy (another statement, a ``NotPrincipal``, an
  ``...IfExists`` hole, a missing ``DenyAnonymous``) lets anyone else in, and that every one of them can
  push. It cannot tell whether those are the principals you meant: pass ``--pusher`` to check against
  your intent.
- **routes** come from the service's listener rules (exact path matches), which are independent of the
  policies: a route the policy does not allow, or an allowed path no rule routes, is found.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telemetry_shunt.core import tfjson
from telemetry_shunt.core.routes import Pusher, Route
from telemetry_shunt.core.template import Environment, LatticePolicies, Resolver, lattice_policies
from telemetry_shunt.core.validation import ACCOUNT_ID, ACCOUNT_ROOT_ARN
from telemetry_shunt.errors import ShuntError

KEY_ORG = "aws:principalorgid"


@dataclass(frozen=True)
class ProofSubject:
    """One service's policies and the pushers and routes they are proven against."""

    policies: LatticePolicies
    pushers: tuple[str, ...]
    routes: tuple[str, ...]
    #: "template" (read from the policies / listener rules) or "options" (given by the caller)
    pushers_from: str
    routes_from: str
    flavour: str


@dataclass(frozen=True)
class Flavour:
    """One kind of input document: how to recognise it and how to read a :class:`ProofSubject` out of it."""

    name: str
    detect: Callable[[Mapping[str, Any]], bool]
    #: (documents, environment, service logical id or name or None) -> the service's policies
    extract: Callable[[Sequence[Mapping[str, Any]], Environment, str | None], LatticePolicies]
    #: (documents, environment, the service's policies) -> the paths its listener rules route
    #: (called only when the caller names no routes)
    routes: Callable[[Sequence[Mapping[str, Any]], Environment, LatticePolicies], list[str]]


def read_document(path: str | Path) -> dict[str, Any]:
    """A JSON object from ``path``, or one :class:`ShuntError` line that names the file and says why not."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ShuntError(f"cannot read template {str(path)!r}: {exc.strerror or exc}; "
                         "pass a synthesized template, e.g. cdk.out/TelemetryConcentrator.template.json") from None
    except UnicodeDecodeError:
        raise ShuntError(f"template {str(path)!r} is not UTF-8 text; pass a synthesized JSON template") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ShuntError(f"template {str(path)!r} is not JSON ({exc.msg} at line {exc.lineno}); "
                         "pass a synthesized template (cdk synth writes JSON into cdk.out/)") from None
    if not isinstance(data, dict):
        raise ShuntError(f"template {str(path)!r} is JSON but not an object; pass a synthesized CloudFormation template")
    return data


# --- CloudFormation ------------------------------------------------------------------------------------
def _is_cloudformation(doc: Mapping[str, Any]) -> bool:
    resources = doc.get("Resources")
    return isinstance(resources, Mapping) and all(
        isinstance(r, Mapping) and isinstance(r.get("Type"), str) for r in resources.values())


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def pushers_named_by(service_policy: Mapping[str, Any]) -> list[str]:
    """The principals the policy's ``Allow`` statements name, as pusher strings (role ARN, account, org)."""
    raw = service_policy.get("Statement", [])
    statements = [raw] if isinstance(raw, Mapping) else list(raw)
    out: list[str] = []

    def add(value: str) -> None:
        if value not in out:
            out.append(value)

    for i, stmt in enumerate(statements):
        if not isinstance(stmt, Mapping) or stmt.get("Effect") != "Allow":
            continue
        sid = stmt.get("Sid") or f"#{i}"
        if "Principal" not in stmt:
            raise ShuntError(f"service policy statement {sid} allows a NotPrincipal; the pushers cannot be read from it: "
                             "name them with --pusher")
        principal = stmt["Principal"]
        entries = ["*"] if principal == "*" else _as_list(principal.get("AWS")) if isinstance(principal, Mapping) else []
        if not entries:
            raise ShuntError(f"service policy statement {sid} has Principal {principal!r}; name the pushers with --pusher")
        for entry in entries:
            if entry == "*":
                orgs = [str(v) for op, block in (stmt.get("Condition") or {}).items() if op in ("StringEquals", "StringLike")
                        for key, values in block.items() if key.lower() == KEY_ORG for v in _as_list(values)]
                if not orgs:
                    raise ShuntError(f"service policy statement {sid} allows Principal '*' without an aws:PrincipalOrgID "
                                     "condition, so it names no pushers: name them with --pusher")
                for org in orgs:
                    add(org)
            elif not isinstance(entry, str):
                raise ShuntError(f"service policy statement {sid} names principal {entry!r}; name the pushers with --pusher")
            elif ACCOUNT_ID.fullmatch(entry):
                add(entry)
            elif m := ACCOUNT_ROOT_ARN.fullmatch(entry):
                add(m.group(2))
            elif ":role/" in entry:
                add(entry)
            else:
                raise ShuntError(f"service policy statement {sid} names principal {entry!r}, which is not a role, account or "
                                 "organization pusher; name the pushers with --pusher")
    if not out:
        raise ShuntError("the service policy has no Allow statement, so it names no pushers: name them with --pusher")
    return out


def routes_of_service(templates: Sequence[Mapping[str, Any]], env: Environment, service_logical_id: str) -> list[str]:
    """The exact paths the service's listener rules route, in priority order."""
    found: list[tuple[int, str]] = []
    for template in templates:
        r = Resolver(template, env)
        if service_logical_id not in r.resources:
            continue
        service_id = _normalise(r.arn(service_logical_id))
        listeners = {lid for lid, res in r.resources.items() if res.get("Type") == "AWS::VpcLattice::Listener"
                     and _normalise(str(r.resolve(res.get("Properties", {}).get("ServiceIdentifier")))) == service_id}
        for lid, res in r.resources.items():
            if res.get("Type") != "AWS::VpcLattice::Rule":
                continue
            props = res.get("Properties", {})
            listener = props.get("ListenerIdentifier")
            listener_logical = _logical_id(listener)
            on_service = (_normalise(str(r.resolve(props.get("ServiceIdentifier")))) == service_id
                          if props.get("ServiceIdentifier") is not None else listener_logical in listeners)
            if not on_service:
                continue
            match = (((props.get("Match") or {}).get("HttpMatch") or {}).get("PathMatch") or {}).get("Match") or {}
            if "Exact" not in match:
                raise ShuntError(f"listener rule {lid} matches path {match!r}, not an exact path; "
                                 "name the routes with --route")
            found.append((int(r.resolve(props.get("Priority", 0))), str(r.resolve(match["Exact"]))))
    return [path for _, path in sorted(found)]


def _logical_id(value: Any) -> str | None:
    if isinstance(value, Mapping) and len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref":
            return str(arg)
        if key == "Fn::GetAtt":
            return str(arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0])
    return None


def _normalise(identifier: str) -> str:
    return identifier.rsplit("/", 1)[-1]


def _extract_cloudformation(templates: Sequence[Mapping[str, Any]], env: Environment, service: str | None) -> LatticePolicies:
    return lattice_policies(list(templates), env=env, service=service)


CLOUDFORMATION = Flavour("cloudformation", _is_cloudformation, _extract_cloudformation,
                         lambda docs, env, found: routes_of_service(docs, env, found.service_logical_id))
#: Terraform JSON (``cdk.tf.json`` from the Terraform flavour), references resolved like intrinsics.
TERRAFORM = Flavour("terraform", tfjson.is_terraform_json,
                    lambda docs, env, service: tfjson.lattice_policies(list(docs), env=env, service=service),
                    lambda docs, env, found: tfjson.routes_of_service(list(docs), env=env,
                                                                      service_address=found.service_logical_id))
#: Input flavours, tried in order.
FLAVOURS: list[Flavour] = [CLOUDFORMATION, TERRAFORM]


def read_documents(paths: Sequence[str | Path], *,
                   flavours: Sequence[Flavour] | None = None) -> tuple[list[dict[str, Any]], Flavour]:
    """Read ``paths`` (all of one flavour: CloudFormation templates or Terraform JSON) and say which flavour."""
    if not paths:
        raise ShuntError("no templates: pass one or more synthesized templates, e.g. cdk.out/*.template.json")
    docs = [(str(p), read_document(p)) for p in paths]
    kinds = []
    for path, doc in docs:
        flavour = next((f for f in (flavours or FLAVOURS) if f.detect(doc)), None)
        if flavour is None:
            raise ShuntError(f"template {path!r} is neither a CloudFormation template (no Resources section with typed "
                             "resources) nor Terraform JSON (no resource section); pass a synthesized template, e.g. "
                             "cdk.out/TelemetryConcentrator.template.json or cdktf.out/stacks/<stack>/cdk.tf.json")
        kinds.append(flavour)
    if len({f.name for f in kinds}) > 1:
        raise ShuntError(f"templates of different kinds ({', '.join(sorted({f.name for f in kinds}))}); prove one kind at a time")
    return [d for _, d in docs], kinds[0]


def service_policies(paths: Sequence[str | Path], *, env: Environment = Environment(),
                     service: str | None = None) -> LatticePolicies:
    """The Lattice service's policies in the documents at ``paths``, CloudFormation or Terraform JSON."""
    documents, flavour = read_documents(paths)
    return flavour.extract(documents, env, service)


def proof_subject(
    paths: Sequence[str | Path],
    *,
    pushers: Sequence[str] | None = None,
    routes: Sequence[str] | None = None,
    env: Environment = Environment(),
    service: str | None = None,
    flavours: Sequence[Flavour] | None = None,
) -> ProofSubject:
    """Read the templates at ``paths`` and say what to prove; :class:`ShuntError` (one line) on bad input."""
    documents, flavour = read_documents(paths, flavours=flavours)
    for p in pushers or ():
        Pusher.parse(p)  # a bad --pusher is named now, not deep in the proof
    for path in routes or ():
        Route(path)
    try:
        policies = flavour.extract(documents, env, service)
        if policies.service_policy is None:
            raise ShuntError(f"no auth policy on Lattice service {policies.service_logical_id} in the template(s) "
                             "(no AWS::VpcLattice::AuthPolicy for it): nothing to prove; pass the template that holds it")
        if policies.service_network_arn is None:
            raise ShuntError(f"Lattice service {policies.service_logical_id} is associated with no service network in "
                             "the template(s): pass the template that holds the service network and its association too")
        expected_pushers = list(pushers) if pushers else pushers_named_by(policies.service_policy)
        expected_routes = list(routes) if routes else flavour.routes(documents, env, policies)
    except ShuntError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise ShuntError(f"the {flavour.name} template(s) {', '.join(str(p) for p in paths)} are malformed "
                         f"({type(exc).__name__}: {exc}); pass templates as synthesized, unedited") from None
    if not expected_routes:
        raise ShuntError(f"Lattice service {policies.service_logical_id} has no listener rules in the template(s); "
                         "name the routes with --route")
    return ProofSubject(
        policies=policies,
        pushers=tuple(expected_pushers),
        routes=tuple(expected_routes),
        pushers_from="options" if pushers else "template",
        routes_from="options" if routes else "template",
        flavour=flavour.name,
    )


__all__ = ["CLOUDFORMATION", "TERRAFORM", "FLAVOURS", "Flavour", "ProofSubject", "proof_subject", "pushers_named_by",
           "read_document", "read_documents", "routes_of_service", "service_policies"]
