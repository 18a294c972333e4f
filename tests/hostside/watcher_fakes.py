"""A simulated host for the real kill-switch watcher: fake AppConfig agent and IMDS (HTTP on 127.0.0.1), a stub
``systemctl`` whose units can be slow to stop, fail to start, or sit in ``activating``, and the rendered watcher
script run with bash in a temp directory.

Only the things around the watcher are fakes; the watcher is ``hostside.render_killswitch_watcher`` as shipped.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from telemetry_shunt.core import hostside

SERVICE = "amazon-cloudwatch-agent"
PROFILE_PATH = hostside.appconfig_agent_path()
PYTHON3 = os.path.realpath(sys.executable)
HANG_GUARD_SECONDS = 60.0

# systemd as far as the watcher sees it. State per unit in $STUB_DIR/<unit>.state (default inactive).
# Knobs: <unit>.stop-seconds (stop takes that long: deactivating, then inactive, finishing even if the caller
# gives up, as a systemd job does), <unit>.start-failures (that many starts fail: state failed, exit 1).
# Every call but is-active is appended to $STUB_DIR/calls.
SYSTEMCTL_STUB = r"""#!/usr/bin/env bash
verb=$1; shift
[ "${1:-}" = --quiet ] && { quiet=1; shift; }
unit=${1:-}
state_file="$STUB_DIR/$unit.state"
state=$(cat "$state_file" 2>/dev/null || echo inactive)
[ "$verb" = is-active ] || echo "systemctl $verb $unit" >> "$STUB_DIR/calls"
case "$verb" in
  is-active)
    [ -n "${quiet:-}" ] || echo "$state"
    [ "$state" = active ] ;;
  start|restart)
    failures=$(cat "$STUB_DIR/$unit.start-failures" 2>/dev/null || echo 0)
    if [ "$failures" -gt 0 ]; then
      echo $((failures - 1)) > "$STUB_DIR/$unit.start-failures"
      echo failed > "$state_file"
      echo "Job for $unit failed because the control process exited with error code." >&2
      exit 1
    fi
    echo active > "$state_file" ;;
  stop)
    seconds=$(cat "$STUB_DIR/$unit.stop-seconds" 2>/dev/null || echo 0)
    if [ "$seconds" != 0 ] && [ "$state" != inactive ]; then
      echo deactivating > "$state_file"
      # The stop job outlives a caller that gives up (timeout kills this process group, not the job).
      setsid bash -c "sleep $seconds; echo inactive > '$state_file'" </dev/null >/dev/null 2>&1 &
      sleep "$seconds"
    else
      echo inactive > "$state_file"
    fi ;;
esac
"""


class FakeAppConfigAgent:
    """Serves the kill-switch profile like the AppConfig agent; can be slow, answer garbage, or go down."""

    def __init__(self) -> None:
        self.flags: object = {"telemetry": {"enabled": True}}
        self.raw: bytes | None = None
        self.delay = 0.0
        self.requests = 0
        self._lock = threading.Lock()
        self.port = 0
        self.server: ThreadingHTTPServer | None = None
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                with agent._lock:
                    agent.requests += 1
                if agent.delay:
                    time.sleep(agent.delay)
                if self.path != PROFILE_PATH:
                    self.send_error(404)
                    return
                body = agent.raw if agent.raw is not None else json.dumps(agent.flags).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the watcher gave up waiting

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def close(self) -> None:
        self.down()


class FakeImds:
    """IMDSv2 on 127.0.0.1: token PUT, then GET placement/availability-zone (the watcher) or the instance role's
    credentials (the signing forwarder; a new key on every read, expiring ``expires_in`` from then); or 503 for
    everything while ``failing``."""

    def __init__(self, az: str = "us-east-1a", *, role: str = "web-host") -> None:
        self.az = az
        self.role = role
        self.failing = False
        self.zone_reads = 0
        self.expires_in = datetime.timedelta(hours=6)
        self.credential_reads = 0
        self.secrets: dict[str, str] = {}
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: bytes = b"") -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self) -> None:  # noqa: N802
                if imds.failing:
                    self._answer(503)
                elif self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    self._answer(200, b"token-1")
                else:
                    self._answer(400)

            def do_GET(self) -> None:  # noqa: N802
                roles = "/latest/meta-data/iam/security-credentials/"
                if imds.failing:
                    self._answer(503)
                elif self.headers.get("X-aws-ec2-metadata-token") != "token-1":
                    self._answer(401)
                elif self.path == "/latest/meta-data/placement/availability-zone":
                    imds.zone_reads += 1
                    self._answer(200, imds.az.encode())
                elif self.path == roles:
                    self._answer(200, imds.role.encode())
                elif self.path == roles + imds.role:
                    self._answer(200, imds.new_credentials())
                else:
                    self._answer(404)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def new_credentials(self) -> bytes:
        self.credential_reads += 1
        key = f"ASIAFAKE{self.credential_reads:08d}"
        self.secrets[key] = f"secret-{self.credential_reads}"
        expiration = datetime.datetime.now(datetime.UTC) + self.expires_in
        return json.dumps({"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": key,
                           "SecretAccessKey": self.secrets[key], "Token": f"token-{self.credential_reads}",
                           "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ")}).encode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class WatcherHost:
    """The real watcher (loop mode, short test poll) on a temp 'host' with the fakes above."""

    def __init__(self, root: Path, *, az: str = "us-east-1a", poll_seconds: float = 0.3) -> None:
        self.root = root
        self.agent = FakeAppConfigAgent()
        self.imds = FakeImds(az)
        self.stub = root / "stub"
        self.stub.mkdir(parents=True)
        (self.stub / "systemctl").write_text(SYSTEMCTL_STUB)
        (self.stub / "systemctl").chmod(0o755)
        (self.stub / "python3").symlink_to(PYTHON3)
        self.script = root / "telemetry-shunt-killswitch"
        self.script.write_text(hostside.render_killswitch_watcher(hostside.HostConfig(agent_service=SERVICE)))
        self.log = root / "watcher.log"
        self.poll_seconds = poll_seconds
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        return {
            "PATH": f"{self.stub}:{os.environ['PATH']}",
            "HOME": str(self.root),
            "STUB_DIR": str(self.stub),
            "TELEMETRY_SHUNT_APPCONFIG_URL": self.agent.url,
            "TELEMETRY_SHUNT_IMDS_URL": self.imds.url,
            "TELEMETRY_SHUNT_RUN_DIR": str(self.root / "run"),
            "TELEMETRY_SHUNT_STATE_DIR": str(self.root / "state"),
            "TELEMETRY_SHUNT_TEST_POLL_SECONDS": str(self.poll_seconds),
            "TELEMETRY_SHUNT_AGENT_TIMEOUT": "0.5",
            "TELEMETRY_SHUNT_IMDS_TIMEOUT": "0.5",
            "TELEMETRY_SHUNT_SYSTEMCTL_TIMEOUT": "1",
        }

    # --- the watcher process ---
    def start(self) -> None:
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(["bash", str(self.script)], env=self.env(), stdout=subprocess.DEVNULL,
                                         stderr=log, start_new_session=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        self.agent.close()
        self.imds.close()

    # --- what the host shows ---
    def state(self) -> str:
        path = self.stub / f"{SERVICE}.state"
        return path.read_text().strip() if path.exists() else "inactive"

    def set_state(self, state: str) -> None:
        (self.stub / f"{SERVICE}.state").write_text(state + "\n")

    def knob(self, name: str, value: object) -> None:
        (self.stub / f"{SERVICE}.{name}").write_text(f"{value}\n")

    def calls(self, verb: str | None = None) -> list[str]:
        path = self.stub / "calls"
        lines = path.read_text().splitlines() if path.exists() else []
        return [c for c in lines if verb is None or c == f"systemctl {verb} {SERVICE}"]

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def reasons(self, tag: str) -> int:
        return self.log_text().count(f"reason={tag}")

    def decision(self) -> str:
        path = self.root / "run" / "decision"
        return path.read_text().strip() if path.exists() else ""

    def wait_polls(self, n: int) -> None:
        """Wait until the watcher has asked the agent n more times (each poll asks once)."""
        target = self.agent.requests + n
        wait_until(lambda: self.agent.requests >= target, f"{n} more polls")


def wait_until(condition: Callable[[], object], what: str, timeout: float = HANG_GUARD_SECONDS) -> None:
    """Poll a condition; the timeout only guards against a hang (never a latency assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    if not condition():
        raise AssertionError(f"timed out waiting for: {what}")
