"""Kill switch, credentials off the caller's thread, fork, close() and interpreter exit."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import botocore.session
import pytest
from client_fakes import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    Blackhole,
    SimulatedClock,
    balanced,
    fake_credentials,
    refused_url,
    wait_until,
)

from telemetry_shunt.client import KillSwitchSource, TelemetryClient
from telemetry_shunt.core.contract import APPCONFIG_MIN_POLL_SECONDS

REPO = Path(__file__).resolve().parents[2]


# --- kill switch (a simulated clock drives the poll schedule: a tick is a read, whatever the load) -----


def test_kill_switch_off_at_start_up_sends_nothing(gateway, agent, make_client):
    agent.flags = {"telemetry": {"enabled": False}}
    client = make_client(gateway.url, kill_switch=agent.switch(), clock=SimulatedClock())
    assert wait_until(lambda: client.stats().state == "disabled")
    for i in range(100):
        client.emit("m", i)
    stats = client.stats()
    assert stats.queued == 0 and stats.dropped["disabled"] == 100 and balanced(stats)
    client.close(timeout=1.0)  # a final flush would send anything buffered
    assert gateway.requests == [] and client.stats().requests == 0


def test_records_wait_for_the_first_kill_switch_read(gateway, agent, make_client):
    client = make_client(gateway.url, kill_switch=agent.switch(), clock=SimulatedClock())
    client.emit("early", 1)  # may land before the first read: buffered, then sent once "on" is read
    assert gateway.wait_for_records(1)[0]["name"] == "early"
    assert agent.reads >= 1


def test_kill_switch_flips_are_followed(gateway, agent, make_client, caplog):
    caplog.set_level(logging.INFO, logger="telemetry_shunt.client")
    clock = SimulatedClock()
    client = make_client(gateway.url, kill_switch=agent.switch(), clock=clock)
    assert wait_until(lambda: client.stats().state == "sending")
    client.emit("m", 1)
    assert gateway.wait_for_records(1)

    agent.flags = {"telemetry": {"enabled": False}}
    clock.tick(15)  # the next read is due
    client.emit("m", 2)  # dropped from the read on, even before the worker has noticed
    assert wait_until(lambda: client.stats().state == "disabled")
    assert "kill switch off" in caplog.text

    agent.flags = {"telemetry": {"enabled": True}}
    clock.tick(15)
    assert wait_until(lambda: client.stats().state == "sending")
    client.emit("m", 3)
    records = gateway.wait_for_records(2)
    assert [r["value"] for r in records] == [1.0, 3.0]
    assert wait_until(lambda: client.stats().sent == 2)  # the gateway has it; the client reads the answer next
    stats = client.stats()
    assert stats.dropped["disabled"] == 1 and balanced(stats)


def test_the_flags_are_read_every_poll_interval_and_no_sooner(gateway, agent, make_client):
    clock = SimulatedClock()
    make_client(gateway.url, kill_switch=agent.switch(poll_interval_seconds=20), clock=clock)
    clock.wait_for_sleeps(1)
    assert agent.reads == 1  # at start-up
    clock.advance(19.9)
    time.sleep(0.1)  # room for a wrong early read to show (a pass here never depends on speed)
    assert agent.reads == 1
    clock.tick(0.1)
    assert agent.reads == 2
    for n in range(3, 6):
        clock.tick(20)
        assert agent.reads == n


def test_the_flags_are_read_on_their_own_schedule_while_a_request_hangs(gateway, agent, make_client):
    # The send path is stuck in a request for a minute; the kill switch is still read every interval and
    # an "off" takes effect on the caller's side at once.
    gateway.mode = "never"
    clock = SimulatedClock()
    client = make_client(gateway.url, kill_switch=agent.switch(), clock=clock, request_timeout_seconds=60.0)
    assert wait_until(lambda: client.stats().state == "sending")
    client.emit("m", 1)
    gateway.wait_for_requests(1)  # the worker is now inside a request that will take 60 s
    agent.flags = {"telemetry": {"enabled": False}}
    for n in (2, 3, 4):
        clock.tick(15)
        assert agent.reads == n
    client.emit("m", 2)
    assert client.stats().dropped["disabled"] == 1
    assert len(gateway.requests) == 1


def test_the_per_az_flag_turns_one_zone_off(gateway, agent, make_client):
    agent.flags = {"telemetry": {"enabled": True}, "telemetry-eu-west-1b": {"enabled": False}}
    off = make_client(gateway.url, kill_switch=agent.switch(az="eu-west-1b"), clock=SimulatedClock())
    on = make_client(gateway.url, kill_switch=agent.switch(az="eu-west-1a"), clock=SimulatedClock())
    assert wait_until(lambda: off.stats().state == "disabled")
    assert wait_until(lambda: on.stats().state == "sending")


def test_an_unreadable_kill_switch_at_start_up_fails_closed_and_is_said_once(gateway, agent, make_client, caplog):
    caplog.set_level(logging.WARNING, logger="telemetry_shunt.client")
    agent.status = 500
    clock = SimulatedClock()
    client = make_client(gateway.url, kill_switch=agent.switch(), clock=clock)
    assert wait_until(lambda: client.stats().state == "disabled")
    clock.tick(15)
    clock.tick(15)
    assert agent.reads == 3  # polled again and again ...
    warnings = [r for r in caplog.records if "AppConfig agent answered HTTP 500" in r.getMessage()]
    assert len(warnings) == 1  # ... but said once
    assert "telemetry off until the kill switch can be read" in warnings[0].getMessage()
    agent.status = 200
    clock.tick(15)
    assert wait_until(lambda: client.stats().state == "sending")


@pytest.mark.parametrize(("last_read", "state"), [(True, "sending"), (False, "disabled")])
def test_an_agent_outage_later_keeps_the_last_decision(gateway, agent, make_client, caplog, last_read, state):
    caplog.set_level(logging.WARNING, logger="telemetry_shunt.client")
    agent.flags = {"telemetry": {"enabled": last_read}}
    clock = SimulatedClock()
    client = make_client(gateway.url, kill_switch=agent.switch(), clock=clock)
    assert wait_until(lambda: client.stats().state == state)
    agent.status = 500
    for _ in range(3):
        clock.tick(15)  # polled through the outage
    assert agent.reads == 4
    assert client.stats().state == state
    assert "keeping the last kill-switch decision" in caplog.text
    client.emit("m", 1)
    if last_read:
        assert gateway.wait_for_records(1)
    else:
        client.close(timeout=1.0)
        assert gateway.requests == [] and client.stats().dropped["disabled"] == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"poll_interval_seconds": 0}, "poll_interval_seconds must be a finite number of at least 15"),
        ({"poll_interval_seconds": 14.9}, "poll_interval_seconds"),
        ({"poll_interval_seconds": float("inf")}, "poll_interval_seconds"),
        ({"poll_interval_seconds": float("nan")}, "poll_interval_seconds"),
        ({"poll_interval_seconds": True}, "poll_interval_seconds"),
        ({"poll_interval_seconds": "15"}, "poll_interval_seconds"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"timeout_seconds": float("nan")}, "timeout_seconds"),
        ({"timeout_seconds": 60}, "timeout_seconds"),
        ({"agent_url": "localhost:2772"}, "agent_url: endpoint must look like"),
        ({"agent_url": 2772}, "agent_url must be"),
        ({"az": "us-east-1a\n"}, "az must be"),
        ({"az": "us-east-1"}, "az must be"),
        ({"application": ""}, "application must be"),
        ({"profile": "kill/switch"}, "profile must be"),
    ],
)
def test_kill_switch_source_rejects_nonsense(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        KillSwitchSource(**overrides)


def test_kill_switch_source_is_not_the_constructs_kill_switch():
    import telemetry_shunt.client as client_package

    assert not hasattr(client_package, "KillSwitch")  # one name per concept: KillSwitch is the CDK construct
    assert KillSwitchSource().poll_interval_seconds == APPCONFIG_MIN_POLL_SECONDS


# --- construction and credentials ----------------------------------------------------------------------


NAN, INF = float("nan"), float("inf")

# argument -> bad values. Each must raise ValueError naming the argument at construction, before any thread
# starts: never accepted and failing later in the worker.
BAD_ARGUMENTS = {
    "endpoint": [5, None, b"https://gw.example", "gw.example", "ftp://gw.example", "https://gw.example/metrics",
                 "https://gw.example?x=1", "https://gw.example\n", "https://gw\t.example", "https://gw.example:99999",
                 "https:// gw.example", "https://gw.exämple", ""],
    "region": ["", None, 1, "us-east-1\n", "US-EAST-1", "us-east-\u0661", "us_east_1", "useast1"],
    "credentials": ["AKID:secret", ("AKID", "secret")],
    "kill_switch": ["http://localhost:2772", True],
    "max_buffered_records": [0, -1, True, 1.5, "10", 10**9, NAN],
    "max_batch_records": [0, True, 10_001, 100.0],
    "flush_interval_seconds": [0, -1, NAN, INF, True, "1", None, 7200],
    "request_timeout_seconds": [0, INF, NAN, -0.5, False, 301],
    "max_attempts": [0, True, 2.0, 101],
    "failure_threshold": [0, False, 3.0],
    "base_backoff_seconds": [0, NAN, INF, True],
    "max_backoff_seconds": [INF, NAN, 0, 1e9],
    "exit_timeout_seconds": [NAN, -1, INF, True, "1"],
    "compress": [1, "yes", None],
    "ssl_context": ["default", True],
    "delivery": ["exactly_once", None, "AT_MOST_ONCE", True],
    "clock": [object(), "monotonic"],
}
CASES = [(name, value) for name, values in BAD_ARGUMENTS.items() for value in values]


# Ids must be the same in every xdist worker: a bare object's repr carries its address, so name it by type.
@pytest.mark.parametrize(("argument", "value"), CASES,
                         ids=[f"{n}={v!r}"[:60] if type(v) is not object else f"{n}=object()" for n, v in CASES])
def test_each_bad_argument_is_refused_at_construction_naming_it(argument, value):
    options = {"region": REGION, "credentials": fake_credentials(), "kill_switch": None, argument: value}
    endpoint = options.pop("endpoint", "https://gw.example")
    threads = threading.active_count()
    with pytest.raises(ValueError) as raised:
        TelemetryClient(endpoint, **options)
    assert str(raised.value).startswith(argument), str(raised.value)
    assert type(raised.value) is ValueError
    assert threading.active_count() == threads  # nothing started


def test_backoffs_in_the_wrong_order_are_refused():
    with pytest.raises(ValueError, match="base_backoff_seconds must not exceed max_backoff_seconds"):
        TelemetryClient("https://gw.example", region=REGION, kill_switch=None, base_backoff_seconds=5,
                        max_backoff_seconds=1)


def test_good_arguments_of_every_kind_are_accepted(make_client):
    client = make_client("https://gw.example:8443", region="us-gov-west-1", max_buffered_records=1,
                         max_batch_records=10_000, flush_interval_seconds=3600, request_timeout_seconds=0.001,
                         exit_timeout_seconds=0, delivery="at_least_once", compress=False)
    assert client.stats().state == "sending"
    assert not math.isnan(client._request_timeout)


def test_credentials_are_resolved_on_the_worker_thread(gateway, make_client, monkeypatch):
    seen = []
    release = threading.Event()

    def slow_chain(self):  # an instance-metadata lookup that takes as long as the test wants
        seen.append(threading.current_thread())
        release.wait(30)
        return fake_credentials()

    monkeypatch.setattr(botocore.session.Session, "get_credentials", slow_chain)
    client = make_client(gateway.url, credentials=None)
    client.emit("m", 1)
    # Construction and emit returned while the lookup is still blocked: it cannot be on this thread.
    assert wait_until(lambda: seen)
    assert not release.is_set() and client.stats().queued + client.stats().sent == 1
    release.set()
    assert gateway.wait_for_records(1)
    assert seen[0] is not threading.main_thread() and seen[0].name == "telemetry-shunt-client"


def test_credentials_are_not_looked_up_while_the_kill_switch_is_off(gateway, agent, make_client, monkeypatch):
    lookups = []
    monkeypatch.setattr(botocore.session.Session, "get_credentials", lambda self: lookups.append(1) or fake_credentials())
    agent.flags = {"telemetry": {"enabled": False}}
    clock = SimulatedClock()
    client = make_client(gateway.url, credentials=None, kill_switch=agent.switch(), clock=clock)
    assert wait_until(lambda: client.stats().state == "disabled")
    clock.tick(15)
    assert lookups == []
    agent.flags = {"telemetry": {"enabled": True}}
    clock.tick(15)
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
            client.close(timeout=20.0)  # returns once sent; the bound is a hang guard
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


def test_close_is_bounded_while_a_request_hangs(gateway, make_client):
    gateway.mode = "never"
    client = make_client(gateway.url, request_timeout_seconds=120.0)
    client.emit("m", 1)
    gateway.wait_for_requests(1)  # the worker is now inside a request that would take 120 s
    started = time.monotonic()
    client.close(timeout=0.3)
    assert time.monotonic() - started < 60  # a hang guard far below the request's own deadline
    client.close(timeout=0.1)  # twice is fine
    stats = client.stats()
    assert stats.sent == 0 and balanced(stats)


def test_close_with_zero_timeout_returns_at_once(gateway, make_client):
    gateway.mode = "never"  # a close that waited for a request would wait for its 120 s deadline
    client = make_client(gateway.url, flush_interval_seconds=60.0, request_timeout_seconds=120.0)
    for i in range(10):
        client.emit("m", i)
    started = time.monotonic()
    client.close(timeout=0)
    assert time.monotonic() - started < 60
    assert wait_until(lambda: client.stats().queued == 0)
    stats = client.stats()
    assert balanced(stats) and stats.sent + stats.dropped["shutdown"] == 10


def _run_script(body: str, url: str, exit_timeout: float = 0.5) -> tuple[float, subprocess.CompletedProcess]:
    script = textwrap.dedent(f"""
        import sys, time
        from botocore.credentials import Credentials
        from telemetry_shunt.client import TelemetryClient
        client = TelemetryClient({url!r}, region={REGION!r}, credentials=Credentials({ACCESS_KEY!r}, {SECRET_KEY!r}),
                                 kill_switch=None, flush_interval_seconds=60.0, request_timeout_seconds=120.0,
                                 exit_timeout_seconds={exit_timeout!r})
    """) + textwrap.dedent(body) + "\nprint(time.monotonic(), flush=True)\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=100, cwd=REPO)
    ended = time.monotonic()
    return ended - float(proc.stdout.split()[-1]), proc


def test_interpreter_exit_is_bounded_with_the_gateway_blackholed():
    hole = Blackhole()
    try:
        exit_took, proc = _run_script("for i in range(1000): client.emit('m', i)", hole.url)
    finally:
        hole.close()
    assert proc.returncode == 0, proc.stderr
    assert exit_took < 60  # a hang guard far below the 120 s request deadline exit would otherwise wait out


def test_interpreter_exit_flushes_to_a_healthy_gateway(gateway):
    _, proc = _run_script("for i in range(50): client.emit('m', i)", gateway.url, exit_timeout=20.0)
    assert proc.returncode == 0, proc.stderr
    assert len(gateway.records) == 50


# --- an idle worker sleeps -------------------------------------------------------------------------------


class CountingEvent(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.waits = self.sets = 0

    def wait(self, timeout=None):
        self.waits += 1
        return super().wait(timeout)

    def set(self):
        self.sets += 1
        super().set()


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


def test_a_disabled_client_does_not_spin(gateway, agent, make_client):
    agent.flags = {"telemetry": {"enabled": False}}
    client = make_client(gateway.url, kill_switch=agent.switch(), clock=SimulatedClock())
    assert wait_until(lambda: client.stats().state == "disabled")
    assert _wakeups_in(client, 0.5) <= 2  # once a second at most: the poller has its own thread


def test_an_idle_sending_client_wakes_once_a_flush_interval(gateway, make_client):
    client = make_client(gateway.url, flush_interval_seconds=1.0)
    assert _wakeups_in(client, 0.5) <= 2  # (a wake per waking event is at most 2 in any 0.5 s)


def test_a_full_batch_wakes_the_worker_long_before_the_flush_interval(gateway, make_client):
    # An hour's flush interval: only a caller's nudge can have the worker send these, and fold those.
    client = make_client(gateway.url, flush_interval_seconds=3600, max_batch_records=100,
                         max_buffered_records=400)
    for i in range(300):  # three full batches of emitted records
        client.emit("latency", float(i), route="/pay")
    assert wait_until(lambda: client.stats().sent >= 200, timeout=30)
    for _ in range(300):  # past a fold chunk (a quarter of the buffer) of aggregate records
        client.count("requests", 1, route="/pay")
    assert wait_until(lambda: len(client._agg_buffer) < 100, timeout=30)  # folded, not waiting
    stats = client.stats()
    assert stats.emitted == stats.sent + stats.dropped_total + stats.queued and not stats.dropped_total


def test_a_full_batch_does_not_wake_the_worker_while_the_breaker_holds_sending_back(make_client):
    client = make_client(refused_url(), flush_interval_seconds=3600, max_batch_records=10, failure_threshold=1,
                         max_attempts=1, base_backoff_seconds=60.0, max_backoff_seconds=60.0)
    for i in range(20):
        client.emit("latency", float(i))
    # The worker sees the breaker open before its next sleep, and stops the callers' nudges for emitted records.
    assert wait_until(lambda: client.stats().breaker == "open" and client._raw_nudge is False, timeout=30)
    event = CountingEvent()
    client._wake = event
    for i in range(2_000):  # a full batch is waiting the whole time: the breaker holds it back for 60 s
        client.emit("latency", float(i))
    assert event.sets == 0 and client._raw_nudge is False
