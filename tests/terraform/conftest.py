"""The Terraform flavour's tests: CDK Terrain runs the provider bindings in Node (an import costs ~13 s warm),
so every module here shares one xdist worker (``make test`` uses ``--dist loadgroup``) and imports them once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cdktn_provider_aws", reason="the terraform extra is not installed")

from telemetry_shunt.core.gateway_ref import GatewayRef  # noqa: E402
from telemetry_shunt.core.routes import Route, default_routes  # noqa: E402
from telemetry_shunt.terraform import (  # noqa: E402
    AppVpcAttachment,
    ConcentratorVpc,
    TelemetryGateway,
    TelemetryServiceNetwork,
)
from telemetry_shunt.terraform import _aws as aws  # noqa: E402

PUSHERS = ["arn:aws:iam::111111111111:role/agent", "222222222222", "o-a1b2c3d4e5"]
ROUTES = [*default_routes(), Route("/ingest/app-a"), Route("/v1/logs_raw", "otel")]
AZS = ["us-east-1a", "us-east-1b"]
REF = GatewayRef(service_arn="arn:aws:vpc-lattice:us-east-1:111111111111:service/svc-0123456789abcdef0",
                 dns_name="telemetry-gateway-0123456789abcdef0.7d67968.vpc-lattice-svcs.us-east-1.on.aws",
                 routes=tuple(ROUTES),
                 service_network_arn="arn:aws:vpc-lattice:us-east-1:111111111111:servicenetwork/sn-0123456789abcdef0")


def tf_app(outdir: Path) -> dict[str, dict[str, Any]]:
    """The flavour's network in two stacks (concentrator, app account), synthesized."""
    app = aws.App(outdir=str(outdir))
    stack = aws.TerraformStack(app, "concentrator")
    aws.AwsProvider(stack, "aws", region="us-east-1")
    aws.LocalBackend(stack, path="terraform.concentrator.tfstate")
    vpc = ConcentratorVpc(stack, "Vpc", availability_zones=AZS, vendor_egress=True, app_vpc_cidrs=["10.0.0.0/16"])
    network = TelemetryServiceNetwork(stack, "Network", pushers=PUSHERS, share_with=["222222222222"])
    gateway = TelemetryGateway(stack, "Gateway", vpc=vpc, service_network=network, routes=ROUTES)
    gateway.add_ref_outputs()
    app_stack = aws.TerraformStack(app, "app")
    aws.AwsProvider(app_stack, "aws", region="us-east-1")
    aws.LocalBackend(app_stack, path="terraform.app.tfstate")
    AppVpcAttachment(app_stack, "Association", vpc_id="vpc-0123456789abcdef0", gateway=REF).grant_push("agent-role")
    AppVpcAttachment(app_stack, "Endpoint", vpc_id="vpc-0fedcba9876543210", gateway=REF.to_json(), mode="endpoint",
                     subnet_ids=["subnet-0a", "subnet-0b"])
    return synth(app)


@pytest.fixture(scope="session")
def tf(tmp_path_factory) -> dict[str, dict[str, Any]]:
    return tf_app(tmp_path_factory.mktemp("tf"))


def synth(app: Any) -> dict[str, dict[str, Any]]:
    """Synthesize a cdktn App; every stack's cdk.tf.json by stack name."""
    app.synth()
    out = Path(app.outdir) / "stacks"
    return {d.name: json.loads((d / "cdk.tf.json").read_text()) for d in sorted(out.iterdir())}


def resources(doc: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return doc.get("resource", {}).get(rtype, {})
