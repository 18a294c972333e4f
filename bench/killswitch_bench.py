"""Kill-switch flip-to-action latency of the host watcher (issue 15).

The real rendered watcher (loop mode, short test poll) runs against the fake AppConfig agent, fake IMDS and
stub systemctl of ``tests/hostside/watcher_fakes.py``. Each flip happens at a random point of the poll cycle;
the latency is from the flip to the unit's state change (stop for a kill, start for a release). Figures are
printed as multiples of the poll interval (the bound the design promises: at most one poll, plus the
bounded call time), next to the baseline measured in the same run: one ``--once`` check's own duration.

    .venv/bin/python bench/killswitch_bench.py [--flips 24] [--poll-seconds 1.0]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.hostside.watcher_fakes import WatcherHost, wait_until  # noqa: E402

ON = {"telemetry": {"enabled": True}}
OFF = {"telemetry": {"enabled": True}, "telemetry-us-east-1a": {"enabled": False}}


def once_seconds(host: WatcherHost, runs: int = 5) -> float:
    """Baseline: the median duration of one complete check (read, decide, converge) on this machine now."""
    times = []
    for _ in range(runs):
        start = time.monotonic()
        subprocess.run(["bash", str(host.script), "--once"], env=host.env(), capture_output=True, check=True)
        times.append(time.monotonic() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flips", type=int, default=24, help="flips in all, alternating kill/release (>= 20)")
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="the watcher's (test) poll interval")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    if args.flips < 20:
        parser.error("--flips must be at least 20")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        base = WatcherHost(Path(tmp) / "baseline", poll_seconds=args.poll_seconds)
        try:
            baseline = once_seconds(base)
        finally:
            base.close()
        host = WatcherHost(Path(tmp) / "watcher", poll_seconds=args.poll_seconds)
        latencies: dict[str, list[float]] = {"kill (stop)": [], "release (start)": []}
        try:
            host.start()
            wait_until(lambda: host.state() == "active", "agent started")
            for n in range(args.flips):
                kill = n % 2 == 0
                time.sleep(rng.uniform(0, args.poll_seconds))  # a random point of the poll cycle
                host.agent.flags = OFF if kill else ON
                flipped = time.monotonic()
                target = "inactive" if kill else "active"
                wait_until(lambda t=target: host.state() == t, f"flip {n} applied")
                latencies["kill (stop)" if kill else "release (start)"].append(time.monotonic() - flipped)
        finally:
            host.close()
    poll = args.poll_seconds
    print(f"kill-switch watcher: flip-to-action latency, {args.flips} flips at random points of a {poll:g} s poll")
    print(f"baseline (same run): one --once check takes {baseline:.3f} s = {baseline / poll:.2f} x poll")
    print(f"{'flip':<16} {'n':>3} {'min':>8} {'median':>8} {'max':>8}   (x poll interval)")
    every = [x for values in latencies.values() for x in values]
    for name, values in [*latencies.items(), ("all", every)]:
        print(f"{name:<16} {len(values):>3} {min(values) / poll:>8.2f} {statistics.median(values) / poll:>8.2f} "
              f"{max(values) / poll:>8.2f}")
    print(f"max / (poll + one check) = {max(every) / (poll + baseline):.2f}  (<= 1 means within one poll)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
