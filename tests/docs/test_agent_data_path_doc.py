"""docs/agent-data-path.md: its python examples run, and the budget defaults it states are the code's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from telemetry_shunt.core import host_budgets as hb

DOC = Path(__file__).resolve().parents[2] / "docs" / "agent-data-path.md"
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


@pytest.mark.parametrize("code", [pytest.param(c, id=f"block{i + 1}") for i, c in enumerate(_BLOCK.findall(DOC.read_text()))])
def test_doc_example_runs(code: str) -> None:
    exec(compile(code, "<agent-data-path.md>", "exec"), {"__name__": "__doc_example__"})


def test_defaults_stated_in_the_docs() -> None:
    doc = DOC.read_text()
    d = hb.AgentBudgets()
    for row in (f"| CPU | `cpu_quota_percent` | {d.cpu_quota_percent} |", f"| Memory | `memory_max_mib` | {d.memory_max_mib} |",
                f"| Disk I/O | `io_weight` | {d.io_weight} |", f"| Scheduling | `nice` | {d.nice} |",
                f"| Bandwidth to Lattice | `bandwidth_mbit` | {d.bandwidth_mbit} |",
                f"| Queue in memory | `queue_memory_mib` | {d.queue_memory_mib} |",
                f"| Queue on disk | `queue_disk_mib` | {d.queue_disk_mib} |"):
        assert row in doc
    assert f"`CPUQuota={d.cpu_quota_percent}%`" in doc
