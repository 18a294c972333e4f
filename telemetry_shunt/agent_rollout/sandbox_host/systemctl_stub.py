#!/usr/bin/env python3
"""sandbox ``systemctl``: systemd for one simulated host, driven by the real unit files under the host's root.

Units are read from ``$SANDBOX_HOST_ROOT/etc/systemd/system`` (with ``<unit>.d/*.conf`` drop-ins:
``Environment=``, ``ExecCondition=`` and ``ExecStartPre=`` are honoured); absolute program paths are looked up under the root
first. A started ``Type=simple`` service runs under a small supervisor in its own process group (``Restart=``
honoured; the supervisor ends its service if the sandbox process goes away); ``Type=oneshot`` runs to
completion; a timer runs its service every ``OnUnitActiveSec`` (``SANDBOX_TIMER_SECONDS`` overrides it, so the
sandbox's heartbeats come every few seconds). State lives in ``run/sim-systemd``, with a lock per unit: one
job (start, stop, restart) at a time per unit, as under systemd. Service output goes to ``var/log/<unit>.log``
(the journal); every call but ``is-active`` is appended to ``var/log/systemctl.calls``.

Verbs: daemon-reload, start, stop, restart, enable, disable [--now], is-active [--quiet], is-enabled.
Exit codes and messages follow systemctl's (5: unit not found, 3: is-active and not active).
"""

import os
import sys

# is-active runs on every watcher poll and heartbeat: it imports nothing more (see _import_the_rest).
shlex = signal = subprocess = time = None


def _import_the_rest():
    global shlex, signal, subprocess, time
    import shlex
    import signal
    import subprocess
    import time

ROOT = os.environ.get("SANDBOX_HOST_ROOT", "")
UNIT_DIR = os.path.join(ROOT, "etc/systemd/system")
STATE = os.path.join(ROOT, "run/sim-systemd")
ENABLED = os.path.join(ROOT, "var/lib/sim-systemd/enabled")
LOGS = os.path.join(ROOT, "var/log")
STOP_TIMEOUT_SECONDS = 10.0


class BadUnit(Exception):
    pass


def unit_name(name):
    return name if "." in name else name + ".service"


def host_path(path):
    """A unit's absolute program path, as seen on this host (under the root when it exists there)."""
    if path.startswith("/") and os.path.exists(ROOT + path):
        return ROOT + path
    return path


def parse_duration(text):
    text = text.strip()
    units = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    for suffix, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if text.endswith(suffix) and text[: -len(suffix)].strip().replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * factor
    return float(text)


def load_unit(name):
    """{section: {key: [values]}} from the unit file and its drop-ins; BadUnit if it is not a valid unit."""
    path = os.path.join(UNIT_DIR, name)
    if not os.path.isfile(path):
        return None
    files = [path]
    dropins = path + ".d"
    if os.path.isdir(dropins):
        files += [os.path.join(dropins, f) for f in sorted(os.listdir(dropins)) if f.endswith(".conf")]
    unit = {}
    for file in files:
        section = None
        with open(file, encoding="utf-8") as f:
            for number, raw in enumerate(f, 1):
                line = raw.strip()
                if not line or line.startswith(("#", ";")):
                    continue
                if line.startswith("[") and line.endswith("]"):
                    section = unit.setdefault(line[1:-1], {})
                    continue
                key, sep, value = line.partition("=")
                if section is None or not sep or not key.strip().isidentifier():
                    raise BadUnit(f"{file}:{number}: not a unit file line: {line!r}")
                section.setdefault(key.strip(), []).append(value.strip())
    kind = name.rsplit(".", 1)[1]
    if kind == "service":
        service = unit.get("Service", {})
        if not service.get("ExecStart"):
            raise BadUnit(f"{name} has no ExecStart= setting")
        if service.get("Type", ["simple"])[-1] not in ("simple", "exec", "oneshot", "notify", "forking"):
            raise BadUnit(f"{name}: unknown Type={service['Type'][-1]}")
    elif kind == "timer":
        timer = unit.get("Timer", {})
        if not (timer.get("OnUnitActiveSec") or timer.get("OnBootSec")):
            raise BadUnit(f"{name} has no OnUnitActiveSec= or OnBootSec= setting")
    return unit


def command_line(value):
    """ExecStart value -> (argv, ignore_failure); '+', '!', '@' prefixes dropped, '-' ignores failure."""
    ignore = False
    while value and value[0] in "+-!@:":
        ignore = ignore or value[0] == "-"
        value = value[1:]
    argv = shlex.split(value)
    if not argv:
        raise BadUnit("empty command line")
    argv[0] = host_path(argv[0])
    return argv, ignore


def service_env(unit):
    env = dict(os.environ)
    for value in unit.get("Service", {}).get("Environment", []):
        for item in shlex.split(value):
            key, sep, val = item.partition("=")
            if sep:
                env[key] = val
    return env


def state_file(name, kind):
    return os.path.join(STATE, f"{name}.{kind}")


def read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""


def write(path, text):
    """Atomically, through a temporary file of this process's own: a unit's supervisor and a systemctl call
    may write the same state file at once, and neither may move or truncate the other's temporary file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by its parent) is not running
    return read(f"/proc/{pid}/stat").split(")")[-1].split()[:1] != ["Z"]


def job_lock(name):
    """systemd runs one job at a time per unit: a start, stop or restart of a unit waits for the one in progress
    (the install step's restart of the agent and the kill-switch watcher's start of it come at the same moment).
    Held until the returned descriptor is closed; a crash releases it."""
    import fcntl

    fd = os.open(state_file(name, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def active_state(name):
    pid = read(state_file(name, "pid"))
    if pid.isdigit() and alive(int(pid)):
        return read(state_file(name, "sub")) or "activating"  # its supervisor has not reported yet
    code = read(state_file(name, "exit"))
    if code and code != "0":
        return "failed"
    return "inactive"


def log_path(name):
    return os.path.join(LOGS, name + ".log")


def run_logged(name, argv, env):
    """One Exec line, its output in the unit's log; exit 203 when it cannot run at all, as under systemd."""
    with open(log_path(name), "a") as log:
        try:
            return subprocess.call(argv, env=env, stdout=log, stderr=log, cwd=ROOT or None)
        except OSError as exc:
            log.write(f"sandbox systemd: cannot run {argv[0]}: {exc}\n")
            return 203


def condition_met(name, unit, env):
    """ExecCondition lines, in order: True if all exit 0. Exit 1-254 (a program that cannot run exits 203, as
    under systemd) skips the start without failing the unit; 255 or a signal fails it (state file 'exit')."""
    for value in unit.get("Service", {}).get("ExecCondition", []):
        argv, _ = command_line(value)
        code = run_logged(name, argv, env)
        if 1 <= code <= 254:
            with open(log_path(name), "a") as log:
                log.write(f"sandbox systemd: {name} skipped due to 'exec-condition' (exit {code})\n")
            return False
        if code != 0:
            write(state_file(name, "exit"), str(code if code > 0 else 255))
            return None
    return True


def run_pre(name, unit, env):
    """ExecStartPre lines, in order; False (and the unit failed) if one fails."""
    for value in unit.get("Service", {}).get("ExecStartPre", []):
        argv, ignore = command_line(value)
        code = run_logged(name, argv, env)
        if code != 0 and not ignore:
            write(state_file(name, "exit"), str(code))
            return False
    return True


def start(name):
    unit = load_unit(name)
    if unit is None:
        print(f"Failed to start {name}: Unit {name} not found.", file=sys.stderr)
        return 5
    if active_state(name) in ("active", "activating", "reloading"):
        return 0
    for kind in ("exit", "sub"):
        try:
            os.unlink(state_file(name, kind))
        except FileNotFoundError:
            pass
    if name.endswith(".timer"):
        return spawn_supervisor(name)
    env = service_env(unit)
    service = unit["Service"]
    met = condition_met(name, unit, env)
    if met is False:
        return 0  # skipped: inactive, not failed, and the start job succeeds (as systemd's does)
    if met is None:
        print(f"Job for {name} failed because the control process exited with error code.", file=sys.stderr)
        return 1
    if not run_pre(name, unit, env):
        print(f"Job for {name} failed because the control process exited with error code.", file=sys.stderr)
        return 1
    if service.get("Type", ["simple"])[-1] == "oneshot":
        code = 0
        for value in service["ExecStart"]:
            argv, ignore = command_line(value)
            code = run_logged(name, argv, env)
            if code != 0 and not ignore:
                break
            code = 0
        write(state_file(name, "exit"), str(code))
        if code != 0:
            print(f"Job for {name} failed because the control process exited with error code.", file=sys.stderr)
            return 1
        return 0
    return spawn_supervisor(name)


def spawn_supervisor(name):
    write(state_file(name, "sub"), "activating")
    with open(log_path(name), "a") as log:
        proc = subprocess.Popen([sys.executable, "-S", os.path.abspath(__file__), "__supervise", name],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, process_group=0,
                                cwd=ROOT or None)
    write(state_file(name, "pid"), str(proc.pid))
    return 0


def supervise(name):
    """The process that is the unit while it runs: its service (or timer loop) in this process group."""
    sandbox_pid = int(os.environ.get("SANDBOX_PID", "0") or 0)
    signal.signal(signal.SIGTERM, lambda *_: stop_group())
    unit = load_unit(name)
    if name.endswith(".timer"):
        write(state_file(name, "sub"), "active")
        timer = unit["Timer"]
        period = float(os.environ.get("SANDBOX_TIMER_SECONDS") or
                       parse_duration((timer.get("OnUnitActiveSec") or timer["OnBootSec"])[-1]))
        service = unit.get("Timer", {}).get("Unit", [name.rsplit(".", 1)[0] + ".service"])[-1]
        due = time.monotonic() + period
        while True:  # OnUnitActiveSec counts from the last activation's start, not its end
            if not wait_or_orphaned(None, max(0.0, due - time.monotonic()), sandbox_pid):
                stop_group()
            due = time.monotonic() + period
            subprocess.call([sys.executable, "-S", os.path.abspath(__file__), "start", service])
    service = unit["Service"]
    restart = service.get("Restart", ["no"])[-1]
    restart_sec = min(parse_duration(service.get("RestartSec", ["0.1"])[-1]), 1.0)
    env = service_env(unit)
    notify = service.get("Type", ["simple"])[-1] == "notify"
    ready = state_file(name, "ready")
    if notify:
        env["NOTIFY_FILE"] = ready
    while True:
        argv, _ = command_line(service["ExecStart"][-1])
        if os.path.exists(ready):
            os.unlink(ready)
        try:
            child = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, cwd=ROOT or None)
        except OSError as exc:
            print(f"sandbox systemd: {name}: cannot run {argv[0]}: {exc}", flush=True)
            code = 203
        else:
            if notify:
                # active once the service says it is ready (sd_notify READY=1, here: it creates
                # $NOTIFY_FILE); a build that exits first never shows as active
                write(state_file(name, "sub"), "activating")
                while not os.path.exists(ready) and wait_or_orphaned(child, 0.2, sandbox_pid) is None:
                    pass
                if os.path.exists(ready) and child.poll() is None:
                    write(state_file(name, "sub"), "active")
            else:
                write(state_file(name, "sub"), "active")
            while wait_or_orphaned(child, 1.0, sandbox_pid) is None:
                pass
            if not alive_sandbox(sandbox_pid):
                stop_group()
            code = child.returncode
        if restart == "always" or (restart == "on-failure" and code != 0):
            write(state_file(name, "sub"), "activating")  # systemd: "activating (auto-restart)"
            time.sleep(restart_sec)
            continue
        write(state_file(name, "exit"), str(code))
        os._exit(0)


def alive_sandbox(pid):
    return not pid or alive(pid)


def wait_or_orphaned(child, seconds, sandbox_pid):
    """Wait up to `seconds` for the child (or just sleep): None while it runs, else its exit status;
    False when the sandbox is gone."""
    deadline = time.monotonic() + seconds
    if not alive_sandbox(sandbox_pid):
        return False
    while time.monotonic() < deadline:
        if not alive_sandbox(sandbox_pid):
            return False
        if child is not None and child.poll() is not None:
            return child.returncode
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    return None if child is not None else True


def stop_group():
    try:
        os.killpg(os.getpgid(0), signal.SIGTERM)
    finally:
        os._exit(0)


def stop(name):
    pid = read(state_file(name, "pid"))
    if pid.isdigit():
        pgid = int(pid)
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while time.monotonic() < deadline and group_alive(pgid):
            time.sleep(0.05)
        if group_alive(pgid):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for kind in ("pid", "exit", "sub", "ready"):
        try:
            os.unlink(state_file(name, kind))
        except FileNotFoundError:
            pass
    return 0


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return alive(pgid) or any_member(pgid)


def any_member(pgid):
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = read(f"/proc/{entry}/stat").split(")")[-1].split()
            if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
                return True
    return False


def main(argv):
    if not ROOT:
        print("sandbox systemctl: SANDBOX_HOST_ROOT is not set", file=sys.stderr)
        return 1
    os.makedirs(STATE, exist_ok=True)
    os.makedirs(ENABLED, exist_ok=True)
    os.makedirs(LOGS, exist_ok=True)
    if argv[:1] != ["is-active"]:
        _import_the_rest()
    if argv[:1] == ["__supervise"]:
        return supervise(argv[1])
    args = [a for a in argv if not a.startswith("--")]
    flags = {a for a in argv if a.startswith("--")}
    if not args:
        print("sandbox systemctl: no verb", file=sys.stderr)
        return 1
    verb, units = args[0], [unit_name(u) for u in args[1:]]
    if verb != "is-active":
        with open(os.path.join(LOGS, "systemctl.calls"), "a") as calls:
            calls.write(" ".join(["systemctl", *argv]) + "\n")
    if verb == "daemon-reload":
        return 0
    if verb == "is-active":
        states = [active_state(u) for u in units]
        if "--quiet" not in flags:
            print("\n".join(states))
        return 0 if states and all(s == "active" for s in states) else 3
    if verb == "is-enabled":
        states = ["enabled" if os.path.exists(os.path.join(ENABLED, u)) else "disabled" for u in units]
        print("\n".join(states))
        return 0 if all(s == "enabled" for s in states) else 1
    status = 0
    for u in units:
        lock = job_lock(u)
        try:
            if verb in ("enable", "disable"):
                if load_unit(u) is None:
                    print(f"Failed to {verb} unit: Unit file {u} does not exist.", file=sys.stderr)
                    status = 1
                    continue
                marker = os.path.join(ENABLED, u)
                if verb == "enable":
                    open(marker, "a").close()
                    if "--now" in flags:
                        status = start(u) or status
                else:
                    if os.path.exists(marker):
                        os.unlink(marker)
                    if "--now" in flags:
                        stop(u)
            elif verb == "start":
                status = start(u) or status
            elif verb == "stop":
                stop(u)
            elif verb == "restart":
                if load_unit(u) is None:
                    print(f"Failed to restart {u}: Unit {u} not found.", file=sys.stderr)
                    status = 5
                    continue
                stop(u)
                status = start(u) or status
            else:
                print(f"sandbox systemctl: unknown verb {verb!r}", file=sys.stderr)
                return 1
        except BadUnit as exc:
            print(f"Failed to {verb} {u}: Unit {u} has a bad unit file setting ({exc}).", file=sys.stderr)
            status = 1
        finally:
            os.close(lock)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
