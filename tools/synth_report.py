"""`make synth`: synthesize the default app with the pinned CDK CLI, lint every template, summarize.

Then the same for the Terraform flavour (app_terraform.py into cdktf.out/): synthesize, checkov
(``terraform_json``, acknowledgements on their resources), push-only proof.

Exit 1 (with the reason on stderr) if synthesis fails (cdk-nag findings fail it), if cfn-lint reports
any error or warning, if checkov fails a check (skips must sit on their resource with a reason), or if the
push-only proof fails, for either flavour.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.cdkcheck import checkov_scan, lint_templates  # noqa: E402

OUT = ROOT / "cdk.out"


def synthesize() -> float:
    env = dict(os.environ, JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="18,20", CDK_DISABLE_CLI_TELEMETRY="true")
    cdk = ROOT / "node_modules" / ".bin" / "cdk"
    start = time.perf_counter()
    proc = subprocess.run(
        [str(cdk), "synth", "--quiet", "--no-notices", "--no-version-reporting", "--output", str(OUT)],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        sys.stderr.write("synth: cdk synth failed (above). cdk-nag findings and bad context values fail synthesis.\n")
        sys.exit(1)
    return elapsed


def stack_templates() -> dict[str, Path]:
    manifest = json.loads((OUT / "manifest.json").read_text())
    return {
        name: OUT / art["properties"]["templateFile"]
        for name, art in manifest["artifacts"].items()
        if art["type"] == "aws:cloudformation:stack"
    }


def acknowledgements(stack: str) -> list[tuple[str, str, str]]:
    meta_file = OUT / f"{stack}.metadata.json"
    if not meta_file.exists():
        return []
    out = []
    for path, entries in json.loads(meta_file.read_text()).items():
        for entry in entries:
            if entry["type"] == "aws:cdk:acknowledged-rules":
                for rule, reason in entry["data"].items():
                    if "AwsSolutions" in rule:
                        out.append((path, rule.split("::", 1)[-1], reason))
    return out


def proof_lines(templates: dict[str, Path]) -> list[str]:
    """What `shunt policy prove cdk.out/*.template.json --pusher <cdk.json's pushers>` proves (the shipped code)."""
    from telemetry_shunt.errors import ShuntError
    from telemetry_shunt.verify.proof import context_pushers, prove_subject
    from telemetry_shunt.verify.subject import proof_subject

    try:
        subject = proof_subject(list(templates.values()), pushers=context_pushers(ROOT / "cdk.json"))
    except ShuntError as exc:
        return [f"  push-only proof could not run: {exc}", "FAILED"]
    results = prove_subject(subject)
    lines = [f"  {r}" for r in results]
    if not all(r.holds for r in results):
        lines.append("FAILED")
    return lines


TF_OUT = ROOT / "cdktf.out"


def terraform_report() -> bool:
    """Synthesize the default Terraform app, scan and prove it; True if all is clean."""
    from tools.tfcheck import terraform_checkov_scan

    env = dict(os.environ, JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="18,20")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "app_terraform.py")], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        sys.stderr.write("synth: app_terraform.py failed (above).\n")
        return False
    files = sorted((TF_OUT / "stacks").glob("*/cdk.tf.json"))
    print(f"Terraform flavour: synthesized {len(files)} stacks into {TF_OUT.relative_to(ROOT)}/stacks/ in {elapsed:.1f} s")
    for f in files:
        doc = json.loads(f.read_text())
        count = sum(len(v) for v in doc.get("resource", {}).values())
        print(f"- {f.parent.name}: {count} resources")
    scan = terraform_checkov_scan(files)
    print(f"checkov (pinned, terraform_json): {scan.report.passed} passed, {len(scan.report.failed)} failed, "
          f"{len(scan.report.skipped)} acknowledged on their resource with a reason")
    for r in scan.report.failed:
        print(f"  FAILED {r}")
    for stale in scan.stale:
        print(f"  ACKNOWLEDGED BUT NOT FOUND {stale}")
    print("Push-only auth policy, Terraform flavour (SMT proof over cdk.tf.json):")
    lines = proof_lines({"concentrator": TF_OUT / "stacks" / "TelemetryConcentrator" / "cdk.tf.json"})
    print("\n".join(line for line in lines if line != "FAILED"))
    return not (scan.report.failed or scan.stale or (lines and lines[-1] == "FAILED"))


def main() -> int:
    elapsed = synthesize()
    templates = stack_templates()
    findings = lint_templates(templates.values())
    print(f"Synthesized {len(templates)} stacks into {OUT.relative_to(ROOT)}/ in {elapsed:.1f} s (cdk-nag AwsSolutions: clean)")
    for name, path in templates.items():
        template = json.loads(path.read_text())
        types = Counter(r["Type"] for r in template["Resources"].values())
        lattice = {t.split("::")[-1]: n for t, n in types.items() if t.startswith("AWS::VpcLattice::")}
        print(f"- {name}: {sum(types.values())} resources; Lattice: "
              + (", ".join(f"{n} {t}" for t, n in sorted(lattice.items())) or "none"))
        for rule in (r for r in template["Resources"].values() if r["Type"] == "AWS::VpcLattice::Rule"):
            match = rule["Properties"]["Match"]["HttpMatch"]
            path = match["PathMatch"]["Match"]["Exact"]
            print(f"    route {match['Method']} {path}  (priority {rule['Properties']['Priority']})")
        acks = acknowledgements(name)
        if acks:
            print(f"    {len(acks)} cdk-nag acknowledgements, each on its resource with a reason")
    print(f"cfn-lint: {len(findings)} errors/warnings across {len(templates)} templates")
    for f in findings:
        print(f"  {f}")
    scan = checkov_scan(templates.values())
    unexplained = [s for s in scan.skipped if len(s.comment.strip()) < 25]
    print(f"checkov (pinned, CloudFormation checks): {scan.passed} passed, {len(scan.failed)} failed, "
          f"{len(scan.skipped)} skipped on their resource with a reason")
    for r in scan.failed:
        print(f"  FAILED {r}")
    for r in unexplained:
        print(f"  SKIPPED WITHOUT A REASON {r}")
    print("Push-only auth policy (SMT proof over the synthesized templates):")
    lines = proof_lines(templates)
    failed = lines and lines[-1] == "FAILED"
    print("\n".join(line for line in lines if line != "FAILED"))
    terraform_ok = terraform_report()
    return 1 if findings or failed or scan.failed or unexplained or not terraform_ok else 0


if __name__ == "__main__":
    sys.exit(main())
