"""The one value that hands the gateway from the concentrator account to app accounts and hosts.

A :class:`GatewayRef` says where agents push (the Lattice service's ARN and DNS name), what they may push
to (the gateway's routes) and through which service network. The concentrator stack exports it (stack
outputs, and one JSON value for other accounts: :meth:`GatewayRef.to_json`); ``AppVpcAttachment.grant_push``,
the agent configuration and the client docs read it, so nobody copies route lists by hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from telemetry_shunt.core.routes import COLLECTORS, Route, validate_routes
from telemetry_shunt.core.validation import is_token
from telemetry_shunt.errors import ValidationError

# arn:<partition>:vpc-lattice:<region>:<account>:service/svc-<17 hex> (and servicenetwork/sn-...).
_SERVICE_ARN = re.compile(r"arn:(aws|aws-cn|aws-us-gov):vpc-lattice:([a-z]{2}(?:-[a-z]+)+-\d):(\d{12}):service/svc-[0-9a-z]{17}",
                          re.ASCII)
_SERVICE_NETWORK_ARN = re.compile(
    r"arn:(aws|aws-cn|aws-us-gov):vpc-lattice:([a-z]{2}(?:-[a-z]+)+-\d):(\d{12}):servicenetwork/sn-[0-9a-z]{17}", re.ASCII)
# Lattice-generated service DNS names: <name>-<hex>.<hex>.vpc-lattice-svcs.<region>.on.aws
_DNS_NAME = re.compile(r"(?=.{1,253}\Z)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", re.ASCII)

JSON_VERSION = 1


def _check(pattern: re.Pattern[str], value: object, what: str, example: str) -> str:
    if is_token(value):
        return value  # type: ignore[return-value]
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValidationError(f"{what} {value!r} is not valid: expected something like {example!r}")
    return value


@dataclass(frozen=True)
class GatewayRef:
    """Where and what agents may push: the gateway's service ARN and DNS name, routes, service network ARN."""

    service_arn: str
    dns_name: str
    routes: tuple[Route, ...]
    service_network_arn: str

    def __post_init__(self) -> None:
        _check(_SERVICE_ARN, self.service_arn, "gateway service ARN",
               "arn:aws:vpc-lattice:us-east-1:111111111111:service/svc-0123456789abcdef0")
        _check(_DNS_NAME, self.dns_name, "gateway DNS name",
               "telemetry-gateway-0123456789abcdef0.7d67968.vpc-lattice-svcs.us-east-1.on.aws")
        _check(_SERVICE_NETWORK_ARN, self.service_network_arn, "service network ARN",
               "arn:aws:vpc-lattice:us-east-1:111111111111:servicenetwork/sn-0123456789abcdef0")
        if isinstance(self.routes, (str, bytes)) or not isinstance(self.routes, Sequence):
            raise ValidationError(f"gateway routes {self.routes!r} must be a sequence of Route")
        for r in self.routes:
            if not isinstance(r, Route):
                raise ValidationError(f"gateway route {r!r} is not a Route: use Route.vector_http()/Route.otlp_http()")
        object.__setattr__(self, "routes", tuple(validate_routes(self.routes)))

    @property
    def region(self) -> str | None:
        """The gateway's region (None while the ARN is a deploy-time token)."""
        m = None if is_token(self.service_arn) else _SERVICE_ARN.fullmatch(self.service_arn)
        return m.group(2) if m else None

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(r.path for r in self.routes)

    def url(self, path: str) -> str:
        """The HTTPS URL agents POST to for one of the gateway's routes."""
        if path not in self.paths:
            raise ValidationError(f"path {path!r} is not a route of this gateway; routes are {', '.join(self.paths)}")
        return f"https://{self.dns_name}{path}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": JSON_VERSION,
            "serviceArn": self.service_arn,
            "dnsName": self.dns_name,
            "serviceNetworkArn": self.service_network_arn,
            "routes": [{"path": r.path, "collector": r.collector} for r in self.routes],
        }

    def to_json(self) -> str:
        """One compact JSON value, e.g. for a context key or an SSM parameter an app account reads."""
        if any(is_token(v) for v in (self.service_arn, self.dns_name, self.service_network_arn)):
            raise ValidationError("this GatewayRef holds deploy-time tokens; export it with stack outputs "
                                  "(or Fn::Join in a template), not as literal JSON")
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "gateway reference") -> GatewayRef:
        if not isinstance(data, Mapping):
            raise ValidationError(f"{source} must be a JSON object, got {type(data).__name__}")
        expected = {"version", "serviceArn", "dnsName", "serviceNetworkArn", "routes"}
        missing = sorted(expected - set(data))
        extra = sorted(set(data) - expected)
        if missing or extra:
            raise ValidationError(f"{source} has missing keys {missing} / unknown keys {extra}; "
                                  "produce it with GatewayRef.to_json() or the concentrator stack's GatewayRef output")
        if data["version"] != JSON_VERSION:
            raise ValidationError(f"{source} has version {data['version']!r}; this release reads version {JSON_VERSION}")
        routes = data["routes"]
        if not isinstance(routes, list):
            raise ValidationError(f"{source} routes must be a list of {{path, collector}} objects, got {routes!r}")
        parsed: list[Route] = []
        for r in routes:
            if not isinstance(r, Mapping) or set(r) != {"path", "collector"}:
                raise ValidationError(f"{source} route {r!r} must be an object with exactly 'path' and 'collector' "
                                      f"(one of {', '.join(COLLECTORS)})")
            parsed.append(Route(r["path"], r["collector"]))
        return cls(service_arn=data["serviceArn"], dns_name=data["dnsName"], routes=tuple(parsed),
                   service_network_arn=data["serviceNetworkArn"])

    @classmethod
    def from_json(cls, text: str, *, source: str = "gateway reference") -> GatewayRef:
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValidationError(f"{source} is not valid JSON ({exc}); produce it with GatewayRef.to_json()") from None
        return cls.from_dict(data, source=source)
