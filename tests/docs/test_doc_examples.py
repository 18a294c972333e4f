"""Every ```python block in the user docs runs as written (docs stay true)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
# Docs whose python blocks are complete programs (others show fragments on purpose).
RUNNABLE = ["quickstart.md", "policy-model.md", "alarms.md"]


def blocks():
    for name in RUNNABLE:
        for i, code in enumerate(_BLOCK.findall((DOCS / name).read_text())):
            yield pytest.param(code, id=f"{name}#{i + 1}")


@pytest.mark.parametrize("code", list(blocks()))
def test_doc_example_runs(code, capsys):
    exec(compile(code, "<doc>", "exec"), {"__name__": "__doc_example__"})
