"""The default Terraform app (app_terraform.py): the same three stacks as app.py from the same context keys,
proven push-only, no absolute paths, one-line errors; a snapshot of each stack as a tripwire only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import app_terraform
from telemetry_shunt.cli import cli
from tests.terraform.conftest import resources

pytestmark = pytest.mark.xdist_group("terraform")
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"


def synth(outdir: Path, *args: str) -> dict[str, dict]:
    app_terraform.main(list(args), outdir=str(outdir))
    return {d.name: json.loads((d / "cdk.tf.json").read_text()) for d in sorted((outdir / "stacks").iterdir())}


@pytest.fixture(scope="module")
def default(tmp_path_factory):
    return synth(tmp_path_factory.mktemp("default_tf"))


def test_three_stacks_from_cdk_json_with_state_beside_the_project_and_no_absolute_path(default):
    assert sorted(default) == sorted(app_terraform.STACKS)
    for name, doc in default.items():
        text = json.dumps(doc)
        assert not any(root in text for root in ("/tmp/", "/work/", "/home/", "/root/")), name
        assert doc["terraform"]["backend"] == {"local": {"path": f"../../../terraform.{name}.tfstate"}}
    # The app account reads the concentrator's outputs through its state, by the same relative path.
    remote = default["TelemetryAppAccount"]["data"]["terraform_remote_state"]
    assert [r["config"]["path"] for r in remote.values()] == ["../../../terraform.TelemetryConcentrator.tfstate"]
    context = json.loads((app_terraform.ROOT / "cdk.json").read_text())["context"]
    (policy,) = [p for p in resources(default["TelemetryConcentrator"], "aws_vpclattice_auth_policy").values()
                 if "aws_vpclattice_service." in p["resource_identifier"]]
    assert context["telemetry-shunt:pushers"] == ["arn:aws:iam::111111111111:role/telemetry-agent", "222222222222"]
    assert ":iam::111111111111:role/telemetry-agent" in policy["policy"] and ":iam::222222222222:root" in policy["policy"]
    fleet = context["telemetry-shunt:agent-fleet"]
    assert f'"ssm:resourceTag/telemetry-shunt:fleet":"{fleet}"' in json.dumps(
        [json.loads(p["policy"]) for p in resources(default["TelemetryAgentControl"], "aws_iam_role_policy").values()],
        separators=(",", ":"))


def test_the_default_terraform_concentrator_is_proven_push_only(tmp_path, default):
    path = tmp_path / "cdk.tf.json"
    path.write_text(json.dumps(default["TelemetryConcentrator"]))
    result = CliRunner().invoke(cli, ["policy", "prove", str(path), "--output", "json"])
    assert result.exit_code == 0, result.output
    assert [r["result"] for r in json.loads(result.stdout)["invariants"]] == ["PROVEN"] * 5


def test_context_overrides_like_cdk(tmp_path):
    stacks = synth(tmp_path, "-c", "telemetry-shunt:agent-azs=[]", "-c", "telemetry-shunt:concentrator-azs=us-east-1a,us-east-1c")
    assert sorted(stacks) == ["TelemetryAppAccount", "TelemetryConcentrator"]
    subnets = resources(stacks["TelemetryConcentrator"], "aws_subnet").values()
    assert {s["availability_zone"] for s in subnets} == {"us-east-1a", "us-east-1c"}


@pytest.mark.parametrize("args, message", [
    (["-c", "telemetry-shunt:pushers=*"], "wildcard"),
    (["-c", "telemetry-shunt:agent-fleet=*"], "fleet"),
    (["-c", "telemetry-shunt:vendor-egress=maybe"], "must be true or false"),
    (["-c", "telemetry-shunt:concentrator-cidr=10.0.0.0/16"], "overlaps"),
    (["-c", "novalue"], "must be key=value"),
])
def test_bad_context_is_one_line_and_exit_1(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        app_terraform.main(args, outdir=str(tmp_path))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("telemetry-shunt: ") and message in err[0]


@pytest.mark.parametrize("stack", app_terraform.STACKS)
def test_snapshot_tripwire(default, stack):
    """Catches unintended drift only; the tests above state intent. Regenerate with UPDATE_SNAPSHOTS=1."""
    path = SNAPSHOTS / f"{stack}.json"
    current = json.dumps(default[stack], indent=1, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS"):
        path.write_text(current)
    assert path.read_text() == current, f"{stack} changed: review, then regenerate with UPDATE_SNAPSHOTS=1"
