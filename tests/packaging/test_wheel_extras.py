"""A pip user gets what a clone gets: the built wheel, one fresh venv per extra, that extra's command.

For each extra: a fresh venv gets exactly the lock's packages for that extra (``uv export --extra X
--format pylock.toml``), then ``uv pip install --offline 'telemetry_shunt-*.whl[X]'``. Offline, uv can
add nothing, so the install succeeds only if the wheel's own metadata for ``[X]`` is satisfied by the
lock's set: a dependency missing from the lock's extra, or an extra the wheel does not declare, fails
here. Then the extra's smoke command runs from that venv (no repo on ``sys.path``), which catches a
module or package-data file missing from the wheel and a command whose extra lacks a package it needs.

Everything is offline from the uv cache that ``make install`` fills (the lock's wheels); the venvs are
created in parallel and reuse the cache (hard links or copies, no downloads).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest

from telemetry_shunt.core.contract import FLEET_TAG_KEY
from tests.client.client_fakes import ACCESS_KEY, REGION, SECRET_KEY, SESSION_TOKEN, FakeGateway

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".tools" / "bin" / "uv"
SNAPSHOT = ROOT / "tests" / "stacks" / "snapshots" / "TelemetryConcentrator.json"
EXTRAS = ("client", "cdk", "rollout", "sandbox", "verify")
BASE = "base"  # no extra: click only
AGENT = "arn:aws:sts::111111111111:assumed-role/telemetry-agent/i-0abc"
# Hang guards only (a healthy run takes a fraction): the machine is shared and loaded.
INSTALL_TIMEOUT = 600
COMMAND_TIMEOUT = 300

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wheel_extras")]


def _uv_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "PYTHONPATH")}
    env.update(UV_OFFLINE="1", UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1")
    return env


def _run(args: list[str], *, cwd: Path = ROOT, timeout: float = INSTALL_TIMEOUT, env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env or _uv_env(), capture_output=True, text=True,
                          timeout=timeout)


class Venv:
    def __init__(self, extra: str, path: Path) -> None:
        self.extra = extra
        self.path = path
        self.error: str | None = None

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def run(self, *args: str | Path, cwd: Path, timeout: float = COMMAND_TIMEOUT, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
        """A command of this venv (``shunt`` or ``python``), run outside the repo so only the wheel is importable."""
        base = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        base["PATH"] = f"{self.path / 'bin'}{os.pathsep}{base.get('PATH', '')}"
        return subprocess.run([str(self.path / "bin" / str(args[0])), *map(str, args[1:])], cwd=cwd,
                              env={**base, **(env or {})}, capture_output=True, text=True, timeout=timeout)

    def python_code(self, code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return self.run("python", "-c", textwrap.dedent(code), *args, cwd=cwd)


def _install(extra: str, wheel: Path, root: Path) -> Venv:
    venv = Venv(extra, root / f"venv-{extra}")
    lock_dir = root / f"lock-{extra}"
    lock_dir.mkdir()
    pylock = lock_dir / f"pylock.{extra}.toml"
    selection = [] if extra == BASE else ["--extra", extra]
    steps = [
        # The lock's packages for this extra, exactly (pyproject and lock must agree: --locked).
        [UV, "export", "--locked", "--offline", "--quiet", "--no-emit-project", "--no-default-groups", *selection,
         "--format", "pylock.toml", "-o", pylock],
        [UV, "venv", "--quiet", "--python", "python3.11", venv.path],
        [UV, "pip", "install", "--offline", "--quiet", "--python", venv.python, "-r", pylock],
        # The wheel with its extra: offline, so its metadata must be met by the lock's packages above.
        [UV, "pip", "install", "--offline", "--quiet", "--python", venv.python,
         str(wheel) if extra == BASE else f"{wheel}[{extra}]"],
    ]
    for step in steps:
        proc = _run(step)
        if proc.returncode != 0:
            venv.error = f"{' '.join(map(str, step))} failed:\n{proc.stdout}{proc.stderr}"
            break
    return venv


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not UV.exists():
        pytest.fail(f"{UV} is missing: run 'make install' (make test does) to install the pinned uv")
    out = tmp_path_factory.mktemp("dist")
    # The client's C accelerator must build here (hatch_build.py falls back to pure Python only where it cannot).
    proc = _run([UV, "build", "--wheel", "--offline", "--quiet", "--python", "python3.11", "-o", out, ROOT],
                env={**_uv_env(), "TELEMETRY_SHUNT_REQUIRE_SPEEDUPS": "1"})
    assert proc.returncode == 0, f"uv build --wheel --offline failed:\n{proc.stdout}{proc.stderr}"
    (built,) = out.glob("telemetry_shunt-*.whl")
    return built


def test_a_build_refuses_a_require_speedups_value_other_than_0_or_1(tmp_path):
    # "true" read as "no" would give a pure-Python wheel to a builder who asked for the C accelerator.
    for value in ("true", "1\n", ""):
        proc = _run([UV, "build", "--wheel", "--offline", "--python", "python3.11", "-o", tmp_path, ROOT],
                    env={**_uv_env(), "TELEMETRY_SHUNT_REQUIRE_SPEEDUPS": value})  # (not --quiet: the hook's words)
        assert proc.returncode != 0 and f"TELEMETRY_SHUNT_REQUIRE_SPEEDUPS={value!r}: set it to 1" in proc.stderr, (
            value, proc.stderr[-2000:])
        assert not list(tmp_path.glob("*.whl"))


@pytest.fixture(scope="module")
def venvs(wheel, tmp_path_factory) -> dict[str, Venv]:
    root = tmp_path_factory.mktemp("wheel-venvs")
    start = time.monotonic()
    names = (BASE, *EXTRAS)
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        built = dict(zip(names, pool.map(lambda extra: _install(extra, wheel, root), names), strict=True))
    # For the record (not asserted): what the parallel installs cost on this machine.
    print(f"\n{len(names)} venvs from the uv cache in {time.monotonic() - start:.1f} s", file=sys.stderr)
    return built


def venv_for(venvs: dict[str, Venv], extra: str) -> Venv:
    venv = venvs[extra]
    assert venv.error is None, f"[{extra}] does not install offline from the lock:\n{venv.error}"
    return venv


def test_the_wheel_carries_the_package_and_the_command(wheel):
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "telemetry_shunt").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert sources <= set(names), f"missing from the wheel: {sorted(sources - set(names))}"
    assert not [n for n in names if n.startswith(("tests/", "tools/", "bench/"))]
    assert "shunt = telemetry_shunt.cli:main" in entry_points
    # The client's C accelerator, compiled for this Python: so the wheel is tagged for it, not py3-none-any.
    (speedups,) = [n for n in names if n.startswith("telemetry_shunt/client/_speedups.") and n.endswith(".so")]
    assert "Root-Is-Purelib: false" in zf_text(wheel, ".dist-info/WHEEL") and "-cp311-cp311-" in wheel.name
    assert "telemetry_shunt/client/_speedups.c" in names  # its source too (the sdist builds from it)
    declared = {line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Provides-Extra:")}
    assert {*EXTRAS, "all"} <= declared
    # The build flattens self-references (all = telemetry-shunt[...]) into each extra's own requirements.
    requires: dict[str, set[str]] = {extra: set() for extra in declared}
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist:") and "; extra == " in line:
            requirement, marker = line.split(":", 1)[1].split("; extra == ")
            requires[marker.strip().strip("'\"")].add(requirement.strip())
    # `all` means all; the sandbox drives the rollout engine, so it brings the rollout extra.
    assert [extra for extra in declared if not requires[extra] <= requires["all"]] == []
    assert requires["rollout"] <= requires["sandbox"]


def zf_text(wheel: Path, suffix: str) -> str:
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        return zf.read(next(n for n in zf.namelist() if n.endswith(suffix))).decode()


def test_the_base_install_checks_policies_and_names_the_extras_it_lacks(venvs, tmp_path):
    venv = venv_for(venvs, BASE)
    proc = venv.run("shunt", "policy", "check", "--template", SNAPSHOT, "--principal", AGENT, "--method", "GET",
                    "--path", "/metrics", "--output", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["decision"] == "DENY"
    proc = venv.run("shunt", "rollout", "plan", "--fleet", "demo", cwd=tmp_path)
    assert (proc.returncode, proc.stderr.strip().splitlines()[-1]) == (
        1, "shunt: this command needs the 'boto3' package: pip install 'telemetry-shunt[rollout]'")


def test_client_sends_a_batch_without_cdk_or_boto3(venvs, tmp_path):
    venv = venv_for(venvs, "client")
    gateway = FakeGateway()
    try:
        proc = venv.python_code(f"""
            import importlib.util, json, sys
            from botocore.credentials import Credentials
            from telemetry_shunt.client import TelemetryClient

            from telemetry_shunt.client._aggregate import ACCELERATED

            absent = [m for m in ("aws_cdk", "boto3", "constructs", "moto", "z3") if importlib.util.find_spec(m)]
            client = TelemetryClient(sys.argv[1], region={REGION!r}, kill_switch=None,
                                     credentials=Credentials({ACCESS_KEY!r}, {SECRET_KEY!r}, {SESSION_TOKEN!r}),
                                     flush_interval_seconds=0.05, request_timeout_seconds=10.0)
            client.emit("wheel.smoke", 1.5, extra="client")
            client.close(timeout=20.0)
            print(json.dumps({{"importable": absent, "sent": client.stats().sent, "accelerated": ACCELERATED}}))
        """, gateway.url, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result == {"importable": [], "sent": 1, "accelerated": True}  # the wheel's compiled loop
        (request,) = gateway.wait_for_requests(1)
        assert request["problem"] is None  # SigV4 verified by the fake, independently of botocore
        (record,) = gateway.records
        assert record["name"] == "wheel.smoke" and record["value"] == 1.5
    finally:
        gateway.close()
    # The client extra does not bring the proof: the message names the extra that does.
    proc = venv.run("shunt", "policy", "prove", SNAPSHOT, cwd=tmp_path)
    assert (proc.returncode, proc.stderr.strip().splitlines()[-1]) == (
        1, "shunt: this command needs the 'z3' package: pip install 'telemetry-shunt[verify]'")


def test_cdk_synthesizes_a_one_construct_app(venvs, tmp_path):
    venv = venv_for(venvs, "cdk")
    out = tmp_path / "cdk.out"
    proc = venv.python_code("""
        import sys
        import aws_cdk as cdk
        from telemetry_shunt.constructs import TelemetryServiceNetwork

        app = cdk.App(outdir=sys.argv[1])
        stack = cdk.Stack(app, "OneConstruct")
        TelemetryServiceNetwork(stack, "Network", pushers=["222222222222"])
        app.synth()
    """, str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    template = json.loads((out / "OneConstruct.template.json").read_text())
    types = {r["Type"] for r in template["Resources"].values()}
    assert {"AWS::VpcLattice::ServiceNetwork", "AWS::VpcLattice::AuthPolicy"} <= types


def test_rollout_runs_its_commands_and_names_the_sandbox_extra(venvs, tmp_path):
    venv = venv_for(venvs, "rollout")
    proc = venv.run("shunt", "rollout", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "start" in proc.stdout, proc.stderr
    proc = venv.run("shunt", "policy", "check", "--template", SNAPSHOT, "--principal", AGENT, "--method", "POST",
                    "--path", "/metrics", "--output", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["decision"] == "ALLOW"
    proc = venv.run("shunt", "sandbox", "start", "--state-dir", tmp_path / "box", cwd=tmp_path)
    assert (proc.returncode, proc.stderr.strip().splitlines()[-1]) == (
        1, "shunt: this command needs the 'moto' package: pip install 'telemetry-shunt[sandbox]'")


def test_sandbox_starts_and_stops(venvs, tmp_path):
    venv = venv_for(venvs, "sandbox")
    state = tmp_path / "box"
    base = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    proc = subprocess.Popen([str(venv.path / "bin" / "shunt"), "sandbox", "start", "--state-dir", str(state),
                             "--instances-per-az", "1", "--output", "json"],
                            cwd=tmp_path, env=base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + COMMAND_TIMEOUT  # hang guard
        while not (state / "sandbox.json").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, f"sandbox exited early: {proc.communicate()[1]}"
        env = venv.run("shunt", "sandbox", "env", "--state-dir", state, "--output", "json", cwd=tmp_path)
        assert env.returncode == 0, env.stderr
        endpoint = json.loads(env.stdout)["AWS_ENDPOINT_URL"]
        assert endpoint.startswith("http://127.0.0.1:")
        # The venv's moto serves the demo fleet its boto3 seeded (one host per zone); asked from here, not
        # with another `shunt` process, to keep the test cheap on a loaded machine.
        ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                           aws_secret_access_key="testing")
        fleet = [i for r in ec2.describe_instances(Filters=[{"Name": f"tag:{FLEET_TAG_KEY}", "Values": ["demo"]}])
                 ["Reservations"] for i in r["Instances"]]
        assert len(fleet) == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, stderr
    assert "sandbox stopped" in stderr and not (state / "sandbox.json").exists()


def test_verify_proves_the_default_apps_template(venvs, tmp_path):
    venv = venv_for(venvs, "verify")
    proc = venv.run("shunt", "policy", "prove", SNAPSHOT, "--output", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["proven"] and [r["result"] for r in report["invariants"]] == ["PROVEN"] * 5
    # A counterexample exits 4 from the installed command too.
    proc = venv.run("shunt", "policy", "prove", SNAPSHOT, "--pusher", "333333333333", cwd=tmp_path)
    assert proc.returncode == 4 and "VIOLATED" in proc.stdout, proc.stderr

