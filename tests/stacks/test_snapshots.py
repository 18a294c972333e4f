"""Tripwire: the default app's templates, asset hashes masked, against committed snapshots.

This is never the only check (the other tests state intent); it catches unintended drift. After an
intended change, regenerate with ``UPDATE_SNAPSHOTS=1 make test`` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

import app as default_app
from tests.cdk_support import new_app

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
_HASH = re.compile(r"[0-9a-f]{64}")


def _mask(template: dict) -> dict:
    text = _HASH.sub("<asset-hash>", json.dumps(template, sort_keys=True))
    return json.loads(text)


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    app = new_app(tmp_path_factory.mktemp("snap"))
    default_app.build(app)
    assembly = app.synth()
    return {s.stack_name: _mask(s.template) for s in assembly.stacks}


def test_templates_match_snapshots(templates):
    SNAPSHOTS.mkdir(exist_ok=True)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        for name, template in templates.items():
            (SNAPSHOTS / f"{name}.json").write_text(json.dumps(template, indent=1, sort_keys=True) + "\n")
    stored = {p.stem: json.loads(p.read_text()) for p in SNAPSHOTS.glob("*.json")}
    assert set(stored) == set(templates), "stacks added or removed: UPDATE_SNAPSHOTS=1 and review"
    for name, template in templates.items():
        assert template == stored[name], f"{name} drifted from its snapshot: UPDATE_SNAPSHOTS=1 make test, then review the diff"
