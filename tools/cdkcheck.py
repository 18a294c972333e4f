"""Verification shared by `make synth` and the tests: cfn-lint on templates, cdk-nag on apps."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")

LINT_REGIONS = ("us-east-1", "eu-west-1")


@dataclass(frozen=True)
class LintFinding:
    template: str
    rule: str
    level: str
    message: str
    path: str

    def __str__(self) -> str:
        return f"{self.template}: {self.level} {self.rule} at {self.path}: {self.message}"


def lint_template(template: dict[str, Any] | str | Path, *, name: str = "template") -> list[LintFinding]:
    """cfn-lint errors and warnings (not informational) for one template."""
    from cfnlint.api import ManualArgs, lint

    if isinstance(template, Path):
        name = template.name
        text = template.read_text()
    elif isinstance(template, dict):
        text = json.dumps(template)
    else:
        text = template
    matches = lint(text, config=ManualArgs(regions=list(LINT_REGIONS)))
    findings = []
    for m in matches:
        level = m.rule.severity if hasattr(m.rule, "severity") else "error"
        if m.rule.id.startswith("I"):
            continue
        findings.append(
            LintFinding(template=name, rule=m.rule.id, level=level, message=m.message,
                        path="/".join(str(p) for p in getattr(m, "path", []) or []))
        )
    return findings


def lint_templates(paths: Iterable[Path]) -> list[LintFinding]:
    out: list[LintFinding] = []
    for path in paths:
        out.extend(lint_template(path))
    return out


@dataclass(frozen=True)
class NagFinding:
    rule: str
    path: str
    description: str

    def __str__(self) -> str:
        return f"{self.rule} at {self.path}: {self.description}"


def synth_with_nag(app: Any) -> tuple[Any | None, list[NagFinding]]:
    """Synthesize ``app`` with the AwsSolutions pack; return the assembly and unacknowledged findings.

    cdk-nag 3 reports through CDK's validation plugins: any finding makes synth fail, and the report
    lands in ``<outdir>/validation-report.json``.
    """
    from aws_cdk import Validations
    from cdk_nag import AwsSolutionsChecks

    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        assembly = app.synth()
    except RuntimeError as exc:
        if "ValidationFailed" not in str(exc) and "Validation failed" not in str(exc):
            raise
        return None, read_nag_report(Path(app.outdir))
    return assembly, read_nag_report(Path(app.outdir))


def read_nag_report(outdir: Path) -> list[NagFinding]:
    report = outdir / "validation-report.json"
    if not report.exists():
        return []
    data = json.loads(report.read_text())
    findings = []
    for plugin in data.get("pluginReports", []):
        for violation in plugin.get("violations", []):
            for c in violation.get("violatingConstructs", []):
                findings.append(NagFinding(violation["ruleName"], c.get("constructPath", "?"),
                                           violation.get("description", "")))
    return findings


# --- checkov ------------------------------------------------------------------------------------------
# checkov lives in its own locked environment (tools/checkov/, installed by `make checkov` into .tools/checkov)
# so that its many dependencies never constrain the project's.
CHECKOV = Path(__file__).resolve().parent.parent / ".tools" / "checkov" / "bin" / "checkov"


@dataclass(frozen=True)
class CheckovResult:
    template: str
    check: str
    resource: str
    name: str
    comment: str = ""

    def __str__(self) -> str:
        return f"{self.template}: {self.check} on {self.resource}: {self.name}" + (
            f" (skipped: {self.comment})" if self.comment else "")


@dataclass(frozen=True)
class CheckovReport:
    passed: int
    failed: list[CheckovResult]
    skipped: list[CheckovResult]


def run_checkov(framework: str, files: list[str]) -> list[dict]:
    """Run the pinned checkov (offline, one process) over ``files``; its per-framework JSON reports."""
    import subprocess

    if not CHECKOV.exists():
        raise RuntimeError(f"checkov is not installed at {CHECKOV}: run `make checkov` (or `make install`)")
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_EXPERIMENTAL_TERRAFORM_MANAGED_MODULES="False",
               LOG_LEVEL="ERROR")
    env.pop("BC_API_KEY", None)
    proc = subprocess.run(
        [str(CHECKOV), "--framework", framework, "--skip-download", "--output", "json", "--compact",
         *(arg for f in files for arg in ("--file", f))],
        capture_output=True, text=True, env=env, timeout=600,
    )
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        raise RuntimeError(f"checkov failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    data = json.loads(proc.stdout)
    # checkov prints a summary dict with no results when nothing was scanned
    return [r for r in (data if isinstance(data, list) else [data]) if isinstance(r, dict) and "results" in r]


def checkov_scan(paths: Iterable[Path]) -> CheckovReport:
    """Run the pinned checkov (CloudFormation checks, offline) over template files, in one process.

    Skips come only from each resource's ``Metadata.checkov.skip`` (see constructs/_nag.skip_checkov).
    """
    files = [str(p) for p in paths]
    if not files:
        return CheckovReport(0, [], [])
    reports = run_checkov("cloudformation", files)
    passed, failed, skipped = 0, [], []
    for report in reports:
        results = report["results"]
        passed += len(results.get("passed_checks", []))
        for key, out in (("failed_checks", failed), ("skipped_checks", skipped)):
            for r in results.get(key, []):
                suppress = r.get("check_result", {}).get("suppress_comment", "") if key == "skipped_checks" else ""
                out.append(CheckovResult(template=Path(r["file_path"]).name, check=r["check_id"],
                                         resource=r["resource"], name=r["check_name"], comment=suppress))
    return CheckovReport(passed, failed, skipped)
