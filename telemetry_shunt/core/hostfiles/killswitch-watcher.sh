#!/usr/bin/env bash
# telemetry-shunt kill-switch watcher. Rendered by telemetry_shunt.core.hostside; do not edit on the host.
#   telemetry-shunt-killswitch          poll the kill switch forever (the systemd service)
#   telemetry-shunt-killswitch --once   one check; prints the decision (on|off)
# Decision: the global flag on and this AZ's flag not off. Unreachable at boot: fail closed (agent stays
# stopped) unless a last-known-good decision younger than BOOT_CACHE_MAX_AGE seconds is on disk.
# Unreachable later: keep this boot's last decision.
set -u
AGENT_SERVICE="${TELEMETRY_SHUNT_AGENT_SERVICE:-@AGENT_SERVICE@}"
APPCONFIG_URL="${TELEMETRY_SHUNT_APPCONFIG_URL:-@APPCONFIG_URL@}"
CONFIG_PATH=@CONFIG_PATH@
POLL_SECONDS="${TELEMETRY_SHUNT_POLL_SECONDS:-@POLL_SECONDS@}"
BOOT_CACHE_MAX_AGE="${TELEMETRY_SHUNT_BOOT_CACHE_MAX_AGE:-@BOOT_CACHE_MAX_AGE@}"
RUN_DIR="${TELEMETRY_SHUNT_RUN_DIR:-@RUN_DIR@}"
STATE_DIR="${TELEMETRY_SHUNT_STATE_DIR:-@STATE_DIR@}"
IMDS_URL="${TELEMETRY_SHUNT_IMDS_URL:-http://169.254.169.254}"
GLOBAL_FLAG=@GLOBAL_FLAG@
AZ_FLAG_PREFIX=@AZ_FLAG_PREFIX@
# The decision rule (telemetry_shunt/core/hostfiles/killswitch_rule.py, the same file the Python code imports).
KILLSWITCH_RULE_PY=$(cat <<'PY'
@KILLSWITCH_RULE_PY@
PY
)

log() { echo "telemetry-shunt-killswitch: $*" >&2; }

@IMDS_FUNCTIONS@
# Prints on|off for the current flags, or nothing if AppConfig could not be read.
read_flags() {
  local body
  body=$(curl -sf -m 5 "$APPCONFIG_URL$CONFIG_PATH") || return 1
  printf '%s' "$body" | python3 -c "$KILLSWITCH_RULE_PY" "$GLOBAL_FLAG" "$AZ_FLAG_PREFIX" "$1"
}

# The decision when AppConfig cannot be read and this boot has none yet.
boot_decision() {
  local cached at age
  if [ "$BOOT_CACHE_MAX_AGE" -gt 0 ] 2>/dev/null && read -r cached at 2>/dev/null < "$STATE_DIR/last-known-good"       && [[ "$at" =~ ^[0-9]+$ ]]; then
    age=$(( $(date +%s) - at ))
    if { [ "$cached" = on ] || [ "$cached" = off ]; } && [ "$age" -ge 0 ] && [ "$age" -le "$BOOT_CACHE_MAX_AGE" ]; then
      log "AppConfig unreachable at boot: using the last-known-good decision '$cached' (${age}s old)"
      echo "$cached"
      return
    fi
  fi
  log "AppConfig unreachable at boot: failing closed, $AGENT_SERVICE stays stopped until the flag is read"
  echo off
}

apply() {
  local decision=$1 previous=$2
  if [ "$decision" = off ]; then
    if systemctl is-active --quiet "$AGENT_SERVICE"; then
      log "kill switch off: stopping $AGENT_SERVICE"
      systemctl stop "$AGENT_SERVICE" >&2
    fi
  elif [ "$previous" != on ]; then
    log "kill switch on: starting $AGENT_SERVICE"
    systemctl start "$AGENT_SERVICE" >&2
  fi
}

check_once() {
  local az previous decision now
  az=$(availability_zone)
  previous=$(cat "$RUN_DIR/decision" 2>/dev/null || true)
  now=$(date +%s)
  if decision=$(read_flags "$az") && [ -n "$decision" ]; then
    printf '%s %s\n' "$decision" "$now" > "$STATE_DIR/last-known-good.tmp" \
      && mv -f "$STATE_DIR/last-known-good.tmp" "$STATE_DIR/last-known-good"
  elif [ -n "$previous" ]; then
    log "AppConfig unreachable: keeping the last decision '$previous'"
    decision=$previous
  else
    decision=$(boot_decision)
  fi
  apply "$decision" "$previous"
  echo "$decision" > "$RUN_DIR/decision"
  echo "$decision"
}

mkdir -p "$RUN_DIR" "$STATE_DIR"
case "${1:-}" in
  --once) check_once ;;
  "") while true; do check_once > /dev/null; sleep "$POLL_SECONDS"; done ;;
  *) echo "usage: $0 [--once]" >&2; exit 64 ;;
esac
