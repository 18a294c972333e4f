"""Checks shared by the constructs and the CLI. Each names the bad value and says what to do.

Values that are CDK tokens (unresolved until deploy time, e.g. ``${Token[...]}``) pass: they are
checked where they become concrete, by CloudFormation.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

from telemetry_shunt.errors import ValidationError

# CDK encodes unresolved values as "${Token[...]}" strings, or as very large/small sentinel numbers;
# CDK Terrain (the Terraform flavour) as "${TfToken[...]}".
_TOKEN = re.compile(r"\$\{(?:Tf)?Token\[[^\]]+\]\}|#\{(?:Tf)?Token\[|\[\s*(?:Tf)?Token\.")

PARTITIONS = ("aws", "aws-cn", "aws-us-gov")
# Every pattern is matched whole and ASCII-only: ``re.match`` with ``$`` accepts a trailing newline and
# Unicode ``\d`` accepts digits such as '١١١'. Validators call ``fullmatch``; the trailing ``\Z`` keeps the
# patterns other modules import whole even under ``re.match``.
ACCOUNT_ID = re.compile(r"[0-9]{12}\Z", re.ASCII)
# An account's root principal, any partition: groups (partition, account).
ACCOUNT_ROOT_ARN = re.compile(r"arn:([A-Za-z0-9_-]+):iam::([0-9]{12}):root\Z", re.ASCII)
ORG_ID = re.compile(r"o-[a-z0-9]{10,32}\Z", re.ASCII)
ROLE_ARN = re.compile(
    r"arn:(aws|aws-cn|aws-us-gov):iam::([0-9]{12}):role/(?:[A-Za-z0-9_+=,.@-]+/)*([A-Za-z0-9_+=,.@-]{1,64})\Z",
    re.ASCII,
)
VPC_ID = re.compile(r"vpc-[0-9a-f]{8}(?:[0-9a-f]{9})?\Z", re.ASCII)
AZ_NAME = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9][a-z]\Z", re.ASCII)
# AWS Organizations identifiers (Organizations API reference: Organization.Arn, OrganizationalUnit.Arn).
ORGANIZATION_ARN = re.compile(
    r"arn:(aws|aws-cn|aws-us-gov):organizations::[0-9]{12}:organization/o-[a-z0-9]{10,32}\Z", re.ASCII
)
OU_ARN = re.compile(
    r"arn:(aws|aws-cn|aws-us-gov):organizations::[0-9]{12}:ou/o-[a-z0-9]{10,32}/ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}\Z",
    re.ASCII,
)

# Lattice name rules, from the CloudFormation resource schemas.
_LATTICE_NAME = re.compile(r"(?!-)(?!.*-\Z)(?!.*--)[a-z0-9-]+\Z", re.ASCII)
LATTICE_NAME_RULES = {
    # kind: (min, max, forbidden prefix)
    "service network": (3, 63, "servicenetwork-"),
    "service": (3, 40, "svc-"),
    "target group": (3, 128, "tg-"),
    "listener": (3, 63, "listener-"),
    "rule": (3, 63, "rule-"),
}


def is_token(value: object) -> bool:
    """True for a CDK token (a value resolved only at deploy time)."""
    return isinstance(value, str) and bool(_TOKEN.search(value))


def is_whole_token(value: object) -> bool:
    """True when the whole value is one CDK token (a name chosen at deploy time), not text around one."""
    return isinstance(value, str) and bool(_TOKEN.fullmatch(value))


def _deploy_time(value: object) -> bool:
    """A token that may pass unchecked: no whitespace or control character around it either."""
    return is_token(value) and not any(c.isspace() or not c.isprintable() for c in value)  # type: ignore[union-attr]


def lattice_name(kind: str, name: str) -> str:
    """Validate a VPC Lattice resource name of ``kind`` (see :data:`LATTICE_NAME_RULES`)."""
    if is_token(name):
        return name
    lo, hi, prefix = LATTICE_NAME_RULES[kind]
    if not isinstance(name, str) or not (lo <= len(name) <= hi) or not _LATTICE_NAME.fullmatch(name) \
            or name.startswith(prefix):
        raise ValidationError(
            f"{kind} name {name!r} is not one VPC Lattice accepts: use {lo}-{hi} characters of a-z, 0-9 and "
            f"single hyphens, not starting or ending with a hyphen, and not starting with {prefix!r}"
        )
    return name


def cidr(value: str, *, what: str = "CIDR", min_prefix: int = 16, max_prefix: int = 28) -> ipaddress.IPv4Network:
    """Parse an IPv4 VPC CIDR block (a VPC takes /16 to /28)."""
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError) as exc:
        raise ValidationError(
            f"{what} {value!r} is not a valid IPv4 network ({exc}); use a block such as '10.80.0.0/16'"
        ) from None
    if not (min_prefix <= network.prefixlen <= max_prefix):
        raise ValidationError(f"{what} {value!r} must be between /{min_prefix} and /{max_prefix} (a VPC's range)")
    return network


def disjoint_cidrs(named: Iterable[tuple[str, str]]) -> None:
    """Refuse overlapping CIDRs among ``(label, cidr)`` pairs; tokens are skipped."""
    parsed: list[tuple[str, ipaddress.IPv4Network]] = []
    for label, value in named:
        if is_token(value):
            continue
        net = cidr(value, what=label)
        for other_label, other in parsed:
            if net.overlaps(other):
                raise ValidationError(
                    f"{label} {value!r} overlaps {other_label} {str(other)!r}: give each VPC its own range "
                    "so flow logs, access logs and any later peering stay unambiguous"
                )
        parsed.append((label, net))


def availability_zones(azs: Sequence[str], *, minimum: int = 2) -> list[str]:
    azs = list(azs)
    concrete = [az for az in azs if not is_token(az)]
    if len(azs) < minimum:
        raise ValidationError(f"need at least {minimum} Availability Zones, got {len(azs)} ({azs!r}): "
                              "the telemetry path must survive the loss of one zone")
    for az in concrete:
        if not isinstance(az, str) or not AZ_NAME.fullmatch(az):
            raise ValidationError(f"Availability Zone {az!r} is not an AZ name such as 'us-east-1a'")
    if len(set(azs)) != len(azs):
        raise ValidationError(f"Availability Zones must be distinct, got {azs!r}")
    return azs


def account_id(value: str) -> str:
    if _deploy_time(value) or (isinstance(value, str) and ACCOUNT_ID.fullmatch(value)):
        return value
    raise ValidationError(f"account id {value!r} must be 12 digits, e.g. '111111111111'")


def organization_id(value: str) -> str:
    if _deploy_time(value) or (isinstance(value, str) and ORG_ID.fullmatch(value)):
        return value
    raise ValidationError(f"organization id {value!r} must look like 'o-a1b2c3d4e5'")


def role_arn(value: str) -> str:
    if _deploy_time(value) or (isinstance(value, str) and ROLE_ARN.fullmatch(value)):
        return value
    raise ValidationError(
        f"role ARN {value!r} must look like 'arn:aws:iam::111111111111:role/name' "
        "(partition aws, aws-cn or aws-us-gov); wildcards are not allowed"
    )


def share_principal(value: str) -> str:
    """An AWS RAM share principal: a 12-digit account id, an OU ARN or an organization ARN (real ids only)."""
    if _deploy_time(value):
        return value
    if isinstance(value, str):
        if value.isascii() and value.isdigit():
            return account_id(value)
        if ACCOUNT_ID.fullmatch(value) or ORGANIZATION_ARN.fullmatch(value) or OU_ARN.fullmatch(value):
            return value
        if ORG_ID.fullmatch(value):
            raise ValidationError(
                f"share target {value!r} is an organization id; RAM needs the organization ARN, "
                f"e.g. 'arn:aws:organizations::111111111111:organization/{value}'"
            )
    raise ValidationError(
        f"share target {value!r} is not a 12-digit account id, an OU ARN "
        "('arn:aws:organizations::111111111111:ou/o-a1b2c3d4e5/ou-ab12-cd34ef56') or an organization ARN "
        "('arn:aws:organizations::111111111111:organization/o-a1b2c3d4e5'); wildcards are not allowed"
    )


# An e-mail address as SNS takes it: one '@', no spaces or control characters, a dotted domain.
EMAIL_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                           r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+", re.ASCII)


def email_address(value: object) -> str:
    if isinstance(value, str) and len(value) <= 254 and EMAIL_ADDRESS.fullmatch(value):
        return value
    raise ValidationError(f"e-mail address {value!r} is not one SNS can subscribe: use e.g. 'oncall@example.com'")


# Private DNS for a service-network VPC association or endpoint (CloudFormation DnsOptions of
# AWS::VpcLattice::ServiceNetworkVpcAssociation and AWS::EC2::VPCEndpoint, same enum and limits).
PRIVATE_DNS_PREFERENCES = (
    "VERIFIED_DOMAINS_ONLY", "ALL_DOMAINS", "VERIFIED_DOMAINS_AND_SPECIFIED_DOMAINS", "SPECIFIED_DOMAINS_ONLY",
)
_WITH_DOMAINS = ("VERIFIED_DOMAINS_AND_SPECIFIED_DOMAINS", "SPECIFIED_DOMAINS_ONLY")
_DOMAIN = re.compile(r"(?=.{1,255}\Z)(?:\*\.)?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", re.ASCII)


def private_dns(preference: str | None, specified_domains: Sequence[str] = ()) -> tuple[str | None, tuple[str, ...]]:
    """Check a private-DNS preference and its specified domains (required by, and only with, the two
    ``*SPECIFIED_DOMAINS*`` preferences: 1-10 distinct lowercase domain names, ``*.`` wildcards allowed)."""
    domains = tuple(specified_domains)
    if preference is not None and preference not in PRIVATE_DNS_PREFERENCES:
        raise ValidationError(f"private DNS preference {preference!r} must be one of {', '.join(PRIVATE_DNS_PREFERENCES)}")
    if preference in _WITH_DOMAINS:
        if not 1 <= len(domains) <= 10:
            raise ValidationError(f"private DNS preference {preference} needs 1-10 specified domains, got {list(domains)!r}")
    elif domains:
        raise ValidationError(f"private DNS specified domains {list(domains)!r} need preference "
                              "VERIFIED_DOMAINS_AND_SPECIFIED_DOMAINS or SPECIFIED_DOMAINS_ONLY")
    for d in domains:
        if not (isinstance(d, str) and _DOMAIN.fullmatch(d)):
            raise ValidationError(f"private DNS domain {d!r} is not a lowercase domain name such as 'example.com' "
                                  "or '*.example.com'")
    dup = duplicates(domains)
    if dup:
        raise ValidationError(f"duplicate private DNS domain(s) {dup!r}")
    return preference, domains


def duplicates(values: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    dup: list[str] = []
    for v in values:
        if v in seen and v not in dup:
            dup.append(v)
        seen.add(v)
    return dup


# EC2 tag values: up to 256 characters of letters, digits, spaces and + - = . _ : / @ ("aws:" is reserved).
# A fleet name is compared literally everywhere (EC2 tag filter, IAM StringEquals, the lease key), so it
# takes the ASCII subset without spaces: no '*' or '?', which an EC2 filter would expand as wildcards.
FLEET_NAME = re.compile(r"(?!aws:)[A-Za-z0-9+=._:/@-]{1,256}", re.ASCII | re.IGNORECASE)


def fleet_name(value: object) -> str:
    """A ``telemetry-shunt:fleet`` tag value, taken literally (never a pattern)."""
    if isinstance(value, str) and FLEET_NAME.fullmatch(value):
        return value
    raise ValidationError(
        f"fleet name {value!r} must be a literal tag value: 1-256 of letters, digits and + - = . _ : / @ "
        "(no spaces, no '*' or '?' wildcards, not starting with 'aws:'); name exactly one fleet"
    )
