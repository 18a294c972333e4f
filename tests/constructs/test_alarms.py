"""The default app is operable: every alarm of the telemetry path (gateway, fleet, heartbeats) notifies one
encrypted SNS topic, each with its metric, threshold and missing-data treatment; one dashboard shows the path."""

from __future__ import annotations

import json

import pytest

import app as default_app
from tests.cdk_support import new_app, resources
from tools.cdkcheck import synth_with_nag

EMAIL = "oncall@example.com"


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    app = new_app(tmp_path_factory.mktemp("alarms"), **{"telemetry-shunt:alarm-email": EMAIL})
    stacks = default_app.build(app)
    assembly, findings = synth_with_nag(app)
    assert assembly is not None, "\n".join(map(str, findings))
    return {key: assembly.get_stack_by_name(stack.stack_name).template for key, stack in stacks.items()}


def _topic(templates) -> str:
    (topic_id,) = resources(templates["concentrator"], "AWS::SNS::Topic")
    return topic_id


def _alarms(template) -> dict[str, dict]:
    return {k: v["Properties"] for k, v in resources(template, "AWS::CloudWatch::Alarm").items()}


def _named(alarms: dict[str, dict], prefix: str) -> dict:
    (props,) = [p for k, p in alarms.items() if k.startswith(prefix)]
    return props


def _metric(props: dict) -> tuple[str, str, list[str]]:
    if "MetricName" in props:
        return props["Namespace"], props["MetricName"], [d["Name"] for d in props.get("Dimensions", [])]
    names = [(m["MetricStat"]["Metric"]["Namespace"], m["MetricStat"]["Metric"]["MetricName"])
             for m in props["Metrics"] if "MetricStat" in m]
    return names[0][0], ",".join(sorted(n for _, n in names)), []


# (logical-id prefix, namespace, metric, dimensions, statistic, period s, threshold, evaluation periods,
#  datapoints to alarm, comparison, missing data)
GATEWAY = [
    ("GatewayAlarmsVectorTarget5xx", "AWS/VpcLattice", "HTTPCode_5XX_Count", ["TargetGroup"], "Sum", 60, 5, 5, 3,
     "GreaterThanThreshold", "notBreaching"),
    ("GatewayAlarmsOtelTarget5xx", "AWS/VpcLattice", "HTTPCode_5XX_Count", ["TargetGroup"], "Sum", 60, 5, 5, 3,
     "GreaterThanThreshold", "notBreaching"),
    ("GatewayAlarmsDenied4xx", "AWS/VpcLattice", "HTTPCode_4XX_Count", ["Service"], "Sum", 300, 50, 2, None,
     "GreaterThanThreshold", "notBreaching"),
    ("GatewayAlarmsRequestTime", "AWS/VpcLattice", "RequestTime", ["Service"], "p99", 60, 2000, 5, 3,
     "GreaterThanThreshold", "notBreaching"),
]


@pytest.mark.parametrize(("prefix", "namespace", "metric", "dims", "stat", "period", "threshold", "evaluations",
                          "datapoints", "comparison", "missing"), GATEWAY)
def test_gateway_alarms(templates, prefix, namespace, metric, dims, stat, period, threshold, evaluations, datapoints,
                        comparison, missing):
    props = _named(_alarms(templates["concentrator"]), prefix)
    assert _metric(props) == (namespace, metric, dims)
    assert props.get("Statistic", props.get("ExtendedStatistic")) == stat
    assert (props["Period"], props["Threshold"], props["EvaluationPeriods"], props.get("DatapointsToAlarm")) == (
        period, threshold, evaluations, datapoints)
    assert (props["ComparisonOperator"], props["TreatMissingData"]) == (comparison, missing)
    topic = {"Ref": _topic(templates)}
    assert props["AlarmActions"] == [topic] and props["OKActions"] == [topic]


def test_gateway_5xx_alarms_watch_the_collectors_target_groups(templates):
    template = templates["concentrator"]
    groups = resources(template, "AWS::VpcLattice::TargetGroup")
    for kind in ("Vector", "Otel"):
        props = _named(_alarms(template), f"GatewayAlarms{kind}Target5xx")
        (dimension,) = props["Dimensions"]
        target_group = dimension["Value"]["Fn::GetAtt"]
        assert target_group[1] == "Id" and target_group[0] in groups and kind in target_group[0]


FLEET = [
    # name, metric(s), threshold, evaluations, comparison, missing data
    ("DiskFull", "EphemeralStorageReserved,EphemeralStorageUtilized", 80, 3, "GreaterThanOrEqualToThreshold", "notBreaching"),
    ("DroppedEvents", "DroppedEvents", 1, 1, "GreaterThanOrEqualToThreshold", "notBreaching"),
    ("SinkErrors", "SinkErrors", 10, 2, "GreaterThanOrEqualToThreshold", "notBreaching"),
    ("UnhealthyTargets", "DesiredTaskCount,RunningTaskCount", 1, 10, "GreaterThanOrEqualToThreshold", "notBreaching"),
    ("BelowMinimumTasks", "RunningTaskCount", 2, 3, "LessThanThreshold", "breaching"),  # 1 task per AZ, 2 AZs
]


@pytest.mark.parametrize("collector", ["Vector", "Otel"])
@pytest.mark.parametrize(("name", "metric", "threshold", "evaluations", "comparison", "missing"), FLEET)
def test_fleet_alarms_notify_the_topic(templates, collector, name, metric, threshold, evaluations, comparison, missing):
    alarms = _alarms(templates["concentrator"])
    (props,) = [p for k, p in alarms.items() if k.startswith("BufferFleet") and collector in k and name in k]
    assert _metric(props)[1] == metric
    assert (props["Threshold"], props["EvaluationPeriods"]) == (threshold, evaluations)
    assert (props["ComparisonOperator"], props["TreatMissingData"]) == (comparison, missing)
    topic = {"Ref": _topic(templates)}
    assert props["AlarmActions"] == [topic] and props["OKActions"] == [topic]


def test_every_alarm_of_the_default_app_has_an_action(templates):
    for key in ("concentrator", "agent_control"):
        for logical_id, props in _alarms(templates[key]).items():
            assert props.get("AlarmActions") and props.get("OKActions"), f"{key}/{logical_id} notifies nobody"


def test_heartbeat_alarms_notify_the_concentrators_topic(templates):
    alarms = _alarms(templates["agent_control"])
    assert len(alarms) == 2  # one per agent AZ in cdk.json
    for props in alarms.values():
        assert props["MetricName"] == "Heartbeat" or "Heartbeat" in json.dumps(props)
        assert props["TreatMissingData"] == "breaching"
        (action,) = props["AlarmActions"]
        assert "Fn::ImportValue" in action and props["OKActions"] == [action]


def test_topic_is_encrypted_with_a_key_cloudwatch_may_use_and_subscribes_the_email(templates):
    template = templates["concentrator"]
    topic = template["Resources"][_topic(templates)]["Properties"]
    key_id = topic["KmsMasterKeyId"]["Fn::GetAtt"][0]
    statements = template["Resources"][key_id]["Properties"]["KeyPolicy"]["Statement"]
    (cloudwatch,) = [s for s in statements if s["Principal"].get("Service") == "cloudwatch.amazonaws.com"]
    assert sorted(cloudwatch["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    (subscription,) = resources(template, "AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Protocol"] == "email" and subscription["Properties"]["Endpoint"] == EMAIL


def test_without_the_context_key_there_is_no_subscription(tmp_path):
    app = new_app(tmp_path)
    stacks = default_app.build(app)
    template = app.synth().get_stack_by_name(stacks["concentrator"].stack_name).template
    assert resources(template, "AWS::SNS::Subscription") == {}
    assert len(resources(template, "AWS::SNS::Topic")) == 1


def _dashboard_text(template) -> str:
    bodies = []
    for props in (r["Properties"] for r in resources(template, "AWS::CloudWatch::Dashboard").values()):
        body = props["DashboardBody"]
        parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
        bodies.append("".join(p if isinstance(p, str) else "<token>" for p in parts))
    return "\n".join(bodies)


def test_one_dashboard_shows_gateway_fleet_buffers_drops_and_sinks(templates):
    text = _dashboard_text(templates["concentrator"])
    for title in ("Gateway requests, 4xx, 5xx", "Gateway 5xx by collector target group", "Gateway request time p99",
                  "Fleet tasks (running vs desired)", "Fleet CPU", "Buffers: vector ephemeral storage used",
                  "Dropped events", "Sinks: ingested events", "Sinks: sink errors", "Alarms"):
        assert title in text, title
    for metric in ("TotalRequestCount", "HTTPCode_4XX_Count", "HTTPCode_5XX_Count", "RequestTime", "RunningTaskCount",
                   "DroppedEvents", "SinkErrors", "IngestedEvents"):
        assert f'"{metric}"' in text, metric
