"""GatewayRef: the one handoff value from the concentrator to app accounts and hosts."""

import json

import pytest

from telemetry_shunt.core.gateway_ref import GatewayRef
from telemetry_shunt.core.routes import Route, default_routes
from telemetry_shunt.errors import ValidationError

ARN = "arn:aws:vpc-lattice:eu-west-1:111111111111:service/svc-0123456789abcdef0"
SN = "arn:aws:vpc-lattice:eu-west-1:111111111111:servicenetwork/sn-0123456789abcdef0"
DNS = "telemetry-gateway-0123456789abcdef0.7d67968.vpc-lattice-svcs.eu-west-1.on.aws"


def ref(**kw):
    args = {"service_arn": ARN, "dns_name": DNS, "routes": tuple(default_routes()), "service_network_arn": SN}
    args.update(kw)
    return GatewayRef(**args)


def test_round_trips_through_json_and_knows_its_region_and_urls():
    r = ref(routes=(Route("/ingest/app-a"), *Route.otlp_http(["logs"])))
    back = GatewayRef.from_json(r.to_json())
    assert back == r
    assert back.region == "eu-west-1"
    assert back.paths == ("/ingest/app-a", "/v1/logs")
    assert back.url("/v1/logs") == f"https://{DNS}/v1/logs"
    with pytest.raises(ValidationError, match=r"'/metrics' is not a route of this gateway"):
        back.url("/metrics")


@pytest.mark.parametrize("field, value, match", [
    ("service_arn", ARN + "\n", "gateway service ARN"),
    ("service_arn", ARN.replace("svc-", "svc-*"), "gateway service ARN"),
    ("service_network_arn", "sn-0123456789abcdef0", "service network ARN"),
    ("dns_name", "https://" + DNS, "gateway DNS name"),
    ("routes", "/metrics", "must be a sequence of Route"),
    ("routes", ("/metrics",), "is not a Route"),
    ("routes", (), "no routes"),
])
def test_bad_values_are_refused_naming_the_value(field, value, match):
    with pytest.raises(ValidationError, match=match):
        ref(**{field: value})


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.pop("routes"), "missing keys"),
    (lambda d: d.update(extra=1), "unknown keys"),
    (lambda d: d.update(version=2), "version 2"),
    (lambda d: d.update(routes=[{"path": "/x"}]), "exactly 'path' and 'collector'"),
    (lambda d: d.update(routes=[{"path": "/x*", "collector": "vector"}]), "exact paths"),
])
def test_from_json_refuses_malformed_documents(mutate, match):
    data = ref().to_dict()
    mutate(data)
    with pytest.raises(ValidationError, match=match):
        GatewayRef.from_json(json.dumps(data))
    with pytest.raises(ValidationError, match="not valid JSON"):
        GatewayRef.from_json("{")


def test_tokens_pass_construction_but_cannot_be_exported_as_literal_json():
    tok = "${Token[TOKEN.123]}"
    r = ref(service_arn=tok, dns_name=tok, service_network_arn=tok)
    assert r.region is None
    with pytest.raises(ValidationError, match="deploy-time tokens"):
        r.to_json()


def test_terraform_tokens_are_tokens_too():
    # CDK Terrain's unresolved values look like ${TfToken[TOKEN.0]}: a Terraform-built GatewayRef holds them.
    tok = "${TfToken[TOKEN.7]}"
    assert ref(service_arn=tok, dns_name=tok, service_network_arn=tok).region is None
