"""Kill switch, credentials off the caller's thread, fork, close() and interpreter exit."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import botocore.session
import pytest
from client_fakes import ACCESS_KEY, REGION, SECRET_KEY, Blackhole, balanced, fake_credentials, wait_until

from telemetry_shunt.client import KillSwitch, TelemetryClient

REPO = Path(__file__).resolve().parents[2]


# --- kill switch -----------------------------------------------------------------------------------


def test_kill_switch_off_at_start_up_sends_nothing(gateway, agent, make_client):
    agent.flags = {"telemetry": {"enabled": False}}
    client = make_client(gateway.url, kill_switch=agent.switch())
    assert wait_until(lambda: client.stats().state == "disabled")
    for i in range(100):
        client.emit("m", i)
    stats = client.stats()
    assert stats.queued == 0 and stats.dropped["disabled"] == 100 and balanced(stats)
    time.sleep(0.2)
    assert gateway.requests == [] and client.stats().requests == 0


def test_records_wait_for_the_first_kill_switch_read(gateway, agent, make_client):
    client = make_client(gateway.url, kill_switch=agent.switch())
    client.emit("early", 1)  # may land before the first read: buffered, then sent once "on" is read
    assert gateway.wait_for_records(1)[0]["name"] == "early"
    assert agent.reads >= 1


def test_kill_switch_flips_are_followed(gateway, agent, make_client, caplog):
    caplog.set_level(logging.INFO, logger="telemetry_shunt.client")
    client = make_client(gateway.url, kill_switch=agent.switch())
    assert wait_until(lambda: client.stats().state == "sending")
    client.emit("m", 1)
    assert gateway.wait_for_records(1)

    agent.flags = {"telemetry": {"enabled": False}}
    assert wait_until(lambda: client.stats().state == "disabled")
    client.emit("m", 2)
    assert "kill switch off" in caplog.text

    agent.flags = {"telemetry": {"enabled": True}}
    assert wait_until(lambda: client.stats().state == "sending")
    client.emit("m", 3)
    records = gateway.wait_for_records(2)
    assert [r["value"] for r in records] == [1.0, 3.0]
    stats = client.stats()
    assert stats.dropped["disabled"] == 1 and stats.sent == 2 and balanced(stats)


def test_the_per_az_flag_turns_one_zone_off(gateway, agent, make_client):
    agent.flags = {"telemetry": {"enabled": True}, "telemetry-eu-west-1b": {"enabled": False}}
    off = make_client(gateway.url, kill_switch=agent.switch(az="eu-west-1b"))
    on = make_client(gateway.url, kill_switch=agent.switch(az="eu-west-1a"))
    assert wait_until(lambda: off.stats().state == "disabled")
    assert wait_until(lambda: on.stats().state == "sending")


def test_an_unreadable_kill_switch_at_start_up_fails_closed_and_is_said_once(gateway, agent, make_client, caplog):
    caplog.set_level(logging.WARNING, logger="telemetry_shunt.client")
    agent.status = 500
    client = make_client(gateway.url, kill_switch=agent.switch())
    assert wait_until(lambda: client.stats().state == "disabled")
    assert wait_until(lambda: agent.reads >= 3)  # polled again and again ...
    warnings = [r for r in caplog.records if "AppConfig agent answered HTTP 500" in r.getMessage()]
    assert len(warnings) == 1  # ... but said once
    assert "telemetry off until the kill switch can be read" in warnings[0].getMessage()
    agent.status = 200
    assert wait_until(lambda: client.stats().state == "sending")


@pytest.mark.parametrize(("last_read", "state"), [(True, "sending"), (False, "disabled")])
def test_an_agent_outage_later_keeps_the_last_decision(gateway, agent, make_client, caplog, last_read, state):
    caplog.set_level(logging.WARNING, logger="telemetry_shunt.client")
    agent.flags = {"telemetry": {"enabled": last_read}}
    client = make_client(gateway.url, kill_switch=agent.switch())
    assert wait_until(lambda: client.stats().state == state)
    agent.status = 500
    reads = agent.reads
    assert wait_until(lambda: agent.reads >= reads + 3)  # polled through the outage
    assert client.stats().state == state
    assert "keeping the last kill-switch decision" in caplog.text
    client.emit("m", 1)
    if last_read:
        assert gateway.wait_for_records(1)
    else:
        time.sleep(0.2)
        assert gateway.requests == [] and client.stats().dropped["disabled"] == 1


def test_kill_switch_rejects_nonsense():
    with pytest.raises(ValueError, match="poll_interval_seconds must be positive"):
        KillSwitch(poll_interval_seconds=0)
    with pytest.raises(ValueError, match="endpoint must look like"):
        KillSwitch(agent_url="localhost:2772")


# --- construction and credentials ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "overrides", "message"),
    [
        ("gw.example", {}, "endpoint must look like"),
        ("https://gw.example/metrics", {}, "must not carry a path"),
        ("https://gw.example", {"region": ""}, "region must name"),
        ("https://gw.example", {"max_buffered_records": 0}, "max_buffered_records must be a positive integer"),
        ("https://gw.example", {"request_timeout_seconds": 0}, "request_timeout_seconds must be positive"),
        ("https://gw.example", {"base_backoff_seconds": 5, "max_backoff_seconds": 1}, "base_backoff <= max_backoff"),
    ],
)
def test_bad_arguments_are_refused_with_their_name(endpoint, overrides, message):
    options = {"region": REGION, "credentials": fake_credentials(), "kill_switch": None, **overrides}
    with pytest.raises(ValueError, match=message):
        TelemetryClient(endpoint, **options)


def test_credentials_are_resolved_on_the_worker_thread(gateway, make_client, monkeypatch):
    seen = []

    def slow_chain(self):
        seen.append(threading.current_thread())
        time.sleep(1.0)  # an instance-metadata lookup
        return fake_credentials()

    monkeypatch.setattr(botocore.session.Session, "get_credentials", slow_chain)
    started = time.monotonic()
    client = make_client(gateway.url, credentials=None)
    client.emit("m", 1)
    assert time.monotonic() - started < 0.8
    assert gateway.wait_for_records(1)
    assert seen and seen[0] is not threading.main_thread() and seen[0].name == "telemetry-shunt-client"


def test_credentials_are_not_looked_up_while_the_kill_switch_is_off(gateway, agent, make_client, monkeypatch):
    lookups = []
    monkeypatch.setattr(botocore.session.Session, "get_credentials", lambda self: lookups.append(1) or fake_credentials())
    agent.flags = {"telemetry": {"enabled": False}}
    client = make_client(gateway.url, credentials=None, kill_switch=agent.switch())
    assert wait_until(lambda: client.stats().state == "disabled")
    time.sleep(0.1)
    assert lookups == []
    agent.flags = {"telemetry": {"enabled": True}}
    client.emit("m", 1)  # may be dropped as disabled if it lands before the flip is read
    assert wait_until(lambda: lookups == [1])
    client.emit("m", 2)
    assert gateway.wait_for_records(1)


def test_no_credentials_stops_loudly(gateway, make_client, monkeypatch, caplog):
    caplog.set_level(logging.ERROR, logger="telemetry_shunt.client")
    monkeypatch.setattr(botocore.session.Session, "get_credentials", lambda self: None)
    client = make_client(gateway.url, credentials=None)
    client.emit("m", 1)
    assert wait_until(lambda: client.stats().state == "stopped")
    assert "no AWS credentials found" in caplog.text
    assert client.stats().dropped["config_error"] == 1 and gateway.requests == []


def test_the_client_package_imports_neither_boto3_nor_cdk():
    code = ("import sys, telemetry_shunt.client as c; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'aws_cdk', 'constructs', 'jsii')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
    sources = "".join(p.read_text() for p in (REPO / "telemetry_shunt" / "client").glob("*.py"))
    assert "import boto3" not in sources and "aws_cdk" not in sources


# --- fork ----------------------------------------------------------------------------------------------


def test_a_forked_child_gets_its_own_working_client(gateway, make_client):
    client = make_client(gateway.url)
    client.emit("parent", 1)
    assert gateway.wait_for_records(1)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: must not run pytest's teardown, so always _exit
        code = 1
        try:
            client.emit("child", 2)
            client.close(timeout=1.0)
            stats = client.stats()
            os.write(write_end, json.dumps({"emitted": stats.emitted, "sent": stats.sent,
                                            "balanced": balanced(stats)}).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child = json.loads(pipe.read() or "{}")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child == {"emitted": 1, "sent": 1, "balanced": True}  # the parent's counts stay the parent's
    assert sorted(r["name"] for r in gateway.records) == ["child", "parent"]

    client.emit("parent", 3)  # the parent's worker is untouched
    assert gateway.wait_for_records(3)
    assert client.stats().emitted == 2


# --- close() and exit ----------------------------------------------------------------------------------


def test_close_is_bounded_while_a_request_hangs(make_client):
    hole = Blackhole()
    try:
        client = make_client(hole.url, request_timeout_seconds=5.0)
        client.emit("m", 1)
        time.sleep(0.15)  # the worker is now inside a request that would take 5 s
        started = time.monotonic()
        client.close(timeout=0.3)
        assert time.monotonic() - started < 1.0
        client.close(timeout=0.1)  # twice is fine
    finally:
        hole.close()


def test_close_with_zero_timeout_returns_at_once(gateway, make_client):
    client = make_client(gateway.url, flush_interval_seconds=60.0)
    for i in range(10):
        client.emit("m", i)
    started = time.monotonic()
    client.close(timeout=0)
    assert time.monotonic() - started < 0.5
    assert wait_until(lambda: client.stats().queued == 0)
    stats = client.stats()
    assert balanced(stats) and stats.sent + stats.dropped["shutdown"] == 10


def _run_script(body: str, url: str) -> tuple[float, subprocess.CompletedProcess]:
    script = textwrap.dedent(f"""
        import sys, time
        from botocore.credentials import Credentials
        from telemetry_shunt.client import TelemetryClient
        client = TelemetryClient({url!r}, region={REGION!r}, credentials=Credentials({ACCESS_KEY!r}, {SECRET_KEY!r}),
                                 kill_switch=None, flush_interval_seconds=60.0, request_timeout_seconds=5.0,
                                 exit_timeout_seconds=0.5)
    """) + textwrap.dedent(body) + "\nprint(time.monotonic(), flush=True)\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, cwd=REPO)
    ended = time.monotonic()
    return ended - float(proc.stdout.split()[-1]), proc


def test_interpreter_exit_is_bounded_with_the_gateway_blackholed():
    hole = Blackhole()
    try:
        exit_took, proc = _run_script("for i in range(1000): client.emit('m', i)", hole.url)
    finally:
        hole.close()
    assert proc.returncode == 0, proc.stderr
    assert exit_took < 1.5


def test_interpreter_exit_flushes_to_a_healthy_gateway(gateway):
    _, proc = _run_script("for i in range(50): client.emit('m', i)", gateway.url)
    assert proc.returncode == 0, proc.stderr
    assert len(gateway.records) == 50


# --- an idle worker sleeps -------------------------------------------------------------------------------


class CountingEvent(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    def wait(self, timeout=None):
        self.waits += 1
        return super().wait(timeout)


def _wakeups_in(client: TelemetryClient, seconds: float) -> int:
    event = CountingEvent()
    client._wake = event  # the worker reads the attribute on every wait
    time.sleep(seconds)
    return event.waits


def test_a_stopped_client_does_not_spin(gateway, make_client):
    gateway.mode = "403"
    client = make_client(gateway.url)
    client.emit("m", 1)
    assert wait_until(lambda: client.stats().state == "stopped")
    assert _wakeups_in(client, 0.5) <= 2


def test_a_disabled_client_wakes_only_to_read_the_kill_switch(gateway, agent, make_client):
    agent.flags = {"telemetry": {"enabled": False}}
    client = make_client(gateway.url, kill_switch=agent.switch(poll_interval_seconds=0.2))
    assert wait_until(lambda: client.stats().state == "disabled")
    assert _wakeups_in(client, 0.5) <= 5


def test_an_idle_sending_client_polls_at_a_bounded_rate(gateway, make_client):
    client = make_client(gateway.url, flush_interval_seconds=1.0)
    assert _wakeups_in(client, 0.5) <= 8  # every 0.1 s at most
