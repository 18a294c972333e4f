"""Around the real signing forwarder (``core/hostfiles/lattice_forwarder.py``, run as a process): a fake gateway
(HTTPS on 127.0.0.1 with a throwaway CA, checking every request's SigV4 signature with botocore) and a fake
IMDSv2 serving instance-role credentials.

The IMDS is the watcher tests' fake (``watcher_fakes.FakeImds``), which also serves the instance role's
credentials. Only the things around the forwarder are fakes; the forwarder is the host file as shipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from telemetry_shunt.core.contract import LATTICE_SIGNING_NAME
from tests.hostside.watcher_fakes import FakeImds, wait_until  # noqa: F401 (FakeImds: the one IMDS fake)

PROGRAM = Path(__file__).resolve().parents[2] / "telemetry_shunt" / "core" / "hostfiles" / "lattice_forwarder.py"
REGION = "eu-west-1"
# The interpreter the forwarder runs with (hosts have older ones: TELEMETRY_SHUNT_TEST_FORWARDER_PYTHON=python3.7).
PYTHON = os.environ.get("TELEMETRY_SHUNT_TEST_FORWARDER_PYTHON", sys.executable)


def load_forwarder_program() -> ModuleType:
    """The host file as a module (for its signer and config checks)."""
    spec = importlib.util.spec_from_file_location("lattice_forwarder_under_test", PROGRAM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_ca(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and its key), which is also the CA bundle the forwarder trusts."""
    cert, key = directory / "gateway.pem", directory / "gateway.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    return cert, key


HAS_OPENSSL = shutil.which("openssl") is not None


def verify_sigv4(method: str, path: str, headers: dict[str, str], secrets: dict[str, str]) -> str | None:
    """None if botocore computes the same signature for this request, else what is wrong."""
    auth = headers.get("Authorization", "")
    m = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                     r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})", auth)
    if not m:
        return f"malformed Authorization {auth!r}"
    key_id, _day, region, service, signed, signature = m.groups()
    if key_id not in secrets:
        return f"unknown access key {key_id}"
    if service != LATTICE_SIGNING_NAME or region != REGION:
        return f"signed for {service} in {region}"
    lower = {k.lower(): v for k, v in headers.items()}
    if lower.get("x-amz-content-sha256") != "UNSIGNED-PAYLOAD":
        return f"x-amz-content-sha256 is {lower.get('x-amz-content-sha256')!r}"
    names = signed.split(";")
    for required in ("host", "x-amz-date", "x-amz-content-sha256"):
        if required not in names:
            return f"{required} is not signed"
    request = AWSRequest(method=method, url=f"https://{lower['host']}{path}",
                         headers={n: lower[n] for n in names if n in lower})
    request.context["timestamp"] = lower["x-amz-date"]
    signer = SigV4Auth(Credentials(key_id, secrets[key_id], lower.get("x-amz-security-token")), service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if expected != signature:
        return "signature mismatch"
    if signer.signed_headers(signer.headers_to_sign(request)) != signed:
        return "signed headers differ"
    return None


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    problem: str | None


@dataclass
class FakeGateway:
    """HTTPS on 127.0.0.1: verifies the signature (403 if wrong, as Lattice would) and answers ``status``."""

    cert: Path
    key: Path
    secrets: dict[str, str] = field(default_factory=dict)
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    release: threading.Event | None = None  # when set, requests wait for it (to hold slots in flight)
    arrived: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    def __post_init__(self) -> None:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = dict(self.headers.items())
                problem = verify_sigv4("POST", self.path, headers, gateway.secrets)
                gateway.received.append(Received("POST", self.path, headers, body, problem))
                gateway.arrived.release()
                if gateway.release is not None:
                    gateway.release.wait(60)
                status, out, extra = (403, b"signature does not match\n", {}) if problem else \
                    (gateway.status, gateway.body, gateway.headers)
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.endpoint = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self.release is not None:
            self.release.set()
        self.server.shutdown()
        self.server.server_close()


class ForwarderProcess:
    """``python3 lattice_forwarder.py --config ... --port 0`` as a process; its port read from its log."""

    def __init__(self, root: Path, config: dict, *, ca_bundle: Path | None, env: dict[str, str]) -> None:
        self.config_path = root / "forwarder.json"
        self.config_path.write_text(json.dumps(config))
        self.log = root / "forwarder.log"
        args = [PYTHON, "-I", str(PROGRAM), "--config", str(self.config_path), "--port", "0"]
        if ca_bundle is not None:
            args += ["--ca-bundle", str(ca_bundle)]
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(args, env={"PATH": os.environ["PATH"], **env}, stdout=subprocess.DEVNULL,
                                         stderr=log, start_new_session=True)
        found: dict[str, int] = {}

        def listening() -> bool:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.log_text())
            if m:
                found["port"] = int(m.group(1))
            if self.proc.poll() is not None:
                raise AssertionError(f"the forwarder exited {self.proc.returncode}: {self.log_text()}")
            return bool(m)

        wait_until(listening, "the forwarder to listen")
        self.url = f"http://127.0.0.1:{found['port']}"

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def reasons(self, tag: str) -> int:
        return self.log_text().count(f"reason={tag} ")

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
