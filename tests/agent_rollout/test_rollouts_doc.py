"""docs/rollouts.md: its Python examples run, and its IAM example restricts the tag the engine trusts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from telemetry_shunt.core.contract import FLEET_TAG_KEY

DOC = Path(__file__).resolve().parents[2] / "docs" / "rollouts.md"
_BLOCK = re.compile(r"```(python|json)\n(.*?)```", re.DOTALL)


def _blocks(kind: str) -> list[str]:
    return [code for lang, code in _BLOCK.findall(DOC.read_text()) if lang == kind]


@pytest.mark.parametrize("code", _blocks("python"), ids=lambda c: c.splitlines()[0][:40])
def test_python_examples_run(code):
    exec(compile(code, str(DOC), "exec"), {"__name__": "__doc_example__"})


def test_the_policy_example_denies_setting_the_fleet_tag_key_the_construct_trusts():
    (policy,) = [json.loads(code) for code in _blocks("json")]
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Deny"
    assert {"ec2:CreateTags", "ec2:DeleteTags"} == set(statement["Action"])
    assert statement["Condition"]["ForAnyValue:StringEquals"]["aws:TagKeys"] == [FLEET_TAG_KEY]
    assert "aws:PrincipalArn" in statement["Condition"]["ArnNotLike"]
