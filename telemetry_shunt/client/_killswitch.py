"""Reading the kill switch from the AppConfig agent on the host, on its own schedule."""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
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

logger = logging.getLogger("telemetry_shunt.client")

_AZ = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9][a-z]", re.ASCII)
# Longest a read may take: it must end well inside one poll interval.
_MAX_READ_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class KillSwitchSource:
    """Where the client reads the kill switch: the feature flags the rollout engine flips, served by
    the AWS AppConfig agent on the host (``http://localhost:2772`` by default).

    (The CDK construct that creates the flags is ``constructs.KillSwitch``; this is only where a client
    reads them.) Read at start-up and then every ``poll_interval_seconds`` by a small thread of its own,
    whatever the send path is doing (the agent serves it from its cache). No faster than the host-side
    watcher: at least ``APPCONFIG_MIN_POLL_SECONDS`` (15 s). Telemetry runs only while the flags read as
    "on" for ``az`` (see ``core.killswitch.telemetry_enabled``). Like the host-side watcher: nothing is
    sent until the switch has been read once (fail closed), and an agent that cannot be read later leaves
    the last decision in force.
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
        if not isinstance(self.agent_url, str):
            raise ValueError(f"agent_url must be an http(s) URL string, got {self.agent_url!r}")
        try:
            parse_endpoint(self.agent_url)
        except ValueError as exc:
            raise ValueError(f"agent_url: {exc}") from None
        for name in ("application", "environment", "profile"):
            value = getattr(self, name)
            if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", value, re.ASCII):
                raise ValueError(f"{name} must be 1-128 of A-Z, a-z, 0-9, '.', '_', '-', got {value!r}")
        if self.az is not None and (not isinstance(self.az, str) or not _AZ.fullmatch(self.az)):
            raise ValueError(f"az must be an Availability Zone name such as 'us-east-1a' (or None), got {self.az!r}")
        poll = self.poll_interval_seconds
        if not _is_number(poll) or not math.isfinite(poll) or poll < APPCONFIG_MIN_POLL_SECONDS:
            raise ValueError(
                f"poll_interval_seconds must be a finite number of at least {APPCONFIG_MIN_POLL_SECONDS} "
                f"(the AppConfig agent's minimum poll, as on the host), got {poll!r}"
            )
        timeout = self.timeout_seconds
        if not _is_number(timeout) or not 0 < timeout <= _MAX_READ_TIMEOUT_SECONDS:
            raise ValueError(
                f"timeout_seconds must be a number in (0, {_MAX_READ_TIMEOUT_SECONDS:g}], got {timeout!r}"
            )

    @property
    def path(self) -> str:
        parts = (self.application, self.environment, self.profile)
        app, env, profile = (quote(p, safe="") for p in parts)
        return f"/applications/{app}/environments/{env}/configurations/{profile}"


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class FlagReader:
    """Reads the flags over one kept-alive connection; used by the flag poller's thread only."""

    def __init__(self, source: KillSwitchSource) -> None:
        self.source = source
        self._connection = Connection(parse_endpoint(source.agent_url))

    def read(self) -> tuple[bool, str | None]:
        """``(enabled, problem)``: ``problem`` says why the flags could not be read (then disabled)."""
        deadline = time.monotonic() + self.source.timeout_seconds
        try:
            response = self._connection.request("GET", self.source.path, {"Accept": "application/json"},
                                                b"", deadline)
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            return False, f"cannot reach the AppConfig agent at {self.source.agent_url}: {reason}"
        if response.status != 200:
            return False, f"AppConfig agent answered HTTP {response.status} for {self.source.path}"
        try:
            flags = json.loads(response.body)
        except ValueError:
            return False, "AppConfig agent returned flag data that is not JSON"
        if not isinstance(flags, dict):
            return False, "AppConfig agent returned flag data that is not a JSON object"
        return telemetry_enabled(flags, self.source.az), None

    def forget(self) -> None:
        self._connection.forget()

    def close(self) -> None:
        self._connection.close()


class ScheduleClock(Protocol):
    """Time for the flag poller's schedule; tests inject a simulated one."""

    def monotonic(self) -> float: ...

    def sleep_until(self, stop: threading.Event, deadline: float) -> bool:
        """Sleep until ``monotonic() >= deadline`` or ``stop`` is set; ``True`` if it was set."""


class SystemScheduleClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep_until(self, stop: threading.Event, deadline: float) -> bool:
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            stop.wait(remaining)
        return True


class FlagPoller:
    """One daemon thread: reads the flags at start and every poll interval (measured from the start of
    one read to the next, so a slow agent does not stretch the period), and hands each result to
    ``on_read(enabled, problem)``. Never touches the send path: a slow gateway cannot delay a read."""

    def __init__(self, source: KillSwitchSource, on_read: Callable[[bool, str | None], None],
                 clock: ScheduleClock) -> None:
        self._source = source
        self._on_read = on_read
        self._clock = clock
        self._reader = FlagReader(source)
        self._stop = threading.Event()
        self._bug_reported = False
        self.reads = 0
        self._thread = threading.Thread(target=self._run, name="telemetry-shunt-flags", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def forget(self) -> None:
        """After ``fork`` in the child: this thread does not exist there; never touch the parent's socket."""
        self._stop.set()
        self._reader.forget()

    def _run(self) -> None:
        clock, stop = self._clock, self._stop
        try:
            while not stop.is_set():
                started = clock.monotonic()
                try:
                    enabled, problem = self._reader.read()
                    if not stop.is_set():
                        self._on_read(enabled, problem)
                except Exception:
                    if not self._bug_reported:
                        self._bug_reported = True
                        logger.exception("telemetry-shunt client: kill-switch poller failed; keeping the last decision")
                self.reads += 1
                clock.sleep_until(stop, started + self._source.poll_interval_seconds)
        finally:
            self._reader.close()
