"""boto3 clients for the engine, created once at the CLI boundary, and a counting, throttling-aware caller."""

from __future__ import annotations

import functools
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from telemetry_shunt.agent_rollout.clock import Clock

THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "RequestThrottled",
})


@dataclass
class AwsClients:
    """The clients the engine uses; any object with the same methods (a fake) will do."""

    ec2: Any
    ssm: Any
    cloudwatch: Any


@functools.lru_cache(maxsize=8)
def make_session(*, region: str | None, profile: str | None):
    """One session per Region/profile and process: service models are loaded once."""
    import boto3

    return boto3.Session(profile_name=profile, region_name=region)


def make_client(session, service: str, *, endpoint_url: str | None):
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)
    return session.client(service, endpoint_url=endpoint_url, config=config)


def make_clients(*, region: str | None, profile: str | None, endpoint_url: str | None) -> AwsClients:
    session = make_session(region=region, profile=profile)
    return AwsClients(
        ec2=make_client(session, "ec2", endpoint_url=endpoint_url),
        ssm=make_client(session, "ssm", endpoint_url=endpoint_url),
        cloudwatch=make_client(session, "cloudwatch", endpoint_url=endpoint_url),
    )


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None


class AwsCaller:
    """Calls AWS through one door: counts calls per operation and retries throttling with backoff.

    Only throttling is retried: a throttled request was rejected, so repeating it cannot run a command
    twice. Waits go through the injected clock.
    """

    def __init__(self, clock: Clock, *, attempts: int = 6, base_delay: float = 0.5, max_delay: float = 20.0,
                 rng: random.Random | None = None) -> None:
        self.clock = clock
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.calls: Counter[str] = Counter()
        self.throttled = 0
        self._rng = rng or random.Random(0)

    def __call__(self, client: Any, operation: str, **kwargs: Any) -> dict[str, Any]:
        method: Callable[..., dict[str, Any]] = getattr(client, operation)
        for attempt in range(1, self.attempts + 1):
            self.calls[operation] += 1
            try:
                return method(**kwargs)
            except Exception as exc:
                if error_code(exc) not in THROTTLING_CODES or attempt == self.attempts:
                    raise
                self.throttled += 1
                delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
                self.clock.sleep(delay * (0.5 + self._rng.random() / 2))
        raise AssertionError("unreachable")

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())
