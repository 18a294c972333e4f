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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
