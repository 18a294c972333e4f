"""Values every metric helper shares, created once per process.

A ``Duration`` is an immutable value in the jsii runtime, so one instance serves every metric; creating it
per metric costs a round-trip to that runtime each time (``bench/synth_bench.py --profile`` counts them).
"""

from __future__ import annotations

import functools

from aws_cdk import Duration


@functools.cache
def one_minute() -> Duration:
    """The default period of the project's metrics (CloudWatch's one-minute resolution)."""
    return Duration.minutes(1)
