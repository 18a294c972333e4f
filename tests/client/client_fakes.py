"""Test helpers for the client: a fake gateway on 127.0.0.1 that verifies SigV4 independently and injects faults, a fake
AppConfig agent serving the kill-switch flags, and a simulated clock for the kill-switch schedule."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import hmac
import json
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

from botocore.credentials import Credentials

from telemetry_shunt.client import KillSwitchSource

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLETOKEN"
REGION = "eu-west-1"


def fake_credentials(secret: str = SECRET_KEY, token: str | None = SESSION_TOKEN) -> Credentials:
    return Credentials(ACCESS_KEY, secret, token)


# --- SigV4 verification, from the spec (no botocore) -------------------------------------------------


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def sigv4_signature(
    method: str,
    path: str,
    headers: dict[str, str],
    signed: list[str],
    payload_hash: str,
    *,
    secret: str,
    region: str,
    service: str,
) -> str:
    """The SigV4 signature (hex) per the spec: canonical request, string to sign, HMAC key chain."""
    amz_date = headers["x-amz-date"]
    date = amz_date[:8]
    canonical_headers = "".join(f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed)
    canonical_uri = quote(path.split("?", 1)[0], safe="/-_.~")
    canonical_request = "\n".join([method, canonical_uri, "", canonical_headers, ";".join(signed), payload_hash])
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + secret).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def verify_sigv4(
    method: str,
    path: str,
    headers: dict[str, str],
    *,
    secret: str = SECRET_KEY,
    region: str = REGION,
    service: str = "vpc-lattice-svcs",
    now: float | None = None,
) -> str | None:
    """``None`` if the request carries a valid SigV4 signature for ``service``, else what is wrong.

    ``headers`` maps lower-cased names to values. Follows the SigV4 spec: canonical request, string to
    sign, the HMAC key chain; the payload hash is the ``x-amz-content-sha256`` header's value, which
    must be ``UNSIGNED-PAYLOAD`` and be one of the signed headers.
    """
    auth = headers.get("authorization", "")
    algorithm, _, rest = auth.partition(" ")
    if algorithm != "AWS4-HMAC-SHA256":
        return f"algorithm {algorithm!r}"
    fields = dict(part.strip().split("=", 1) for part in rest.split(",") if "=" in part)
    try:
        credential, signed_names, signature = fields["Credential"], fields["SignedHeaders"], fields["Signature"]
    except KeyError as missing:
        return f"authorization lacks {missing}"
    access_key, date, cred_region, cred_service, terminator = credential.split("/")
    if access_key != ACCESS_KEY:
        return f"access key {access_key}"
    if (cred_region, cred_service, terminator) != (region, service, "aws4_request"):
        return f"scope {cred_region}/{cred_service}/{terminator}"
    amz_date = headers.get("x-amz-date", "")
    if not amz_date.startswith(date):
        return "x-amz-date does not match the credential scope date"
    signed = signed_names.split(";")
    if signed != sorted(signed):
        return "signed headers not sorted"
    for required in ("host", "x-amz-date", "x-amz-content-sha256"):
        if required not in signed:
            return f"{required} is not signed"
    if "x-amz-security-token" in headers and "x-amz-security-token" not in signed:
        return "x-amz-security-token is not signed"
    if headers.get("x-amz-content-sha256") != "UNSIGNED-PAYLOAD":
        return f"x-amz-content-sha256 is {headers.get('x-amz-content-sha256')!r}"
    when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC).timestamp()
    if abs((now if now is not None else time.time()) - when) > 300:
        return "signature expired"
    expected = sigv4_signature(method, path, headers, signed, headers["x-amz-content-sha256"],
                               secret=secret, region=region, service=service)
    if not hmac.compare_digest(expected, signature):
        return "signature mismatch"
    return None


# --- the fake gateway ----------------------------------------------------------------------------------


class QuietServer(ThreadingHTTPServer):
    """A client that gave up (its deadline passed) is expected here, not an error worth a traceback."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class FakeGateway:
    """``POST /metrics`` on 127.0.0.1. ``mode`` can change at any time:

    ``ok``; ``slow`` (answers after ``delay`` s); ``never`` (reads the request, never answers);
    ``store-then-hang`` (stores the records, then never answers: the client's deadline passes after the
    batch arrived); ``store-once-then-hang`` (the same for the first request only, then ``ok``);
    ``5xx`` (503, no Retry-After); ``429`` / ``503-retry-after`` (with ``Retry-After: retry_after``);
    ``403`` (an auth-policy deny); ``403-expired`` (expired token); ``404`` (no listener rule).
    A bad signature always gets a 403, as Lattice does.
    """

    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        self.mode = "ok"
        self.delay = 0.5
        self.retry_after = "1"
        self.date_header: str | None = None
        self.records: list[dict] = []
        self.requests: list[dict] = []  # one per request: time, mode, signature problem, records
        self.peers: set[tuple[str, int]] = set()
        self._release = threading.Event()
        self._lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                gateway._handle(self)

        self._server = QuietServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        if tls is not None:  # (certificate file, key file)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", "0"))
        body = handler.rfile.read(length)
        headers = {name.lower(): value for name, value in handler.headers.items()}
        problem = verify_sigv4(handler.command, handler.path, headers)
        mode = self.mode
        if mode == "store-once-then-hang":
            self.mode = "ok"
        entry = {"time": time.monotonic(), "mode": mode, "problem": problem, "headers": headers, "records": 0,
                 "batch_id": headers.get("x-shunt-batch-id")}
        with self._lock:
            self.requests.append(entry)
            self.peers.add(handler.client_address)
        if problem is not None:
            return self._reply(handler, 403, {"message": f"bad signature: {problem}"})
        if handler.path != "/metrics":
            return self._reply(handler, 404, {"message": "no route"})
        if mode == "never":
            self._release.wait(30)
            handler.close_connection = True
            return None
        if mode == "slow":
            time.sleep(self.delay)
        if mode == "5xx":
            return self._reply(handler, 503, {"message": "unavailable"})
        if mode == "503-retry-after":
            return self._reply(handler, 503, {"message": "draining"}, {"Retry-After": self.retry_after})
        if mode == "404":
            return self._reply(handler, 404, {"message": "no matching rule"})
        if mode == "429":
            return self._reply(handler, 429, {"message": "slow down"}, {"Retry-After": self.retry_after})
        if mode == "403":
            return self._reply(handler, 403, {"Message": "AccessDeniedException: explicit deny in auth policy"})
        if mode == "403-expired":
            return self._reply(handler, 403, {"Message": "ExpiredTokenException: The security token has expired"})
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        records = [json.loads(line) for line in body.decode().splitlines() if line]
        with self._lock:
            self.records.extend(records)
            entry["records"] = len(records)
        if mode in ("store-then-hang", "store-once-then-hang"):
            self._release.wait(30)  # stored; the answer never comes (the client's deadline passes)
            handler.close_connection = True
            return None
        return self._reply(handler, 200, None)

    def _reply(self, handler: BaseHTTPRequestHandler, status: int, doc: dict | None,
               extra: dict[str, str] | None = None) -> None:
        payload = json.dumps(doc).encode() if doc is not None else b""
        handler.send_response(status)
        if self.date_header is not None:
            handler.send_header("Date", self.date_header)
        for name, value in (extra or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def wait_for_records(self, n: int, timeout: float = 20.0) -> list[dict]:
        end = time.monotonic() + timeout
        while len(self.records) < n and time.monotonic() < end:
            time.sleep(0.01)
        return list(self.records)

    def wait_for_requests(self, n: int, timeout: float = 20.0) -> list[dict]:
        end = time.monotonic() + timeout
        while len(self.requests) < n and time.monotonic() < end:
            time.sleep(0.01)
        return list(self.requests)

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


class Blackhole:
    """A listening socket that never accepts: connects succeed (the kernel's backlog), nothing answers."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def close(self) -> None:
        self._sock.close()


def refused_url() -> str:
    """A port nothing listens on: connects are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class FakeAgent:
    """The AppConfig agent: serves the kill-switch flags (``flags``, settable) on 127.0.0.1."""

    def __init__(self, flags: dict | None = None) -> None:
        self.flags = flags if flags is not None else {"telemetry": {"enabled": True}}
        self.status = 200
        self.reads = 0
        agent = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                agent.reads += 1
                switch = KillSwitchSource()
                path = (f"/applications/{switch.application}/environments/{switch.environment}"
                        f"/configurations/{switch.profile}")
                ok = self.path == path and agent.status == 200
                payload = json.dumps(agent.flags).encode() if ok else b"{}"
                self.send_response(agent.status if self.path == path else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def switch(self, **overrides: object) -> KillSwitchSource:
        # A generous read deadline: a loaded machine must not turn a healthy agent into an outage.
        options = {"agent_url": self.url, "timeout_seconds": 5.0, **overrides}
        return KillSwitchSource(**options)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class SimulatedClock:
    """The kill-switch poller's clock: time moves only when a test calls ``advance`` or ``tick``.

    ``sleeps`` counts the poller's sleeps and ``asleep`` says it is in one, so a test can tell that a read
    has happened and the poller sleeps again (``tick``) without timing anything.
    """

    def __init__(self) -> None:
        self._now = 0.0
        self._cond = threading.Condition()
        self.sleeps = 0
        self.asleep = False

    def monotonic(self) -> float:
        with self._cond:
            return self._now

    def sleep_until(self, stop: threading.Event, deadline: float) -> bool:
        with self._cond:
            if self._now >= deadline:
                return stop.is_set()
            self.sleeps += 1
            self.asleep = True
            self._cond.notify_all()
            while self._now < deadline and not stop.is_set():
                self._cond.wait(0.02)  # also notices stop.set(), which does not notify this condition
            self.asleep = False
            return stop.is_set()

    def advance(self, seconds: float) -> None:
        with self._cond:
            self._now += seconds
            self._cond.notify_all()

    def _until(self, predicate, what: str, timeout: float = 20.0) -> None:
        end = time.monotonic() + timeout  # a hang guard, not a timing
        while not predicate():
            left = end - time.monotonic()
            assert left > 0, f"the kill-switch poller {what} ({self.sleeps} sleeps so far)"
            self._cond.wait(left)

    def wait_for_sleeps(self, n: int) -> None:
        """Until the poller has started its ``n``-th sleep and is in it."""
        with self._cond:
            self._until(lambda: self.sleeps >= n and self.asleep, f"did not go to sleep {n} times")

    def tick(self, seconds: float) -> None:
        """The poller is asleep; advance by ``seconds`` (enough for the next read to be due) and return
        once it has read and sleeps again."""
        with self._cond:
            self._until(lambda: self.asleep, "is not asleep")
            n = self.sleeps
            self._now += seconds
            self._cond.notify_all()
            self._until(lambda: self.sleeps > n and self.asleep, "did not read and sleep again")


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def balanced(stats) -> bool:
    return stats.emitted == stats.sent + stats.dropped_total + stats.queued
