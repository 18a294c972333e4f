"""What the gateway routes (paths to collectors) and who may push (pushers)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from telemetry_shunt.core import contract
from telemetry_shunt.core.validation import (
    account_id,
    duplicates,
    is_token,
    organization_id,
    role_arn,
)
from telemetry_shunt.errors import ValidationError

# A listener holds at most 10 rules (VPC Lattice quota); every route is one rule.
MAX_RULES_PER_LISTENER = 10
# A listener rule's priority: 1-100, unique per listener (AWS::VpcLattice::Rule Priority).
RULE_PRIORITY_RANGE = (1, 100)
_PATH = re.compile(r"/[A-Za-z0-9._~\-/]*", re.ASCII)
COLLECTORS = contract.COLLECTOR_KINDS


@dataclass(frozen=True)
class Route:
    """``POST <path>`` forwarded to a collector (``"vector"`` or ``"otel"``).

    Paths match exactly (case-sensitive); use :meth:`otlp_http` and :meth:`vector_http` rather than
    building routes by hand.

    ``priority`` (1-100) is the listener rule's priority. By default it is derived from the path alone
    (:attr:`rule_priority`), so adding or removing another route never renumbers this one; set it only
    when two routes of one gateway derive the same number (the gateway then says which is free).
    """

    path: str
    collector: str = "vector"
    priority: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise ValidationError(f"route path must start with '/', got {self.path!r}")
        if not _PATH.fullmatch(self.path) or "//" in self.path:
            raise ValidationError(
                f"route path {self.path!r} may contain only letters, digits and . _ ~ - / (no wildcards, "
                "no query string, no '//'): routes are exact paths"
            )
        if len(self.path) > 200:
            raise ValidationError(f"route path {self.path[:40]!r}... is {len(self.path)} characters; keep it under 200")
        if not isinstance(self.collector, str) or self.collector not in COLLECTORS:
            raise ValidationError(f"route {self.path!r} names collector {self.collector!r}; use one of {', '.join(COLLECTORS)}")
        lo, hi = RULE_PRIORITY_RANGE
        if self.priority is not None and (
            isinstance(self.priority, bool) or not isinstance(self.priority, int) or not lo <= self.priority <= hi
        ):
            raise ValidationError(f"route {self.path!r} priority {self.priority!r} must be an integer from {lo} to {hi}")

    @property
    def rule_priority(self) -> int:
        """The listener rule priority: ``priority`` if set, else a stable hash of the path into 1-100."""
        if self.priority is not None:
            return self.priority
        return path_priority(self.path)

    @property
    def method(self) -> str:
        return "POST"

    @staticmethod
    def vector_http(path: str = contract.METRICS_PATH) -> Route:
        """Newline-delimited JSON (the in-app client's format) into the Vector fleet."""
        return Route(path, "vector")

    @staticmethod
    def otlp_http(signals: Sequence[str] = ("traces", "metrics", "logs")) -> list[Route]:
        """OTLP/HTTP: one route per signal, ``/v1/<signal>``, into the OpenTelemetry collector fleet."""
        allowed = ("traces", "metrics", "logs")
        for s in signals:
            if s not in allowed:
                raise ValidationError(f"OTLP signal {s!r} is not one of {', '.join(allowed)}")
        return [Route(f"/v1/{s}", "otel") for s in signals]


def path_priority(path: str) -> int:
    """A path's derived rule priority: SHA-256 of the path into 1-100 (the same on every machine and run)."""
    lo, hi = RULE_PRIORITY_RANGE
    return lo + int.from_bytes(hashlib.sha256(path.encode("utf-8")).digest()[:8], "big") % (hi - lo + 1)


def default_routes() -> list[Route]:
    """``POST /metrics`` to Vector and ``POST /v1/{traces,metrics,logs}`` to the OTel collector."""
    return [Route.vector_http(), *Route.otlp_http()]


def validate_routes(routes: Sequence[Route]) -> list[Route]:
    routes = list(routes)
    if not routes:
        raise ValidationError("no routes: add at least one, e.g. Route.vector_http('/metrics')")
    dup = duplicates(r.path for r in routes)
    if dup:
        raise ValidationError(f"duplicate route path(s) {dup!r}: each path can be routed once")
    if len(routes) > MAX_RULES_PER_LISTENER:
        raise ValidationError(
            f"{len(routes)} routes need {len(routes)} listener rules, but a VPC Lattice listener allows "
            f"{MAX_RULES_PER_LISTENER}: merge paths or drop some"
        )
    return routes


def check_rule_priorities(routes: Sequence[Route]) -> list[Route]:
    """Refuse two routes of one listener with the same rule priority, naming a free one to pin.

    Separate from :func:`validate_routes`: priorities matter to the listener only, and a route list read
    back from a :class:`GatewayRef` carries paths and collectors, not pinned priorities.
    """
    routes = list(routes)
    by_priority: dict[int, Route] = {}
    for r in routes:
        other = by_priority.get(r.rule_priority)
        if other is not None:
            lo, hi = RULE_PRIORITY_RANGE
            taken = {x.rule_priority for x in routes}
            free = next(p for p in range(lo, hi + 1) if p not in taken)
            raise ValidationError(
                f"routes {other.path!r} and {r.path!r} both have listener rule priority {r.rule_priority}: "
                f"give one an explicit priority that stays fixed, e.g. Route({r.path!r}, {r.collector!r}, "
                f"priority={free}) ({free} is free)"
            )
        by_priority[r.rule_priority] = r
    return routes


_PUSHER_KINDS = {"role": role_arn, "account": account_id, "organization": organization_id}


@dataclass(frozen=True)
class Pusher:
    """A principal allowed to push telemetry: a role, every principal of an account, or of an organization."""

    kind: str  # "role" | "account" | "organization"
    value: str

    def __post_init__(self) -> None:
        # Validated here, not only in the helpers: Pusher("account", "not-an-account") must not reach a policy.
        if isinstance(self.value, str) and "*" in self.value:
            raise ValidationError(f"pusher {self.value!r} is a wildcard: push-only policies name their principals")
        check = _PUSHER_KINDS.get(self.kind) if isinstance(self.kind, str) else None
        if check is None:
            raise ValidationError(
                f"pusher kind {self.kind!r} is not one of {', '.join(_PUSHER_KINDS)}: "
                "use Pusher.role(arn), Pusher.account(id) or Pusher.organization(org_id)"
            )
        check(self.value)

    @staticmethod
    def role(arn: str) -> Pusher:
        return Pusher("role", arn)

    @staticmethod
    def account(account: str) -> Pusher:
        return Pusher("account", account)

    @staticmethod
    def organization(org_id: str) -> Pusher:
        return Pusher("organization", org_id)

    @staticmethod
    def parse(text: str) -> Pusher:
        """From configuration: a role ARN, a 12-digit account id, or an ``o-...`` organization id."""
        text = text.strip()
        if text in ("*", "") or "*" in text:
            raise ValidationError(f"pusher {text!r} is a wildcard: name role ARNs, account ids or an organization id")
        if text.startswith("arn:"):
            return Pusher.role(text)
        if text.startswith("o-"):
            return Pusher.organization(text)
        return Pusher.account(text)

    @property
    def account_id(self) -> str | None:
        """The account the pusher lives in (None for an organization or a token)."""
        if self.kind == "account":
            return self.value
        if self.kind == "role" and not is_token(self.value):
            return self.value.split(":")[4]
        return None

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def validate_pushers(pushers: Sequence[Pusher]) -> list[Pusher]:
    pushers = list(pushers)
    if not pushers:
        raise ValidationError(
            "no pushers: name who may push telemetry, e.g. Pusher.role('arn:aws:iam::111111111111:role/agent'), "
            "Pusher.account('111111111111') or Pusher.organization('o-a1b2c3d4e5')"
        )
    for p in pushers:
        if not isinstance(p, Pusher):
            raise ValidationError(f"pusher {p!r} is not a Pusher: use Pusher.role/account/organization")
        if "*" in p.value:
            raise ValidationError(f"pusher {p.value!r} is a wildcard: push-only policies name their principals")
    dup = duplicates(str(p) for p in pushers)
    if dup:
        raise ValidationError(f"duplicate pusher(s) {dup!r}")
    return pushers
