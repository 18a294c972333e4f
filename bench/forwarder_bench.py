"""The signing forwarder, measured: its cost per request as a ratio of sending the same bodies straight to the
same HTTPS gateway (the baseline, measured in the same run), and its peak memory with every slot holding a
body at the cap, as a ratio of its idle memory and of its MemoryMax budget.

Runs the host file as shipped (``core/hostfiles/lattice_forwarder.py``) as a process, against the tests' fake
gateway (HTTPS on 127.0.0.1, each signature checked with botocore) with environment credentials; needs openssl:
    .venv/bin/python bench/forwarder_bench.py
"""

from __future__ import annotations

import gzip
import http.client
import os
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telemetry_shunt.core import host_budgets as hb  # noqa: E402
from telemetry_shunt.core.contract import AGENT_FORWARDER_CONCURRENCY, AGENT_FORWARDER_MAX_BODY_BYTES  # noqa: E402
from tests.hostside.forwarder_fakes import FakeGateway, ForwarderProcess, make_ca  # noqa: E402
from tests.hostside.test_lattice_forwarder import ENV_CREDS, config_for  # noqa: E402

REQUESTS = 200
BODY = gzip.compress(os.urandom(16 * 1024) + b"metric " * 20000, mtime=0)  # ~40 KiB as sent
HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}


def post_direct(endpoint: str, ca: Path, n: int) -> float:
    """n POSTs straight to the gateway, one TLS connection each (as the forwarder does), unsigned (403s): the
    transport baseline."""
    context = ssl.create_default_context(cafile=str(ca))
    host, port = endpoint.removeprefix("https://").split(":")
    started = time.perf_counter()
    for _ in range(n):
        connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=60)
        connection.request("POST", "/v1/traces", body=BODY, headers=HEADERS)
        connection.getresponse().read()
        connection.close()
    return time.perf_counter() - started


def post_forwarder(url: str, n: int) -> float:
    host, port = url.removeprefix("http://").split(":")
    started = time.perf_counter()
    for _ in range(n):
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        connection.request("POST", "/v1/traces", body=BODY, headers=HEADERS)
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
        connection.close()
    return time.perf_counter() - started


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cert, key = make_ca(root)
        gateway = FakeGateway(cert, key, secrets={ENV_CREDS["AWS_ACCESS_KEY_ID"]: ENV_CREDS["AWS_SECRET_ACCESS_KEY"]})
        (root / "fw").mkdir()
        fw = ForwarderProcess(root / "fw", config_for(gateway.endpoint), ca_bundle=cert, env=dict(ENV_CREDS))
        try:
            post_forwarder(fw.url, 10)  # warm up
            post_direct(gateway.endpoint, cert, 10)
            pairs = []
            for _ in range(3):  # alternate, so machine load hits both alike
                direct = post_direct(gateway.endpoint, cert, REQUESTS)
                through = post_forwarder(fw.url, REQUESTS)
                pairs.append(through / direct)
            assert all(r.problem is None for r in gateway.received if r.headers.get("Authorization"))
            idle = rss_kib(fw.proc.pid, "VmRSS")
            # every slot holding a body at the cap, the gateway holding the answers
            gateway.release = threading.Event()
            big = os.urandom(AGENT_FORWARDER_MAX_BODY_BYTES)
            threads = [threading.Thread(target=_post_big, args=(fw.url, big)) for _ in range(AGENT_FORWARDER_CONCURRENCY)]
            for t in threads:
                t.start()
            for _ in range(AGENT_FORWARDER_CONCURRENCY):
                assert gateway.arrived.acquire(timeout=300)
            gateway.release.set()
            for t in threads:
                t.join(300)
            peak = rss_kib(fw.proc.pid, "VmHWM")
        finally:
            fw.close()
            gateway.close()
    print(f"forwarder bench: {REQUESTS} POSTs of {len(BODY)} bytes, one TLS connection each, 3 alternating rounds")
    print("  time through the forwarder / straight to the gateway: " + ", ".join(f"{r:.2f}" for r in pairs))
    print(f"  memory with {AGENT_FORWARDER_CONCURRENCY} bodies of {AGENT_FORWARDER_MAX_BODY_BYTES >> 20} MiB in flight: "
          f"peak RSS / idle RSS = {peak / idle:.2f} ({idle >> 10} -> {peak >> 10} MiB); "
          f"peak / MemoryMax ({hb.FORWARDER_MEMORY_MAX_MIB} MiB) = {peak / 1024 / hb.FORWARDER_MEMORY_MAX_MIB:.2f}")


def _post_big(url: str, body: bytes) -> None:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=300)
    connection.request("POST", "/v1/traces", body=body, headers=HEADERS)
    connection.getresponse().read()
    connection.close()


if __name__ == "__main__":
    main()
