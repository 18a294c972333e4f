"""Reading and flipping the kill switch: AWS AppConfig feature flags, or a local file for the sandbox.

Wording, once: the kill switch is *engaged* ("kill on") when telemetry is OFF; *released* ("kill off")
when telemetry is ON. Flags are AppConfig feature flags (``version: "1"``): the global flag
``telemetry`` and optional per-AZ flags ``telemetry-<az>``; ``enabled: true`` means telemetry runs.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from telemetry_shunt.agent_rollout.state import FileSystem, atomic_write
from telemetry_shunt.core.contract import (
    APPCONFIG_APPLICATION,
    APPCONFIG_ENVIRONMENT,
    APPCONFIG_MIN_POLL_SECONDS,
    APPCONFIG_PROFILE,
    GLOBAL_FLAG,
    kill_switch_strategy_name,
)
from telemetry_shunt.core.killswitch import az_flag_key, telemetry_enabled
from telemetry_shunt.errors import ShuntError, ValidationError

# The predefined AppConfig.AllAtOnce bakes for 10 minutes and holds the environment, so an undo would
# have to wait: flips use the KillSwitch construct's own all-at-once strategy without bake, found by name.
PREDEFINED_PREFIX = "AppConfig."
FLAG_KEY = re.compile(r"[a-z][a-zA-Z0-9-]{0,63}\Z", re.ASCII)  # whole key, ASCII (no trailing newline)


def flag_key(az: str | None) -> str:
    key = GLOBAL_FLAG if az is None else az_flag_key(az)
    if not FLAG_KEY.match(key):
        raise ValidationError(f"flag key {key!r} is not a valid AppConfig flag key: check the AZ name {az!r}")
    return key


def describe(flags: Mapping[str, Any], azs: list[str]) -> dict[str, Any]:
    """The kill-switch picture for humans: global and per-AZ, in both words."""
    def word(enabled: bool) -> str:
        return "telemetry ON (kill switch released)" if enabled else "telemetry OFF (kill switch engaged)"

    out: dict[str, Any] = {"global": word(telemetry_enabled(flags))}
    known = sorted({k[len(GLOBAL_FLAG) + 1:] for k in flags if k.startswith(GLOBAL_FLAG + "-")} | set(azs))
    for az in known:
        out[az] = word(telemetry_enabled(flags, az))
    return out


@dataclass(frozen=True)
class FlipResult:
    key: str
    telemetry_enabled: bool
    changed: bool
    version: str | None = None
    deployment: str | None = None
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "flag": self.key,
            "telemetry": "ON" if self.telemetry_enabled else "OFF",
            "kill_switch": "released" if self.telemetry_enabled else "ENGAGED",
            "changed": self.changed, "version": self.version, "deployment": self.deployment,
            "dry_run": self.dry_run,
        }


class KillSwitchFlags(Protocol):
    """Where the engine and ``shunt kill`` read and flip the kill-switch flags. (The CDK construct that
    creates them is ``KillSwitch``; the in-app client has its own reader.)"""

    def read_flags(self) -> dict[str, Any]:
        """The deployed flags in data-plane form: ``{"telemetry": {"enabled": true}, ...}``."""

    def set_telemetry(self, az: str | None, enabled: bool, *, dry_run: bool = False,
                      description: str = "") -> FlipResult: ...


class FileKillSwitchFlags:
    """The sandbox's kill switch: the data-plane JSON in a local file (moto has no AppConfig).

    Selected with ``--kill-switch-file`` / ``SHUNT_KILL_SWITCH_FILE``; ``shunt sandbox`` prints it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def read_flags(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise ShuntError(
                f"kill-switch file {self.path} does not exist: start 'shunt sandbox' or fix the path"
            ) from None
        except OSError as exc:
            raise ShuntError(f"cannot read kill-switch file {self.path}: {exc.strerror}: fix the path") from None
        try:
            flags = json.loads(raw.decode("utf-8"))
        except ValueError:
            flags = None
        if not isinstance(flags, dict):
            raise ShuntError(f"{self.path} is not a kill-switch file (a JSON object of AppConfig flags such as "
                             '{"telemetry": {"enabled": true}}): fix --kill-switch-file / SHUNT_KILL_SWITCH_FILE')
        return flags

    def set_telemetry(self, az: str | None, enabled: bool, *, dry_run: bool = False,
                      description: str = "") -> FlipResult:
        import fcntl

        key = flag_key(az)
        # Read, change and write under a lock beside the file: two operators flipping different zones at once
        # both land (without it, the later write put back the flag the earlier one had just flipped). The write
        # is the state store's (a temporary file of its own, synced and renamed): readers see old or new.
        self.read_flags()  # a missing or foreign file is its own error, before any lock file is made beside it
        try:
            lock = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ShuntError(f"cannot lock kill-switch file {self.path}: {exc.strerror}: fix its directory's "
                             "permissions") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            flags = self.read_flags()
            changed = flags.get(key, {}).get("enabled") is not enabled
            if changed and not dry_run:
                flags[key] = {"enabled": enabled}
                atomic_write(FileSystem(), self.path, json.dumps(flags, indent=2, sort_keys=True))
        except OSError as exc:
            raise ShuntError(f"cannot write kill-switch file {self.path}: {exc.strerror}: fix the path or its "
                             "permissions") from None
        finally:
            os.close(lock)
        return FlipResult(key, enabled, changed, dry_run=dry_run)


class AppConfigKillSwitchFlags:
    """AppConfig feature flags: reads through ``appconfigdata`` (what hosts see), flips by creating a
    hosted configuration version and deploying it with the KillSwitch construct's all-at-once strategy
    (no bake; found by name, ``TelemetryShunt-KillSwitch-AllAtOnce``)."""

    def __init__(self, appconfig: Any, appconfigdata: Any, *, application: str = APPCONFIG_APPLICATION,
                 environment: str = APPCONFIG_ENVIRONMENT, profile: str = APPCONFIG_PROFILE,
                 strategy: str | None = None, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.appconfig = appconfig
        self.appconfigdata = appconfigdata
        self.application = application
        self.environment = environment
        self.profile = profile
        self.strategy = strategy or kill_switch_strategy_name()
        self._token: str | None = None
        self._flags: dict[str, Any] = {}
        self._read_at: float | None = None
        self._monotonic = monotonic

    def read_flags(self) -> dict[str, Any]:
        """One data-plane session per reader: later reads reuse the poll token (one call each) and an
        empty body means "unchanged since the last read"."""
        now = self._monotonic()
        if self._read_at is not None and now - self._read_at < APPCONFIG_MIN_POLL_SECONDS:
            return dict(self._flags)  # AppConfig refuses polls faster than the session's minimum interval
        if self._token is None:
            self._token = self.appconfigdata.start_configuration_session(
                ApplicationIdentifier=self.application, EnvironmentIdentifier=self.environment,
                ConfigurationProfileIdentifier=self.profile,
                RequiredMinimumPollIntervalInSeconds=APPCONFIG_MIN_POLL_SECONDS,
            )["InitialConfigurationToken"]
        try:
            reply = self.appconfigdata.get_latest_configuration(ConfigurationToken=self._token)
        except Exception:
            self._token = None  # expired or rejected token: start over on the next read
            raise
        self._token = reply.get("NextPollConfigurationToken")
        body = reply["Configuration"]
        raw = body.read() if hasattr(body, "read") else body
        if raw:
            self._flags = json.loads(raw)
        self._read_at = now
        return dict(self._flags)

    def _find(self, operation: str, name: str, what: str, **kwargs: Any) -> str:
        paginator = self.appconfig.get_paginator(operation)
        for page in paginator.paginate(**kwargs):
            for item in page.get("Items", []):
                if name in (item.get("Name"), item.get("Id")):
                    return item["Id"]
        raise ShuntError(f"AppConfig {what} {name!r} not found: deploy the KillSwitch stack or check --region")

    def _ids(self) -> tuple[str, str, str]:
        app = self._find("list_applications", self.application, "application")
        env = self._find("list_environments", self.environment, "environment", ApplicationId=app)
        profile = self._find("list_configuration_profiles", self.profile, "configuration profile", ApplicationId=app)
        return app, env, profile

    def _strategy_id(self) -> str:
        if self.strategy.startswith(PREDEFINED_PREFIX):
            return self.strategy
        return self._find("list_deployment_strategies", self.strategy, "deployment strategy")

    def set_telemetry(self, az: str | None, enabled: bool, *, dry_run: bool = False,
                      description: str = "") -> FlipResult:
        key = flag_key(az)
        app, env, profile = self._ids()
        strategy = self._strategy_id()
        latest = 0
        for page in self.appconfig.get_paginator("list_hosted_configuration_versions").paginate(
                ApplicationId=app, ConfigurationProfileId=profile):
            for item in page.get("Items", []):
                latest = max(latest, int(item["VersionNumber"]))
        if not latest:
            raise ShuntError(f"the kill-switch profile {self.profile!r} has no hosted version yet: deploy the "
                             "KillSwitch stack first")
        content = self.appconfig.get_hosted_configuration_version(
            ApplicationId=app, ConfigurationProfileId=profile, VersionNumber=latest)["Content"]
        raw = content.read() if hasattr(content, "read") else content
        document = json.loads(raw)
        if key not in document.get("flags", {}):
            # the stack owns the flag definitions (a redeploy would drop a flag added here)
            raise ShuntError(f"flag {key!r} is not in the kill-switch profile: add the AZ to the KillSwitch "
                             "stack, deploy it, then flip it")
        values = document.setdefault("values", {})
        changed = values.get(key, {}).get("enabled") is not enabled
        values[key] = {**values.get(key, {}), "enabled": enabled}
        if dry_run:
            return FlipResult(key, enabled, changed, version=None, dry_run=True)
        created = self.appconfig.create_hosted_configuration_version(
            ApplicationId=app, ConfigurationProfileId=profile,
            Content=json.dumps(document, sort_keys=True).encode("utf-8"), ContentType="application/json",
            Description=(description or f"shunt kill: {key} enabled={enabled}")[:1024],
            **({"LatestVersionNumber": latest} if latest else {}),
        )
        version = str(created["VersionNumber"])
        deployment = self.appconfig.start_deployment(
            ApplicationId=app, EnvironmentId=env, DeploymentStrategyId=strategy,
            ConfigurationProfileId=profile, ConfigurationVersion=version,
            Description=(description or f"shunt kill: {key} enabled={enabled}")[:1024],
        )
        return FlipResult(key, enabled, changed, version=version, deployment=str(deployment["DeploymentNumber"]))
