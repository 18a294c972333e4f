"""docs/terraform.md stays true: its Python example runs, and its resource-mapping table names every resource
type both default apps deploy (CloudFormation from the CDK snapshots, Terraform from the Terraform ones)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("terraform")
ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "terraform.md").read_text()


@pytest.mark.parametrize("code", re.findall(r"```python\n(.*?)```", DOC, re.DOTALL)[:1])
def test_the_example_runs(code):
    exec(compile(code, "<docs/terraform.md>", "exec"), {"__name__": "__doc_example__"})


def table() -> dict[str, str]:
    section = DOC.split("## Resource mapping", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {re.match(r"\| `([^`]+)`", row).group(1): row.split("|")[2] for row in rows}


def test_every_cloudformation_type_of_the_cdk_default_app_is_mapped():
    types = {r["Type"] for f in (ROOT / "tests" / "stacks" / "snapshots").glob("*.json")
             for r in json.loads(f.read_text())["Resources"].values()}
    assert types - set(table()) == set()
    assert set(table()) - types == set(), "rows for types the CDK app no longer deploys"


def test_every_terraform_type_of_the_terraform_default_app_is_mapped():
    types = {t for f in (Path(__file__).parent / "snapshots").glob("*.json") for t in json.loads(f.read_text())["resource"]}
    mapped = {t for cell in table().values() for t in re.findall(r"`(aws_[a-z0-9_]+)`", cell)}
    assert types - mapped == set()
