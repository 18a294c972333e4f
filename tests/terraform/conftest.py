"""The Terraform flavour's tests: CDK Terrain runs the provider bindings in Node (an import costs ~13 s warm),
so every module here shares one xdist worker (``make test`` uses ``--dist loadgroup``) and imports them once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cdktn_provider_aws", reason="the terraform extra is not installed")


def synth(app: Any) -> dict[str, dict[str, Any]]:
    """Synthesize a cdktn App; every stack's cdk.tf.json by stack name."""
    app.synth()
    out = Path(app.outdir) / "stacks"
    return {d.name: json.loads((d / "cdk.tf.json").read_text()) for d in sorted(out.iterdir())}


def resources(doc: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return doc.get("resource", {}).get(rtype, {})
