"""Synthesis time of the default app (target: under 10 s warm on the project's 2-core machine).

Measures, in separate fresh processes so each run pays the same start-up:
- ``python app.py`` (what ``cdk synth`` runs), cold and warm (second and later runs: OS caches warm),
- the in-process ``app.synth()`` alone (construct tree + cdk-nag), excluding interpreter and jsii start-up.
Prints a small table; pass ``--runs N`` (default 5).
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

_INPROCESS = """
import json, sys, time, os
t0 = time.perf_counter()
import aws_cdk as cdk
import app as default_app
t1 = time.perf_counter()
a = cdk.App(outdir=sys.argv[1], context=json.loads(sys.argv[2]))
default_app.build(a)
from aws_cdk import Validations
from cdk_nag import AwsSolutionsChecks
Validations.of(a).add_plugins(AwsSolutionsChecks(a))
a.synth()
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "synth": t2 - t1}))
"""


def run_app(outdir: str) -> float:
    env = dict(os.environ, CDK_OUTDIR=outdir, CDK_CONTEXT_JSON=json.dumps(CONTEXT),
               JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="18,20")
    start = time.perf_counter()
    subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def run_inprocess(outdir: str) -> dict[str, float]:
    env = dict(os.environ, JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="18,20", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", _INPROCESS, outdir, json.dumps(CONTEXT)], cwd=ROOT, env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cold = run_app(f"{tmp}/cold")
        warm = [run_app(f"{tmp}/w{i}") for i in range(args.runs)]
        parts = [run_inprocess(f"{tmp}/p{i}") for i in range(args.runs)]
    print(f"default app synthesis ({args.runs} warm runs, {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f})")
    print(f"  python app.py, first run        {cold:6.2f} s")
    print(f"  python app.py, warm median      {statistics.median(warm):6.2f} s  (min {min(warm):.2f}, max {max(warm):.2f})")
    print(f"    of which imports (jsii start)  {statistics.median(p['import'] for p in parts):6.2f} s")
    print(f"    of which build + nag + synth   {statistics.median(p['synth'] for p in parts):6.2f} s")
    target = 10.0
    verdict = "meets" if statistics.median(warm) < target else "MISSES"
    print(f"  target: warm < {target:.0f} s -> {verdict}")


if __name__ == "__main__":
    main()
