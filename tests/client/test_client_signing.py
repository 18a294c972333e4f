"""What reaches the gateway: signed batches in the /metrics format, over kept-alive connections."""

from __future__ import annotations

import collections
import hashlib
import logging
import re
import shutil
import ssl
import subprocess

import pytest
from client_fakes import (
    REGION,
    SECRET_KEY,
    FakeGateway,
    balanced,
    fake_credentials,
    sigv4_signature,
    verify_sigv4,
    wait_until,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_shunt.client._signing import sign_headers
from telemetry_shunt.core.contract import METRICS_MAX_RECORD_BYTES


def test_the_verifier_matches_the_aws_sigv4_test_vector():
    # "get-vanilla" from the AWS SigV4 test suite: proves the verifier itself follows the spec.
    headers = {"host": "example.amazonaws.com", "x-amz-date": "20150830T123600Z"}
    signature = sigv4_signature(
        "GET", "/", headers, ["host", "x-amz-date"], hashlib.sha256(b"").hexdigest(),
        secret="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", region="us-east-1", service="service",
    )
    assert signature == "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"


def _signed(**changes) -> dict[str, str]:
    headers = sign_headers(fake_credentials(**changes), REGION, "https://gw.example/metrics", "gw.example",
                           {"Content-Type": "application/x-ndjson"})
    return {name.lower(): value for name, value in headers.items()}


def test_the_verifier_accepts_the_client_signature_and_rejects_tampering():
    headers = _signed()
    assert verify_sigv4("POST", "/metrics", headers) is None
    assert verify_sigv4("POST", "/metrics", {**headers, "content-type": "text/plain"}) == "signature mismatch"
    assert verify_sigv4("POST", "/other", headers) == "signature mismatch"
    assert verify_sigv4("POST", "/metrics", _signed(secret="not-the-secret")) == "signature mismatch"
    assert verify_sigv4("POST", "/metrics", headers, service="execute-api") is not None
    assert verify_sigv4("POST", "/metrics", headers, now=0.0) == "signature expired"


def test_signature_has_lattice_signing_name_and_a_signed_unsigned_payload_header():
    headers = _signed(token=None)
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    credential = headers["authorization"].split("Credential=")[1].split(",")[0]
    assert credential.split("/")[2:] == [REGION, "vpc-lattice-svcs", "aws4_request"]
    signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert "x-amz-content-sha256" in signed and "host" in signed
    assert "x-amz-security-token" not in headers


def botocore_sign_headers(credentials, region: str, url: str, host_header: str, headers: dict[str, str],
                          now: float) -> dict[str, str]:
    """The same request signed by botocore's SigV4Auth at ``now``: the reference ``sign_headers`` is held to."""
    import datetime

    import botocore.auth
    from botocore.awsrequest import AWSRequest

    class UnsignedPayload(botocore.auth.SigV4Auth):
        def payload(self, request):  # (botocore hashes the body of a plain-http request otherwise)
            return "UNSIGNED-PAYLOAD"

    request = AWSRequest(method="POST", url=url, headers={"Host": host_header, **headers})
    request.context["payload_signing_enabled"] = False
    at = datetime.datetime.fromtimestamp(now, datetime.UTC).replace(tzinfo=None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.auth, "get_current_datetime", lambda: at)
        UnsignedPayload(credentials, "vpc-lattice-svcs", region).add_auth(request)
    return dict(request.headers.items())


header_names = st.sampled_from(["Content-Type", "X-Shunt-Batch-Id", "Content-Encoding", "X-Other", "accept"])
header_values = st.text(st.sampled_from("ab /:;=,\t0-9"), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(header_names, header_values, max_size=4),
       st.sampled_from(["us-east-1", "eu-west-1", "ap-southeast-2"]),
       st.sampled_from(["https://gw.example/metrics", "http://127.0.0.1:8080/metrics", "https://h.example/a~b/m"]),
       st.sampled_from([None, "token/with+chars=="]),
       st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
       st.floats(min_value=0, max_value=4102444800))
def test_the_signature_is_botocores_header_for_header(headers, region, url, token, secret, now):
    """The client signs with the project's own signer (the forwarder's), not botocore's request machinery;
    botocore's SigV4Auth, given the same request and time, writes the same headers."""
    credentials = fake_credentials(secret=secret, token=token).get_frozen_credentials()
    host = url.split("/")[2]
    assert sign_headers(credentials, region, url, host, headers, now=now) == \
        botocore_sign_headers(credentials, region, url, host, headers, now)


def test_a_url_it_cannot_sign_is_refused_by_name():
    credentials = fake_credentials().get_frozen_credentials()
    for url in ("https://gw.example/a/../metrics", "https://gw.example/metrics?x=1", "https://gw.example/a b"):
        with pytest.raises(ValueError, match="plain path, no query, no dot segment") as refused:
            sign_headers(credentials, REGION, url, "gw.example", {})
        assert repr(url) in str(refused.value)


def assert_whole_batch_duplicates_only(gateway, emitted_values: list[float]) -> None:
    """Every value arrived; a value arriving twice did so only as part of a whole batch repeated under the
    same batch id (the at-least-once duplicate the collector's dedupe recognises)."""
    by_batch: dict[str, list[dict]] = collections.defaultdict(list)
    for record in gateway.records:
        by_batch[record["batch_id"]].append(record)
    requests_per_batch = collections.Counter(r["batch_id"] for r in gateway.requests if r["records"])
    unique = []
    for batch_id, records in by_batch.items():
        copies = requests_per_batch[batch_id]
        seqs = collections.Counter(r["seq"] for r in records)
        size = len(seqs)
        assert sorted(seqs) == list(range(size)), f"batch {batch_id}: seq not 0..n-1"
        assert set(seqs.values()) == {copies}, f"batch {batch_id}: a partial duplicate"
        first_copy = {r["seq"]: r["value"] for r in records}
        assert all(first_copy[r["seq"]] == r["value"] for r in records), "same batch id, different content"
        unique.extend(first_copy.values())
    assert sorted(unique) == sorted(emitted_values)
    for request in gateway.requests:
        assert request["batch_id"] and re.fullmatch(r"[0-9a-f]{32}", request["batch_id"])


def test_batches_reach_the_gateway_signed_and_in_the_metrics_format(gateway, make_client):
    client = make_client(gateway.url)
    for i in range(2500):
        client.emit("checkout.latency_ms", i, route="/pay", code=200)
    records = gateway.wait_for_records(2500)
    client.close(timeout=10.0)

    assert records[0]["name"] == "checkout.latency_ms"
    assert_whole_batch_duplicates_only(gateway, [float(i) for i in range(2500)])
    assert all(r["attributes"] == {"route": "/pay", "code": "200"} for r in gateway.records)
    assert all(isinstance(r["timestamp"], float) for r in gateway.records)
    requests = gateway.requests
    assert len(requests) >= 3  # max 1000 records per request
    for request in requests:
        assert request["problem"] is None
        assert request["headers"]["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        assert request["headers"]["content-type"] == "application/x-ndjson"
        assert request["headers"]["content-encoding"] == "gzip"
        signed = request["headers"]["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
        assert "x-amz-content-sha256" in signed and "x-shunt-batch-id" in signed
    stats = client.stats()
    assert balanced(stats) and stats.queued == 0
    # At most once (the default): what the client counts as sent arrived; an unanswered batch is counted
    # as "unconfirmed" (it may have arrived too), never retried.
    assert stats.sent <= len(gateway.records) <= stats.sent + stats.dropped["unconfirmed"]
    assert stats.sent + stats.dropped["unconfirmed"] == 2500


def test_uncompressed_bodies_are_plain_ndjson(gateway, make_client):
    client = make_client(gateway.url, compress=False)
    client.emit("queue.depth", 3, queue="orders")
    records = gateway.wait_for_records(1)
    assert records == [{"name": "queue.depth", "value": 3.0, "timestamp": records[0]["timestamp"],
                        "attributes": {"queue": "orders"}, "batch_id": gateway.requests[0]["batch_id"], "seq": 0}]
    assert "content-encoding" not in gateway.requests[0]["headers"]


def test_one_kept_alive_connection_carries_many_batches(gateway, make_client):
    client = make_client(gateway.url)
    for round_ in range(4):
        client.emit("tick", round_)
        assert gateway.wait_for_records(round_ + 1)
    assert len(gateway.requests) == 4
    assert client.stats().connections_opened == 1
    assert len(gateway.peers) == 1


def test_a_wrong_secret_is_refused_by_the_verifier_and_stops_the_client(gateway, make_client, caplog):
    caplog.set_level(logging.ERROR, logger="telemetry_shunt.client")
    client = make_client(gateway.url, credentials=fake_credentials(secret=SECRET_KEY[::-1]))
    client.emit("m", 1)
    assert wait_until(lambda: client.stats().state == "stopped")
    assert gateway.requests[0]["problem"] == "signature mismatch"
    assert "HTTP 403" in client.stats().error


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "abc", None, object()])
def test_invalid_values_are_dropped_alone(gateway, make_client, value):
    client = make_client(gateway.url)
    client.emit("good", 1)
    client.emit("bad", value)
    client.emit(None, 1)  # not a name
    client.emit("good", 2, weird=object())
    records = gateway.wait_for_records(2)
    assert sorted(r["value"] for r in records) == [1.0, 2.0]
    assert records[-1]["attributes"]["weird"].startswith("<object object")
    assert wait_until(lambda: client.stats().dropped["invalid"] == 2)
    stats = client.stats()
    assert stats.emitted == 4 and balanced(stats)


@pytest.fixture
def tls_gateway(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl CLI to make a throwaway certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    server = FakeGateway(tls=(str(cert), str(key)))
    yield server, str(cert)
    server.close()


def test_https_endpoints_are_verified_and_signed(tls_gateway, make_client):
    gateway, cert = tls_gateway
    trusted = make_client(gateway.url, ssl_context=ssl.create_default_context(cafile=cert))
    trusted.emit("m", 1)
    records = gateway.wait_for_records(1)
    assert [r["value"] for r in records] == [1.0]
    assert gateway.requests[0]["problem"] is None
    assert gateway.requests[0]["headers"]["host"] == f"127.0.0.1:{gateway.port}"

    untrusted = make_client(gateway.url, failure_threshold=1, max_attempts=1)  # system CAs only
    untrusted.emit("m", 2)
    assert wait_until(lambda: untrusted.stats().dropped["connection"] == 1)
    assert untrusted.stats().state == "sending"  # a failed handshake is a failure, not a configuration stop


def test_a_record_over_the_collectors_line_limit_is_dropped_as_oversized_not_sent(gateway, make_client):
    client = make_client(gateway.url)
    client.emit("huge", 1, blob="x" * METRICS_MAX_RECORD_BYTES)  # the collector would discard this line
    client.emit("fine", 2)
    assert [r["name"] for r in gateway.wait_for_records(1)] == ["fine"]
    assert wait_until(lambda: client.stats().sent == 1)
    stats = client.stats()
    assert stats.dropped["oversized"] == 1 and stats.dropped_total == 1 and balanced(stats)
    assert all(len(line) < METRICS_MAX_RECORD_BYTES for line in map(str, gateway.records))
