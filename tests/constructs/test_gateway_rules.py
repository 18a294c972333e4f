"""Listener rules are keyed by their route: removing or adding a route never replaces or renumbers the others."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2

from telemetry_shunt.constructs.gateway import TelemetryGateway
from telemetry_shunt.constructs.service_network import TelemetryServiceNetwork
from telemetry_shunt.core.gateway_ref import GatewayRef
from telemetry_shunt.core.routes import RULE_PRIORITY_RANGE, Pusher, Route, check_rule_priorities, path_priority
from telemetry_shunt.errors import ValidationError
from tests.cdk_support import new_app, resources

PUSHERS = [Pusher.account("222222222222")]
SN_ARN = "arn:aws:vpc-lattice:us-east-1:999999999999:servicenetwork/sn-0123456789abcdef0"
ROUTES = [Route("/metrics"), Route("/v1/traces", "otel"), Route("/logs/app"), Route("/v1/logs", "otel"), Route("/audit")]


def _rules(tmp_path, routes) -> dict[str, tuple[str, int]]:
    """{path: (logical id, priority)} of the synthesized listener rules."""
    stack = cdk.Stack(new_app(tmp_path), "C", env=cdk.Environment(account="999999999999", region="us-east-1"))
    vpc = ec2.Vpc.from_vpc_attributes(stack, "V", vpc_id="vpc-12345678", availability_zones=["us-east-1a", "us-east-1b"])
    sn = TelemetryServiceNetwork.from_service_network_arn(stack, "SN", SN_ARN)
    TelemetryGateway(stack, "GW", vpc=vpc, service_network=sn, pushers=PUSHERS, routes=routes)
    template = cdk.assertions.Template.from_stack(stack).to_json()
    return {
        r["Properties"]["Match"]["HttpMatch"]["PathMatch"]["Match"]["Exact"]: (logical_id, r["Properties"]["Priority"])
        for logical_id, r in resources(template, "AWS::VpcLattice::Rule").items()
    }


def test_removing_a_middle_route_keeps_every_other_rule_id_and_priority(tmp_path):
    before = _rules(tmp_path / "a", ROUTES)
    after = _rules(tmp_path / "b", [r for r in ROUTES if r.path != "/logs/app"])
    assert set(before) == {r.path for r in ROUTES} and "/logs/app" not in after
    assert after == {path: rule for path, rule in before.items() if path != "/logs/app"}


def test_adding_a_route_first_or_reordering_keeps_the_others(tmp_path):
    before = _rules(tmp_path / "a", ROUTES)
    after = _rules(tmp_path / "b", [Route("/first"), *reversed(ROUTES)])
    assert {p: after[p] for p in before} == before


def test_priorities_are_the_path_hash_unless_pinned_and_unique_per_listener(tmp_path):
    rules = _rules(tmp_path, [*ROUTES, Route("/pinned", priority=7)])
    assert {p: prio for p, (_, prio) in rules.items()} == {
        **{r.path: path_priority(r.path) for r in ROUTES}, "/pinned": 7}
    assert len({prio for _, prio in rules.values()}) == len(rules)
    # Independent of this process: a fixed path hashes to the same number everywhere (SHA-256, not hash()).
    assert path_priority("/metrics") == 99 and path_priority("/v1/logs") == 42


def _colliding_pair() -> tuple[str, str]:
    seen: dict[int, str] = {}
    for i in range(1000):
        path = f"/r{i}"
        if (p := path_priority(path)) in seen:
            return seen[p], path
        seen[p] = path
    raise AssertionError("no collision among 1000 paths into 100 slots")


def test_a_priority_collision_is_refused_naming_both_paths_and_a_free_number():
    first, second = _colliding_pair()
    with pytest.raises(ValidationError, match=rf"routes '{first}' and '{second}' both have listener rule priority "
                                              rf"{path_priority(first)}.*priority=\d+\) \(\d+ is free\)"):
        check_rule_priorities([Route(first), Route(second)])
    lo, hi = RULE_PRIORITY_RANGE
    free = next(p for p in range(lo, hi + 1) if p != path_priority(first))
    assert [r.rule_priority for r in check_rule_priorities([Route(first), Route(second, priority=free)])] == [
        path_priority(first), free]


def test_a_gateway_with_a_pinned_priority_hands_its_routes_over_as_paths(tmp_path):
    # Priorities are the listener's business: a GatewayRef (paths and collectors) of such a gateway round-trips.
    first, second = _colliding_pair()
    ref = GatewayRef(
        service_arn="arn:aws:vpc-lattice:us-east-1:999999999999:service/svc-0123456789abcdef0",
        dns_name="telemetry-gateway-0123456789abcdef.7d67968.vpc-lattice-svcs.us-east-1.on.aws",
        service_network_arn=SN_ARN, routes=(Route(first), Route(second, priority=1)),
    )
    assert [r.path for r in GatewayRef.from_json(ref.to_json()).routes] == [first, second]


@pytest.mark.parametrize("priority", [0, 101, True, 5.0, "5"])
def test_bad_explicit_priorities_are_refused(priority):
    with pytest.raises(ValidationError, match=rf"route '/x' priority {priority!r} must be an integer from 1 to 100"):
        Route("/x", priority=priority)
