"""docs/kill-switch.md: the propagation-budget example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "kill-switch.md"


def test_propagation_budget_example_runs(capsys) -> None:
    text = DOC.read_text()
    section = text[text.index("## Propagation budget"):]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert blocks, "the section has a python example"
    exec(compile(blocks[0], str(DOC), "exec"), {})  # noqa: S102 - our own documentation
    out = capsys.readouterr().out
    assert re.fullmatch(r"after the deployment: at most \d+ s \(calls bounded to \d+ s\)\n", out)


def test_every_failure_tag_in_the_table_is_one_the_watcher_logs() -> None:
    from telemetry_shunt.core import hostside

    watcher = hostside.render_killswitch_watcher(hostside.HostConfig(agent_service="amazon-cloudwatch-agent"))
    tags = set(re.findall(r"`reason=([a-z-]+)`", DOC.read_text()))
    assert tags >= {"agent-unreachable", "agent-timeout", "agent-garbage", "imds-unavailable", "systemctl-timeout"}
    logged = set(re.findall(r"fail ([a-z-]+) ", watcher))
    assert tags <= logged, tags - logged
