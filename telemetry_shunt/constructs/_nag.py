"""The one way to acknowledge a scanner finding: next to the resource, naming the exact finding, with a reason.

cdk-nag findings through :func:`acknowledge` (CDK's validation acknowledgements), checkov checks through
:func:`skip_checkov` (the resource's ``Metadata.checkov.skip`` list, which checkov reads from the template).
"""

from __future__ import annotations

import re

from aws_cdk import Acknowledgment, CfnResource, Validations
from constructs import IConstruct

_FINDING = re.compile(r"AwsSolutions-[A-Z]+[0-9]+(\[[^\n]+\])?", re.ASCII)
_CHECKOV_ID = re.compile(r"CKV2?_AWS_[0-9]+", re.ASCII)
_PLACEHOLDERS = {"todo", "tbd", "n/a", "none", "reason", "fixme", "ignore"}


def acknowledge(construct: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge one cdk-nag ``finding`` (``"AwsSolutions-IAM5[Resource::*]"``) on ``construct``.

    The reason must explain why the finding does not apply here; placeholders are refused so that
    every acknowledgement in a synthesized app is one a reviewer can read and judge.
    """
    if not isinstance(finding, str) or not _FINDING.fullmatch(finding):
        raise ValueError(f"cdk-nag finding must look like 'AwsSolutions-IAM5[Resource::*]', got {finding!r}")
    if len(reason.strip()) < 25 or reason.strip().lower() in _PLACEHOLDERS:
        raise ValueError(f"acknowledgement of {finding} needs a real reason (25+ characters), got {reason!r}")
    Validations.of(construct).acknowledge(Acknowledgment(id=finding, reason=reason))


def skip_checkov(construct: IConstruct, check: str, reason: str) -> None:
    """Skip checkov ``check`` (``"CKV_AWS_116"``) on ``construct``'s CloudFormation resource, with a reason.

    Written as the resource's ``Metadata: {checkov: {skip: [{id, comment}]}}``, so the template itself says
    which check does not apply to which resource and why; nothing is skipped globally.
    """
    if not isinstance(check, str) or not _CHECKOV_ID.fullmatch(check):
        raise ValueError(f"checkov check must look like 'CKV_AWS_116', got {check!r}")
    if len(reason.strip()) < 25 or reason.strip().lower() in _PLACEHOLDERS:
        raise ValueError(f"skip of {check} needs a real reason (25+ characters), got {reason!r}")
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise ValueError(f"{construct.node.path} has no CloudFormation resource to carry the checkov skip of {check}")
    current = resource.get_metadata("checkov") or {}
    skips = [s for s in current.get("skip", []) if s["id"] != check]
    resource.add_metadata("checkov", {**current, "skip": [*skips, {"id": check, "comment": reason}]})
