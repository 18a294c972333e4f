"""Render the collector configs to files, to validate them with the pinned images where Docker runs.

    .venv/bin/python bench/render_collector_configs.py --out /tmp/configs
    # then, on a machine with Docker (no binary runs in this repository):
    docker run --rm -e VENDOR_API_KEY=x -e ARCHIVE_BUCKET=b -e AWS_REGION=us-east-1 \\
        -v /tmp/configs:/c <vector image> validate --no-environment /c/vector.json
    docker run --rm -e VENDOR_API_KEY=x -e ARCHIVE_BUCKET=b -e AWS_REGION=us-east-1 \\
        -e COLLECTOR_METRICS_LOG_GROUP=g -v /tmp/configs:/c <collector image> validate --config=/c/otel.yaml

It also checks each config against the pinned releases' option reference (tests/reference/collectors.json,
tools/collector_reference.py) and times rendering and the check, which the suite runs on every combination,
as ratios against a JSON round trip of the same config timed in the same run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from telemetry_shunt.core import collectors as cc
from telemetry_shunt.core import contract
from telemetry_shunt.core.images import IMAGES
from tools import collector_reference as cr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ephemeral-storage-gib", type=int, default=50)
    args = parser.parse_args()
    sinks = [
        cc.OtlpHttpSink(endpoint="https://otlp.vendor.example", headers={"api-key": cc.SecretEnv("VENDOR_API_KEY")}),
        cc.S3ArchiveSink(),
    ]
    paths = {"vector": [contract.METRICS_PATH], "otel": list(contract.OTLP_PATHS)}
    args.out.mkdir(parents=True, exist_ok=True)
    reference = cr.load_reference()
    for kind, name in (("vector", "vector.json"), ("otel", "otel.yaml")):
        config = cc.render_config(kind, paths=paths[kind], sinks=sinks, ephemeral_storage_gib=args.ephemeral_storage_gib)
        baseline = _per_call(lambda c=config: json.loads(json.dumps(c)))
        render = _per_call(lambda k=kind: cc.render_config(
            k, paths=paths[k], sinks=sinks, ephemeral_storage_gib=args.ephemeral_storage_gib))
        check = _per_call(lambda k=kind, c=config: cr.check_config(k, c, reference))
        problems = cr.check_config(kind, config, reference)
        (args.out / name).write_text(json.dumps(config, indent=2))  # JSON is valid YAML for the collector
        print(f"{kind}: {args.out / name} ({IMAGES[kind]}); reference check: {len(problems)} problem(s); "
              f"render {render / baseline:.1f}x and check {check / baseline:.1f}x a JSON round trip "
              f"({baseline * 1e6:.0f} us)")
        for problem in problems:
            print("  ", problem)


def _per_call(fn, repeat: int = 50) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat

if __name__ == "__main__":
    main()
