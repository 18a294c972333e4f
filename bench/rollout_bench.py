"""Rollout engine figures: planning time, AWS calls per wave, controller overhead beyond bake time,
a 10,000-host fleet, and preflight on a long metric history.

    .venv/bin/python bench/rollout_bench.py [--hosts-per-az 100] [--plan-hosts 10000] [--fleet-hosts 10000]

* Planning: ``plan_rollout`` over 10,000 instances in 4 zones (pure Python, median of 7 runs).
* A simulated rollout against moto in process (EC2, SSM, CloudWatch, DynamoDB state), a simulated
  clock (bake 600 s, poll 30 s, heartbeat 60 s) and the sandbox's simulated agents:
  - AWS calls per wave, by operation, counted on every client (state and lease calls included);
    the kill switch is the sandbox's local file here; with AppConfig it adds one
    ``GetLatestConfiguration`` per check (the session is reused).
  - Controller overhead beyond bake time: bakes and waits are simulated (free), so the wall-clock
    time of the run is overhead; it is split into the engine's own work and time inside AWS calls
    (moto here); the simulated agents' publishing is excluded. Real AWS adds its latency per call.
* A 10,000-host simulated rollout in 4 zones with the test suite's fake fleet (tests/agent_rollout/
  rollout_fakes.py) and the DynamoDB state store on moto: AWS calls by operation, controller CPU time
  (process CPU of the run; the fakes and moto run in the process and count) and controller memory
  (traced allocations outside moto, sampled during a second rollout of the same fleet), each as a ratio
  against a 1,000-host baseline run in the same script run (linear scaling would be 10x).
* Preflight on a fleet with a long metric history (ListMetrics lists each (instance, version) pair once
  per stream it saw: 60 times here), with today's deduplicated pairs against the pre-dedupe behaviour
  (every listed pair queried), in the same run, as a ratio.
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
    from telemetry_shunt.agent_rollout.killswitch import FileKillSwitchFlags
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
            kill_switch=FileKillSwitchFlags(kill), clock=clock, owner="bench",
        )
        plan = plan_rollout(engine.discover("demo"))
        calls.clear()
        in_aws[0] = 0.0
        start_sim = clock.now()
        start = time.perf_counter()
        state = engine.start(fleet="demo", version="1.1.0", plan=plan, settings=settings, rollout_id="r-bench")
        wall = time.perf_counter() - start
        waves = len(state.waves)
        return {
            "status": state.status, "hosts": plan.host_count, "zones": len(plan.zones), "waves": waves,
            "commands": len(plan.batches), "simulated_seconds": clock.now() - start_sim,
            "bake_seconds_total": waves * settings.bake_seconds, "wall_seconds": wall,
            "agent_seconds": agent_time[0], "aws_seconds": in_aws[0], "calls": calls, "transitions": state.meta["seq"],
        }


def _fake_rig(hosts: int, *, metric_repeats: int = 1):
    """The test suite's fake fleet (4 zones), a simulated clock and a kill-switch file."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "agent_rollout"))
    from rollout_fakes import FakeFleet, FakeKillSwitchFlags

    from telemetry_shunt.agent_rollout.clock import SimulatedClock

    clock = SimulatedClock()
    azs = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]
    fleet = FakeFleet({az: hosts // len(azs) for az in azs}, clock)
    fleet.metric_repeats = metric_repeats
    return clock, fleet, FakeKillSwitchFlags(clock)


def _preflight_ok(engine, plan):
    """A passing preflight for a second rollout on the same fleet (the memory run)."""
    from telemetry_shunt.agent_rollout.engine import Preflight

    check = Preflight(previous_versions={i: "1.1.0" for b in plan.batches for i in b.instance_ids})
    check.add("bench", True, "second run")
    return check


def bench_fleet_rollout(hosts: int) -> dict:
    """One rollout of ``hosts`` fake hosts; state in DynamoDB (moto in process)."""
    import tracemalloc

    from moto import mock_aws

    from telemetry_shunt.agent_rollout.aws import AwsCaller, make_session
    from telemetry_shunt.agent_rollout.engine import RolloutEngine, RolloutSettings
    from telemetry_shunt.agent_rollout.state import AuditLog, DynamoStateStore, create_state_table

    clock, fleet, kill = _fake_rig(hosts)
    settings = RolloutSettings(bake_seconds=600, poll_seconds=30, lease_seconds=300, command_timeout_seconds=900)
    with mock_aws(), tempfile.TemporaryDirectory() as tmp:
        dynamodb = make_session(region="us-east-1", profile=None).client("dynamodb")
        create_state_table(dynamodb)
        state_calls: Counter[str] = Counter()
        dynamodb.meta.events.register("before-call", lambda model, **_: state_calls.update([model.name]))
        caller = AwsCaller(clock)
        engine = RolloutEngine(clients=fleet.clients(), store=DynamoStateStore(dynamodb),
                               audit=AuditLog(Path(tmp) / "audit.jsonl"), kill_switch=kill, clock=clock,
                               owner="bench", caller=caller)
        plan = plan_rollout(engine.discover("web"))
        caller.calls.clear()
        # memory: traced allocations outside moto (its table storage is not the controller's), sampled
        # every 100 transitions; CPU is measured in a run without tracing
        samples: list[int] = []
        transition = engine._transition

        def sampled(state, event, **details):
            transition(state, event, **details)
            if tracemalloc.is_tracing() and state.meta["seq"] % 100 == 0:
                snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, "*/moto/*")])
                samples.append(sum(t.size for t in snap.traces))

        cpu = time.process_time()
        state = engine.start(fleet="web", version="1.1.0", plan=plan, settings=settings, rollout_id="r-fleet")
        cpu = time.process_time() - cpu
        calls = Counter({f"fleet:{op}": n for op, n in caller.calls.items()})
        calls.update({f"state:{op}": n for op, n in state_calls.items()})
        engine._transition = sampled
        tracemalloc.start()
        memory_state = engine.start(fleet="web", version="1.0.0", plan=plan, settings=settings,
                                    rollout_id="r-fleet-mem", preflight=_preflight_ok(engine, plan))
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, "*/moto/*")])
        samples.append(sum(t.size for t in snap.traces))  # the finished state is still referenced here
        del memory_state
        tracemalloc.stop()
        peak = max(samples)
    return {"status": state.status, "hosts": plan.host_count, "commands": len(plan.batches),
            "waves": len(state.waves), "calls": calls, "cpu_seconds": cpu, "peak_bytes": peak,
            "transitions": state.meta["seq"]}


def bench_preflight_history(hosts: int, repeats: int) -> dict:
    """Preflight on a fleet whose ListMetrics lists every pair ``repeats`` times: deduplicated vs not."""
    from telemetry_shunt.agent_rollout.adapters import Heartbeats
    from telemetry_shunt.agent_rollout.engine import RolloutEngine, RolloutSettings
    from telemetry_shunt.agent_rollout.state import AuditLog, LocalStateStore

    class WithoutDedupe(Heartbeats):
        """The pre-dedupe behaviour: every listed (instance, version) pair is queried."""

        def current_versions(self, instance_ids, period_seconds):
            wanted, pairs = set(instance_ids), []
            kwargs = {"Namespace": "TelemetryShunt/Agent", "MetricName": "Heartbeat",
                      "Dimensions": [{"Name": "InstanceId"}], "RecentlyActive": "PT3H"}
            while True:
                page = self.aws(self.clients.cloudwatch, "list_metrics", **kwargs)
                for metric in page.get("Metrics", []):
                    dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
                    if dims["InstanceId"] in wanted:
                        pairs.append((dims["InstanceId"], dims["AgentVersion"]))
                if not page.get("NextToken"):
                    break
                kwargs["NextToken"] = page["NextToken"]
            now = self.clock.now()
            latest = self.latest_beats(pairs, now - max(5 * period_seconds, 60.0), now, period_seconds)
            out = {i: set() for i in instance_ids}
            for (iid, version) in latest:
                out[iid].add(version)
            return out

    out = {}
    for label, heartbeats in (("without dedupe", WithoutDedupe), ("deduplicated", Heartbeats)):
        clock, fleet, kill = _fake_rig(hosts, metric_repeats=repeats)
        with tempfile.TemporaryDirectory() as tmp:
            engine = RolloutEngine(clients=fleet.clients(), store=LocalStateStore(tmp),
                                   audit=AuditLog(Path(tmp) / "audit.jsonl"), kill_switch=kill, clock=clock)
            engine.heartbeats = heartbeats(engine.clients, engine.aws, clock)
            plan = plan_rollout(engine.discover("web"))
            start = time.perf_counter()
            check = engine.preflight(plan, "1.1.0", RolloutSettings())
            seconds = time.perf_counter() - start
        assert check.ok, check.rows()
        out[label] = {"seconds": seconds, "queries": fleet.metric_queries,
                      "get_metric_data": fleet.calls["get_metric_data"], "list_metrics": fleet.calls["list_metrics"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan-hosts", type=int, default=10_000)
    parser.add_argument("--hosts-per-az", type=int, default=100)
    parser.add_argument("--fleet-hosts", type=int, default=10_000)
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

    base = bench_fleet_rollout(args.fleet_hosts // 10)
    big = bench_fleet_rollout(args.fleet_hosts)
    scale = big["hosts"] / base["hosts"]
    print(f"fleet rollout (fake fleet, 4 zones, state in DynamoDB on moto): {big['hosts']} hosts, {big['commands']} "
          f"commands, {big['waves']} waves, {big['transitions']} transitions, status {big['status']}; baseline "
          f"{base['hosts']} hosts in the same run (host ratio {scale:.0f}x)")
    b_total, g_total = sum(base["calls"].values()), sum(big["calls"].values())
    print(f"  AWS calls: {g_total} ({g_total / b_total:.2f}x the baseline's {b_total}); by operation "
          f"(ratio to baseline):")
    for op, n in sorted(big["calls"].items(), key=lambda kv: -kv[1]):
        print(f"    {op:42s} {n:6d}  ({n / max(1, base['calls'][op]):.2f}x)")
    print(f"  controller CPU: {big['cpu_seconds']:.2f} s = {big['cpu_seconds'] / base['cpu_seconds']:.2f}x the "
          f"baseline's {base['cpu_seconds']:.2f} s (fakes and moto run in the same process and count)")
    print(f"  controller memory (traced Python allocations outside moto, max of samples every 100 transitions): "
          f"{big['peak_bytes'] / 2**20:.1f} MiB = {big['peak_bytes'] / base['peak_bytes']:.2f}x the baseline's "
          f"{base['peak_bytes'] / 2**20:.1f} MiB")

    hosts, repeats = 1_000, 60
    pf = bench_preflight_history(hosts, repeats)
    before, after = pf["without dedupe"], pf["deduplicated"]
    print(f"preflight, {hosts} hosts, ListMetrics listing each heartbeat pair {repeats} times: deduplicated "
          f"{after['seconds'] * 1000:.0f} ms vs {before['seconds'] * 1000:.0f} ms without dedupe "
          f"({before['seconds'] / after['seconds']:.1f}x faster); GetMetricData queries {after['queries']} vs "
          f"{before['queries']} ({before['queries'] / after['queries']:.0f}x fewer), calls "
          f"{after['get_metric_data']} vs {before['get_metric_data']}")


if __name__ == "__main__":
    main()
