"""The agent's bandwidth cap, measured: achieved rate to the Lattice ranges as a ratio of the cap, and of an
uncapped transfer over the same veth pair in the same run (the baseline).

Needs root and ``ip netns`` (two namespaces joined by a veth pair; addresses only inside them). Runs the
script ``core/host_budgets`` renders, exactly as hosts get it:
    .venv/bin/python bench/bandwidth_cap.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from telemetry_shunt.core import host_budgets as hb

SIZE = 4 * 1024 * 1024
CAPS_MBIT = (8, 20, 50)

SERVER = """
import socket, sys, threading
def serve(family, addr, port):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen(4)
    while True:
        c, _ = s.accept(); n = 0
        while True:
            b = c.recv(65536)
            if not b: break
            n += len(b)
        c.sendall(str(n).encode()); c.close()
for fam, addr, port in ((socket.AF_INET, "169.254.171.10", 9000), (socket.AF_INET6, "fd00:ec2:80::10", 9001),
                        (socket.AF_INET, "10.77.0.10", 9002)):
    threading.Thread(target=serve, args=(fam, addr, port), daemon=True).start()
print("ready", flush=True); sys.stdin.read()
"""

CLIENT = """
import socket, sys, time
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM); s.settimeout(120)
s.connect((host, port)); start = time.monotonic()
s.sendall(b"x" * size); s.shutdown(socket.SHUT_WR); assert int(s.recv(64)) == size
print(time.monotonic() - start)
"""


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300).stdout


def main() -> int:
    if os.geteuid() != 0:
        print("needs root (ip netns)", file=sys.stderr)
        return 1
    tag = uuid.uuid4().hex[:6]
    client, server, cdev, sdev = f"bc{tag}", f"bs{tag}", f"bc{tag}", f"bs{tag}"
    sh("ip", "netns", "add", client)
    sh("ip", "netns", "add", server)
    proc = None
    try:
        sh("ip", "link", "add", cdev, "type", "veth", "peer", "name", sdev)
        sh("ip", "link", "set", cdev, "netns", client)
        sh("ip", "link", "set", sdev, "netns", server)
        for ns, dev, last in ((client, cdev, "2"), (server, sdev, "10")):
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"169.254.171.{last}/24", "dev", dev)
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"10.77.0.{last}/24", "dev", dev)
            sh("ip", "netns", "exec", ns, "ip", "-6", "addr", "add", f"fd00:ec2:80::{last}/64", "dev", dev, "nodad")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up")
        proc = subprocess.Popen(["ip", "netns", "exec", server, sys.executable, "-c", SERVER],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"

        def rate(host: str, port: int) -> float:
            seconds = float(sh("ip", "netns", "exec", client, sys.executable, "-c", CLIENT, host, str(port), str(SIZE)))
            return SIZE * 8 / seconds / 1e6

        baseline = rate("10.77.0.10", 9002)
        print(f"baseline (uncapped, same veth): {baseline:.0f} Mbit/s, {SIZE >> 20} MiB per transfer")
        print("cap Mbit/s | IPv4 rate/cap | IPv6 rate/cap | IPv4 rate/baseline | control rate/baseline (cap on)")
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "telemetry-shunt-bandwidth-cap"
            for cap in CAPS_MBIT:
                script.write_text(hb.render_bandwidth_cap_script(hb.AgentBudgets(bandwidth_mbit=cap)))
                t0 = time.monotonic()
                sh("ip", "netns", "exec", client, "bash", str(script), "apply")
                apply_s = time.monotonic() - t0
                v4, v6, control = rate("169.254.171.10", 9000), rate("fd00:ec2:80::10", 9001), rate("10.77.0.10", 9002)
                print(f"{cap:>10} | {v4 / cap:>13.2f} | {v6 / cap:>13.2f} | {v4 / baseline:>18.4f} | "
                      f"{control / baseline:>6.2f}   (apply {apply_s * 1000:.0f} ms)")
                sh("ip", "netns", "exec", client, "bash", str(script), "remove")
    finally:
        if proc is not None:
            proc.stdin.close()
            proc.terminate()
            proc.wait(timeout=30)
        subprocess.run(["ip", "netns", "del", client], capture_output=True)
        subprocess.run(["ip", "netns", "del", server], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
