"""``shunt rollout ...`` in process (CliRunner) against moto, with a simulated clock."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from moto import mock_aws

from telemetry_shunt.agent_rollout.aws import make_session
from telemetry_shunt.agent_rollout.clock import SimulatedClock
from telemetry_shunt.agent_rollout.sandbox import HeartbeatSimulator, install_moto_extensions, seed
from telemetry_shunt.agent_rollout.state import DynamoStateStore
from telemetry_shunt.cli import cli
from telemetry_shunt.cli import rollout as rollout_cli

FAST = ["--bake-seconds", "60", "--poll-seconds", "20"]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHUNT_STATE_DIR", raising=False)
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")  # seconds per test otherwise
    install_moto_extensions()
    with mock_aws():
        session = make_session(region="us-east-1", profile=None)
        hosts = seed(session, endpoint_url=None, instances_per_az=2)
        clock = SimulatedClock(start=time.time())
        sim = HeartbeatSimulator(session, endpoint_url=None, hosts=hosts, now=clock.now)
        sim.step()  # the agents have been heartbeating at 1.0.0
        clock.on_sleep.append(lambda _now: sim.step())
        monkeypatch.setattr(rollout_cli, "CLOCK_FACTORY", lambda: clock)
        kill_file = tmp_path / "kill.json"
        kill_file.write_text('{"telemetry": {"enabled": true}}')
        monkeypatch.setenv("SHUNT_KILL_SWITCH_FILE", str(kill_file))
        yield {"session": session, "hosts": hosts, "sim": sim, "clock": clock, "kill_file": kill_file}


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_plan_json_lists_every_host_once_in_zone_order(env):
    result = run("rollout", "plan", "--fleet", "demo", "--output", "json")
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert [z["az"] for z in plan["zones"]] == ["us-east-1a", "us-east-1b", "us-east-1c"]
    ids = [i for z in plan["zones"] for b in z["batches"] for i in b["instance_ids"]]
    assert sorted(ids) == sorted(h["instance_id"] for h in env["hosts"])
    assert "6 hosts, 3 zones, 6 commands" in result.stderr


def test_plan_with_az_order_table(env):
    result = run("rollout", "plan", "--fleet", "demo", "--az", "us-east-1c", "--az", "us-east-1a")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["ORDER", "AZ", "WAVE"]
    assert [line.split()[1] for line in lines[1:]] == ["us-east-1c"] * 2 + ["us-east-1a"] * 2


def test_start_status_and_audit(env):
    result = run("rollout", "start", "--fleet", "demo", "--version", "1.1.0", "--rollout-id", "r-cli", "--yes",
                 "--output", "json", *FAST)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed"
    assert [z["upgraded"] for z in summary["zones"]] == [2, 2, 2]
    assert "rollout r-cli: completed" in result.stderr
    status = run("rollout", "status", "r-cli", "--output", "json")
    assert json.loads(status.stdout)["controller"] == "none"
    listing = run("rollout", "status")
    assert "r-cli" in listing.stdout and "completed" in listing.stdout
    hosts = json.loads(run("rollout", "status", "r-cli", "--hosts", "--output", "json").stdout)
    assert {h["result"] for h in hosts} == {"upgraded"} and len(hosts) == 6
    events = [json.loads(line)["event"] for line in open(".shunt/audit.jsonl")]
    assert events[0] == "created" and events[-1] == "completed"


def test_broken_version_exits_2_after_rolling_back(env):
    result = run("rollout", "start", "--fleet", "demo", "--version", "1.2.0-broken", "--rollout-id", "r-bad",
                 "--yes", *FAST)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("shunt: rollout r-bad rolled_back: us-east-1a: no heartbeat")
    assert "rolled_back" in result.stdout


def test_dry_run_changes_nothing(env):
    result = run("rollout", "start", "--fleet", "demo", "--version", "1.1.0", "--dry-run", "--output", "json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["dry_run"] and all(c["ok"] for c in out["preflight"])
    assert env["session"].client("ssm").list_commands()["Commands"] == []
    assert DynamoStateStore(env["session"].client("dynamodb")).list_rollouts() == []


def test_start_without_yes_refuses(env):
    result = run("rollout", "start", "--fleet", "demo", "--version", "1.1.0", *FAST)
    assert result.exit_code == 1
    assert "pass --yes" in result.stderr
    assert env["session"].client("ssm").list_commands()["Commands"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rollout", "plan", "--fleet", "demo", "--az", "us-east-1z"], "unknown AZ us-east-1z"),
        (["rollout", "plan", "--fleet", "nobody"], "fleet 'nobody' is empty"),
        (["rollout", "plan", "--fleet", "demo", "--batch-size", "0"], "batch size must be between 1 and 50, got 0"),
        (["rollout", "start", "--fleet", "demo", "--version", "4.0.4", "--yes", *FAST],
         "version '4.0.4' of package TelemetryShunt-Agent-Package does not exist"),
        (["rollout", "start", "--fleet", "demo", "--version", "1.1.0", "--bake-seconds", "30", "--yes"],
         "bake of 30s is shorter than the heartbeat period (60s)"),
        (["rollout", "status", "r-nope"], "no rollout 'r-nope'"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(env, args, message):
    result = run(*args)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("shunt: ") and message in lines[-1]
    assert "Traceback" not in result.stderr
    assert env["session"].client("ssm").list_commands()["Commands"] == []


def test_second_operator_gets_exit_3(env):
    store = DynamoStateStore(env["session"].client("dynamodb"))
    store.acquire_lease("demo", "alice@bastion:42:abc", now=env["clock"].now(), ttl=300, rollout_id="r-alice")
    result = run("rollout", "start", "--fleet", "demo", "--version", "1.1.0", "--yes", *FAST)
    assert result.exit_code == 3
    assert "locked by alice@bastion:42:abc (rollout r-alice) until" in result.stderr
    assert env["session"].client("ssm").list_commands()["Commands"] == []


def test_kill_switch_engaged_mid_rollout_exits_2_then_resume(env):
    clock = env["clock"]
    start = clock.now()

    def flip(now):
        if now - start > 150 and json.loads(env["kill_file"].read_text())["telemetry"]["enabled"]:
            env["kill_file"].write_text('{"telemetry": {"enabled": false}}')

    clock.on_sleep.append(flip)
    result = run("rollout", "start", "--fleet", "demo", "--version", "1.1.0", "--rollout-id", "r-k", "--yes", *FAST)
    assert result.exit_code == 2
    assert "aborted: kill switch ENGAGED" in result.stderr
    clock.on_sleep.remove(flip)
    refused = run("rollout", "resume", "r-k", "--yes")
    assert refused.exit_code == 1 and "still ENGAGED" in refused.stderr
    env["kill_file"].write_text('{"telemetry": {"enabled": true}}')
    resumed = run("rollout", "resume", "r-k", "--yes", "--output", "json")
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "completed"
    assert set(env["sim"].version.values()) == {"1.1.0"}


def test_interrupt_leaves_a_resumable_state_and_exit_130(env):
    clock = env["clock"]

    def ctrl_c(_now):
        clock.on_sleep.remove(ctrl_c)
        raise KeyboardInterrupt

    clock.on_sleep.append(ctrl_c)
    result = run("rollout", "start", "--fleet", "demo", "--version", "1.1.0", "--rollout-id", "r-int", "--yes", *FAST)
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == (
        "shunt: interrupted; state is saved: run 'shunt rollout resume r-int' to continue")
    status = json.loads(run("rollout", "status", "r-int", "--output", "json").stdout)
    assert status["status"] == "running" and status["controller"] == "none (resume it to continue)"
    dry = run("rollout", "resume", "r-int", "--dry-run")
    assert dry.exit_code == 0 and "dry run: would bake us-east-1a/one-box again from the start" in dry.stderr
    abort_dry = run("rollout", "abort", "r-int", "--dry-run")
    assert "no controller runs" in abort_dry.stderr
    assert json.loads(run("rollout", "status", "r-int", "--output", "json").stdout)["status"] == "running"
    resumed = run("rollout", "resume", "r-int", "--yes")
    assert resumed.exit_code == 0, resumed.stderr
    commands = env["session"].client("ssm").list_commands()["Commands"]
    assert len(commands) == 6  # nothing sent twice


def test_abort_and_rollback_commands(env):
    assert run("rollout", "start", "--fleet", "demo", "--version", "1.1.0", "--rollout-id", "r-rb", "--yes",
               *FAST).exit_code == 0
    dry = run("rollout", "rollback", "r-rb", "--dry-run", "--output", "json")
    assert [r["az"] for r in json.loads(dry.stdout)] == ["us-east-1c", "us-east-1b", "us-east-1a"]
    assert run("rollout", "rollback", "r-rb").exit_code == 1  # needs --yes
    result = run("rollout", "rollback", "r-rb", "--yes", "--output", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "rolled_back"
    env["sim"].step()
    assert set(env["sim"].version.values()) == {"1.0.0"}
    # abort of a finished rollout is a no-op that reports its status
    aborted = run("rollout", "abort", "r-rb", "--yes", "--output", "json")
    assert aborted.exit_code == 0 and json.loads(aborted.stdout)["status"] == "rolled_back"
    assert "rollout r-rb is already rolled_back: nothing to abort" in aborted.stderr


def test_local_state_dir_instead_of_dynamodb(env, tmp_path):
    args = ["rollout", "start", "--fleet", "demo", "--version", "1.1.0", "--rollout-id", "r-local", "--yes",
            "--state-dir", str(tmp_path / "state"), *FAST]
    refused = run(*args)  # a typo'd directory must not silently become a second state (and lease)
    assert refused.exit_code == 1 and "--create-state-dir" in refused.stderr
    assert not (tmp_path / "state").exists()
    result = run(*args, "--create-state-dir")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "state" / "rollouts" / "r-local.json").exists()
    assert DynamoStateStore(env["session"].client("dynamodb")).list_rollouts() == []


def test_help_documents_exit_codes():
    result = run("rollout", "--help")
    for code in ("0 ", "1 ", "2 ", "3 ", "130"):
        assert code in result.stdout
    assert "Exit codes" in run("rollout", "start", "--help").stdout


def test_reusing_a_rollout_id_is_a_user_error(env):
    args = ["rollout", "start", "--fleet", "demo", "--version", "1.1.0", "--rollout-id", "r-twice", "--yes",
            "--az", "us-east-1a", *FAST]
    assert run(*args).exit_code == 0
    again = run(*args)
    assert again.exit_code == 1
    assert again.stderr.strip().splitlines()[-1] == (
        "shunt: rollout 'r-twice' already exists: pick another --rollout-id")
    events = [json.loads(line) for line in open(".shunt/audit.jsonl")]
    assert [e["event"] for e in events].count("created") == 1


def test_bad_numbers_fail_before_any_aws_call(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for var in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)  # no Region: any client creation would fail first
    result = run("rollout", "start", "--fleet", "demo", "--version", "1.1.0", "--batch-size", "0", "--yes")
    assert result.exit_code == 1
    assert result.stderr.strip() == "shunt: batch size must be between 1 and 50, got 0"
    bad_id = run("rollout", "start", "--fleet", "demo", "--version", "1.1.0", "--rollout-id", "no spaces", "--yes")
    assert bad_id.exit_code == 1 and "rollout id must be 1-48 letters" in bad_id.stderr


# --- every value from issue 8, refused at the boundary: exit 1, one line, no traceback, nothing sent ---------

START = ["rollout", "start", "--fleet", "demo", "--version", "1.1.0", "--yes", *FAST]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rollout", "plan", "--fleet", "*"], "fleet name '*' must be a literal tag value"),
        (["rollout", "plan", "--fleet", "dem?"], "no '*' or '?' wildcards"),
        (["rollout", "plan", "--fleet", ""], "fleet name '' must be a literal tag value"),
        (["rollout", "plan", "--fleet", "demo prod"], "fleet name 'demo prod'"),
        (["rollout", "start", "--fleet", "*", "--version", "1.1.0", "--yes", *FAST], "must be a literal tag value"),
        (["rollout", "start", "--fleet", "demo", "--version", "", "--yes", *FAST], "agent version must match"),
        (["rollout", "start", "--fleet", "demo", "--version", "1.1.0\n", "--yes"], "agent version must match"),
        (["rollout", "start", "--fleet", "demo", "--version", "1.1.0; reboot", "--yes"], "agent version must match"),
        ([*START, "--rollback-version", ""], "agent version must match"),
        ([*START, "--alarm", ""], "alarm name '' must be 1-255 characters"),
        ([*START, "--endpoint-url", "not-a-url"], "endpoint URL 'not-a-url' must be an http:// or https:// URL"),
        ([*START, "--endpoint-url", "ftp://127.0.0.1:5000"], "must be an http:// or https:// URL"),
        ([*START, "--region", "us-east-1; rm"], "'us-east-1; rm' is not an AWS Region name"),
        ([*START, "--region", "nowhere-1"], "'nowhere-1' is not an AWS Region name"),
        ([*START, "--state-dir", "FILE/x"], "state directory (--state-dir)"),
        ([*START, "--state-dir", "FILE"], "is not a directory"),
        ([*START, "--audit-log", "/etc/passwd/x"], "audit log (--audit-log) /etc/passwd/x cannot be created"),
        ([*START, "--audit-log", "/"], "audit log (--audit-log) / is not a regular file"),
        ([*START, "--kill-switch-file", "/nonexistent/kill.json"], "kill-switch file (--kill-switch-file)"),
        ([*START, "--lease-seconds", "inf"], "'inf' must be a finite number"),
        ([*START, "--lease-seconds", "nan"], "'nan' must be a finite number"),
        ([*START, "--bake-seconds", "-5"], "'-5' must be a finite number from 1"),
        ([*START, "--poll-seconds", "1e400"], "must be a finite number"),
        ([*START, "--command-timeout-seconds", "ten"], "'ten' is not a number"),
        ([*START, "--state-table", "x"], "table name 'x'"),
        ([*START, "--prefix", "9lives"], "prefix '9lives' must be"),
        ([*START, "--package", "a b"], "package 'a b' must be"),
        ([*START, "--az", "us-east-1; rm"], "us-east-1; rm"),
        ([*START, "--rollout-id", "../../outside/evil"], "rollout id must be 1-48 letters"),
        (["rollout", "status", "../../outside/evil"], "rollout id must be 1-48 letters"),
        (["rollout", "status", "../../outside/evil", "--state-dir", "."], "rollout id must be 1-48 letters"),
        (["rollout", "resume", "a/b", "--yes"], "rollout id must be 1-48 letters"),
        (["rollout", "status", "--state-dir", "typo-dir"], "state directory (--state-dir) typo-dir does not exist"),
        # click's own usage errors: exit 1 (2 means "halted" in this CLI), one line
        (["rollout", "start", "--version", "1.1.0"], "Missing option '--fleet'"),
        (["rollout", "plan", "--fleet", "demo", "--bogus"], "No such option '--bogus'"),
        (["rollout", "plan", "--fleet", "demo", "--batch-size", "many"], "'many' is not a valid integer"),
        (["rollout", "nosuchverb"], "No such command 'nosuchverb'"),
    ],
)
def test_each_bad_value_is_refused_at_the_boundary(env, tmp_path, args, message):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    args = [a.replace("FILE", str(a_file)) for a in args]
    result = run(*args)
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("shunt: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert env["session"].client("ssm").list_commands()["Commands"] == []
    assert DynamoStateStore(env["session"].client("dynamodb")).list_rollouts() == []


def test_a_held_lease_is_reported_before_discovery_and_preflight(env, monkeypatch):
    from telemetry_shunt.agent_rollout import engine as engine_module

    store = DynamoStateStore(env["session"].client("dynamodb"))
    store.acquire_lease("demo", "alice@bastion:42:abc", now=env["clock"].now(), ttl=300, rollout_id="r-alice")
    calls = []
    monkeypatch.setattr(engine_module.RolloutEngine, "preflight", lambda *a, **k: calls.append("preflight"))
    monkeypatch.setattr(engine_module.RolloutEngine, "discover", lambda *a, **k: calls.append("discover") or [])
    result = run(*START)
    assert result.exit_code == 3 and "locked by alice@bastion:42:abc" in result.stderr
    assert calls == []


def test_a_status_listing_of_a_missing_state_dir_is_an_error_not_none(env):
    result = run("rollout", "status", "--state-dir", "no-such-dir")
    assert result.exit_code == 1 and "(none)" not in result.stdout


def test_the_halted_table_keeps_the_rolled_back_column(env, tmp_path):
    # a state written by the pre-dataclass engine: zone a done (upgraded), b rolled back, c never reached
    fixture = Path(__file__).resolve().parent.parent / "agent_rollout" / "data" / "r-legacy-halted.json"
    (tmp_path / "st" / "rollouts").mkdir(parents=True)
    shutil.copy(fixture, tmp_path / "st" / "rollouts" / fixture.name)
    result = run("rollout", "status", "r-legacy-halted", "--state-dir", str(tmp_path / "st"))
    assert result.exit_code == 0, result.stderr
    table = result.stdout.split("\n\n", 1)[1].splitlines()
    header = table[0].split()
    assert {"UPGRADED", "ROLLED_BACK"} <= set(header)
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert len(rows["us-east-1a"]) == len(header) == len(rows["us-east-1b"])
    assert rows["us-east-1a"][header.index("UPGRADED")] == "3"
    assert rows["us-east-1b"][header.index("ROLLED_BACK")] == "51"
    assert rows["us-east-1a"][header.index("ROLLED_BACK")] == "-"
