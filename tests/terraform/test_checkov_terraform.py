"""checkov (pinned, its own environment, --framework terraform_json) on the default Terraform app: 0 failed
checks; every acknowledgement sits on its resource with a reason and matches a real finding (none stale)."""

from __future__ import annotations

import pytest

import app_terraform
from tools.cdkcheck import CHECKOV
from tools.tfcheck import terraform_checkov_scan

pytestmark = [pytest.mark.xdist_group("terraform"),
              pytest.mark.skipif(not CHECKOV.exists(), reason="checkov not installed: run `make checkov`")]


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("tf_checkov")
    app_terraform.main([], outdir=str(outdir))
    files = sorted((outdir / "stacks").glob("*/cdk.tf.json"))
    assert [f.parent.name for f in files] == sorted(app_terraform.STACKS)
    return terraform_checkov_scan(files)


def test_checkov_fails_no_check_on_the_terraform_output(scan):
    assert scan.report.passed > 100
    assert scan.report.failed == [], "\n".join(map(str, scan.report.failed))


def test_every_acknowledgement_has_a_reason_and_a_finding(scan):
    assert scan.stale == []
    assert scan.report.skipped and all(len(s.comment) >= 20 for s in scan.report.skipped)


def test_without_the_acknowledgements_exactly_those_findings_fail(scan, tmp_path_factory):
    import json
    from pathlib import Path

    from tools.tfcheck import ACK_KEY
    outdir = tmp_path_factory.mktemp("tf_checkov_bare")
    app_terraform.main([], outdir=str(outdir))
    files = sorted((outdir / "stacks").glob("*/cdk.tf.json"))
    for f in files:
        doc = json.loads(f.read_text())
        for by_name in doc.get("resource", {}).values():
            for body in by_name.values():
                (body.get("//") or {}).pop(ACK_KEY, None)
        Path(f).write_text(json.dumps(doc, indent=2))
    bare = terraform_checkov_scan(files)
    assert bare.report.skipped == [] and bare.stale == []
    assert sorted((r.check, r.resource.split(".", 1)[1]) for r in bare.report.failed) == \
        sorted((r.check, r.resource.split(".", 1)[1]) for r in scan.report.skipped)
