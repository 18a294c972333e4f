"""The client's argument checks: each raises ``ValueError`` naming the argument, at construction."""

from __future__ import annotations

import math
import re
import ssl
from typing import Any

from telemetry_shunt.client._http import Endpoint, parse_endpoint

_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}", re.ASCII)
# A URL as typed: printable ASCII, no spaces or control characters (urlsplit silently removes tabs and
# newlines, so "https://gw\n.example" would otherwise become another host).
_URL_TEXT = re.compile(r"[\x21-\x7e]{1,2048}", re.ASCII)


def endpoint(value: object) -> Endpoint:
    if not isinstance(value, str) or not _URL_TEXT.fullmatch(value):
        raise ValueError(f"endpoint must be an https:// (or http://) URL string such as "
                         f"'https://<service DNS name>', got {value!r}")
    try:
        return parse_endpoint(value)
    except ValueError as exc:  # a bad port, a path, another scheme
        raise ValueError(f"endpoint: {exc}") from None


def region(value: object) -> str:
    if not isinstance(value, str) or not _REGION.fullmatch(value):
        raise ValueError(f"region must name the gateway's AWS region, e.g. 'us-east-1', got {value!r}")
    return value


def integer(name: str, value: object, *, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:  # bool is an int to Python, not here
        raise ValueError(f"{name} must be an integer from {low:,} to {high:,}, got {value!r}")
    return value


def seconds(name: str, value: object, *, low: float, high: float, low_inclusive: bool = False) -> float:
    number_ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number_ok or not math.isfinite(value) or value > high or value < low or (value == low and not low_inclusive):
        bound = "[" if low_inclusive else "("
        raise ValueError(f"{name} must be a finite number of seconds in {bound}{low:g}, {high:g}], got {value!r}")
    return float(value)


def boolean(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def one_of(name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def instance(name: str, value: object, kind: type | tuple[type, ...], what: str) -> Any:
    if value is not None and not isinstance(value, kind):
        raise ValueError(f"{name} must be {what} or None, got {value!r}")
    return value


def credentials(value: object) -> Any:
    if value is not None and not callable(getattr(value, "get_frozen_credentials", None)):
        raise ValueError(f"credentials must be botocore credentials (with get_frozen_credentials) or None, "
                         f"got {value!r}")
    return value


def ssl_context(value: object) -> ssl.SSLContext | None:
    return instance("ssl_context", value, ssl.SSLContext, "an ssl.SSLContext")
