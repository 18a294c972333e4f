"""Synthesis cost of the default apps, as ratios against a minimal app measured in the same run.

Absolute seconds do not transfer between machines (and this one is shared), so every figure that matters
is a ratio against a baseline run alternately with it, pair by pair:

- CDK: ``python app.py`` (what ``cdk synth`` runs) against a one-bucket CDK app. Issue target: <= 1.4x.
- The default app's own cost split in one process: imports (jsii start-up), building the construct tree,
  ``app.synth()`` without cdk-nag, and cdk-nag's share (a second process, the same with the plugin).
- Terraform flavour: ``python app_terraform.py`` against a one-resource CDK Terrain app, split into the
  provider bindings' import and the build + synth.

Run with ``--runs N`` (default 5 pairs); ``--skip-terraform`` when the terraform extra is not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTEXT = json.loads((ROOT / "cdk.json").read_text())["context"]
ENV = dict(os.environ, JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="18,20", PYTHONPATH=str(ROOT))

ONE_BUCKET = """
import sys
import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
app = cdk.App(outdir=sys.argv[1])
s3.Bucket(cdk.Stack(app, "OneBucket"), "Bucket")
app.synth()
"""

ONE_TF_RESOURCE = """
import sys
from cdktn import App, TerraformStack
from cdktn_provider_aws.provider import AwsProvider
from cdktn_provider_aws.s3_bucket import S3Bucket
app = App(outdir=sys.argv[1])
stack = TerraformStack(app, "one")
AwsProvider(stack, "aws", region="us-east-1")
S3Bucket(stack, "bucket")
app.synth()
"""

SPLIT_CDK = """
import json, sys, time
t0 = time.perf_counter()
import aws_cdk as cdk
import app as default_app
t1 = time.perf_counter()
a = cdk.App(outdir=sys.argv[1], context=json.loads(sys.argv[2]))
default_app.build(a)
t2 = time.perf_counter()
if sys.argv[3] == "nag":
    from cdk_nag import AwsSolutionsChecks
    cdk.Validations.of(a).add_plugins(AwsSolutionsChecks(a))
a.synth()
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "build": t2 - t1, "synth": t3 - t2}))
"""

SPLIT_TF = """
import json, sys, time
t0 = time.perf_counter()
import app_terraform
from telemetry_shunt.terraform import _aws as aws
import telemetry_shunt.terraform
t1 = time.perf_counter()
app = aws.App(outdir=sys.argv[1])
app_terraform.build(app, app_terraform.load_context([]))
app.synth()
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "build_synth": t2 - t1}))
"""


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def script(code: str, *args: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=ENV, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def pairs(run_a, run_b, runs: int) -> tuple[list[float], list[float]]:
    a_times, b_times = [], []
    for i in range(runs):
        a_times.append(run_a(i))
        b_times.append(run_b(i))
    return a_times, b_times


def row(label: str, values: list[float], unit: str = "s") -> str:
    return (f"  {label:<44} median {statistics.median(values):7.2f} {unit}  "
            f"(min {min(values):.2f}, max {max(values):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-terraform", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cdk_env = dict(ENV, CDK_CONTEXT_JSON=json.dumps(CONTEXT))
        # Warm-up (OS caches, .pyc files) before anything is counted.
        timed([sys.executable, "-c", ONE_BUCKET, f"{tmp}/warm1"], ENV)
        timed([sys.executable, "app.py"], dict(cdk_env, CDK_OUTDIR=f"{tmp}/warm2"))
        default, baseline = pairs(
            lambda i: timed([sys.executable, "app.py"], dict(cdk_env, CDK_OUTDIR=f"{tmp}/app{i}")),
            lambda i: timed([sys.executable, "-c", ONE_BUCKET, f"{tmp}/one{i}"], ENV), args.runs)
        plain = [script(SPLIT_CDK, f"{tmp}/split{i}", json.dumps(CONTEXT), "plain") for i in range(args.runs)]
        nag = [script(SPLIT_CDK, f"{tmp}/nag{i}", json.dumps(CONTEXT), "nag") for i in range(args.runs)]
        ratios = [d / b for d, b in zip(default, baseline, strict=True)]
        print(f"CDK synthesis, {args.runs} alternating pairs, {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.1f} at the end")
        print(row("one-bucket app (baseline)", baseline))
        print(row("default app: python app.py", default))
        print(row("ratio default / baseline, pair by pair", ratios, "x"))
        print(f"  issue 12 target: <= 1.40x -> {'meets' if statistics.median(ratios) <= 1.4 else 'MISSES'}")
        print("  default app split (in process):")
        print(row("  imports (aws_cdk, jsii start-up, app)", [p["import"] for p in plain]))
        print(row("  building the construct tree", [p["build"] for p in plain]))
        print(row("  app.synth() without cdk-nag", [p["synth"] for p in plain]))
        print(row("  cdk-nag's share of app.synth()", [n["synth"] - p["synth"] for n, p in zip(nag, plain, strict=True)]))
        if args.skip_terraform:
            return
        timed([sys.executable, "-c", ONE_TF_RESOURCE, f"{tmp}/tfwarm"], ENV)
        tf_default, tf_baseline = pairs(
            lambda i: timed([sys.executable, "-c", SPLIT_TF, f"{tmp}/tf{i}"], ENV),
            lambda i: timed([sys.executable, "-c", ONE_TF_RESOURCE, f"{tmp}/tfone{i}"], ENV), args.runs)
        tf_split = [script(SPLIT_TF, f"{tmp}/tfsplit{i}") for i in range(args.runs)]
        print(f"Terraform flavour (CDK Terrain), {args.runs} alternating pairs")
        print(row("one-resource cdktn app (baseline)", tf_baseline))
        print(row("default Terraform app (3 stacks)", tf_default))
        print(row("ratio default / baseline, pair by pair", [d / b for d, b in zip(tf_default, tf_baseline, strict=True)],
                  "x"))
        print(row("  imports (cdktn, provider bindings)", [p["import"] for p in tf_split]))
        print(row("  build + synth", [p["build_synth"] for p in tf_split]))
        print(row("ratio Terraform app / CDK app (same run)",
                  [t / c for t, c in zip(tf_default, default, strict=True)], "x"))


if __name__ == "__main__":
    main()
