"""app.py builds CDK's template-validation engine while Python imports the app (issue 12), safely and equivalently.

Two facts make that overlap correct, pinned here: importing the app's modules makes no jsii request (the
engine's construction is the only request in flight then), and a CloudFormationValidatePlugin registered on
the App replaces the built-in one (the same checks run once, not twice, and their findings are reported).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import aws_cdk as cdk

from tests.cdk_support import ROOT

_COUNT_IMPORT_REQUESTS = """
import json
import aws_cdk, cdk_nag, constructs  # assembly loads: done before app.py starts the engine's thread
from jsii._kernel.providers import process
requests = []
send = process._NodeProcess.send
def counted(self, request, response_type):
    requests.append(type(request).__name__)
    return send(self, request, response_type)
process._NodeProcess.send = counted
import app
print(json.dumps(requests))
"""


def test_importing_the_app_makes_no_jsii_request():
    env = dict(os.environ, JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="18,20", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", _COUNT_IMPORT_REQUESTS], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=True)
    requests = json.loads(proc.stdout.strip().splitlines()[-1])
    assert requests == [], (f"importing app.py's modules made jsii requests {requests}: a module-level jsii call "
                            "(e.g. a Duration default argument) races the validation engine's construction")


def _report_of(app: cdk.App) -> list[dict]:
    app.synth()
    return json.loads((ROOT / app.outdir / "validation-report.json").read_text())["pluginReports"]


def test_an_explicit_validate_plugin_replaces_the_builtin_one_and_reports(tmp_path):
    # A bucket name with capitals: the engine's schema rules flag it (a warning, as the built-in one reports it).
    def app_with(outdir, explicit: bool) -> cdk.App:
        app = cdk.App(outdir=str(outdir))
        cdk.CfnResource(cdk.Stack(app, "S"), "B", type="AWS::S3::Bucket", properties={"BucketName": "Not_Valid"})
        if explicit:
            cdk.Validations.of(app).add_plugins(cdk.CloudFormationValidatePlugin())
        return app

    builtin = _report_of(app_with(tmp_path / "builtin", explicit=False))
    explicit = _report_of(app_with(tmp_path / "explicit", explicit=True))
    names = [r["pluginName"] for r in explicit]
    assert names == ["CloudFormation Validate"], names  # once: the built-in instance is not added as well
    assert [v["ruleName"] for v in explicit[0]["violations"]] == ["F3031"]
    assert explicit == builtin
