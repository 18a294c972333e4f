"""The buffer fleet in Terraform: ECS Fargate collectors behind the gateway, with the same rendered configs.

Mirrors :class:`telemetry_shunt.constructs.buffer_fleet.BufferFleet`: one Fargate service per collector the
gateway routes to (Vector, OpenTelemetry), registered in the gateway's target groups through ECS's native
VPC Lattice integration, disk buffers on the task's ephemeral storage, a deployment circuit breaker with
rollback, autoscaling on CPU and on ingested events per task, an encrypted versioned archive bucket, and
security groups that admit only the Lattice prefix lists. The configs, their encoding, ports, images, metric
names and the launch command all come from ``core``. Vendor credentials are Secrets Manager ARNs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from constructs import Construct

from telemetry_shunt.core import collectors as cc
from telemetry_shunt.core import contract
from telemetry_shunt.core.contract import (
    DEFAULT_ARCHIVE_RETENTION_DAYS,
    DEFAULT_TARGET_CPU_PERCENT,
    DEFAULT_TARGET_EVENTS_PER_TASK_PER_SECOND,
)
from telemetry_shunt.core.images import image_for
from telemetry_shunt.core.policy import policy_json
from telemetry_shunt.errors import ValidationError
from telemetry_shunt.terraform import _aws as aws
from telemetry_shunt.terraform.network import (
    ConcentratorVpc,
    StackEnvironment,
    TelemetryGateway,
    acknowledge_checkov,
    log_group_key,
)

INSIGHTS_NAMESPACE = "ECS/ContainerInsights"
TRAFFIC_PORT_NAME = "traffic"
HEALTH_PORT_NAME = "health"
LATTICE_INFRASTRUCTURE_POLICY = "AmazonECSInfrastructureRolePolicyForVpcLattice"
TASK_EXECUTION_POLICY = "service-role/AmazonECSTaskExecutionRolePolicy"
_SECRET_ARN = re.compile(r"arn:(aws|aws-cn|aws-us-gov):secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+",
                         re.ASCII)
_NAME = {"vector": "Vector", "otel": "Otel"}
_SHORT_RETENTION = ("Collector process logs and EMF self-metrics, kept 30 days as in the CDK flavour: they serve "
                    "debugging; the telemetry itself is archived in S3 and CloudWatch metrics keep their own history.")


def terraform_literal(text: str) -> str:
    """``text`` as a Terraform string literal: its own ``${`` and ``%{`` escaped, so Terraform passes it on verbatim."""
    return text.replace("${", "$${").replace("%{", "%%{")


def _assume(service: str) -> str:
    return policy_json([{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": service}}])


def _whole(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValidationError(f"{name} must be a whole number {bound}, got {value!r}")
    return value


class BufferFleet(Construct):
    """Collectors for every collector kind ``gateway`` routes to, in ``vpc``'s collector subnets."""

    def __init__(self, scope: Construct, id: str, *, vpc: ConcentratorVpc, gateway: TelemetryGateway,
                 sinks: Sequence[cc.Sink] | None = None, secrets: Mapping[str, str] | None = None,
                 buffer: cc.BufferPolicy | None = None, ephemeral_storage_gib: int = 50, cpu: int = 1024,
                 memory_limit_mib: int = 2048, min_tasks_per_az: int = 1, max_tasks: int = 20,
                 target_cpu_percent: int = DEFAULT_TARGET_CPU_PERCENT,
                 target_events_per_task_per_second: int = DEFAULT_TARGET_EVENTS_PER_TASK_PER_SECOND,
                 archive_retention_days: int = DEFAULT_ARCHIVE_RETENTION_DAYS, access_logs_bucket_id: str | None = None,
                 add_s3_gateway_endpoint: bool = True, fleet_name: str | None = None, alarms: bool = False,
                 alarm_topic_arn: str | None = None) -> None:
        super().__init__(scope, id)
        paths = cc.validate_paths(cc.group_paths(gateway.routes))
        self._sinks = cc.validate_sinks([cc.S3ArchiveSink()] if sinks is None else sinks)
        self._secrets = self._check_secrets(dict(secrets or {}))
        _whole("min_tasks_per_az", min_tasks_per_az, 1)
        _whole("target_cpu_percent", target_cpu_percent, 1, 95)
        _whole("target_events_per_task_per_second", target_events_per_task_per_second, 1)
        _whole("archive_retention_days", archive_retention_days, 91)
        self.fleet_name = fleet_name or self.node.path.replace("/", "-")
        # Render (and so validate) every config before creating anything.
        self.configs: Mapping[str, dict[str, Any]] = MappingProxyType({
            kind: cc.render_config(kind, paths=p, sinks=self._sinks, ephemeral_storage_gib=ephemeral_storage_gib,
                                   buffer=buffer or cc.BufferPolicy(), fleet_name=self.fleet_name)
            for kind, p in paths.items()})
        self.az_count = len(vpc.availability_zones)
        self.min_tasks = min_tasks_per_az * self.az_count
        _whole("max_tasks", max_tasks, self.min_tasks)
        self.env = env = StackEnvironment.of(self)
        self.vpc = vpc
        self.s3_endpoint = (aws.VpcEndpoint(self, "S3GatewayEndpoint", vpc_id=vpc.vpc_id, vpc_endpoint_type="Gateway",
                                            service_name=f"com.amazonaws.{env.region}.s3",
                                            route_table_ids=[t.id for t in vpc.private_route_tables])
                            if add_s3_gateway_endpoint else None)
        self.cluster = aws.EcsCluster(self, "Cluster", name=f"{self.fleet_name}"[:255],
                                      setting=[aws.EcsClusterSetting(name="containerInsights", value="enhanced")])
        self.archive_bucket = self._archive_bucket(archive_retention_days, access_logs_bucket_id)
        self.infrastructure_role = aws.IamRole(
            self, "LatticeInfrastructureRole", assume_role_policy=_assume("ecs.amazonaws.com"),
            description="Lets ECS register and deregister the fleet's tasks in the gateway's Lattice target groups")
        aws.IamRolePolicyAttachment(self, "LatticeInfrastructurePolicy", role=self.infrastructure_role.name,
                                    policy_arn=f"arn:{env.partition}:iam::aws:policy/{LATTICE_INFRASTRUCTURE_POLICY}")
        self.log_key = log_group_key(self, "LogKey", env)
        self.metrics_log_group = (
            aws.CloudwatchLogGroup(self, "CollectorMetrics", name_prefix="/telemetry-shunt/collector-metrics/",
                                   retention_in_days=30, kms_key_id=self.log_key.arn)
            if "otel" in paths else None)
        if self.metrics_log_group is not None:
            acknowledge_checkov(self.metrics_log_group, "CKV_AWS_338", _SHORT_RETENTION)
        self.services: dict[str, aws.EcsService] = {}
        self.security_groups: dict[str, aws.SecurityGroup] = {}
        self.task_definitions: dict[str, aws.EcsTaskDefinition] = {}
        for kind in paths:
            self._collector(kind, gateway.target_groups[kind], ephemeral_storage_gib=ephemeral_storage_gib, cpu=cpu,
                            memory_limit_mib=memory_limit_mib, max_tasks=max_tasks, target_cpu_percent=target_cpu_percent,
                            target_events_per_task_per_second=target_events_per_task_per_second)
        self.alarms: list[aws.CloudwatchMetricAlarm] = []
        if alarms:
            self.add_alarms(alarm_topic_arn=alarm_topic_arn)

    # --- alarms (the CDK flavour's BufferFleet.add_alarms, same metrics and thresholds; a test compares them) ---

    def _insights(self, kind: str, name: str, stat: str, period: int) -> aws.CloudwatchMetricAlarmMetricQueryMetric:
        return aws.CloudwatchMetricAlarmMetricQueryMetric(
            namespace=INSIGHTS_NAMESPACE, metric_name=name, stat=stat, period=period,
            dimensions={"ClusterName": self.cluster.name, "ServiceName": self.services[kind].name})

    def add_alarms(self, *, alarm_topic_arn: str | None = None, disk_used_percent: float = 80,
                   dropped_events_per_5_minutes: float = 1, sink_errors_per_5_minutes: float = 10,
                   unhealthy_minutes: int = 10) -> list[aws.CloudwatchMetricAlarm]:
        """Per collector: buffer disk fullness, dropped events, sink errors, tasks that never become healthy,
        running tasks below the per-AZ minimum (actions to ``alarm_topic_arn`` when given)."""
        _whole("unhealthy_minutes", unhealthy_minutes, 1, 1440)
        actions = [alarm_topic_arn] if alarm_topic_arn else None
        created: list[aws.CloudwatchMetricAlarm] = []

        def alarm(scope: Construct, id: str, description: str, threshold: float, periods: int, comparison: str,
                  missing: str, **metric: Any) -> None:
            created.append(aws.CloudwatchMetricAlarm(
                scope, id, alarm_name=f"{self.fleet_name}-{scope.node.id}-{id}"[:255], alarm_description=description,
                threshold=threshold, evaluation_periods=periods, comparison_operator=comparison,
                treat_missing_data=missing, alarm_actions=actions, ok_actions=actions, **metric))

        def query(id: str, metric: aws.CloudwatchMetricAlarmMetricQueryMetric) -> aws.CloudwatchMetricAlarmMetricQuery:
            return aws.CloudwatchMetricAlarmMetricQuery(id=id, metric=metric, return_data=False)

        for kind in self.services:
            scope = Construct(self, f"{_NAME[kind]}Alarms")
            collector = {"namespace": cc.METRICS_NAMESPACE, "period": 300, "statistic": "Sum",
                         "dimensions": {cc.COLLECTOR_DIMENSION: kind, cc.FLEET_DIMENSION: self.fleet_name}}
            alarm(scope, "DiskFull", f"{kind} buffers fill the task's ephemeral storage; Vector exits on a full disk",
                  disk_used_percent, 3, "GreaterThanOrEqualToThreshold", "notBreaching", metric_query=[
                      aws.CloudwatchMetricAlarmMetricQuery(id="expr", expression="100 * used / reserved", return_data=True,
                                                           label=f"{kind} ephemeral storage used (%)"),
                      query("used", self._insights(kind, "EphemeralStorageUtilized", "Maximum", 300)),
                      query("reserved", self._insights(kind, "EphemeralStorageReserved", "Minimum", 300))])
            alarm(scope, "DroppedEvents", f"{kind} dropped events at the concentrator (full buffer or malformed records)",
                  dropped_events_per_5_minutes, 1, "GreaterThanOrEqualToThreshold", "notBreaching",
                  metric_name=cc.METRIC_DROPPED, **collector)
            alarm(scope, "SinkErrors", f"{kind} fails to deliver to the vendor or the archive; buffers are filling",
                  sink_errors_per_5_minutes, 2, "GreaterThanOrEqualToThreshold", "notBreaching",
                  metric_name=cc.METRIC_SINK_ERRORS, **collector)
            alarm(scope, "UnhealthyTargets", f"{kind} tasks keep failing to become healthy (ECS replaces tasks that fail "
                                             "Lattice health checks, so running stays below desired)",
                  1, unhealthy_minutes, "GreaterThanOrEqualToThreshold", "notBreaching", metric_query=[
                      aws.CloudwatchMetricAlarmMetricQuery(id="expr", expression="desired - running", return_data=True),
                      query("desired", self._insights(kind, "DesiredTaskCount", "Maximum", 60)),
                      query("running", self._insights(kind, "RunningTaskCount", "Minimum", 60))])
            alarm(scope, "BelowMinimumTasks", f"{kind} runs fewer than {self.min_tasks} tasks (the per-AZ minimum)",
                  self.min_tasks, 3, "LessThanThreshold", "breaching", namespace=INSIGHTS_NAMESPACE,
                  metric_name="RunningTaskCount", statistic="Minimum", period=60,
                  dimensions={"ClusterName": self.cluster.name, "ServiceName": self.services[kind].name})
        self.alarms.extend(created)
        return created

    def _check_secrets(self, secrets: dict[str, str]) -> dict[str, str]:
        for name, arn in secrets.items():
            if not isinstance(arn, str) or not (aws.Token.is_unresolved(arn) or _SECRET_ARN.fullmatch(arn)):
                raise ValidationError(f"secrets[{name!r}] must be a Secrets Manager secret ARN (the value never enters "
                                      f"the configuration), got {arn!r}")
        cc.check_secret_names(self._sinks, secrets)
        return secrets

    def _archive_bucket(self, retention_days: int, access_logs_bucket_id: str | None) -> aws.S3Bucket:
        bucket = aws.S3Bucket(self, "Archive", bucket_prefix="telemetry-archive-", force_destroy=False)
        aws.S3BucketPublicAccessBlock(self, "ArchivePublicAccessBlock", bucket=bucket.id, block_public_acls=True,
                                      block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True)
        aws.S3BucketServerSideEncryptionConfigurationA(self, "ArchiveEncryption", bucket=bucket.id, rule=[
            aws.S3BucketServerSideEncryptionConfigurationRuleA(
                apply_server_side_encryption_by_default=aws.S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                    sse_algorithm="AES256"))])
        aws.S3BucketVersioningA(self, "ArchiveVersioning", bucket=bucket.id,
                                versioning_configuration=aws.S3BucketVersioningVersioningConfiguration(status="Enabled"))
        aws.S3BucketLifecycleConfiguration(self, "ArchiveLifecycle", bucket=bucket.id, rule=[
            aws.S3BucketLifecycleConfigurationRule(
                id="tier-then-expire", status="Enabled", filter=[aws.S3BucketLifecycleConfigurationRuleFilter(prefix="")],
                abort_incomplete_multipart_upload=[aws.S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(
                    days_after_initiation=7)],
                transition=[aws.S3BucketLifecycleConfigurationRuleTransition(days=30, storage_class="STANDARD_IA"),
                            aws.S3BucketLifecycleConfigurationRuleTransition(days=90, storage_class="GLACIER_IR")],
                expiration=[aws.S3BucketLifecycleConfigurationRuleExpiration(days=retention_days)],
                noncurrent_version_expiration=[aws.S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(
                    noncurrent_days=30)])])
        aws.S3BucketPolicy(self, "ArchivePolicy", bucket=bucket.id, policy=policy_json([{
            "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
            "Resource": [bucket.arn, f"{bucket.arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]))
        if access_logs_bucket_id is not None:
            aws.S3BucketLoggingA(self, "ArchiveLogging", bucket=bucket.id, target_bucket=access_logs_bucket_id,
                                 target_prefix="archive/")
        else:
            acknowledge_checkov(bucket, "CKV_AWS_18", "No access_logs_bucket_id was given: only the fleet's task roles write "
                                                      "to the archive; CloudTrail records the bucket's management calls.")
        acknowledge_checkov(bucket, "CKV_AWS_144", "The archive is the vendor-outage copy, not the system of record; "
                                                   "replicate it from your own account policy if you need a second Region.")
        acknowledge_checkov(bucket, "CKV2_AWS_62", "Nothing consumes archive object events; it is read on demand after "
                                                   "a vendor outage.")
        acknowledge_checkov(bucket, "CKV_AWS_145", "S3-managed encryption (AES256), as in the CDK flavour; the collectors "
                                                   "write with s3:PutObject only and need no key grant.")
        return bucket

    def _collector(self, kind: str, target_group: aws.VpclatticeTargetGroup, *, ephemeral_storage_gib: int, cpu: int,
                   memory_limit_mib: int, max_tasks: int, target_cpu_percent: int,
                   target_events_per_task_per_second: int) -> None:
        scope = Construct(self, _NAME[kind])
        env = self.env
        ports = contract.COLLECTOR_PORTS[kind]
        sg = aws.SecurityGroup(scope, "SecurityGroup", vpc_id=self.vpc.vpc_id, name_prefix=f"telemetry-{kind}-",
                               description=f"{kind} collectors: Lattice only in, HTTPS out to the vendor and AWS APIs",
                               revoke_rules_on_delete=True)
        for i, prefix_list in enumerate(env.lattice_prefix_list_ids()):
            for port, what in ((ports.traffic, "traffic port"), (ports.health, "health checks")):
                aws.VpcSecurityGroupIngressRule(scope, f"FromLattice{i + 1}{what.split()[0].capitalize()}",
                                                security_group_id=sg.id, prefix_list_id=prefix_list, ip_protocol="tcp",
                                                from_port=port, to_port=port, description=f"Lattice to the {kind} {what}")
        aws.VpcSecurityGroupEgressRule(scope, "HttpsOut", security_group_id=sg.id, cidr_ipv4="0.0.0.0/0", ip_protocol="tcp",
                                       from_port=443, to_port=443,
                                       description="HTTPS to the vendor, S3 and AWS APIs (NAT/endpoints)")
        log_group = aws.CloudwatchLogGroup(scope, "Logs", name_prefix=f"/telemetry-shunt/{kind}/", retention_in_days=30,
                                           kms_key_id=self.log_key.arn)
        acknowledge_checkov(log_group, "CKV_AWS_338", _SHORT_RETENTION)
        execution_role = aws.IamRole(scope, "ExecutionRole", assume_role_policy=_assume("ecs-tasks.amazonaws.com"))
        aws.IamRolePolicyAttachment(scope, "ExecutionPolicy", role=execution_role.name,
                                    policy_arn=f"arn:{env.partition}:iam::aws:policy/{TASK_EXECUTION_POLICY}")
        needed = cc.required_secrets(self._sinks)
        if needed:
            aws.IamRolePolicy(scope, "ReadSecrets", role=execution_role.id, policy=policy_json([{
                "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                "Resource": [self._secrets[n] for n in needed]}]))
        task_role = aws.IamRole(scope, "TaskRole", assume_role_policy=_assume("ecs-tasks.amazonaws.com"))
        aws.IamRolePolicy(scope, "TaskPolicy", role=task_role.id, policy=policy_json(self._task_statements(kind)))
        environment = {cc.CONFIG_ENV[kind]: terraform_literal(cc.encode_config(kind, self.configs[kind])),
                       cc.ENV_REGION: env.region,
                       cc.ENV_ARCHIVE_BUCKET: self.archive_bucket.bucket}
        if kind == "otel" and self.metrics_log_group is not None:
            environment[cc.ENV_METRICS_LOG_GROUP] = self.metrics_log_group.name
        container: dict[str, Any] = {
            "name": "Collector", "image": image_for(kind), "essential": True,
            "environment": [{"name": k, "value": v} for k, v in environment.items()],
            "secrets": [{"name": n, "valueFrom": self._secrets[n]} for n in needed],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": log_group.name, "awslogs-region": env.region, "awslogs-stream-prefix": kind}},
            "portMappings": [
                {"containerPort": ports.traffic, "protocol": "tcp", "name": TRAFFIC_PORT_NAME, "appProtocol": "http"},
                {"containerPort": ports.health, "protocol": "tcp", "name": HEALTH_PORT_NAME}],
            "mountPoints": [{"containerPath": cc.BUFFER_DIRECTORY[kind], "sourceVolume": "buffer", "readOnly": False}],
            "stopTimeout": 60,
        }
        if kind == "vector":
            container["entryPoint"] = ["/bin/sh", "-c"]
            container["command"] = [cc.vector_launch_command(needed)]
        else:
            container["command"] = [f"--config=env:{cc.CONFIG_ENV['otel']}"]
            # The contrib image runs as uid 10001, but Fargate task volumes are owned by root (as in the CDK flavour).
            container["user"] = "0"
        task = aws.EcsTaskDefinition(
            scope, "TaskDefinition", family=f"{self.fleet_name}-{kind}"[:255], requires_compatibilities=["FARGATE"],
            network_mode="awsvpc", cpu=str(cpu), memory=str(memory_limit_mib), execution_role_arn=execution_role.arn,
            task_role_arn=task_role.arn, container_definitions=json.dumps([container], separators=(",", ":")),
            ephemeral_storage=(aws.EcsTaskDefinitionEphemeralStorage(size_in_gib=ephemeral_storage_gib)
                               if ephemeral_storage_gib > cc.EPHEMERAL_STORAGE_GIB_MIN else None),
            runtime_platform=aws.EcsTaskDefinitionRuntimePlatform(operating_system_family="LINUX", cpu_architecture="X86_64"),
            volume=[aws.EcsTaskDefinitionVolume(name="buffer")])
        service = aws.EcsService(
            scope, "Service", name=f"{self.fleet_name}-{kind}"[:255], cluster=self.cluster.arn, task_definition=task.arn,
            desired_count=self.min_tasks, launch_type="FARGATE", deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200, health_check_grace_period_seconds=60, availability_zone_rebalancing="ENABLED",
            deployment_circuit_breaker=aws.EcsServiceDeploymentCircuitBreaker(enable=True, rollback=True),
            network_configuration=aws.EcsServiceNetworkConfiguration(
                subnets=self.vpc.collector_subnet_ids, security_groups=[sg.id], assign_public_ip=False),
            vpc_lattice_configurations=[aws.EcsServiceVpcLatticeConfigurations(
                role_arn=self.infrastructure_role.arn, target_group_arn=target_group.arn, port_name=TRAFFIC_PORT_NAME)],
            lifecycle={"ignore_changes": ["desired_count"]})  # autoscaling owns the count after creation
        resource_id = f"service/{self.cluster.name}/{service.name}"
        target = aws.AppautoscalingTarget(scope, "ScalingTarget", service_namespace="ecs", resource_id=resource_id,
                                          scalable_dimension="ecs:service:DesiredCount", min_capacity=self.min_tasks,
                                          max_capacity=max_tasks, depends_on=[service])
        aws.AppautoscalingPolicy(
            scope, "CpuScaling", name=f"{self.fleet_name}-{kind}-cpu"[:255], policy_type="TargetTrackingScaling",
            service_namespace="ecs", resource_id=target.resource_id, scalable_dimension=target.scalable_dimension,
            target_tracking_scaling_policy_configuration=aws.AppautoscalingPolicyTargetTrackingScalingPolicyConfiguration(
                target_value=target_cpu_percent, scale_in_cooldown=300, scale_out_cooldown=60,
                predefined_metric_specification=aws.AppautoscalingPolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecification(
                    predefined_metric_type="ECSServiceAverageCPUUtilization")))
        aws.AppautoscalingPolicy(
            scope, "IngestRateScaling", name=f"{self.fleet_name}-{kind}-ingest"[:255], policy_type="TargetTrackingScaling",
            service_namespace="ecs", resource_id=target.resource_id, scalable_dimension=target.scalable_dimension,
            target_tracking_scaling_policy_configuration=aws.AppautoscalingPolicyTargetTrackingScalingPolicyConfiguration(
                target_value=target_events_per_task_per_second * cc.SELF_METRICS_INTERVAL_SECONDS,
                scale_in_cooldown=300, scale_out_cooldown=60,
                customized_metric_specification=aws.AppautoscalingPolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecification(
                    namespace=cc.METRICS_NAMESPACE, metric_name=cc.METRIC_INGESTED, statistic="Average",
                    dimensions=[aws.AppautoscalingPolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationDimensions(
                        name=n, value=v) for n, v in ((cc.COLLECTOR_DIMENSION, kind), (cc.FLEET_DIMENSION, self.fleet_name))])))
        self.services[kind] = service
        self.security_groups[kind] = sg
        self.task_definitions[kind] = task

    def _task_statements(self, kind: str) -> list[dict[str, Any]]:
        prefixes = sorted({s.prefix for s in self._sinks if isinstance(s, cc.S3ArchiveSink)})
        statements: list[dict[str, Any]] = []
        if prefixes:
            statements.append({"Sid": "WriteArchive", "Effect": "Allow", "Action": "s3:PutObject",
                               "Resource": [f"{self.archive_bucket.arn}/{p}{kind}*" for p in prefixes]})
        if kind == "vector":
            statements.append({"Sid": "PublishCollectorMetrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData",
                               "Resource": "*", "Condition": {"StringEquals": {"cloudwatch:namespace": cc.METRICS_NAMESPACE}}})
        elif self.metrics_log_group is not None:
            statements.append({"Sid": "PublishCollectorMetricsAsEmf", "Effect": "Allow",
                               "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                               "Resource": [self.metrics_log_group.arn, f"{self.metrics_log_group.arn}:*"]})
        return statements
