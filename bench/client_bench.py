"""Side by side, in every gateway fault mode: the shunt client, a port of the seed design, OpenTelemetry.

    .venv/bin/python bench/client_bench.py            # full run (~5 min on 2 cores), prints the tables
    .venv/bin/python bench/client_bench.py --quick    # smaller counts, for a smoke run

Each (client, mode) runs in its own process against a fake gateway on 127.0.0.1 (bench/client_gateway.py):

- host throughput: a loop of ~15 us of CPU work plus one emit, for 3 s, starting right after the client is
  built (so start-up and the first failures are included), compared with the same client's healthy run
  and with no telemetry at all; best of ``--passes`` runs (other load on the machine only slows a run);
- emit latency: then up to 20,000 timed batches of 10 emits (``time.perf_counter_ns`` around each
  batch, divided by 10); median and p99 of those per-emit figures;
- close(): the client's own shutdown (``close(1.0)``; ``MeterProvider.shutdown()`` for OpenTelemetry;
  nothing to flush for the seed); a process still closing after ``CLOSE_CAP_SECONDS`` is killed.

Memory: per client, RSS growth over 10 M emits with the gateway down (connection refused).

    .venv/bin/python bench/client_bench.py --killswitch [--flips 20]   # kill-switch flip-to-action (~5 min a gateway)

Kill switch: a fake AppConfig agent in this process serves the flag; the client polls it at the minimum (15 s).
Each flip is made at a uniformly random point of the poll cycle (a random 0-15 s after the previous action);
flip-to-action is from the flip to the agent's next read (the read, as the agent saw it) and to the client's
``stats().state`` changing (the action), for a healthy gateway and for one that never answers (every request
held to its 1 s deadline, a backlog waiting): min, median and max against the poll interval.

    .venv/bin/python bench/client_bench.py --aggregation [--seconds 3]   # issue 14's harness (~3 min)

Aggregation: each (client, rate) runs in its own process against a healthy fake gateway (another process for
the shunt; OTLP/HTTP to the same fake for OpenTelemetry; UDP to a closed port for DogStatsD, which never waits
for an answer). Emits are paced in 10 ms ticks at the rate for ``--seconds``; 20 names x 5 attribute sets of 3
attributes (100 series). CPU per record is the process's total CPU (every thread, the client's shutdown
included) minus that of a bare append (``deque.append((name, value, attributes))``) paced the same way in the
same run, divided by the records. Clients: the shunt's ``emit`` (raw points), ``count`` and ``distribution``
(aggregated), OpenTelemetry's ``Counter.add`` and ``Histogram.record`` (delta temporality, 1 s export), and
datadogpy's ``DogStatsd`` with client-side aggregation on (``increment``, ``histogram``). Then a loss-vs-rate
sweep for ``count`` and ``distribution`` with 10,000 series (20 names x 500 attribute sets), up to 200k rec/s.
The bare append has the shunt's call signature (``name, value, /, **attributes``), so the extra is the client's
own work. Last, the caller's cost: ``count``/``emit`` per call against a bare append behind the same call
signature.

    .venv/bin/python bench/client_bench.py --instructions [RECORDS]   # deterministic (~5 min; valgrind)

Instructions per record: each of bare/emit/count/gauge/distribution runs a fixed stream (100 series, as above)
in its own process under ``valgrind --tool=callgrind`` (every thread counted: caller, worker, encoding, the
requests, close), minus the same process with no records; reported against the bare append. Repeatable
whatever the load, so a change to the fold path can be judged on a busy machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from client_gateway import MODES, BenchGateway  # noqa: E402

CLIENTS = ("shunt", "seed", "otel")
CLOSE_CAP_SECONDS = 12.0
THROUGHPUT_SECONDS = 3.0
LATENCY_BATCHES = 20_000
LATENCY_BUDGET_SECONDS = 3.0
BATCH = 10
MEMORY_EMITS = 10_000_000

# The statement each client's user writes; the same attributes everywhere.
STATEMENTS = {
    "none": "pass",
    "shunt": "emit('requests', 1, route='/pay')",
    "shunt-off": "emit('requests', 1, route='/pay')",
    "seed": "emit('requests', 1, route='/pay')",
    "otel": "add(1, ATTRS)",
}


def _work() -> int:
    return sum(range(1700))  # ~15 us of CPU ("request handling") per iteration


def _build(client: str, url: str):
    """(namespace for the statement, close function)."""
    if client == "none":
        return {}, lambda: None
    if client == "shunt":
        from botocore.credentials import Credentials

        from telemetry_shunt.client import TelemetryClient

        shunt = TelemetryClient(url, region="us-east-1", credentials=Credentials("AKIDEXAMPLE", "secret"),
                                kill_switch=None)
        return {"emit": shunt.emit}, lambda: shunt.close(timeout=1.0)
    if client == "shunt-off":  # the kill switch reads "off" (a fake AppConfig agent in this process)
        import http.server
        import threading

        from botocore.credentials import Credentials

        from telemetry_shunt.client import KillSwitchSource, TelemetryClient

        class Agent(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body = json.dumps({"telemetry": {"enabled": False}}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        agent = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Agent)
        threading.Thread(target=agent.serve_forever, daemon=True).start()
        switch = KillSwitchSource(agent_url=f"http://127.0.0.1:{agent.server_address[1]}")
        shunt = TelemetryClient(url, region="us-east-1", credentials=Credentials("AKIDEXAMPLE", "secret"),
                                kill_switch=switch)
        deadline = time.monotonic() + 5
        while shunt.stats().state != "disabled" and time.monotonic() < deadline:
            time.sleep(0.01)
        return {"emit": shunt.emit}, lambda: shunt.close(timeout=1.0)
    if client == "seed":
        from client_seed import SeedClient

        seed = SeedClient(url)
        return {"emit": seed.emit}, seed.close
    if client == "otel":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=url + "/v1/metrics"),
                                               export_interval_millis=1000)
        provider = MeterProvider(metric_readers=[reader])
        counter = provider.get_meter("bench").create_counter("requests")
        return {"add": counter.add, "ATTRS": {"route": "/pay"}}, provider.shutdown
    raise ValueError(f"unknown client {client!r}")


def _compile(template: str, stmt: str, namespace: dict):
    code = template.replace("STMT", stmt)
    exec(compile(code, "<bench>", "exec"), namespace)  # noqa: S102 - our own fixed templates
    return namespace["run"]


_HOST_LOOP = """
def run(seconds, work, clock):
    iterations = 0
    end = clock() + seconds
    while True:
        for _ in range(100):
            work()
            STMT
        iterations += 100
        if clock() >= end:
            return iterations
"""

_LATENCY_LOOP = """
def run(batches, budget_ns, ns):
    out = []
    append = out.append
    deadline = ns() + budget_ns
    for _ in range(batches):
        t0 = ns()
""" + "        STMT\n" * BATCH + """        t1 = ns()
        append(t1 - t0)
        if t1 > deadline:
            break
    return out
"""

_MEMORY_LOOP = """
def run(n):
    for _ in range(n // 10):
""" + "        STMT\n" * 10 + """
"""


def _say(**fields) -> None:
    print(json.dumps(fields), flush=True)


def child(client: str, url: str, quick: bool, throughput_only: bool) -> None:
    namespace, close = _build(client, url)
    stmt = STATEMENTS[client]
    host = _compile(_HOST_LOOP, stmt, dict(namespace))
    seconds = 1.0 if quick else THROUGHPUT_SECONDS
    started, cpu_started = time.perf_counter(), time.process_time()
    iterations = host(seconds, _work, time.perf_counter)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    _say(phase="throughput", per_second=iterations / wall, per_cpu_second=iterations / cpu)
    if throughput_only:
        os._exit(0)  # skip the client's own exit handling: only the throughput counts here

    latency = _compile(_LATENCY_LOOP, stmt, dict(namespace))
    batches = 2_000 if quick else LATENCY_BATCHES
    per_emit = sorted(ns / BATCH / 1000 for ns in latency(batches, int(LATENCY_BUDGET_SECONDS * 1e9),
                                                          time.perf_counter_ns))
    _say(phase="latency", median_us=statistics.median(per_emit), p99_us=per_emit[int(len(per_emit) * 0.99)],
         max_us=per_emit[-1], batches=len(per_emit))

    started = time.perf_counter()
    close()
    _say(phase="close", seconds=time.perf_counter() - started)


def memory_child(client: str, url: str, emits: int) -> None:
    import psutil

    process = psutil.Process()
    _build(client, url)[1]()  # import everything the client needs, so that imports do not count
    gc.collect()
    before = process.memory_info().rss  # before the client exists: its full buffer counts
    namespace, close = _build(client, url)
    run = _compile(_MEMORY_LOOP, STATEMENTS[client], dict(namespace))
    started = time.perf_counter()
    run(emits // 2)
    half = process.memory_info().rss
    run(emits // 2)
    seconds = time.perf_counter() - started
    gc.collect()
    after = process.memory_info().rss
    _say(phase="memory", rss_growth_mb=(after - before) / 2**20, second_half_mb=(after - half) / 2**20,
         seconds=seconds, emits=emits)
    os._exit(0)  # the clients' exit handling is measured elsewhere


def _run_child(args: list[str], timeout: float) -> tuple[dict, bool]:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    killed = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        killed = True
    results = {}
    for line in out.splitlines():
        if line.startswith("{"):
            fields = json.loads(line)
            results[fields.pop("phase")] = fields
    return results, killed


def killswitch_bench(flips: int, modes: tuple[str, ...] = ("healthy", "never"), seed: int = 1) -> str:
    import random

    from telemetry_shunt.core.contract import APPCONFIG_MIN_POLL_SECONDS

    poll = float(APPCONFIG_MIN_POLL_SECONDS)
    rng = random.Random(seed)
    lines = [f"Kill switch, flip to action, {flips} flips per gateway at random points of the {poll:g} s poll cycle "
             f"(load average {os.getloadavg()[0]:.1f} at start).", "",
             "| gateway | measured to | min (s) | median (s) | max (s) | max / poll interval |",
             "|---|---|---:|---:|---:|---:|"]
    for mode in modes:
        to_read, to_action = _killswitch_flips(mode, flips, rng, poll)
        for what, values in (("agent read", to_read), ("client state", to_action)):
            lines.append(f"| {mode} | {what} | {min(values):.2f} | {statistics.median(values):.2f} | "
                         f"{max(values):.2f} | {max(values) / poll:.2f} |")
    return "\n".join(lines)


def _killswitch_flips(mode: str, flips: int, rng, poll: float) -> tuple[list[float], list[float]]:
    import http.server
    import threading

    from botocore.credentials import Credentials

    from telemetry_shunt.client import KillSwitchSource, TelemetryClient

    state = {"enabled": True, "reads": []}

    class Agent(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            state["reads"].append(time.monotonic())
            body = json.dumps({"telemetry": {"enabled": state["enabled"]}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    agent = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Agent)
    threading.Thread(target=agent.serve_forever, daemon=True).start()
    gateway = BenchGateway(mode)
    client = TelemetryClient(gateway.url, region="us-east-1", credentials=Credentials("AKIDEXAMPLE", "secret"),
                             kill_switch=KillSwitchSource(agent_url=f"http://127.0.0.1:{agent.server_address[1]}"),
                             request_timeout_seconds=1.0)
    stop = threading.Event()

    def emitter() -> None:  # a steady load, so that with a dead gateway a backlog is always waiting
        while not stop.wait(0.001):
            for _ in range(20):
                client.emit("requests", 1, route="/pay")

    threading.Thread(target=emitter, daemon=True).start()
    to_read, to_action = [], []
    try:
        _wait_for(lambda: client.stats().state == "sending", 30)
        for n in range(flips):
            time.sleep(rng.uniform(0, poll))
            want = "disabled" if state["enabled"] else "sending"
            reads_before = len(state["reads"])
            flipped = time.monotonic()
            state["enabled"] = not state["enabled"]
            _wait_for(lambda want=want: client.stats().state == want, 3 * poll)
            to_action.append(time.monotonic() - flipped)
            to_read.append(state["reads"][reads_before] - flipped)
            print(f"# killswitch {mode} flip {n + 1}: read after {to_read[-1]:.2f} s, state after "
                  f"{to_action[-1]:.2f} s", file=sys.stderr, flush=True)
    finally:
        stop.set()
        client.close(timeout=1.0)
        gateway.close()
        agent.shutdown()
    return to_read, to_action


AGG_CLIENTS = ("bare", "shunt-emit", "shunt-count", "shunt-distribution", "otel-counter", "otel-histogram",
               "datadog-count", "datadog-histogram")
AGG_RATES = (10_000, 100_000)
# The emits are paced in ticks of 10 ms (100 records a tick at 10k rec/s): each timed sleep costs about 80 µs
# of CPU on a VM, so 1,000 ticks a second cost 8 µs a record at 10k rec/s, eight times what is measured, and
# their jitter (taken out, but only as well as thread_time sees it) moved a 10k cell by ±0.4 µs.
AGG_TICKS_PER_SECOND = 100
SWEEP_RATES = (10_000, 50_000, 100_000, 150_000, 200_000)


def _agg_build(client: str, url: str, **options):
    """(call(name, value, attributes), close() -> loss counts or None); ``options`` for the shunt's client."""
    if client == "bare":
        import collections

        buffer = collections.deque(maxlen=20_000)
        append = buffer.append

        def bare_append(name, value, /, **attributes):  # the shunt's call signature, nothing behind it
            append((name, value, attributes))

        def bare(name, value, attributes):
            bare_append(name, value, **attributes)

        return bare, lambda: None
    if client.startswith("shunt-"):
        from botocore.credentials import Credentials

        from telemetry_shunt.client import TelemetryClient
        from telemetry_shunt.client._client import load_worker_modules

        load_worker_modules()  # the worker's imports, before the CPU clock starts

        shunt = TelemetryClient(url, region="us-east-1", credentials=Credentials("AKIDEXAMPLE", "secret"),
                                kill_switch=None, **options)
        method = getattr(shunt, client.split("-", 1)[1])

        def call(name, value, attributes):
            method(name, value, **attributes)

        def close():
            shunt.close(timeout=10.0)
            stats = shunt.stats()
            return {"emitted": stats.emitted, "sent": stats.sent, "dropped": stats.dropped_total,
                    "by_reason": {k: v for k, v in stats.dropped.items() if v}}

        return call, close
    if client.startswith("otel-"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
        from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader

        delta = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=url + "/v1/metrics", preferred_temporality=delta), export_interval_millis=1000)
        provider = MeterProvider(metric_readers=[reader])
        meter = provider.get_meter("bench")
        instruments: dict = {}
        make = meter.create_counter if client == "otel-counter" else meter.create_histogram
        record = "add" if client == "otel-counter" else "record"

        def call(name, value, attributes):
            instrument = instruments.get(name)
            if instrument is None:
                instrument = instruments[name] = getattr(make(name), record)
            instrument(value, attributes)

        return call, lambda: provider.shutdown() and None
    if client.startswith("datadog-"):
        import socket

        from datadog.dogstatsd import DogStatsd

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        statsd = DogStatsd(host="127.0.0.1", port=port, disable_aggregation=False, disable_buffering=False,
                           flush_interval=1.0, disable_telemetry=True)
        method = statsd.increment if client == "datadog-count" else statsd.histogram
        tag_cache: dict = {}

        def call(name, value, attributes):
            key = id(attributes)
            tags = tag_cache.get(key)
            if tags is None:
                tags = tag_cache[key] = [f"{k}:{v}" for k, v in attributes.items()]
            method(name, value, tags=tags)

        def close():
            statsd.flush_aggregated_metrics()
            statsd.flush()
            statsd.close_socket()

        return call, close
    raise ValueError(f"unknown client {client!r}")


def _attribute_sets(series: int) -> tuple[list[str], list[dict]]:
    names = [f"app.metric_{i}" for i in range(20)]
    sets = [{"route": f"/r{j}", "code": "200", "region": "eu-west-1"} for j in range(max(1, series // 20))]
    return names, sets


def agg_child(client: str, rate: int, seconds: float, series: int, url: str) -> None:
    names, sets = _attribute_sets(series)
    call, close = _agg_build(client, url)
    per_tick = max(1, rate // AGG_TICKS_PER_SECOND)
    n_sets = len(sets)
    gc.collect()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sent_calls, tick, pacing = 0, 0, 0.0
    while True:
        tick += 1
        base = sent_calls
        for i in range(per_tick):
            k = base + i
            call(names[(k // n_sets) % 20], 1.0 + (k % 7), sets[k % n_sets])
        sent_calls += per_tick
        now = time.perf_counter()
        if now - wall0 >= seconds:
            break
        target = wall0 + tick / AGG_TICKS_PER_SECOND
        if target > now:
            # The pacing's own CPU (a timed sleep costs tens of µs of CPU on a VM): the harness's, not the
            # client's; measured to take it out.
            slept = time.thread_time()
            time.sleep(target - now)
            pacing += time.thread_time() - slept
    emit_wall = time.perf_counter() - wall0
    loss = close()
    cpu = time.process_time() - cpu0
    _say(phase="agg", records=sent_calls, cpu=cpu, pacing=pacing, achieved_rate=sent_calls / emit_wall, loss=loss)


INSTRUCTION_CLIENTS = ("bare", "shunt-emit", "shunt-count", "shunt-gauge", "shunt-distribution")


def instructions_child(client: str, records: int, url: str) -> None:
    """A fixed stream (100 series, as the CPU table) through ``client`` as fast as it goes, then its close."""
    names, sets = _attribute_sets(100)
    # Under callgrind the loop runs ~50x slower than natively, so with 1 s intervals a run would encode and send
    # ~50x as many intervals per record as it does at 100k rec/s: one interval (flushed by close) per run.
    options = {} if client == "bare" else {"flush_interval_seconds": 3600.0, "max_buffered_records": max(records, 1)}
    call, close = _agg_build(client, url, **options)
    n_sets = len(sets)
    for k in range(records):
        call(names[(k // n_sets) % 20], 1.0 + (k % 7), sets[k % n_sets])
    loss = close()
    _say(phase="instructions", records=records, loss=loss)


def _callgrind_total(args: list[str]) -> tuple[int, dict]:
    """Instructions executed by a child (every thread) under callgrind, and what it printed."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                               __file__, *args], capture_output=True, text=True, timeout=1800,
                              env={**os.environ, "PYTHONHASHSEED": "0"})
        totals = [line for line in out.read_text().splitlines() if line.startswith(("totals:", "summary:"))]
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            fields = json.loads(line)
            results[fields.pop("phase")] = fields
    return int(totals[0].split()[1]), results


def instructions_bench(records: int) -> str:
    """Instructions per record under callgrind: (run of ``records`` - run of none) / ``records``, against
    the bare append, each a whole process (caller, worker, encoding, the requests, close)."""
    per_record = {}
    losses = {}
    for client in INSTRUCTION_CLIENTS:
        gateway = BenchGateway("healthy")
        try:
            empty, _ = _callgrind_total(["--instructions-child", client, "0", gateway.url])
            full, results = _callgrind_total(["--instructions-child", client, str(records), gateway.url])
        finally:
            gateway.close()
        per_record[client] = (full - empty) / records
        losses[client] = (results.get("instructions") or {}).get("loss")
        print(f"# instructions {client}: {per_record[client]:,.0f} per record ({losses[client]})", file=sys.stderr,
              flush=True)
    bare = per_record["bare"]
    lines = [f"Instructions per record under callgrind (every thread; {records:,} records of 100 series, as fast as "
             "the loop goes, one interval flushed by close(); minus the same process with no records), "
             "deterministic whatever the load:",
             "", "| client | instructions per record | vs bare append | extra over bare | emitted / sent / dropped |",
             "|---|---:|---:|---:|---|"]
    for client, value in per_record.items():
        loss = losses[client]
        shown = f"{loss['emitted']:,} / {loss['sent']:,} / {loss['dropped']:,}" if loss else "–"
        lines.append(f"| {client} | {value:,.0f} | {value / bare:.2f}x | {value - bare:,.0f} | {shown} |")
    return "\n".join(lines)


def series_memory(series: int = 10_000) -> dict[str, tuple[float, float]]:
    """MB held by one interval's aggregation at ``series`` live series (3 attributes each; histograms with
    values spread over 6 decades, so each holds its full 160-bucket span after fitting), 20 records a series:
    ``(pending, folded)``: with the client's bound of values waiting in their groups (4 x
    max_buffered_records = 80,000, before any is folded), and after the interval's fold (the series, and the
    key map the worker keeps across intervals)."""
    import tracemalloc

    from telemetry_shunt.client._aggregate import GAUGE, HISTOGRAM, SUM, Aggregator
    from telemetry_shunt.client._client import _PENDING_PER_BUFFERED
    from telemetry_shunt.client._records import aggregate_record

    names, sets = _attribute_sets(series)
    bound = _PENDING_PER_BUFFERED * 20_000
    out = {}
    for kind in (SUM, GAUGE, HISTOGRAM):
        gc.collect()
        tracemalloc.start()
        aggregator = Aggregator(series, max_pending=bound)
        pending = 0.0
        for start in range(0, series * 20, 5_000):
            aggregator.add([aggregate_record(kind, names[(k // len(sets)) % 20], 10.0 ** (k % 7 - 3) * (1 + k % 13),
                                             sets[k % len(sets)]) for k in range(start, start + 5_000)])
            if aggregator.pending == bound:
                pending = tracemalloc.get_traced_memory()[0] / 1e6
        table, _, _ = aggregator.take()
        folded, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert len(table) == series and pending
        out[kind] = (pending, folded / 1e6)
        del table, aggregator
    return out


def caller_cost_child() -> None:
    import collections

    from botocore.credentials import Credentials

    from telemetry_shunt.client import TelemetryClient

    shunt = TelemetryClient("http://127.0.0.1:9", region="us-east-1", credentials=Credentials("AKIDEXAMPLE", "s"),
                            kill_switch=None, max_buffered_records=1_000_000)
    buffer = collections.deque(maxlen=1_000_000)
    append = buffer.append

    def bare(name, value, /, **attributes):
        append((name, value, attributes))

    out = {}
    for label, fn in (("bare", bare), ("count", shunt.count), ("emit", shunt.emit), ("distribution", shunt.distribution)):
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter_ns()
            for _ in range(100_000):
                fn("app.metric", 1.0, route="/pay", code="200", region="eu-west-1")
            best = min(best, (time.perf_counter_ns() - t0) / 100_000)
            buffer.clear()
        out[label] = best / 1000
    shunt.close(timeout=0)
    _say(phase="caller", **out)


def extra_cpu_per_record(row: dict, bare: dict, *, net_of_pacing: bool = True) -> float:
    """µs of CPU a record above the bare append's; by default each net of its harness's pacing (the main
    thread's CPU in its sleeps between ticks: the harness's cost, about 80 µs a sleep on a VM, and the
    noisiest part of a 10k rec/s cell; it also holds the main thread's share of a GIL hand-over that a sleep's wake-up
    meets, which the client causes: a small bias in the client's favour, hence the raw figure beside it)."""
    own = row["cpu"] - (row.get("pacing", 0.0) if net_of_pacing else 0.0)
    baseline = bare["cpu"] - (bare.get("pacing", 0.0) if net_of_pacing else 0.0)
    return (own / row["records"] - baseline / bare["records"]) * 1e6


def aggregation_bench(seconds: float, rounds: int = 3) -> str:
    """Issue 14's tables. The CPU table runs every (client, rate) cell ``rounds`` times, the clients in turn
    within a round (the order reversed every other round), each paired with its round's bare cell: a cell's
    figure is the median of its rounds, with their range (a busy VM moves one 6 s cell by tenths of a µs)."""
    load = [os.getloadavg()[0]]

    def run(client: str, rate: int, series: int) -> dict:
        gateway = BenchGateway("healthy")
        try:
            results, _ = _run_child(["--agg-child", client, str(rate), str(seconds), str(series), gateway.url],
                                    seconds + 60)
        finally:
            gateway.close()
        agg = results.get("agg", {})
        print(f"# agg {client} {rate} {series}: {json.dumps(agg)}", file=sys.stderr, flush=True)
        return agg

    lines = []
    cpu: dict[tuple[str, int], list[dict]] = {}
    for n in range(rounds):
        for rate in AGG_RATES:
            for client in AGG_CLIENTS[::-1] if n % 2 else AGG_CLIENTS:
                cpu.setdefault((client, rate), []).append(run(client, rate, 100))
    lines += [f"CPU per record (all threads, shutdown included) above a bare append paced the same way, with the "
              f"pacing's own sleeps taken out of both; 100 series. Median of {rounds} rounds, each paired with its "
              "round's bare cell [range]; in brackets: with the pacing left in.", "",
              "| client | " + " | ".join(f"{r // 1000}k rec/s: extra CPU µs/record [range] (raw) | achieved rate"
                                        for r in AGG_RATES)
              + " | loss |", "|---|" + "---:|---:|" * len(AGG_RATES) + "---|"]
    for client in AGG_CLIENTS[1:]:
        cells = []
        for rate in AGG_RATES:
            pairs = list(zip(cpu[client, rate], cpu["bare", rate], strict=True))
            extra = sorted(extra_cpu_per_record(row, bare) for row, bare in pairs)
            raw = statistics.median(extra_cpu_per_record(row, bare, net_of_pacing=False) for row, bare in pairs)
            achieved = statistics.median(row["achieved_rate"] for row, _ in pairs)
            cells.append(f"{statistics.median(extra):.2f} [{extra[0]:.2f}, {extra[-1]:.2f}] ({raw:.2f}) | "
                         f"{achieved / 1000:.0f}k")
        loss = cpu[client, AGG_RATES[-1]][-1].get("loss")
        shown = f"{loss['dropped']} of {loss['emitted']}" if loss else "n/a"
        lines.append(f"| {client} | " + " | ".join(cells) + f" | {shown} |")
    lines += ["", "Loss vs rate, 10,000 series (20 names x 500 attribute sets):", "",
              "| rate (rec/s) | client | achieved | emitted | sent | dropped | reasons | CPU µs/record (total) |",
              "|---:|---|---:|---:|---:|---:|---|---:|"]
    for rate in SWEEP_RATES:
        for client in ("shunt-count", "shunt-distribution"):
            row = run(client, rate, 10_000)
            loss = row.get("loss") or {}
            lines.append(f"| {rate:,} | {client} | {row['achieved_rate']:,.0f} | {loss.get('emitted', 0):,} | "
                         f"{loss.get('sent', 0):,} | {loss.get('dropped', 0):,} | {loss.get('by_reason', {})} | "
                         f"{row['cpu'] / row['records'] * 1e6:.2f} |")
    lines += ["", "Memory of one interval's aggregation at the cardinality guard's default (10,000 live series, 20 records"
              " each), tracemalloc: with the bound of values (80,000) waiting in their groups, then folded:", "",
              "| kind | MB pending | MB folded | bytes per series, folded |", "|---|---:|---:|---:|"]
    for kind, (pending, folded) in series_memory().items():
        lines.append(f"| {kind} | {pending:.1f} | {folded:.1f} | {folded * 1e6 / 10_000:,.0f} |")
    results, _ = _run_child(["--caller-cost-child"], 120)
    caller = results.get("caller", {})
    lines += ["", "Caller's cost per call, same signature (name, value, 3 keyword attributes), best of 5 x 100k:", "",
              "| call | µs | vs bare append |", "|---|---:|---:|"]
    for label, value in caller.items():
        lines.append(f"| {label} | {value:.3f} | {value / caller['bare']:.2f}x |")
    load.append(os.getloadavg()[0])
    from telemetry_shunt.client._aggregate import ACCELERATED

    built = "the C accelerator" if ACCELERATED else "pure Python (the C accelerator is not built: run make install)"
    return (f"Load average {load[0]:.1f} at start, {load[1]:.1f} at end, {os.cpu_count()} CPUs. Client worker: "
            f"{built}.\n\n" + "\n".join(lines))


def _wait_for(predicate, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise RuntimeError("timed out")
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--killswitch", action="store_true", help="only the kill-switch flip-to-action figures")
    parser.add_argument("--flips", type=int, default=20, help="kill-switch flips per gateway (at least 20)")
    parser.add_argument("--aggregation", action="store_true", help="only issue 14's aggregation harness")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds of paced emits per aggregation cell")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the aggregation CPU table (median shown)")
    parser.add_argument("--agg-child", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--caller-cost-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--instructions", type=int, nargs="?", const=50_000, metavar="RECORDS",
                        help="instructions per record under callgrind on a fixed stream (deterministic)")
    parser.add_argument("--instructions-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--clients", default=",".join(CLIENTS),
                        help=f"any of {', '.join(CLIENTS)}, shunt-off (kill switch off; healthy gateway only)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--passes", type=int, default=3, help="host-throughput runs per cell; the best counts")
    parser.add_argument("--child", nargs=2, metavar=("CLIENT", "URL"), help=argparse.SUPPRESS)
    parser.add_argument("--throughput-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", nargs=3, metavar=("CLIENT", "URL", "EMITS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.killswitch:
        print(killswitch_bench(args.flips))
        return None
    if args.aggregation:
        if args.rounds < 1:
            parser.error(f"--rounds must be at least 1, got {args.rounds}")
        print(aggregation_bench(args.seconds, args.rounds))
        return None
    if args.agg_child:
        client, rate, seconds, series, url = args.agg_child
        return agg_child(client, int(rate), float(seconds), int(series), url)
    if args.caller_cost_child:
        return caller_cost_child()
    if args.instructions:
        print(instructions_bench(args.instructions))
        return None
    if args.instructions_child:
        client, records, url = args.instructions_child
        return instructions_child(client, int(records), url)
    if args.child:
        return child(*args.child, quick=args.quick, throughput_only=args.throughput_only)
    if args.memory_child:
        client, url, emits = args.memory_child
        return memory_child(client, url, int(emits))

    clients = args.clients.split(",")
    modes = args.modes.split(",")
    quick = ["--quick"] if args.quick else []
    child_timeout = (1.0 if args.quick else THROUGHPUT_SECONDS) + LATENCY_BUDGET_SECONDS + CLOSE_CAP_SECONDS + 5
    load = [os.getloadavg()[0]]
    cells = [
        (client, mode)
        for client in ["none", *clients]
        for mode in (["healthy"] if client in ("none", "shunt-off") else modes)
    ]
    rows = {}
    for client, mode in cells:
        gateway = BenchGateway(mode)
        try:
            results, killed = _run_child([*quick, "--child", client, gateway.url], child_timeout)
        finally:
            gateway.close()
        results.setdefault("throughput", {"per_second": None, "per_cpu_second": None})
        results["throughput"]["passes"] = [dict(results["throughput"])]
        rows[client, mode] = {"client": client, "mode": mode, "killed": killed, "requests": gateway.requests, **results}
        print(f"# {client:5} {mode:9} {json.dumps(results)}{' (killed while closing)' if killed else ''}",
              file=sys.stderr, flush=True)
    # More host-throughput passes, in reverse order so that a burst of load elsewhere on the machine
    # does not always hit the same cell; the best pass counts (load only ever slows a run down).
    for n in range(1, args.passes):
        for client, mode in cells[::-1] if n % 2 else cells:
            gateway = BenchGateway(mode)
            try:
                results, _ = _run_child([*quick, "--throughput-only", "--child", client, gateway.url], child_timeout)
            finally:
                gateway.close()
            rows[client, mode]["throughput"]["passes"].append(results.get("throughput", {}))
    for row in rows.values():
        for metric in ("per_second", "per_cpu_second"):
            values = [p[metric] for p in row["throughput"]["passes"] if p.get(metric)]
            row["throughput"][metric] = max(values) if values else None
    rows = list(rows.values())
    memory = []
    emits = 1_000_000 if args.quick else MEMORY_EMITS
    for client in clients:
        gateway = BenchGateway("refused")
        results, killed = _run_child(["--memory-child", client, gateway.url, str(emits)], 600)
        gateway.close()
        memory.append({"client": client, "killed": killed, **results})
        print(f"# memory {client:5} {json.dumps(results)}", file=sys.stderr, flush=True)
    load.append(os.getloadavg()[0])
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "memory": memory, "load": load}, indent=2))
    print(_tables(rows, memory, emits, load))


def _tables(rows: list[dict], memory: list[dict], emits: int, load: list[float]) -> str:
    def rate(row: dict | None, metric: str) -> float | None:
        return row.get("throughput", {}).get(metric) if row else None

    healthy = {r["client"]: r for r in rows if r["mode"] == "healthy"}
    baseline = healthy.get("none")
    lines = [
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load[0]:.1f} at start, "
        f"{load[-1]:.1f} at end. Host loop without telemetry: {_num(rate(baseline, 'per_second'), 0)} "
        f"iterations/s, {_num(rate(baseline, 'per_cpu_second'), 0)} per CPU-second.",
        "",
        "| client | gateway | emit median (µs) | emit p99 (µs) | host loop, wall: vs own healthy | vs no telemetry "
        "| host loop per CPU-s: vs own healthy | vs no telemetry | close() (s) | requests seen |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row["client"] == "none":
            continue
        lat = row.get("latency", {})
        own = healthy.get(row["client"])
        close = row.get("close", {}).get("seconds")
        close_text = f"{close:.3f}" if close is not None else "killed while closing"
        lines.append(
            f"| {row['client']} | {row['mode']} | {_num(lat.get('median_us'), 3)} | {_num(lat.get('p99_us'), 3)} "
            f"| {_pct(rate(row, 'per_second'), rate(own, 'per_second'))} "
            f"| {_pct(rate(row, 'per_second'), rate(baseline, 'per_second'))} "
            f"| {_pct(rate(row, 'per_cpu_second'), rate(own, 'per_cpu_second'))} "
            f"| {_pct(rate(row, 'per_cpu_second'), rate(baseline, 'per_cpu_second'))} "
            f"| {close_text} | {row['requests']} |"
        )
    lines += [
        "",
        f"| client | RSS growth over {emits / 1e6:g} M emits, gateway down (MB) | of which in the second half | seconds |",
        "|---|---:|---:|---:|",
    ]
    for row in memory:
        mem = row.get("memory", {})
        lines.append(f"| {row['client']} | {_num(mem.get('rss_growth_mb'), 1)} | {_num(mem.get('second_half_mb'), 1)} "
                     f"| {_num(mem.get('seconds'), 1)} |")
    return "\n".join(lines)


def _num(value, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value, reference) -> str:
    return "n/a" if not value or not reference else f"{100 * value / reference:.1f} %"


if __name__ == "__main__":
    main()
