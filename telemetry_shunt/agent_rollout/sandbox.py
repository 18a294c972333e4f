"""``shunt sandbox``: a local moto server with a demo fleet whose hosts run the real host side, so rollouts
and the kill switch can be tried on one machine with no AWS account.

What is real and what is simulated:

* EC2, SSM (documents, Run Command), CloudWatch (alarms, metrics) and DynamoDB (rollout state) are moto,
  reached over HTTP on 127.0.0.1 exactly like AWS.
* The SSM documents are the ones ``AgentRolloutSupport`` deploys: :func:`sandbox_documents` renders them with
  the core renderer the construct uses (a test checks they are the construct's, byte for byte).
* Every demo instance is a simulated host (:mod:`telemetry_shunt.agent_rollout.sandbox_hosts`): a directory
  and process groups that run each command's real ``aws:runShellScript`` steps with ``sh -c`` (bash via the
  steps' shebang), the real kill-switch watcher and heartbeat, under a stub ``systemctl`` that starts and
  stops processes from the real unit files. The package download is a local artifact store; the agent is a
  stand-in process. Heartbeats are the real heartbeat script's, sent to moto while the agent runs. A broken
  document, watcher or unit file breaks a sandbox rollout, as it would a real one.
* moto lacks ``DescribeInstanceInformation`` and ``ListCommandInvocations`` and sends an ``InstanceIds``
  command to *every* instance; :func:`install_moto_extensions` fills those gaps inside the sandbox process.
* AppConfig is not in moto: the kill switch is a local JSON file (``--kill-switch-file`` /
  ``SHUNT_KILL_SWITCH_FILE``, printed by ``shunt sandbox start --print-env``) that a fake AppConfig agent
  endpoint serves to the hosts' watchers: ``shunt kill on --az`` stops that zone's agents through them.
* The documents carry a data path for the stand-in agent (:func:`sandbox_agent_config`): its config file,
  validated on the host by the stand-in's own ``--check-config`` before it replaces the current one, saved per
  version and restored by a rollback, as for any custom agent. No gateway, so no signing forwarder: it listens
  on one fixed loopback port, which the simulated hosts (sharing this machine's 127.0.0.1) cannot each have.
* Demo versions: ``1.2.0-broken`` cannot start anywhere; ``1.3.0-badconfig`` reads only the next config
  format, so its host refuses the config the documents ship (the current one stays, the command fails, the
  rollout halts and rolls back); with ``broken_az`` every version but 1.0.0 cannot start in that zone (a halt
  in a later zone).

:class:`HeartbeatSimulator` is the fast in-process model of the fleet that engine tests drive with a simulated
clock; it does not run hosts.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from telemetry_shunt.agent_rollout.sandbox_hosts import (
    AGENT_CONFIG_FORMAT,
    AGENT_CONFIG_PATH,
    AGENT_SERVICE,
    ArtifactStore,
    HostFleet,
    attach,
    detach,
)
from telemetry_shunt.agent_rollout.state import create_state_table
from telemetry_shunt.core import hostside
from telemetry_shunt.core.agent_files import AgentConfigFile, AgentDataPath
from telemetry_shunt.core.contract import (
    AGENT_ACTIONS,
    AGENT_VERSION_PARAMETER,
    APPCONFIG_MIN_POLL_SECONDS,
    DEFAULT_STATE_TABLE_NAME,
    FLEET_TAG_KEY,
    HEARTBEAT_AZ_DIMENSION,
    HEARTBEAT_INSTANCE_DIMENSION,
    HEARTBEAT_METRIC,
    HEARTBEAT_NAMESPACE,
    HEARTBEAT_VERSION_DIMENSION,
    agent_document_name,
    agent_package_name,
    heartbeat_alarm_name,
)
from telemetry_shunt.core.host_budgets import AgentBudgets
from telemetry_shunt.errors import ShuntError

REGION = "us-east-1"
FLEET = "demo"
AZS = ("us-east-1a", "us-east-1b", "us-east-1c")
START_VERSION = "1.0.0"
VERSIONS = ("1.0.0", "1.1.0", "1.2.0-broken", "1.3.0-badconfig")
BROKEN_SUFFIX = "-broken"
BAD_CONFIG_SUFFIX = "-badconfig"
HEARTBEAT_SECONDS = 2
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}

WATCHER_POLL_SECONDS = 1.0


def sandbox_agent() -> hostside.DistributorPackage:
    """The sandbox's agent source: the project's Distributor package, unit ``sandbox-agent``."""
    return hostside.DistributorPackage(name=agent_package_name(), service=AGENT_SERVICE)


def sandbox_host_config() -> hostside.HostConfig:
    """As ``AgentRolloutSupport`` renders it for a kill switch polled every 15 s (the sandbox's watchers poll
    faster through their test-only override)."""
    return hostside.HostConfig(agent_service=AGENT_SERVICE, poll_seconds=APPCONFIG_MIN_POLL_SECONDS)


def sandbox_agent_config() -> AgentConfigFile:
    """The stand-in agent's configuration, as ``AgentRolloutSupport(agent_config=...)`` takes a custom agent's.
    Validated by the installed stand-in itself (``--check-config``), the way ``otelcol-contrib validate`` checks
    its own. ``${SANDBOX_HOST_ROOT:-}`` is empty on a real host; on a simulated one it is the host's root (the
    config tool is written base64-encoded, so the sandbox cannot move the path in its text)."""
    return AgentConfigFile(
        path=AGENT_CONFIG_PATH,
        text=("# sandbox-agent stand-in configuration, installed by the agent documents\n"
              f"format={AGENT_CONFIG_FORMAT}\n"
              "send=heartbeat\n"),
        validate_command=f'"${{SANDBOX_HOST_ROOT:-}}/opt/{AGENT_SERVICE}/bin/{AGENT_SERVICE}" --check-config "$CONFIG"')


def sandbox_data_path() -> AgentDataPath:
    """What ``AgentRolloutSupport`` builds for ``agent_config=sandbox_agent_config()``, no gateway, default budgets."""
    return AgentDataPath.for_file(agent_service=AGENT_SERVICE, file=sandbox_agent_config(), budgets=AgentBudgets())


def sandbox_documents() -> dict[str, dict[str, Any]]:
    """The five agent documents, rendered by the core renderer ``AgentRolloutSupport`` uses, with what the
    construct passes for ``AgentSource.distributor(service="sandbox-agent")``, ``agent_config=``
    :func:`sandbox_agent_config` and default budgets."""
    return {action: hostside.agent_document(action, agent=sandbox_agent(), config=sandbox_host_config(),
                                            data_path=sandbox_data_path())
            for action in AGENT_ACTIONS}


def install_moto_extensions() -> None:
    """Fill moto's SSM gaps the engine needs (idempotent; affects this process only)."""
    from moto.core.responses import ActionResult
    from moto.ec2.models import ec2_backends
    from moto.ssm import models as ssm_models
    from moto.ssm.responses import SimpleSystemManagerResponse

    if getattr(SimpleSystemManagerResponse, "_shunt_extended", False):
        return

    def describe_instance_information(self: Any) -> Any:
        wanted: set[str] | None = None
        for flt in self._get_param("Filters", []) or []:
            if flt.get("Key") == "InstanceIds":
                wanted = set(flt.get("Values", []))
        ec2 = ec2_backends[self.current_account][self.region]
        out = []
        for reservation in ec2.all_reservations():
            for inst in reservation.instances:
                if inst.state == "running" and (wanted is None or inst.id in wanted):
                    out.append({"InstanceId": inst.id, "PingStatus": "Online", "ResourceType": "EC2Instance",
                                "PlatformType": "Linux"})
        return ActionResult({"InstanceInformationList": out})

    def list_command_invocations(self: Any) -> Any:
        command = self.ssm_backend.get_command_by_id(self._get_param("CommandId"))
        keep = ("CommandId", "InstanceId", "Comment", "DocumentName", "Status", "StatusDetails")
        return ActionResult({"CommandInvocations": [
            {**{k: inv[k] for k in keep if k in inv}, "RequestedDateTime": command.requested_date_time}
            for inv in command.invocations]})

    original = ssm_models.Command._get_instance_ids_from_targets

    def targets_only(self: Any) -> list[str]:
        # moto adds every instance when Targets is empty; a command with InstanceIds targets only those
        return original(self) if self.targets else []

    SimpleSystemManagerResponse.describe_instance_information = describe_instance_information
    SimpleSystemManagerResponse.list_command_invocations = list_command_invocations
    ssm_models.Command._get_instance_ids_from_targets = targets_only
    SimpleSystemManagerResponse._shunt_extended = True


def seed(session: Any, *, endpoint_url: str | None, instances_per_az: int = 4,
         table: str = DEFAULT_STATE_TABLE_NAME) -> list[dict[str, str]]:
    """Create the demo fleet, documents, package versions, alarms (OK) and the state table."""
    ec2 = session.client("ec2", endpoint_url=endpoint_url)
    ssm = session.client("ssm", endpoint_url=endpoint_url)
    cloudwatch = session.client("cloudwatch", endpoint_url=endpoint_url)
    dynamodb = session.client("dynamodb", endpoint_url=endpoint_url)
    hosts = []
    for az in AZS:
        reply = ec2.run_instances(
            ImageId="ami-12c6146b", InstanceType="t3.micro", MinCount=instances_per_az, MaxCount=instances_per_az,
            Placement={"AvailabilityZone": az},
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": FLEET_TAG_KEY, "Value": FLEET}]}],
        )
        hosts += [{"instance_id": i["InstanceId"], "az": az} for i in reply["Instances"]]
    for action, document in sandbox_documents().items():
        ssm.create_document(Name=agent_document_name(action), Content=json.dumps(document), DocumentType="Command",
                            DocumentFormat="JSON", TargetType="/AWS::EC2::Instance")
    package = agent_package_name()
    for n, version in enumerate(VERSIONS):
        manifest = json.dumps({"schemaVersion": "2.0", "version": version, "packages": {}, "files": {}})
        if n == 0:
            ssm.create_document(Name=package, Content=manifest, DocumentType="Package", DocumentFormat="JSON",
                                VersionName=version)
        else:
            ssm.update_document(Name=package, Content=manifest, DocumentVersion="$LATEST", DocumentFormat="JSON",
                                VersionName=version)
    for az in AZS:
        cloudwatch.put_metric_alarm(
            AlarmName=heartbeat_alarm_name(az), Namespace=HEARTBEAT_NAMESPACE, MetricName=HEARTBEAT_METRIC,
            Dimensions=[{"Name": HEARTBEAT_AZ_DIMENSION, "Value": az}], Statistic="SampleCount", Period=60,
            EvaluationPeriods=3, Threshold=1, ComparisonOperator="LessThanThreshold", TreatMissingData="breaching",
        )
        cloudwatch.set_alarm_state(AlarmName=heartbeat_alarm_name(az), StateValue="OK",
                                   StateReason="sandbox: agents heartbeating")
    create_state_table(dynamodb, table)
    return hosts


class HeartbeatSimulator:
    """The agents of the demo fleet: follow upgrade/rollback commands, publish heartbeats."""

    def __init__(self, session: Any, *, endpoint_url: str | None, hosts: list[dict[str, str]],
                 period_seconds: float = HEARTBEAT_SECONDS, now: Callable[[], float] | None = None) -> None:
        self.ssm = session.client("ssm", endpoint_url=endpoint_url)
        self.cloudwatch = session.client("cloudwatch", endpoint_url=endpoint_url)
        self.period = period_seconds
        self.az = {h["instance_id"]: h["az"] for h in hosts}
        self.version = dict.fromkeys(self.az, START_VERSION)
        self._seen: set[str] = set()
        self._now = now or (lambda: datetime.now(UTC).timestamp())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> None:
        """Apply new commands, then publish one heartbeat per live host."""
        commands = self.ssm.list_commands()["Commands"]
        for command in sorted(commands, key=lambda c: c["RequestedDateTime"]):
            if command["CommandId"] in self._seen or command["Status"] != "Success":
                continue
            self._seen.add(command["CommandId"])
            for iid in command["InstanceIds"]:
                if iid not in self.version:
                    continue
                if command["DocumentName"] == agent_document_name("upgrade"):
                    self.version[iid] = command["Parameters"][AGENT_VERSION_PARAMETER][0]
                elif command["DocumentName"] == agent_document_name("rollback"):
                    self.version[iid] = command["Parameters"][AGENT_VERSION_PARAMETER][0]
        ts = datetime.fromtimestamp(self._now(), UTC)
        data = []
        for iid, version in self.version.items():
            if version.endswith(BROKEN_SUFFIX):
                continue
            data.append({"MetricName": HEARTBEAT_METRIC, "Value": 1.0, "Timestamp": ts, "Dimensions": [
                {"Name": HEARTBEAT_INSTANCE_DIMENSION, "Value": iid},
                {"Name": HEARTBEAT_VERSION_DIMENSION, "Value": version}]})
            data.append({"MetricName": HEARTBEAT_METRIC, "Value": 1.0, "Timestamp": ts, "Dimensions": [
                {"Name": HEARTBEAT_AZ_DIMENSION, "Value": self.az[iid]}]})
        for start in range(0, len(data), 1000):
            self.cloudwatch.put_metric_data(Namespace=HEARTBEAT_NAMESPACE, MetricData=data[start:start + 1000])

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # noqa: BLE001 - a demo agent keeps beating through a hiccup
                pass
            self._stop.wait(self.period)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sandbox-heartbeats", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)


class Sandbox:
    """A moto server on 127.0.0.1 with the demo fleet of simulated hosts; ``start()``/``stop()`` for tests and
    the CLI. ``broken_az``: that zone's agents cannot start at any version but 1.0.0."""

    def __init__(self, state_dir: str | Path, *, port: int = 0, instances_per_az: int = 4,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS, watcher_poll_seconds: float = WATCHER_POLL_SECONDS,
                 broken_az: str | None = None) -> None:
        if broken_az is not None and broken_az not in AZS:
            raise ShuntError(f"--broken-az must be one of the sandbox's zones ({', '.join(AZS)}), got {broken_az!r}")
        self.state_dir = Path(state_dir).resolve()
        self.port = port
        self.instances_per_az = instances_per_az
        self.heartbeat_seconds = heartbeat_seconds
        self.watcher_poll_seconds = watcher_poll_seconds
        self.broken_az = broken_az
        self.endpoint_url: str | None = None
        self.hosts: list[dict[str, str]] = []
        self._server: Any = None
        self.fleet: HostFleet | None = None

    @property
    def kill_switch_file(self) -> Path:
        return self.state_dir / "kill-switch.json"

    def env(self) -> dict[str, str]:
        assert self.endpoint_url, "start() first"
        return {
            **FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "SHUNT_KILL_SWITCH_FILE": str(self.kill_switch_file),
            "SHUNT_AUDIT_LOG": str(self.state_dir / "audit.jsonl"),
            "SHUNT_HEARTBEAT_PERIOD_SECONDS": f"{self.heartbeat_seconds:g}",
        }

    def start(self) -> Sandbox:
        import boto3
        from moto.server import ThreadedMotoServer

        if self.port:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind(("127.0.0.1", self.port))
                except OSError as exc:  # moto's server thread would die silently and leave us waiting
                    raise ShuntError(f"cannot listen on 127.0.0.1:{self.port} ({exc.strerror}): pick another "
                                     "--port, or 0 for any free port") from None
        install_moto_extensions()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log on the operator's terminal
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        try:
            host, port = self._server.get_host_and_port()
            self.endpoint_url = f"http://{host}:{port}"
            self._reset()  # moto's state is per process: start from an empty account every time
            session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
            self.hosts = seed(session, endpoint_url=self.endpoint_url, instances_per_az=self.instances_per_az)
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self.kill_switch_file.write_text(json.dumps({"telemetry": {"enabled": True}}, indent=2), encoding="utf-8")
            self.fleet = HostFleet(
                self.state_dir / "hosts", hosts=self.hosts, region=REGION, endpoint_url=self.endpoint_url,
                flags_file=self.kill_switch_file, watcher_poll_seconds=self.watcher_poll_seconds,
                heartbeat_seconds=self.heartbeat_seconds, credentials=FAKE_CREDENTIALS,
                store=ArtifactStore(package=agent_package_name(), versions=VERSIONS, healthy_version=START_VERSION,
                                    broken_suffix=BROKEN_SUFFIX, broken_az=self.broken_az,
                                    bad_config_suffix=BAD_CONFIG_SUFFIX))
            attach(self.fleet)
            self._bootstrap(session)
        except BaseException:
            self.stop()
            raise
        (self.state_dir / "sandbox.json").write_text(json.dumps(
            {"endpoint_url": self.endpoint_url, "env": self.env(), "hosts": self.hosts,
             "hosts_dir": str(self.state_dir / "hosts"), "broken_az": self.broken_az}, indent=2), encoding="utf-8")
        return self

    def _bootstrap(self, session: Any, timeout: float = 180.0) -> None:
        """Every host runs the real install document at 1.0.0 (through SSM, as a new fleet would), then
        heartbeats; a host that cannot is a sandbox that does not start."""
        ssm = session.client("ssm", endpoint_url=self.endpoint_url)
        cloudwatch = session.client("cloudwatch", endpoint_url=self.endpoint_url)
        ids = [h["instance_id"] for h in self.hosts]
        command = ssm.send_command(InstanceIds=ids, DocumentName=agent_document_name("install"),
                                   Parameters={AGENT_VERSION_PARAMETER: [START_VERSION]},
                                   Comment="sandbox: bootstrap")["Command"]
        deadline = time.monotonic() + timeout
        while True:
            invocations = ssm.list_command_invocations(CommandId=command["CommandId"])["CommandInvocations"]
            if all(inv["Status"] not in ("Pending", "InProgress") for inv in invocations):
                break
            if time.monotonic() > deadline:
                raise ShuntError(f"sandbox hosts did not finish installing within {timeout:g} s")
            time.sleep(0.2)
        failed = [inv["InstanceId"] for inv in invocations if inv["Status"] != "Success"]
        if failed:
            first = ssm.get_command_invocation(CommandId=command["CommandId"], InstanceId=failed[0])
            said = [line for line in first.get("StandardErrorContent", "").splitlines() if line.strip()][-3:]
            steps = self.fleet.hosts[failed[0]].orchestration_dir(command["CommandId"]) if self.fleet else "?"
            raise ShuntError(
                f"the install document failed on {len(failed)} sandbox host(s), e.g. {failed[0]} (exit "
                f"{first.get('ResponseCode')}: {' | '.join(said) or 'no error output'}); each step's script and "
                f"output on that host: {steps}")
        while True:
            beating = {d["Value"] for m in cloudwatch.list_metrics(
                Namespace=HEARTBEAT_NAMESPACE, MetricName=HEARTBEAT_METRIC,
                Dimensions=[{"Name": HEARTBEAT_INSTANCE_DIMENSION}])["Metrics"]
                for d in m["Dimensions"] if d["Name"] == HEARTBEAT_INSTANCE_DIMENSION}
            if beating >= set(ids):
                return
            if time.monotonic() > deadline:
                raise ShuntError(f"sandbox hosts {sorted(set(ids) - beating)} installed but never sent a heartbeat")
            time.sleep(0.2)

    def _reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        detach()
        if self.fleet:
            self.fleet.close()
            self.fleet = None
        if self._server:
            self._reset()
            self._server.stop()
            self._server = None
        (self.state_dir / "sandbox.json").unlink(missing_ok=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
