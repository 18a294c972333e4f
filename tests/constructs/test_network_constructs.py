"""ConcentratorVpc, TelemetryServiceNetwork, TelemetryGateway and AppVpcAttachment, on synthesized templates."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Annotations, Match, Template

from telemetry_shunt.constructs.app_attachment import MATCH_NO_TRAFFIC, AppVpcAttachment
from telemetry_shunt.constructs.concentrator_vpc import ConcentratorVpc
from telemetry_shunt.constructs.gateway import TelemetryGateway
from telemetry_shunt.constructs.service_network import TelemetryServiceNetwork
from telemetry_shunt.core import contract
from telemetry_shunt.core.gateway_ref import GatewayRef
from telemetry_shunt.core.routes import Pusher, Route, default_routes
from telemetry_shunt.errors import ValidationError
from tests.cdk_support import new_app, resources

PUSHERS = [Pusher.role("arn:aws:iam::111111111111:role/agent"), Pusher.account("222222222222")]
SN_ARN = "arn:aws:vpc-lattice:us-east-1:999999999999:servicenetwork/sn-0123456789abcdef0"


@pytest.fixture(scope="module")
def concentrator(tmp_path_factory):
    app = new_app(tmp_path_factory.mktemp("c"))
    stack = cdk.Stack(app, "C")
    net = ConcentratorVpc(stack, "Net")
    sn = TelemetryServiceNetwork(stack, "SN", pushers=PUSHERS, share_with=["111111111111", "222222222222"])
    gw = TelemetryGateway(stack, "GW", vpc=net.vpc, service_network=sn, pushers=PUSHERS, routes=default_routes())
    return stack, Template.from_stack(stack), gw


# --- ConcentratorVpc ----------------------------------------------------------------------------
def test_concentrator_vpc_is_isolated_by_default(concentrator):
    _, t, _ = concentrator
    t.resource_count_is("AWS::EC2::InternetGateway", 0)
    t.resource_count_is("AWS::EC2::NatGateway", 0)
    t.has_resource_properties("AWS::EC2::VPC", {"CidrBlock": "10.200.0.0/16"})
    # Two zones of private subnets, no public ones.
    subnets = resources(t.to_json(), "AWS::EC2::Subnet")
    assert len(subnets) == 2
    assert all(s["Properties"]["MapPublicIpOnLaunch"] is False for s in subnets.values())


def test_concentrator_vpc_has_flow_logs_of_all_traffic(concentrator):
    _, t, _ = concentrator
    t.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"})
    t.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 365})


def test_vendor_egress_adds_one_nat_per_zone(tmp_path):
    stack = cdk.Stack(new_app(tmp_path), "E")
    ConcentratorVpc(stack, "Net", vendor_egress=True, availability_zones=["us-east-1a", "us-east-1b", "us-east-1c"])
    t = Template.from_stack(stack)
    t.resource_count_is("AWS::EC2::InternetGateway", 1)
    t.resource_count_is("AWS::EC2::NatGateway", 3)


def test_existing_vpc_is_used_as_is(tmp_path):
    stack = cdk.Stack(new_app(tmp_path), "X")
    vpc = ec2.Vpc.from_vpc_attributes(stack, "V", vpc_id="vpc-0123456789abcdef0",
                                      availability_zones=["us-east-1a", "us-east-1b"],
                                      private_subnet_ids=["subnet-0a", "subnet-0b"])
    net = ConcentratorVpc(stack, "Net", vpc=vpc)
    assert net.vpc is vpc
    assert net.collector_subnets.subnet_type == ec2.SubnetType.PRIVATE_WITH_EGRESS
    Template.from_stack(stack).resource_count_is("AWS::EC2::VPC", 0)


def test_existing_vpc_without_private_subnets_is_refused_in_our_words(tmp_path):
    stack = cdk.Stack(new_app(tmp_path), "X")
    vpc = ec2.Vpc.from_vpc_attributes(stack, "V", vpc_id="vpc-0123456789abcdef0",
                                      availability_zones=["us-east-1a", "us-east-1b"],
                                      public_subnet_ids=["subnet-0a", "subnet-0b"])
    with pytest.raises(ValidationError, match="has no private subnets .* add a private subnet group"):
        ConcentratorVpc(stack, "Net", vpc=vpc)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"az_count": 1}, "at least 2 Availability Zones"),
        ({"az_count": 3}, "an environment-agnostic stack sees only 2 Availability Zones"),
        ({"availability_zones": ["us-east-1a"]}, "at least 2 Availability Zones"),
        ({"availability_zones": ["us-east-1a", "moon-1"]}, "'moon-1' is not an AZ name"),
        ({"cidr": "10.200.0.0/33"}, "'10.200.0.0/33' is not a valid IPv4 network"),
        ({"cidr": "10.200.0.1/16"}, "is not a valid IPv4 network"),
        ({"cidr": "10.0.0.0/8"}, "must be between /16 and /28"),
        ({"app_vpc_cidrs": ["10.200.128.0/20"]}, "overlaps concentrator VPC CIDR '10.200.0.0/16'"),
        ({"app_vpc_cidrs": ["10.0.0.0/16", "10.0.128.0/17"]}, "app VPC CIDR #2 '10.0.128.0/17' overlaps app VPC CIDR #1"),
    ],
)
def test_concentrator_vpc_rejects_bad_input(tmp_path, kwargs, match):
    stack = cdk.Stack(new_app(tmp_path), "Bad")
    with pytest.raises(ValidationError, match=match):
        ConcentratorVpc(stack, "Net", **kwargs)


# --- TelemetryServiceNetwork --------------------------------------------------------------------
def test_service_network_uses_iam_auth_with_network_policy(concentrator):
    _, t, _ = concentrator
    t.has_resource_properties("AWS::VpcLattice::ServiceNetwork", {"AuthType": "AWS_IAM", "Name": "telemetry"})
    policies = resources(t.to_json(), "AWS::VpcLattice::AuthPolicy")
    network_policy = next(p for p in policies.values()
                          if p["Properties"]["ResourceIdentifier"]["Fn::GetAtt"][0].startswith("SN"))
    sids = [s["Sid"] for s in network_policy["Properties"]["Policy"]["Statement"]]
    assert sids == ["AllowAuthenticatedPrincipalsOfPusherAccounts", "DenyAnonymous"]


def test_service_network_access_logs_go_to_encrypted_expiring_bucket(concentrator):
    _, t, _ = concentrator
    t.has_resource_properties("AWS::VpcLattice::AccessLogSubscription", {
        "ResourceIdentifier": {"Fn::GetAtt": [Match.string_like_regexp("^SN"), "Arn"]},
        "DestinationArn": {"Fn::GetAtt": [Match.string_like_regexp("^SNAccessLogBucket"), "Arn"]},
    })
    t.has_resource_properties("AWS::S3::Bucket", {
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
        "LifecycleConfiguration": {"Rules": Match.array_with([
            Match.object_like({"ExpirationInDays": 365, "Status": "Enabled"})])},
        "PublicAccessBlockConfiguration": Match.object_like({"BlockPublicAcls": True, "RestrictPublicBuckets": True}),
        "LoggingConfiguration": Match.object_like({"DestinationBucketName": Match.any_value()}),
    })
    # Log delivery may write only under AWSLogs/<this account>/ and only from this account's log sources.
    policies = resources(t.to_json(), "AWS::S3::BucketPolicy")
    delivery = [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]
                if s.get("Principal") == {"Service": "delivery.logs.amazonaws.com"}]
    assert {s["Sid"] for s in delivery} == {"AWSLogDeliveryWrite", "AWSLogDeliveryAclCheck"}
    assert all("aws:SourceAccount" in s["Condition"]["StringEquals"] for s in delivery)


def test_service_network_is_shared_through_ram(concentrator):
    _, t, _ = concentrator
    t.has_resource_properties("AWS::RAM::ResourceShare", {
        "Principals": ["111111111111", "222222222222"],
        "AllowExternalPrincipals": False,
        "ResourceArns": [{"Fn::GetAtt": [Match.string_like_regexp("^SN"), "Arn"]}],
    })


@pytest.mark.parametrize(
    ("share_with", "match"),
    [
        (["o-abcdefghij"], "RAM needs the organization ARN"),
        (["12345"], "'12345' must be 12 digits"),
        (["team-a"], "'team-a' is not a 12-digit account id"),
    ],
)
def test_service_network_rejects_bad_share_targets(tmp_path, share_with, match):
    stack = cdk.Stack(new_app(tmp_path), "S")
    with pytest.raises(ValidationError, match=match):
        TelemetryServiceNetwork(stack, "SN", pushers=PUSHERS, share_with=share_with)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pushers": []}, "no pushers"),
        ({"pushers": PUSHERS, "name": "Telemetry"}, "'Telemetry' is not one VPC Lattice accepts"),
        ({"pushers": PUSHERS, "name": "servicenetwork-x"}, "not starting with 'servicenetwork-'"),
        ({"pushers": PUSHERS, "name": "a--b"}, "single hyphens"),
    ],
)
def test_service_network_rejects_bad_input(tmp_path, kwargs, match):
    stack = cdk.Stack(new_app(tmp_path), "S")
    with pytest.raises(ValidationError, match=match):
        TelemetryServiceNetwork(stack, "SN", **kwargs)


def test_service_network_imports_by_arn_and_rejects_other_arns(tmp_path):
    stack = cdk.Stack(new_app(tmp_path), "I")
    imported = TelemetryServiceNetwork.from_service_network_arn(stack, "SN", SN_ARN)
    assert imported.service_network_arn == SN_ARN
    assert stack.resolve(imported.service_network_id) == "sn-0123456789abcdef0"
    with pytest.raises(ValidationError, match="must look like"):
        TelemetryServiceNetwork.from_service_network_arn(stack, "Bad", "arn:aws:s3:::bucket")
    # A deploy-time value passes and is checked by CloudFormation.
    TelemetryServiceNetwork.from_service_network_arn(stack, "Tok", cdk.Fn.import_value("SnArn"))


# --- TelemetryGateway ---------------------------------------------------------------------------
def test_gateway_https_listener_defaults_to_404(concentrator):
    _, t, _ = concentrator
    t.has_resource_properties("AWS::VpcLattice::Service", {"AuthType": "AWS_IAM", "Name": "telemetry-gateway",
                                                          "IdleTimeoutSeconds": 60})
    t.has_resource_properties("AWS::VpcLattice::Listener", {
        "Protocol": "HTTPS", "Port": 443, "DefaultAction": {"FixedResponse": {"StatusCode": 404}},
    })


def test_gateway_has_one_post_rule_per_route_to_the_right_target_group(concentrator):
    _, t, gw = concentrator
    template = t.to_json()
    rules = resources(template, "AWS::VpcLattice::Rule").values()
    by_path = {r["Properties"]["Match"]["HttpMatch"]["PathMatch"]["Match"]["Exact"]: r["Properties"] for r in rules}
    assert set(by_path) == {"/metrics", "/v1/traces", "/v1/metrics", "/v1/logs"}
    # Priorities derive from the path (core.routes.path_priority), so they survive adding or removing routes.
    assert {path: p["Priority"] for path, p in by_path.items()} == {r.path: r.rule_priority for r in default_routes()}
    for path, props in by_path.items():
        assert props["Match"]["HttpMatch"]["Method"] == "POST"
        assert props["Match"]["HttpMatch"]["PathMatch"]["CaseSensitive"] is True
        target = props["Action"]["Forward"]["TargetGroups"][0]["TargetGroupIdentifier"]["Fn::GetAtt"][0]
        expected = "Vector" if path == "/metrics" else "Otel"
        assert target.startswith(f"GW{expected}Targets"), (path, target)


@pytest.mark.parametrize(
    ("kind", "port", "health_port", "health_path"),
    [
        ("vector", contract.VECTOR_HTTP_PORT, contract.VECTOR_HEALTH_PORT, contract.VECTOR_HEALTH_PATH),
        ("otel", contract.OTEL_HTTP_PORT, contract.OTEL_HEALTH_PORT, contract.OTEL_HEALTH_PATH),
    ],
)
def test_gateway_target_groups_are_ip_with_collector_health_checks(concentrator, kind, port, health_port, health_path):
    _, t, gw = concentrator
    assert kind in gw.target_groups
    t.has_resource_properties("AWS::VpcLattice::TargetGroup", {
        "Type": "IP",
        "Config": Match.object_like({
            "Port": port, "Protocol": "HTTP", "VpcIdentifier": Match.any_value(),
            "HealthCheck": Match.object_like({"Enabled": True, "Port": health_port, "Path": health_path}),
        }),
    })


def test_gateway_is_associated_and_logged(concentrator):
    _, t, _ = concentrator
    t.has_resource_properties("AWS::VpcLattice::ServiceNetworkServiceAssociation", {
        "ServiceIdentifier": {"Fn::GetAtt": [Match.string_like_regexp("^GW"), "Id"]},
        "ServiceNetworkIdentifier": {"Fn::GetAtt": [Match.string_like_regexp("^SN"), "Arn"]},
    })
    t.resource_count_is("AWS::VpcLattice::AccessLogSubscription", 2)


def test_gateway_policy_allows_only_post_to_routes(concentrator):
    stack, t, gw = concentrator
    policy = stack.resolve(gw.auth_policy.policy)
    allow = policy["Statement"][0]
    assert allow["Effect"] == "Allow" and allow["Action"] == "vpc-lattice-svcs:Invoke"
    assert allow["Condition"]["StringEquals"]["vpc-lattice-svcs:RequestMethod"] == "POST"
    assert [r["Fn::Join"][1][1] for r in allow["Resource"]] == ["/metrics", "/v1/traces", "/v1/metrics", "/v1/logs"]
    assert [s["Sid"] for s in policy["Statement"][1:]] == ["DenyEveryMethodButPost", "DenyAnonymous"]


def _gateway(tmp_path, **kwargs):
    app = new_app(tmp_path)
    stack = cdk.Stack(app, "G")
    net = ConcentratorVpc(stack, "Net")
    sn = TelemetryServiceNetwork(stack, "SN", pushers=kwargs.pop("pushers", PUSHERS))
    return app, stack, TelemetryGateway(stack, "GW", vpc=net.vpc, service_network=sn, **kwargs)


def test_gateway_routes_can_be_added_later(tmp_path):
    _, stack, gw = _gateway(tmp_path)
    gw.add_route(Route.vector_http("/metrics"))
    gw.add_route(Route("/logs", "vector"))
    t = Template.from_stack(stack)
    t.resource_count_is("AWS::VpcLattice::Rule", 2)
    t.resource_count_is("AWS::VpcLattice::TargetGroup", 1)  # both routes share the Vector group
    resolved = stack.resolve(gw.auth_policy.policy)
    assert [r["Fn::Join"][1][1] for r in resolved["Statement"][0]["Resource"]] == ["/metrics", "/logs"]


def test_gateway_without_routes_fails_at_synth(tmp_path):
    app, _, _ = _gateway(tmp_path)
    with pytest.raises(RuntimeError, match="TelemetryGateway has no routes"):
        app.synth()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"routes": [Route.vector_http(), Route.vector_http()]}, "duplicate route path"),
        ({"routes": [Route(f"/r{i}") for i in range(11)]}, "a VPC Lattice listener allows 10"),
        ({"pushers": []}, "no pushers"),
        ({"routes": default_routes(), "name": "svc-telemetry"}, "not starting with 'svc-'"),
        ({"routes": default_routes(), "idle_timeout": cdk.Duration.seconds(30)}, "30 s is outside VPC Lattice's 60-600 s range"),
        ({"routes": default_routes(), "target_groups": {"jaeger": None}}, "'jaeger' is not a collector"),
    ],
)
def test_gateway_rejects_bad_input(tmp_path, kwargs, match):
    with pytest.raises(ValidationError, match=match):
        _gateway(tmp_path, **kwargs)


def test_policies_over_10kb_fail_naming_the_size(tmp_path):
    # Many accounts: the service network policy (one account root each) is too big.
    accounts = [Pusher.role(f"arn:aws:iam::{100000000000 + i}:role/telemetry-agent-{i:04d}") for i in range(300)]
    stack = cdk.Stack(new_app(tmp_path / "big"), "Big")
    with pytest.raises(ValidationError, match=r"service network auth policy is \d+ bytes minified, over VPC Lattice's 10240"):
        TelemetryServiceNetwork(stack, "SN", pushers=accounts)
    # Many roles of one account: the network policy is small, the gateway's is too big.
    roles = [Pusher.role(f"arn:aws:iam::111111111111:role/telemetry-agent-with-a-long-name-{i:04d}") for i in range(200)]
    with pytest.raises(ValidationError, match=r"gateway service auth policy is \d+ bytes minified"):
        _gateway(tmp_path, pushers=roles, routes=default_routes())


def test_gateway_reuses_passed_target_groups(tmp_path):
    app = new_app(tmp_path)
    stack = cdk.Stack(app, "P")
    from aws_cdk import aws_vpclattice as lattice

    tg = lattice.CfnTargetGroup(stack, "Mine", type="IP", config={"port": 9000, "protocol": "HTTP", "vpcIdentifier": "vpc-1"})
    net = ConcentratorVpc(stack, "Net")
    sn = TelemetryServiceNetwork(stack, "SN", pushers=PUSHERS)
    gw = TelemetryGateway(stack, "GW", vpc=net.vpc, service_network=sn, pushers=PUSHERS,
                          routes=[Route.vector_http()], target_groups={"vector": tg})
    assert gw.target_groups["vector"] is tg
    Template.from_stack(stack).resource_count_is("AWS::VpcLattice::TargetGroup", 1)


# --- AppVpcAttachment ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def attachment(tmp_path_factory):
    app = new_app(tmp_path_factory.mktemp("a"))
    stack = cdk.Stack(app, "A")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0,
                  subnet_configuration=[ec2.SubnetConfiguration(name="p", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)])
    sn = TelemetryServiceNetwork.from_service_network_arn(stack, "SN", SN_ARN)
    att = AppVpcAttachment(stack, "Att", vpc=vpc, service_network=sn)
    role = iam.Role(stack, "Agent", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"))
    att.grant_push(role, gateway=GatewayRef(
        service_arn="arn:aws:vpc-lattice:us-east-1:999999999999:service/svc-0123456789abcdef0",
        dns_name="telemetry-gateway-0123456789abcdef0.7d67968.vpc-lattice-svcs.us-east-1.on.aws",
        routes=tuple(default_routes()), service_network_arn=SN_ARN))
    return stack, Template.from_stack(stack)


def test_attachment_associates_vpc_with_its_security_group(attachment):
    _, t = attachment
    t.has_resource_properties("AWS::VpcLattice::ServiceNetworkVpcAssociation", {
        "ServiceNetworkIdentifier": SN_ARN,
        "VpcIdentifier": {"Ref": Match.string_like_regexp("^Vpc")},
        "SecurityGroupIds": [{"Fn::GetAtt": [Match.string_like_regexp("^AttSecurityGroup"), "GroupId"]}],
    })


def test_attachment_security_group_only_reaches_lattice_prefix_lists_on_443(attachment):
    _, t = attachment
    groups = [g for lid, g in resources(t.to_json(), "AWS::EC2::SecurityGroup").items() if lid.startswith("AttSecurityGroup")]
    assert len(groups) == 1
    props = groups[0]["Properties"]
    assert "SecurityGroupIngress" not in props
    # Rules to deploy-time prefix list ids become separate egress resources.
    egress = [r["Properties"] for r in resources(t.to_json(), "AWS::EC2::SecurityGroupEgress").values()]
    # ...so the group itself must carry the no-traffic placeholder, or CloudFormation adds allow-all egress.
    assert props["SecurityGroupEgress"] == [MATCH_NO_TRAFFIC]
    assert len(egress) == 2
    for rule in egress:
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 443, 443)
        assert "DestinationPrefixListId" in rule and "CidrIp" not in rule
    # The prefix list ids are looked up by name at deploy time (env-agnostic stack).
    lookups = [json.dumps(r["Properties"]["Create"]) for r in resources(t.to_json(), "Custom::AWS").values()]
    assert any("vpc-lattice" in lk and "ipv6" not in lk for lk in lookups)
    assert any("ipv6.vpc-lattice" in lk for lk in lookups)


def test_grant_push_allows_post_to_routes_only(attachment):
    _, t = attachment
    t.has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": {"Statement": [{
        "Effect": "Allow",
        "Action": "vpc-lattice-svcs:Invoke",
        "Condition": {"StringEquals": {"vpc-lattice-svcs:RequestMethod": "POST"}},
        "Resource": [f"arn:aws:vpc-lattice:us-east-1:999999999999:service/svc-0123456789abcdef0{p}"
                     for p in ("/metrics", "/v1/traces", "/v1/metrics", "/v1/logs")],
    }], "Version": "2012-10-17"}})


def test_attachment_warns_when_vpc_may_already_be_associated(tmp_path):
    stack = cdk.Stack(new_app(tmp_path), "W")
    vpc = ec2.Vpc.from_vpc_attributes(stack, "V", vpc_id="vpc-0123456789abcdef0", availability_zones=["us-east-1a", "us-east-1b"])
    AppVpcAttachment(stack, "Att", vpc=vpc, service_network=TelemetryServiceNetwork.from_service_network_arn(stack, "SN", SN_ARN))
    Annotations.from_stack(stack).has_warning("/W/Att", Match.string_like_regexp("only one VPC Lattice service network"))


def test_attachment_warns_for_a_vpc_defined_in_the_stack_too(attachment):
    """An existing stack's ec2.Vpc is as likely to be associated already as an imported one."""
    stack, _ = attachment
    Annotations.from_stack(stack).has_warning("/A/Att", Match.string_like_regexp("only one VPC Lattice service network"))


def test_attachment_endpoint_mode_creates_service_network_endpoint(tmp_path):
    stack = cdk.Stack(new_app(tmp_path), "EP")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0,
                  subnet_configuration=[ec2.SubnetConfiguration(name="p", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)])
    sn = TelemetryServiceNetwork.from_service_network_arn(stack, "SN", SN_ARN)
    AppVpcAttachment(stack, "Att", vpc=vpc, service_network=sn, mode="endpoint",
                     subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED))
    t = Template.from_stack(stack)
    t.resource_count_is("AWS::VpcLattice::ServiceNetworkVpcAssociation", 0)
    t.has_resource_properties("AWS::EC2::VPCEndpoint", {
        "VpcEndpointType": "ServiceNetwork", "ServiceNetworkArn": SN_ARN,
        "SubnetIds": Match.any_value(), "SecurityGroupIds": Match.any_value(),
    })


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"mode": "peering"}, "mode 'peering' must be 'association' or 'endpoint'"),
    ({"mode": "endpoint"}, "mode='endpoint' needs subnets"),
    ({"listener_port": 0}, "listener_port 0 is not a TCP port"),
])
def test_attachment_rejects_bad_input(tmp_path, kwargs, match):
    stack = cdk.Stack(new_app(tmp_path), "B")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0,
                  subnet_configuration=[ec2.SubnetConfiguration(name="p", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)])
    shared = TelemetryServiceNetwork.from_service_network_arn(stack, "SN", SN_ARN)
    with pytest.raises(ValidationError, match=match):
        AppVpcAttachment(stack, "Att", vpc=vpc, service_network=shared, **kwargs)


def test_policy_size_counts_partition_tokens_at_their_real_length(tmp_path):
    # 110 account pushers: with each partition token counted at 100 bytes the network policy would be
    # ~16 KB and refused; at its real worst case ("aws-us-gov", 10 bytes) it is ~6 KB and fits.
    accounts = [Pusher.account(str(100000000000 + i)) for i in range(110)]
    stack = cdk.Stack(new_app(tmp_path), "Sized")
    sn = TelemetryServiceNetwork(stack, "SN", pushers=accounts)
    from telemetry_shunt.core.policy import policy_size, service_network_auth_policy

    assert policy_size(stack.resolve(sn.auth_policy.policy)) < 10 * 1024
    # What a token-blind count would have said (and refused):
    assert policy_size(service_network_auth_policy(pushers=accounts, partition=cdk.Aws.PARTITION)) > 10 * 1024
