"""The sandbox's ``systemctl`` (``sandbox_host/systemctl_stub.py``) under concurrent calls, as the install
document makes them: its step restarts the agent while the kill-switch watcher it just restarted starts it.
systemd runs one job at a time per unit, so every call succeeds and the unit runs once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from telemetry_shunt.agent_rollout import sandbox_host

STUB = Path(sandbox_host.__file__).with_name("systemctl_stub.py")
pytestmark = pytest.mark.slow


def supervisors(root: Path) -> list[int]:
    """Pids of this root's unit supervisors (each is one running unit instance)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if b"__supervise" in cmdline and f"SANDBOX_HOST_ROOT={root}".encode() in environ:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("round_", range(4))
def test_concurrent_starts_and_restarts_all_succeed_and_run_the_unit_once(tmp_path: Path, round_: int) -> None:
    unit_dir = tmp_path / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    (unit_dir / "agent.service").write_text("[Service]\nExecStart=/bin/sleep 600\n")
    env = dict(os.environ, SANDBOX_HOST_ROOT=str(tmp_path), SANDBOX_PID=str(os.getpid()))

    def systemctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(STUB), *args], env=env, capture_output=True, text=True,
                              timeout=120)

    verbs = ["start", "restart"] * 4
    try:
        with ThreadPoolExecutor(len(verbs)) as pool:
            results = list(pool.map(lambda verb: systemctl(verb, "agent"), verbs))
        for verb, done in zip(verbs, results, strict=True):
            assert done.returncode == 0, f"systemctl {verb}: {done.stderr}"
        # every supervisor is spawned before its systemctl call returns: what runs now is all that will
        assert len(supervisors(tmp_path)) == 1
        assert systemctl("is-active", "agent").stdout.strip() in ("active", "activating")
        leftovers = [p.name for p in (tmp_path / "run/sim-systemd").iterdir() if p.name.endswith(".tmp")]
        assert leftovers == []
    finally:
        systemctl("stop", "agent")
        stray = supervisors(tmp_path)
        for pid in stray:  # a duplicate the stop could not see (its pid file was overwritten): no leaked process
            os.killpg(pid, signal.SIGKILL)
    assert stray == []
