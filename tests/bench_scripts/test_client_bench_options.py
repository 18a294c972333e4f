"""The client bench's own options: a bad value gets one clear error (argparse's exit 2), before any work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "client_bench.py"


@pytest.mark.parametrize("rounds, message", [("0", "--rounds must be at least 1, got 0"),
                                             ("-2", "--rounds must be at least 1, got -2"),
                                             ("x", "argument --rounds: invalid int value: 'x'"),
                                             ("inf", "argument --rounds: invalid int value: 'inf'")])
def test_aggregation_rounds_must_be_a_whole_number_of_at_least_one(rounds, message):
    proc = subprocess.run([sys.executable, str(BENCH), "--aggregation", "--rounds", rounds],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stdout
