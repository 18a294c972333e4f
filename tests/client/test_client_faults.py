"""Each gateway fault: no exception reaches the caller, drops are counted by reason, close() is bounded."""

from __future__ import annotations

import collections
import email.utils
import logging
import re
import threading
import time

import pytest
from client_fakes import Blackhole, balanced, refused_url, wait_until

from telemetry_shunt.client import DROP_REASONS

# fault -> the drop reason it must produce: {delivery guarantee: reason}. Each of these outcomes holds on a
# loaded machine too: a fault gateway never answers within the deadline, whatever the scheduling.
FAULTS = {
    "refused": {"at_least_once": "connection", "at_most_once": "connection"},  # nothing sent: retried
    # Connects (kernel backlog), never accepted: the body fits the socket buffers, so it counts as sent.
    "blackhole": {"at_least_once": "timeout", "at_most_once": "unconfirmed"},
    "never": {"at_least_once": "timeout", "at_most_once": "unconfirmed"},  # accepted and read, never answered
    "slow": {"at_least_once": "timeout", "at_most_once": "unconfirmed"},  # answers long after the deadline
    "5xx": {"at_least_once": "server_error", "at_most_once": "server_error"},  # an answer: safe to retry
}


@pytest.fixture
def fault_url(request, gateway):
    fault = request.param
    if fault == "refused":
        return refused_url()
    if fault == "blackhole":
        hole = Blackhole()
        request.addfinalizer(hole.close)
        return hole.url
    gateway.mode = fault
    gateway.delay = 30.0  # the test's request deadline is 0.2 s
    return gateway.url


@pytest.mark.parametrize("delivery", ["at_least_once", "at_most_once"])
@pytest.mark.parametrize("fault_url", list(FAULTS), indirect=True)
def test_each_fault_is_absorbed_counted_and_bounded(fault_url, make_client, request, delivery):
    fault = request.node.callspec.params["fault_url"]
    client = make_client(fault_url, max_attempts=3, failure_threshold=3, request_timeout_seconds=0.2,
                         delivery=delivery)
    for i in range(300):
        client.emit("m", i, fault=fault)  # never raises, never blocks

    reason = FAULTS[fault][delivery]
    assert wait_until(lambda: client.stats().dropped[reason] > 0)
    stats = client.stats()
    assert stats.sent == 0 and balanced(stats)
    if reason == "unconfirmed":  # one attempt: the gateway may have the batch
        assert stats.failed_requests >= 1 and stats.dropped["unconfirmed"] == 300 - stats.queued
    else:  # every attempt failed: three consecutive failures opened the breaker
        assert stats.breaker in ("open", "half_open") and stats.failed_requests >= 3

    client.emit("after", 1)
    started = time.monotonic()
    client.close(timeout=1.0)
    assert time.monotonic() - started < 15  # a hang guard: the attempts' deadlines are not waited out
    client.emit("after-close", 1)
    stats = client.stats()
    assert stats.emitted == 302 and stats.sent == 0 and balanced(stats)
    assert stats.dropped["closed"] == 1
    assert set(stats.dropped) == set(DROP_REASONS)


def test_breaker_opens_then_one_probe_closes_it(gateway, make_client):
    gateway.mode = "5xx"
    client = make_client(gateway.url, failure_threshold=3, max_attempts=10,
                         base_backoff_seconds=1.0, max_backoff_seconds=1.0)
    client.emit("m", 1)
    assert wait_until(lambda: client.stats().breaker == "open")
    gateway.mode = "ok"
    records = gateway.wait_for_records(1)
    assert [r["value"] for r in records] == [1.0]
    third_failure, probe = gateway.requests[2], gateway.requests[3]
    assert [r["mode"] for r in gateway.requests[:3]] == ["5xx"] * 3
    # The gateway stamped the third failure before answering it; the client opened the breaker after the
    # answer, for at least 0.5 s (1 s jittered to 50-100 %): no scheduling delay can make this shorter.
    assert probe["time"] - third_failure["time"] >= 0.5
    assert wait_until(lambda: client.stats().breaker == "closed")
    stats = client.stats()
    assert stats.sent == 1 and stats.failed_requests == 3 and balanced(stats)
    assert len(gateway.requests) == 4  # one probe, not a burst


def test_retry_after_is_honoured_on_429_and_the_batch_is_sent_later(gateway, make_client):
    gateway.mode = "429"
    gateway.retry_after = "1"
    client = make_client(gateway.url, max_backoff_seconds=5.0, max_attempts=3)
    client.emit("m", 7)
    first = gateway.wait_for_requests(1)[0]
    gateway.mode = "ok"
    assert gateway.wait_for_records(1)
    second = gateway.requests[1]
    assert second["time"] - first["time"] >= 0.95
    assert len(gateway.requests) == 2
    assert wait_until(lambda: client.stats().sent == 1)
    assert client.stats().dropped_total == 0


def test_retry_after_as_http_date_on_503(gateway, make_client):
    gateway.mode = "503-retry-after"
    gateway.retry_after = email.utils.formatdate(time.time() + 2, usegmt=True)
    client = make_client(gateway.url, max_backoff_seconds=5.0)
    client.emit("m", 1)
    first = gateway.wait_for_requests(1)[0]
    gateway.mode = "ok"
    assert gateway.wait_for_records(1)
    assert gateway.requests[1]["time"] - first["time"] >= 0.9  # an HTTP date has 1 s resolution


def test_throttling_that_never_ends_drops_the_batch_as_throttled(gateway, make_client):
    gateway.mode = "429"
    gateway.retry_after = "0"
    client = make_client(gateway.url, max_attempts=2)
    client.emit("m", 1)
    assert wait_until(lambda: client.stats().dropped["throttled"] == 1)
    assert balanced(client.stats())


def test_auth_policy_deny_stops_sending_and_is_reported_once(gateway, make_client, caplog):
    caplog.set_level(logging.WARNING, logger="telemetry_shunt.client")
    gateway.mode = "403"
    client = make_client(gateway.url)
    client.emit("m", 1)
    client.emit("m", 2)
    assert wait_until(lambda: client.stats().state == "stopped")
    for i in range(100):
        client.emit("m", i)
    time.sleep(0.2)  # several flush intervals: nothing more may go out
    stats = client.stats()
    assert len(gateway.requests) == 1
    assert stats.dropped["config_error"] == 102 and stats.sent == 0 and balanced(stats)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "HTTP 403" in errors[0].getMessage() and "auth policies" in errors[0].getMessage()
    assert stats.error == errors[0].getMessage()


def test_expired_credentials_are_named(gateway, make_client):
    gateway.mode = "403-expired"
    client = make_client(gateway.url)
    client.emit("m", 1)
    assert wait_until(lambda: client.stats().state == "stopped")
    assert "credentials have expired" in client.stats().error


def test_clock_skew_is_named_with_its_size(gateway, make_client):
    gateway.mode = "403"
    gateway.date_header = email.utils.formatdate(time.time() - 3600, usegmt=True)
    client = make_client(gateway.url)
    client.emit("m", 1)
    assert wait_until(lambda: client.stats().state == "stopped")
    assert re.search(r"clock is \+36\d\d s off", client.stats().error)


def test_a_missing_route_is_a_configuration_error(gateway, make_client):
    gateway.mode = "404"
    client = make_client(gateway.url)
    client.emit("m", 1)
    assert wait_until(lambda: client.stats().state == "stopped")
    assert "HTTP 404" in client.stats().error and "no route for POST /metrics" in client.stats().error


def test_full_buffer_drops_the_oldest(gateway, make_client):
    client = make_client(gateway.url, max_buffered_records=10, flush_interval_seconds=60.0)
    for i in range(25):
        client.emit("m", i)
    stats = client.stats()
    assert stats.queued == 10 and stats.dropped["buffer_full"] == 15 and balanced(stats)
    client.close(timeout=20.0)  # the final flush sends what the buffer kept: the newest
    assert [r["value"] for r in gateway.records] == [float(i) for i in range(15, 25)]
    assert client.stats().sent == 10


def test_concurrent_emitters_are_counted_exactly(gateway, make_client):
    # Four emitting threads starve the worker of the GIL; the fixture's deadline is a hang guard only.
    client = make_client(gateway.url, max_buffered_records=500, max_batch_records=200)

    def hammer() -> None:
        for i in range(50_000):
            client.emit("m", i, thread=threading.current_thread().name)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    snapshots = []
    while any(thread.is_alive() for thread in threads):
        snapshots.append(client.stats())  # taken while emits, sends and drops are all in motion
    for thread in threads:
        thread.join()
    assert snapshots and all(balanced(snapshot) for snapshot in snapshots)
    client.close(timeout=5.0)
    stats = client.stats()
    assert stats.emitted == 200_000
    assert balanced(stats) and stats.queued == 0
    # At most once (the default): every record counted as sent arrived once; a request unanswered in time
    # is "unconfirmed" (it may have arrived too) and never retried, so nothing arrives twice.
    assert stats.sent <= len(gateway.records) <= stats.sent + stats.dropped["unconfirmed"]
    assert len({(r["batch_id"], r["seq"]) for r in gateway.records}) == len(gateway.records)


def test_a_bug_in_the_worker_costs_one_batch_not_the_client(gateway, make_client, monkeypatch, caplog):
    import telemetry_shunt.client._client as client_module

    real_encode = client_module.encode_records
    calls = []

    def encode_failing_once(items, *args):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real_encode(items, *args)

    monkeypatch.setattr(client_module, "encode_records", encode_failing_once)
    caplog.set_level(logging.ERROR, logger="telemetry_shunt.client")
    client = make_client(gateway.url)
    client.emit("lost", 1)
    assert wait_until(lambda: client.stats().dropped["internal_error"] == 1)
    client.emit("kept", 2)
    assert [r["name"] for r in gateway.wait_for_records(1)] == ["kept"]
    assert wait_until(lambda: client.stats().sent == 1)
    assert balanced(client.stats()) and client.stats().state == "sending"
    assert len([r for r in caplog.records if "internal error" in r.getMessage()]) == 1


# --- the delivery guarantee: the gateway stores the batch, then the answer never comes ------------------


def test_at_most_once_drops_an_unanswered_batch_as_unconfirmed_and_never_resends_it(gateway, make_client):
    gateway.mode = "store-then-hang"
    client = make_client(gateway.url, request_timeout_seconds=0.5, max_attempts=5)  # the default guarantee
    for i in range(10):
        client.emit("m", i)
    assert wait_until(lambda: client.stats().dropped["unconfirmed"] == 10)
    stats = client.stats()
    assert stats.sent == 0 and stats.dropped_total == 10 and balanced(stats)
    client.close(timeout=1.0)
    # The batch did arrive, exactly once: no count downstream is inflated.
    assert len(gateway.requests) == 1
    assert sorted(r["value"] for r in gateway.records) == [float(i) for i in range(10)]


def test_at_least_once_resends_an_unanswered_batch_whole_with_the_same_id(gateway, make_client):
    gateway.mode = "store-once-then-hang"  # the first attempt is stored and never answered; then healthy
    client = make_client(gateway.url, request_timeout_seconds=2.0, max_attempts=5, delivery="at_least_once")
    for i in range(10):
        client.emit("m", i, k="v")
    assert wait_until(lambda: client.stats().sent == 10)
    stats = client.stats()
    assert stats.dropped_total == 0 and balanced(stats)
    requests = gateway.requests
    assert len(requests) >= 2 and requests[0]["mode"] == "store-once-then-hang"
    assert len({r["batch_id"] for r in requests}) == 1  # one batch id across the retries
    # Each arrival is the whole batch, identical: a collector keyed on (batch_id, seq) keeps one copy.
    copies = collections.Counter((r["batch_id"], r["seq"], r["value"]) for r in gateway.records)
    assert sorted(seq for _, seq, _ in copies) == list(range(10))
    assert set(copies.values()) == {len(requests)}
    assert client.stats().requests == len(requests)
