"""``shunt policy check``: would this request be allowed by the deployed auth policies, and why?

``shunt policy prove``: are the policies push-only for *every* request (the ``verify`` extra)?
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from telemetry_shunt.cli.common import EXIT_NOT_PROVEN, cli_boundary, output_option, progress, render
from telemetry_shunt.core.evaluator import Request, evaluate
from telemetry_shunt.core.template import Environment
from telemetry_shunt.core.validation import PARTITIONS
from telemetry_shunt.errors import ShuntError
from telemetry_shunt.verify.subject import service_policies


def deployment_options(command):
    """--service, --partition, --region, --account: which service, and where the templates are deployed."""
    for option in reversed([
        click.option("--service", default=None, help="Lattice service logical id or name, if the templates hold several."),
        click.option("--partition", type=click.Choice(PARTITIONS), default="aws", show_default=True,
                     help="Partition the templates are deployed in."),
        click.option("--region", default="us-east-1", show_default=True, help="Region the templates are deployed in."),
        click.option("--account", default="123456789012", show_default=True,
                     help="Account the templates are deployed in."),
    ]):
        command = option(command)
    return command

@click.group()
def policy() -> None:
    """Inspect the gateway's push-only auth policies offline."""


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for item in values:
        if "=" not in item:
            raise ShuntError(f"{what} {item!r} must be NAME=VALUE")
        key, value = item.split("=", 1)
        out[key] = value
    return out


@policy.command("check")
@click.option("--template", "templates", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Synthesized template(s), e.g. cdk.out/TelemetryConcentrator.template.json, or the Terraform "
                   "flavour's cdk.tf.json (repeatable).")
@click.option("--principal", required=True,
              help="Caller: role ARN, assumed-role session ARN, user ARN, account root ARN, or 'anonymous'.")
@click.option("--method", required=True, help="HTTP method, e.g. POST.")
@click.option("--path", "path", required=True, help="Request path, e.g. /metrics.")
@click.option("--org-id", default=None, help="The caller's AWS Organizations id (aws:PrincipalOrgID).")
@click.option("--source-vpc", default=None, help="The caller's VPC id (vpc-lattice-svcs:SourceVpc).")
@click.option("--source-vpc-owner", default=None, help="The caller VPC's account (SourceVpcOwnerAccount).")
@click.option("--port", default=443, show_default=True, type=int, help="Listener port (vpc-lattice-svcs:Port).")
@click.option("--header", "headers", multiple=True, metavar="NAME=VALUE", help="Request header (repeatable).")
@click.option("--identity-policy", type=click.Path(path_type=Path), default=None,
              help="The caller's IAM identity policy (JSON); without it the identity layer is assumed to allow.")
@deployment_options
@output_option
@cli_boundary
def check(templates: tuple[Path, ...], principal: str, method: str, path: str, org_id: str | None,
          source_vpc: str | None, source_vpc_owner: str | None, port: int, headers: tuple[str, ...],
          identity_policy: Path | None, service: str | None, partition: str, region: str, account: str,
          output: str) -> None:
    """Print ALLOW or DENY for one request and the statement that decided it.

    \b
    Example:
      shunt policy check --template cdk.out/TelemetryConcentrator.template.json \\
        --principal arn:aws:sts::111111111111:assumed-role/telemetry-agent/i-0abc \\
        --method POST --path /metrics
    """
    env = Environment(partition=partition, region=region, account=account)
    found = service_policies(templates, env=env, service=service)
    identity = None
    if identity_policy is not None:
        try:
            identity = json.loads(identity_policy.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ShuntError(f"cannot read identity policy {str(identity_policy)!r}: {exc}") from None
    request = Request(
        principal=None if principal.lower() == "anonymous" else principal,
        method=method.upper(), path=path, org_id=org_id, source_vpc=source_vpc,
        source_vpc_owner=source_vpc_owner, port=port, headers=_pairs(headers, "header"),
    )
    decision = evaluate(
        request,
        service_arn=found.service_arn,
        service_policy=found.service_policy,
        service_network_policy=found.service_network_policy,
        service_network_arn=found.service_network_arn,
        identity_policy=identity,
    )
    result = {
        **decision.as_dict(),
        "request": f"{request.method} {request.path}",
        "principal": principal,
        "service": found.service_arn,
        "layers_checked": [layer for layer in ("identity", "service network", "service") if layer in decision.matched],
    }
    if output == "json":
        render(result, output)
        return
    render({
        "decision": result["decision"],
        "decided by": f"{decision.statement or '(no matching Allow)'} in the {decision.layer} policy",
        "why": decision.explanation,
        "request": result["request"],
        "principal": principal,
        "service": found.service_arn,
    }, output)


class NotProven(ShuntError):
    """``shunt policy prove`` ran, and an invariant is violated or undecided."""

    exit_code = EXIT_NOT_PROVEN


@policy.command("prove")
@click.argument("templates", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--pusher", "pushers", multiple=True, metavar="PUSHER",
              help="Who should be able to push: role ARN, 12-digit account id or o-... organization id (repeatable). "
                   "Default: the principals the service policy's Allow statements name.")
@click.option("--route", "routes", multiple=True, metavar="PATH",
              help="A routed path, e.g. /metrics (repeatable). Default: the exact paths of the service's listener rules.")
@deployment_options
@output_option
@cli_boundary
def prove(templates: tuple[Path, ...], pushers: tuple[str, ...], routes: tuple[str, ...], service: str | None,
          partition: str, region: str, account: str, output: str) -> None:
    """Prove the service's auth policies push-only over every request; exit 4 if not.

    \b
    Five invariants, each PROVEN or VIOLATED with a counterexample request:
      nobody but listed pushers, nothing but POST, nothing outside the routes,
      only through the service network, every pusher can POST to every route.

    \b
    Example:
      shunt policy prove cdk.out/TelemetryConcentrator.template.json
      shunt policy prove cdk.out/*.template.json --pusher 222222222222 --output json
    """
    from telemetry_shunt.verify.proof import prove_subject  # the verify extra (z3-solver, iamprover)
    from telemetry_shunt.verify.subject import proof_subject

    subject = proof_subject(templates, pushers=pushers, routes=routes, service=service,
                            env=Environment(partition=partition, region=region, account=account))
    found = subject.policies
    progress(f"proving {found.service_logical_id} ({subject.flavour}) against {len(subject.pushers)} pusher(s) "
             f"and {len(subject.routes)} route(s)...")
    results = prove_subject(subject)
    proven = all(r.holds for r in results)
    summary = {
        "service": found.service_arn,
        "service_logical_id": found.service_logical_id,
        "service_network": found.service_network_arn,
        "pushers": list(subject.pushers),
        "pushers_from": subject.pushers_from,
        "routes": list(subject.routes),
        "routes_from": subject.routes_from,
        "proven": proven,
    }
    rows = [{"invariant": r.invariant, "result": r.verdict, "counterexample": r.counterexample} for r in results]
    if output == "json":
        render({**summary, "invariants": [{**row, "witness": r.witness} for row, r in zip(rows, results, strict=True)]},
               output)
    else:
        pushers_from = "the service policy's Allow statements" if subject.pushers_from == "template" else "--pusher"
        routes_from = "the service's listener rules" if subject.routes_from == "template" else "--route"
        render({
            "service": f"{found.service_arn} ({found.service_logical_id})",
            "service network": found.service_network_arn,
            "pushers": f"{', '.join(subject.pushers)} (from {pushers_from})",
            "routes": f"{', '.join(subject.routes)} (from {routes_from})",
        }, output)
        click.echo("")
        render(rows, output, columns=["result", "invariant", "counterexample"])
    if not proven:
        failed = [r.invariant for r in results if not r.holds]
        raise NotProven(f"{len(failed)} of {len(results)} invariants not proven for {found.service_logical_id}: "
                        f"{'; '.join(failed)}")
