"""SigV4 for VPC Lattice with botocore's signer: signing name ``vpc-lattice-svcs``, unsigned payload."""

from __future__ import annotations

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from telemetry_shunt.core.contract import LATTICE_SIGNING_NAME, UNSIGNED_PAYLOAD


class _LatticeSigV4Auth(SigV4Auth):
    # botocore hashes the body of any request whose URL is not https, even with payload signing
    # disabled, while still sending `x-amz-content-sha256: UNSIGNED-PAYLOAD`: the signature would not
    # match what Lattice computes on an HTTP listener. Lattice never signs payloads, so neither do we.
    def payload(self, request: AWSRequest) -> str:
        return UNSIGNED_PAYLOAD


def sign_headers(
    credentials: Credentials | ReadOnlyCredentials,
    region: str,
    url: str,
    host_header: str,
    headers: dict[str, str],
) -> dict[str, str]:
    """Headers for one POST to ``url``, with ``Authorization``, ``X-Amz-Date``, the session token if
    any, and ``X-Amz-Content-SHA256: UNSIGNED-PAYLOAD``, all signed. The body is not read."""
    request = AWSRequest(method="POST", url=url, headers={"Host": host_header, **headers})
    request.context["payload_signing_enabled"] = False
    _LatticeSigV4Auth(credentials, LATTICE_SIGNING_NAME, region).add_auth(request)
    return dict(request.headers.items())
