#!/usr/bin/env python3
"""The default telemetry-shunt app, Terraform flavour (CDK Terrain): the same three stacks as ``app.py``.

Reads the same context keys from ``cdk.json`` (override one with ``-c key=value``), plus one the Terraform
flavour needs because Terraform has no synth-time AZ lookup:

- ``telemetry-shunt:concentrator-azs``: AZ names for the concentrator's subnets (default: ``agent-azs``)

Writes ``cdktf.out/stacks/<stack>/cdk.tf.json``; each stack has a local backend whose state file sits in the
project root (``terraform.<stack>.tfstate``, a path relative to the stack's directory, so the output holds no
absolute path). Use a remote backend in production: see docs/terraform.md.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")

from telemetry_shunt.core import hostside  # noqa: E402
from telemetry_shunt.core.routes import Pusher, default_routes  # noqa: E402
from telemetry_shunt.errors import ShuntError  # noqa: E402

ROOT = Path(__file__).resolve().parent
STACKS = ("TelemetryConcentrator", "TelemetryAppAccount", "TelemetryAgentControl")
OUTDIR = "cdktf.out"
STATE_FROM_STACK_DIR = "../../../"


def load_context(overrides: list[str]) -> dict[str, Any]:
    """cdk.json's context with ``key=value`` overrides (a value starting with '[' is JSON, else a,b,c or a scalar)."""
    context = dict(json.loads((ROOT / "cdk.json").read_text())["context"])
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ShuntError(f"context override {item!r} must be key=value, e.g. -c telemetry-shunt:agent-fleet=demo")
        context[key] = json.loads(value) if value.startswith("[") else value
    return context


def _list(context: dict[str, Any], key: str) -> list[str]:
    value = context.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        value = [v for v in value.split(",") if v]
    if not isinstance(value, list):
        raise ShuntError(f"context {key} must be a list, got {value!r}")
    return [str(v) for v in value]


def _bool(context: dict[str, Any], key: str) -> bool:
    value = context.get(key)
    if isinstance(value, str):
        if value.lower() not in ("true", "false"):
            raise ShuntError(f"context {key} must be true or false, got {value!r}")
        return value.lower() == "true"
    return bool(value)


def build(app: Any, context: dict[str, Any]) -> dict[str, Any]:
    from telemetry_shunt.terraform import (
        AgentRolloutSupport,
        AppVpcAttachment,
        BufferFleet,
        ConcentratorVpc,
        KillSwitch,
        TelemetryGateway,
        TelemetryServiceNetwork,
    )
    from telemetry_shunt.terraform import _aws as aws
    from telemetry_shunt.terraform.network import app_vpc

    def stack(name: str) -> Any:
        s = aws.TerraformStack(app, name)
        aws.AwsProvider(s, "aws")  # the Region comes from the environment (AWS_REGION) or the provider block
        # Relative to cdktf.out/stacks/<stack>/, where terraform runs: every stack's state sits in the project
        # root, so the cross-stack remote-state lookups (same path) find it from any stack's directory.
        aws.LocalBackend(s, path=f"{STATE_FROM_STACK_DIR}terraform.{name}.tfstate")
        return s

    pushers = [Pusher.parse(p) for p in _list(context, "telemetry-shunt:pushers")]
    agent_azs = _list(context, "telemetry-shunt:agent-azs")
    concentrator_azs = _list(context, "telemetry-shunt:concentrator-azs") or agent_azs
    app_cidr = context.get("telemetry-shunt:app-vpc-cidr") or "10.0.0.0/16"
    concentrator = stack("TelemetryConcentrator")
    vpc = ConcentratorVpc(concentrator, "Vpc", availability_zones=concentrator_azs,
                          cidr=context.get("telemetry-shunt:concentrator-cidr") or "10.200.0.0/16",
                          vendor_egress=_bool(context, "telemetry-shunt:vendor-egress"), app_vpc_cidrs=[app_cidr])
    network = TelemetryServiceNetwork(concentrator, "ServiceNetwork", pushers=pushers,
                                      share_with=_list(context, "telemetry-shunt:share-with"))
    gateway = TelemetryGateway(concentrator, "Gateway", vpc=vpc, service_network=network, routes=default_routes())
    gateway.add_ref_outputs()
    # One alarm topic for the telemetry path (subscribe your on-call to it), as the CDK default app.
    alarm_topic = aws.SnsTopic(concentrator, "AlarmTopic", name_prefix="telemetry-shunt-alarms-",
                               kms_master_key_id="alias/aws/sns")
    aws.TerraformOutput(concentrator, "alarm_topic_arn", value=alarm_topic.arn)
    # Archive-only by default, as ConcentratorStack: a vendor sink is added in your own app.
    BufferFleet(concentrator, "BufferFleet", vpc=vpc, gateway=gateway, fleet_name="telemetry",
                access_logs_bucket_id=network.server_access_log_bucket.id, alarms=True, alarm_topic_arn=alarm_topic.arn)

    app_account = stack("TelemetryAppAccount")
    vpc_id, _ = app_vpc(app_account, "AppVpc", cidr=app_cidr, availability_zones=concentrator_azs)
    # Another account passes the concentrator's gateway_ref output as context telemetry-shunt:gateway.
    attachment = AppVpcAttachment(app_account, "Attachment", vpc_id=vpc_id,
                                  gateway=context.get("telemetry-shunt:gateway") or gateway.gateway_ref)
    agent_role = aws.IamRole(app_account, "AgentRole", name_prefix="telemetry-agent-", assume_role_policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "ec2.amazonaws.com"}}]}))
    attachment.grant_push(agent_role.name)
    stacks = {"concentrator": concentrator, "app_account": app_account}
    if agent_azs:
        fleet = context.get("telemetry-shunt:agent-fleet")
        if not fleet:
            raise ShuntError("context telemetry-shunt:agent-fleet is not set: name the fleet (tag value) the "
                             "rollout operator may command, e.g. -c telemetry-shunt:agent-fleet=demo")
        control = stack("TelemetryAgentControl")
        kill_switch = KillSwitch(control, "KillSwitch", availability_zones=agent_azs)
        agent = hostside.DistributorPackage(name="AWSDistroOTel-Collector", service="aws-otel-collector")
        AgentRolloutSupport(control, "AgentRollout", kill_switch=kill_switch, fleet=str(fleet), gateway=gateway.gateway_ref,
                            agent=agent, alarm_topic_arn=alarm_topic.arn)
        aws.TerraformOutput(control, "agent_package_name", value=agent.name)  # as the CDK stack's AgentPackageName
        stacks["agent_control"] = control
    return stacks


def main(argv: list[str] | None = None, *, outdir: str | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    overrides = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-c", "--context")]
    try:
        context = load_context(overrides)
        from telemetry_shunt.terraform import _aws as aws
        app = aws.App(outdir=outdir or str(ROOT / OUTDIR))
        build(app, context)
    except ModuleNotFoundError as exc:
        print(f"telemetry-shunt: the Terraform flavour needs {exc.name!r}: pip install 'telemetry-shunt[terraform]'",
              file=sys.stderr)
        sys.exit(1)
    except (ShuntError, ValueError) as exc:
        print(f"telemetry-shunt: {exc}", file=sys.stderr)
        sys.exit(1)
    app.synth()


if __name__ == "__main__":
    main()
