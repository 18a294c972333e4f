"""The isolated telemetry network in Terraform (CDK Terrain): the same product as the CDK constructs.

Same names and keyword arguments as :mod:`telemetry_shunt.constructs` where the concept is the same; every
policy, route, priority, port and validation comes from :mod:`telemetry_shunt.core`, so both flavours deploy
the same push-only network. Where Terraform differs it is said on the class (e.g. Availability Zones are
named, not looked up).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from constructs import Construct

from telemetry_shunt.core import contract
from telemetry_shunt.core.contract import (
    DEFAULT_CONCENTRATOR_CIDR,
    DEFAULT_IDLE_TIMEOUT_SECONDS,
    DEFAULT_LOG_RETENTION_DAYS,
    LATTICE_IDLE_TIMEOUT_RANGE_SECONDS,
)
from telemetry_shunt.core.gateway_ref import GatewayRef
from telemetry_shunt.core.policy import (
    WORST_CASE_PARTITION,
    WORST_CASE_SERVICE_ARN,
    WORST_CASE_SERVICE_NETWORK_ARN,
    check_policy_size,
    minify,
    policy_json,
    push_grant_statement,
    service_auth_policy,
    service_network_auth_policy,
)
from telemetry_shunt.core.routes import COLLECTORS, Pusher, Route, validate_pushers, validate_routes
from telemetry_shunt.core.validation import availability_zones as check_azs
from telemetry_shunt.core.validation import cidr as check_cidr
from telemetry_shunt.core.validation import disjoint_cidrs, is_token, lattice_name, private_dns, share_principal
from telemetry_shunt.errors import ValidationError
from telemetry_shunt.terraform import _aws as aws

# The Lattice data plane's managed prefix lists (per region): what app-side security groups may reach.
LATTICE_PREFIX_LISTS = ("com.amazonaws.{region}.vpc-lattice", "com.amazonaws.{region}.ipv6.vpc-lattice")


#: Where a checkov acknowledgement sits in a resource's JSON: checkov's terraform_json runner (3.3.30) reads no
#: skip comments, so tools/tfcheck.py applies these, each on its own resource with its reason (never globally).
CHECKOV_ACK_KEY = "checkov_acknowledged"


def acknowledge_checkov(resource: Any, check_id: str, reason: str) -> None:
    """Acknowledge one checkov finding on ``resource`` with a reason (kept in the resource's ``//`` block)."""
    if not re.fullmatch(r"CKV2?_AWS_[0-9]+", check_id, re.ASCII) or len(reason.strip()) < 20:
        raise ValueError(f"acknowledge {check_id!r} with a checkov id and a real reason, got {reason!r}")
    acks = getattr(resource, "_telemetry_shunt_checkov", None)
    if acks is None:
        acks = []
        resource._telemetry_shunt_checkov = acks
    acks.append({"id": check_id, "comment": reason})
    resource.add_override(f"//.{CHECKOV_ACK_KEY}", list(acks))


class StackEnvironment(Construct):
    """One set of partition/region/account data sources per stack (what CloudFormation's pseudo-parameters are)."""

    ID = "TelemetryShuntEnvironment"

    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        self.partition = aws.DataAwsPartition(self, "Partition").partition
        self.region = aws.DataAwsRegion(self, "Region").region
        self.account = aws.DataAwsCallerIdentity(self, "Account").account_id
        self._prefix_lists: list[str] | None = None

    def lattice_prefix_list_ids(self) -> list[str]:
        """The Region's VPC Lattice managed prefix lists (IPv4, IPv6), looked up once per stack."""
        if self._prefix_lists is None:
            self._prefix_lists = [aws.DataAwsEc2ManagedPrefixList(self, f"LatticePrefixList{i + 1}",
                                                                  name=template.format(region=self.region)).id
                                  for i, template in enumerate(LATTICE_PREFIX_LISTS)]
        return self._prefix_lists

    @classmethod
    def of(cls, scope: Construct) -> StackEnvironment:
        stack = aws.TerraformStack.of(scope)
        found = stack.node.try_find_child(cls.ID)
        return found if isinstance(found, StackEnvironment) else cls(stack, cls.ID)


def _parse_pushers(pushers: Sequence[Pusher | str]) -> list[Pusher]:
    return validate_pushers([p if isinstance(p, Pusher) else Pusher.parse(p) for p in pushers])


def _tls_only_and_log_delivery(bucket: aws.S3Bucket, env: StackEnvironment, *, delivery: bool) -> str:
    statements: list[dict[str, Any]] = [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
        "Resource": [bucket.arn, f"{bucket.arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }]
    if delivery:
        # VPC Lattice delivers access logs through CloudWatch vended-log delivery (as in the CDK flavour).
        source = {"StringEquals": {"aws:SourceAccount": env.account}}
        statements += [
            {"Sid": "AWSLogDeliveryWrite", "Effect": "Allow", "Principal": {"Service": "delivery.logs.amazonaws.com"},
             "Action": "s3:PutObject", "Resource": f"{bucket.arn}/AWSLogs/{env.account}/*",
             "Condition": {**source, "ArnLike": {"aws:SourceArn": f"arn:{env.partition}:logs:{env.region}:{env.account}:*"}}},
            {"Sid": "AWSLogDeliveryAclCheck", "Effect": "Allow", "Principal": {"Service": "delivery.logs.amazonaws.com"},
             "Action": "s3:GetBucketAcl", "Resource": bucket.arn, "Condition": source},
        ]
    return policy_json(statements)


def secure_bucket(scope: Construct, id: str, *, retention_days: int, versioned: bool,
                  log_to: aws.S3Bucket | None, log_delivery: bool) -> aws.S3Bucket:
    """An S3 bucket as the CDK flavour makes them: encrypted, private, TLS-only, expiring, optionally versioned."""
    env = StackEnvironment.of(scope)
    bucket = aws.S3Bucket(scope, id, bucket_prefix="telemetry-shunt-", force_destroy=False)
    acknowledge_checkov(bucket, "CKV_AWS_144", "Logs, not a system of record: cross-region replication would double "
                                               "their cost for data that expires; the CDK flavour does not replicate either.")
    acknowledge_checkov(bucket, "CKV2_AWS_62", "Nothing consumes these objects' events; readers query the logs "
                                               "(Athena, downloads), so notifications would only add a moving part.")
    acknowledge_checkov(bucket, "CKV_AWS_145", "S3-managed encryption (AES256), as in the CDK flavour: a server-access-log "
                                               "target bucket supports only SSE-S3, and Lattice's vended log delivery writes "
                                               "here without a key grant.")
    aws.S3BucketPublicAccessBlock(scope, f"{id}PublicAccessBlock", bucket=bucket.id, block_public_acls=True,
                                  block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True)
    aws.S3BucketServerSideEncryptionConfigurationA(scope, f"{id}Encryption", bucket=bucket.id, rule=[
        aws.S3BucketServerSideEncryptionConfigurationRuleA(
            apply_server_side_encryption_by_default=aws.S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                sse_algorithm="AES256"))])
    if versioned:
        aws.S3BucketVersioningA(scope, f"{id}Versioning", bucket=bucket.id,
                                versioning_configuration=aws.S3BucketVersioningVersioningConfiguration(status="Enabled"))
    rule = aws.S3BucketLifecycleConfigurationRule(
        id="expire", status="Enabled", filter=[aws.S3BucketLifecycleConfigurationRuleFilter(prefix="")],
        expiration=[aws.S3BucketLifecycleConfigurationRuleExpiration(days=retention_days)],
        noncurrent_version_expiration=[aws.S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(noncurrent_days=7)]
        if versioned else None,
        abort_incomplete_multipart_upload=[aws.S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(
            days_after_initiation=7)],
    )
    aws.S3BucketLifecycleConfiguration(scope, f"{id}Lifecycle", bucket=bucket.id, rule=[rule])
    aws.S3BucketPolicy(scope, f"{id}Policy", bucket=bucket.id,
                       policy=_tls_only_and_log_delivery(bucket, env, delivery=log_delivery))
    if log_to is not None:
        aws.S3BucketLoggingA(scope, f"{id}Logging", bucket=bucket.id, target_bucket=log_to.id, target_prefix=f"{id}/")
    return bucket


class ConcentratorVpc(Construct):
    """The dedicated concentrator VPC: private collector subnets in every named AZ, flow logs, optional NAT egress.

    Unlike the CDK flavour, ``availability_zones`` are named (Terraform has no synth-time AZ lookup): at least 2.
    ``vendor_egress`` adds public subnets with one NAT gateway per AZ, in this VPC only, never the app's.
    """

    def __init__(self, scope: Construct, id: str, *, availability_zones: Sequence[str], cidr: str | None = None,
                 vendor_egress: bool = False, app_vpc_cidrs: Sequence[str] = (),
                 flow_log_retention_days: int = DEFAULT_LOG_RETENTION_DAYS) -> None:
        super().__init__(scope, id)
        azs = check_azs(availability_zones)
        if any(is_token(az) for az in azs):
            raise ValidationError("availability_zones must be named (e.g. ['us-east-1a', 'us-east-1b']) in the Terraform "
                                  "flavour: subnets are laid out at synth time")
        cidr = DEFAULT_CONCENTRATOR_CIDR if cidr is None else cidr
        network = check_cidr(cidr, what="concentrator CIDR", max_prefix=20)
        disjoint_cidrs([("concentrator CIDR", cidr), *((f"app VPC CIDR #{i + 1}", c) for i, c in enumerate(app_vpc_cidrs))])
        if isinstance(flow_log_retention_days, bool) or not isinstance(flow_log_retention_days, int) \
                or flow_log_retention_days < 1:
            raise ValidationError(f"flow_log_retention_days {flow_log_retention_days!r} must be a whole number of days >= 1")
        blocks = list(network.subnets(new_prefix=max(network.prefixlen + 4, 20)))
        if len(blocks) < len(azs) + (1 if vendor_egress else 0):
            raise ValidationError(f"concentrator CIDR {cidr!r} is too small for {len(azs)} AZs: use a /16 to /20")
        env = StackEnvironment.of(self)
        self.availability_zones = azs
        self.resource = aws.Vpc(self, "Resource", cidr_block=cidr, enable_dns_hostnames=True, enable_dns_support=True,
                                tags={"Name": "telemetry-concentrator"})
        # No rules at all on the default security group: nothing may use it by accident.
        aws.DefaultSecurityGroup(self, "DefaultSecurityGroup", vpc_id=self.resource.id)
        self.private_subnets = []
        self.private_route_tables = []
        self.public_subnets = []
        public_blocks = list(blocks[-1].subnets(new_prefix=min(blocks[-1].prefixlen + 6, 28))) if vendor_egress else []
        igw = aws.InternetGateway(self, "InternetGateway", vpc_id=self.resource.id) if vendor_egress else None
        for i, az in enumerate(azs):
            private = aws.Subnet(self, f"Collectors{i + 1}", vpc_id=self.resource.id, availability_zone=az,
                                 cidr_block=str(blocks[i]), tags={"Name": f"telemetry-collectors-{az}"})
            table = aws.RouteTable(self, f"Collectors{i + 1}Routes", vpc_id=self.resource.id)
            aws.RouteTableAssociation(self, f"Collectors{i + 1}RoutesAssociation", subnet_id=private.id,
                                      route_table_id=table.id)
            self.private_subnets.append(private)
            self.private_route_tables.append(table)
            if vendor_egress:
                public = aws.Subnet(self, f"Egress{i + 1}", vpc_id=self.resource.id, availability_zone=az,
                                    cidr_block=str(public_blocks[i]), tags={"Name": f"telemetry-egress-{az}"})
                public_table = aws.RouteTable(self, f"Egress{i + 1}Routes", vpc_id=self.resource.id)
                aws.RouteTableAssociation(self, f"Egress{i + 1}RoutesAssociation", subnet_id=public.id,
                                          route_table_id=public_table.id)
                aws.RouteEntry(self, f"Egress{i + 1}Default", route_table_id=public_table.id,
                               destination_cidr_block="0.0.0.0/0", gateway_id=igw.id)
                eip = aws.Eip(self, f"Egress{i + 1}Address", domain="vpc")
                nat = aws.NatGateway(self, f"Egress{i + 1}Nat", subnet_id=public.id, allocation_id=eip.id)
                aws.RouteEntry(self, f"Collectors{i + 1}Default", route_table_id=table.id,
                               destination_cidr_block="0.0.0.0/0", nat_gateway_id=nat.id)
                self.public_subnets.append(public)
        self.flow_log_group = flow_logs(self, self.resource.id, env, retention_days=flow_log_retention_days)

    @property
    def vpc_id(self) -> str:
        return self.resource.id

    @property
    def collector_subnet_ids(self) -> list[str]:
        return [s.id for s in self.private_subnets]


def flow_logs(scope: Construct, vpc_id: str, env: StackEnvironment, *, retention_days: int) -> aws.CloudwatchLogGroup:
    """VPC flow logs (all traffic) to a log group encrypted with its own customer-managed key."""
    key = log_group_key(scope, "FlowLogKey", env)
    group = aws.CloudwatchLogGroup(scope, "FlowLogs", name_prefix="/telemetry-shunt/flow-logs/",
                                   retention_in_days=retention_days, kms_key_id=key.arn)
    role = aws.IamRole(scope, "FlowLogRole", assume_role_policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "vpc-flow-logs.amazonaws.com"}}]}))
    aws.IamRolePolicy(scope, "FlowLogRolePolicy", role=role.id, policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Resource": [group.arn, f"{group.arn}:*"],
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]}]}))
    aws.FlowLog(scope, "FlowLog", vpc_id=vpc_id, traffic_type="ALL", log_destination=group.arn, iam_role_arn=role.arn)
    return group


def app_vpc(scope: Construct, id: str, *, cidr: str, availability_zones: Sequence[str],
            flow_log_retention_days: int = DEFAULT_LOG_RETENTION_DAYS) -> tuple[str, list[str]]:
    """A private app VPC (one subnet per AZ, no route out, flow logs) for the default app's app-account stack:
    (vpc id, subnet ids). Real app accounts attach their own VPC instead."""
    network = check_cidr(cidr, what="app VPC CIDR", max_prefix=20)
    azs = check_azs(availability_zones)
    holder = Construct(scope, id)
    vpc = aws.Vpc(holder, "Resource", cidr_block=cidr, enable_dns_hostnames=True, enable_dns_support=True,
                  tags={"Name": "telemetry-app"})
    aws.DefaultSecurityGroup(holder, "DefaultSecurityGroup", vpc_id=vpc.id)
    blocks = list(network.subnets(new_prefix=max(network.prefixlen + 4, 20)))
    subnets = [aws.Subnet(holder, f"Private{i + 1}", vpc_id=vpc.id, availability_zone=az, cidr_block=str(blocks[i]))
               for i, az in enumerate(azs)]
    flow_logs(holder, vpc.id, StackEnvironment.of(holder), retention_days=flow_log_retention_days)
    return vpc.id, [s.id for s in subnets]


def log_group_key(scope: Construct, id: str, env: StackEnvironment) -> aws.KmsKey:
    """A customer-managed key for log groups: usable by CloudWatch Logs of this account and region only."""
    return aws.KmsKey(scope, id, description="telemetry-shunt log groups", enable_key_rotation=True,
                      deletion_window_in_days=30, policy=json.dumps({"Version": "2012-10-17", "Statement": [
                          {"Sid": "AccountAdmin", "Effect": "Allow",
                           "Principal": {"AWS": f"arn:{env.partition}:iam::{env.account}:root"},
                           "Action": "kms:*", "Resource": "*"},
                          {"Sid": "CloudWatchLogs", "Effect": "Allow",
                           "Principal": {"Service": f"logs.{env.region}.amazonaws.com"},
                           "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                           "Resource": "*",
                           "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                                     f"arn:{env.partition}:logs:{env.region}:{env.account}:log-group:*"}}},
                      ]}))


class TelemetryServiceNetwork(Construct):
    """A VPC Lattice service network for telemetry: ``AWS_IAM`` auth, the coarse network policy from ``core``,
    access logs to an encrypted, expiring S3 bucket (or ``access_log_bucket_arn``), RAM share to ``share_with``."""

    def __init__(self, scope: Construct, id: str, *, pushers: Sequence[Pusher | str], name: str = "telemetry",
                 share_with: Sequence[str] = (), allow_external_principals: bool = False,
                 access_log_bucket_arn: str | None = None, log_retention_days: int = DEFAULT_LOG_RETENTION_DAYS) -> None:
        super().__init__(scope, id)
        self.pushers = _parse_pushers(pushers)
        lattice_name("service network", name)
        if isinstance(log_retention_days, bool) or not isinstance(log_retention_days, int) or log_retention_days < 1:
            raise ValidationError(f"log_retention_days {log_retention_days!r} must be a whole number of days >= 1")
        principals = [share_principal(p) for p in share_with]
        check_policy_size(service_network_auth_policy(pushers=self.pushers, partition=WORST_CASE_PARTITION),
                          what="service network")
        env = StackEnvironment.of(self)
        self.resource = aws.VpclatticeServiceNetwork(self, "Resource", name=name, auth_type="AWS_IAM")
        self.auth_policy = aws.VpclatticeAuthPolicy(
            self, "AuthPolicy", resource_identifier=self.resource.arn,
            policy=minify(service_network_auth_policy(pushers=self.pushers, partition=env.partition)))
        if access_log_bucket_arn is None:
            server_logs = secure_bucket(self, "ServerAccessLogs", retention_days=log_retention_days, versioned=True,
                                        log_to=None, log_delivery=False)
            bucket = secure_bucket(self, "AccessLogBucket", retention_days=log_retention_days, versioned=True,
                                   log_to=server_logs, log_delivery=True)
            access_log_bucket_arn = bucket.arn
            self.access_log_bucket: aws.S3Bucket | None = bucket
            #: Receives the access-log bucket's server access logs; other buckets (the fleet's archive) may log here.
            self.server_access_log_bucket: aws.S3Bucket | None = server_logs
        else:
            self.access_log_bucket = None
            self.server_access_log_bucket = None
        self.access_log_destination_arn = access_log_bucket_arn
        self.access_logs = aws.VpclatticeAccessLogSubscription(
            self, "AccessLogs", resource_identifier=self.resource.arn, destination_arn=access_log_bucket_arn)
        self.share: aws.RamResourceShare | None = None
        if principals:
            self.share = aws.RamResourceShare(self, "Share", name=f"telemetry-shunt-{name}",
                                              allow_external_principals=allow_external_principals)
            aws.RamResourceAssociation(self, "ShareNetwork", resource_arn=self.resource.arn,
                                       resource_share_arn=self.share.arn)
            for i, principal in enumerate(principals):
                aws.RamPrincipalAssociation(self, f"SharePrincipal{i + 1}", principal=principal,
                                            resource_share_arn=self.share.arn)

    @property
    def service_network_arn(self) -> str:
        return self.resource.arn

    @property
    def service_network_id(self) -> str:
        return self.resource.id


def rule_resource_id(route: Route) -> str:
    """A route's rule id, from its path alone, so adding or removing another route never replaces this one."""
    return "Rule" + "".join(c if c.isalnum() else "_" for c in route.path)


def rule_name(route: Route) -> str:
    """The listener rule's Lattice name (required in Terraform): ``post-<path words>-<hash of the path>``.

    The hash keeps paths that differ only in case or punctuation (``/a_b`` and ``/a-b``) apart."""
    words = "-".join(w for w in re.split(r"[^a-z0-9]+", route.path.lower()) if w)[:46].strip("-")
    return lattice_name("rule", f"post-{words}-{hashlib.sha256(route.path.encode()).hexdigest()[:8]}".replace("--", "-"))


class TelemetryGateway(Construct):
    """The Lattice service agents push to: HTTPS listener with a 404 default, one ``POST <path>`` rule per
    route (priority from :attr:`Route.rule_priority`), IP target groups per collector, the push-only service
    auth policy from ``core``, associated with ``service_network``. ``pushers`` default to the network's;
    when both are given they must be the same."""

    def __init__(self, scope: Construct, id: str, *, vpc: ConcentratorVpc | str, service_network: TelemetryServiceNetwork,
                 routes: Sequence[Route], pushers: Sequence[Pusher | str] | None = None, name: str = "telemetry-gateway",
                 idle_timeout_seconds: int = DEFAULT_IDLE_TIMEOUT_SECONDS, access_log_destination_arn: str | None = None) -> None:
        super().__init__(scope, id)
        lattice_name("service", name)
        lo, hi = LATTICE_IDLE_TIMEOUT_RANGE_SECONDS
        if isinstance(idle_timeout_seconds, bool) or not isinstance(idle_timeout_seconds, int) \
                or not lo <= idle_timeout_seconds <= hi:
            raise ValidationError(f"idle_timeout_seconds {idle_timeout_seconds!r} is outside VPC Lattice's {lo}-{hi} s range")
        self.pushers = list(service_network.pushers) if pushers is None else _parse_pushers(pushers)
        if pushers is not None:
            mine, theirs = {str(p) for p in self.pushers}, {str(p) for p in service_network.pushers}
            if mine != theirs:
                raise ValidationError(
                    f"gateway pushers differ from the service network's (only on the gateway: {sorted(mine - theirs)}; "
                    f"only on the network: {sorted(theirs - mine)}): a pusher must be admitted by both policies; "
                    "drop pushers= to take the network's")
        self.routes = validate_routes(routes)
        sizing = service_auth_policy(service_arn=WORST_CASE_SERVICE_ARN, routes=self.routes, pushers=self.pushers,
                                     partition=WORST_CASE_PARTITION, service_network_arn=WORST_CASE_SERVICE_NETWORK_ARN)
        check_policy_size(sizing, what="gateway service")
        priorities: dict[int, str] = {}
        for r in self.routes:
            if r.rule_priority in priorities:
                raise ValidationError(f"routes {priorities[r.rule_priority]!r} and {r.path!r} get the same rule priority "
                                      f"{r.rule_priority}: give one of them priority= explicitly")
            priorities[r.rule_priority] = r.path
        env = StackEnvironment.of(self)
        vpc_id = vpc.vpc_id if isinstance(vpc, ConcentratorVpc) else vpc
        self.service_network = service_network
        self.resource = aws.VpclatticeService(self, "Resource", name=name, auth_type="AWS_IAM",
                                              idle_timeout_seconds=idle_timeout_seconds)
        self.listener = aws.VpclatticeListener(
            self, "Listener", name="https", service_identifier=self.resource.id, protocol="HTTPS", port=443,
            default_action=aws.VpclatticeListenerDefaultAction(
                fixed_response=aws.VpclatticeListenerDefaultActionFixedResponse(status_code=404)))
        self.association = aws.VpclatticeServiceNetworkServiceAssociation(
            self, "Association", service_identifier=self.resource.id,
            service_network_identifier=service_network.service_network_id)
        self.auth_policy = aws.VpclatticeAuthPolicy(
            self, "AuthPolicy", resource_identifier=self.resource.arn,
            policy=minify(service_auth_policy(service_arn=self.resource.arn, routes=self.routes, pushers=self.pushers,
                                              partition=env.partition,
                                              service_network_arn=service_network.service_network_arn)))
        destination = access_log_destination_arn or service_network.access_log_destination_arn
        self.access_logs = aws.VpclatticeAccessLogSubscription(
            self, "AccessLogs", resource_identifier=self.resource.arn, destination_arn=destination)
        self.target_groups: dict[str, aws.VpclatticeTargetGroup] = {}
        for kind in COLLECTORS:
            if any(r.collector == kind for r in self.routes):
                ports = contract.COLLECTOR_PORTS[kind]
                self.target_groups[kind] = aws.VpclatticeTargetGroup(
                    self, f"{kind.capitalize()}Targets", name=f"{name}-{kind}", type="IP",
                    config=aws.VpclatticeTargetGroupConfigA(
                        port=ports.traffic, protocol="HTTP", protocol_version="HTTP1", ip_address_type="IPV4",
                        vpc_identifier=vpc_id,
                        health_check=aws.VpclatticeTargetGroupConfigHealthCheck(
                            enabled=True, protocol="HTTP", protocol_version="HTTP1", port=ports.health,
                            path=ports.health_path, health_check_interval_seconds=10, health_check_timeout_seconds=5,
                            healthy_threshold_count=2, unhealthy_threshold_count=2,
                            matcher=aws.VpclatticeTargetGroupConfigHealthCheckMatcher(value="200"))))
        self.rules: dict[str, aws.VpclatticeListenerRule] = {}
        for r in self.routes:
            self.rules[r.path] = aws.VpclatticeListenerRule(
                self, rule_resource_id(r), name=rule_name(r),
                service_identifier=self.resource.id, listener_identifier=self.listener.listener_id,
                priority=r.rule_priority,
                match=aws.VpclatticeListenerRuleMatch(http_match=aws.VpclatticeListenerRuleMatchHttpMatch(
                    method="POST",
                    path_match=aws.VpclatticeListenerRuleMatchHttpMatchPathMatch(
                        case_sensitive=True, match=aws.VpclatticeListenerRuleMatchHttpMatchPathMatchMatch(exact=r.path)))),
                action=aws.VpclatticeListenerRuleAction(forward=aws.VpclatticeListenerRuleActionForward(target_groups=[
                    aws.VpclatticeListenerRuleActionForwardTargetGroups(
                        target_group_identifier=self.target_groups[r.collector].id, weight=100)])))

    @property
    def service_arn(self) -> str:
        return self.resource.arn

    @property
    def endpoint(self) -> str:
        """The DNS name agents push to."""
        return self.resource.dns_entry.get(0).domain_name

    @property
    def gateway_ref(self) -> GatewayRef:
        return GatewayRef(service_arn=self.service_arn, dns_name=self.endpoint, routes=tuple(self.routes),
                          service_network_arn=self.service_network.service_network_arn)

    def add_ref_outputs(self, *, prefix: str = "") -> dict[str, aws.TerraformOutput]:
        """Outputs named as in the CDK stacks (snake_case): ``service_network_arn``, ``gateway_arn``,
        ``gateway_endpoint``, ``gateway_routes`` and ``gateway_ref`` (the whole GatewayRef as JSON)."""
        ref = self.gateway_ref
        ref_json = aws.Fn.jsonencode({
            "version": 1, "serviceArn": ref.service_arn, "dnsName": ref.dns_name,
            "serviceNetworkArn": ref.service_network_arn,
            "routes": [{"path": r.path, "collector": r.collector} for r in ref.routes]})
        stack = aws.TerraformStack.of(self)
        values = {"service_network_arn": ref.service_network_arn, "gateway_arn": ref.service_arn,
                  "gateway_endpoint": ref.dns_name, "gateway_routes": ",".join(ref.paths), "gateway_ref": ref_json}
        return {name: aws.TerraformOutput(stack, f"{prefix}{name}", value=value) for name, value in values.items()}


class AppVpcAttachment(Construct):
    """Puts an app VPC on the telemetry service network: an association (one per VPC) or a service-network VPC
    endpoint (``mode="endpoint"``, needs ``subnet_ids``), behind a security group whose only egress is the
    Lattice managed prefix lists on ``listener_port`` (looked up with a data source)."""

    def __init__(self, scope: Construct, id: str, *, vpc_id: str, gateway: GatewayRef | str | None = None,
                 service_network_arn: str | None = None, mode: str = "association", subnet_ids: Sequence[str] = (),
                 listener_port: int = 443, private_dns_enabled: bool | None = None,
                 private_dns_preference: str | None = None, private_dns_specified_domains: Sequence[str] = ()) -> None:
        super().__init__(scope, id)
        self.gateway = GatewayRef.from_json(gateway, source="gateway") if isinstance(gateway, str) else gateway
        if self.gateway is None and service_network_arn is None:
            raise ValidationError("AppVpcAttachment needs gateway=GatewayRef (preferred) or service_network_arn=...")
        if self.gateway is not None and service_network_arn is not None and not is_token(service_network_arn) \
                and not is_token(self.gateway.service_network_arn) and service_network_arn != self.gateway.service_network_arn:
            raise ValidationError(f"service_network_arn {service_network_arn!r} is not the gateway's "
                                  f"{self.gateway.service_network_arn!r}: drop service_network_arn=")
        network_arn = service_network_arn or self.gateway.service_network_arn  # type: ignore[union-attr]
        if mode not in ("association", "endpoint"):
            raise ValidationError(f"mode {mode!r} must be 'association' or 'endpoint'")
        if mode == "endpoint" and len(subnet_ids) < 2:
            raise ValidationError("mode='endpoint' needs subnet_ids in at least 2 Availability Zones (a /28 free in each)")
        if mode == "association" and subnet_ids:
            raise ValidationError("subnet_ids apply only to mode='endpoint'; an association covers the whole VPC")
        preference, domains = private_dns(private_dns_preference, private_dns_specified_domains)
        if preference is not None and private_dns_enabled is False:
            raise ValidationError(f"private_dns_preference {preference!r} needs private DNS: drop private_dns_enabled=False")
        if isinstance(listener_port, bool) or not isinstance(listener_port, int) or not 1 <= listener_port <= 65535:
            raise ValidationError(f"listener_port {listener_port!r} must be a port number (1-65535)")
        env = StackEnvironment.of(self)
        self.env = env
        self._grants = 0
        # No inline rules: the provider removes AWS's default allow-all egress from a new group, and the only
        # egress is the separate rules below (inline rules would fight them on every apply).
        self.security_group = aws.SecurityGroup(self, "SecurityGroup", vpc_id=vpc_id, name_prefix="telemetry-shunt-",
                                                description="telemetry-shunt: egress to VPC Lattice only",
                                                revoke_rules_on_delete=True)
        for i, prefix_list_id in enumerate(env.lattice_prefix_list_ids()):
            aws.VpcSecurityGroupEgressRule(self, f"ToLattice{i + 1}", security_group_id=self.security_group.id,
                                           prefix_list_id=prefix_list_id, ip_protocol="tcp", from_port=listener_port,
                                           to_port=listener_port, description="HTTPS to VPC Lattice")
        if mode == "association":
            dns = (aws.VpclatticeServiceNetworkVpcAssociationDnsOptions(
                private_dns_preference=preference, private_dns_specified_domains=list(domains) or None)
                   if preference else None)
            self.association = aws.VpclatticeServiceNetworkVpcAssociation(
                self, "Association", service_network_identifier=network_arn, vpc_identifier=vpc_id,
                security_group_ids=[self.security_group.id], private_dns_enabled=private_dns_enabled, dns_options=dns)
        else:
            self.endpoint = aws.VpcEndpoint(
                self, "Endpoint", vpc_id=vpc_id, vpc_endpoint_type="ServiceNetwork", service_network_arn=network_arn,
                subnet_ids=list(subnet_ids), security_group_ids=[self.security_group.id],
                private_dns_enabled=private_dns_enabled,
                dns_options=aws.VpcEndpointDnsOptions(private_dns_preference=preference,
                                                      private_dns_specified_domains=list(domains) or None)
                if preference else None)

    def grant_push(self, role_name: str, *, routes: Sequence[Route] | None = None) -> aws.IamRolePolicy:
        """Allow the role ``role_name`` to POST to exactly the gateway's routes (or ``routes``, among them)."""
        if self.gateway is None and routes is None:
            raise ValidationError("grant_push needs the gateway's routes: build the attachment with gateway=GatewayRef, "
                                  "or pass routes= explicitly (the routes cannot be known from an ARN)")
        statement = push_grant_statement(
            routes=routes, gateway_routes=self.gateway.routes if self.gateway else None,
            gateway_arn=self.gateway.service_arn if self.gateway else None, partition=self.env.partition,
            region=self.env.region)
        self._grants += 1
        return aws.IamRolePolicy(self, f"PushPolicy{self._grants}", role=role_name, name="telemetry-shunt-push",
                                 policy=policy_json([statement]))
