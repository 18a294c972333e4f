"""A fault-injecting stand-in for the telemetry gateway, for the client benchmark (127.0.0.1 only).

Accepts any POST (the shunt's /metrics NDJSON and OTLP/HTTP alike) and counts requests and bytes.
Modes: healthy, refused, slow (answers after 0.5 s), never (accepts and reads, never answers),
blackhole (listens but never accepts), 5xx, 429 (Retry-After: 5), 403.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("healthy", "refused", "slow", "never", "blackhole", "5xx", "429", "403")
SLOW_SECONDS = 0.5


class QuietServer(ThreadingHTTPServer):
    """A client that gave up (its deadline passed) is expected here, not an error worth a traceback."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class BenchGateway:
    def __init__(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.requests = 0
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._sock: socket.socket | None = None
        if mode == "refused":
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        elif mode == "blackhole":
            self._sock = socket.socket()
            self._sock.bind(("127.0.0.1", 0))
            self._sock.listen(1024)
            port = self._sock.getsockname()[1]
        else:
            self._server = QuietServer(("127.0.0.1", 0), self._handler())
            self._server.daemon_threads = True
            port = self._server.server_address[1]
            threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                gateway.requests += 1
                status, extra = 200, {}
                if gateway.mode == "never":
                    gateway._release.wait(120)
                    self.close_connection = True
                    return
                if gateway.mode == "slow":
                    time.sleep(SLOW_SECONDS)
                elif gateway.mode == "5xx":
                    status = 503
                elif gateway.mode == "429":
                    status, extra = 429, {"Retry-After": "5"}
                elif gateway.mode == "403":
                    status = 403
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler

    def close(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._sock is not None:
            self._sock.close()
