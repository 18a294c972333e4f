"""The one way to acknowledge a cdk-nag finding: next to the resource, naming the exact finding, with a reason."""

from __future__ import annotations

import re

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

_FINDING = re.compile(r"^AwsSolutions-[A-Z]+\d+(\[.+\])?$")
_PLACEHOLDERS = {"todo", "tbd", "n/a", "none", "reason", "fixme", "ignore"}


def acknowledge(construct: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge one cdk-nag ``finding`` (``"AwsSolutions-IAM5[Resource::*]"``) on ``construct``.

    The reason must explain why the finding does not apply here; placeholders are refused so that
    every acknowledgement in a synthesized app is one a reviewer can read and judge.
    """
    if not _FINDING.match(finding):
        raise ValueError(f"cdk-nag finding must look like 'AwsSolutions-IAM5[Resource::*]', got {finding!r}")
    if len(reason.strip()) < 25 or reason.strip().lower() in _PLACEHOLDERS:
        raise ValueError(f"acknowledgement of {finding} needs a real reason (25+ characters), got {reason!r}")
    Validations.of(construct).acknowledge(Acknowledgment(id=finding, reason=reason))
