"""The telemetry gateway: a VPC Lattice service with one rule per route and a push-only auth policy."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jsii
from aws_cdk import Annotations, Aws, CfnOutput, Duration, IStableAnyProducer, IStableStringProducer, Lazy, Stack, Token
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_vpclattice as lattice
from constructs import Construct, IValidation

from telemetry_shunt.constructs._gateway_metrics import LatticeServiceMetrics
from telemetry_shunt.constructs.service_network import (
    AccessLogDestination,
    ITelemetryServiceNetwork,
    access_log_destination_arn,
    parse_pushers,
)
from telemetry_shunt.core import contract
from telemetry_shunt.core.contract import DEFAULT_IDLE_TIMEOUT_SECONDS, LATTICE_IDLE_TIMEOUT_RANGE_SECONDS
from telemetry_shunt.core.gateway_ref import GatewayRef
from telemetry_shunt.core.policy import (
    WORST_CASE_PARTITION,
    WORST_CASE_SERVICE_ARN,
    WORST_CASE_SERVICE_NETWORK_ARN,
    check_policy_size,
    service_auth_policy,
)
from telemetry_shunt.core.routes import COLLECTORS, Pusher, Route, check_rule_priorities, validate_routes
from telemetry_shunt.core.validation import lattice_name
from telemetry_shunt.errors import ValidationError


class TelemetryGateway(LatticeServiceMetrics, Construct):
    """The Lattice service agents push to.

    - An HTTPS listener (port 443, Lattice-managed certificate) whose default action is a fixed 404.
    - One rule per :class:`Route`: ``POST <path>`` (exact, case-sensitive) forwarded to the route's
      collector target group. Add routes in the constructor or with :meth:`add_route` (at most 10).
    - Target groups (type ``IP``, one per collector kind in use) created in ``vpc`` unless passed in
      ``target_groups``; their health checks use the collectors' health ports, which must bind 0.0.0.0.
    - The push-only auth policy: the pushers may ``POST`` to routed paths, through ``service_network``
      only; every other method and anonymous callers are explicitly denied. Pushers are declared once, on
      the service network: the gateway takes them from there (``pushers=`` is needed only for an imported
      network that was not given them, and must otherwise name exactly the network's).
    - Associated with ``service_network``; access logs to ``access_logs`` (an S3 bucket or log group),
      default the service network's destination (its bucket, or what ``from_service_network_arn`` was given).
      Without either the gateway has no access logs and says so with a warning.
    - :attr:`gateway_ref` is the :class:`GatewayRef` app accounts need; :meth:`add_ref_outputs` exports it.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        service_network: ITelemetryServiceNetwork,
        pushers: Sequence[Pusher | str] | None = None,
        routes: Sequence[Route] = (),
        name: str = "telemetry-gateway",
        target_groups: Mapping[str, lattice.CfnTargetGroup] | None = None,
        idle_timeout: Duration | None = None,  # None: DEFAULT_IDLE_TIMEOUT_SECONDS (no jsii call at import)
        access_logs: AccessLogDestination | None = None,
    ) -> None:
        super().__init__(scope, id)
        idle_timeout = Duration.seconds(DEFAULT_IDLE_TIMEOUT_SECONDS) if idle_timeout is None else idle_timeout
        self.pushers = _gateway_pushers(pushers, service_network)
        lattice_name("service", name)
        timeout = idle_timeout.to_seconds()
        lo, hi = LATTICE_IDLE_TIMEOUT_RANGE_SECONDS
        if not Token.is_unresolved(timeout) and not (lo <= timeout <= hi):
            raise ValidationError(f"idle_timeout {timeout:g} s is outside VPC Lattice's {lo}-{hi} s range")
        for kind in target_groups or {}:
            if kind not in COLLECTORS:
                raise ValidationError(f"target_groups key {kind!r} is not a collector; use one of {', '.join(COLLECTORS)}")
        self._vpc = vpc
        self._routes: list[Route] = []
        self.service_network = service_network
        self.target_groups: dict[str, lattice.CfnTargetGroup] = dict(target_groups or {})
        self.rules: dict[str, lattice.CfnRule] = {}

        self.resource = lattice.CfnService(
            self, "Resource", name=name, auth_type="AWS_IAM", idle_timeout_seconds=int(timeout)
        )
        self.listener = lattice.CfnListener(
            self, "Listener",
            service_identifier=self.resource.attr_id,
            protocol="HTTPS",
            port=443,
            default_action=lattice.CfnListener.DefaultActionProperty(
                fixed_response=lattice.CfnListener.FixedResponseProperty(status_code=404)
            ),
        )
        self.association = lattice.CfnServiceNetworkServiceAssociation(
            self, "Association",
            service_identifier=self.resource.attr_id,
            service_network_identifier=service_network.service_network_arn,
        )
        self.auth_policy = lattice.CfnAuthPolicy(
            self, "AuthPolicy",
            resource_identifier=self.resource.attr_arn,
            policy=Lazy.any(_Producer(self.policy_document)),
        )
        destination = access_logs if access_logs is not None else getattr(service_network, "access_log_destination", None)
        self.access_logs: lattice.CfnAccessLogSubscription | None = None
        if destination is not None:
            self.access_logs = lattice.CfnAccessLogSubscription(
                self, "AccessLogs", resource_identifier=self.resource.attr_arn,
                destination_arn=access_log_destination_arn(self, destination),
            )
        else:
            Annotations.of(self).add_warning_v2(
                "telemetry-shunt:gateway-no-access-logs",
                "this gateway has no access logs (its service network is imported and names no destination): pass "
                "access_logs=<s3 bucket or log group>, or TelemetryServiceNetwork.from_service_network_arn(..., "
                "access_logs=...)",
            )
        for route in routes:
            self.add_route(route)
        self.node.add_validation(_HasRoutes(self))

    # --- public API -------------------------------------------------------------------------
    @property
    def service_arn(self) -> str:
        return self.resource.attr_arn

    @property
    def service_id(self) -> str:
        return self.resource.attr_id

    @property
    def endpoint(self) -> str:
        """The DNS name agents push to (``https://<endpoint>/metrics``)."""
        return self.resource.attr_dns_entry_domain_name

    @property
    def routes(self) -> list[Route]:
        return list(self._routes)

    @property
    def gateway_ref(self) -> GatewayRef:
        """What app accounts and hosts need (deploy-time tokens inside this stack; routes as added so far)."""
        return GatewayRef(service_arn=self.service_arn, dns_name=self.endpoint, routes=tuple(self._routes),
                          service_network_arn=self.service_network.service_network_arn)

    def add_ref_outputs(self, scope: Construct | None = None, *, prefix: str = "") -> dict[str, CfnOutput]:
        """Export :attr:`gateway_ref` as stack outputs of ``scope``'s stack (default: this gateway's).

        One output per field (``GatewayArn``, ``GatewayEndpoint``, ``ServiceNetworkArn``, ``GatewayRoutes``)
        and ``GatewayRef``: the whole value as one JSON string (``Fn::Join`` at deploy time) that another
        account passes as one context value and reads with ``GatewayRef.from_json``. Routes are read at
        synth time, so routes added after this call are exported too.
        """
        stack = Stack.of(scope or self)
        target = scope or stack
        ref_json = Lazy.string(_StringProducer(lambda: stack.to_json_string(self.gateway_ref.to_dict())))
        routes = Lazy.string(_StringProducer(lambda: ",".join(self.gateway_ref.paths)))
        values = {
            "ServiceNetworkArn": (self.service_network.service_network_arn,
                                  "The service network app VPCs attach to (also inside the GatewayRef output)"),
            "GatewayArn": (self.service_arn, "The gateway (Lattice service) agents push to (also inside the GatewayRef output)"),
            "GatewayEndpoint": (self.endpoint, "Agents push to https://<this>/metrics"),
            "GatewayRoutes": (routes, "The gateway's routes (POST only), comma-separated"),
            "GatewayRef": (ref_json, "GatewayRef JSON: pass to app accounts as context telemetry-shunt:gateway "
                                     "(GatewayRef.from_json); grant_push then grants exactly these routes"),
        }
        return {name: CfnOutput(target, f"{prefix}{name}", value=value, description=description)
                for name, (value, description) in values.items()}

    @staticmethod
    def from_gateway_ref(scope: Construct, id: str, ref: GatewayRef | str) -> ImportedGateway:
        """A gateway defined elsewhere, from its :class:`GatewayRef` (or that value's JSON)."""
        return ImportedGateway(scope, id, ref=ref)

    def add_route(self, route: Route) -> lattice.CfnRule:
        """Forward ``POST route.path`` to its collector's target group and allow it in the auth policy."""
        check_rule_priorities(validate_routes([*self._routes, route]))
        self._routes.append(route)
        try:
            self.policy_document()  # fail here, naming the size, rather than deep inside synthesis
        except ValidationError:
            self._routes.pop()
            raise
        target_group = self._target_group(route.collector)
        rule = lattice.CfnRule(
            self, rule_construct_id(route),
            service_identifier=self.resource.attr_id,
            listener_identifier=self.listener.attr_id,
            # Derived from the route alone, like the id: adding or removing a route never touches the others.
            priority=route.rule_priority,
            match=lattice.CfnRule.MatchProperty(http_match=lattice.CfnRule.HttpMatchProperty(
                method="POST",
                path_match=lattice.CfnRule.PathMatchProperty(
                    match=lattice.CfnRule.PathMatchTypeProperty(exact=route.path), case_sensitive=True
                ),
            )),
            action=lattice.CfnRule.ActionProperty(forward=lattice.CfnRule.ForwardProperty(target_groups=[
                lattice.CfnRule.WeightedTargetGroupProperty(target_group_identifier=target_group.attr_id, weight=100)
            ])),
        )
        self.rules[route.path] = rule
        return rule

    def policy_document(self) -> dict:
        """The service auth policy for the routes added so far (validated against the 10 KB limit)."""
        if not self._routes:
            # Synthesis then fails on the "no routes" validation, which says what to do.
            return {"Version": "2012-10-17", "Statement": []}
        sizing = service_auth_policy(
            service_arn=WORST_CASE_SERVICE_ARN, routes=self._routes, pushers=self.pushers,
            partition=WORST_CASE_PARTITION, service_network_arn=WORST_CASE_SERVICE_NETWORK_ARN,
        )
        check_policy_size(sizing, what="gateway service")
        return service_auth_policy(
            service_arn=self.resource.attr_arn,
            routes=self._routes,
            pushers=self.pushers,
            partition=Aws.PARTITION,
            service_network_arn=self.service_network.service_network_arn,
        )

    # --- internals --------------------------------------------------------------------------
    def _target_group(self, collector: str) -> lattice.CfnTargetGroup:
        if collector not in self.target_groups:
            ports = contract.COLLECTOR_PORTS[collector]
            self.target_groups[collector] = lattice.CfnTargetGroup(
                self, f"{collector.capitalize()}Targets",
                type="IP",
                config=lattice.CfnTargetGroup.TargetGroupConfigProperty(
                    port=ports.traffic,
                    protocol="HTTP",
                    protocol_version="HTTP1",
                    ip_address_type="IPV4",
                    vpc_identifier=self._vpc.vpc_id,
                    health_check=lattice.CfnTargetGroup.HealthCheckConfigProperty(
                        enabled=True,
                        protocol="HTTP",
                        protocol_version="HTTP1",
                        port=ports.health,
                        path=ports.health_path,
                        health_check_interval_seconds=10,
                        health_check_timeout_seconds=5,
                        healthy_threshold_count=2,
                        unhealthy_threshold_count=2,
                        matcher=lattice.CfnTargetGroup.MatcherProperty(http_code="200"),
                    ),
                ),
            )
        return self.target_groups[collector]


class ImportedGateway(Construct):
    """A gateway defined in another stack or account: what attachments, grants and agents need of it."""

    def __init__(self, scope: Construct, id: str, *, ref: GatewayRef | str) -> None:
        super().__init__(scope, id)
        if isinstance(ref, str):
            ref = GatewayRef.from_json(ref, source=f"gateway reference for {self.node.path}")
        if not isinstance(ref, GatewayRef):
            raise ValidationError(
                f"gateway reference {ref!r} is not a GatewayRef: pass GatewayRef.from_json(<the concentrator "
                "stack's GatewayRef output>) or that JSON string"
            )
        self.gateway_ref = ref

    @property
    def service_arn(self) -> str:
        return self.gateway_ref.service_arn

    @property
    def endpoint(self) -> str:
        return self.gateway_ref.dns_name

    @property
    def routes(self) -> list[Route]:
        return list(self.gateway_ref.routes)


def _gateway_pushers(pushers: Sequence[Pusher | str] | None, service_network: ITelemetryServiceNetwork) -> list[Pusher]:
    """Pushers are declared once, on the service network; a gateway's own list must agree with it."""
    network: list[Pusher] | None = getattr(service_network, "pushers", None)
    if pushers is None:
        if network is None:
            raise ValidationError(
                "TelemetryGateway cannot see who may push: its service network is imported without pushers; pass "
                "TelemetryServiceNetwork.from_service_network_arn(..., pushers=[...]) (or pushers=[...] here) with "
                "the principals the network's auth policy admits"
            )
        return list(network)
    mine = parse_pushers(pushers)
    if network is not None and {str(p) for p in mine} != {str(p) for p in network}:
        only_gateway = sorted({str(p) for p in mine} - {str(p) for p in network})
        only_network = sorted({str(p) for p in network} - {str(p) for p in mine})
        raise ValidationError(
            f"TelemetryGateway pushers differ from its service network's: only on the gateway {only_gateway} "
            f"(the network's auth policy would deny them at runtime), only on the network {only_network}; "
            "declare pushers once, on the service network, and drop pushers= from the gateway"
        )
    return mine


@jsii.implements(IStableStringProducer)
class _StringProducer:
    def __init__(self, fn: Callable[[], str]) -> None:
        self._fn = fn

    def produce(self) -> str:
        return self._fn()


def rule_construct_id(route: Route) -> str:
    """A route's rule construct id, from its path ('/' becomes ':', which paths never contain): part of the
    public contract, since the logical id follows it."""
    return "Rule" + route.path.replace("/", ":")


@jsii.implements(IStableAnyProducer)
class _Producer:
    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn

    def produce(self) -> Any:
        return self._fn()


@jsii.implements(IValidation)
class _HasRoutes:
    def __init__(self, gateway: TelemetryGateway) -> None:
        self._gateway = gateway

    def validate(self) -> list[str]:
        if not self._gateway.routes:
            return ["TelemetryGateway has no routes: pass routes=[...] or call add_route(Route.vector_http('/metrics'))"]
        return []
