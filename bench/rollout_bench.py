"""Rollout engine figures: planning time, AWS calls per wave, controller overhead beyond bake time.

    .venv/bin/python bench/rollout_bench.py [--hosts-per-az 100] [--plan-hosts 10000]

* Planning: ``plan_rollout`` over 10,000 instances in 4 zones (pure Python, median of 7 runs).
* A simulated rollout against moto in process (EC2, SSM, CloudWatch, DynamoDB state), a simulated
  clock (bake 600 s, poll 30 s, heartbeat 60 s) and the sandbox's simulated agents:
  - AWS calls per wave, by operation, counted on every client (state and lease calls included);
    the kill switch is the sandbox's local file here; with AppConfig it adds one
    ``GetLatestConfiguration`` per check (the session is reused).
  - Controller overhead beyond bake time: bakes and waits are simulated (free), so the wall-clock
    time of the run is overhead; it is split into the engine's own work and time inside AWS calls
    (moto here); the simulated agents' publishing is excluded. Real AWS adds its latency per call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "us-east-1", "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"}.items():
    os.environ[key] = value

from telemetry_shunt.core.rollout_plan import Host, plan_rollout  # noqa: E402


def bench_planning(n_hosts: int) -> dict[str, float]:
    azs = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]
    hosts = [Host(f"i-{i:017x}", azs[i % len(azs)]) for i in range(n_hosts)]
    times = []
    for _ in range(7):
        start = time.perf_counter()
        plan = plan_rollout(hosts)
        times.append(time.perf_counter() - start)
    return {"hosts": n_hosts, "commands": len(plan.batches), "median_ms": statistics.median(times) * 1000,
            "max_ms": max(times) * 1000}


def bench_rollout(hosts_per_az: int) -> dict:
    from moto import mock_aws

    from telemetry_shunt.agent_rollout.aws import AwsClients, make_session
    from telemetry_shunt.agent_rollout.clock import SimulatedClock
    from telemetry_shunt.agent_rollout.engine import RolloutEngine, RolloutSettings
    from telemetry_shunt.agent_rollout.killswitch import FileKillSwitch
    from telemetry_shunt.agent_rollout.sandbox import HeartbeatSimulator, install_moto_extensions, seed
    from telemetry_shunt.agent_rollout.state import AuditLog, DynamoStateStore

    install_moto_extensions()
    settings = RolloutSettings(bake_seconds=600, poll_seconds=30, heartbeat_period_seconds=60)
    with mock_aws(), tempfile.TemporaryDirectory() as tmp:
        session = make_session(region="us-east-1", profile=None)
        hosts = seed(session, endpoint_url=None, instances_per_az=hosts_per_az)
        clock = SimulatedClock(start=time.time())
        sim = HeartbeatSimulator(session, endpoint_url=None, hosts=hosts, now=clock.now)
        agent_time = [0.0]

        def beat(_now: float) -> None:
            t = time.perf_counter()
            sim.step()
            agent_time[0] += time.perf_counter() - t

        sim.step()  # the agents have been heartbeating at 1.0.0 (preflight reads it as the rollback version)
        clock.on_sleep.append(beat)
        calls: Counter[str] = Counter()
        clients = {name: session.client(name) for name in ("ec2", "ssm", "cloudwatch", "dynamodb")}
        in_aws = [0.0, 0.0]  # [accumulated seconds, start of the current call]

        def before(model, _n, **_):
            calls.update([f"{_n}:{model.name}"])
            in_aws[1] = time.perf_counter()

        def after(**_):
            in_aws[0] += time.perf_counter() - in_aws[1]

        for name, client in clients.items():
            client.meta.events.register("before-call", lambda model, _n=name, **kw: before(model, _n, **kw))
            client.meta.events.register("after-call", after)
        kill = Path(tmp) / "kill.json"
        kill.write_text('{"telemetry": {"enabled": true}}')
        engine = RolloutEngine(
            clients=AwsClients(ec2=clients["ec2"], ssm=clients["ssm"], cloudwatch=clients["cloudwatch"]),
            store=DynamoStateStore(clients["dynamodb"]), audit=AuditLog(Path(tmp) / "audit.jsonl"),
            kill_switch=FileKillSwitch(kill), clock=clock, owner="bench",
        )
        plan = plan_rollout(engine.discover("demo"))
        calls.clear()
        in_aws[0] = 0.0
        start_sim = clock.now()
        start = time.perf_counter()
        state = engine.start(fleet="demo", version="1.1.0", plan=plan, settings=settings, rollout_id="r-bench")
        wall = time.perf_counter() - start
        waves = len(state.meta["waves"])
        return {
            "status": state.status, "hosts": plan.host_count, "zones": len(plan.zones), "waves": waves,
            "commands": len(plan.batches), "simulated_seconds": clock.now() - start_sim,
            "bake_seconds_total": waves * settings.bake_seconds, "wall_seconds": wall,
            "agent_seconds": agent_time[0], "aws_seconds": in_aws[0], "calls": calls, "transitions": state.meta["seq"],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan-hosts", type=int, default=10_000)
    parser.add_argument("--hosts-per-az", type=int, default=100)
    args = parser.parse_args()

    p = bench_planning(args.plan_hosts)
    print(f"planning: {p['hosts']} instances -> {p['commands']} commands: median {p['median_ms']:.1f} ms "
          f"(max {p['max_ms']:.1f} ms over 7 runs)")

    r = bench_rollout(args.hosts_per_az)
    total = sum(r["calls"].values())
    print(f"simulated rollout: {r['hosts']} hosts, {r['zones']} zones, {r['waves']} waves, {r['commands']} commands, "
          f"{r['transitions']} persisted transitions, status {r['status']}")
    print(f"  simulated time {r['simulated_seconds']:.0f} s for {r['bake_seconds_total']:.0f} s of bake "
          f"(+{r['simulated_seconds'] - r['bake_seconds_total']:.0f} s simulated command polling)")
    print(f"  AWS calls (preflight included): {total} total, {total / r['waves']:.1f} per wave; by operation:")
    for op, n in sorted(r["calls"].items(), key=lambda kv: -kv[1]):
        print(f"    {op:42s} {n:5d}  ({n / r['waves']:.1f}/wave)")
    own = r["wall_seconds"] - r["agent_seconds"] - r["aws_seconds"]
    print(f"  controller overhead beyond bake time: {own:.3f} s of engine work ({own / r['waves'] * 1000:.0f} ms per "
          f"wave) + {r['aws_seconds']:.2f} s waiting on AWS calls (moto in process, "
          f"{r['aws_seconds'] / total * 1000:.1f} ms per call); simulated agents' {r['agent_seconds']:.2f} s excluded")
    print(f"  against real AWS at ~30 ms per call: ~{own + total * 0.03:.0f} s over {r['bake_seconds_total']:.0f} s "
          f"of bake ({(own + total * 0.03) / r['bake_seconds_total'] * 100:.2f} %)")


if __name__ == "__main__":
    main()
