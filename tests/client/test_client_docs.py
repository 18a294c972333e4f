"""The python examples in docs/client.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)


def test_the_doc_has_examples():
    assert len(BLOCKS) >= 3
    assert any("demo.requests" in block for block in BLOCKS) and any("client.count(" in block for block in BLOCKS)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"client.md#{i + 1}" for i in range(len(BLOCKS))])
def test_doc_example_runs(code, capsys):
    exec(compile(code, "<docs/client.md>", "exec"), {"__name__": "__doc_example__"})
    if "demo.requests" in code:  # the self-contained example: three signed requests, all sent
        out = capsys.readouterr().out
        assert out.count("POST /metrics AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") == 3
        assert "sent=2500" in out and "dropped_total=0" in out
