"""Render the collector configs to files, to validate them with the pinned images where Docker runs.

    .venv/bin/python bench/render_collector_configs.py --out /tmp/configs
    # then, on a machine with Docker (no binary runs in this repository):
    docker run --rm -e VENDOR_API_KEY=x -e ARCHIVE_BUCKET=b -e AWS_REGION=us-east-1 \\
        -v /tmp/configs:/c <vector image> validate --no-environment /c/vector.json
    docker run --rm -e VENDOR_API_KEY=x -e ARCHIVE_BUCKET=b -e AWS_REGION=us-east-1 \\
        -e COLLECTOR_METRICS_LOG_GROUP=g -v /tmp/configs:/c <collector image> validate --config=/c/otel.yaml

It also times rendering, which the construct does once per collector at synth time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from telemetry_shunt.core import collectors as cc
from telemetry_shunt.core import contract
from telemetry_shunt.core.images import IMAGES


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
    for kind, name in (("vector", "vector.json"), ("otel", "otel.yaml")):
        start = time.perf_counter()
        for _ in range(100):
            config = cc.render_config(kind, paths=paths[kind], sinks=sinks, ephemeral_storage_gib=args.ephemeral_storage_gib)
        per_render_ms = (time.perf_counter() - start) * 10
        (args.out / name).write_text(json.dumps(config, indent=2))  # JSON is valid YAML for the collector
        print(f"{kind}: {args.out / name} ({IMAGES[kind]}), render {per_render_ms:.2f} ms")


if __name__ == "__main__":
    main()
