"""SigV4 for VPC Lattice: signing name ``vpc-lattice-svcs``, unsigned payload.

The project's one SigV4 signer, the host-side forwarder's (``core/hostfiles/lattice_forwarder.sign``: the
standard library only), not botocore's ``SigV4Auth``, which builds an ``AWSRequest`` and walks its generic
header and URL handling for every request: about 90 µs a request warm, and 430 µs in the worker once a second
(its code cold), where this takes about 25 µs warm. The tests hold it to botocore's signer header
for header (Hypothesis over credentials, regions, headers and times), as the forwarder's own tests do.
Credentials still come from botocore (its provider chain, refreshing).
"""

from __future__ import annotations

import datetime
import functools
from typing import Any
from urllib.parse import quote, urlsplit

from telemetry_shunt.core.contract import LATTICE_SIGNING_NAME
from telemetry_shunt.core.hostfiles.lattice_forwarder import sign


def sign_headers(
    credentials: Any,
    region: str,
    url: str,
    host_header: str,
    headers: dict[str, str],
    now: float | None = None,
) -> dict[str, str]:
    """Headers for one POST to ``url``, with ``Authorization``, ``X-Amz-Date``, the session token if
    any, and ``X-Amz-Content-SHA256: UNSIGNED-PAYLOAD``, all signed (every header given is signed). The body
    is not read. ``credentials``: botocore's (frozen) credentials, or anything with ``access_key``,
    ``secret_key`` and ``token``; ``now``: seconds since the epoch (default: the clock)."""
    at = datetime.datetime.fromtimestamp(now, datetime.UTC) if now is not None else \
        datetime.datetime.now(datetime.UTC)
    return sign(method="POST", host=host_header, path=_canonical_path(url), headers=headers,
                access_key=credentials.access_key, secret_key=credentials.secret_key, token=credentials.token,
                region=region, service=LATTICE_SIGNING_NAME, now=at)


@functools.lru_cache(maxsize=16)
def _canonical_path(url: str) -> str:
    """The path of the client's URL, which is its own canonical form (SigV4's: no query, no dot segment, no
    character to escape); anything else is refused, by name."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query or quote(path, safe="/~") != path or any(s in (".", "..") for s in path.split("/")):
        raise ValueError(f"cannot sign {url!r}: the client's URL has a plain path, no query, no dot segment")
    return path
