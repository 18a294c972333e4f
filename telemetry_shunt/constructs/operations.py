"""What an operator needs on day one: one alarm topic and one dashboard for the whole telemetry path.

Both are opt-in building blocks; :class:`ConcentratorStack` uses them so the default app is operable.
The alarms themselves stay on the constructs that own the metrics (``TelemetryGateway.add_alarms``,
``BufferFleet.add_alarms``, the rollout support's heartbeat alarms); docs/alarms.md is the runbook.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from telemetry_shunt.core.validation import email_address

if TYPE_CHECKING:
    from telemetry_shunt.constructs.buffer_fleet import BufferFleet
    from telemetry_shunt.constructs.gateway import TelemetryGateway


class AlarmTopic(Construct):
    """An SNS topic for alarms: encrypted with its own rotated key (which CloudWatch of this account may use
    to publish), TLS-only, with an optional e-mail subscription (the recipient confirms it once)."""

    def __init__(self, scope: Construct, id: str, *, email: str | None = None) -> None:
        super().__init__(scope, id)
        self.key = kms.Key(self, "Key", enable_key_rotation=True, removal_policy=RemovalPolicy.DESTROY,
                           description="telemetry-shunt: encrypts the alarm topic")
        # CloudWatch alarms can publish to an encrypted topic only if the key lets CloudWatch use it.
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowCloudWatchAlarmsOfThisAccount",
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey"],
            resources=["*"],
            conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
        ))
        self.topic = sns.Topic(self, "Resource", master_key=self.key, enforce_ssl=True,
                               display_name="telemetry-shunt alarms")
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email_address(email)))

    def notify(self, alarms: Iterable[cw.Alarm]) -> None:
        """Send each alarm's ALARM and OK transitions to the topic."""
        action = cw_actions.SnsAction(self.topic)
        for alarm in alarms:
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)


def telemetry_dashboard(scope: Construct, id: str, *, gateway: TelemetryGateway, fleet: BufferFleet,
                        alarms: Iterable[cw.IAlarm] = ()) -> cw.Dashboard:
    """One dashboard for the path: gateway (requests, 4xx, 5xx, latency), fleet (tasks, CPU), buffers (disk),
    drops, and sinks (ingested vs sink errors), with the state of ``alarms`` on top."""
    dashboard = cw.Dashboard(scope, id, default_interval=Duration.hours(6))
    alarms = list(alarms)
    if alarms:
        dashboard.add_widgets(cw.AlarmStatusWidget(title="Alarms", alarms=alarms, width=24))
    kinds = sorted(fleet.services)
    dashboard.add_widgets(
        cw.TextWidget(markdown="## Gateway (VPC Lattice)", width=24, height=1),
        cw.GraphWidget(title="Gateway requests, 4xx, 5xx", width=8,
                       left=[gateway.metric_requests(), gateway.metric_4xx(), gateway.metric_5xx()]),
        cw.GraphWidget(title="Gateway 5xx by collector target group", width=8,
                       left=[gateway.metric_5xx(collector=k, label=f"{k} targets 5xx") for k in sorted(gateway.target_groups)]),
        cw.GraphWidget(title="Gateway request time p99 (ms)", width=8, left=[gateway.metric_request_time()]),
    )
    dashboard.add_widgets(
        cw.TextWidget(markdown="## Buffer fleet", width=24, height=1),
        cw.GraphWidget(title="Fleet tasks (running vs desired)", width=12,
                       left=[m for k in kinds for m in (fleet.metric_running_tasks(k), fleet.metric_desired_tasks(k))]),
        cw.GraphWidget(title="Fleet CPU (%)", width=12, left=[fleet.metric_cpu_utilization(k) for k in kinds]),
    )
    # One graph per collector: each disk expression names its inputs 'used' and 'reserved'.
    dashboard.add_widgets(*(
        cw.GraphWidget(title=f"Buffers: {k} ephemeral storage used (%)", width=24 // len(kinds),
                       left=[fleet.metric_disk_used_percent(k)])
        for k in kinds
    ))
    dashboard.add_widgets(
        cw.TextWidget(markdown="## Drops and sinks", width=24, height=1),
        cw.GraphWidget(title="Dropped events", width=8, left=[fleet.metric_dropped_events(k) for k in kinds]),
        cw.GraphWidget(title="Sinks: ingested events", width=8, left=[fleet.metric_ingested_events(k) for k in kinds]),
        cw.GraphWidget(title="Sinks: sink errors", width=8, left=[fleet.metric_sink_errors(k) for k in kinds]),
    )
    return dashboard
