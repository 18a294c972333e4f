"""What runs on each host: the kill-switch watcher, the heartbeat publisher, their systemd units, and the
SSM Command documents that install, upgrade, roll back, stop and start the agent.

Everything here is a pure function of its arguments (text in, text or dicts out), so the scripts are
tested by running them (``tests/core/test_hostside.py``) and the documents are checked without AWS.

Kill-switch decision on a host (``telemetry-shunt-killswitch``):

- It reads the kill-switch profile from the AWS AppConfig agent on ``localhost:2772`` every
  ``poll_seconds`` (at least 15 s) and applies :func:`telemetry_shunt.core.killswitch.telemetry_enabled`
  for the host's Availability Zone: the global ``telemetry`` flag must be on and ``telemetry-<az>`` must
  not be off. Off stops the agent's systemd service (checked on every poll); a change to on starts it.
- **AppConfig unreachable at first boot: fail closed.** The agent service is installed *disabled*: only
  the watcher starts it, and only after it has read the flag. With ``boot_cache_max_age_seconds`` > 0 the
  watcher may instead use the last decision it read (``/var/lib/telemetry-shunt/last-known-good``) when
  that is younger than the limit; the default (0) never does.
- **Unreachable later: keep the last decision** of this boot (``/run/telemetry-shunt/decision``, which a
  reboot clears), so an AppConfig outage neither kills telemetry nor revives a killed agent.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from telemetry_shunt.core import agent_files
from telemetry_shunt.core.contract import (
    AGENT_VERSION_PARAMETER,
    APPCONFIG_AGENT_URL,
    APPCONFIG_APPLICATION,
    APPCONFIG_ENVIRONMENT,
    APPCONFIG_MIN_POLL_SECONDS,
    APPCONFIG_PROFILE,
    AZ_FLAG_PREFIX,
    DEFAULT_POLL_SECONDS,
    GLOBAL_FLAG,
    HEARTBEAT_AZ_DIMENSION,
    HEARTBEAT_INSTANCE_DIMENSION,
    HEARTBEAT_METRIC,
    HEARTBEAT_NAMESPACE,
    HEARTBEAT_PERIOD_SECONDS,
    HEARTBEAT_VERSION_DIMENSION,
    KILLSWITCH_READ_AGE_METRIC,
)
from telemetry_shunt.core.validation import is_whole_token
from telemetry_shunt.errors import ValidationError

# Where the host pieces live (the SSM documents write them; the docs name them).
WATCHER_PATH = "/usr/local/bin/telemetry-shunt-killswitch"
HEARTBEAT_PATH = "/usr/local/bin/telemetry-shunt-heartbeat"
WATCHER_UNIT = "telemetry-shunt-killswitch.service"
HEARTBEAT_UNIT = "telemetry-shunt-heartbeat.service"
HEARTBEAT_TIMER = "telemetry-shunt-heartbeat.timer"
SYSTEMD_DIR = "/etc/systemd/system"
STATE_DIR = "/var/lib/telemetry-shunt"
RUN_DIR = "/run/telemetry-shunt"
VERSION_FILE = f"{STATE_DIR}/agent-version"
PREVIOUS_VERSION_FILE = f"{STATE_DIR}/agent-version.previous"
# The zone the watcher learned from instance metadata (once; a host never changes zone).
ZONE_FILE = f"{STATE_DIR}/availability-zone"
# Epoch seconds of the watcher's last successful read of the flag (this boot); the heartbeat reports its age.
LAST_READ_FILE = f"{RUN_DIR}/last-read"
# Bounds on the watcher's external calls: one poll takes at most about IMDS + agent + 2 x systemctl seconds
# (the IMDS call only until the zone is known), and the poll period does not stretch beyond that.
WATCHER_IMDS_TIMEOUT_SECONDS = 2
WATCHER_AGENT_TIMEOUT_SECONDS = 5
WATCHER_SYSTEMCTL_TIMEOUT_SECONDS = 20
# What the watcher accepts as an AZ name from instance metadata (us-east-1a, us-west-2-lax-1a, ...).
ZONE_PATTERN = r"^[a-z]{2}(-[a-z0-9]+){2,6}$"

# Agent versions travel through shell commands, S3 keys and CloudWatch dimensions: keep them plain.
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}$"
_VERSION = re.compile(VERSION_PATTERN, re.ASCII)
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._:-]{0,250}", re.ASCII)
_SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)
_PACKAGE = re.compile(r"(arn:[a-z-]+:ssm:[a-z0-9-]+:(\d{12})?:package/)?[a-zA-Z][a-zA-Z0-9._-]{2,127}", re.ASCII)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", re.ASCII)
# SSM replaces {{ name }} in document text; nothing we write may contain the braces.
_SSM_BRACES = re.compile(r"\{\{|\}\}")
SSM_DOCUMENT_MAX_BYTES = 64 * 1024


def validate_version(version: str) -> str:
    """An agent version as used in documents, keys and metric dimensions (``1.300032.2b361``, ``0.40.0``)."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise ValidationError(
            f"agent version must match {VERSION_PATTERN} (letters, digits, '.', '_', '+', '~', '-'), got {version!r}"
        )
    return version


def validate_service(service: str) -> str:
    if not isinstance(service, str) or not _SERVICE.fullmatch(service):
        raise ValidationError(f"agent service must be a systemd unit name such as 'aws-otel-collector', got {service!r}")
    return service


@dataclass(frozen=True)
class HostConfig:
    """What the host scripts need to know.

    ``agent_service`` is the agent's systemd unit. ``poll_seconds`` is how often the watcher reads the flag
    (at least 15 s; AppConfig's agent polls AppConfig every 45 s by default). ``boot_cache_max_age_seconds``
    is 0 for a strict fail-closed boot, or the age up to which the last-known-good decision on disk may be
    used when AppConfig is unreachable at boot.
    """

    agent_service: str
    poll_seconds: int = DEFAULT_POLL_SECONDS
    boot_cache_max_age_seconds: int = 0
    appconfig_agent_url: str = APPCONFIG_AGENT_URL

    def __post_init__(self) -> None:
        validate_service(self.agent_service)
        if not isinstance(self.poll_seconds, int) or self.poll_seconds < APPCONFIG_MIN_POLL_SECONDS:
            raise ValidationError(
                f"kill-switch poll interval must be at least {APPCONFIG_MIN_POLL_SECONDS} s (AppConfig's data-plane "
                f"limit), got {self.poll_seconds!r}"
            )
        if not isinstance(self.boot_cache_max_age_seconds, int) or self.boot_cache_max_age_seconds < 0:
            raise ValidationError(
                f"boot cache max age must be 0 (fail closed) or a positive number of seconds, "
                f"got {self.boot_cache_max_age_seconds!r}"
            )
        if not (isinstance(self.appconfig_agent_url, str) and re.fullmatch(
                r"http://(localhost|127\.0\.0\.1)(:\d{1,5})?", self.appconfig_agent_url, re.ASCII)):
            raise ValidationError(
                f"AppConfig agent URL must be http://localhost[:port], got {self.appconfig_agent_url!r}"
            )


def appconfig_agent_path() -> str:
    """The AppConfig agent path serving the kill-switch profile."""
    return f"/applications/{APPCONFIG_APPLICATION}/environments/{APPCONFIG_ENVIRONMENT}/configurations/{APPCONFIG_PROFILE}"


_HOSTFILES = "telemetry_shunt.core.hostfiles"
_PLACEHOLDER = re.compile(r"@[A-Z_]+@")


@functools.cache
def hostfile_text(name: str) -> str:
    """The text of one file in ``telemetry_shunt/core/hostfiles`` (package data, before placeholders are filled)."""
    return resources.files(_HOSTFILES).joinpath(name).read_text(encoding="utf-8")


def _fill(template: str, values: Mapping[str, str]) -> str:
    out = template
    for key, value in values.items():
        out = out.replace(f"@{key}@", value)
    leftover = _PLACEHOLDER.findall(out)
    if leftover:
        raise AssertionError(f"unfilled placeholders {leftover}")
    return out


def render_decide_program() -> str:
    """The kill-switch rule as the watcher runs it: ``killswitch_rule.py`` verbatim, the file that
    :mod:`telemetry_shunt.core.killswitch` imports (``python3 -c`` it with the flag names and the AZ)."""
    program = hostfile_text("killswitch_rule.py")
    if re.search(r"^PY$", program, re.MULTILINE):
        raise AssertionError("killswitch_rule.py may not contain a line 'PY' (the watcher's here-document end)")
    return program


def render_killswitch_watcher(config: HostConfig) -> str:
    """The kill-switch watcher script (bash; needs curl and python3, both on Amazon Linux and Ubuntu)."""
    return _fill(hostfile_text("killswitch-watcher.sh"), {
        "AGENT_SERVICE": config.agent_service,
        "APPCONFIG_URL": config.appconfig_agent_url,
        "CONFIG_PATH": shlex.quote(appconfig_agent_path()),
        "POLL_SECONDS": str(config.poll_seconds),
        "MIN_POLL_SECONDS": str(APPCONFIG_MIN_POLL_SECONDS),
        "IMDS_TIMEOUT": str(WATCHER_IMDS_TIMEOUT_SECONDS),
        "AGENT_TIMEOUT": str(WATCHER_AGENT_TIMEOUT_SECONDS),
        "SYSTEMCTL_TIMEOUT": str(WATCHER_SYSTEMCTL_TIMEOUT_SECONDS),
        "ZONE_REGEX": shlex.quote(ZONE_PATTERN),
        "BOOT_CACHE_MAX_AGE": str(config.boot_cache_max_age_seconds),
        "RUN_DIR": RUN_DIR,
        "STATE_DIR": STATE_DIR,
        "GLOBAL_FLAG": shlex.quote(GLOBAL_FLAG),
        "AZ_FLAG_PREFIX": shlex.quote(AZ_FLAG_PREFIX),
        "KILLSWITCH_RULE_PY": render_decide_program().rstrip("\n"),
        "IMDS_FUNCTIONS": hostfile_text("imds.sh"),
    })


def render_heartbeat_script(config: HostConfig) -> str:
    """The heartbeat publisher (bash + the AWS CLI): ``aws cloudwatch put-metric-data`` with both dimension sets."""
    return _fill(hostfile_text("heartbeat.sh"), {
        "AGENT_SERVICE": config.agent_service,
        "STATE_DIR": STATE_DIR,
        "NAMESPACE": shlex.quote(HEARTBEAT_NAMESPACE),
        "METRIC": shlex.quote(HEARTBEAT_METRIC),
        "READ_AGE_METRIC": shlex.quote(KILLSWITCH_READ_AGE_METRIC),
        "RUN_DIR": RUN_DIR,
        "AZ_DIM": HEARTBEAT_AZ_DIMENSION,
        "INSTANCE_DIM": HEARTBEAT_INSTANCE_DIMENSION,
        "VERSION_DIM": HEARTBEAT_VERSION_DIMENSION,
        "VERSION_REGEX": shlex.quote(VERSION_PATTERN),
        "IMDS_FUNCTIONS": hostfile_text("imds.sh"),
    })


def render_watcher_unit(config: HostConfig) -> str:
    """systemd service running the watcher loop; restarted if it ever exits."""
    return _fill(hostfile_text(WATCHER_UNIT), {"AGENT_SERVICE": config.agent_service, "WATCHER_PATH": WATCHER_PATH})


def render_heartbeat_unit(config: HostConfig) -> str:
    """systemd oneshot service publishing one heartbeat."""
    return _fill(hostfile_text(HEARTBEAT_UNIT), {"AGENT_SERVICE": config.agent_service,
                                                 "HEARTBEAT_PATH": HEARTBEAT_PATH})


def render_heartbeat_timer() -> str:
    """systemd timer running the heartbeat once per heartbeat period."""
    return _fill(hostfile_text(HEARTBEAT_TIMER), {"HEARTBEAT_PERIOD_SECONDS": str(HEARTBEAT_PERIOD_SECONDS)})


@dataclass(frozen=True)
class HostFile:
    path: str
    content: str
    mode: str


def host_files(config: HostConfig) -> tuple[HostFile, ...]:
    """Every file the SSM documents install on a host."""
    return (
        HostFile(WATCHER_PATH, render_killswitch_watcher(config), "0755"),
        HostFile(HEARTBEAT_PATH, render_heartbeat_script(config), "0755"),
        HostFile(f"{SYSTEMD_DIR}/{WATCHER_UNIT}", render_watcher_unit(config), "0644"),
        HostFile(f"{SYSTEMD_DIR}/{HEARTBEAT_UNIT}", render_heartbeat_unit(config), "0644"),
        HostFile(f"{SYSTEMD_DIR}/{HEARTBEAT_TIMER}", render_heartbeat_timer(), "0644"),
    )


# --- Agent sources --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistributorPackage:
    """An SSM Distributor package (``AmazonCloudWatchAgent``, ``AWSDistroOTel-Collector`` or your own)."""

    name: str
    service: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _PACKAGE.fullmatch(self.name):
            raise ValidationError(f"Distributor package must be a package name or ARN, got {self.name!r}")
        validate_service(self.service)


@dataclass(frozen=True)
class S3Artifact:
    """A versioned artifact in S3, ``key_pattern`` with a ``{version}`` placeholder, one SHA-256 per version.

    ``install_command`` runs with ``$ARTIFACT`` set to the verified download; the default installs an RPM
    (``--oldpackage`` so that a rollback may go to a lower version).
    """

    bucket_name: str
    key_pattern: str
    sha256_by_version: Mapping[str, str]
    service: str
    install_command: str = 'rpm -U --oldpackage --replacepkgs "$ARTIFACT"'

    def __post_init__(self) -> None:
        validate_service(self.service)
        if (not isinstance(self.key_pattern, str) or self.key_pattern.count("{version}") < 1
                or re.search(r"\{(?!version\})", self.key_pattern)):
            raise ValidationError(
                f"S3 key pattern must contain '{{version}}' and no other braces, got {self.key_pattern!r}"
            )
        if not re.fullmatch(r"[A-Za-z0-9!_.+/=-]+", self.key_pattern.replace("{version}", "v"), re.ASCII):
            raise ValidationError(
                f"S3 key pattern may use letters, digits and '!_.+/=-' only (it goes into a shell command), "
                f"got {self.key_pattern!r}"
            )
        # A bucket created in the same app is a CDK token until deploy time; S3 validates the real name then.
        name = self.bucket_name
        if not is_whole_token(name) and not (isinstance(name, str) and _BUCKET.fullmatch(name)):
            raise ValidationError(f"S3 bucket name is not valid: {self.bucket_name!r}")
        if not self.sha256_by_version:
            raise ValidationError(
                f"S3 artifact {self.key_pattern!r} needs a SHA-256 checksum per version "
                "(sha256_by_version={'1.2.3': '<64 hex digits>'}): unverified downloads are refused"
            )
        for version, digest in self.sha256_by_version.items():
            validate_version(version)
            if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
                raise ValidationError(
                    f"SHA-256 for agent version {version!r} must be 64 lowercase hex digits, got {digest!r}"
                )
        if not self.install_command.strip() or _SSM_BRACES.search(self.install_command):
            raise ValidationError(f"install command must be a non-empty shell command without '{{{{', got "
                                  f"{self.install_command!r}")

    def checksums(self) -> list[tuple[str, str]]:
        """(version, sha256) pairs, sorted by version."""
        return sorted(self.sha256_by_version.items())

    def key(self, version: str) -> str:
        return self.key_pattern.replace("{version}", version)


AgentPackage = DistributorPackage | S3Artifact


# --- SSM Command documents --------------------------------------------------------------------------

_ACTION_TEXT = {
    "install": "Install the agent at a version and the telemetry-shunt kill-switch watcher and heartbeat",
    "upgrade": "Upgrade the agent to a version and refresh the kill-switch watcher and heartbeat",
    "rollback": "Roll the agent back to a previous version and refresh the kill-switch watcher and heartbeat",
    "stop": "Stop the agent and its kill-switch watcher (the agent stays stopped across reboots)",
    "start": "Start the kill-switch watcher, which starts the agent if the kill switch allows",
}
_LINUX = {"StringEquals": ["platformType", "Linux"]}
# SSM runs a runShellScript step as `sh -c <dir>/_script.sh` (amazon-ssm-agent, plugins/runscript): without a
# shebang the script runs in the host's sh, which is dash on Ubuntu. Every step starts with this line so that
# bash runs it everywhere, as the tests and the sandbox do.
SHELL_STEP_SHEBANG = "#!/bin/bash"
_VERSION_REF = "{{ " + AGENT_VERSION_PARAMETER + " }}"


def _write_files_commands(files: Sequence[HostFile]) -> list[str]:
    lines = [f"install -d -m 0755 {STATE_DIR} {SYSTEMD_DIR} /usr/local/bin"]
    for f in files:
        if _SSM_BRACES.search(f.content):  # SSM would read them as a parameter reference
            raise AssertionError(f"{f.path} contains '{{{{' or '}}}}', which SSM documents cannot carry")
        encoded = base64.b64encode(f.content.encode()).decode()
        digest = hashlib.sha256(f.content.encode()).hexdigest()
        lines += [
            f"# {f.path} (sha256 {digest})",
            f"echo '{encoded}' | base64 -d > '{f.path}.new'",
            f"chmod {f.mode} '{f.path}.new' && mv -f '{f.path}.new' '{f.path}'",
        ]
    return lines


def _activate_commands(config: HostConfig, *, restart_agent: bool, verify: Sequence[str] = ()) -> list[str]:
    svc = shlex.quote(config.agent_service)
    lines = [
        "systemctl daemon-reload",
        # Only the watcher starts the agent, and only after reading the flag: fail closed at boot.
        f"systemctl disable {svc} 2>/dev/null || true",
        f"systemctl enable {WATCHER_UNIT} {HEARTBEAT_TIMER}",
        f"systemctl restart {WATCHER_UNIT}",
        f"systemctl start {HEARTBEAT_TIMER}",
        f"decision=$({WATCHER_PATH} --once)",
        'if [ "$decision" = on ]; then',
        f"  systemctl {'restart' if restart_agent else 'start'} {svc}",
        *(f"  {line}" for line in verify),
        f'  echo "kill switch on: {config.agent_service} running"',
        "else",
        f'  echo "kill switch off for this host: {config.agent_service} left stopped"',
        "fi",
    ]
    return lines


def _install_steps(action: str, agent: AgentPackage, config: HostConfig,
                   data_path: agent_files.AgentDataPath) -> list[dict[str, Any]]:
    host_setup = [
        "set -euo pipefail",
        *agent_files.prepare_commands(data_path),
        *_write_files_commands(host_files(config) + agent_files.host_files(data_path, version_pattern=VERSION_PATTERN)),
        # The agent's config (validated; a refused one fails the step and changes nothing) and budgets.
        *agent_files.install_commands(data_path, action=action, version_ref=_VERSION_REF),
        # Keep the version this host ran before, for whoever has to roll it back.
        f"if [ -s '{VERSION_FILE}' ] && [ \"$(cat '{VERSION_FILE}')\" != '{_VERSION_REF}' ]; then "
        f"cp -f '{VERSION_FILE}' '{PREVIOUS_VERSION_FILE}'; fi",
        f"echo '{_VERSION_REF}' > '{VERSION_FILE}'",
        *_activate_commands(config, restart_agent=True, verify=agent_files.verify_commands(data_path)),
    ]
    if isinstance(agent, DistributorPackage):
        package_step = {
            "action": "aws:configurePackage",
            "name": "InstallAgentPackage",
            "inputs": {
                "name": agent.name,
                "action": "Install",
                "installationType": "Uninstall and reinstall",
                "version": _VERSION_REF,
            },
        }
    else:
        cases = [f"  '{v}') expected='{d}' ;;" for v, d in agent.checksums()]
        download = [
            "set -euo pipefail",
            f"version='{_VERSION_REF}'",
            'case "$version" in',
            *cases,
            '  *) echo "no SHA-256 configured for agent version $version" >&2; exit 1 ;;',
            "esac",
            "workdir=$(mktemp -d)",
            "trap 'rm -rf \"$workdir\"' EXIT",
            'ARTIFACT="$workdir/agent-artifact"',
            "export ARTIFACT",
            f"aws s3 cp --only-show-errors 's3://{agent.bucket_name}/{agent.key(_VERSION_REF)}' \"$ARTIFACT\"",
            "actual=$(sha256sum \"$ARTIFACT\" | cut -d' ' -f1)",
            'if [ "$actual" != "$expected" ]; then',
            '  echo "checksum mismatch for agent version $version: expected $expected, got $actual" >&2',
            "  exit 1",
            "fi",
            agent.install_command,
        ]
        package_step = {
            "action": "aws:runShellScript",
            "name": "InstallAgentArtifact",
            "precondition": _LINUX,
            "inputs": {"timeoutSeconds": "900", "runCommand": download},
        }
    return [
        # Before the package: its install script may start the agent (ADOT's does); the gate makes that a no-op
        # until the kill-switch watcher has decided on.
        {
            "action": "aws:runShellScript",
            "name": "GateAgentOnKillSwitch",
            "precondition": _LINUX,
            "inputs": {"timeoutSeconds": "60",
                       "runCommand": agent_files.gate_commands(data_path, watcher_path=WATCHER_PATH)},
        },
        package_step,
        {
            "action": "aws:runShellScript",
            "name": "InstallKillSwitchAndHeartbeat",
            "precondition": _LINUX,
            "inputs": {"timeoutSeconds": "300", "runCommand": host_setup},
        },
    ]


def agent_document(action: str, *, agent: AgentPackage, config: HostConfig,
                   data_path: agent_files.AgentDataPath | None = None) -> dict[str, Any]:
    """The SSM Command document (schema 2.2) for one agent action (``install`` ... ``start``).

    ``data_path``: the agent's config and host budgets (:mod:`telemetry_shunt.core.agent_files`); default: the
    budgets' defaults and no config (the agent keeps its own).
    """
    if data_path is None:
        data_path = agent_files.AgentDataPath.budgets_only(agent_service=config.agent_service)
    if data_path.agent_service != config.agent_service:
        raise ValidationError(f"the data path is for {data_path.agent_service!r}, the host config for "
                              f"{config.agent_service!r}")
    if action not in _ACTION_TEXT:
        raise ValidationError(f"unknown agent action {action!r}: use one of {', '.join(_ACTION_TEXT)}")
    if agent.service != config.agent_service:
        raise ValidationError(
            f"agent service {agent.service!r} differs from the host config's {config.agent_service!r}"
        )
    svc = shlex.quote(config.agent_service)
    doc: dict[str, Any] = {"schemaVersion": "2.2", "description": _ACTION_TEXT[action]}
    if action in ("install", "upgrade", "rollback"):
        version_param: dict[str, Any] = {
            "type": "String",
            "description": "Agent version to install (the rollout's target version)",
        }
        if isinstance(agent, S3Artifact):
            version_param["allowedValues"] = [v for v, _ in agent.checksums()]
        else:
            version_param["allowedPattern"] = VERSION_PATTERN
        doc["parameters"] = {AGENT_VERSION_PARAMETER: version_param}
        doc["mainSteps"] = _install_steps(action, agent, config, data_path)
    elif action == "stop":
        doc["mainSteps"] = [{
            "action": "aws:runShellScript",
            "name": "StopAgent",
            "precondition": _LINUX,
            "inputs": {"timeoutSeconds": "120", "runCommand": [
                "set -euo pipefail",
                f"systemctl disable --now {WATCHER_UNIT}",
                f"systemctl stop {svc}",
                f"systemctl disable {svc} 2>/dev/null || true",
                f"echo 'stopped {config.agent_service} and the kill-switch watcher'",
            ]},
        }]
    else:
        doc["mainSteps"] = [{
            "action": "aws:runShellScript",
            "name": "StartAgent",
            "precondition": _LINUX,
            "inputs": {"timeoutSeconds": "120", "runCommand": [
                "set -euo pipefail",
                f"test -x {WATCHER_PATH} || {{ echo 'telemetry-shunt is not installed here: run the install "
                "document first' >&2; exit 1; }",
                *_activate_commands(config, restart_agent=False),
            ]},
        }]
    for step in doc["mainSteps"]:
        if step["action"] == "aws:runShellScript" and step["inputs"]["runCommand"][:1] != [SHELL_STEP_SHEBANG]:
            step["inputs"]["runCommand"].insert(0, SHELL_STEP_SHEBANG)
    check_document(doc)
    return doc


def check_document(doc: Mapping[str, Any]) -> None:
    """Structural checks SSM would make at create time, so that mistakes fail at synth, not at deploy."""
    import json

    text = json.dumps(doc)
    if len(text.encode()) > SSM_DOCUMENT_MAX_BYTES:
        raise ValidationError(f"SSM document is {len(text.encode())} bytes, over the {SSM_DOCUMENT_MAX_BYTES} limit")
    params = set(doc.get("parameters", {}))
    used = set(re.findall(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}", text))
    if used - params:
        raise ValidationError(f"SSM document uses undeclared parameters {sorted(used - params)}")
    names = [s["name"] for s in doc["mainSteps"]]
    if len(set(names)) != len(names):
        raise ValidationError(f"SSM document step names must be unique, got {names}")
