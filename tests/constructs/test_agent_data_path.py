"""AgentRolloutSupport's data-path props: gateway, budgets and agent_config reach the SSM documents."""

from __future__ import annotations

import base64
import json

import pytest
from aws_cdk import App, Stack
from aws_cdk.assertions import Annotations, Match, Template

from telemetry_shunt.constructs.agent_rollout_support import AgentRolloutSupport, AgentSource
from telemetry_shunt.constructs.kill_switch import KillSwitch
from telemetry_shunt.core import agent_config as ac
from telemetry_shunt.core import agent_files as af
from telemetry_shunt.core import host_budgets as hb
from telemetry_shunt.core.gateway_ref import GatewayRef
from telemetry_shunt.core.routes import default_routes
from telemetry_shunt.errors import ValidationError
from tests.cdk_support import written_files

GATEWAY = GatewayRef(
    service_arn="arn:aws:vpc-lattice:eu-west-1:111111111111:service/svc-0123456789abcdef0",
    dns_name="telemetry-gateway-0123456789abcdef0.7d67968.vpc-lattice-svcs.eu-west-1.on.aws",
    routes=tuple(default_routes()),
    service_network_arn="arn:aws:vpc-lattice:eu-west-1:111111111111:servicenetwork/sn-0123456789abcdef0",
)


def support(**kwargs) -> tuple[Stack, AgentRolloutSupport]:
    stack = Stack(App(), "Agents")
    switch = KillSwitch(stack, "KillSwitch", availability_zones=["eu-west-1a"])
    kwargs.setdefault("agent", AgentSource.adot_collector())
    return stack, AgentRolloutSupport(stack, "AgentRollout", kill_switch=switch, fleet="web", **kwargs)


def host_step(stack: Stack, action: str) -> list[str]:
    docs = Template.from_stack(stack).find_resources("AWS::SSM::Document", {
        "Properties": {"Name": f"TelemetryShunt-Agent-{action.capitalize()}"}})
    (doc,) = docs.values()
    step = next(s for s in doc["Properties"]["Content"]["mainSteps"] if s["name"] == "InstallKillSwitchAndHeartbeat")
    return step["inputs"]["runCommand"]


def test_adot_with_a_gateway_installs_the_rendered_config_and_budgets() -> None:
    budgets = hb.AgentBudgets(cpu_quota_percent=10, bandwidth_mbit=5)
    stack, _ = support(gateway=GATEWAY, budgets=budgets)
    for action in ("install", "upgrade", "rollback"):
        files = written_files(host_step(stack, action))
        config = files[af.CANDIDATE_PATH]
        assert json.loads(config) == ac.render_adot_config(GATEWAY, budgets)
        assert files[hb.dropin_path(ac.ADOT_SERVICE)] == hb.render_budget_dropin(budgets)
        assert files[hb.BANDWIDTH_CAP_PATH] == hb.render_bandwidth_cap_script(budgets)
    assert f"  {af.CONFIG_TOOL_PATH} verify" in host_step(stack, "upgrade")


def test_your_agent_with_your_config_is_validated_by_your_command() -> None:
    config = af.AgentConfigFile(path="/etc/otelcol-contrib/config.yaml", text="receivers: {}\n",
                                validate_command='/usr/bin/otelcol-contrib validate --config="$CONFIG"')
    stack, rollout = support(agent=AgentSource.distributor(service="otelcol-contrib", package_name="OtelcolContrib"),
                             agent_config=config)
    files = written_files(host_step(stack, "upgrade"))
    assert files[af.CANDIDATE_PATH] == config.text
    assert '  /usr/bin/otelcol-contrib validate --config="$CONFIG"' in files[af.CONFIG_TOOL_PATH]
    assert rollout.data_path.config_path == config.path


def test_a_gateway_for_an_agent_we_cannot_configure_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs agent_config"):
        support(agent=AgentSource.cloudwatch_agent(), gateway=GATEWAY)


def test_adot_without_a_gateway_warns_and_still_gets_budgets() -> None:
    stack, _ = support()
    Annotations.from_stack(stack).has_warning("*", Match.string_like_regexp("sends nothing to the telemetry gateway"))
    files = written_files(host_step(stack, "install"))
    assert files[hb.dropin_path(ac.ADOT_SERVICE)] == hb.render_budget_dropin(hb.AgentBudgets())
    assert af.CANDIDATE_PATH not in files


def compressed_files(commands: list[str]) -> dict[str, str]:
    import gzip

    files = {}
    for line in commands:
        if line.startswith("echo '") and "| base64 -d | gzip -dc >" in line:
            encoded, target = line.split("'")[1], line.split("'")[3]
            files[target.removesuffix(".new")] = gzip.decompress(base64.b64decode(encoded)).decode()
    return files


def test_a_gateway_brings_the_signing_forwarder_with_its_unit_budgets_and_config() -> None:
    budgets = hb.AgentBudgets(cpu_quota_percent=10)
    stack, _ = support(gateway=GATEWAY, budgets=budgets)
    for action in ("install", "upgrade", "rollback"):
        commands = host_step(stack, action)
        files = written_files(commands)
        assert files[af.FORWARDER_CANDIDATE_PATH] == ac.to_text(ac.render_forwarder_config(GATEWAY))
        assert files[f"/etc/systemd/system/{af.FORWARDER_UNIT}"] == af.render_forwarder_unit(ac.ADOT_SERVICE)
        assert files[hb.dropin_path(hb.FORWARDER_SERVICE)] == hb.render_forwarder_dropin(budgets)
        assert files[af.forwarder_agent_dropin_path(ac.ADOT_SERVICE)] == af.render_forwarder_agent_dropin()
        assert compressed_files(commands) == {af.FORWARDER_PATH: af.render_forwarder_program()}
        install = commands.index(f"{af.CONFIG_TOOL_PATH} forwarder-install '{af.FORWARDER_CANDIDATE_PATH}' '{{{{ version }}}}'")
        assert install < next(i for i, c in enumerate(commands) if c == "systemctl daemon-reload")
    assert f"  {af.CONFIG_TOOL_PATH} forwarder-verify" in host_step(stack, "upgrade")


def test_your_agent_with_a_gateway_gets_the_forwarder_too() -> None:
    config = af.AgentConfigFile(path="/etc/otelcol-contrib/config.yaml", text="receivers: {}\n",
                                validate_command='/usr/bin/otelcol-contrib validate --config="$CONFIG"')
    stack, rollout = support(agent=AgentSource.distributor(service="otelcol-contrib", package_name="OtelcolContrib"),
                             agent_config=config, gateway=GATEWAY)
    files = written_files(host_step(stack, "upgrade"))
    assert json.loads(files[af.FORWARDER_CANDIDATE_PATH]) == ac.render_forwarder_config(GATEWAY)
    assert "PartOf=otelcol-contrib.service" in files[f"/etc/systemd/system/{af.FORWARDER_UNIT}"]
    assert files[af.CANDIDATE_PATH] == config.text


def test_without_a_gateway_there_is_no_forwarder() -> None:
    stack, rollout = support(agent=AgentSource.cloudwatch_agent())
    assert rollout.data_path.forwarder_config_text is None
    assert not any("forwarder" in line for line in host_step(stack, "upgrade"))
