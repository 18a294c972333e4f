"""The sandbox's hosts: each one a directory (its root) and process groups, running the real host side.

A command sent through the sandbox's moto SSM is run on every target host: each ``aws:runShellScript`` step of
the document (the real document, as SSM stores it) is written to ``_script.sh`` and started with
``sh -c <path>`` as the SSM agent does, with bash's absolute host paths (``/usr/local``, ``/etc``,
``/var/lib``, ``/opt``, ``/run``) moved under the host's root. What is simulated is only the machine:

* systemd: ``sim-bin/systemctl`` (``sandbox_host/systemctl_stub.py``) starts and stops processes from the real
  unit files the documents install;
* the package download: ``aws:configurePackage`` installs the agent stand-in (``sandbox_host/agent``) at the
  version from a local artifact store, with its unit file and config directory, as a Distributor package would;
  the stand-in reads the configuration the documents install and is its own validate command
  (``--check-config``);
* instance metadata and the AppConfig agent: one HTTP server on 127.0.0.1 (IMDSv2 per host under
  ``/imds/<instance-id>``; the kill-switch profile from the sandbox's flag file);
* ``aws`` (``put-metric-data`` to moto), ``tc`` and ``ip`` (no real traffic control).

Everything else (the watcher, heartbeat script, units, document steps) is what ships.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

from telemetry_shunt.core import host_budgets as hb
from telemetry_shunt.core import hostside

log = logging.getLogger(__name__)

AGENT_SERVICE = "sandbox-agent"
#: Where the stand-in agent reads its configuration (installed and validated by the agent documents).
AGENT_CONFIG_PATH = f"/etc/{AGENT_SERVICE}/agent.conf"
#: The config format every stand-in build reads, but those of a ``bad_config_suffix`` version (the next one).
AGENT_CONFIG_FORMAT = 1
HOST_TREES = ("usr/local", "etc", "var/lib", "opt", "run")
_HOST_PATH = re.compile(r"(?<![\w./+-])/(?=(?:" + "|".join(re.escape(t) for t in HOST_TREES) + r")(?:/|\b))")
_PARAM = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
STEP_TIMEOUT_CAP_SECONDS = 120.0
OUTPUT_LIMIT = 2500  # SSM keeps the first 2,500 characters of a step's output in the invocation
_FILES = "telemetry_shunt.agent_rollout.sandbox_host"


def _package_file(name: str) -> str:
    return resources.files(_FILES).joinpath(name).read_text(encoding="utf-8")


def under_root(script: str, root: Path) -> str:
    """The script with every absolute host path (``/etc/...``, ``/usr/local/...``) moved under ``root``."""
    return _HOST_PATH.sub(str(root).rstrip("/") + "/", script)


class LinkLocalServices:
    """IMDSv2 for every host (``/imds/<instance-id>/latest/...``) and the AppConfig agent's kill-switch
    profile, served from the sandbox's flag file, on one port of 127.0.0.1."""

    def __init__(self, *, flags_file: Path, hosts: Mapping[str, tuple[str, str]]) -> None:
        self.flags_file = flags_file
        self.hosts = dict(hosts)  # instance id -> (az, region)
        self.profile_path = hostside.appconfig_agent_path()
        services = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: bytes = b"", content_type: str = "text/plain") -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (its timeout), as it may

            def do_PUT(self) -> None:  # noqa: N802
                parts = self.path.split("/")
                if len(parts) == 6 and parts[1] == "imds" and parts[2] in services.hosts \
                        and parts[3:] == ["latest", "api", "token"]:
                    self._send(200, f"token-{parts[2]}".encode())
                else:
                    self._send(404)

            def do_GET(self) -> None:  # noqa: N802
                if self.path == services.profile_path:
                    try:
                        body = services.flags_file.read_bytes()
                    except OSError:
                        self._send(503)
                        return
                    self._send(200, body, "application/json")
                    return
                parts = self.path.split("/", 5)
                if len(parts) == 6 and parts[1] == "imds" and parts[2] in services.hosts \
                        and parts[3:5] == ["latest", "meta-data"]:
                    iid = parts[2]
                    if self.headers.get("X-aws-ec2-metadata-token") != f"token-{iid}":
                        self._send(401)
                        return
                    az, region = services.hosts[iid]
                    value = {"instance-id": iid, "placement/availability-zone": az,
                             "placement/region": region}.get(parts[5])
                    self._send(200, value.encode()) if value else self._send(404)
                    return
                self._send(404)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="sandbox-link-local", daemon=True)
        self._thread.start()

    def imds_url(self, instance_id: str) -> str:
        return f"{self.url}/imds/{instance_id}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class ArtifactStore:
    """The agent versions a Distributor package install can fetch. ``broken_az``: every version but
    ``healthy_version`` installed in that zone is a build that cannot start (one zone's agents fail).
    A ``bad_config_suffix`` version reads only the next config format, so the config the documents ship is
    bad for it: its validate command refuses it on the host."""

    package: str
    versions: tuple[str, ...]
    healthy_version: str
    broken_suffix: str = "-broken"
    broken_az: str | None = None
    bad_config_suffix: str = "-badconfig"

    def agent_program(self, version: str, az: str) -> str:
        broken = version.endswith(self.broken_suffix) or (az == self.broken_az and version != self.healthy_version)
        config_format = AGENT_CONFIG_FORMAT + 1 if version.endswith(self.bad_config_suffix) else AGENT_CONFIG_FORMAT
        return (_package_file("agent").replace("@VERSION@", version).replace("@BROKEN@", "yes" if broken else "no")
                .replace("@CONFIG_PATH@", AGENT_CONFIG_PATH).replace("@CONFIG_FORMAT@", str(config_format)))


AGENT_UNIT = f"""[Unit]
Description=sandbox agent stand-in (installed by the {{package}} package)

[Service]
Type=notify
ExecStart=/opt/{AGENT_SERVICE}/bin/{AGENT_SERVICE}

[Install]
WantedBy=multi-user.target
"""


@dataclass
class StepResult:
    name: str
    code: int
    stdout: str = ""
    stderr: str = ""


@dataclass
class SimulatedHost:
    """One machine: ``root`` (its file system) and the process groups of its steps and services."""

    instance_id: str
    az: str
    root: Path
    env: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def sim_bin(self) -> Path:
        return self.root / "sim-bin"

    def path(self, host_path: str) -> Path:
        """Where an absolute path of this host is on the sandbox's disk."""
        return self.root / host_path.lstrip("/")

    def systemctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.sim_bin / "systemctl"), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, cwd=self.root)

    def unit_state(self, unit: str) -> str:
        return self.systemctl("is-active", unit).stdout.strip()

    def systemctl_calls(self) -> list[str]:
        path = self.path("/var/log/systemctl.calls")
        return path.read_text().splitlines() if path.exists() else []

    def unit_pids(self) -> dict[str, int]:
        """Running units -> their process group."""
        out = {}
        state = self.path("/run/sim-systemd")
        for pid_file in state.glob("*.pid") if state.exists() else []:
            text = pid_file.read_text().strip()
            if text.isdigit() and _alive(int(text)):
                out[pid_file.name[: -len(".pid")]] = int(text)
        return out

    def orchestration_dir(self, command_id: str) -> Path:
        """Where the SSM agent keeps a command's steps: ``<step>/_script.sh``, ``<step>/stdout``, ``<step>/stderr``."""
        return self.path(f"/var/lib/amazon/ssm/{self.instance_id}/document/orchestration/{command_id}")

    def run_step(self, name: str, script: str, *, timeout: float, work_dir: Path) -> StepResult:
        """A runShellScript step as the SSM agent runs it: ``sh -c <dir>/_script.sh``, its whole output kept
        beside it in ``stdout`` and ``stderr``."""
        work_dir.mkdir(parents=True, exist_ok=True)
        path = work_dir / "_script.sh"
        path.write_text(under_root(script, self.root), encoding="utf-8")
        path.chmod(0o700)
        try:
            done = subprocess.run(["sh", "-c", str(path)], env=self.env, cwd=self.root, capture_output=True,
                                  text=True, timeout=timeout, process_group=0)
            result = StepResult(name, done.returncode, done.stdout, done.stderr)
        except subprocess.TimeoutExpired as exc:
            result = StepResult(name, 124, _text(exc.stdout),
                                _text(exc.stderr) + f"\nstep timed out after {timeout:g} s")
        (work_dir / "stdout").write_text(result.stdout, encoding="utf-8")
        (work_dir / "stderr").write_text(result.stderr, encoding="utf-8")
        return result

    def configure_package(self, inputs: Mapping[str, Any], store: ArtifactStore) -> StepResult:
        """``aws:configurePackage`` Install from the artifact store: the agent program and its unit file."""
        name, version = inputs.get("name"), str(inputs.get("version") or "")
        if inputs.get("action") != "Install":
            return StepResult("configurePackage", 1, stderr=f"action {inputs.get('action')!r} is not simulated")
        if name != store.package or version not in store.versions:
            return StepResult("configurePackage", 1, stderr=f"package {name} version {version!r} not found")
        self.systemctl("stop", AGENT_SERVICE)  # "Uninstall and reinstall"
        program = self.path(f"/opt/{AGENT_SERVICE}/bin/{AGENT_SERVICE}")
        program.parent.mkdir(parents=True, exist_ok=True)
        program.write_text(store.agent_program(version, self.az), encoding="utf-8")
        program.chmod(0o755)
        unit = self.path(f"{hostside.SYSTEMD_DIR}/{AGENT_SERVICE}.service")
        unit.parent.mkdir(parents=True, exist_ok=True)
        unit.write_text(AGENT_UNIT.replace("{package}", store.package), encoding="utf-8")
        self.path(AGENT_CONFIG_PATH).parent.mkdir(parents=True, exist_ok=True)  # the package owns the directory
        return StepResult("configurePackage", 0, stdout=f"Successfully installed {name} {version}")

    def kill_all(self) -> None:
        """Power off: every process group of this machine."""
        for pgid in self.unit_pids().values():
            _killpg(pgid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""  # type: ignore[return-value]


class HostFleet:
    """The sandbox's machines, and the SSM agent on each: runs the commands sent through moto."""

    def __init__(self, base: Path, *, hosts: list[dict[str, str]], region: str, endpoint_url: str,
                 flags_file: Path, store: ArtifactStore, watcher_poll_seconds: float,
                 heartbeat_seconds: float, credentials: Mapping[str, str]) -> None:
        self.base = base
        self.store = store
        self.links = LinkLocalServices(flags_file=flags_file,
                                       hosts={h["instance_id"]: (h["az"], region) for h in hosts})
        python = os.path.realpath(sys.executable)
        self.hosts: dict[str, SimulatedHost] = {}
        for h in hosts:
            root = base / h["instance_id"]
            if root.exists():
                shutil.rmtree(root)
            host = SimulatedHost(h["instance_id"], h["az"], root)
            for tree in (*HOST_TREES, "var/log", "tmp"):
                (root / tree).mkdir(parents=True, exist_ok=True)
            host.sim_bin.mkdir()
            for name, source, shebang in (("systemctl", "systemctl_stub.py", True), ("aws", "aws_stub.py", True),
                                          ("tc", "tc", False), ("ip", "ip", False)):
                text = _package_file(source)
                if shebang:  # this interpreter, without site-packages: a stub starts in ~20 ms
                    text = f"#!{python} -S\n" + text.split("\n", 1)[1]
                (host.sim_bin / name).write_text(text, encoding="utf-8")
                (host.sim_bin / name).chmod(0o755)
            (host.sim_bin / "python3").symlink_to(python)
            host.env = {
                "PATH": f"{host.sim_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                "HOME": str(root),
                "TMPDIR": str(root / "tmp"),
                "LANG": "C.UTF-8",
                "SANDBOX_HOST_ROOT": str(root),
                "SANDBOX_PID": str(os.getpid()),
                "SANDBOX_TIMER_SECONDS": f"{heartbeat_seconds:g}",
                # the scripts' own overrides for their directories and endpoints
                "TELEMETRY_SHUNT_RUN_DIR": str(host.path(hostside.RUN_DIR)),
                "TELEMETRY_SHUNT_STATE_DIR": str(host.path(hostside.STATE_DIR)),
                "TELEMETRY_SHUNT_APPCONFIG_URL": self.links.url,
                "TELEMETRY_SHUNT_IMDS_URL": self.links.imds_url(h["instance_id"]),
                "TELEMETRY_SHUNT_TEST_POLL_SECONDS": f"{watcher_poll_seconds:g}",
                # the agent config tool's: the config, its owner (this process's user) and the budgets drop-in
                "TELEMETRY_SHUNT_AGENT_CONFIG_PATH": str(host.path(AGENT_CONFIG_PATH)),
                "TELEMETRY_SHUNT_AGENT_CONFIG_OWNER": f"{os.getuid()}:{os.getgid()}",
                "TELEMETRY_SHUNT_DROPIN_PATH": str(host.path(hb.dropin_path(AGENT_SERVICE))),
                "AWS_ENDPOINT_URL": endpoint_url,
                "AWS_DEFAULT_REGION": region,
                **credentials,
            }
            self.hosts[h["instance_id"]] = host
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sandbox-ssm-agent")
        self._documents: dict[tuple[str, str], dict[str, Any]] = {}
        self._closed = False

    # --- the SSM agent ---------------------------------------------------------------------------------

    def on_send_command(self, command: Any, document: Mapping[str, Any]) -> None:
        """Called by the moto hook when a command is sent: mark it in progress and run it on each host."""
        command.status = "InProgress"
        targets = [i for i in command.instance_ids if i in self.hosts]
        for inv in command.invocations:
            if inv["InstanceId"] in self.hosts:
                inv.update(Status="InProgress", StatusDetails="InProgress")
        remaining = {"n": len(targets)}
        lock = threading.Lock()

        def finished() -> None:
            with lock:
                remaining["n"] -= 1
                if remaining["n"] == 0:
                    statuses = {inv["Status"] for inv in command.invocations}
                    command.error_count = sum(inv["Status"] != "Success" for inv in command.invocations)
                    command.status = "Success" if statuses <= {"Success"} else "Failed"
                    command.status_details = command.status

        if not targets:
            command.status = "Success"
            return
        for iid in targets:
            self._pool.submit(self._run_on_host, command, document, self.hosts[iid], finished)

    def _run_on_host(self, command: Any, document: Mapping[str, Any], host: SimulatedHost, finished: Any) -> None:
        inv = next(i for i in command.invocations if i["InstanceId"] == host.instance_id)
        try:
            results = self.run_document(host, document, command.parameters, command.command_id)
            failed = next((r for r in results if r.code != 0), None)
            inv.update(
                Status="Failed" if failed else "Success", StatusDetails="Failed" if failed else "Success",
                ResponseCode=failed.code if failed else 0,
                StandardOutputContent="".join(r.stdout for r in results)[:OUTPUT_LIMIT],
                StandardErrorContent="".join(r.stderr for r in results)[:OUTPUT_LIMIT],
            )
        except Exception as exc:  # noqa: BLE001 - the invocation fails, as an agent crash would
            log.exception("sandbox: command %s on %s", command.command_id, host.instance_id)
            inv.update(Status="Failed", StatusDetails="Failed", ResponseCode=1, StandardErrorContent=str(exc))
        finally:
            finished()

    def run_document(self, host: SimulatedHost, document: Mapping[str, Any], parameters: Mapping[str, Any],
                     command_id: str) -> list[StepResult]:
        """Each step in order; the first failing step ends the command (its status is Failed)."""
        values = {k: (v[0] if isinstance(v, list) and v else v) for k, v in (parameters or {}).items()}
        for name, spec in (document.get("parameters") or {}).items():
            values.setdefault(name, spec.get("default", ""))

        def substitute(text: str) -> str:
            return _PARAM.sub(lambda m: str(values.get(m.group(1), m.group(0))), text)

        results: list[StepResult] = []
        with host.lock:
            for step in document.get("mainSteps", []):
                inputs = step.get("inputs", {})
                if step["action"] == "aws:runShellScript":
                    script = substitute("\n".join(inputs.get("runCommand", [])) + "\n")
                    timeout = min(float(inputs.get("timeoutSeconds", 3600)), STEP_TIMEOUT_CAP_SECONDS)
                    work = host.orchestration_dir(command_id) / step["name"]
                    result = host.run_step(step["name"], script, timeout=timeout, work_dir=work)
                elif step["action"] == "aws:configurePackage":
                    result = host.configure_package({k: substitute(str(v)) for k, v in inputs.items()}, self.store)
                else:
                    result = StepResult(step["name"], 1, stderr=f"step action {step['action']} is not simulated")
                results.append(result)
                if result.code != 0:
                    break
        return results

    # --- looking at the machines ------------------------------------------------------------------------

    def agents_running(self) -> dict[str, bool]:
        return {iid: h.unit_state(AGENT_SERVICE) == "active" for iid, h in self.hosts.items()}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        for host in self.hosts.values():
            host.kill_all()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(h.unit_pids() for h in self.hosts.values()):
            time.sleep(0.05)
        self.links.close()


def moto_document(backend: Any, name: str) -> dict[str, Any]:
    """The $LATEST content of a document as moto stores it (what SSM would hand its agent)."""
    return json.loads(backend._documents[name].get_latest_version().content)


_fleets: dict[str, HostFleet] = {}
_hook_lock = threading.Lock()


def attach(fleet: HostFleet, endpoint_key: str = "default") -> None:
    """Run commands sent through this process's moto on ``fleet``'s hosts (until :func:`detach`)."""
    from moto.ssm import models as ssm_models

    with _hook_lock:
        backend_cls = ssm_models.SimpleSystemManagerBackend
        if not getattr(backend_cls, "_shunt_runs_commands", False):
            original = backend_cls.send_command

            def send_command(self: Any, *args: Any, **kwargs: Any) -> Any:
                command = original(self, *args, **kwargs)
                target = _fleets.get("default")
                if target is not None and any(i in target.hosts for i in command.instance_ids):
                    target.on_send_command(command, moto_document(self, command.document_name))
                return command

            backend_cls.send_command = send_command
            backend_cls._shunt_runs_commands = True
        _fleets[endpoint_key] = fleet


def detach(endpoint_key: str = "default") -> None:
    with _hook_lock:
        _fleets.pop(endpoint_key, None)
