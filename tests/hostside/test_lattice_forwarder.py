"""The host's signing forwarder (``core/hostfiles/lattice_forwarder.py``): its SigV4 against botocore's, and the
program run for real as a process between a client and a fake HTTPS gateway that checks every signature with
botocore, with credentials from the environment or a fake IMDSv2."""

from __future__ import annotations

import datetime
import gzip
import http.client
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from telemetry_shunt.core import agent_config as ac
from telemetry_shunt.core.contract import LATTICE_SIGNING_NAME
from tests.hostside.forwarder_fakes import (
    HAS_OPENSSL,
    PROGRAM,
    REGION,
    FakeGateway,
    FakeImds,
    ForwarderProcess,
    load_forwarder_program,
    make_ca,
    verify_sigv4,
)

FW = load_forwarder_program()
HOST = "telemetry-gateway-0123456789abcdef0.7d67968.vpc-lattice-svcs.eu-west-1.on.aws"
NOW = datetime.datetime(2026, 11, 30, 12, 34, 56, tzinfo=datetime.UTC)
ENV_CREDS = {"AWS_ACCESS_KEY_ID": "AKIAENVKEY", "AWS_SECRET_ACCESS_KEY": "env-secret", "AWS_SESSION_TOKEN": "env-token"}


# --- SigV4, against botocore ---------------------------------------------------------------------------------

@pytest.mark.parametrize("token", ["session-token", None], ids=["with-token", "without-token"])
@pytest.mark.parametrize("headers", [
    {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    {"Content-Type": "application/x-ndjson"},
    {},
], ids=["protobuf-gzip", "ndjson", "no-headers"])
def test_signature_is_botocores_with_an_unsigned_payload(token: str | None, headers: dict[str, str]) -> None:
    mine = FW.sign(method="POST", host=HOST, path="/v1/traces", headers=headers, access_key="AKIDEXAMPLE",
                   secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token=token, region=REGION,
                   service=LATTICE_SIGNING_NAME, now=NOW)
    request = AWSRequest(method="POST", url=f"https://{HOST}/v1/traces", headers={"Host": HOST, **headers},
                         data=b"the body is not signed")
    request.context["payload_signing_enabled"] = False  # botocore then sends and signs UNSIGNED-PAYLOAD
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=NOW):  # the same frozen time
        botocore.auth.SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token),
                                LATTICE_SIGNING_NAME, REGION).add_auth(request)
    expected = dict(request.headers.items())
    assert mine["X-Amz-Content-SHA256"] == expected["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    assert mine["X-Amz-Date"] == expected["X-Amz-Date"] == "20261130T123456Z"
    assert mine.get("X-Amz-Security-Token") == expected.get("X-Amz-Security-Token") == token
    assert mine["Authorization"] == expected["Authorization"]
    assert "x-amz-content-sha256" in mine["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")


def test_a_different_body_keeps_the_signature_and_a_different_time_changes_it() -> None:
    common = dict(method="POST", host=HOST, path="/v1/logs", headers={}, access_key="A", secret_key="S", token=None,
                  region=REGION, service=LATTICE_SIGNING_NAME)
    assert FW.sign(**common, now=NOW)["Authorization"] != \
        FW.sign(**common, now=NOW + datetime.timedelta(seconds=1))["Authorization"]
    assert verify_sigv4("POST", "/v1/logs", FW.sign(**common, now=NOW), {"A": "S"}) is None
    assert verify_sigv4("POST", "/v1/logs", FW.sign(**common, now=NOW), {"A": "other"}) == "signature mismatch"


# --- its configuration ---------------------------------------------------------------------------------------

def config_for(endpoint: str, **overrides: object) -> dict:
    from tests.core.test_agent_config import gateway

    config = ac.render_forwarder_config(gateway())
    config.update(endpoint=endpoint, **overrides)
    return config


@pytest.mark.parametrize("key, value", [
    ("endpoint", "http://plain.example"), ("region", "Europe"), ("routes", []), ("routes", ["/health"]),
    ("listen", ["0.0.0.0"]), ("max_body_bytes", 0), ("concurrency", True), ("timeout_seconds", "8"),
])
def test_bad_config_is_refused_naming_the_key(key: str, value: object) -> None:
    config = config_for("https://example.on.aws")
    config[key] = value
    with pytest.raises(FW.ConfigError, match=f"'{key}' must be"):
        FW.load_config_text(json.dumps(config))


def test_self_test_serves_its_health_path_once_and_exits(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(config_for("https://example.on.aws")))
    bad.write_text(json.dumps(config_for("https://example.on.aws", listen=["0.0.0.0"])))
    ok = subprocess.run([sys.executable, "-I", str(PROGRAM), "--config", str(good), "--self-test"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "self-test passed" in ok.stderr, ok.stderr
    refused = subprocess.run([sys.executable, "-I", str(PROGRAM), "--config", str(bad), "--self-test"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "reason=bad-config" in refused.stderr and "'listen'" in refused.stderr


# --- the program, for real -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if not HAS_OPENSSL:
        pytest.skip("needs openssl for the fake gateway's certificate")
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def gateway(ca: tuple[Path, Path]) -> Iterator[FakeGateway]:
    gw = FakeGateway(*ca, secrets={ENV_CREDS["AWS_ACCESS_KEY_ID"]: ENV_CREDS["AWS_SECRET_ACCESS_KEY"]})
    yield gw
    gw.close()


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    fake = FakeImds()
    yield fake
    fake.close()


@pytest.fixture
def start(tmp_path: Path, ca: tuple[Path, Path], gateway: FakeGateway, imds: FakeImds) -> Iterator:
    started: list[ForwarderProcess] = []

    def run(*, creds: dict[str, str] | None = ENV_CREDS, ca_bundle: Path | None = ca[0],
            endpoint: str | None = None, **overrides: object) -> ForwarderProcess:
        env = {"TELEMETRY_SHUNT_IMDS_URL": imds.url, **(creds or {})}
        root = tmp_path / f"fw{len(started)}"
        root.mkdir()
        proc = ForwarderProcess(root, config_for(endpoint or gateway.endpoint, **overrides), ca_bundle=ca_bundle, env=env)
        started.append(proc)
        return proc

    yield run
    for proc in started:
        proc.close()
        assert "Traceback" not in proc.log_text(), proc.log_text()


def request(url: str, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)  # a hang guard only
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.headers.items()), response.read()
    finally:
        connection.close()


def health(fw: ForwarderProcess) -> dict:
    status, _, body = request(fw.url, "GET", "/health")
    assert status == 200
    return json.loads(body)


OTLP_HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}


def test_a_gzip_body_is_forwarded_byte_for_byte_signed_with_only_its_content_headers(start, gateway) -> None:
    fw = start()
    body = gzip.compress(bytes(range(256)) * 64, mtime=0)
    status, _, answer = request(fw.url, "POST", "/v1/traces", body,
                                {**OTLP_HEADERS, "X-Custom": "dropped", "Authorization": "Bearer app-token",
                                 "Connection": "keep-alive", "Te": "trailers"})
    assert (status, answer) == (200, b"{}")
    (got,) = gateway.received
    assert got.problem is None and got.path == "/v1/traces" and got.body == body
    names = {k.lower() for k in got.headers}
    assert got.headers["Content-Type"] == "application/x-protobuf" and got.headers["Content-Encoding"] == "gzip"
    assert "x-custom" not in names and "te" not in names
    assert got.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIAENVKEY/")  # not the app's
    assert got.headers["X-Amz-Security-Token"] == "env-token"
    assert got.headers["Host"] == gateway.endpoint.removeprefix("https://")
    assert health(fw)["counters"] == {"forwarded.200": 1}


@pytest.mark.parametrize("status, extra", [(200, {}), (429, {"Retry-After": "7"}), (503, {"Retry-After": "3"}),
                                           (403, {})], ids=["200", "429", "503", "403"])
def test_the_gateways_status_and_body_come_back_as_they_are(start, gateway, status: int, extra: dict) -> None:
    gateway.status, gateway.body, gateway.headers = status, f"gateway says {status}".encode(), extra
    fw = start()
    got_status, headers, body = request(fw.url, "POST", "/v1/metrics", b"x" * 10, OTLP_HEADERS)
    assert (got_status, body) == (status, f"gateway says {status}".encode())
    for name, value in extra.items():
        assert headers[name] == value  # the agent honours Retry-After on 429/503
    assert gateway.received[0].problem is None
    assert health(fw)["counters"] == {f"forwarded.{status}": 1}
    assert fw.reasons(f"upstream-{status}") == (1 if status >= 400 else 0)


def test_only_post_to_a_route_is_forwarded(start, gateway) -> None:
    fw = start()
    assert request(fw.url, "POST", "/v2/other", b"x")[0] == 404
    assert request(fw.url, "POST", "/v1/traces?x=1", b"x")[0] == 404
    assert request(fw.url, "GET", "/")[0] == 404
    status, headers, _ = request(fw.url, "GET", "/v1/traces")
    assert status == 405 and headers["Allow"] == "POST"
    assert request(fw.url, "PUT", "/v1/logs", b"x")[0] == 405
    assert request(fw.url, "DELETE", "/metrics")[0] == 405
    assert gateway.received == []
    assert health(fw)["counters"] == {"rejected.not-found": 3, "rejected.method-not-allowed": 3}
    assert fw.reasons("not-found") == 3 and fw.reasons("method-not-allowed") == 3


def test_bodies_over_the_cap_get_413_without_being_forwarded(start, gateway) -> None:
    fw = start(max_body_bytes=4096)
    assert request(fw.url, "POST", "/v1/logs", b"y" * 4097, OTLP_HEADERS)[0] == 413
    assert request(fw.url, "POST", "/v1/logs", b"y" * 4096, OTLP_HEADERS)[0] == 200
    assert [len(r.body) for r in gateway.received] == [4096]
    assert health(fw)["counters"] == {"rejected.too-large": 1, "forwarded.200": 1}
    assert fw.reasons("too-large") == 1


def test_the_default_cap_is_the_contracts(start, gateway) -> None:
    fw = start()
    cap = config_for("https://x.on.aws")["max_body_bytes"]
    # Content-Length alone decides: the body over the cap is never read
    host, port = fw.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.putrequest("POST", "/v1/traces")
    connection.putheader("Content-Length", str(cap + 1))
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()


def test_requests_beyond_the_concurrency_get_503_busy(start, gateway) -> None:
    gateway.release = threading.Event()
    fw = start(concurrency=1)
    first: dict[str, int] = {}
    holder = threading.Thread(target=lambda: first.update(status=request(fw.url, "POST", "/v1/traces", b"1")[0]))
    holder.start()
    assert gateway.arrived.acquire(timeout=60)  # the one slot is now in flight (hang guard only)
    status, headers, _ = request(fw.url, "POST", "/v1/traces", b"2")
    assert status == 503 and headers["Retry-After"] == "1"
    gateway.release.set()
    holder.join(60)
    assert first == {"status": 200} and len(gateway.received) == 1
    assert request(fw.url, "POST", "/v1/traces", b"3")[0] == 200  # the slot is free again
    assert fw.reasons("busy") == 1


def test_instance_role_credentials_come_from_imds_and_are_cached(start, gateway, imds) -> None:
    gateway.secrets = imds.secrets
    fw = start(creds=None)
    for _ in range(3):
        assert request(fw.url, "POST", "/v1/traces", b"x", OTLP_HEADERS)[0] == 200
    assert imds.credential_reads == 1
    assert all(r.problem is None for r in gateway.received)
    assert {r.headers["X-Amz-Security-Token"] for r in gateway.received} == {"token-1"}


def test_credentials_near_their_expiration_are_refreshed(start, gateway, imds) -> None:
    gateway.secrets = imds.secrets
    imds.expires_in = datetime.timedelta(minutes=5)  # inside the forwarder's refresh window
    fw = start(creds=None)
    assert request(fw.url, "POST", "/v1/traces", b"x")[0] == 200
    assert request(fw.url, "POST", "/v1/traces", b"x")[0] == 200
    assert imds.credential_reads == 2
    imds.expires_in = datetime.timedelta(hours=6)
    assert request(fw.url, "POST", "/v1/traces", b"x")[0] == 200  # refreshed once more, now long-lived
    assert request(fw.url, "POST", "/v1/traces", b"x")[0] == 200
    assert imds.credential_reads == 3
    keys = [r.headers["Authorization"].split("Credential=")[1].split("/")[0] for r in gateway.received]
    assert keys == ["ASIAFAKE00000001", "ASIAFAKE00000002", "ASIAFAKE00000003", "ASIAFAKE00000003"]
    assert all(r.problem is None for r in gateway.received)


def test_imds_down_gives_503_and_a_reason_then_recovers(start, gateway, imds) -> None:
    gateway.secrets = imds.secrets
    imds.failing = True
    fw = start(creds=None)
    status, headers, _ = request(fw.url, "POST", "/v1/traces", b"x")
    assert status == 503 and "Retry-After" in headers
    assert gateway.received == [] and fw.reasons("imds-unavailable") == 1
    imds.failing = False
    assert request(fw.url, "POST", "/v1/traces", b"x")[0] == 200
    assert fw.proc.poll() is None


def test_environment_credentials_take_precedence_over_imds(start, gateway, imds) -> None:
    fw = start()
    assert request(fw.url, "POST", "/v1/traces", b"x")[0] == 200
    assert imds.credential_reads == 0


def test_an_untrusted_gateway_certificate_is_refused_with_502(start, gateway) -> None:
    fw = start(ca_bundle=None)  # the system CAs do not know the fake gateway's certificate
    assert request(fw.url, "POST", "/v1/traces", b"x")[0] == 502
    assert gateway.received == [] and fw.reasons("upstream-tls") == 1


def test_an_unreachable_gateway_gives_502(start, gateway) -> None:
    endpoint = gateway.endpoint
    gateway.close()
    fw = start(endpoint=endpoint)
    assert request(fw.url, "POST", "/v1/traces", b"x")[0] == 502
    assert fw.reasons("upstream-unreachable") == 1


def _interpreter(version: str) -> str | None:
    """An interpreter of that version that runs (pyenv's shims may name one that does not)."""
    import shutil

    candidates = sorted((Path.home() / ".pyenv" / "versions").glob(f"{version}.*/bin/python{version}"))
    for candidate in [*map(str, candidates), shutil.which(f"python{version}")]:
        if candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True, timeout=60).returncode == 0:
            return candidate
    return None


@pytest.mark.parametrize("version", ["3.7", "3.9"], ids=["py3.7-amazon-linux-2", "py3.9-amazon-linux-2023"])
def test_the_forwarder_runs_on_the_hosts_older_pythons(version: str, start, gateway, monkeypatch) -> None:
    interpreter = _interpreter(version)
    if interpreter is None:
        pytest.skip(f"no python{version} on this machine")
    import tests.hostside.forwarder_fakes as fakes

    monkeypatch.setattr(fakes, "PYTHON", interpreter)
    fw = start()
    body = gzip.compress(b"spans" * 100, mtime=0)
    assert request(fw.url, "POST", "/v1/traces", body, OTLP_HEADERS)[0] == 200
    assert gateway.received[0].problem is None and gateway.received[0].body == body


def test_the_docs_curl_example_pushes_through_the_forwarder(start, gateway) -> None:
    """docs/agent-data-path.md's plain-HTTP example, run as written against a running forwarder."""
    import re
    import shutil

    if not shutil.which("curl"):
        pytest.skip("needs curl")
    doc = (Path(__file__).resolve().parents[2] / "docs" / "agent-data-path.md").read_text()
    (block,) = [b for b in re.findall(r"```bash\n(.*?)```", doc, re.DOTALL) if "127.0.0.1:4319" in b]
    fw = start()
    done = subprocess.run(["bash", "-c", "set -o pipefail\n" + block.replace("http://127.0.0.1:4319", fw.url)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (got,) = gateway.received
    assert got.problem is None and got.path == "/metrics"
    assert got.headers["Content-Type"] == "application/x-ndjson" and got.headers["Content-Encoding"] == "gzip"
    record = json.loads(gzip.decompress(got.body))
    assert record["name"] == "orders" and record["value"] == 1
