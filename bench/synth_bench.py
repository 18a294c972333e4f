"""Synthesis cost of the default apps, as ratios against a minimal app measured in the same run.

Absolute seconds do not transfer between machines (and this one is shared), so every figure that matters
is a ratio against a baseline run alternately with it, pair by pair:

- CDK: ``python app.py`` (what ``cdk synth`` runs) against a one-bucket CDK app. Issue target: <= 1.4x.
- The default app's own cost split in one process: imports (jsii start-up), building CDK's template-validation
  engine (``app.py`` builds it in Node while Python imports the app's modules; here it is timed on its own),
  building the construct tree, ``app.synth()`` without cdk-nag (validating the templates), and cdk-nag's share
  (a second process, the same with the plugin).
- Terraform flavour: ``python app_terraform.py`` against a one-resource CDK Terrain app, split into the
  provider bindings' import and the build + synth.

Each pair is timed twice: wall clock, and the CPU seconds of the whole process tree (Python and the jsii
Node process), which moves far less than wall clock on a shared, loaded machine.

Python compiles each aws_cdk module it imports (aws_ec2 alone is 7.7 MB of source) unless bytecode was
compiled at install (``make install`` does, ``UV_COMPILE_BYTECODE``); with ``PYTHONDONTWRITEBYTECODE``
it never caches. That dominates the default app's imports, so the bench says which case it measured.

``--profile`` prints deterministic counts instead of times: jsii round-trips (requests from Python to
Node) per phase and per call site in telemetry_shunt, Node->Python callbacks, Python function calls while
building the construct tree, and the aws_cdk modules imported. Counts do not move with the machine's
load, so they are the figures to compare before and after a change.

Run with ``--runs N`` (default 5 pairs); ``--skip-terraform`` when the terraform extra is not installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
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
validator = cdk.CloudFormationValidatePlugin()  # what app.py builds while importing; here on its own
t1e = time.perf_counter()
a = cdk.App(outdir=sys.argv[1], context=json.loads(sys.argv[2]))
default_app.build(a)
t2 = time.perf_counter()
cdk.Validations.of(a).add_plugins(validator)
if sys.argv[3] == "nag":
    from cdk_nag import AwsSolutionsChecks
    cdk.Validations.of(a).add_plugins(AwsSolutionsChecks(a))
a.synth()
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "engine": t1e - t1, "build": t2 - t1e, "synth": t3 - t2}))
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


PROFILE = """
import cProfile, collections, json, os, pstats, sys, traceback
from jsii._kernel.providers import process
phase = ["import"]
trips, callbacks, sites = collections.Counter(), collections.Counter(), collections.Counter()
send = process._NodeProcess.send

def site():
    for frame in reversed(traceback.extract_stack(limit=60)[:-3]):
        if "telemetry_shunt" in frame.filename or frame.filename.endswith("app.py"):
            return f"{os.path.relpath(frame.filename)}:{frame.name}"
    return "(aws_cdk / jsii)"

def counted(self, request, response_type):
    response = send(self, request, response_type)
    trips[phase[0]] += 1
    callbacks[phase[0]] += type(response).__name__ == "Callback"
    if phase[0] == "build":
        sites[site()] += 1
    return response

process._NodeProcess.send = counted
before = set(sys.modules)
import aws_cdk as cdk
import app as default_app
modules = sorted(m for m in set(sys.modules) - before if m.startswith("aws_cdk.") and m.count(".") == 1)
phase[0] = "build"
a = cdk.App(outdir=sys.argv[1], context=json.loads(sys.argv[2]))
profiler = cProfile.Profile()
profiler.enable()
default_app.build(a)
profiler.disable()
phase[0] = "synth"
from cdk_nag import AwsSolutionsChecks
cdk.Validations.of(a).add_plugins(AwsSolutionsChecks(a))
a.synth()
late = sorted(m for m in set(sys.modules) - before if m.startswith("aws_cdk.") and m.count(".") == 1 and m not in modules)
print(json.dumps({"trips": trips, "callbacks": callbacks, "sites": sites.most_common(int(sys.argv[3])),
                  "calls": pstats.Stats(profiler).total_calls, "modules": modules, "late_modules": late}))
"""


def bytecode_compiled() -> bool:
    """Whether aws_cdk's modules were compiled at install (else every run compiles them again)."""
    spec = importlib.util.find_spec("aws_cdk")  # a top-level spec: nothing is imported (no jsii start-up)
    source = Path(spec.submodule_search_locations[0]) / "aws_ec2" / "__init__.py"
    return Path(importlib.util.cache_from_source(str(source))).exists()


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock seconds and CPU seconds of the process and its children (the jsii Node process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, cwd=ROOT, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def script(code: str, *args: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=ENV, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def pairs(run_a, run_b, runs: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    a_times, b_times = [], []
    for i in range(runs):
        a_times.append(run_a(i))
        b_times.append(run_b(i))
    return a_times, b_times


def row(label: str, values: list[float], unit: str = "s") -> str:
    return (f"  {label:<44} median {statistics.median(values):7.2f} {unit}  "
            f"(min {min(values):.2f}, max {max(values):.2f})")


def profile(sites: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = script(PROFILE, f"{tmp}/profile", json.dumps(CONTEXT), str(sites))
    print("Default app, deterministic counts (jsii round-trips: Python->Node requests)")
    for phase in ("import", "build", "synth"):
        print(f"  {phase:<7} {out['trips'].get(phase, 0):6d} round-trips, "
              f"{out['callbacks'].get(phase, 0):4d} Node->Python callbacks")
    print(f"  Python function calls while building the construct tree: {out['calls']}")
    print(f"  aws_cdk modules imported by the app: {len(out['modules'])}; later, while building or synthesizing: "
          f"{', '.join(out['late_modules']) or 'none'}")
    print(f"  build round-trips by call site (innermost telemetry_shunt frame), top {sites}:")
    for where, count in out["sites"]:
        print(f"    {count:5d}  {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-terraform", action="store_true")
    parser.add_argument("--profile", action="store_true", help="print deterministic counts instead of timing")
    parser.add_argument("--sites", type=int, default=25, help="call sites listed by --profile")
    args = parser.parse_args()
    if args.profile:
        profile(args.sites)
        return
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
        ratios = [d[0] / b[0] for d, b in zip(default, baseline, strict=True)]
        cpu_ratios = [d[1] / b[1] for d, b in zip(default, baseline, strict=True)]
        print(f"CDK synthesis, {args.runs} alternating pairs, {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.1f} at the end; aws_cdk bytecode "
              f"{'compiled at install' if bytecode_compiled() else 'NOT compiled (every run compiles the sources)'}")
        print(row("one-bucket app (baseline)", [b[0] for b in baseline]))
        print(row("default app: python app.py", [d[0] for d in default]))
        print(row("ratio default / baseline, pair by pair", ratios, "x"))
        print(row("CPU seconds ratio (Python + Node), pair by pair", cpu_ratios, "x"))
        print(f"  issue 12 target: <= 1.40x -> {'meets' if statistics.median(ratios) <= 1.4 else 'MISSES'}")
        print("  default app split (in process):")
        print(row("  imports (aws_cdk, jsii start-up, app)", [p["import"] for p in plain]))
        print(row("  CDK's template-validation engine (built)", [p["engine"] for p in plain]))
        print(row("  building the construct tree", [p["build"] for p in plain]))
        print(row("  app.synth() without cdk-nag (validates)", [p["synth"] for p in plain]))
        print(row("  cdk-nag's share of app.synth()", [n["synth"] - p["synth"] for n, p in zip(nag, plain, strict=True)]))
        if args.skip_terraform:
            return
        timed([sys.executable, "-c", ONE_TF_RESOURCE, f"{tmp}/tfwarm"], ENV)
        tf_default, tf_baseline = pairs(
            lambda i: timed([sys.executable, "-c", SPLIT_TF, f"{tmp}/tf{i}"], ENV),
            lambda i: timed([sys.executable, "-c", ONE_TF_RESOURCE, f"{tmp}/tfone{i}"], ENV), args.runs)
        tf_split = [script(SPLIT_TF, f"{tmp}/tfsplit{i}") for i in range(args.runs)]
        print(f"Terraform flavour (CDK Terrain), {args.runs} alternating pairs")
        print(row("one-resource cdktn app (baseline)", [b[0] for b in tf_baseline]))
        print(row("default Terraform app (3 stacks)", [d[0] for d in tf_default]))
        print(row("ratio default / baseline, pair by pair", [d[0] / b[0] for d, b in zip(tf_default, tf_baseline, strict=True)],
                  "x"))
        print(row("  imports (cdktn, provider bindings)", [p["import"] for p in tf_split]))
        print(row("  build + synth", [p["build_synth"] for p in tf_split]))
        print(row("ratio Terraform app / CDK app (same run)",
                  [t[0] / c[0] for t, c in zip(tf_default, default, strict=True)], "x"))


if __name__ == "__main__":
    main()
