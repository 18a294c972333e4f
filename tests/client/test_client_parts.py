"""The client's parts on their own: breaker, Retry-After, the deadline-bound HTTP connection, encoding."""

from __future__ import annotations

import email.utils
import gzip
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from telemetry_shunt.client._breaker import CircuitBreaker
from telemetry_shunt.client._client import _retry_after_seconds
from telemetry_shunt.client._encoding import compress, encode_records
from telemetry_shunt.client._http import Connection, RequestTimeout, parse_endpoint
from telemetry_shunt.core.contract import METRICS_MAX_RECORD_BYTES

ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_trips_after_the_threshold_and_allows_a_single_probe():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, base_backoff=1.0, max_backoff=8.0, clock=clock, jitter=lambda: 1.0)
    for _ in range(2):
        breaker.record_failure()
        assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 0.99
    assert not breaker.allow()
    clock.now += 0.01
    assert breaker.allow()  # the probe ...
    assert breaker.state == "half_open"
    assert not breaker.allow() and not breaker.allow()  # ... and only one
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow()


def test_breaker_backoff_doubles_per_failed_probe_up_to_the_cap_and_is_jittered():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, base_backoff=1.0, max_backoff=4.0, clock=clock, jitter=lambda: 1.0)
    waits = []
    for _ in range(5):
        breaker.record_failure()
        waits.append(breaker.seconds_until_allowed())
        clock.now = breaker.open_until
        assert breaker.allow()
    assert waits == [1.0, 2.0, 4.0, 4.0, 4.0]
    low = CircuitBreaker(failure_threshold=1, base_backoff=1.0, max_backoff=4.0, clock=clock, jitter=lambda: 0.0)
    low.record_failure()
    assert low.seconds_until_allowed() == 0.5  # jitter spans 50-100 % of the backoff


def test_breaker_hold_is_capped_and_then_probes():
    clock = FakeClock()
    breaker = CircuitBreaker(max_backoff=30.0, clock=clock)
    breaker.hold(3600)
    assert breaker.seconds_until_allowed() == 30.0
    clock.now += 30
    assert breaker.allow() and breaker.state == "half_open"


def test_retry_after_forms():
    assert _retry_after_seconds("7", default=1.0) == 7.0
    in_ten = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 0.0 < _retry_after_seconds(in_ten, default=1.0) <= 10.0  # (a wall-clock read in between)
    assert _retry_after_seconds("soon", default=1.0) == 1.0
    assert _retry_after_seconds(email.utils.formatdate(0, usegmt=True), default=1.0) == 0.0


def test_encoding_is_ndjson_in_the_gateway_format():
    body, records, invalid, oversized = encode_records(
        [("a", 1, 10.5, {}), ("b", 2.5, 11.0, {"k": 3}), ("c", "x", 1.0, {})], "b1d")
    assert (records, invalid, oversized) == (2, 1, 0)
    lines = [json.loads(line) for line in gzip.decompress(compress(body)).decode().splitlines()]
    assert lines == [
        {"name": "a", "value": 1.0, "timestamp": 10.5, "attributes": {}, "batch_id": "b1d", "seq": 0},
        {"name": "b", "value": 2.5, "timestamp": 11.0, "attributes": {"k": "3"}, "batch_id": "b1d", "seq": 1},
    ]
    assert encode_records([("a", 1, 10.5, {})]).body == b'{"name":"a","value":1.0,"timestamp":10.5,"attributes":{}}\n'


def test_a_record_at_the_collectors_line_limit_is_left_out_under_its_own_reason():
    # The limit is on the UTF-8 bytes of the line (the collector's framing counts bytes), not characters.
    limit = 1000
    short = "x" * 100
    fits = "é" * ((limit - 150) // 2)  # 2 bytes each: under the limit in bytes
    too_long_in_bytes = "é" * (limit // 2 + 10)  # its line has fewer characters than the limit, more bytes
    encoded = encode_records([("a", 1, 1.0, {"k": short}), ("b", 2, 1.0, {"k": too_long_in_bytes}),
                              ("c", 3, 1.0, {"k": fits})], "id", max_record_bytes=limit)
    assert (encoded.records, encoded.invalid, encoded.oversized) == (2, 0, 1)
    lines = encoded.body.decode().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["a", "c"]
    assert [json.loads(line)["seq"] for line in lines] == [0, 1]  # seq numbers the records sent
    assert all(len(line.encode()) < limit for line in lines)
    line = json.dumps({"name": "b", "value": 2.0, "timestamp": 1.0, "attributes": {"k": too_long_in_bytes},
                       "batch_id": "id", "seq": 1}, ensure_ascii=False, separators=(",", ":"))
    assert len(line) < limit < len(line.encode())


def test_the_default_line_limit_is_the_collectors():
    from telemetry_shunt.core import collectors

    config = collectors.render_config("vector", paths=["/metrics"], sinks=[collectors.S3ArchiveSink()])
    framing = config["sources"]["gateway_http"]["framing"]["newline_delimited"]
    assert framing["max_length"] == METRICS_MAX_RECORD_BYTES


@pytest.mark.parametrize(
    ("url", "host_header"),
    [("https://gw.example", "gw.example"), ("https://gw.example:8443", "gw.example:8443"),
     ("http://127.0.0.1:80", "127.0.0.1"), ("http://[::1]:9000/", "[::1]:9000")],
)
def test_host_header_omits_default_ports(url, host_header):
    assert parse_endpoint(url).host_header == host_header


class RawServer:
    """One connection at a time, answered by ``respond(conn)``."""

    def __init__(self, respond) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self._respond = respond
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._respond, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self.sock.close()


def _read_request(conn: socket.socket) -> bool:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return False
        data += chunk
    return True


def test_a_trickling_server_cannot_stretch_the_total_deadline():
    def trickle(conn):
        _read_request(conn)
        try:
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                conn.send(bytes([byte]))
                time.sleep(0.5)  # every recv succeeds: per-operation timeouts would never fire
        except OSError:
            pass

    server = RawServer(trickle)
    try:
        connection = Connection(parse_endpoint(server.url))
        started = time.monotonic()
        with pytest.raises(RequestTimeout):
            connection.request("POST", "/metrics", {}, b"x", time.monotonic() + 0.3)
        assert time.monotonic() - started < 10  # a hang guard: the whole response would take 19 s
    finally:
        server.close()


def test_chunked_responses_and_a_stale_kept_alive_connection():
    hung_up = threading.Event()

    def answer_once_then_hang_up(conn):
        # Answers one request per connection, chunked, and closes without saying so (an idle timeout).
        if _read_request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n")
        conn.close()
        hung_up.set()

    server = RawServer(answer_once_then_hang_up)
    try:
        connection = Connection(parse_endpoint(server.url))
        first = connection.request("POST", "/metrics", {}, b"1", time.monotonic() + 20)
        assert hung_up.wait(20)  # the server has hung up the kept-alive connection
        second = connection.request("POST", "/metrics", {}, b"2", time.monotonic() + 20)
        assert first.status == second.status == 200 and first.body == second.body == b"abcde"
        assert server.accepted == 2 and connection.connections_opened == 2
    finally:
        server.close()


@pytest.mark.parametrize("threshold", [1, 2, 3, 4, 7, 8, 100, 1000, 1024, 5000, 2_500_000])
def test_callers_look_every_power_of_two_records_at_most_half_a_threshold(threshold):
    from telemetry_shunt.client._client import _nudge_mask

    mask = _nudge_mask(threshold)
    every = mask + 1
    assert every & mask == 0  # a power of two: the test a call makes is count & mask == 0
    assert every <= max(1, threshold // 2) < 2 * every  # the largest such power: as rare as it may be
    # Of any run of `every` consecutive counts, exactly one looks.
    assert sum(1 for n in range(12_345, 12_345 + every) if not n & mask) == 1


def test_waker_keeps_event_semantics():
    from telemetry_shunt.client._client import _Waker

    waker = _Waker()
    assert waker.wait(0.001) is False  # nothing pending: times out
    waker.set()
    waker.set()
    assert waker.wait(5.0) is True and waker.wait(5.0) is True  # pending until cleared, as an Event's flag
    waker.clear()
    assert waker.wait(0.001) is False


def test_a_signal_handler_may_call_the_client_while_a_call_of_its_thread_wakes_the_worker(tmp_path):
    # A call's nudge wakes the worker; a signal handler that interrupts it and calls the client again must not
    # wait for anything the interrupted call holds (threading.Event.set holds its lock there: a deadlock).
    code = textwrap.dedent("""
        import signal
        from botocore.credentials import Credentials
        from telemetry_shunt.client import TelemetryClient

        # A fold chunk of one record and batches of one: every call looks, and nearly every one wakes the worker.
        client = TelemetryClient("http://127.0.0.1:9", region="us-east-1", kill_switch=None,
                                 credentials=Credentials("AKIDEXAMPLE", "secret"), max_buffered_records=4,
                                 max_batch_records=1)
        fired = 0

        def handler(signum, frame):
            global fired
            fired += 1
            client.count("from.handler", 1)

        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
        for _ in range(200_000):
            client.count("from.loop", 1, route="/pay")
        signal.setitimer(signal.ITIMER_REAL, 0)
        client.close(timeout=0)
        stats = client.stats()
        assert stats.emitted == 200_000 + fired and fired > 0, (stats, fired)
        print("ok", fired)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stdout + proc.stderr
