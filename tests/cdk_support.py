"""Helpers for construct and stack tests: one synthesized app per module, templates as dicts."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk

ROOT = Path(__file__).resolve().parent.parent
CDK_CONTEXT: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]


def new_app(outdir: Path, **context: Any) -> cdk.App:
    """An App with the project's cdk.json context (feature flags and defaults), plus overrides."""
    return cdk.App(outdir=str(outdir), context={**CDK_CONTEXT, **context})


def template_of(stack: cdk.Stack) -> dict[str, Any]:
    return cdk.assertions.Template.from_stack(stack).to_json()


def resources(template: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == rtype}


def written_files(commands: list[str]) -> dict[str, str]:
    """The files an agent document's host step writes (``echo '<base64>' | base64 -d > path``), by path."""
    files = {}
    for line in commands:
        if line.startswith("echo '") and "| base64 -d >" in line:
            encoded, target = line.split("'")[1], line.split("'")[3]
            files[target.removesuffix(".new")] = base64.b64decode(encoded).decode()
    return files
