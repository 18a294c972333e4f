#!/usr/bin/env bash
# telemetry-shunt kill-switch watcher. Rendered by telemetry_shunt.core.hostside; do not edit on the host.
#   telemetry-shunt-killswitch          poll the kill switch forever (the systemd service)
#   telemetry-shunt-killswitch --once   one check; prints the decision (on|off)
#   telemetry-shunt-killswitch --gate   exit 0 if this boot's decision is on, else 1 (the agent unit's ExecCondition:
#                                       whoever starts the agent, e.g. its package's install script, it runs only
#                                       once the watcher has decided on)
# Decision: the global flag on and this AZ's flag not off. The AZ is learned from instance metadata once and
# kept in the state dir: an IMDS outage never turns a per-AZ kill into "global flag only".
# AppConfig unreadable at boot: fail closed (agent stays stopped) unless a last-known-good decision younger
# than BOOT_CACHE_MAX_AGE seconds is on disk. Unreadable later: keep this boot's last decision.
# Every poll converges the agent's unit to the decision (a failed start or stop is retried on the next poll),
# every external call has a timeout, and every failure is logged with "reason=<tag>" (journalctl -t ... | grep).
set -u
AGENT_SERVICE="${TELEMETRY_SHUNT_AGENT_SERVICE:-@AGENT_SERVICE@}"
APPCONFIG_URL="${TELEMETRY_SHUNT_APPCONFIG_URL:-@APPCONFIG_URL@}"
CONFIG_PATH=@CONFIG_PATH@
POLL_SECONDS=@POLL_SECONDS@
MIN_POLL_SECONDS=@MIN_POLL_SECONDS@
BOOT_CACHE_MAX_AGE="${TELEMETRY_SHUNT_BOOT_CACHE_MAX_AGE:-@BOOT_CACHE_MAX_AGE@}"
RUN_DIR="${TELEMETRY_SHUNT_RUN_DIR:-@RUN_DIR@}"
STATE_DIR="${TELEMETRY_SHUNT_STATE_DIR:-@STATE_DIR@}"
IMDS_URL="${TELEMETRY_SHUNT_IMDS_URL:-http://169.254.169.254}"
# Bounds on every external call, in seconds (a poll takes at most about IMDS + AGENT + 2 x SYSTEMCTL).
IMDS_TIMEOUT="${TELEMETRY_SHUNT_IMDS_TIMEOUT:-@IMDS_TIMEOUT@}"
AGENT_TIMEOUT="${TELEMETRY_SHUNT_AGENT_TIMEOUT:-@AGENT_TIMEOUT@}"
SYSTEMCTL_TIMEOUT="${TELEMETRY_SHUNT_SYSTEMCTL_TIMEOUT:-@SYSTEMCTL_TIMEOUT@}"
GLOBAL_FLAG=@GLOBAL_FLAG@
AZ_FLAG_PREFIX=@AZ_FLAG_PREFIX@
ZONE_RE=@ZONE_REGEX@
# The decision rule (telemetry_shunt/core/hostfiles/killswitch_rule.py, the same file the Python code imports).
KILLSWITCH_RULE_PY=$(cat <<'PY'
@KILLSWITCH_RULE_PY@
PY
)

# Under systemd, stderr goes to the journal; a <N> prefix sets the priority (sd-daemon(3)).
if [ -n "${JOURNAL_STREAM:-}" ]; then ERR='<3>' NOTICE='<5>'; else ERR='' NOTICE=''; fi
log() { echo "${NOTICE}telemetry-shunt-killswitch: $*" >&2; }
fail() { echo "${ERR}telemetry-shunt-killswitch: reason=$1 ${*:2}" >&2; }

now_ms() { date +%s%3N; }

# Write the line $2 to file $1 atomically: through a temporary file of this process's own, renamed into place,
# so a reader never sees it half-written and a concurrent writer (the service and a --once run) never moves or
# truncates this one's temporary file. Returns non-zero (and leaves nothing behind) if it could not.
put() {
  local tmp="$1.tmp.$BASHPID"
  if printf '%s\n' "$2" > "$tmp" && mv -f "$tmp" "$1"; then
    return 0
  fi
  rm -f "$tmp"
  return 1
}

@IMDS_FUNCTIONS@
# The host's AZ: the one learned earlier, else instance metadata (kept once read). Empty if neither.
zone() {
  local az
  if [ -n "${TELEMETRY_SHUNT_AZ:-}" ]; then
    echo "$TELEMETRY_SHUNT_AZ"
    return
  fi
  if read -r az 2>/dev/null < "$STATE_DIR/availability-zone" && [[ "$az" =~ $ZONE_RE ]]; then
    echo "$az"
    return
  fi
  az=$(imds placement/availability-zone)
  if [[ "$az" =~ $ZONE_RE ]]; then
    put "$STATE_DIR/availability-zone" "$az"
    log "availability zone $az learned from instance metadata"
    echo "$az"
  fi
}

# Prints on|off for the current flags; on failure prints nothing, logs why and returns 1.
read_flags() {
  local body status
  body=$(curl -sS -f -m "$AGENT_TIMEOUT" "$APPCONFIG_URL$CONFIG_PATH" 2>/dev/null)
  status=$?
  case $status in
    0) ;;
    28) fail agent-timeout "AppConfig agent did not answer within ${AGENT_TIMEOUT}s"; return 1 ;;
    7) fail agent-unreachable "AppConfig agent at $APPCONFIG_URL refused the connection"; return 1 ;;
    22) fail agent-http-error "AppConfig agent answered with an HTTP error"; return 1 ;;
    *) fail agent-error "reading the AppConfig agent failed (curl exit $status)"; return 1 ;;
  esac
  if ! printf '%s' "$body" | python3 -c "$KILLSWITCH_RULE_PY" "$GLOBAL_FLAG" "$AZ_FLAG_PREFIX" "$1"; then
    fail agent-garbage "the kill-switch profile is not a JSON object"
    return 1
  fi
}

# The decision when AppConfig cannot be read and this boot has none yet.
boot_decision() {
  local cached at age
  if [ "$BOOT_CACHE_MAX_AGE" -gt 0 ] 2>/dev/null && read -r cached at 2>/dev/null < "$STATE_DIR/last-known-good" \
      && [[ "$at" =~ ^[0-9]+$ ]]; then
    age=$(( $(date +%s) - at ))
    if { [ "$cached" = on ] || [ "$cached" = off ]; } && [ "$age" -ge 0 ] && [ "$age" -le "$BOOT_CACHE_MAX_AGE" ]; then
      log "AppConfig unreadable at boot: using the last-known-good decision '$cached' (${age}s old)"
      echo "$cached"
      return
    fi
  fi
  fail boot-fail-closed "AppConfig unreadable at boot: failing closed, $AGENT_SERVICE stays stopped until the flag is read"
  echo off
}

systemctl_bounded() {
  timeout -k 2 "$SYSTEMCTL_TIMEOUT" systemctl "$@"
}

# The unit's ActiveState (active, inactive, activating, deactivating, reloading, failed), or "unknown".
unit_state() {
  local state
  state=$(systemctl_bounded is-active "$AGENT_SERVICE" 2>/dev/null | head -n 1)
  echo "${state:-unknown}"
}

# Converge the agent's unit to the decision; a failure is logged and retried on the next poll.
apply() {
  local decision=$1 state status
  state=$(unit_state)
  if [ "$decision" = off ]; then
    case $state in
      inactive|failed) return 0 ;;
    esac
    log "kill switch off: stopping $AGENT_SERVICE (state $state)"
    systemctl_bounded stop "$AGENT_SERVICE" >&2
    status=$?
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
      fail systemctl-timeout "systemctl stop $AGENT_SERVICE did not finish within ${SYSTEMCTL_TIMEOUT}s; retrying next poll"
    elif [ "$status" -ne 0 ]; then
      fail systemctl-stop-failed "systemctl stop $AGENT_SERVICE exited $status; retrying next poll"
    fi
  else
    case $state in
      active|activating|reloading) return 0 ;;
    esac
    log "kill switch on: starting $AGENT_SERVICE (state $state)"
    systemctl_bounded start "$AGENT_SERVICE" >&2
    status=$?
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
      fail systemctl-timeout "systemctl start $AGENT_SERVICE did not finish within ${SYSTEMCTL_TIMEOUT}s; retrying next poll"
    elif [ "$status" -ne 0 ]; then
      fail systemctl-start-failed "systemctl start $AGENT_SERVICE exited $status; retrying next poll"
    fi
  fi
  return 0
}

check_once() {
  local az previous decision=""
  previous=$(cat "$RUN_DIR/decision" 2>/dev/null || true)
  az=$(zone)
  if [ -z "$az" ]; then
    fail imds-unavailable "availability zone unknown (instance metadata unreachable and none learned yet): not deciding on the global flag alone"
  elif decision=$(read_flags "$az") && [ -n "$decision" ]; then
    date +%s > "$RUN_DIR/last-read"
    put "$STATE_DIR/last-known-good" "$decision $(date +%s)"
  else
    decision=""
  fi
  if [ -z "$decision" ]; then
    if [ -n "$previous" ]; then
      log "keeping the last decision '$previous'"
      decision=$previous
    else
      decision=$(boot_decision)
    fi
  fi
  if [ "$decision" != "$previous" ]; then
    log "decision ${previous:-none} -> $decision (az ${az:-unknown})"
  fi
  # Recorded before it is applied: the agent's ExecCondition (--gate) reads it when the watcher starts the agent.
  # Renamed into place, so a reader (the gate, on a start the package's script asks for) never sees it empty.
  put "$RUN_DIR/decision" "$decision"
  apply "$decision"
  echo "$decision"
}

# Poll period: the rendered value (at least MIN_POLL_SECONDS). TELEMETRY_SHUNT_TEST_POLL_SECONDS (tests and
# the sandbox only) may go lower.
poll_seconds() {
  local p=${TELEMETRY_SHUNT_TEST_POLL_SECONDS:-}
  if [ -n "$p" ]; then
    echo "$p"
  elif [ "$POLL_SECONDS" -ge "$MIN_POLL_SECONDS" ] 2>/dev/null; then
    echo "$POLL_SECONDS"
  else
    echo "$MIN_POLL_SECONDS"
  fi
}

# Sleep what is left of the poll period after a check that took $1 ms (the period does not stretch).
sleep_rest() {
  local period_ms left
  period_ms=$(awk -v p="$(poll_seconds)" 'BEGIN { printf "%d", p * 1000 }')
  left=$(( period_ms - $1 ))
  [ "$left" -lt 50 ] && left=50
  sleep "$(( left / 1000 )).$(printf '%03d' $(( left % 1000 )))"
}

if [ "${1:-}" = --gate ]; then
  if [ "$(cat "$RUN_DIR/decision" 2>/dev/null)" = on ]; then
    exit 0
  fi
  log "the kill switch has not decided on for this boot: $AGENT_SERVICE not started"
  exit 1
fi
mkdir -p "$RUN_DIR" "$STATE_DIR"
case "${1:-}" in
  --once) check_once ;;
  "")
    log "watching the kill switch for $AGENT_SERVICE every $(poll_seconds)s"
    while true; do
      started=$(now_ms)
      check_once > /dev/null
      sleep_rest $(( $(now_ms) - started ))
    done
    ;;
  *) echo "usage: $0 [--once|--gate]" >&2; exit 64 ;;
esac
