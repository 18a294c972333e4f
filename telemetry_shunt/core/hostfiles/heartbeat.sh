#!/usr/bin/env bash
# telemetry-shunt heartbeat. Rendered by telemetry_shunt.core.hostside; do not edit on the host.
# While the agent's service is active, publishes one datapoint with {AvailabilityZone} (what the per-AZ
# alarms watch) and one with {InstanceId, AgentVersion} (what a rollout's bake checks).
set -u
AGENT_SERVICE="${TELEMETRY_SHUNT_AGENT_SERVICE:-@AGENT_SERVICE@}"
STATE_DIR="${TELEMETRY_SHUNT_STATE_DIR:-@STATE_DIR@}"
IMDS_URL="${TELEMETRY_SHUNT_IMDS_URL:-http://169.254.169.254}"
NAMESPACE=@NAMESPACE@
METRIC=@METRIC@

log() { echo "telemetry-shunt-heartbeat: $*" >&2; }

@IMDS_FUNCTIONS@
if ! systemctl is-active --quiet "$AGENT_SERVICE"; then
  log "$AGENT_SERVICE is not active: no heartbeat"
  exit 0
fi
az=$(availability_zone)
instance=$(instance_id)
region=$(region)
if [ -z "$az" ] || [ -z "$instance" ] || [ -z "$region" ]; then
  log "instance metadata unavailable (az='$az' instance='$instance' region='$region'): no heartbeat"
  exit 1
fi
VERSION_RE=@VERSION_REGEX@
version=$(cat "$STATE_DIR/agent-version" 2>/dev/null || true)
if ! [[ "$version" =~ $VERSION_RE ]]; then
  version=unknown
fi
data="[{\"MetricName\":\"$METRIC\",\"Value\":1,\"Unit\":\"Count\",\"Dimensions\":[{\"Name\":\"@AZ_DIM@\",\"Value\":\"$az\"}]},{\"MetricName\":\"$METRIC\",\"Value\":1,\"Unit\":\"Count\",\"Dimensions\":[{\"Name\":\"@INSTANCE_DIM@\",\"Value\":\"$instance\"},{\"Name\":\"@VERSION_DIM@\",\"Value\":\"$version\"}]}]"
exec aws cloudwatch put-metric-data --region "$region" --namespace "$NAMESPACE" --metric-data "$data"
