"""Read auth policies out of a synthesized CloudFormation template, with intrinsics resolved.

Deploy-time values are stood in for by stable, realistic fakes: a service's ARN becomes
``arn:<partition>:vpc-lattice:<region>:<account>:service/svc-<hash of its logical id>``, so the
offline evaluator sees exactly the policy CloudFormation would deploy, in any partition.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from telemetry_shunt.errors import ShuntError

_ARN_PREFIX = {"AWS::VpcLattice::Service": "service/svc-", "AWS::VpcLattice::ServiceNetwork": "servicenetwork/sn-"}


@dataclass(frozen=True)
class Environment:
    partition: str = "aws"
    region: str = "us-east-1"
    account: str = "123456789012"


@dataclass(frozen=True)
class LatticePolicies:
    """The auth policies of one service and the service network it belongs to."""

    service_arn: str
    service_policy: dict[str, Any] | None
    service_network_arn: str | None
    service_network_policy: dict[str, Any] | None
    service_logical_id: str


class Resolver:
    def __init__(self, template: Mapping[str, Any], env: Environment) -> None:
        self.resources: Mapping[str, Any] = template.get("Resources", {})
        self.parameters: Mapping[str, Any] = template.get("Parameters", {})
        self.env = env

    def fake_id(self, logical_id: str) -> str:
        return hashlib.sha256(logical_id.encode()).hexdigest()[:17]

    def arn(self, logical_id: str) -> str:
        rtype = self.resources[logical_id]["Type"]
        prefix = _ARN_PREFIX.get(rtype)
        if prefix is None:
            return f"arn:{self.env.partition}:cloudformation:::{logical_id}"
        return (f"arn:{self.env.partition}:vpc-lattice:{self.env.region}:{self.env.account}:"
                f"{prefix}{self.fake_id(logical_id)}")

    def ref(self, name: str) -> str:
        pseudo = {
            "AWS::Partition": self.env.partition,
            "AWS::Region": self.env.region,
            "AWS::AccountId": self.env.account,
            "AWS::URLSuffix": "amazonaws.com.cn" if self.env.partition == "aws-cn" else "amazonaws.com",
            "AWS::StackName": "stack",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            default = self.parameters[name].get("Default")
            if default is None:
                raise ShuntError(f"template parameter {name} has no default; pass a template synthesized with values")
            return str(default)
        if name in self.resources:
            rtype = self.resources[name]["Type"]
            # Lattice resources' Ref is their ARN; others get a stable physical id.
            return self.arn(name) if rtype in _ARN_PREFIX else f"{name}-{self.fake_id(name)[:8]}"
        raise ShuntError(f"template refers to {name!r}, which is neither a resource nor a parameter")

    def get_att(self, logical_id: str, attribute: str) -> str:
        if logical_id not in self.resources:
            raise ShuntError(f"template's Fn::GetAtt names unknown resource {logical_id!r}")
        if attribute == "Arn":
            return self.arn(logical_id)
        if attribute == "Id":
            prefix = _ARN_PREFIX.get(self.resources[logical_id]["Type"], "x/x-").split("/")[1]
            return f"{prefix}{self.fake_id(logical_id)}"
        return f"{logical_id}.{attribute}"

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, Mapping):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical, attr)
            if key == "Fn::Join":
                sep, parts = arg
                return sep.join(str(self.resolve(p)) for p in self.resolve(parts))
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text)).split(sep)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key.startswith("Fn::"):
                raise ShuntError(f"cannot evaluate {key} offline; synthesize the template without it")
        return {k: self.resolve(v) for k, v in value.items()}

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else arg

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name.startswith("!"):  # ${!Literal} is CloudFormation's escape for a literal ${Literal}
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                logical, attr = name.split(".", 1)
                return self.get_att(logical, attr)
            return self.ref(name)

        return re.sub(r"\$\{([^}]+)\}", repl, text)


def lattice_policies(
    templates: list[Mapping[str, Any]], *, env: Environment = Environment(), service: str | None = None
) -> LatticePolicies:
    """Find the service (``service``: logical id or name, needed only if there are several) and its policies."""
    services: dict[str, tuple[Resolver, Mapping[str, Any]]] = {}
    networks: dict[str, Resolver] = {}
    policies: dict[str, dict[str, Any]] = {}
    associations: list[tuple[str, str]] = []
    for template in templates:
        r = Resolver(template, env)
        for logical_id, res in r.resources.items():
            rtype = res.get("Type")
            props = res.get("Properties", {})
            if rtype == "AWS::VpcLattice::Service":
                services[logical_id] = (r, props)
            elif rtype == "AWS::VpcLattice::ServiceNetwork":
                networks[r.arn(logical_id)] = r
            elif rtype == "AWS::VpcLattice::AuthPolicy":
                target = str(r.resolve(props["ResourceIdentifier"]))
                doc = r.resolve(props["Policy"])
                if isinstance(doc, str):
                    doc = json.loads(doc)
                policies[_normalise(target)] = doc
            elif rtype == "AWS::VpcLattice::ServiceNetworkServiceAssociation":
                associations.append((_normalise(str(r.resolve(props["ServiceIdentifier"]))),
                                     str(r.resolve(props["ServiceNetworkIdentifier"]))))
    if not services:
        raise ShuntError("no AWS::VpcLattice::Service in the template(s): pass the concentrator stack's template")
    logical_id = choose_service({lid: props.get("Name") for lid, (_, props) in services.items()}, service)
    resolver, _ = services[logical_id]
    service_arn = resolver.arn(logical_id)
    sn_arn = next((sn for svc, sn in associations if svc == _normalise(service_arn)), None)
    if sn_arn is not None and not sn_arn.startswith("arn:"):
        # Associated by id: find the network's ARN among the templates' networks.
        sn_arn = next((arn for arn in networks if _normalise(arn) == sn_arn), sn_arn)
    if sn_arn is None and len(networks) == 1:
        sn_arn = next(iter(networks))
    return LatticePolicies(
        service_arn=service_arn,
        service_policy=policies.get(_normalise(service_arn)),
        service_network_arn=sn_arn,
        service_network_policy=policies.get(_normalise(sn_arn)) if sn_arn else None,
        service_logical_id=logical_id,
    )


def choose_service(names: Mapping[str, str | None], service: str | None) -> str:
    """The one service among ``names`` (id -> its name): the only one, or the one ``service`` names by id or name."""
    if service is None:
        if len(names) > 1:
            raise ShuntError(f"several Lattice services ({', '.join(sorted(names))}); choose one with --service")
        return next(iter(names))
    matches = [key for key, name in names.items() if service in (key, name)]
    if not matches:
        raise ShuntError(f"no Lattice service {service!r}; the template(s) hold {', '.join(sorted(names))}")
    return matches[0]


def _normalise(identifier: str) -> str:
    """ARN or id -> the id part (``svc-...``/``sn-...``), so Ref, Arn and Id all compare equal."""
    return identifier.rsplit("/", 1)[-1]


__all__ = ["Environment", "LatticePolicies", "Resolver", "choose_service", "lattice_policies"]
