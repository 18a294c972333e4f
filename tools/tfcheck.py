"""checkov over the Terraform flavour's ``cdk.tf.json`` files, with acknowledgements that sit on each resource.

checkov 3.3.30's ``terraform_json`` runner reads no skip comments (it scans every entity with an empty skip
list), so a finding is acknowledged on its resource instead: ``telemetry_shunt.terraform.network.
acknowledge_checkov`` writes ``{"id", "comment"}`` entries into the resource's ``//`` block, and this module
moves a matching failure to ``skipped`` with that comment. Nothing is skipped globally, and an
acknowledgement that matches no finding is reported as stale.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tools.cdkcheck import CheckovReport, CheckovResult, run_checkov

ACK_KEY = "checkov_acknowledged"  # telemetry_shunt.terraform.network.CHECKOV_ACK_KEY


@dataclass(frozen=True)
class TerraformScan:
    report: CheckovReport
    #: acknowledgements that matched no failed check: "<file>: <id> on <resource>"
    stale: list[str]


def acknowledgements(paths: Iterable[Path]) -> dict[tuple[str, str, str], str]:
    """(resolved file path, "type.name", check id) -> reason, read from each resource's ``//`` block."""
    acks: dict[tuple[str, str, str], str] = {}
    for path in paths:
        doc = json.loads(Path(path).read_text())
        for rtype, by_name in doc.get("resource", {}).items():
            for name, body in by_name.items():
                for ack in (body.get("//") or {}).get(ACK_KEY, []):
                    acks[(str(Path(path).resolve()), f"{rtype}.{name}", ack["id"])] = ack["comment"]
    return acks


def terraform_checkov_scan(paths: Iterable[Path]) -> TerraformScan:
    files = [Path(p) for p in paths]
    reports = run_checkov("terraform_json", [str(f) for f in files])
    acks = acknowledgements(files)
    used: set[tuple[str, str, str]] = set()
    passed, failed, skipped = 0, [], []
    for report in reports:
        passed += len(report["results"].get("passed_checks", []))
        for r in report["results"].get("failed_checks", []):
            # Graph checks name the resource "type.name"; python checks "resource.name" in 3.3.30.
            resource = r["resource"]
            file = str(Path(r["file_abs_path"]).resolve())
            template = f"{Path(file).parent.name}/{Path(file).name}"
            key = next((k for k in acks if k[0] == file and k[2] == r["check_id"]
                        and k[1].split(".", 1)[1] == resource.split(".", 1)[1]), None)
            result = CheckovResult(template=template, check=r["check_id"], resource=resource, name=r["check_name"],
                                   comment=acks.get(key, "") if key else "")
            if key is not None:
                used.add(key)
                skipped.append(result)
            else:
                failed.append(result)
    stale = [f"{Path(k[0]).parent.name}: {k[2]} on {k[1]}" for k in acks if k not in used]
    return TerraformScan(CheckovReport(passed, failed, skipped), stale)
