"""The gateway's CloudWatch metrics and opt-in alarms (mixed into :class:`TelemetryGateway`).

VPC Lattice publishes request metrics in the ``AWS/VpcLattice`` namespace every minute while requests
flow (VPC Lattice user guide, "CloudWatch metrics for Amazon VPC Lattice"): per service (dimension
``Service``) and per target group (dimension ``TargetGroup``): ``TotalRequestCount``, ``HTTPCode_4XX_Count``,
``HTTPCode_5XX_Count`` (Sum) and ``RequestTime`` (milliseconds). The dimension values used here are the
service's and target group's ids (``svc-...``, ``tg-...``); the user guide's table could not be read when
this was written, so confirm once after first traffic with
``aws cloudwatch list-metrics --namespace AWS/VpcLattice``. With no traffic nothing is published, so
every alarm here treats missing data as not breaching; silence from the agents is what the heartbeat
alarms of the agent-control stack catch.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from telemetry_shunt.constructs._metrics import one_minute

NAMESPACE = "AWS/VpcLattice"


class LatticeServiceMetrics:
    """``metric_*`` for a Lattice service with ``service_id`` and ``target_groups`` (collector -> CfnTargetGroup)."""

    service_id: str
    target_groups: dict[str, Any]
    alarms: list[cw.Alarm]

    def metric(self, metric_name: str, *, collector: str | None = None, **props: Any) -> cw.Metric:
        """A metric of this service, or of one collector's target group (``collector="vector"``)."""
        # The ids are deploy-time tokens, read from the constructs once (each read is a jsii round-trip).
        cache: dict[str | None, dict[str, str]] = self.__dict__.setdefault("_metric_dimensions", {})
        if collector not in cache:
            cache[collector] = ({"Service": self.service_id} if collector is None
                                else {"TargetGroup": self.target_groups[collector].attr_id})
        props.setdefault("statistic", "Sum")
        if "period" not in props:
            props["period"] = one_minute()
        return cw.Metric(namespace=NAMESPACE, metric_name=metric_name, dimensions_map=dict(cache[collector]), **props)

    def metric_requests(self, *, collector: str | None = None, **props: Any) -> cw.Metric:
        """Requests received (``TotalRequestCount``, Sum)."""
        return self.metric("TotalRequestCount", collector=collector, **props)

    def metric_4xx(self, **props: Any) -> cw.Metric:
        """4xx answers, including Lattice's own 403 when the auth policy denies a pusher and 404 off-route."""
        return self.metric("HTTPCode_4XX_Count", **props)

    def metric_5xx(self, *, collector: str | None = None, **props: Any) -> cw.Metric:
        """5xx answers; with ``collector``, those of that collector's target group (the targets' own)."""
        return self.metric("HTTPCode_5XX_Count", collector=collector, **props)

    def metric_request_time(self, **props: Any) -> cw.Metric:
        """Request time in milliseconds (default statistic p99)."""
        props.setdefault("statistic", "p99")
        return self.metric("RequestTime", **props)

    def add_alarms(
        self,
        *,
        target_5xx_per_minute: float = 5,
        denied_4xx_per_5_minutes: float = 50,
        request_time_p99_ms: float = 2000,
    ) -> list[cw.Alarm]:
        """Alarms (opt-in): collectors answering 5xx, a 4xx/403 surge (pushers denied), slow requests."""
        scope = Construct(self, "Alarms")  # type: ignore[arg-type]  # mixed into a Construct
        created: list[cw.Alarm] = []
        for kind in sorted(self.target_groups):
            created.append(cw.Alarm(
                scope, f"{kind.capitalize()}Target5xx",
                alarm_description=(f"The {kind} collectors answer 5xx to pushes (more than {target_5xx_per_minute:g} "
                                   "a minute in 3 of 5 minutes): see docs/alarms.md#gateway-target-5xx"),
                metric=self.metric_5xx(collector=kind),
                threshold=target_5xx_per_minute, evaluation_periods=5, datapoints_to_alarm=3,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ))
        created.append(cw.Alarm(
            scope, "Denied4xx",
            alarm_description=(f"More than {denied_4xx_per_5_minutes:g} 4xx answers in 5 minutes, twice in a row: "
                               "pushers are being denied (403) or push to unrouted paths (404): "
                               "see docs/alarms.md#gateway-denied-4xx"),
            metric=self.metric_4xx(period=Duration.minutes(5)),
            threshold=denied_4xx_per_5_minutes, evaluation_periods=2,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        ))
        created.append(cw.Alarm(
            scope, "RequestTime",
            alarm_description=(f"p99 request time above {request_time_p99_ms:g} ms for 3 of 5 minutes: collectors "
                               "are slow to accept pushes: see docs/alarms.md#gateway-request-time"),
            metric=self.metric_request_time(),
            threshold=request_time_p99_ms, evaluation_periods=5, datapoints_to_alarm=3,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        ))
        self.alarms = [*getattr(self, "alarms", []), *created]
        return created
