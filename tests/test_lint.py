"""ruff (configured in pyproject.toml) is part of the suite: a lint finding fails `make test`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean():
    ruff = Path(sys.executable).parent / "ruff"
    paths = ["telemetry_shunt", "tests", "tools", "bench", "app.py"]
    proc = subprocess.run([str(ruff), "check", "--output-format", "concise", *paths],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
