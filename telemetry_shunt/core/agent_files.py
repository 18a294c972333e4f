"""The agent's data path on a host, as the SSM documents install it: its configuration and its budgets.

:class:`AgentDataPath` says what to install next to the agent package:

- the agent's configuration file, **validated before it replaces the running one** (the previous file is
  kept; a refused file changes nothing), saved per agent version so that a rollback to that version
  restores the configuration it ran with;
- the systemd drop-in with the host budgets and the bandwidth-cap script (``core/host_budgets``), also
  saved per version;
- after the agent is (re)started, a health check: if the agent does not become healthy in time, the
  previous configuration goes back, the agent is restarted with it, and the document fails;
- with a gateway, the **signing forwarder** (``core/hostfiles/lattice_forwarder.py``): the program, its unit
  (started and stopped with the agent's, so the kill switch covers it), its budgets drop-in and its config
  (self-tested before it replaces the current one, saved per version, checked healthy after the restart and
  put back if not). See :mod:`telemetry_shunt.core.agent_config` for why it exists.

How a configuration is validated depends on the agent. A validate command (``$CONFIG`` is the candidate
file) runs before anything changes, e.g. ``otelcol-contrib validate --config="$CONFIG"``. ADOT has no
such command (see :mod:`telemetry_shunt.core.agent_config`), so ADOT configurations are checked at synth
against the release's reference and on the host by the health check after the restart.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import shlex
from dataclasses import dataclass
from importlib import resources

from telemetry_shunt.core import agent_config as ac
from telemetry_shunt.core import host_budgets as hb
from telemetry_shunt.core.contract import AGENT_FORWARDER_ADDRESS, AGENT_FORWARDER_HEALTH_PATH, AGENT_FORWARDER_PORT
from telemetry_shunt.core.gateway_ref import GatewayRef
from telemetry_shunt.core.validation import is_token
from telemetry_shunt.errors import ValidationError

CONFIG_TOOL_PATH = "/usr/local/bin/telemetry-shunt-agent-config"
STATE_DIR = "/var/lib/telemetry-shunt"
CANDIDATE_PATH = f"{STATE_DIR}/agent-config.candidate"
FORWARDER_PATH = "/usr/local/bin/telemetry-shunt-forwarder"
FORWARDER_CONFIG_PATH = "/etc/telemetry-shunt/forwarder.json"
FORWARDER_CANDIDATE_PATH = f"{STATE_DIR}/forwarder.candidate"
FORWARDER_UNIT = f"{hb.FORWARDER_SERVICE}.service"
FORWARDER_HEALTH_URL = f"http://{AGENT_FORWARDER_ADDRESS}:{AGENT_FORWARDER_PORT}{AGENT_FORWARDER_HEALTH_PATH}"
#: The agent's drop-in that starts the forwarder with it (the forwarder's unit is PartOf the agent's).
FORWARDER_AGENT_DROPIN_NAME = "60-telemetry-shunt-forwarder.conf"
_HOSTFILES = "telemetry_shunt.core.hostfiles"
_PATH = re.compile(r"/[A-Za-z0-9._/-]{1,250}", re.ASCII)
_OWNER = re.compile(r"[a-z_][a-z0-9_-]{0,31}:[a-z_][a-z0-9_-]{0,31}", re.ASCII)
_HEALTH_URL = re.compile(r"http://(127\.0\.0\.1|localhost|\[::1\]):\d{1,5}(/[A-Za-z0-9._/-]*)?", re.ASCII)
_SSM_BRACES = re.compile(r"\{\{|\}\}")
_HEREDOC_END = "TELEMETRY_SHUNT_AGENT_CONFIG_EOF"


@dataclass(frozen=True)
class AgentFile:
    path: str
    content: str
    mode: str


@dataclass(frozen=True)
class AgentConfigFile:
    """Your agent's own configuration file, for a custom agent source.

    :param path: where the agent reads it, e.g. ``/etc/otelcol-contrib/config.yaml``.
    :param text: its content (no ``{{``/``}}``: SSM would take them for document parameters).
    :param validate_command: one shell line that exits 0 when ``$CONFIG`` (the candidate file) is valid, e.g.
        ``/usr/bin/otelcol-contrib validate --config="$CONFIG"``; it runs before the file replaces the current one.
    :param health_url: an ``http://127.0.0.1:<port>/...`` URL that answers 2xx once the agent runs; checked after
        the restart, and the previous file goes back if it never does. At least one of the two is required.
    :param owner: ``user:group`` owning the file (mode 0640). Default ``root:root``.
    """

    path: str
    text: str
    validate_command: str | None = None
    health_url: str | None = None
    owner: str = "root:root"


@dataclass(frozen=True)
class AgentDataPath:
    """The agent's configuration (optional) and host budgets, as the documents install them.

    Build one with :meth:`adot`, :meth:`custom` or :meth:`budgets_only`.
    """

    agent_service: str
    budgets: hb.AgentBudgets
    config_path: str | None = None
    config_text: str | None = None
    config_owner: str = "root:root"
    validate_command: str | None = None
    health_url: str | None = None
    health_timeout_seconds: int = 60
    queue_dir: str | None = None
    # Shell lines after the config is in place that make the agent read it (ADOT: its .env's config= line).
    use_config_commands: tuple[str, ...] = ()
    # The signing forwarder's config (JSON text, agent_config.render_forwarder_config); None: no forwarder.
    forwarder_config_text: str | None = None

    def __post_init__(self) -> None:
        hb.validate_agent_service(self.agent_service)
        if not isinstance(self.budgets, hb.AgentBudgets):
            raise ValidationError(f"budgets must be an AgentBudgets, got {self.budgets!r}")
        if (self.config_path is None) != (self.config_text is None):
            raise ValidationError("give both the agent's config path and its config text, or neither")
        for what, path in (("config path", self.config_path), ("queue directory", self.queue_dir)):
            if path is not None and (not isinstance(path, str) or not _PATH.fullmatch(path) or ".." in path):
                raise ValidationError(f"agent {what} must be an absolute path of letters, digits and ._/-, got {path!r}")
        if self.config_text is not None and (not isinstance(self.config_text, str) or not self.config_text.strip()):
            raise ValidationError("the agent's config text is empty")
        if self.config_text is not None and _SSM_BRACES.search(self.config_text):
            raise ValidationError("the agent's config may not contain '{{' or '}}' (SSM takes them for document "
                                  "parameters); reformat it, e.g. as indented JSON")
        if self.config_text is not None and _HEREDOC_END in self.config_text:
            raise ValidationError(f"the agent's config may not contain the line {_HEREDOC_END}")
        if not isinstance(self.config_owner, str) or not _OWNER.fullmatch(self.config_owner):
            raise ValidationError(f"config owner must be 'user:group', got {self.config_owner!r}")
        if self.validate_command is not None and (not isinstance(self.validate_command, str)
                                                  or not self.validate_command.strip()
                                                  or _SSM_BRACES.search(self.validate_command)
                                                  or "\n" in self.validate_command):
            raise ValidationError("validate command must be one shell line using \"$CONFIG\" for the candidate file "
                                  f"(no '{{{{'), got {self.validate_command!r}")
        if self.health_url is not None and (not isinstance(self.health_url, str)
                                            or not _HEALTH_URL.fullmatch(self.health_url)):
            raise ValidationError(f"health URL must be http://127.0.0.1:<port>/<path> on the host, got {self.health_url!r}")
        if self.forwarder_config_text is not None and (not isinstance(self.forwarder_config_text, str)
                                                       or _SSM_BRACES.search(self.forwarder_config_text)
                                                       or _HEREDOC_END in self.forwarder_config_text):
            raise ValidationError("the forwarder's config must be agent_config.render_forwarder_config's JSON text")
        if not isinstance(self.health_timeout_seconds, int) or not 5 <= self.health_timeout_seconds <= 600:
            raise ValidationError(f"health timeout must be 5-600 s, got {self.health_timeout_seconds!r}")

    @staticmethod
    def adot(gateway: GatewayRef, budgets: hb.AgentBudgets | None = None, *, region: str | None = None) -> AgentDataPath:
        """The ADOT collector pushing to ``gateway`` (:func:`agent_config.render_adot_config`)."""
        budgets = budgets or hb.AgentBudgets()
        config = ac.render_adot_config(gateway, budgets, region=region)
        return AgentDataPath(
            forwarder_config_text=ac.to_text(ac.render_forwarder_config(gateway, region=region)),
            agent_service=ac.ADOT_SERVICE, budgets=budgets, config_path=ac.ADOT_CONFIG_PATH,
            config_text=ac.to_text(config), config_owner=f"{ac.ADOT_USER}:{ac.ADOT_USER}",
            validate_command=None, health_url=ac.AGENT_HEALTH_URL,
            queue_dir=ac.AGENT_QUEUE_DIR if budgets.queue_disk_mib else None,
            use_config_commands=(
                f"if ! grep -qxF '{ac.ADOT_ENV_CONFIG_LINE}' '{ac.ADOT_ENV_FILE}' 2>/dev/null; then",
                f"  echo 'pointing {ac.ADOT_SERVICE} at {ac.ADOT_CONFIG_PATH} (its .env named another config)' >&2",
                f"  sed -i '/^config=/d' '{ac.ADOT_ENV_FILE}' 2>/dev/null || true",
                f"  echo '{ac.ADOT_ENV_CONFIG_LINE}' >> '{ac.ADOT_ENV_FILE}'",
                "fi",
            ),
        )

    @staticmethod
    def custom(*, agent_service: str, config_path: str, config_text: str, validate_command: str | None,
               budgets: hb.AgentBudgets | None = None, config_owner: str = "root:root",
               health_url: str | None = None, gateway: GatewayRef | None = None,
               region: str | None = None) -> AgentDataPath:
        """Your agent with your configuration. ``validate_command`` (``$CONFIG`` is the candidate) runs before
        the file replaces the current one; ``None`` only if ``health_url`` checks the agent after its restart.
        With ``gateway``, the signing forwarder is installed too: your agent POSTs plain HTTP to
        ``http://127.0.0.1:<AGENT_FORWARDER_PORT><route path>`` and the forwarder signs and forwards it."""
        if validate_command is None and health_url is None:
            raise ValidationError("a custom agent config needs a validate command (\"$CONFIG\" is the candidate file) "
                                  "or a health URL, so that a broken config is never left in place")
        forwarder = None if gateway is None else ac.to_text(ac.render_forwarder_config(gateway, region=region))
        return AgentDataPath(agent_service=agent_service, budgets=budgets or hb.AgentBudgets(), config_path=config_path,
                             config_text=config_text, config_owner=config_owner, validate_command=validate_command,
                             health_url=health_url, forwarder_config_text=forwarder)

    @staticmethod
    def for_file(*, agent_service: str, file: AgentConfigFile, budgets: hb.AgentBudgets | None = None,
                 gateway: GatewayRef | None = None, region: str | None = None) -> AgentDataPath:
        """:meth:`custom` from an :class:`AgentConfigFile`."""
        return AgentDataPath.custom(agent_service=agent_service, config_path=file.path, config_text=file.text,
                                    validate_command=file.validate_command, budgets=budgets, config_owner=file.owner,
                                    health_url=file.health_url, gateway=gateway, region=region)

    @staticmethod
    def budgets_only(*, agent_service: str, budgets: hb.AgentBudgets | None = None) -> AgentDataPath:
        """Budgets for an agent whose configuration is managed elsewhere (e.g. the CloudWatch agent's own)."""
        return AgentDataPath(agent_service=agent_service, budgets=budgets or hb.AgentBudgets())


_CONFIG_TOOL = """\
#!/usr/bin/env bash
# telemetry-shunt agent config tool. Rendered by telemetry_shunt.core.agent_files; do not edit on the host.
#   telemetry-shunt-agent-config install CANDIDATE VERSION
#       validate CANDIDATE; if valid, keep the current config as CONFIG.previous, put CANDIDATE in place and
#       save it (and the budgets drop-in) for VERSION. If not valid: exit 1, nothing changed.
#   telemetry-shunt-agent-config saved VERSION
#       print the config saved with VERSION (exit 1 if there is none)
#   telemetry-shunt-agent-config restore-dropin VERSION
#       put back the budgets drop-in saved with VERSION, if any
#   telemetry-shunt-agent-config verify
#       after the agent's (re)start: wait for its health URL; if it never answers, put CONFIG.previous back,
#       restart the agent with it, exit 1
#   telemetry-shunt-agent-config forwarder-install CANDIDATE VERSION
#       self-test the signing forwarder with CANDIDATE (serves its health path once on an ephemeral port); if it
#       passes, keep the current forwarder config as .previous, put CANDIDATE in place, save it for VERSION
#   telemetry-shunt-agent-config forwarder-saved VERSION
#       print the forwarder config saved with VERSION (exit 1 if there is none)
#   telemetry-shunt-agent-config forwarder-verify
#       after the (re)start: wait for the forwarder's health path; if it never answers, put the previous
#       forwarder config back, restart the forwarder, exit 1
set -euo pipefail
CONFIG_PATH="${TELEMETRY_SHUNT_AGENT_CONFIG_PATH:-@CONFIG_PATH@}"
CONFIG_OWNER="${TELEMETRY_SHUNT_AGENT_CONFIG_OWNER:-@CONFIG_OWNER@}"
DROPIN_PATH="${TELEMETRY_SHUNT_DROPIN_PATH:-@DROPIN_PATH@}"
AGENT_SERVICE="${TELEMETRY_SHUNT_AGENT_SERVICE:-@AGENT_SERVICE@}"
HEALTH_URL="${TELEMETRY_SHUNT_AGENT_HEALTH_URL-@HEALTH_URL@}"
HEALTH_TIMEOUT="${TELEMETRY_SHUNT_AGENT_HEALTH_TIMEOUT:-@HEALTH_TIMEOUT@}"
STATE_DIR="${TELEMETRY_SHUNT_STATE_DIR:-@STATE_DIR@}"
SAVED_DIR="$STATE_DIR/agent-config"
VERSION_RE=@VERSION_RE@
FORWARDER="${TELEMETRY_SHUNT_FORWARDER:-@FORWARDER_PATH@}"
FORWARDER_CONFIG="${TELEMETRY_SHUNT_FORWARDER_CONFIG:-@FORWARDER_CONFIG@}"
FORWARDER_SERVICE=@FORWARDER_SERVICE@
FORWARDER_HEALTH_URL="${TELEMETRY_SHUNT_FORWARDER_HEALTH_URL:-@FORWARDER_HEALTH_URL@}"

log() { echo "telemetry-shunt-agent-config: $*" >&2; }

check_version() {
  if ! [[ "$1" =~ $VERSION_RE ]]; then
    log "not an agent version: '$1'"
    exit 64
  fi
}

# Exit status 0 when the candidate config ($1) is valid for the agent.
validate() {
  local CONFIG=$1
  export CONFIG
@VALIDATE@
}

install_config() {
  local candidate=$1 version=$2 output
  check_version "$version"
  if [ ! -s "$candidate" ]; then
    log "candidate config $candidate is missing or empty: nothing changed"
    exit 1
  fi
  if ! output=$(validate "$candidate" 2>&1); then
    log "$AGENT_SERVICE refused the new config, keeping the current one: $output"
    exit 1
  fi
  if [ -f "$CONFIG_PATH" ] && ! cmp -s "$CONFIG_PATH" "$candidate"; then
    cp -p "$CONFIG_PATH" "$CONFIG_PATH.previous"
  fi
  install -m 0640 -o "${CONFIG_OWNER%%:*}" -g "${CONFIG_OWNER##*:}" "$candidate" "$CONFIG_PATH.new"
  mv -f "$CONFIG_PATH.new" "$CONFIG_PATH"
  mkdir -p "$SAVED_DIR/$version"
  cp -f "$CONFIG_PATH" "$SAVED_DIR/$version/config"
  if [ -f "$DROPIN_PATH" ]; then
    cp -f "$DROPIN_PATH" "$SAVED_DIR/$version/dropin.conf"
  fi
  log "installed the config for $AGENT_SERVICE $version"
}

forwarder_install() {
  local candidate=$1 version=$2 output
  check_version "$version"
  if ! output=$(python3 -I "$FORWARDER" --config "$candidate" --self-test 2>&1); then
    log "the signing forwarder refused its new config, keeping the current one: $output"
    exit 1
  fi
  mkdir -p "$(dirname "$FORWARDER_CONFIG")"
  if [ -f "$FORWARDER_CONFIG" ] && ! cmp -s "$FORWARDER_CONFIG" "$candidate"; then
    cp -p "$FORWARDER_CONFIG" "$FORWARDER_CONFIG.previous"
  fi
  install -m 0644 "$candidate" "$FORWARDER_CONFIG.new"
  mv -f "$FORWARDER_CONFIG.new" "$FORWARDER_CONFIG"
  mkdir -p "$SAVED_DIR/$version"
  cp -f "$FORWARDER_CONFIG" "$SAVED_DIR/$version/forwarder.json"
  log "installed the signing forwarder's config for $version"
}

forwarder_verify() {
  verify_or_restore "$FORWARDER_SERVICE" "$FORWARDER_CONFIG" "$FORWARDER_HEALTH_URL"
}

healthy() {
  local deadline=$((SECONDS + HEALTH_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if curl -sf -m 2 -o /dev/null "$1"; then
      return 0
    fi
    sleep 1
  done
  return 1
}

# A service healthy at its URL within HEALTH_TIMEOUT, or its previous config put back (restarted) and exit 1.
verify_or_restore() {
  local service=$1 config=$2 url=$3
  if healthy "$url"; then
    log "$service is healthy"
    return 0
  fi
  if [ -f "$config.previous" ]; then
    log "$service not healthy within ${HEALTH_TIMEOUT}s: restoring the previous config"
    cp -p "$config.previous" "$config"
    systemctl restart "$service"
  else
    log "$service not healthy within ${HEALTH_TIMEOUT}s and no previous config to restore"
  fi
  exit 1
}

verify() {
  if [ -z "$HEALTH_URL" ]; then
    return 0
  fi
  verify_or_restore "$AGENT_SERVICE" "$CONFIG_PATH" "$HEALTH_URL"
}

case "${1:-}" in
  install) install_config "${2:?candidate file}" "${3:?version}" ;;
  saved) check_version "${2:?version}"; test -s "$SAVED_DIR/$2/config" && echo "$SAVED_DIR/$2/config" ;;
  restore-dropin)
    check_version "${2:?version}"
    if [ -f "$SAVED_DIR/$2/dropin.conf" ]; then
      cp -f "$SAVED_DIR/$2/dropin.conf" "$DROPIN_PATH"
    fi
    ;;
  verify) verify ;;
  forwarder-install) forwarder_install "${2:?candidate file}" "${3:?version}" ;;
  forwarder-saved) check_version "${2:?version}"; test -s "$SAVED_DIR/$2/forwarder.json" && echo "$SAVED_DIR/$2/forwarder.json" ;;
  forwarder-verify) forwarder_verify ;;
  *)
    echo "usage: $0 install CANDIDATE VERSION | saved VERSION | restore-dropin VERSION | verify |" \\
      "forwarder-install CANDIDATE VERSION | forwarder-saved VERSION | forwarder-verify" >&2
    exit 64
    ;;
esac
"""


def _fill(template: str, values: dict[str, str]) -> str:
    out = template
    for key, value in values.items():
        out = out.replace(f"@{key}@", value)
    leftover = re.findall(r"@[A-Z_]+@", out)
    if leftover:
        raise AssertionError(f"unfilled placeholders {leftover}")
    return out


def render_config_tool(dp: AgentDataPath, *, version_pattern: str) -> str:
    """The host's ``telemetry-shunt-agent-config`` (bash; needs curl for the health check)."""
    if dp.validate_command is None:
        validate = ("  # This agent has no offline validate command: the health check after the restart decides.\n"
                    "  return 0")
    else:
        validate = f"  {dp.validate_command}"
    return _fill(_CONFIG_TOOL, {
        "CONFIG_PATH": dp.config_path or "",
        "CONFIG_OWNER": dp.config_owner,
        "DROPIN_PATH": hb.dropin_path(dp.agent_service),
        "AGENT_SERVICE": dp.agent_service,
        "HEALTH_URL": dp.health_url or "",
        "HEALTH_TIMEOUT": str(dp.health_timeout_seconds),
        "STATE_DIR": STATE_DIR,
        "VERSION_RE": shlex.quote(version_pattern),
        "VALIDATE": validate,
        "FORWARDER_PATH": FORWARDER_PATH,
        "FORWARDER_CONFIG": FORWARDER_CONFIG_PATH,
        "FORWARDER_SERVICE": hb.FORWARDER_SERVICE,
        "FORWARDER_HEALTH_URL": FORWARDER_HEALTH_URL,
    })


def _hostfile(name: str) -> str:
    return resources.files(_HOSTFILES).joinpath(name).read_text(encoding="utf-8")


def render_forwarder_program() -> str:
    """The signing forwarder as installed: ``core/hostfiles/lattice_forwarder.py`` verbatim (stdlib-only)."""
    return _hostfile("lattice_forwarder.py")


def render_forwarder_unit(agent_service: str) -> str:
    """The forwarder's systemd unit: ``PartOf`` the agent's, so it stops and restarts with it."""
    unit = hb.validate_agent_service(agent_service)
    if not unit.endswith(".service"):
        unit += ".service"
    return _fill(_hostfile(FORWARDER_UNIT), {"AGENT_SERVICE": agent_service, "AGENT_UNIT": unit,
                                             "FORWARDER_PATH": FORWARDER_PATH,
                                             "FORWARDER_CONFIG": FORWARDER_CONFIG_PATH})


def forwarder_agent_dropin_path(agent_service: str) -> str:
    """The agent's drop-in that starts the forwarder with the agent."""
    return hb.dropin_path(agent_service).rsplit("/", 1)[0] + "/" + FORWARDER_AGENT_DROPIN_NAME


def render_forwarder_agent_dropin() -> str:
    return (
        "# telemetry-shunt: the signing forwarder starts with the agent (and, being PartOf it, stops with it).\n"
        "# Rendered by telemetry_shunt.core.agent_files; do not edit on the host.\n"
        "[Unit]\n"
        f"Wants={FORWARDER_UNIT}\n"
        f"After={FORWARDER_UNIT}\n"
    )


def host_files(dp: AgentDataPath, *, version_pattern: str) -> tuple[AgentFile, ...]:
    """The files the documents write for the data path: the config tool, the drop-in, the bandwidth cap."""
    files = (
        AgentFile(CONFIG_TOOL_PATH, render_config_tool(dp, version_pattern=version_pattern), "0755"),
        AgentFile(hb.BANDWIDTH_CAP_PATH, hb.render_bandwidth_cap_script(dp.budgets), "0755"),
        AgentFile(hb.dropin_path(dp.agent_service), hb.render_budget_dropin(dp.budgets), "0644"),
    )
    if dp.forwarder_config_text is None:
        return files
    # The forwarder's program is written by install_commands, compressed (SSM documents are capped at 64 KB).
    return files + (
        AgentFile(f"/etc/systemd/system/{FORWARDER_UNIT}", render_forwarder_unit(dp.agent_service), "0644"),
        AgentFile(hb.dropin_path(hb.FORWARDER_SERVICE), hb.render_forwarder_dropin(dp.budgets), "0644"),
        AgentFile(forwarder_agent_dropin_path(dp.agent_service), render_forwarder_agent_dropin(), "0644"),
    )


#: The agent's drop-in that lets it start only once the kill-switch watcher has decided on for this boot.
GATE_DROPIN_NAME = "10-telemetry-shunt-killswitch-gate.conf"


def gate_dropin_path(agent_service: str) -> str:
    return hb.dropin_path(agent_service).rsplit("/", 1)[0] + "/" + GATE_DROPIN_NAME


def render_gate_dropin(watcher_path: str) -> str:
    """``ExecCondition=<watcher> --gate``: a start by anyone but the watcher's decision (e.g. the agent package's
    own install script, ADOT's ``aws-otel-collector-ctl -a start``) is skipped, not failed, until the kill switch
    says on. Needs systemd 243+ (Amazon Linux 2023, Ubuntu 20.04+); older systemd ignores the line. Before the
    watcher is installed the condition cannot run, which systemd also treats as a skip (exit 203)."""
    return (
        "# telemetry-shunt: the agent starts only once the kill switch has decided on for this boot.\n"
        "# Rendered by telemetry_shunt.core.agent_files; do not edit on the host.\n"
        "[Service]\n"
        f"ExecCondition={watcher_path} --gate\n"
    )


def gate_commands(dp: AgentDataPath, *, watcher_path: str) -> list[str]:
    """Shell lines of the documents' first step, before the agent package is installed: the gate drop-in, so that
    the package's install script cannot start the agent before the kill switch is read."""
    path = gate_dropin_path(dp.agent_service)
    encoded = base64.b64encode(render_gate_dropin(watcher_path).encode()).decode()
    return [
        "set -euo pipefail",
        f"install -d -m 0755 '{path.rsplit('/', 1)[0]}'",
        f"echo '{encoded}' | base64 -d > '{path}.new'",
        f"chmod 0644 '{path}.new' && mv -f '{path}.new' '{path}'",
        "systemctl daemon-reload",
    ]


def prepare_commands(dp: AgentDataPath) -> list[str]:
    """Shell lines before the host files are written: prerequisites, then the drop-in's directory."""
    lines = [
        # The cap needs tc (iproute-tc on Amazon Linux 2023); checked before the drop-in that runs it is written,
        # so a host without it keeps its agent as it was rather than one that cannot start any more.
        "command -v tc >/dev/null || { echo 'tc (iproute2) is missing: install iproute-tc, the agent bandwidth cap "
        "needs it' >&2; exit 1; }",
        f"install -d -m 0755 '{hb.dropin_path(dp.agent_service).rsplit('/', 1)[0]}'",
    ]
    if dp.forwarder_config_text is not None:
        lines.append(f"install -d -m 0755 '{hb.dropin_path(hb.FORWARDER_SERVICE).rsplit('/', 1)[0]}' "
                     f"'{FORWARDER_CONFIG_PATH.rsplit('/', 1)[0]}'")
    return lines


def _write_compressed(path: str, text: str, mode: str) -> list[str]:
    # mtime=0: the same text always gives the same document.
    data = base64.b64encode(gzip.compress(text.encode(), compresslevel=9, mtime=0)).decode()
    digest = hashlib.sha256(text.encode()).hexdigest()
    return [f"# {path} (sha256 {digest}, gzip)",
            f"echo '{data}' | base64 -d | gzip -dc > '{path}.new'",
            f"chmod {mode} '{path}.new' && mv -f '{path}.new' '{path}'"]


def _write_candidate(text: str, path: str = CANDIDATE_PATH) -> list[str]:
    if is_token(text) or "${Token[" in text:
        # Deploy-time values (the gateway's DNS name, the Region) are resolved by CloudFormation inside the
        # document's text, so the config travels as text rather than base64.
        return [f"cat > '{path}' <<'{_HEREDOC_END}'", *text.rstrip("\n").split("\n"), _HEREDOC_END]
    return [f"echo '{base64.b64encode(text.encode()).decode()}' | base64 -d > '{path}'"]


def install_commands(dp: AgentDataPath, *, action: str, version_ref: str) -> list[str]:
    """Shell lines of an install/upgrade/rollback step, after the host files are written and before
    ``systemctl daemon-reload``: budgets prerequisites, then the config (validated; refused = step fails).

    A rollback restores the config and drop-in saved with the target version when the host has them.
    """
    tool = CONFIG_TOOL_PATH
    lines: list[str] = []
    if action == "rollback":
        lines.append(f"{tool} restore-dropin '{version_ref}'")
    if dp.queue_dir is not None:
        owner = dp.config_owner
        lines.append(f"install -d -m 0750 -o '{owner.split(':')[0]}' -g '{owner.split(':')[1]}' '{dp.queue_dir}'")
    if dp.forwarder_config_text is not None:
        lines += _write_compressed(FORWARDER_PATH, render_forwarder_program(), "0755")
        # The forwarder's config: self-tested (a refused one fails the step and changes nothing), saved per version.
        if action == "rollback":
            lines += [f"if saved=$({tool} forwarder-saved '{version_ref}'); then "
                      f"cp -f \"$saved\" '{FORWARDER_CANDIDATE_PATH}'; else",
                      *_write_candidate(dp.forwarder_config_text, FORWARDER_CANDIDATE_PATH), "fi"]
        else:
            lines += _write_candidate(dp.forwarder_config_text, FORWARDER_CANDIDATE_PATH)
        lines.append(f"{tool} forwarder-install '{FORWARDER_CANDIDATE_PATH}' '{version_ref}'")
    if dp.config_text is None:
        return lines
    if action == "rollback":
        lines += [f"if saved=$({tool} saved '{version_ref}'); then cp -f \"$saved\" '{CANDIDATE_PATH}'; else",
                  *_write_candidate(dp.config_text), "fi"]
    else:
        lines += _write_candidate(dp.config_text)
    lines.append(f"{tool} install '{CANDIDATE_PATH}' '{version_ref}'")
    lines += dp.use_config_commands
    return lines


def verify_commands(dp: AgentDataPath) -> list[str]:
    """After the agent's (re)start: health checks (agent, then forwarder), the previous config back if one fails."""
    lines = [CONFIG_TOOL_PATH + " verify"] if dp.config_text is not None else []
    if dp.forwarder_config_text is not None:
        lines.append(CONFIG_TOOL_PATH + " forwarder-verify")
    return lines
