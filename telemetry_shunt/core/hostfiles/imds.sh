# Instance metadata (IMDSv2); TELEMETRY_SHUNT_AZ / _INSTANCE_ID / _REGION override it (tests, non-EC2).
imds() {
  local token
  token=$(curl -sf -m "${IMDS_TIMEOUT:-2}" -X PUT "$IMDS_URL/latest/api/token" \
    -H "X-aws-ec2-metadata-token-ttl-seconds: 300") || return 0
  curl -sf -m "${IMDS_TIMEOUT:-2}" -H "X-aws-ec2-metadata-token: $token" "$IMDS_URL/latest/meta-data/$1" || true
}
availability_zone() { echo "${TELEMETRY_SHUNT_AZ:-$(imds placement/availability-zone)}"; }
instance_id() { echo "${TELEMETRY_SHUNT_INSTANCE_ID:-$(imds instance-id)}"; }
region() { echo "${TELEMETRY_SHUNT_REGION:-$(imds placement/region)}"; }
