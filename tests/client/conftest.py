"""Fixtures for the client tests; the fakes live in client_fakes.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from client_fakes import REGION, FakeAgent, FakeGateway, fake_credentials

from telemetry_shunt.client import TelemetryClient

# --- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    server = FakeGateway()
    yield server
    server.close()


@pytest.fixture
def agent() -> Iterator[FakeAgent]:
    server = FakeAgent()
    yield server
    server.close()


@pytest.fixture
def make_client() -> Iterator:
    """Build clients with test-speed settings; every client is closed at teardown."""
    clients: list[TelemetryClient] = []

    def make(url: str, **overrides: object) -> TelemetryClient:
        options: dict = {
            "region": REGION,
            "credentials": fake_credentials(),
            "kill_switch": None,
            "flush_interval_seconds": 0.05,
            # A hang guard, not a fault: a healthy fake gateway never gets near it, even on a loaded machine.
            # Tests of timeouts use gateways that never answer, whatever the load.
            "request_timeout_seconds": 10.0,
            "base_backoff_seconds": 0.1,
            "max_backoff_seconds": 0.4,
        }
        options.update(overrides)
        client = TelemetryClient(url, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=0.5)
