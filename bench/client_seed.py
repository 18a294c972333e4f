"""A faithful Python port of the seed article's Node.js client, for comparison only.

The seed (``telemetry-client.ts``) posts every metric on its own request with a 100 ms socket timeout
and, once ``failures > 5``, drops everything for 30 s. Node's ``http.request`` runs on the event loop;
Python has none in a plain app, so the request runs in the caller's thread (a blackholed POST costs the
caller ~100 ms, see DESIGN.md). Like the seed it does not sign (signing would add ~110 us per metric),
reuses one kept-alive connection (Node 24's default agent) and logs the breaker opening once per trip.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from urllib.parse import urlsplit


class SeedClient:
    def __init__(self, endpoint: str, *, timeout: float = 0.1, open_seconds: float = 30.0) -> None:
        parts = urlsplit(endpoint)
        self._host, self._port = parts.hostname, parts.port or 80
        self._timeout = timeout
        self._open_seconds = open_seconds
        self._conn: http.client.HTTPConnection | None = None
        self.failures = 0
        self.circuit_open_until = 0.0

    def emit(self, name: str, value: float, **attributes: str) -> None:
        # 1. Fail fast: if the breaker is open, drop data immediately.
        if self.circuit_open_until:
            if time.monotonic() < self.circuit_open_until:
                return
            self.circuit_open_until = 0.0  # the seed's setTimeout(() => {circuitOpen = false; failures = 0})
            self.failures = 0
        data = json.dumps({"name": name, "value": value, "timestamp": time.time(), "attributes": attributes})
        try:
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._conn.request("POST", "/metrics", body=data, headers={"Content-Type": "application/json"})
            response = self._conn.getresponse()
            response.read()  # 2. Resource hygiene: consume the stream
            if response.status < 300:
                self.failures = 0
            else:
                self._trip_breaker()
        except Exception:  # 3. Silent failure: req.on('error') / req.on('timeout')
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._trip_breaker()

    def _trip_breaker(self) -> None:
        self.failures += 1
        if self.failures > 5:
            self.circuit_open_until = time.monotonic() + self._open_seconds
            print("Telemetry Circuit Breaker OPEN. Dropping metrics.", file=sys.stderr)

    def close(self) -> None:
        # The seed has nothing to flush: every metric was sent (or dropped) inside emit.
        if self._conn is not None:
            self._conn.close()
