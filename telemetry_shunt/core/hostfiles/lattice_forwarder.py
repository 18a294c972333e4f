#!/usr/bin/env python3
"""telemetry-shunt Lattice forwarder: plain HTTP on loopback in, SigV4-signed HTTPS to the gateway out.

Installed by the agent documents (telemetry_shunt.core.agent_files); do not edit on the host. Python 3 standard
library only: hosts may lack botocore.

Why: VPC Lattice requires ``x-amz-content-sha256: UNSIGNED-PAYLOAD`` (it does not support payload signing), and
the ADOT collector's sigv4auth extension signs the SHA-256 of the body instead. The agent's otlp_http exporters
send plain HTTP here; this signs each request for ``vpc-lattice-svcs`` with an unsigned payload and forwards it.

- Only POST to the configured route paths is forwarded (anything else: 404, or 405 on a route), one body of at
  most ``max_body_bytes`` (413 beyond; the length is checked before the body is read), with Content-Type and
  Content-Encoding passed through; the body is forwarded byte for byte (gzip stays gzip).
- At most ``concurrency`` requests in flight (503 + Retry-After beyond), so at most concurrency x max_body_bytes
  of bodies are held; each upstream socket operation times out after ``timeout_seconds`` (then 504).
- The upstream status and body come back as they are, so the agent's retry logic decides (429/502/503/504 retry).
- Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN if set, else the instance role from
  IMDSv2, cached and refreshed before its Expiration; IMDS unavailable: 503 (the agent retries), never a crash.
- GET /health answers 200 with counters (JSON). Every failure is logged once with ``reason=<tag>``.

Runs on Python 3.7+ (Amazon Linux 2 and 2023 ship 3.7 and 3.9): hence ``datetime.timezone.utc`` and ``socket.timeout``.

Usage: telemetry-shunt-forwarder --config FILE [--ca-bundle FILE] [--port N] [--self-test]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import http.client
import http.server
import json
import os
import re
import socket
import ssl
import sys
import threading
import urllib.error
import urllib.request

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
HEALTH_PATH = "/health"
PASSED_HEADERS = ("Content-Type", "Content-Encoding")
UPSTREAM_PASSED_HEADERS = ("Content-Type", "Content-Encoding", "Retry-After")
MAX_RESPONSE_BYTES = 64 * 1024
IMDS_TIMEOUT_SECONDS = 2.0
# Refresh instance-role credentials this long before they expire (IMDS rotates them well before).
REFRESH_BEFORE = datetime.timedelta(minutes=10)
_ROUTE = re.compile(r"/[A-Za-z0-9._/-]{1,200}")
_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+){1,4}")
_ENDPOINT = re.compile(r"https://([A-Za-z0-9.-]{1,253})(:[0-9]{1,5})?")

if os.environ.get("JOURNAL_STREAM"):
    _ERR, _INFO = "<3>", "<6>"
else:
    _ERR = _INFO = ""


def log(message: str) -> None:
    print(f"{_INFO}telemetry-shunt-forwarder: {message}", file=sys.stderr, flush=True)


def fail(reason: str, message: str) -> None:
    print(f"{_ERR}telemetry-shunt-forwarder: reason={reason} {message}", file=sys.stderr, flush=True)


# --- SigV4 (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html) --------

def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def sign(*, method: str, host: str, path: str, headers: dict[str, str], access_key: str, secret_key: str,
         token: str | None, region: str, service: str, now: datetime.datetime) -> dict[str, str]:
    """The headers to send: ``headers`` plus Host, X-Amz-Date, X-Amz-Content-SHA256 (UNSIGNED-PAYLOAD), the
    session token if any, and Authorization, every one of them signed. ``path`` has no query string."""
    amz_date = now.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")  # noqa: UP017 (3.7+)
    out = {"Host": host, **headers, "X-Amz-Date": amz_date, "X-Amz-Content-SHA256": UNSIGNED_PAYLOAD}
    if token:
        out["X-Amz-Security-Token"] = token
    canonical = {k.lower(): " ".join(v.strip().split()) for k, v in out.items()}
    signed = ";".join(sorted(canonical))
    canonical_request = "\n".join([
        method, path, "",
        *(f"{k}:{canonical[k]}" for k in sorted(canonical)), "",
        signed, UNSIGNED_PAYLOAD,
    ])
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                                hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()])
    key = _hmac(("AWS4" + secret_key).encode("utf-8"), amz_date[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    out["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, "
                            f"Signature={signature}")
    return out


# --- credentials ----------------------------------------------------------------------------------------------

class NoCredentials(Exception):
    pass


class Credentials:
    """Environment credentials, else the instance role's from IMDSv2 (cached until REFRESH_BEFORE expiry)."""

    def __init__(self, imds_url: str) -> None:
        self.imds_url = imds_url.rstrip("/")
        self._lock = threading.Lock()
        self._cached: tuple[str, str, str | None, datetime.datetime] | None = None
        self.imds_fetches = 0

    def get(self, now: datetime.datetime) -> tuple[str, str, str | None]:
        env_key, env_secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if env_key and env_secret:
            return env_key, env_secret, os.environ.get("AWS_SESSION_TOKEN") or None
        with self._lock:
            cached = self._cached
            if cached is None or now >= cached[3] - REFRESH_BEFORE:
                try:
                    self._cached = cached = self._fetch()
                except (OSError, ValueError, KeyError, http.client.HTTPException) as exc:
                    if cached is None or now >= cached[3]:
                        raise NoCredentials(f"instance role credentials from IMDS unavailable: {exc}") from exc
                    fail("imds-refresh-failed", f"keeping the cached credentials until they expire: {exc}")
            return cached[0], cached[1], cached[2]

    def _fetch(self) -> tuple[str, str, str | None, datetime.datetime]:
        self.imds_fetches += 1
        token_request = urllib.request.Request(f"{self.imds_url}/latest/api/token", method="PUT",
                                               headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
        with urllib.request.urlopen(token_request, timeout=IMDS_TIMEOUT_SECONDS) as response:  # noqa: S310
            token = response.read().decode()
        base = f"{self.imds_url}/latest/meta-data/iam/security-credentials/"

        def get(url: str) -> bytes:
            request = urllib.request.Request(url, headers={"X-aws-ec2-metadata-token": token})
            with urllib.request.urlopen(request, timeout=IMDS_TIMEOUT_SECONDS) as response:  # noqa: S310
                return response.read()

        role = get(base).decode().split("\n")[0].strip()
        if not role:
            raise ValueError("the instance has no role (no instance profile)")
        data = json.loads(get(base + role))
        expiration = datetime.datetime.strptime(data["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc)  # noqa: UP017 (3.7+)
        return data["AccessKeyId"], data["SecretAccessKey"], data.get("Token"), expiration


# --- configuration --------------------------------------------------------------------------------------------

class ConfigError(Exception):
    pass


def load_config(path: str) -> dict:
    """The forwarder's JSON config file, checked (:func:`load_config_text`)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return load_config_text(text, path)


def load_config_text(text: str, source: str = "config") -> dict:
    """The forwarder's JSON config, checked: every problem names the key and what is expected."""
    path = source
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a JSON object")

    def need(key: str, ok: bool, what: str) -> None:
        if not ok:
            raise ConfigError(f"{path}: {key!r} must be {what}, got {config.get(key)!r}")

    need("endpoint", isinstance(config.get("endpoint"), str) and bool(_ENDPOINT.fullmatch(config["endpoint"])),
         "https://<gateway DNS name>")
    need("region", isinstance(config.get("region"), str) and bool(_REGION.fullmatch(config["region"])),
         "an AWS Region such as eu-west-1")
    need("service", isinstance(config.get("service"), str) and bool(config["service"]), "the signing name")
    routes = config.get("routes")
    need("routes", isinstance(routes, list) and bool(routes)
         and all(isinstance(r, str) and _ROUTE.fullmatch(r) and r != HEALTH_PATH for r in routes),
         f"a non-empty list of paths such as /v1/traces (not {HEALTH_PATH})")
    listen = config.get("listen")
    need("listen", isinstance(listen, list) and bool(listen) and all(a in ("127.0.0.1", "::1") for a in listen),
         "loopback addresses only: 127.0.0.1 and/or ::1")
    for key, lo, hi in (("port", 1, 65535), ("max_body_bytes", 1024, 1 << 30), ("concurrency", 1, 256),
                        ("timeout_seconds", 1, 300)):
        value = config.get(key)
        need(key, isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi,
             f"an integer from {lo} to {hi}")
    return config


# --- the server -----------------------------------------------------------------------------------------------

class Forwarder:
    def __init__(self, config: dict, *, ca_bundle: str | None = None) -> None:
        self.config = config
        match = _ENDPOINT.fullmatch(config["endpoint"])
        assert match is not None
        self.upstream_host = match.group(1)
        self.upstream_port = int(match.group(2)[1:]) if match.group(2) else 443
        self.host_header = self.upstream_host + (match.group(2) or "")
        self.routes = frozenset(config["routes"])
        self.slots = threading.BoundedSemaphore(config["concurrency"])
        self.tls = ssl.create_default_context(cafile=ca_bundle)
        self.credentials = Credentials(os.environ.get("TELEMETRY_SHUNT_IMDS_URL", "http://169.254.169.254"))
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {}

    def count(self, name: str) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + 1

    def health(self) -> bytes:
        with self._lock:
            counters = dict(sorted(self.counters.items()))
        return json.dumps({"status": "ok", "routes": sorted(self.routes), "counters": counters,
                           "imds_fetches": self.credentials.imds_fetches}).encode()

    def forward(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        """One request upstream: (status, headers to pass back, body). Failures become 502/503/504."""
        now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 (3.7+)
        try:
            access_key, secret_key, token = self.credentials.get(now)
        except NoCredentials as exc:
            self.count("failed.imds-unavailable")
            fail("imds-unavailable", f"{path}: {exc}; answering 503 so the agent retries")
            return 503, {"Retry-After": "5"}, b"no credentials (IMDS unavailable)\n"
        signed = sign(method="POST", host=self.host_header, path=path, headers=headers, access_key=access_key,
                      secret_key=secret_key, token=token, region=self.config["region"],
                      service=self.config["service"], now=now)
        signed["Content-Length"] = str(len(body))
        signed["User-Agent"] = "telemetry-shunt-forwarder/1"
        connection = http.client.HTTPSConnection(self.upstream_host, self.upstream_port, context=self.tls,
                                                 timeout=self.config["timeout_seconds"])
        try:
            connection.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
            for name, value in signed.items():
                connection.putheader(name, value)
            connection.endheaders(body)
            response = connection.getresponse()
            data = response.read(MAX_RESPONSE_BYTES)
            passed = {h: response.headers[h] for h in UPSTREAM_PASSED_HEADERS if response.headers.get(h)}
            self.count(f"forwarded.{response.status}")
            if response.status >= 400:
                fail(f"upstream-{response.status}", f"{path}: the gateway answered {response.status}")
            return response.status, passed, data
        except (TimeoutError, socket.timeout):  # noqa: UP041 (not one class before 3.10)
            self.count("failed.upstream-timeout")
            fail("upstream-timeout", f"{path}: no answer within {self.config['timeout_seconds']}s")
            return 504, {}, b"gateway timeout\n"
        except ssl.SSLError as exc:
            self.count("failed.upstream-tls")
            fail("upstream-tls", f"{path}: TLS with {self.host_header} failed: {exc}")
            return 502, {}, b"TLS to the gateway failed\n"
        except (OSError, http.client.HTTPException) as exc:
            self.count("failed.upstream-unreachable")
            fail("upstream-unreachable", f"{path}: {self.host_header}: {exc}")
            return 502, {}, b"gateway unreachable\n"
        finally:
            connection.close()


def make_handler(forwarder: Forwarder) -> type[http.server.BaseHTTPRequestHandler]:
    max_body = forwarder.config["max_body_bytes"]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "telemetry-shunt-forwarder"
        sys_version = ""
        timeout = forwarder.config["timeout_seconds"] * 3  # a client that stops sending mid-request

        def answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                   close: bool = False) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def reject(self, status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> None:
            forwarder.count(f"rejected.{reason}")
            fail(reason, f"{self.command} {self.path}: {message}")
            # The request's body (if any) is not read: close the connection rather than parse it as a request.
            self.answer(status, (message + "\n").encode(), headers, close=True)

        def do_GET(self) -> None:  # noqa: N802
            if self.path == HEALTH_PATH:
                self.answer(200, forwarder.health(), {"Content-Type": "application/json"})
            else:
                self.not_post()

        def not_post(self) -> None:
            if self.path in forwarder.routes:
                self.reject(405, "method-not-allowed", "only POST is forwarded", {"Allow": "POST"})
            else:
                self.reject(404, "not-found", "not a route of the gateway")

        do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = not_post  # noqa: N815

        def do_POST(self) -> None:  # noqa: N802
            if self.path not in forwarder.routes:
                self.reject(404, "not-found", "not a route of the gateway")
                return
            if self.headers.get("Transfer-Encoding"):
                self.reject(411, "length-required", "send Content-Length (chunked bodies are not forwarded)")
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self.reject(411, "length-required", "Content-Length is missing or not a number")
                return
            if length < 0 or length > max_body:
                self.reject(413, "too-large", f"body of {length} bytes is over the {max_body}-byte limit")
                return
            if not forwarder.slots.acquire(blocking=False):
                self.reject(503, "busy", f"{forwarder.config['concurrency']} requests already in flight",
                            {"Retry-After": "1"})
                return
            try:
                body = self.rfile.read(length)
                if len(body) != length:
                    forwarder.count("rejected.short-body")
                    fail("short-body", f"POST {self.path}: the client sent {len(body)} of {length} bytes")
                    self.close_connection = True
                    return
                headers = {h: self.headers[h] for h in PASSED_HEADERS if self.headers.get(h)}
                status, passed, data = forwarder.forward(self.path, headers, body)
            finally:
                forwarder.slots.release()
            self.answer(status, data, passed)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # one line per failure is logged by reject/forward, not one per request

    return Handler


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: str, port: int, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
        super().__init__((address, port), handler)


def serve(config: dict, *, ca_bundle: str | None, port: int | None, self_test: bool) -> int:
    forwarder = Forwarder(config, ca_bundle=ca_bundle)
    handler = make_handler(forwarder)
    servers = []
    for address in config["listen"]:
        try:
            servers.append(Server(address, 0 if self_test else (config["port"] if port is None else port), handler))
        except OSError as exc:
            fail("listen-failed", f"cannot listen on {address}: {exc}")
            return 1
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    if self_test:
        try:
            for server in servers:
                host, bound = server.server_address[:2]
                url = f"http://{'[' + host + ']' if ':' in host else host}:{bound}{HEALTH_PATH}"
                with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
                    json.loads(response.read())
        except (OSError, ValueError) as exc:
            fail("self-test-failed", str(exc))
            return 1
        finally:
            for server in servers:
                server.shutdown()
        log(f"self-test passed: {config['endpoint']} routes {', '.join(config['routes'])}")
        return 0
    for server in servers:
        host, bound = server.server_address[:2]
        log(f"listening on {host}:{bound}, forwarding {', '.join(sorted(forwarder.routes))} to {config['endpoint']}")
    threading.Event().wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="telemetry-shunt-forwarder", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="the forwarder's JSON config")
    parser.add_argument("--ca-bundle", help="CA certificates for the gateway (default: the system's)")
    parser.add_argument("--port", type=int, help="listen on this port instead of the config's (0: any)")
    parser.add_argument("--self-test", action="store_true",
                        help="check the config, serve the health path on an ephemeral port once, and exit")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        fail("bad-config", str(exc))
        return 2
    return serve(config, ca_bundle=args.ca_bundle, port=args.port, self_test=args.self_test)


if __name__ == "__main__":
    sys.exit(main())
