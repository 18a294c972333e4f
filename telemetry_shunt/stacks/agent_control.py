"""The agent-control stack: the kill switch and everything the rollout engine needs, in one account/Region."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from telemetry_shunt.constructs.agent_rollout_support import AgentRolloutSupport, AgentSource
from telemetry_shunt.constructs.kill_switch import KillSwitch
from telemetry_shunt.core.gateway_ref import GatewayRef
from telemetry_shunt.core.host_budgets import AgentBudgets
from telemetry_shunt.core.hostside import DistributorPackage


class AgentControlStack(Stack):
    """:class:`KillSwitch` + :class:`AgentRolloutSupport`, wired together.

    :param availability_zones: AZ names of the fleet (per-AZ flags and heartbeat alarms).
    :param agent: what the SSM documents install.
    :param operator_principal: who may assume the rollout operator role. Default: this account.
    :param fleet: the ``telemetry-shunt:fleet`` tag value the operator may command (literal, required).
    :param host_role_arn: the hosts' instance role in this stack's account; a policy attached to it grants
        reading the kill switch, publishing heartbeats and (for S3 artifacts) reading the artifact.
        Default: none (call ``stack.rollout.grant_host(role)`` yourself).
    :param poll_interval: how often hosts read the kill switch (at least 15 s). Default 45 s.
    :param gateway: the gateway the agents push to (the concentrator's GatewayRef); the ADOT collector's
        configuration is rendered for it. Default: none.
    :param budgets: the agent's host budgets. Default ``AgentBudgets()``.
    :param alarm_topic: where the heartbeat alarms send their ALARM and OK transitions (the default app
        passes the concentrator stack's alarm topic). Default: none (the alarms only change state).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        availability_zones: Sequence[str],
        agent: AgentSource,
        fleet: str,
        operator_principal: iam.IPrincipal | None = None,
        host_role_arn: str | None = None,
        poll_interval: Duration | None = None,  # None: the KillSwitch default, 45 s
        gateway: GatewayRef | None = None,
        budgets: AgentBudgets | None = None,
        alarm_topic: sns.ITopic | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        self.kill_switch = KillSwitch(self, "KillSwitch", availability_zones=availability_zones,
                                      poll_interval=poll_interval)
        self.rollout = AgentRolloutSupport(self, "AgentRollout", kill_switch=self.kill_switch, agent=agent,
                                           fleet=fleet, operator_principal=operator_principal, gateway=gateway,
                                           budgets=budgets)
        if alarm_topic is not None:
            action = cw_actions.SnsAction(alarm_topic)
            for alarm in self.rollout.heartbeat_alarms.values():
                alarm.add_alarm_action(action)
                alarm.add_ok_action(action)
        if host_role_arn is not None:
            self.rollout.grant_host(iam.Role.from_role_arn(self, "HostRole", host_role_arn))
        CfnOutput(self, "KillSwitchApplicationId", value=self.kill_switch.application_id)
        CfnOutput(self, "KillSwitchEnvironmentId", value=self.kill_switch.environment_id)
        CfnOutput(self, "KillSwitchProfileId", value=self.kill_switch.profile_id)
        CfnOutput(self, "KillSwitchDeploymentStrategyId", value=self.kill_switch.deployment_strategy_id)
        CfnOutput(self, "OperatorRoleArn", value=self.rollout.operator_role.role_arn,
                  description="Assume this role to run `shunt rollout` and `shunt kill`")
        CfnOutput(self, "StateTableName", value=self.rollout.table.table_name)
        if isinstance(agent.package, DistributorPackage):
            CfnOutput(self, "AgentPackageName", value=agent.package.name,
                      description="Distributor package whose versions `shunt rollout` installs (its --package)")
