"""Every bad input of issue 11 (and the ones found while fixing it), in one table: each is refused with one
error that names the value (or, for the client, the argument) at construction, so none reaches a template,
a collector config, an SSM document or the wire."""

from __future__ import annotations

import math

import aws_cdk as cdk
import pytest

import app as default_app
from telemetry_shunt.agent_rollout.killswitch import flag_key
from telemetry_shunt.constructs.service_network import TelemetryServiceNetwork
from telemetry_shunt.core import collectors as cc
from telemetry_shunt.core import hostside
from telemetry_shunt.core.rollout_plan import Host, plan_rollout
from telemetry_shunt.core.routes import Pusher, Route
from telemetry_shunt.core.validation import availability_zones, cidr, email_address, lattice_name, share_principal
from tests.cdk_support import new_app

ARABIC_INDIC = "\u0661" * 12  # twelve Arabic-Indic ones: Unicode \d matches them, AWS does not
ROLE = "arn:aws:iam::111111111111:role/agent"
SHA = "a" * 64
PUSHERS = [Pusher.account("222222222222")]


def _artifact(**overrides):
    args = {"bucket_name": "artifacts-b", "key_pattern": "agent/{version}.rpm", "sha256_by_version": {"1.2.3": SHA},
            "service": "aws-otel-collector", **overrides}
    return hostside.S3Artifact(**args)


def _network(share_with):
    return TelemetryServiceNetwork(cdk.Stack(cdk.App(), "S"), "SN", pushers=PUSHERS, share_with=share_with)


# (case, build, what the one error must name)
CORE = [
    ("version with trailing newline", lambda: hostside.validate_version("1.2.3\n"), "'1.2.3\\n'"),
    ("artifact version with trailing newline", lambda: _artifact(sha256_by_version={"1.2.3\n": SHA}), "'1.2.3\\n'"),
    ("route with trailing newline", lambda: Route("/metrics\n"), "'/metrics\\n'"),
    ("role ARN with trailing newline", lambda: Pusher.role(ROLE + "\n"), repr(ROLE + "\n")),
    ("account id in Arabic-Indic digits", lambda: Pusher.account(ARABIC_INDIC), ARABIC_INDIC),
    ("role ARN with Arabic-Indic account", lambda: Pusher.role(f"arn:aws:iam::{ARABIC_INDIC}:role/agent"), ARABIC_INDIC),
    ("pusher of unknown kind", lambda: Pusher("bogus", "111111111111"), "'bogus'"),
    ("account pusher that is no account", lambda: Pusher("account", "not-an-account"), "'not-an-account'"),
    ("RAM share to any OU of any org", lambda: share_principal("arn:aws:organizations::*:ou/*"), "ou/*"),
    ("RAM share to a wildcard org", lambda: share_principal("arn:aws:organizations::111111111111:organization/o-*"),
     "o-*"),
    ("sink header value with CR LF", lambda: cc.OtlpHttpSink(endpoint="https://otlp.vendor.example",
                                                              headers={"x-team": "a\r\nX-Injected: 1"}), "x-team"),
    ("endpoint with a literal \\u0024", lambda: cc.OtlpHttpSink(
        endpoint="https://otlp.vendor.example/\\u0024{VENDOR_API_KEY}"), "\\\\u0024{VENDOR_API_KEY}"),
    ("bucket name with a token inside shell text", lambda: _artifact(bucket_name="my-${Token[X.1]}-bucket; reboot"),
     "my-${Token[X.1]}-bucket; reboot"),
    # found while fixing the above
    ("Lattice name with trailing newline", lambda: lattice_name("service", "gateway\n"), "'gateway\\n'"),
    ("AZ with trailing newline", lambda: availability_zones(["us-east-1a\n", "us-east-1b"]), "'us-east-1a\\n'"),
    ("CIDR with trailing newline", lambda: cidr("10.1.0.0/16\n"), "'10.1.0.0/16\\n'"),
    ("alarm e-mail with trailing newline", lambda: email_address("oncall@example.com\n"), "'oncall@example.com\\n'"),
    ("route priority out of range", lambda: Route("/x", priority=0), "priority 0"),
    ("RAM share through the construct", lambda: _network(["arn:aws:organizations::*:ou/*"]), "ou/*"),
    ("rollout host id with trailing newline",
     lambda: plan_rollout([Host("i-0123456789abcdef0\n", "us-east-1a")]), "'i-0123456789abcdef0\\n'"),
    ("rollout host AZ with trailing newline",
     lambda: plan_rollout([Host("i-0123456789abcdef0", "us-east-1a\n")]), "'us-east-1a\\n'"),
    ("kill-switch AZ with trailing newline", lambda: flag_key("us-east-1a\n"), "'us-east-1a\\n'"),
]


@pytest.mark.parametrize(("case", "build", "named"), CORE, ids=[c[0] for c in CORE])
def test_bad_value_is_refused_at_construction_naming_it(case, build, named):
    with pytest.raises(ValueError) as info:
        build()
    assert named in str(info.value), f"{case}: {info.value}"


CLIENT = [
    ("endpoint", {"endpoint": 5}),
    ("request_timeout_seconds", {"request_timeout_seconds": math.inf}),
    ("exit_timeout_seconds", {"exit_timeout_seconds": math.nan}),
    ("max_batch_records", {"max_batch_records": True}),
]


@pytest.mark.parametrize(("argument", "kwargs"), CLIENT, ids=[c[0] for c in CLIENT])
def test_client_arguments_are_refused_at_construction_naming_the_argument(argument, kwargs):
    from telemetry_shunt.client import TelemetryClient

    with pytest.raises(ValueError, match=argument):
        TelemetryClient(**{"endpoint": "https://gateway.example", "region": "us-east-1", **kwargs})


APP_CONTEXT = [
    ("telemetry-shunt:share-with", ["arn:aws:organizations::*:ou/*"], "ou/*"),
    ("telemetry-shunt:pushers", [ARABIC_INDIC], ARABIC_INDIC),
    ("telemetry-shunt:alarm-email", "oncall@example.com\nBcc: x@example.com", "Bcc"),
]


@pytest.mark.parametrize(("key", "value", "named"), APP_CONTEXT, ids=[c[0] for c in APP_CONTEXT])
def test_bad_context_fails_the_default_app_before_any_template(tmp_path, key, value, named):
    app = new_app(tmp_path, **{key: value})
    with pytest.raises(ValueError) as info:
        default_app.build(app)
    assert named in str(info.value)
    assert not list(tmp_path.glob("*.template.json"))
