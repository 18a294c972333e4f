#!/usr/bin/env python3
"""The default telemetry-shunt app: synthesizes offline, environment-agnostic, no AWS account needed.

The only place that reads context. Keys (set in cdk.json or with ``cdk synth -c key=value``):

- ``telemetry-shunt:pushers``: role ARNs, 12-digit account ids or an ``o-...`` organization id
- ``telemetry-shunt:share-with``: account ids / OU ARNs / organization ARN to share the service network with
- ``telemetry-shunt:concentrator-cidr``, ``telemetry-shunt:app-vpc-cidr``: VPC ranges (must not overlap)
- ``telemetry-shunt:vendor-egress``: NAT egress from the concentrator (only) for collector images and the
  vendor (cdk.json: true; false leaves the concentrator with no route out)
- ``telemetry-shunt:gateway``: for an app account in another account, the concentrator stack's ``GatewayRef``
  output (one JSON value: gateway ARN, DNS name, routes, service network ARN; default: wired from the
  concentrator stack), so the agents' grant is exactly the gateway's routes
- ``telemetry-shunt:agent-azs``: AZ names of the agent fleet: the kill switch's per-AZ flags and heartbeat
  alarms of the agent-control stack (cdk.json: us-east-1a, us-east-1b; empty or absent leaves the stack out)
- ``telemetry-shunt:alarm-email``: an e-mail address subscribed to the alarm topic (optional; the
  recipient confirms the subscription once)
- ``telemetry-shunt:agent-fleet``: the ``telemetry-shunt:fleet`` tag value the rollout operator may command
  (a literal name, required with ``agent-azs``; cdk.json: demo)
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")

import threading  # noqa: E402

import aws_cdk as cdk  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402


class _Validator(threading.Thread):
    """CDK's built-in CloudFormation template validation, its engine built while Python imports the app.

    aws-cdk-lib validates every synthesized template with a WASM rule engine (``CloudFormationValidatePlugin``)
    whose construction (compiling its rules) is most of a synthesis's cost. Registered on the App explicitly,
    the same plugin with the same default rules replaces the auto-registered instance (aws-cdk-lib:
    "Registering a CloudFormationValidatePlugin explicitly replaces the auto-registered default instance"),
    so the checks are the same; only when its engine is built moves: in Node, while this process imports the
    app's modules, which make no jsii call (tests/stacks/test_app_validator.py), so no two requests overlap.
    """

    def __init__(self) -> None:
        super().__init__(name="cfn-validate-engine", daemon=True)
        self.plugin: cdk.CloudFormationValidatePlugin | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.plugin = cdk.CloudFormationValidatePlugin()
        except BaseException as exc:  # re-raised in the main thread by result()
            self.error = exc

    def result(self) -> cdk.CloudFormationValidatePlugin:
        self.join()
        if self.error is not None:
            raise self.error
        assert self.plugin is not None
        return self.plugin


# Only when run as the app (`cdk synth`): importing app (tests) starts nothing. Off with CDK_VALIDATION=false,
# which also turns the built-in validation off.
_validator = (_Validator() if __name__ == "__main__" and os.environ.get("CDK_VALIDATION") != "false" else None)
if _validator is not None:
    _validator.start()

from telemetry_shunt.constructs.agent_rollout_support import AgentSource  # noqa: E402
from telemetry_shunt.core.routes import Pusher  # noqa: E402
from telemetry_shunt.errors import ShuntError  # noqa: E402
from telemetry_shunt.stacks.agent_control import AgentControlStack  # noqa: E402
from telemetry_shunt.stacks.app_account import AppAccountStack  # noqa: E402
from telemetry_shunt.stacks.concentrator import ConcentratorStack  # noqa: E402


def _list(app: cdk.App, key: str) -> list[str]:
    value = app.node.try_get_context(key)
    if value is None:
        return []
    if isinstance(value, str):  # -c key=a,b or -c key='["a","b"]'
        value = json.loads(value) if value.startswith("[") else [v for v in value.split(",") if v]
    if not isinstance(value, list):
        raise ShuntError(f"context {key} must be a list, got {value!r}")
    return [str(v) for v in value]


def _bool(app: cdk.App, key: str) -> bool:
    value = app.node.try_get_context(key)
    if isinstance(value, str):
        if value.lower() not in ("true", "false"):
            raise ShuntError(f"context {key} must be true or false, got {value!r}")
        return value.lower() == "true"
    return bool(value)


def _agent_fleet(app: cdk.App) -> str:
    value = app.node.try_get_context("telemetry-shunt:agent-fleet")
    if not value:
        raise ShuntError("context telemetry-shunt:agent-fleet is not set: name the fleet (tag value) the "
                         "rollout operator may command, e.g. -c telemetry-shunt:agent-fleet=demo")
    return str(value)


def build(app: cdk.App) -> dict[str, cdk.Stack]:
    pushers = [Pusher.parse(p) for p in _list(app, "telemetry-shunt:pushers")]
    app_cidr = app.node.try_get_context("telemetry-shunt:app-vpc-cidr") or "10.0.0.0/16"
    concentrator = ConcentratorStack(
        app, "TelemetryConcentrator",
        description="telemetry-shunt: concentrator VPC, VPC Lattice service network and push-only gateway",
        pushers=pushers,
        share_with=_list(app, "telemetry-shunt:share-with"),
        vpc_cidr=app.node.try_get_context("telemetry-shunt:concentrator-cidr") or "10.200.0.0/16",
        app_vpc_cidrs=[app_cidr],
        vendor_egress=_bool(app, "telemetry-shunt:vendor-egress"),
        alarm_email=app.node.try_get_context("telemetry-shunt:alarm-email") or None,
    )
    app_account = AppAccountStack(
        app, "TelemetryAppAccount",
        description="telemetry-shunt: app VPC attached to the telemetry service network, agent role",
        gateway=app.node.try_get_context("telemetry-shunt:gateway") or concentrator.gateway_ref,
        vpc_cidr=app_cidr,
    )
    stacks = {"concentrator": concentrator, "app_account": app_account}
    agent_azs = _list(app, "telemetry-shunt:agent-azs")
    if agent_azs:
        stacks["agent_control"] = AgentControlStack(
            app, "TelemetryAgentControl",
            description="telemetry-shunt: kill switch (AppConfig flags) and agent rollout support (SSM documents, "
                        "state table, heartbeat alarms, operator role)",
            availability_zones=agent_azs,
            agent=AgentSource.adot_collector(),
            fleet=_agent_fleet(app),
            alarm_topic=concentrator.alarm_topic.topic,
            # The ADOT configuration pushes to this gateway (its routes, DNS name; the hosts' Region).
            gateway=concentrator.gateway_ref,
        )
    return stacks


def main(context: dict | None = None, validator: _Validator | None = None) -> None:
    """Synthesize; ``context`` is for tests (the CDK CLI passes context through the environment)."""
    # The engine must be built before any other jsii call: the jsii kernel serves one request at a time.
    plugin = validator.result() if validator is not None else None
    app = cdk.App(context=context) if context is not None else cdk.App()
    try:
        build(app)
    except (ShuntError, ValueError) as exc:
        print(f"telemetry-shunt: {exc}", file=sys.stderr)
        sys.exit(1)
    # cdk-nag (AwsSolutions) as a validation plugin: any unacknowledged finding fails synthesis.
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), *([plugin] if plugin is not None else []))
    app.synth()


if __name__ == "__main__":
    main(validator=_validator)
