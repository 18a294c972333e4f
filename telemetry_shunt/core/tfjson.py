"""Read auth policies out of synthesized Terraform JSON (``cdk.tf.json``), with references resolved.

The Terraform flavour writes each auth policy as a JSON string with Terraform interpolations in it
(``"Resource": "${aws_vpclattice_service.gateway.arn}/metrics"``). Here every reference is stood in for by
the same kind of stable, realistic fake that :mod:`telemetry_shunt.core.template` uses for CloudFormation
(``arn:<partition>:vpc-lattice:<region>:<account>:service/svc-<hash of the resource address>``), so the
offline evaluator and the push-only proof see exactly the policy Terraform would apply, in any partition.

Only plain references are resolved (``${type.name.attribute}``, ``${data.type.name.attribute}``); an
expression (a function call, a conditional, arithmetic) is refused with its text rather than guessed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from telemetry_shunt.core.template import Environment, LatticePolicies, choose_service
from telemetry_shunt.errors import ShuntError

SERVICE = "aws_vpclattice_service"
SERVICE_NETWORK = "aws_vpclattice_service_network"
AUTH_POLICY = "aws_vpclattice_auth_policy"
SERVICE_ASSOCIATION = "aws_vpclattice_service_network_service_association"
LISTENER_RULE = "aws_vpclattice_listener_rule"

_ARN_PREFIX = {SERVICE: "service/svc-", SERVICE_NETWORK: "servicenetwork/sn-"}
# "${...}" not preceded by a second "$" ("$${" is Terraform's escape for a literal "${").
_INTERPOLATION = re.compile(r"(?<!\$)\$\{([^{}]*)\}")
_REFERENCE = re.compile(r"(data\.)?([a-z0-9_]+)\.([A-Za-z0-9_-]+)\.([a-z0-9_]+)", re.ASCII)


def is_terraform_json(document: object) -> bool:
    """True for a synthesized Terraform JSON configuration (as opposed to a CloudFormation template)."""
    return isinstance(document, Mapping) and "Resources" not in document and (
        "resource" in document or "terraform" in document)


class TerraformResolver:
    """Resolves the interpolations in one ``cdk.tf.json`` against an :class:`Environment`."""

    def __init__(self, document: Mapping[str, Any], env: Environment) -> None:
        self.resources: Mapping[str, Mapping[str, Any]] = document.get("resource", {})
        self.data: Mapping[str, Mapping[str, Any]] = document.get("data", {})
        self.env = env

    @staticmethod
    def fake_id(address: str) -> str:
        return hashlib.sha256(address.encode()).hexdigest()[:17]

    def arn(self, rtype: str, name: str) -> str:
        prefix = _ARN_PREFIX.get(rtype)
        if prefix is None:
            return f"arn:{self.env.partition}:terraform:::{rtype}.{name}"
        return (f"arn:{self.env.partition}:vpc-lattice:{self.env.region}:{self.env.account}:"
                f"{prefix}{self.fake_id(f'{rtype}.{name}')}")

    def reference(self, expression: str) -> str:
        m = _REFERENCE.fullmatch(expression.strip())
        if m is None:
            raise ShuntError(f"Terraform expression ${{{expression}}} is not a plain reference; the offline policy "
                             "tools resolve only ${type.name.attribute} (build policies from references, not functions)")
        is_data, rtype, name, attribute = m.groups()
        if is_data:
            if rtype not in self.data or name not in self.data[rtype]:
                raise ShuntError(f"${{{expression}}} names data source {rtype}.{name}, which the configuration lacks")
            if rtype == "aws_partition" and attribute == "partition":
                return self.env.partition
            if rtype == "aws_region" and attribute in ("name", "region", "id"):
                return self.env.region
            if rtype == "aws_caller_identity" and attribute in ("account_id", "id"):
                return self.env.account
            raise ShuntError(f"${{{expression}}}: data source attribute {rtype}.{attribute} is not modelled offline")
        if rtype not in self.resources or name not in self.resources[rtype]:
            raise ShuntError(f"${{{expression}}} names resource {rtype}.{name}, which the configuration lacks")
        if attribute == "arn":
            return self.arn(rtype, name)
        if attribute == "id":
            return self.arn(rtype, name).rsplit("/", 1)[-1]
        if attribute in ("name", "bucket"):
            # Names never decide a Lattice request; a stable fake lets other values (environments) resolve.
            return f"{name.lower().replace('_', '-')[:40]}-{self.fake_id(f'{rtype}.{name}')[:8]}"
        raise ShuntError(f"${{{expression}}}: attribute {attribute!r} of {rtype} is not modelled offline (use arn or id)")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, str):
            # Terraform's own escapes: "$${" is a literal "${", "%%{" a literal "%{".
            return _INTERPOLATION.sub(lambda m: self.reference(m.group(1)), value).replace("$${", "${").replace("%%{", "%{")
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, Mapping):
            return {k: self.resolve(v) for k, v in value.items() if k != "//"}
        return value


def lattice_policies(documents: list[Mapping[str, Any]], *, env: Environment = Environment(),
                     service: str | None = None) -> LatticePolicies:
    """Like :func:`telemetry_shunt.core.template.lattice_policies`, for ``cdk.tf.json`` documents.

    ``service`` is the Terraform resource name or the service's ``name`` (needed only if there are several).
    """
    services: dict[str, tuple[TerraformResolver, Mapping[str, Any]]] = {}
    networks: list[str] = []
    policies: dict[str, dict[str, Any]] = {}
    associations: list[tuple[str, str]] = []
    for document in documents:
        r = TerraformResolver(document, env)
        for name, props in r.resources.get(SERVICE, {}).items():
            services[name] = (r, props)
        networks.extend(r.arn(SERVICE_NETWORK, name) for name in r.resources.get(SERVICE_NETWORK, {}))
        for name, props in r.resources.get(AUTH_POLICY, {}).items():
            target = str(r.resolve(props["resource_identifier"]))
            raw = r.resolve(props["policy"])
            try:
                policies[_normalise(target)] = json.loads(raw) if isinstance(raw, str) else raw
            except json.JSONDecodeError as exc:
                raise ShuntError(f"auth policy {AUTH_POLICY}.{name} is not JSON after resolving references ({exc.msg})") from None
        for props in r.resources.get(SERVICE_ASSOCIATION, {}).values():
            associations.append((_normalise(str(r.resolve(props["service_identifier"]))),
                                 str(r.resolve(props["service_network_identifier"]))))
    if not services:
        raise ShuntError(f"no {SERVICE} resource in the Terraform configuration(s): pass the concentrator stack's cdk.tf.json")
    name = choose_service({n: props.get("name") for n, (_, props) in services.items()}, service)
    resolver, _ = services[name]
    service_arn = resolver.arn(SERVICE, name)
    sn_arn = next((sn for svc, sn in associations if svc == _normalise(service_arn)), None)
    if sn_arn is not None and not sn_arn.startswith("arn:"):
        sn_arn = next((arn for arn in networks if _normalise(arn) == sn_arn), sn_arn)
    if sn_arn is None and len(networks) == 1:
        sn_arn = networks[0]
    return LatticePolicies(
        service_arn=service_arn,
        service_policy=policies.get(_normalise(service_arn)),
        service_network_arn=sn_arn,
        service_network_policy=policies.get(_normalise(sn_arn)) if sn_arn else None,
        service_logical_id=f"{SERVICE}.{name}",
    )


def routes_of_service(documents: list[Mapping[str, Any]], *, env: Environment = Environment(),
                      service_address: str) -> list[str]:
    """The exact paths the listener rules of ``service_address`` (``aws_vpclattice_service.<name>``) route,
    in priority order."""
    name = service_address.split(".", 1)[-1]
    found: list[tuple[int, str]] = []
    for document in documents:
        r = TerraformResolver(document, env)
        if name not in r.resources.get(SERVICE, {}):
            continue
        service_id = _normalise(r.arn(SERVICE, name))
        for rule_name, props in r.resources.get(LISTENER_RULE, {}).items():
            if _normalise(str(r.resolve(props.get("service_identifier", "")))) != service_id:
                continue
            match = (((props.get("match") or {}).get("http_match") or {}).get("path_match") or {}).get("match") or {}
            if "exact" not in match:
                raise ShuntError(f"listener rule {LISTENER_RULE}.{rule_name} matches path {match!r}, not an exact path; "
                                 "name the routes with --route")
            found.append((int(props.get("priority", 0)), str(r.resolve(match["exact"]))))
    return [path for _, path in sorted(found)]


def _normalise(identifier: str) -> str:
    return identifier.rsplit("/", 1)[-1]


__all__ = ["TerraformResolver", "is_terraform_json", "lattice_policies", "routes_of_service"]
