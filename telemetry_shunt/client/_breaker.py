"""Circuit breaker with a single half-open probe and jittered exponential backoff."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


class CircuitBreaker:
    """Decides whether the next request may go out.

    ``failure_threshold`` consecutive failures open the breaker for a backoff of
    ``base_backoff * 2**n`` seconds (``n`` = trips since the last success, capped at ``max_backoff``),
    jittered to between half and all of it so that a fleet of hosts does not probe in step. When the
    backoff ends exactly one request (the probe) is allowed; its success closes the breaker, its
    failure opens it again with a longer backoff. Single-threaded: the client's worker owns it.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        base_backoff: float = 0.5,
        max_backoff: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold!r}")
        if not 0 < base_backoff <= max_backoff:
            raise ValueError(
                f"need 0 < base_backoff <= max_backoff, got base_backoff={base_backoff!r}, "
                f"max_backoff={max_backoff!r}"
            )
        self.failure_threshold = failure_threshold
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self._clock = clock
        self._jitter = jitter
        self.state = CLOSED
        self.failures = 0
        self.trips = 0
        self.open_until = 0.0

    def allow(self) -> bool:
        """Whether a request may go out now; after the backoff, ``True`` once (the probe)."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN and self._clock() >= self.open_until:
            self.state = HALF_OPEN
            return True
        return False

    def seconds_until_allowed(self) -> float:
        if self.state == CLOSED:
            return 0.0
        if self.state == HALF_OPEN:
            return float("inf")  # the probe's outcome decides
        return max(0.0, self.open_until - self._clock())

    def record_success(self) -> None:
        self.state = CLOSED
        self.failures = 0
        self.trips = 0

    def record_failure(self) -> None:
        self.failures += 1
        if self.state == HALF_OPEN or self.failures >= self.failure_threshold:
            backoff = min(self.max_backoff, self.base_backoff * 2**self.trips)
            self._open_for(backoff * (0.5 + 0.5 * self._jitter()))
            self.trips += 1

    def hold(self, seconds: float) -> None:
        """Open for ``seconds`` (the server asked: ``Retry-After``), then probe once."""
        self._open_for(min(max(seconds, 0.0), self.max_backoff))

    def _open_for(self, seconds: float) -> None:
        self.state = OPEN
        self.open_until = self._clock() + seconds
