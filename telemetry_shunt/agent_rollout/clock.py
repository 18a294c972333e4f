"""Time for the engine: injected so bakes and waits are simulated instantly in tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class SimulatedClock:
    """A clock whose ``sleep`` advances time without waiting; ``on_sleep`` hooks run after each advance."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = float(start)
        self.slept = 0.0
        self.on_sleep: list = []

    def now(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        seconds = max(0.0, float(seconds))
        self._now += seconds
        self.slept += seconds
        for hook in list(self.on_sleep):
            hook(self._now)

    def advance(self, seconds: float) -> None:
        self._now += seconds


def iso(ts: float) -> str:
    """``ts`` as an ISO 8601 UTC string (what the state and audit log record)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
