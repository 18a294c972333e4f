"""Routes, pushers and the shared validators: bad values are named, tokens pass."""

from __future__ import annotations

import pytest

from telemetry_shunt.core.routes import MAX_RULES_PER_LISTENER, Pusher, Route, default_routes, validate_pushers, validate_routes
from telemetry_shunt.core.validation import (
    ACCOUNT_ID,
    ACCOUNT_ROOT_ARN,
    availability_zones,
    cidr,
    disjoint_cidrs,
    is_token,
    lattice_name,
    share_principal,
)
from telemetry_shunt.errors import ShuntError, ValidationError

TOKEN = "${Token[TOKEN.123]}"


def test_default_routes_are_metrics_to_vector_and_otlp_to_otel():
    assert [(r.path, r.collector, r.method) for r in default_routes()] == [
        ("/metrics", "vector", "POST"), ("/v1/traces", "otel", "POST"), ("/v1/metrics", "otel", "POST"),
        ("/v1/logs", "otel", "POST"),
    ]


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("metrics", "route path must start with '/', got 'metrics'"),
        ("/metrics/*", "may contain only letters"),
        ("/m?x=1", "no query string"),
        ("//metrics", "no '//'"),
        ("/" + "a" * 250, "keep it under 200"),
    ],
)
def test_route_rejects_bad_paths(path, match):
    with pytest.raises(ValidationError, match=match):
        Route(path)


def test_route_rejects_unknown_collector_and_signal():
    with pytest.raises(ValidationError, match="names collector 'jaeger'"):
        Route("/x", "jaeger")
    with pytest.raises(ValidationError, match="OTLP signal 'profiles'"):
        Route.otlp_http(["profiles"])


def test_route_list_limits():
    with pytest.raises(ValidationError, match="no routes"):
        validate_routes([])
    with pytest.raises(ValidationError, match=r"duplicate route path\(s\) \['/metrics'\]"):
        validate_routes([Route("/metrics"), Route("/metrics", "otel")])
    too_many = [Route(f"/r{i}") for i in range(MAX_RULES_PER_LISTENER + 1)]
    with pytest.raises(ValidationError, match="11 routes need 11 listener rules"):
        validate_routes(too_many)
    assert len(validate_routes(too_many[:MAX_RULES_PER_LISTENER])) == 10


@pytest.mark.parametrize(
    ("text", "kind", "account"),
    [
        ("arn:aws:iam::111111111111:role/agent", "role", "111111111111"),
        ("arn:aws-us-gov:iam::111111111111:role/path/to/agent", "role", "111111111111"),
        ("arn:aws-cn:iam::111111111111:role/agent", "role", "111111111111"),
        ("222222222222", "account", "222222222222"),
        ("o-abcdefghij", "organization", None),
    ],
)
def test_pusher_parse(text, kind, account):
    p = Pusher.parse(text)
    assert (p.kind, p.value, p.account_id) == (kind, text, account)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("*", "is a wildcard"),
        ("arn:aws:iam::111111111111:role/*", "is a wildcard"),
        ("arn:aws:iam::111111111111:user/bob", "must look like 'arn:aws:iam::111111111111:role/name'"),
        ("arn:aws-xx:iam::111111111111:role/a", "partition aws, aws-cn or aws-us-gov"),
        ("12345", "account id '12345' must be 12 digits"),
        ("o-SHOUT", "organization id 'o-SHOUT'"),
    ],
)
def test_pusher_parse_rejects(text, match):
    with pytest.raises(ValidationError, match=match):
        Pusher.parse(text)


def test_pusher_tokens_pass_and_duplicates_fail():
    assert Pusher.role(TOKEN).account_id is None
    with pytest.raises(ValidationError, match="duplicate pusher"):
        validate_pushers([Pusher.account("111111111111"), Pusher.account("111111111111")])
    with pytest.raises(ValidationError, match="no pushers"):
        validate_pushers([])


def test_validation_error_is_a_shunt_error_and_a_value_error():
    assert issubclass(ValidationError, ShuntError) and issubclass(ValidationError, ValueError)


@pytest.mark.parametrize(
    ("kind", "name", "ok"),
    [
        ("service", "telemetry-gateway", True),
        ("service", "ab", False),
        ("service", "a" * 41, False),
        ("service", "-gateway", False),
        ("service", "gateway-", False),
        ("service", "svc-gateway", False),
        ("service network", "a" * 63, True),
        ("service network", "Upper", False),
        ("target group", "tg-x", False),
        ("service", TOKEN, True),
    ],
)
def test_lattice_names(kind, name, ok):
    if ok:
        assert lattice_name(kind, name) == name
    else:
        with pytest.raises(ValidationError, match=f"{kind} name"):
            lattice_name(kind, name)


def test_cidrs_and_azs():
    assert str(cidr("10.1.0.0/16")) == "10.1.0.0/16"
    with pytest.raises(ValidationError, match="'10.1.0.0/29' must be between /16 and /28"):
        cidr("10.1.0.0/29")
    with pytest.raises(ValidationError, match="overlaps"):
        disjoint_cidrs([("a", "10.0.0.0/16"), ("b", "10.0.255.0/24")])
    disjoint_cidrs([("a", "10.0.0.0/16"), ("b", "10.1.0.0/16"), ("t", TOKEN)])
    assert availability_zones(["us-east-1a", "us-east-1b"]) == ["us-east-1a", "us-east-1b"]
    with pytest.raises(ValidationError, match="distinct"):
        availability_zones(["us-east-1a", "us-east-1a"])
    with pytest.raises(ValidationError, match="at least 2"):
        availability_zones(["us-gov-west-1a"])
    assert is_token(TOKEN) and not is_token("plain")


# --- strict inputs: whole-string, ASCII-only matching; every constructor validates ------------------------
ARABIC_INDIC_ACCOUNT = "\u0661" * 12  # '١١١١١١١١١١١١': Unicode \d would take it


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda: Route("/metrics\n"), "'/metrics\\n'"),
        (lambda: Route("/metrics", ["vector"]), "['vector']"),
        (lambda: Pusher.role("arn:aws:iam::111111111111:role/agent\n"), "role/agent\\n'"),
        (lambda: Pusher.role(f"arn:aws:iam::{ARABIC_INDIC_ACCOUNT}:role/agent"), ARABIC_INDIC_ACCOUNT),
        (lambda: Pusher.role("arn:aws:iam::111111111111:role/\u00e9quipe"), "\u00e9quipe"),
        (lambda: Pusher.account(ARABIC_INDIC_ACCOUNT), ARABIC_INDIC_ACCOUNT),
        (lambda: Pusher.account("111111111111\n"), "'111111111111\\n'"),
        (lambda: Pusher.account(111111111111), "111111111111"),
        (lambda: Pusher.organization("o-abcdefghij\n"), "'o-abcdefghij\\n'"),
        (lambda: Pusher("bogus", "111111111111"), "'bogus'"),
        (lambda: Pusher("account", "not-an-account"), "'not-an-account'"),
        (lambda: Pusher("role", "111111111111"), "'111111111111'"),
        (lambda: Pusher("organization", "arn:aws:iam::111111111111:role/a"), "role/a'"),
        (lambda: Pusher("account", "*"), "'*'"),
        (lambda: Pusher.role(TOKEN + "\n"), "Token"),
        (lambda: lattice_name("service", "gateway\n"), "'gateway\\n'"),
        (lambda: availability_zones(["us-east-1a\n", "us-east-1b"]), "'us-east-1a\\n'"),
        (lambda: availability_zones(["us-east-\u0661a", "us-east-1b"]), "us-east-\u0661a"),
        (lambda: cidr("10.1.0.0/16\n"), "'10.1.0.0/16\\n'"),
    ],
)
def test_each_bad_value_is_refused_at_construction_naming_it(build, named):
    with pytest.raises(ValidationError) as info:
        build()
    assert named in str(info.value)


@pytest.mark.parametrize(
    "value",
    [
        "111111111111",
        "arn:aws:organizations::111111111111:organization/o-a1b2c3d4e5",
        "arn:aws-us-gov:organizations::111111111111:ou/o-a1b2c3d4e5/ou-ab12-cd34ef56",
        TOKEN,
    ],
)
def test_share_principals_accepted(value):
    assert share_principal(value) == value


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("arn:aws:organizations::*:ou/*", "not a 12-digit account id, an OU ARN"),
        ("arn:aws:organizations::111111111111:organization/o-*", "not a 12-digit account id"),
        ("arn:aws:organizations::111111111111:ou/o-a1b2c3d4e5/*", "not a 12-digit account id"),
        ("arn:aws:organizations::111111111111:organization/o-a1b2c3d4e5\n", "not a 12-digit account id"),
        ("arn:aws:iam::111111111111:organization/o-a1b2c3d4e5", "not a 12-digit account id"),
        (ARABIC_INDIC_ACCOUNT, "not a 12-digit account id"),
        ("12345", "'12345' must be 12 digits"),
        ("o-abcdefghij", "RAM needs the organization ARN"),
        ("*", "wildcards are not allowed"),
    ],
)
def test_share_principals_refused(value, match):
    with pytest.raises(ValidationError, match=match):
        share_principal(value)


def test_exported_patterns_stay_whole_under_re_match():
    # The evaluator and the proof import these and call .match(): the \Z anchor must still hold.
    assert not ACCOUNT_ID.match("111111111111\n") and not ACCOUNT_ROOT_ARN.match("arn:aws:iam::111111111111:root\n")
    assert not ACCOUNT_ID.match(ARABIC_INDIC_ACCOUNT)
    assert ACCOUNT_ROOT_ARN.match("arn:aws:iam::111111111111:root").groups() == ("aws", "111111111111")
