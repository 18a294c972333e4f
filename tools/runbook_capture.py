"""Regenerate docs/runbook.md's console blocks from a real ``shunt sandbox`` session.

The prose of docs/runbook.md is the template: every ```console block is run again, in document order, in a
fresh directory against a fresh sandbox, and its output replaced by what the commands print now (stdout,
then stderr, then ``$ echo $?``). Three blocks need a second terminal and are played as such:

* the kill switch flipped during a rollout (``r-demo-kill``): the rollout runs in the background and
  ``shunt kill on`` is sent once its first zone is done;
* the lease held by another operator, then Ctrl-C (``r-demo-int``): the rollout runs in the background, the
  second operator's ``start`` is run while it bakes in the second zone, then it gets SIGINT;
* the sandbox itself (start, and "sandbox stopped" at the end).

    .venv/bin/python tools/runbook_capture.py [--instances-per-az 2] [--doc docs/runbook.md]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHUNT = str(Path(sys.executable).with_name("shunt"))
BLOCK = re.compile(r"```console\n(.*?)```", re.DOTALL)
OLD_ENDPOINT = re.compile(r"http://127\.0\.0\.1:\d+")


class Session:
    def __init__(self, workdir: Path, instances_per_az: int) -> None:
        self.workdir = workdir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SHUNT_"))}
        self.env["AWS_EC2_METADATA_DISABLED"] = "true"
        self.env["PATH"] = f"{Path(SHUNT).parent}:{self.env.get('PATH', '/usr/bin:/bin')}"
        self.sandbox = subprocess.Popen(
            [SHUNT, "sandbox", "start", "--print-env", "--instances-per-az", str(instances_per_az)],
            cwd=workdir, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.exports: list[str] = []
        while "SHUNT_HEARTBEAT_PERIOD_SECONDS" not in "".join(self.exports):
            line = self.sandbox.stdout.readline()
            if not line:
                raise SystemExit(f"sandbox did not start: {self.sandbox.stderr.read()}")
            if line.startswith("export "):
                self.exports.append(line.rstrip("\n"))
                key, _, value = line[len("export "):].strip().partition("=")
                self.env[key] = shlex.split(value)[0]
        self.endpoint = self.env["AWS_ENDPOINT_URL"]
        self.background: dict[str, subprocess.Popen] = {}

    def command(self, line: str) -> str:
        return OLD_ENDPOINT.sub(self.endpoint, line)

    def run(self, line: str) -> tuple[str, int]:
        """One '$ ...' line: its stdout then stderr, and its exit status."""
        done = subprocess.run(self.command(line), shell=True, cwd=self.workdir, env=self.env, capture_output=True,
                              text=True, timeout=900, executable="/bin/bash")
        return done.stdout + done.stderr, done.returncode

    def start_background(self, name: str, line: str) -> None:
        self.background[name] = subprocess.Popen(
            shlex.split(self.command(line).replace("shunt", SHUNT, 1)), cwd=self.workdir, env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def finish_background(self, name: str, *, interrupt: bool = False) -> tuple[str, int]:
        proc = self.background.pop(name)
        if interrupt:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=900)
        return out + err, proc.returncode

    def audit_has(self, rollout_id: str, predicate) -> bool:
        path = self.workdir / ".shunt" / "sandbox" / "audit.jsonl"
        if not path.exists():
            return False
        import json

        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("rollout_id") == rollout_id and predicate(event):
                return True
        return False

    def wait_audit(self, rollout_id: str, predicate, what: str, *, background: str, timeout: float = 900) -> None:
        """Until the audit log shows the event, or the background rollout has ended (then the block shows
        what really happened)."""
        deadline = time.monotonic() + timeout
        while not self.audit_has(rollout_id, predicate):
            if self.background[background].poll() is not None:
                print(f"warning: {rollout_id} ended before {what}", file=sys.stderr)
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            time.sleep(0.3)

    def stop(self) -> str:
        self.sandbox.send_signal(signal.SIGTERM)
        _, err = self.sandbox.communicate(timeout=120)
        return "\n".join(line for line in err.splitlines() if line == "sandbox stopped")


def render(lines: list[tuple[str, str, int]]) -> str:
    out = []
    for cmd, output, code in lines:
        out.append(f"$ {cmd}")
        if output:
            out.append(output.rstrip("\n"))
        out.append("$ echo $?")
        out.append(str(code))
    return "\n".join(out) + "\n"


def zone_done(az: str):
    return lambda e: e.get("event") == "zone_done" and e.get("az") == az


def capture(doc: Path, instances_per_az: int) -> None:
    text = doc.read_text()
    with tempfile.TemporaryDirectory(prefix="runbook-") as tmp:
        session = Session(Path(tmp), instances_per_az)
        pieces: list[str] = []
        last = 0
        pending_kill: tuple[str, str, int] | None = None
        pending_lease: tuple[str, str, int] | None = None
        try:
            for match in BLOCK.finditer(text):
                pieces.append(text[last:match.start()])
                last = match.end()
                body = match.group(1)
                commands = [line[2:] for line in body.splitlines() if line.startswith("$ ") and line != "$ echo $?"]
                if not commands:  # the sandbox's farewell
                    pieces.append("```console\n" + session.stop() + "\n```")
                    continue
                first = commands[0]
                if first.startswith("shunt sandbox start"):
                    pieces.append("```console\n$ shunt sandbox start --print-env\n" + "\n".join(session.exports)
                                  + "\n```")
                    continue
                if first.startswith("shunt kill on --yes"):
                    # second terminal: the rollout of the next block is already running
                    rollout = next_rollout(text, match.end())
                    session.start_background("kill", rollout)
                    session.wait_audit("r-demo-kill", zone_done("us-east-1a"), "r-demo-kill zone 1 done", background="kill")
                    output, code = session.run(first)
                    pending_kill = (rollout, "", 0)
                    pieces.append("```console\n" + render([(session.command(first), output, code)]) + "```")
                    continue
                if pending_kill and "r-demo-kill" in first and "rollout start" in first:
                    output, code = session.finish_background("kill")
                    pieces.append("```console\n" + render([(session.command(first), output, code)]) + "```")
                    pending_kill = None
                    continue
                if "rollout start" in first and "--rollout-id" not in first and "version 1.1.0 --yes" in first:
                    # the second operator: r-demo-int (next block) holds the lease
                    interrupted = next_rollout(text, match.end())
                    session.start_background("int", interrupted)
                    session.wait_audit("r-demo-int", zone_done("us-east-1a"), "r-demo-int zone 1 done", background="int")
                    output, code = session.run(first)
                    pending_lease = (interrupted, "", 0)
                    pieces.append("```console\n" + render([(session.command(first), output, code)]) + "```")
                    continue
                if pending_lease and "r-demo-int" in first and "rollout start" in first:
                    time.sleep(2)  # in the second zone's canary bake
                    output, code = session.finish_background("int", interrupt=True)
                    pieces.append("```console\n$ " + session.command(first) + "\n^C\n" + output.rstrip("\n")
                                  + f"\n$ echo $?\n{code}\n```")
                    pending_lease = None
                    continue
                rendered = []
                for cmd in commands:
                    output, code = session.run(cmd)
                    rendered.append((session.command(cmd), output, code))
                pieces.append("```console\n" + render(rendered) + "```")
        finally:
            for name in list(session.background):
                session.finish_background(name, interrupt=True)
            if session.sandbox.poll() is None:
                session.stop()
        pieces.append(text[last:])
    doc.write_text(OLD_ENDPOINT.sub(session.endpoint, "".join(pieces)))


def next_rollout(text: str, offset: int) -> str:
    """The first '$ shunt rollout start ...' command after offset (the block played in the background)."""
    match = re.search(r"^\$ (shunt rollout start .*)$", text[offset:], re.MULTILINE)
    if not match:
        raise SystemExit("template: no rollout block after a second-terminal block")
    return match.group(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances-per-az", type=int, default=2)
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "runbook.md")
    args = parser.parse_args()
    capture(args.doc, args.instances_per_az)
    print(f"rewrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
