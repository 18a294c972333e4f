"""Hard host budgets for the telemetry agent, whatever the agent: a systemd drop-in and a bandwidth cap.

- **CPU, memory, disk I/O, scheduling** (systemd drop-in ``<agent>.service.d/50-telemetry-shunt-budgets.conf``):
  ``CPUQuota`` (percent of one CPU), ``MemoryMax`` (the kernel's OOM killer stops the agent beyond it;
  ``MemorySwapMax=0`` so it cannot spill into swap instead), ``IOWeight`` (share under disk contention,
  100 is systemd's default) and ``Nice`` (CPU priority below the app's).
- **Bandwidth to VPC Lattice** (``telemetry-shunt-bandwidth-cap``, run by the drop-in before the agent
  starts): traffic from the host to the Lattice ranges (``169.254.171.0/24`` and ``fd00:ec2:80::/64``)
  goes through one HTB class capped at ``bandwidth_mbit`` Mbit/s; all other traffic goes through a
  default class that is not limited.

Why ``tc`` and not the agent's own rate limit: the ADOT collector (v0.49.0) has no rate limit on its
OTLP/HTTP exporters, the CloudWatch agent and custom agents have none we could rely on, and a kernel cap
holds whatever the agent does. The price: the cap covers *all* traffic from this host to Lattice (the
in-app client's pushes too, and any other Lattice service the host calls), and HTB replaces the primary
interface's root qdisc (``mq`` on ENA), so every packet takes one queue lock; the script refuses to
replace a root qdisc that someone else configured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from telemetry_shunt.core.contract import (
    AGENT_FORWARDER_CONCURRENCY,
    AGENT_FORWARDER_MAX_BODY_BYTES,
    LATTICE_IPV4_RANGE,
    LATTICE_IPV6_RANGE,
)
from telemetry_shunt.errors import ValidationError

BANDWIDTH_CAP_PATH = "/usr/local/bin/telemetry-shunt-bandwidth-cap"
#: The signing forwarder's unit (``core/hostfiles/lattice_forwarder.py``), which gets budgets of its own.
FORWARDER_SERVICE = "telemetry-shunt-forwarder"
#: The forwarder's memory ceiling: the interpreter and its threads (32 MiB) plus twice the bodies it may hold
#: (concurrency x body cap; a body is briefly copied while it is sent), so the cap, not the kernel, says no first.
FORWARDER_MEMORY_MAX_MIB = 32 + 2 * AGENT_FORWARDER_CONCURRENCY * AGENT_FORWARDER_MAX_BODY_BYTES // (1024 * 1024)
#: Threads: one per open connection; the requests in flight are bounded by the concurrency, idle keep-alive
#: connections and refusals need a few more.
FORWARDER_TASKS_MAX = AGENT_FORWARDER_CONCURRENCY + 24
DROPIN_NAME = "50-telemetry-shunt-budgets.conf"
# tc handles (hex): the root HTB qdisc, its unlimited default class and the capped Lattice class.
TC_HANDLE = "5e17"
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._:-]{0,250}", re.ASCII)


def _int_in(value: object, lo: int, hi: int, what: str, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValidationError(f"{what} must be an integer from {lo} to {hi} ({hint}), got {value!r}")
    return value


@dataclass(frozen=True)
class AgentBudgets:
    """What the agent may use on each host. The defaults suit a telemetry sidecar on a small instance.

    :param cpu_quota_percent: CPU time, in percent of one CPU (systemd ``CPUQuota``). Default 20.
    :param memory_max_mib: memory ceiling (``MemoryMax``); the kernel stops the agent beyond it, so the
        agent's own limiter (ADOT: ``memory_limiter``) is set below it. Default 512.
    :param io_weight: disk I/O share under contention, 1-10000, systemd's default being 100. Default 10.
    :param nice: scheduling niceness, -20 (first) to 19 (last). Default 10.
    :param bandwidth_mbit: egress to VPC Lattice in Mbit/s (``tc`` HTB class). Default 20.
    :param queue_memory_mib: ADOT only: bytes held in the in-memory sending queues while the gateway is
        unreachable, shared by the exporters; beyond it new data is dropped and counted. Default 64.
    :param queue_disk_mib: ADOT only: 0 keeps the queue in memory; more puts it on disk (``file_storage``),
        capped at this many MiB in total, so queued data survives an agent restart. Default 0.
    """

    cpu_quota_percent: int = 20
    memory_max_mib: int = 512
    io_weight: int = 10
    nice: int = 10
    bandwidth_mbit: int = 20
    queue_memory_mib: int = 64
    queue_disk_mib: int = 0

    def __post_init__(self) -> None:
        _int_in(self.cpu_quota_percent, 1, 400, "cpu_quota_percent", "percent of one CPU, e.g. 20")
        _int_in(self.memory_max_mib, 64, 65536, "memory_max_mib", "MiB, e.g. 512")
        _int_in(self.io_weight, 1, 10000, "io_weight", "systemd IOWeight; 100 is the default share")
        _int_in(self.nice, -20, 19, "nice", "scheduling niceness")
        _int_in(self.bandwidth_mbit, 1, 100000, "bandwidth_mbit", "Mbit/s to VPC Lattice, e.g. 20")
        _int_in(self.queue_memory_mib, 1, 65536, "queue_memory_mib", "MiB of queued data in memory")
        _int_in(self.queue_disk_mib, 0, 1048576, "queue_disk_mib", "0 for a memory-only queue, or MiB on disk")
        if self.queue_disk_mib == 0 and self.queue_memory_mib > self.memory_limit_mib // 2:
            raise ValidationError(
                f"queue_memory_mib={self.queue_memory_mib} does not fit the agent's memory: at most half of its "
                f"memory limit ({self.memory_limit_mib} MiB, 80% of memory_max_mib={self.memory_max_mib}) may "
                f"queue; raise memory_max_mib or lower queue_memory_mib"
            )

    @property
    def memory_limit_mib(self) -> int:
        """The agent's own soft memory limit: 80 % of ``memory_max_mib``, so it refuses data before the kernel
        stops it."""
        return self.memory_max_mib * 4 // 5

    @property
    def memory_spike_mib(self) -> int:
        """Headroom between two memory checks (ADOT ``spike_limit_mib``): 20 % of the limit."""
        return max(1, self.memory_limit_mib // 5)


def validate_agent_service(service: str) -> str:
    if not isinstance(service, str) or not _SERVICE.fullmatch(service):
        raise ValidationError(f"agent service must be a systemd unit name such as 'aws-otel-collector', got {service!r}")
    return service


def dropin_path(agent_service: str) -> str:
    """Where the drop-in goes: ``/etc/systemd/system/<unit>.service.d/50-telemetry-shunt-budgets.conf``."""
    unit = validate_agent_service(agent_service)
    if not unit.endswith(".service"):
        unit += ".service"
    return f"/etc/systemd/system/{unit}.d/{DROPIN_NAME}"


def render_budget_dropin(budgets: AgentBudgets) -> str:
    """The systemd drop-in for the agent's unit: limits, and the bandwidth cap applied before each start.

    ``ExecStartPre=+`` runs the cap as root even when the agent runs as its own user (ADOT: ``aoc``); if the
    cap cannot be applied the agent does not start, rather than run without it.
    """
    return (
        "# telemetry-shunt host budgets for the agent. Rendered by telemetry_shunt.core.host_budgets; do not edit\n"
        "# on the host (the agent install/upgrade/rollback documents rewrite it).\n"
        "[Service]\n"
        "CPUAccounting=yes\n"
        f"CPUQuota={budgets.cpu_quota_percent}%\n"
        "MemoryAccounting=yes\n"
        f"MemoryMax={budgets.memory_max_mib}M\n"
        "MemorySwapMax=0\n"
        "IOAccounting=yes\n"
        f"IOWeight={budgets.io_weight}\n"
        f"Nice={budgets.nice}\n"
        f"Environment=TELEMETRY_SHUNT_BANDWIDTH_MBIT={budgets.bandwidth_mbit}\n"
        f"ExecStartPre=+{BANDWIDTH_CAP_PATH} apply\n"
    )


def render_forwarder_dropin(budgets: AgentBudgets) -> str:
    """The forwarder's own budgets: the agent's CPU quota, I/O weight and niceness, its own memory ceiling
    (:data:`FORWARDER_MEMORY_MAX_MIB`) and thread count. Its traffic to Lattice is inside the host's bandwidth cap."""
    return (
        "# telemetry-shunt host budgets for the signing forwarder. Rendered by telemetry_shunt.core.host_budgets;\n"
        "# do not edit on the host (the agent install/upgrade/rollback documents rewrite it).\n"
        "[Service]\n"
        "CPUAccounting=yes\n"
        f"CPUQuota={budgets.cpu_quota_percent}%\n"
        "MemoryAccounting=yes\n"
        f"MemoryMax={FORWARDER_MEMORY_MAX_MIB}M\n"
        "MemorySwapMax=0\n"
        "IOAccounting=yes\n"
        f"IOWeight={budgets.io_weight}\n"
        f"Nice={budgets.nice}\n"
        f"TasksMax={FORWARDER_TASKS_MAX}\n"
    )


_BANDWIDTH_CAP = """\
#!/usr/bin/env bash
# telemetry-shunt bandwidth cap: egress from this host to VPC Lattice at most @RATE_MBIT@ Mbit/s.
# Rendered by telemetry_shunt.core.host_budgets; do not edit on the host.
#   telemetry-shunt-bandwidth-cap apply    install or refresh the cap (idempotent; the agent's ExecStartPre)
#   telemetry-shunt-bandwidth-cap remove   remove it (restores the kernel's default root qdisc)
#   telemetry-shunt-bandwidth-cap status   show the qdisc, classes (sent/dropped counters) and filters
# An HTB root qdisc on the interface that routes to Lattice: class @HANDLE@:20 (capped) for the Lattice
# ranges, class @HANDLE@:10 (not limited) for everything else. A root qdisc configured by someone else
# (anything but the kernel defaults or ours) is left alone and the script fails.
set -euo pipefail
RATE="${TELEMETRY_SHUNT_BANDWIDTH_MBIT:-@RATE_MBIT@}mbit"
LATTICE_V4=@LATTICE_V4@
LATTICE_V6=@LATTICE_V6@
HANDLE=@HANDLE@

log() { echo "telemetry-shunt-bandwidth-cap: $*" >&2; }

# The interface the kernel routes an address through (empty if there is no route).
route_dev() {
  ip -o route get "$1" 2>/dev/null | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p' | head -n 1
}

# Devices carrying Lattice traffic, one per line, deduplicated. IPv4 must route; IPv6 may not exist.
lattice_devs() {
  local v4 v6
  v4=$(route_dev "${LATTICE_V4%/*}")
  v6=$(route_dev "${LATTICE_V6%/*}")
  if [ -z "$v4" ]; then
    log "no route to $LATTICE_V4: cannot tell which interface carries Lattice traffic"
    return 1
  fi
  printf '%s\\n' "$v4" "$v6" | sed '/^$/d' | sort -u
}

root_kind() {
  tc qdisc show dev "$1" root | awk 'NR==1 {print $2 " " $3}'
}

apply_dev() {
  local dev=$1 kind
  kind=$(root_kind "$dev")
  case "$kind" in
    "htb $HANDLE:") ;;  # ours already: refresh the classes and filters below
    "noqueue "*|"pfifo_fast "*|"mq "*|"fq_codel "*|"fq "*|"pfifo "*|"")
      tc qdisc replace dev "$dev" root handle "$HANDLE:" htb default 10 ;;
    *) log "$dev has a root qdisc '$kind' that telemetry-shunt did not install: not replacing it"; return 1 ;;
  esac
  tc class replace dev "$dev" parent "$HANDLE:" classid "$HANDLE:10" htb rate 100gbit ceil 100gbit \\
    burst 256k cburst 256k quantum 60000
  tc class replace dev "$dev" parent "$HANDLE:" classid "$HANDLE:20" htb rate "$RATE" ceil "$RATE" \\
    burst 64k cburst 64k quantum 1514
  tc filter del dev "$dev" parent "$HANDLE:" 2>/dev/null || true
  tc filter add dev "$dev" parent "$HANDLE:" protocol ip prio 1 u32 match ip dst "$LATTICE_V4" flowid "$HANDLE:20"
  tc filter add dev "$dev" parent "$HANDLE:" protocol ipv6 prio 2 u32 match ip6 dst "$LATTICE_V6" flowid "$HANDLE:20"
  log "$dev: traffic to $LATTICE_V4 and $LATTICE_V6 capped at $RATE"
}

remove_dev() {
  local dev=$1
  if [ "$(root_kind "$dev")" = "htb $HANDLE:" ]; then
    tc qdisc del dev "$dev" root
    log "$dev: cap removed"
  fi
}

main() {
  local devs dev
  case "${1:-}" in
    apply|remove|status) ;;
    *) echo "usage: $0 apply|remove|status" >&2; exit 64 ;;
  esac
  devs=$(lattice_devs)
  for dev in $devs; do
    case "$1" in
      apply) apply_dev "$dev" ;;
      remove) remove_dev "$dev" ;;
      status)
        tc -s qdisc show dev "$dev" root
        tc -s class show dev "$dev"
        tc filter show dev "$dev"
        ;;
    esac
  done
}

main "$@"
"""


def render_bandwidth_cap_script(budgets: AgentBudgets) -> str:
    """The bandwidth-cap script (bash; needs ``ip`` and ``tc`` from iproute2 — ``iproute-tc`` on Amazon Linux)."""
    out = _BANDWIDTH_CAP
    for key, value in {"RATE_MBIT": str(budgets.bandwidth_mbit), "LATTICE_V4": LATTICE_IPV4_RANGE,
                       "LATTICE_V6": LATTICE_IPV6_RANGE, "HANDLE": TC_HANDLE}.items():
        out = out.replace(f"@{key}@", value)
    leftover = re.findall(r"@[A-Z_0-9]+@", out)
    if leftover:
        raise AssertionError(f"unfilled placeholders {leftover}")
    return out
