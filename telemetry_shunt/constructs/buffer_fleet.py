"""BufferFleet: the collectors behind the gateway, on ECS Fargate in the concentrator VPC.

One Fargate service per collector kind the gateway routes to (Vector for ``/metrics``, the
OpenTelemetry Collector for OTLP), spread over at least two Availability Zones, registered in the
gateway's Lattice IP target groups by ECS itself (``VpcLatticeConfigurations``), so tasks stay
registered through replacements and deployments. Each task buffers on its ephemeral storage,
drops at the concentrator when the buffer is full (unless told to block), and sends to the vendor
over OTLP/HTTP and to an encrypted S3 archive. Configurations are rendered by
:mod:`telemetry_shunt.core.collectors`; images are pinned in :mod:`telemetry_shunt.core.images`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING

from aws_cdk import Annotations, Aws, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_vpclattice as vpclattice
from constructs import Construct

from telemetry_shunt.constructs._logs import log_group_key
from telemetry_shunt.constructs._metrics import one_minute
from telemetry_shunt.constructs._nag import acknowledge, skip_checkov
from telemetry_shunt.constructs._prefix_lists import lattice_prefix_lists
from telemetry_shunt.constructs.concentrator_vpc import collector_subnets_of
from telemetry_shunt.core import collectors as cc
from telemetry_shunt.core import contract
from telemetry_shunt.core.contract import (
    DEFAULT_ARCHIVE_RETENTION_DAYS,
    DEFAULT_TARGET_CPU_PERCENT,
    DEFAULT_TARGET_EVENTS_PER_TASK_PER_SECOND,
)
from telemetry_shunt.core.images import image_for
from telemetry_shunt.errors import ValidationError

if TYPE_CHECKING:
    from telemetry_shunt.constructs.gateway import TelemetryGateway

TRAFFIC_PORT_NAME = "traffic"
HEALTH_PORT_NAME = "health"
_CONSTRUCT_ID = MappingProxyType({"vector": "Vector", "otel": "Otel"})
_LATTICE_POLICY = "AmazonECSInfrastructureRolePolicyForVpcLattice"
_INSIGHTS = "ECS/ContainerInsights"


class BufferFleet(Construct):
    """Vector and/or OpenTelemetry Collector tasks behind the gateway's Lattice target groups.

    :param vpc: the concentrator VPC; tasks run in its private subnets (``vpc_subnets``) in >= 2 AZs.
    :param gateway: the ``TelemetryGateway`` in front of the fleet: its target groups and routes give
        ``target_groups`` and ``paths_by_collector`` (pass either ``gateway`` or those two).
    :param target_groups: the gateway's Lattice target groups (type ``IP``) keyed ``"vector"``/``"otel"``.
    :param paths_by_collector: the gateway's paths per collector, e.g. ``{"vector": ["/metrics"]}``;
        a service is created for each collector named here, and each needs a target group.
    :param sinks: where the collectors send (``OtlpHttpSink`` for the vendor, ``S3ArchiveSink``); default:
        the S3 archive only, as in ``ConcentratorStack``.
    :param secrets: Secrets Manager secrets by the environment variable a sink reads them from
        (``SecretEnv`` names); injected with ECS ``secrets``, never written into the template.
    :param vpc_subnets: default: the VPC's private subnets (with egress if any, else isolated), by the
        one rule ``concentrator_vpc.collector_subnets_of`` that ``ConcentratorVpc.collector_subnets`` uses.
    :param cluster: default: a new cluster with Container Insights (its metrics drive the disk and
        task-count alarms).
    :param buffer: disk budget and full-buffer policy; default: the ephemeral storage minus 4 GiB of
        headroom, dropping the newest events when full.
    :param ephemeral_storage_gib: Fargate ephemeral storage per task (20-200 GiB); default 50.
    :param cpu: task vCPU units; default 1024 (1 vCPU).
    :param memory_limit_mib: task memory; default 2048.
    :param min_tasks_per_az: tasks per AZ that autoscaling never goes below; default 1.
    :param max_tasks: autoscaling ceiling per collector; default 20.
    :param target_cpu_percent: CPU target for autoscaling; default 60.
    :param target_events_per_task_per_second: ingest-rate target per task; default 5,000.
    :param archive_retention: how long the archive keeps objects; default 400 days.
    :param access_logs_bucket: server access logs for the archive; default: none (acknowledged).
    :param add_s3_gateway_endpoint: add an S3 gateway endpoint to the VPC unless one exists; default True.
    :param alarms: create the default alarms (see :meth:`add_alarms`); default False.
    :param fleet_name: the ``Fleet`` dimension of the collectors' metrics; default: the construct path
        with ``/`` as ``-`` (unique in the app, so two fleets in one account never share a metric).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        gateway: TelemetryGateway | None = None,
        target_groups: Mapping[str, vpclattice.CfnTargetGroup] | None = None,
        paths_by_collector: Mapping[str, Sequence[str]] | None = None,
        sinks: Sequence[cc.Sink] | None = None,
        secrets: Mapping[str, secretsmanager.ISecret] | None = None,
        vpc_subnets: ec2.SubnetSelection | None = None,
        cluster: ecs.ICluster | None = None,
        buffer: cc.BufferPolicy | None = None,
        ephemeral_storage_gib: int = 50,
        cpu: int = 1024,
        memory_limit_mib: int = 2048,
        min_tasks_per_az: int = 1,
        max_tasks: int = 20,
        target_cpu_percent: int = DEFAULT_TARGET_CPU_PERCENT,
        target_events_per_task_per_second: int = DEFAULT_TARGET_EVENTS_PER_TASK_PER_SECOND,
        archive_retention: Duration | None = None,  # None: DEFAULT_ARCHIVE_RETENTION_DAYS (no jsii call at import)
        access_logs_bucket: s3.IBucket | None = None,
        add_s3_gateway_endpoint: bool = True,
        alarms: bool = False,
        fleet_name: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        archive_retention = Duration.days(DEFAULT_ARCHIVE_RETENTION_DAYS) if archive_retention is None else archive_retention
        if gateway is not None:
            if target_groups is not None or paths_by_collector is not None:
                raise ValidationError("gateway= wires the target groups and paths itself: drop target_groups= and "
                                      "paths_by_collector=")
            paths_by_collector = cc.group_paths(gateway.routes)
            target_groups = {kind: gateway.target_groups[kind] for kind in paths_by_collector}
        elif target_groups is None or paths_by_collector is None:
            raise ValidationError("BufferFleet needs gateway=<TelemetryGateway> (or both target_groups= and "
                                  "paths_by_collector=) to know what it serves")
        self._paths = cc.validate_paths(paths_by_collector)
        self._sinks = cc.validate_sinks([cc.S3ArchiveSink()] if sinks is None else sinks)
        buffer = buffer or cc.BufferPolicy()
        self._check_target_groups(target_groups)
        secret_map = self._check_secrets(secrets or {})
        if not isinstance(min_tasks_per_az, int) or min_tasks_per_az < 1:
            raise ValidationError(f"min_tasks_per_az must be a whole number >= 1, got {min_tasks_per_az!r}")
        if not 1 <= target_cpu_percent <= 95:
            raise ValidationError(f"target_cpu_percent must be between 1 and 95, got {target_cpu_percent!r}")
        if target_events_per_task_per_second <= 0:
            raise ValidationError(
                f"target_events_per_task_per_second must be positive, got {target_events_per_task_per_second!r}"
            )
        self.fleet_name = fleet_name or self.node.path.replace("/", "-")
        # Render (and so validate) every config before creating anything.
        self.configs: Mapping[str, dict] = MappingProxyType(
            {
                kind: cc.render_config(
                    kind, paths=paths, sinks=self._sinks, ephemeral_storage_gib=ephemeral_storage_gib, buffer=buffer,
                    fleet_name=self.fleet_name,
                )
                for kind, paths in self._paths.items()
            }
        )

        self.vpc = vpc
        self._subnets = collector_subnets_of(vpc, vpc_subnets)
        azs = vpc.select_subnets(**self._subnet_kwargs()).availability_zones
        # Env-agnostic stacks list AZs as distinct tokens (Fn::Select 0, 1, ...), so counting still works.
        if len(set(azs)) < 2:
            raise ValidationError(
                f"the fleet's subnets span {len(set(azs))} Availability Zone(s); it needs at least 2"
            )
        self.az_count = len(set(azs))
        self.min_tasks = min_tasks_per_az * self.az_count
        if max_tasks < self.min_tasks:
            raise ValidationError(
                f"max_tasks {max_tasks} is below the minimum of {self.min_tasks} "
                f"({min_tasks_per_az} per AZ x {self.az_count} AZs)"
            )
        self._warn_without_egress()
        if add_s3_gateway_endpoint and not _has_s3_gateway_endpoint(vpc):
            # S3 (the archive) goes through a gateway endpoint, never through the NAT or the app VPC.
            self.s3_endpoint: ec2.GatewayVpcEndpoint | None = ec2.GatewayVpcEndpoint(
                self, "S3GatewayEndpoint", vpc=vpc, service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self._subnets]
            )
        else:
            self.s3_endpoint = None

        self.cluster = cluster or ecs.Cluster(
            self, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
        )
        self.archive_bucket = self._archive_bucket(archive_retention, access_logs_bucket)
        self.infrastructure_role = iam.Role(
            self,
            "LatticeInfrastructureRole",
            assumed_by=iam.ServicePrincipal("ecs.amazonaws.com"),
            description="Lets ECS register and deregister the fleet's tasks in the gateway's Lattice target groups",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(_LATTICE_POLICY)],
        )
        acknowledge(
            self.infrastructure_role,
            f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{_LATTICE_POLICY}]",
            "AWS's managed ECS infrastructure policy for VPC Lattice is the documented role for ECS to register "
            "tasks in Lattice target groups; it only grants target registration and read-only describes.",
        )
        self.metrics_log_group = (
            logs.LogGroup(self, "CollectorMetrics", retention=logs.RetentionDays.ONE_MONTH,
                          removal_policy=RemovalPolicy.DESTROY, encryption_key=log_group_key(self))
            if "otel" in self._paths
            else None
        )
        self.services: dict[str, ecs.FargateService] = {}
        self._dimensions: dict[str, dict[str, str]] = {}
        self.security_groups: dict[str, ec2.SecurityGroup] = {}
        self.task_definitions: dict[str, ecs.FargateTaskDefinition] = {}
        for kind in self._paths:
            self._collector(
                kind,
                target_group=target_groups[kind],
                secrets=secret_map,
                ephemeral_storage_gib=ephemeral_storage_gib,
                cpu=cpu,
                memory_limit_mib=memory_limit_mib,
                max_tasks=max_tasks,
                target_cpu_percent=target_cpu_percent,
                target_events_per_task_per_second=target_events_per_task_per_second,
            )
        self.connections = ec2.Connections(security_groups=list(self.security_groups.values()))
        self.dashboard = self._dashboard()
        self.alarms: list[cw.Alarm] = []
        if alarms:
            self.add_alarms()

    # --- validation ---------------------------------------------------------------------------------

    def _check_target_groups(self, target_groups: Mapping[str, vpclattice.CfnTargetGroup]) -> None:
        for kind in self._paths:
            if kind not in target_groups:
                raise ValidationError(
                    f"routes {list(self._paths[kind])!r} go to collector {kind!r}, but target_groups has no {kind!r} "
                    f"target group (it has {sorted(target_groups)})"
                )
        for kind, tg in target_groups.items():
            if kind not in self._paths:
                raise ValidationError(f"target group {kind!r} has no routes in paths_by_collector; drop it or add paths")
            if not isinstance(tg, vpclattice.CfnTargetGroup):
                raise ValidationError(f"target_groups[{kind!r}] must be a vpclattice.CfnTargetGroup, got {type(tg).__name__}")
            if not Token.is_unresolved(tg.type) and tg.type != "IP":
                raise ValidationError(
                    f"target group {kind!r} has type {tg.type!r}; ECS registers Fargate tasks only in IP target groups"
                )

    def _check_secrets(self, secrets: Mapping[str, object]) -> dict[str, secretsmanager.ISecret]:
        for name, value in secrets.items():
            if isinstance(value, str):
                raise ValidationError(
                    f"vendor credential secrets[{name!r}] was passed as plain text; pass a secretsmanager.ISecret "
                    "(e.g. Secret.from_secret_name_v2) so the value never enters the template"
                )
            if not hasattr(value, "secret_arn") or not hasattr(value, "grant_read"):
                raise ValidationError(f"secrets[{name!r}] must be a secretsmanager.ISecret, got {type(value).__name__}")
        cc.check_secret_names(self._sinks, secrets)
        return dict(secrets)  # type: ignore[arg-type]

    def _subnet_kwargs(self) -> dict:
        s = self._subnets
        return {k: v for k, v in {
            "subnet_type": s.subnet_type, "subnets": s.subnets, "subnet_group_name": s.subnet_group_name,
            "availability_zones": s.availability_zones, "one_per_az": s.one_per_az,
            "subnet_filters": s.subnet_filters,
        }.items() if v is not None}

    def _warn_without_egress(self) -> None:
        isolated = {s.subnet_id for s in self.vpc.isolated_subnets}
        chosen = self.vpc.select_subnets(**self._subnet_kwargs()).subnets
        if chosen and all(s.subnet_id in isolated for s in chosen):
            Annotations.of(self).add_warning_v2(
                "telemetry-shunt:fleet-no-egress",
                "the fleet's subnets are isolated: vendor sinks (and image pulls from public registries) need a NAT "
                "gateway in the concentrator VPC or a pull-through cache; telemetry must never leave via the app VPC",
            )

    # --- resources --------------------------------------------------------------------------------

    def _archive_bucket(self, retention: Duration, access_logs_bucket: s3.IBucket | None) -> s3.Bucket:
        bucket = s3.Bucket(
            self,
            "Archive",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            removal_policy=RemovalPolicy.RETAIN,
            server_access_logs_bucket=access_logs_bucket,
            server_access_logs_prefix="archive/" if access_logs_bucket else None,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="tier-then-expire",
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                    transitions=[
                        s3.Transition(storage_class=s3.StorageClass.INFREQUENT_ACCESS, transition_after=Duration.days(30)),
                        s3.Transition(storage_class=s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
                                      transition_after=Duration.days(90)),
                    ],
                    expiration=retention,
                    noncurrent_version_expiration=Duration.days(30),
                )
            ],
        )
        if retention.to_days() <= 90:
            raise ValidationError(f"archive_retention must exceed the 90-day Glacier transition, got {retention.to_days()} days")
        if access_logs_bucket is None:
            acknowledge(
                bucket,
                "AwsSolutions-S1",
                "Only the fleet's task roles write to the archive and nobody reads it routinely; pass "
                "access_logs_bucket to log object access, CloudTrail records the bucket's management calls.",
            )
            skip_checkov(
                bucket, "CKV_AWS_18",
                "No access_logs_bucket was given (ConcentratorStack passes one): only the fleet's task roles write "
                "to the archive; CloudTrail records the bucket's management calls.",
            )
        return bucket

    def _collector(
        self,
        kind: str,
        *,
        target_group: vpclattice.CfnTargetGroup,
        secrets: Mapping[str, secretsmanager.ISecret],
        ephemeral_storage_gib: int,
        cpu: int,
        memory_limit_mib: int,
        max_tasks: int,
        target_cpu_percent: int,
        target_events_per_task_per_second: int,
    ) -> None:
        scope = Construct(self, _CONSTRUCT_ID[kind])
        ports = contract.COLLECTOR_PORTS[kind]
        traffic_port, health_port = ports.traffic, ports.health
        sg = ec2.SecurityGroup(
            scope,
            "SecurityGroup",
            vpc=self.vpc,
            description=f"{kind} collectors: Lattice only in, HTTPS out to the vendor and AWS APIs",
            allow_all_outbound=False,
        )
        for peer in lattice_prefix_lists(self).peers():
            sg.add_ingress_rule(peer, ec2.Port.tcp(traffic_port), f"Lattice to the {kind} traffic port")
            sg.add_ingress_rule(peer, ec2.Port.tcp(health_port), f"Lattice health checks of {kind}")
        sg.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to the vendor, S3 and AWS APIs (NAT/endpoints)")

        task = ecs.FargateTaskDefinition(
            scope,
            "TaskDefinition",
            cpu=cpu,
            memory_limit_mib=memory_limit_mib,
            ephemeral_storage_gib=ephemeral_storage_gib if ephemeral_storage_gib > cc.EPHEMERAL_STORAGE_GIB_MIN else None,
            runtime_platform=ecs.RuntimePlatform(
                operating_system_family=ecs.OperatingSystemFamily.LINUX, cpu_architecture=ecs.CpuArchitecture.X86_64
            ),
        )
        task.add_volume(name="buffer")
        config_json = cc.encode_config(kind, self.configs[kind])
        environment = {
            cc.CONFIG_ENV[kind]: config_json,
            cc.ENV_REGION: Aws.REGION,
            cc.ENV_ARCHIVE_BUCKET: self.archive_bucket.bucket_name,
        }
        if kind == "otel" and self.metrics_log_group is not None:
            environment[cc.ENV_METRICS_LOG_GROUP] = self.metrics_log_group.log_group_name
        if kind == "vector":
            entry_point = ["/bin/sh", "-c"]
            command = [cc.vector_launch_command(cc.required_secrets(self._sinks))]
            user = None
        else:
            entry_point = None
            command = [f"--config=env:{cc.CONFIG_ENV['otel']}"]
            # The contrib image runs as uid 10001, but Fargate creates task volumes owned by root; the
            # collector runs as root inside its own task (no host to reach on Fargate) to write its queue.
            user = "0"
        log_group = logs.LogGroup(scope, "Logs", retention=logs.RetentionDays.ONE_MONTH,
                                  removal_policy=RemovalPolicy.DESTROY, encryption_key=log_group_key(scope))
        container = task.add_container(
            "Collector",
            image=ecs.ContainerImage.from_registry(image_for(kind)),
            essential=True,
            entry_point=entry_point,
            command=command,
            user=user,
            environment=environment,
            secrets={name: ecs.Secret.from_secrets_manager(secrets[name]) for name in cc.required_secrets(self._sinks)},
            logging=ecs.LogDrivers.aws_logs(stream_prefix=kind, log_group=log_group),
            port_mappings=[
                ecs.PortMapping(container_port=traffic_port, name=TRAFFIC_PORT_NAME, app_protocol=ecs.AppProtocol.http),
                ecs.PortMapping(container_port=health_port, name=HEALTH_PORT_NAME),
            ],
            stop_timeout=Duration.seconds(60),
        )
        container.add_mount_points(
            ecs.MountPoint(container_path=cc.BUFFER_DIRECTORY[kind], source_volume="buffer", read_only=False)
        )
        acknowledge(
            task,
            "AwsSolutions-ECS2",
            "The environment carries the rendered collector config and resource names only; vendor credentials "
            "come from Secrets Manager through ECS secrets and appear in the config as ${VAR} references.",
        )
        self._grant(scope, kind, task.task_role)

        service = ecs.FargateService(
            scope,
            "Service",
            cluster=self.cluster,
            task_definition=task,
            desired_count=self.min_tasks,
            security_groups=[sg],
            vpc_subnets=self._subnets,
            assign_public_ip=False,
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            availability_zone_rebalancing=ecs.AvailabilityZoneRebalancing.ENABLED,
            health_check_grace_period=Duration.seconds(60),
        )
        cfn_service = service.node.default_child
        cfn_service.add_property_override(
            "VpcLatticeConfigurations",
            [
                {
                    "RoleArn": self.infrastructure_role.role_arn,
                    "TargetGroupArn": target_group.attr_arn,
                    "PortName": TRAFFIC_PORT_NAME,
                }
            ],
        )

        scaling = service.auto_scale_task_count(min_capacity=self.min_tasks, max_capacity=max_tasks)
        scaling.scale_on_cpu_utilization(
            "Cpu", target_utilization_percent=target_cpu_percent,
            scale_in_cooldown=Duration.minutes(5), scale_out_cooldown=Duration.minutes(1),
        )
        scaling.scale_to_track_custom_metric(
            "IngestRate",
            metric=self._collector_metric(kind, cc.METRIC_INGESTED, "Average"),
            target_value=target_events_per_task_per_second * cc.SELF_METRICS_INTERVAL_SECONDS,
            scale_in_cooldown=Duration.minutes(5),
            scale_out_cooldown=Duration.minutes(1),
        )
        self.services[kind] = service
        self.security_groups[kind] = sg
        self.task_definitions[kind] = task

    def _grant(self, scope: Construct, kind: str, role: iam.IRole) -> None:
        prefixes = sorted({s.prefix for s in self._sinks if isinstance(s, cc.S3ArchiveSink)})
        statements = []
        if prefixes:
            statements.append(
                iam.PolicyStatement(
                    sid="WriteArchive",
                    actions=["s3:PutObject"],
                    resources=[self.archive_bucket.arn_for_objects(f"{p}{kind}*") for p in prefixes],
                )
            )
        if kind == "vector":
            statements.append(
                iam.PolicyStatement(
                    sid="PublishCollectorMetrics",
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={"StringEquals": {"cloudwatch:namespace": cc.METRICS_NAMESPACE}},
                )
            )
        elif self.metrics_log_group is not None:
            statements.append(
                iam.PolicyStatement(
                    sid="PublishCollectorMetricsAsEmf",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                    resources=[self.metrics_log_group.log_group_arn],
                )
            )
        policy = iam.Policy(scope, "TaskPolicy", statements=statements)
        policy.attach_to_role(role)
        stack = Stack.of(self)
        bucket_id = stack.resolve(stack.get_logical_id(self.archive_bucket.node.default_child))
        for p in prefixes:
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{p}{kind}*]",
                "Archive objects are keyed by date under this collector's prefix; the role may only put objects there.",
            )
        if kind == "vector":
            acknowledge(
                policy,
                "AwsSolutions-IAM5[Resource::*]",
                "cloudwatch:PutMetricData has no resource-level permissions; the condition pins the namespace.",
            )

    # --- metrics ------------------------------------------------------------------------------------

    def _collector_metric(self, kind: str, name: str, statistic: str, **props) -> cw.Metric:
        return cw.Metric(
            namespace=cc.METRICS_NAMESPACE,
            metric_name=name,
            dimensions_map={cc.COLLECTOR_DIMENSION: kind, cc.FLEET_DIMENSION: self.fleet_name},
            statistic=statistic,
            period=props.pop("period") if "period" in props else one_minute(),
            **props,
        )

    def _kind(self, collector: str) -> str:
        if collector not in self.services:
            raise ValidationError(f"this fleet runs {sorted(self.services)}, not {collector!r}")
        return collector

    def _insights(self, collector: str, name: str, statistic: str, **props) -> cw.Metric:
        return cw.Metric(
            namespace=_INSIGHTS,
            metric_name=name,
            dimensions_map=self._insights_dimensions(self._kind(collector)),
            statistic=statistic,
            period=props.pop("period") if "period" in props else one_minute(),
            **props,
        )

    def _insights_dimensions(self, kind: str) -> dict[str, str]:
        """Container Insights' dimensions of one collector's service: its cluster's and service's names.

        Both are deploy-time tokens (fixed strings once created), so they are read from the construct once
        per collector rather than once per metric (each read is a round-trip to the jsii runtime).
        """
        cached = self._dimensions.get(kind)
        if cached is None:
            cached = self._dimensions[kind] = {
                "ClusterName": self.cluster.cluster_name, "ServiceName": self.services[kind].service_name,
            }
        return dict(cached)

    def metric_ingested_events(self, collector: str = "vector", **props) -> cw.Metric:
        """Events accepted from the gateway (sum over the fleet; ``statistic="Average"`` gives per task)."""
        return self._collector_metric(self._kind(collector), cc.METRIC_INGESTED, props.pop("statistic", "Sum"), **props)

    def metric_dropped_events(self, collector: str = "vector", **props) -> cw.Metric:
        """Events dropped at the concentrator: full buffer or queue, or records outside the wire format."""
        return self._collector_metric(self._kind(collector), cc.METRIC_DROPPED, props.pop("statistic", "Sum"), **props)

    def metric_sink_errors(self, collector: str = "vector", **props) -> cw.Metric:
        """Failed sends to the vendor or the archive (each is retried from the buffer)."""
        return self._collector_metric(self._kind(collector), cc.METRIC_SINK_ERRORS, props.pop("statistic", "Sum"), **props)

    def metric_disk_used_percent(self, collector: str = "vector", **props) -> cw.MathExpression:
        """Ephemeral storage used, in percent of what the task reserves (the buffers live there)."""
        period = props.pop("period") if "period" in props else one_minute()
        return cw.MathExpression(
            expression="100 * used / reserved",
            using_metrics={
                "used": self._insights(collector, "EphemeralStorageUtilized", "Maximum", period=period),
                "reserved": self._insights(collector, "EphemeralStorageReserved", "Minimum", period=period),
            },
            label=props.pop("label", f"{collector} ephemeral storage used (%)"),
            period=period,
            **props,
        )

    def metric_running_tasks(self, collector: str = "vector", **props) -> cw.Metric:
        return self._insights(collector, "RunningTaskCount", props.pop("statistic", "Minimum"), **props)

    def metric_desired_tasks(self, collector: str = "vector", **props) -> cw.Metric:
        return self._insights(collector, "DesiredTaskCount", props.pop("statistic", "Maximum"), **props)

    def metric_cpu_utilization(self, collector: str = "vector", **props) -> cw.Metric:
        return self.services[self._kind(collector)].metric_cpu_utilization(**props)

    # --- alarms and dashboard --------------------------------------------------------------------------

    def add_alarms(
        self,
        *,
        disk_used_percent: float = 80,
        dropped_events_per_5_minutes: float = 1,
        sink_errors_per_5_minutes: float = 10,
        unhealthy_minutes: int = 10,
    ) -> list[cw.Alarm]:
        """Alarms per collector: disk (buffer) fullness, dropped events, sink errors, tasks that never
        become healthy (running below desired), and running tasks below the per-AZ minimum."""
        created: list[cw.Alarm] = []
        five = Duration.minutes(5)
        for kind in self.services:
            scope = Construct(self, f"{_CONSTRUCT_ID[kind]}Alarms")
            created.append(cw.Alarm(
                scope, "DiskFull",
                alarm_description=f"{kind} buffers fill the task's ephemeral storage; Vector exits on a full disk",
                metric=self.metric_disk_used_percent(kind, period=five),
                threshold=disk_used_percent, evaluation_periods=3,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ))
            created.append(cw.Alarm(
                scope, "DroppedEvents",
                alarm_description=f"{kind} dropped events at the concentrator (full buffer or malformed records)",
                metric=self.metric_dropped_events(kind, period=five),
                threshold=dropped_events_per_5_minutes, evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ))
            created.append(cw.Alarm(
                scope, "SinkErrors",
                alarm_description=f"{kind} fails to deliver to the vendor or the archive; buffers are filling",
                metric=self.metric_sink_errors(kind, period=five),
                threshold=sink_errors_per_5_minutes, evaluation_periods=2,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ))
            created.append(cw.Alarm(
                scope, "UnhealthyTargets",
                alarm_description=(
                    f"{kind} tasks keep failing to become healthy (ECS replaces tasks that fail Lattice health "
                    "checks, so running stays below desired)"
                ),
                metric=cw.MathExpression(
                    expression="desired - running",
                    using_metrics={"desired": self.metric_desired_tasks(kind), "running": self.metric_running_tasks(kind)},
                    period=Duration.minutes(1),
                ),
                threshold=1, evaluation_periods=unhealthy_minutes,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ))
            created.append(cw.Alarm(
                scope, "BelowMinimumTasks",
                alarm_description=f"{kind} runs fewer than {self.min_tasks} tasks (the per-AZ minimum)",
                metric=self.metric_running_tasks(kind),
                threshold=self.min_tasks, evaluation_periods=3,
                comparison_operator=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.BREACHING,
            ))
        self.alarms.extend(created)
        return created

    def _dashboard(self) -> cw.Dashboard:
        dashboard = cw.Dashboard(self, "Dashboard", default_interval=Duration.hours(6))
        for kind in self.services:
            dashboard.add_widgets(
                cw.TextWidget(markdown=f"## {kind} collectors", width=24, height=1),
                cw.GraphWidget(title="Ingested / dropped events", width=8,
                               left=[self.metric_ingested_events(kind), self.metric_dropped_events(kind)]),
                cw.GraphWidget(title="Sink errors", width=8, left=[self.metric_sink_errors(kind)]),
                cw.GraphWidget(title="Ephemeral storage used (%)", width=8, left=[self.metric_disk_used_percent(kind)]),
            )
            dashboard.add_widgets(
                cw.GraphWidget(title="CPU (%)", width=12, left=[self.metric_cpu_utilization(kind)]),
                cw.GraphWidget(title="Tasks (running vs desired)", width=12,
                               left=[self.metric_running_tasks(kind), self.metric_desired_tasks(kind)]),
            )
        return dashboard


def _has_s3_gateway_endpoint(vpc: ec2.IVpc) -> bool:
    """True when the stack already gives ``vpc`` an S3 gateway endpoint (two would collide on routes)."""
    stack = Stack.of(vpc)
    for node in stack.node.find_all():
        if not isinstance(node, ec2.CfnVPCEndpoint) or (node.vpc_endpoint_type or "Gateway") != "Gateway":
            continue
        same_vpc = stack.resolve(node.vpc_id) == stack.resolve(vpc.vpc_id)
        if same_vpc and ".s3" in json.dumps(stack.resolve(node.service_name)):
            return True
    return False
