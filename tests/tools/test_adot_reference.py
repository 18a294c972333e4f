"""tools/adot_reference.py: the Go struct reader on small sources, and the committed reference regenerated
from the ADOT release when a clone is at hand (TELEMETRY_SHUNT_ADOT_REPO, or the fetch mirror path)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from telemetry_shunt.core.agent_config import ADOT_VERSION
from tools import adot_reference as ar

REFERENCE = Path(__file__).resolve().parents[2] / "tools" / "data" / f"adot-collector-v{ADOT_VERSION}.json"


class FakeSource(ar.Source):
    """A Source over in-memory files instead of a git tree."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = set(files)
        self._cache = dict(files)

    def read(self, path: str) -> str:
        return self._cache[path]


PKG = "example.com/exporter/demo"
OPT = "go.opentelemetry.io/collector/config/configoptional"
FILES = {
    f"vendor/{PKG}/config.go": '''
package demo

import (
    "time"

    "go.opentelemetry.io/collector/config/configoptional"
    "example.com/shared"
)

// Config is the demo config.
type Config struct {
    Shared    shared.Client                       `mapstructure:",squash"` // squashed
    Endpoint  string                              `mapstructure:"endpoint"`
    Timeout   time.Duration                       `mapstructure:"timeout,omitempty"`
    Queue     configoptional.Optional[QueueConfig] `mapstructure:"sending_queue"`
    Headers   map[string]string                   `mapstructure:"headers"`
    Mode      Mode                                `mapstructure:"mode"`
    internal  int
    Skipped   bool `mapstructure:"-"`
    _ struct{}
}

type QueueConfig struct {
    Size int64 `mapstructure:"queue_size"`
    Keys []string `mapstructure:"keys"`
}

type Mode struct{ val string }

func (m *Mode) UnmarshalText(b []byte) error { return nil }
''',
    "vendor/example.com/shared/client.go": '''
package shared

type Client struct {
    Retries int `mapstructure:"retries"`
    Nested struct {
        On bool `mapstructure:"on"`
    } `mapstructure:"nested"`
}
''',
    f"vendor/{OPT}/optional.go": "package configoptional\n\ntype Optional[T any] struct { value T }\n",
}


def test_go_structs_become_option_schemas() -> None:
    schema = ar.Resolver(FakeSource(FILES)).named(PKG, "Config", 0)
    props = schema["properties"]
    assert set(props) == {"retries", "nested", "endpoint", "timeout", "sending_queue", "headers", "mode"}
    assert props["nested"] == {"type": "object", "properties": {"on": {"type": "bool"}}}
    assert props["timeout"] == {"type": "duration"}
    assert props["sending_queue"]["properties"] == {"queue_size": {"type": "int"}, "enabled": {"type": "bool"},
                                                    "keys": {"type": "list", "items": {"type": "string"}}}
    assert props["headers"] == {"type": "map", "values": {"type": "string"}}
    assert props["mode"] == {"type": "string"}  # a TextUnmarshaler is configured as a string


def _clone() -> Path | None:
    for candidate in (os.environ.get("TELEMETRY_SHUNT_ADOT_REPO"), "/work/.mirror/aws-observability+aws-otel-collector/repo"):
        if candidate and Path(candidate).is_dir():
            tags = subprocess.run(["git", "-C", candidate, "tag", "-l", f"v{ADOT_VERSION}"], capture_output=True, text=True)
            if tags.stdout.strip():
                return Path(candidate)
    return None


def _upstream_collector() -> Path | None:
    mirror = "/work/.mirror/open-telemetry+opentelemetry-collector/repo"
    for candidate in (os.environ.get("TELEMETRY_SHUNT_OTELCOL_REPO"), mirror):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.mark.skipif(_clone() is None, reason=f"no aws-otel-collector clone with tag v{ADOT_VERSION} here")
def test_committed_reference_is_what_the_tool_generates_from_the_release() -> None:
    committed = json.loads(REFERENCE.read_text())
    regenerated = ar.build(_clone(), f"v{ADOT_VERSION}", upstream_collector=_upstream_collector())
    if _upstream_collector() is None:  # the vendor check needs the upstream clone; compare the rest
        committed["source"]["vendor_checked_against"] = None
    assert regenerated == committed
    assert committed["source"]["vendor_checked_against"] in (None, {
        "identical_files": committed["source"]["vendor_checked_against"]["identical_files"],
        "repository": "open-telemetry/opentelemetry-collector", "tag": committed["source"]["collector"]})
