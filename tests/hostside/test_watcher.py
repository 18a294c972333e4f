"""Issue 15: the real kill-switch watcher (loop mode) against a fake AppConfig agent, fake IMDS and a stub
systemctl, one case per failure the issue measured.

All scenarios run at once, each in its own thread with its own watcher process and fakes (module fixture), so
the module takes about as long as its slowest scenario; each test then reports its own scenario. Assertions
are on ordering and eventual outcomes; timeouts only guard against hangs. The short poll is the watcher's
test-only override (TELEMETRY_SHUNT_TEST_POLL_SECONDS).
"""

from __future__ import annotations

import shutil
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.hostside.watcher_fakes import WatcherHost, wait_until

pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("bash", "curl", "timeout", "setsid", "awk")),
                                reason="needs bash, curl, timeout, setsid, awk")

ON = {"telemetry": {"enabled": True}}
OFF = {"telemetry": {"enabled": False}}
AZ_OFF = {"telemetry": {"enabled": True}, "telemetry-us-east-1a": {"enabled": False}}


def slow_stop(host: WatcherHost) -> None:
    """A stop that takes longer than the systemctl bound: the watcher gives up waiting, keeps polling, and the
    unit ends up stopped; a flip back on is not held up behind it."""
    host.start()
    wait_until(lambda: host.state() == "active", "agent started")
    host.knob("stop-seconds", 3)
    host.agent.flags = OFF
    wait_until(lambda: host.reasons("systemctl-timeout") >= 1, "a bounded (timed-out) stop")
    polls_at_timeout = host.agent.requests
    assert host.state() == "deactivating"
    wait_until(lambda: host.agent.requests > polls_at_timeout, "a poll while the stop is still running")
    wait_until(lambda: host.state() == "inactive", "the stop job finishing")
    host.knob("stop-seconds", 0)
    host.agent.flags = ON
    wait_until(lambda: host.state() == "active", "agent started again")


def failing_start_later_succeeds(host: WatcherHost) -> None:
    """A failed start is retried on every poll until it works."""
    host.knob("start-failures", 3)
    host.start()
    wait_until(lambda: host.state() == "active", "agent finally started")
    assert len(host.calls("start")) == 4
    assert host.reasons("systemctl-start-failed") == 3
    assert host.decision() == "on"


def imds_fails_during_az_kill(host: WatcherHost) -> None:
    """The zone is learned once; with IMDS down, a per-AZ kill stays in force (also across a watcher restart)."""
    host.agent.flags = AZ_OFF
    host.set_state("active")  # e.g. started by a package's post-install
    host.start()
    wait_until(lambda: host.state() == "inactive", "per-AZ kill applied")
    host.wait_polls(2)
    zone_reads = host.imds.zone_reads
    assert zone_reads == 1
    host.imds.failing = True
    host.wait_polls(5)
    host.stop()
    host.start()  # a restarted watcher (Restart=always) with IMDS still down
    host.wait_polls(5)
    assert host.calls("start") == []
    assert host.state() == "inactive"
    assert host.reasons("imds-unavailable") == 0
    assert host.imds.zone_reads == zone_reads
    assert (host.root / "state" / "availability-zone").read_text() == "us-east-1a\n"


def imds_down_at_first_boot(host: WatcherHost) -> None:
    """No zone known and IMDS down: fail closed (never "global flag only"); the zone is learned when IMDS is back."""
    host.imds.failing = True
    host.agent.flags = ON
    host.start()
    wait_until(lambda: host.reasons("imds-unavailable") >= 3, "three polls without a zone")
    assert host.calls("start") == []
    assert host.decision() == "off"
    assert host.agent.requests == 0  # nothing to decide without the zone
    host.imds.failing = False
    wait_until(lambda: host.state() == "active", "agent started once the zone is known")


def agent_slow(host: WatcherHost) -> None:
    """An agent slower than the bound: logged as agent-timeout every poll, last decision kept, then obeyed."""
    host.start()
    wait_until(lambda: host.state() == "active", "agent started")
    host.agent.delay = 2.0
    host.agent.flags = OFF
    wait_until(lambda: host.reasons("agent-timeout") >= 2, "two timed-out reads")
    assert host.state() == "active"
    assert host.calls("stop") == []
    host.agent.delay = 0.0
    wait_until(lambda: host.state() == "inactive", "the kill applied once the agent answers")


def agent_garbage(host: WatcherHost) -> None:
    """A body that is not a JSON object: agent-garbage, last decision kept."""
    host.agent.flags = OFF
    host.start()
    wait_until(lambda: host.decision() == "off", "first decision")
    host.agent.raw = b"<html>502 Bad Gateway</html>"
    host.agent.flags = ON
    wait_until(lambda: host.reasons("agent-garbage") >= 2, "two garbage reads")
    assert host.calls("start") == []
    host.agent.raw = b"[1, 2]"
    wait_until(lambda: host.reasons("agent-garbage") >= 4, "a JSON array is garbage too")
    assert host.calls("start") == []
    host.agent.raw = None
    wait_until(lambda: host.state() == "active", "started once the profile is readable")


def agent_down(host: WatcherHost) -> None:
    """Agent refusing connections: agent-unreachable, last decision kept; when it is back, obeyed."""
    host.start()
    wait_until(lambda: host.state() == "active", "agent started")
    host.agent.down()
    wait_until(lambda: host.reasons("agent-unreachable") >= 2, "two refused reads")
    assert host.state() == "active"
    host.agent.flags = AZ_OFF
    host.agent.up()
    wait_until(lambda: host.state() == "inactive", "per-AZ kill applied after the outage")


def activating_unit(host: WatcherHost) -> None:
    """A unit in activating (e.g. auto-restart) is neither started twice while on nor missed by a kill."""
    host.set_state("activating")
    host.start()
    host.wait_polls(3)
    assert host.calls("start") == []
    host.agent.flags = OFF
    wait_until(lambda: host.state() == "inactive", "activating unit stopped by the kill")
    assert host.calls("stop")
    # and a unit that something else is reloading or stopping is stopped too
    for state in ("reloading", "deactivating"):
        host.set_state(state)
        wait_until(lambda: host.state() == "inactive", f"{state} unit stopped")


SCENARIOS: dict[str, Callable[[WatcherHost], None]] = {f.__name__: f for f in (
    slow_stop, failing_start_later_succeeds, imds_fails_during_az_kill, imds_down_at_first_boot,
    agent_slow, agent_garbage, agent_down, activating_unit,
)}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """Runs every scenario concurrently; name -> None (passed) or the failure with the watcher's log."""

    def run(name: str) -> str | None:
        host = WatcherHost(Path(tmp_path_factory.mktemp(name)))
        try:
            SCENARIOS[name](host)
            return None
        except Exception:
            return f"{traceback.format_exc()}\n--- watcher log ---\n{host.log_text()}\n--- systemctl calls ---\n" + \
                "\n".join(host.calls())
        finally:
            host.close()

    with ThreadPoolExecutor(max_workers=len(SCENARIOS)) as pool:
        return dict(zip(SCENARIOS, pool.map(run, SCENARIOS), strict=True))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_watcher_scenario(name: str, outcomes: dict[str, str | None]) -> None:
    failure = outcomes[name]
    assert failure is None, failure


def test_the_gate_lets_the_agent_start_only_once_the_kill_switch_decided_on(tmp_path: Path) -> None:
    """--gate (the agent unit's ExecCondition): 1 before any decision this boot and while off, 0 once on; and the
    decision is recorded before the watcher starts the agent, so the watcher's own start passes the gate."""
    import subprocess

    host = WatcherHost(tmp_path)
    try:
        def gate() -> subprocess.CompletedProcess:
            return subprocess.run(["bash", str(host.script), "--gate"], env=host.env(), capture_output=True, text=True,
                                  timeout=60)

        first = gate()
        assert first.returncode == 1 and "has not decided on for this boot" in first.stderr
        host.agent.flags = OFF
        once = subprocess.run(["bash", str(host.script), "--once"], env=host.env(), capture_output=True, text=True,
                              timeout=60)
        assert once.stdout.strip() == "off" and gate().returncode == 1
        host.agent.flags = ON
        # a systemctl whose start of the agent runs the gate, as systemd's ExecCondition does
        (host.stub / "systemctl").write_text((host.stub / "systemctl").read_text().replace(
            "  start|restart)\n", f"  start|restart)\n    bash '{host.script}' --gate || exit 0\n"))
        once = subprocess.run(["bash", str(host.script), "--once"], env=host.env(), capture_output=True, text=True,
                              timeout=60)
        assert once.stdout.strip() == "on" and host.state() == "active" and gate().returncode == 0
    finally:
        host.close()


def test_concurrent_checks_never_trip_over_each_others_state_files(tmp_path: Path) -> None:
    """The install step runs ``--once`` while the service it just restarted polls: writers of the same state
    files at the same moment. Each goes through a temporary file of its own, so none fails to rename, none
    leaves a half-written or foreign file behind, and every run decides."""
    import subprocess

    host = WatcherHost(tmp_path)
    # Twelve checks at once on a busy machine may take longer than the fakes' usual 0.5-1 s bounds, and a check
    # that timed out would decide off for a reason this test is not about: here the bounds only guard a hang.
    env = {**host.env(), "TELEMETRY_SHUNT_AGENT_TIMEOUT": "60", "TELEMETRY_SHUNT_IMDS_TIMEOUT": "60",
           "TELEMETRY_SHUNT_SYSTEMCTL_TIMEOUT": "60"}
    try:
        host.agent.flags = ON
        for _ in range(3):
            runs = [subprocess.Popen(["bash", str(host.script), "--once"], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True) for _ in range(12)]
            results = [(run.communicate(timeout=120), run.returncode) for run in runs]
            for (out, err), code in results:
                assert code == 0 and out.strip() == "on", err
                assert "mv:" not in err and "No such file" not in err, err
        assert host.decision() == "on"
        assert (host.root / "state" / "availability-zone").read_text() == "us-east-1a\n"
        decision, at = (host.root / "state" / "last-known-good").read_text().split()
        assert decision == "on" and at.isdigit()
        leftovers = [p.name for p in host.root.rglob("*.tmp*")]
        assert leftovers == []
    finally:
        host.close()
