"""``shunt policy check`` on a synthesized concentrator template."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

import app as default_app
from telemetry_shunt.cli import cli
from tests.cdk_support import ROOT, new_app

AGENT = "arn:aws:sts::111111111111:assumed-role/telemetry-agent/i-0abc"


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("policy-cli")
    app = new_app(outdir)
    default_app.build(app)
    app.synth()
    return str(outdir / "TelemetryConcentrator.template.json")


def check(template, *args):
    return CliRunner().invoke(cli, ["policy", "check", "--template", template, *args])


def test_listed_agent_may_post_metrics(template):
    result = check(template, "--principal", AGENT, "--method", "POST", "--path", "/metrics")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].split() == ["decision", "ALLOW"]
    assert "AllowPushersToPostToRoutes in the service policy" in result.output


def test_get_is_denied_by_the_explicit_method_deny_json(template):
    result = check(template, "--principal", AGENT, "--method", "get", "--path", "/metrics", "--output", "json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert (data["decision"], data["outcome"], data["statement"], data["layer"]) == (
        "DENY", "explicit-deny", "DenyEveryMethodButPost", "service")


def test_stranger_is_denied_by_the_network_policy(template):
    result = check(template, "--principal", "arn:aws:iam::333333333333:role/x", "--method", "POST",
                   "--path", "/metrics", "--output", "json")
    data = json.loads(result.output)
    assert (data["decision"], data["outcome"], data["layer"]) == ("DENY", "implicit-deny", "service network")


def test_unrouted_path_is_implicitly_denied_by_the_service(template):
    data = json.loads(check(template, "--principal", AGENT, "--method", "POST", "--path", "/admin", "--output", "json").output)
    assert (data["decision"], data["outcome"], data["layer"]) == ("DENY", "implicit-deny", "service")


def test_anonymous_is_denied_explicitly(template):
    data = json.loads(check(template, "--principal", "anonymous", "--method", "POST", "--path", "/metrics",
                            "--output", "json").output)
    assert (data["decision"], data["statement"]) == ("DENY", "DenyAnonymous")


def test_identity_policy_without_invoke_denies(template, tmp_path):
    identity = tmp_path / "identity.json"
    identity.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}))
    data = json.loads(check(template, "--principal", AGENT, "--method", "POST", "--path", "/metrics",
                            "--identity-policy", str(identity), "--output", "json").output)
    assert (data["decision"], data["layer"]) == ("DENY", "identity")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--template", "missing.json"], "cannot read template 'missing.json'"),
        (["--principal", "bob"], "principal 'bob' is not an IAM role"),
        (["--path", "metrics"], "request path must start with '/', got 'metrics'"),
        (["--header", "novalue"], "header 'novalue' must be NAME=VALUE"),
    ],
)
def test_bad_input_is_one_line_exit_1(template, args, message):
    base = {"--template": template, "--principal": AGENT, "--method": "POST", "--path": "/metrics"}
    argv = ["policy", "check"]
    overrides = dict(zip(args[::2], args[1::2], strict=True))
    for key, value in {**base, **overrides}.items():
        argv += [key, value]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_installed_console_script_runs(template):
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "shunt"), "policy", "check", "--template", template,
                           "--principal", AGENT, "--method", "POST", "--path", "/v1/traces"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "ALLOW" in proc.stdout
    assert sys.executable  # the suite runs inside the project's venv
