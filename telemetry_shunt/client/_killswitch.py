"""Reading the kill switch from the AppConfig agent on the host."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from urllib.parse import quote

from telemetry_shunt.client._http import Connection, parse_endpoint
from telemetry_shunt.core.contract import (
    APPCONFIG_AGENT_URL,
    APPCONFIG_APPLICATION,
    APPCONFIG_ENVIRONMENT,
    APPCONFIG_MIN_POLL_SECONDS,
    APPCONFIG_PROFILE,
)
from telemetry_shunt.core.killswitch import telemetry_enabled


@dataclass(frozen=True)
class KillSwitch:
    """Where the client reads the kill switch: the feature flags the rollout engine flips, served by
    the AWS AppConfig agent on the host (``http://localhost:2772`` by default).

    Read at start-up and every ``poll_interval_seconds`` (the agent serves it from its cache). Telemetry
    runs only while the flags read as "on" for ``az`` (see ``core.killswitch.telemetry_enabled``). Like
    the host-side watcher: nothing is sent until the switch has been read once (fail closed), and an
    agent that cannot be read later leaves the last decision in force.
    """

    agent_url: str = APPCONFIG_AGENT_URL
    application: str = APPCONFIG_APPLICATION
    environment: str = APPCONFIG_ENVIRONMENT
    profile: str = APPCONFIG_PROFILE
    # The host's Availability Zone, for the per-AZ flag; None follows the global flag only.
    az: str | None = None
    poll_interval_seconds: float = APPCONFIG_MIN_POLL_SECONDS
    # Total deadline for one read from the agent.
    timeout_seconds: float = 0.5

    def __post_init__(self) -> None:
        parse_endpoint(self.agent_url)
        if self.poll_interval_seconds <= 0:
            raise ValueError(f"poll_interval_seconds must be positive, got {self.poll_interval_seconds!r}")
        if self.timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, got {self.timeout_seconds!r}")

    @property
    def path(self) -> str:
        parts = (self.application, self.environment, self.profile)
        app, env, profile = (quote(p, safe="") for p in parts)
        return f"/applications/{app}/environments/{env}/configurations/{profile}"


class FlagReader:
    """Reads the flags over one kept-alive connection; used by the worker thread only."""

    def __init__(self, switch: KillSwitch) -> None:
        self.switch = switch
        self._connection = Connection(parse_endpoint(switch.agent_url))

    def read(self) -> tuple[bool, str | None]:
        """``(enabled, problem)``: ``problem`` says why the flags could not be read (then disabled)."""
        deadline = time.monotonic() + self.switch.timeout_seconds
        try:
            response = self._connection.request("GET", self.switch.path, {"Accept": "application/json"},
                                                b"", deadline)
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            return False, f"cannot reach the AppConfig agent at {self.switch.agent_url}: {reason}"
        if response.status != 200:
            return False, f"AppConfig agent answered HTTP {response.status} for {self.switch.path}"
        try:
            flags = json.loads(response.body)
        except ValueError:
            return False, "AppConfig agent returned flag data that is not JSON"
        if not isinstance(flags, dict):
            return False, "AppConfig agent returned flag data that is not a JSON object"
        return telemetry_enabled(flags, self.switch.az), None

    def forget(self) -> None:
        self._connection.forget()

    def close(self) -> None:
        self._connection.close()
