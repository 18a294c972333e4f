#!/usr/bin/env python3
"""sandbox ``aws``: the one AWS CLI call a host makes, ``aws cloudwatch put-metric-data``, sent to the
sandbox's moto (``AWS_ENDPOINT_URL``) with the query protocol. Standard library only (it runs per heartbeat).

    aws cloudwatch put-metric-data --region R --namespace N --metric-data JSON
"""

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request


def usage(message):
    print(f"aws (sandbox): {message}", file=sys.stderr)
    return 252  # the AWS CLI's exit status for a command-line error


def main(argv):
    if argv[:2] != ["cloudwatch", "put-metric-data"]:
        return usage("only 'aws cloudwatch put-metric-data' is simulated")
    opts = {}
    rest = argv[2:]
    while rest:
        if len(rest) < 2 or not rest[0].startswith("--"):
            return usage(f"unexpected arguments {rest!r}")
        opts[rest[0][2:]] = rest[1]
        rest = rest[2:]
    try:
        region, namespace, data = opts["region"], opts["namespace"], json.loads(opts["metric-data"])
    except (KeyError, ValueError) as exc:
        return usage(f"--region, --namespace and --metric-data (JSON) are required: {exc}")
    params = {"Action": "PutMetricData", "Version": "2010-08-01", "Namespace": namespace}
    for n, datum in enumerate(data, 1):
        prefix = f"MetricData.member.{n}."
        params[prefix + "MetricName"] = datum["MetricName"]
        params[prefix + "Value"] = str(datum["Value"])
        params[prefix + "Unit"] = datum.get("Unit", "None")
        for m, dim in enumerate(datum.get("Dimensions", []), 1):
            params[f"{prefix}Dimensions.member.{m}.Name"] = dim["Name"]
            params[f"{prefix}Dimensions.member.{m}.Value"] = dim["Value"]
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return usage("AWS_ENDPOINT_URL is not set (the sandbox sets it to its moto server)")
    request = urllib.request.Request(
        endpoint.rstrip("/") + "/", data=urllib.parse.urlencode(params).encode(), method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            # moto routes on the credential scope; it does not check the signature
            "Authorization": f"AWS4-HMAC-SHA256 Credential=testing/20250101/{region}/monitoring/aws4_request, "
                             "SignedHeaders=host, Signature=0"})
    try:
        with urllib.request.urlopen(request, timeout=10):
            return 0
    except (urllib.error.URLError, OSError) as exc:
        print(f"aws (sandbox): put-metric-data failed: {exc}", file=sys.stderr)
        return 255


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
