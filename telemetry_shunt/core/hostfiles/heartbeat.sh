#!/usr/bin/env bash
# telemetry-shunt heartbeat. Rendered by telemetry_shunt.core.hostside; do not edit on the host.
# While the agent's service is active, publishes one datapoint with {AvailabilityZone} (what the per-AZ
# alarms watch) and one with {InstanceId, AgentVersion} (what a rollout's bake checks), plus how many
# seconds ago the kill-switch watcher last read the flag (@READ_AGE_METRIC@, {AvailabilityZone} and
# {InstanceId}): a host that cannot read its kill switch shows up before anyone needs to kill it.
set -u
AGENT_SERVICE="${TELEMETRY_SHUNT_AGENT_SERVICE:-@AGENT_SERVICE@}"
STATE_DIR="${TELEMETRY_SHUNT_STATE_DIR:-@STATE_DIR@}"
RUN_DIR="${TELEMETRY_SHUNT_RUN_DIR:-@RUN_DIR@}"
IMDS_URL="${TELEMETRY_SHUNT_IMDS_URL:-http://169.254.169.254}"
IMDS_TIMEOUT="${TELEMETRY_SHUNT_IMDS_TIMEOUT:-2}"
NAMESPACE=@NAMESPACE@
METRIC=@METRIC@
READ_AGE_METRIC=@READ_AGE_METRIC@

log() { echo "telemetry-shunt-heartbeat: $*" >&2; }

@IMDS_FUNCTIONS@
if [ "$(timeout -k 2 10 systemctl is-active "$AGENT_SERVICE" 2>/dev/null)" != active ]; then
  log "$AGENT_SERVICE is not active: no heartbeat"
  exit 0
fi
# The AZ the watcher learned, else instance metadata.
learned_az=$(cat "$STATE_DIR/availability-zone" 2>/dev/null || true)
az=${TELEMETRY_SHUNT_AZ:-$learned_az}
[ -n "$az" ] || az=$(imds placement/availability-zone)
instance=$(instance_id)
region=$(region)
if [ -z "$az" ] || [ -z "$instance" ] || [ -z "$region" ]; then
  log "reason=imds-unavailable instance metadata unavailable (az='$az' instance='$instance' region='$region'): no heartbeat"
  exit 1
fi
VERSION_RE=@VERSION_REGEX@
version=$(cat "$STATE_DIR/agent-version" 2>/dev/null || true)
if ! [[ "$version" =~ $VERSION_RE ]]; then
  version=unknown
fi
# Seconds since the watcher's last successful read; never read this boot: seconds since boot.
last_read=$(cat "$RUN_DIR/last-read" 2>/dev/null || true)
if [[ "$last_read" =~ ^[0-9]+$ ]]; then
  read_age=$(( $(date +%s) - last_read ))
else
  read_age=$(cut -d. -f1 /proc/uptime 2>/dev/null || echo 0)
fi
[ "$read_age" -ge 0 ] 2>/dev/null || read_age=0
data="[{\"MetricName\":\"$METRIC\",\"Value\":1,\"Unit\":\"Count\",\"Dimensions\":[{\"Name\":\"@AZ_DIM@\",\"Value\":\"$az\"}]},{\"MetricName\":\"$METRIC\",\"Value\":1,\"Unit\":\"Count\",\"Dimensions\":[{\"Name\":\"@INSTANCE_DIM@\",\"Value\":\"$instance\"},{\"Name\":\"@VERSION_DIM@\",\"Value\":\"$version\"}]},{\"MetricName\":\"$READ_AGE_METRIC\",\"Value\":$read_age,\"Unit\":\"Seconds\",\"Dimensions\":[{\"Name\":\"@AZ_DIM@\",\"Value\":\"$az\"}]},{\"MetricName\":\"$READ_AGE_METRIC\",\"Value\":$read_age,\"Unit\":\"Seconds\",\"Dimensions\":[{\"Name\":\"@INSTANCE_DIM@\",\"Value\":\"$instance\"}]}]"
exec aws cloudwatch put-metric-data --region "$region" --namespace "$NAMESPACE" --metric-data "$data"
