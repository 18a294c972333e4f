# ruff: noqa: F401  (this module re-exports: the flavour imports these names from here only)
"""Every CDK Terrain and AWS-provider import of the Terraform flavour, in one place.

A provider upgrade (or a rename between provider releases) touches this file only. Nothing outside
``telemetry_shunt/terraform/`` imports cdktn.
"""

from __future__ import annotations

from cdktn import App, Fn, LocalBackend, S3Backend, TerraformOutput, TerraformStack, Testing, Token
from cdktn_provider_aws.appautoscaling_policy import (
    AppautoscalingPolicy,
    AppautoscalingPolicyTargetTrackingScalingPolicyConfiguration,
    AppautoscalingPolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecification,
    AppautoscalingPolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationDimensions,
    AppautoscalingPolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecification,
)
from cdktn_provider_aws.appautoscaling_target import AppautoscalingTarget
from cdktn_provider_aws.appconfig_application import AppconfigApplication
from cdktn_provider_aws.appconfig_configuration_profile import AppconfigConfigurationProfile
from cdktn_provider_aws.appconfig_deployment import AppconfigDeployment
from cdktn_provider_aws.appconfig_deployment_strategy import AppconfigDeploymentStrategy
from cdktn_provider_aws.appconfig_environment import AppconfigEnvironment
from cdktn_provider_aws.appconfig_hosted_configuration_version import AppconfigHostedConfigurationVersion
from cdktn_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktn_provider_aws.cloudwatch_metric_alarm import (
    CloudwatchMetricAlarm,
    CloudwatchMetricAlarmMetricQuery,
    CloudwatchMetricAlarmMetricQueryMetric,
)
from cdktn_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity
from cdktn_provider_aws.data_aws_ec2_managed_prefix_list import DataAwsEc2ManagedPrefixList
from cdktn_provider_aws.data_aws_partition import DataAwsPartition
from cdktn_provider_aws.data_aws_region import DataAwsRegion
from cdktn_provider_aws.default_security_group import DefaultSecurityGroup
from cdktn_provider_aws.dynamodb_table import (
    DynamodbTable,
    DynamodbTableAttribute,
    DynamodbTablePointInTimeRecovery,
    DynamodbTableServerSideEncryption,
    DynamodbTableTtl,
)
from cdktn_provider_aws.ecs_cluster import EcsCluster, EcsClusterSetting
from cdktn_provider_aws.ecs_service import (
    EcsService,
    EcsServiceDeploymentCircuitBreaker,
    EcsServiceNetworkConfiguration,
    EcsServiceVpcLatticeConfigurations,
)
from cdktn_provider_aws.ecs_task_definition import (
    EcsTaskDefinition,
    EcsTaskDefinitionEphemeralStorage,
    EcsTaskDefinitionRuntimePlatform,
    EcsTaskDefinitionVolume,
)
from cdktn_provider_aws.eip import Eip
from cdktn_provider_aws.flow_log import FlowLog
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from cdktn_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from cdktn_provider_aws.internet_gateway import InternetGateway
from cdktn_provider_aws.kms_key import KmsKey
from cdktn_provider_aws.nat_gateway import NatGateway
from cdktn_provider_aws.provider import AwsProvider
from cdktn_provider_aws.ram_principal_association import RamPrincipalAssociation
from cdktn_provider_aws.ram_resource_association import RamResourceAssociation
from cdktn_provider_aws.ram_resource_share import RamResourceShare
from cdktn_provider_aws.route import Route as RouteEntry
from cdktn_provider_aws.route_table import RouteTable
from cdktn_provider_aws.route_table_association import RouteTableAssociation
from cdktn_provider_aws.s3_bucket import S3Bucket
from cdktn_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfiguration,
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload,
    S3BucketLifecycleConfigurationRuleExpiration,
    S3BucketLifecycleConfigurationRuleFilter,
    S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration,
    S3BucketLifecycleConfigurationRuleTransition,
)
from cdktn_provider_aws.s3_bucket_logging import S3BucketLoggingA
from cdktn_provider_aws.s3_bucket_policy import S3BucketPolicy
from cdktn_provider_aws.s3_bucket_public_access_block import S3BucketPublicAccessBlock
from cdktn_provider_aws.s3_bucket_server_side_encryption_configuration import (
    S3BucketServerSideEncryptionConfigurationA,
    S3BucketServerSideEncryptionConfigurationRuleA,
    S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA,
)
from cdktn_provider_aws.s3_bucket_versioning import S3BucketVersioningA, S3BucketVersioningVersioningConfiguration
from cdktn_provider_aws.security_group import SecurityGroup
from cdktn_provider_aws.sns_topic import SnsTopic
from cdktn_provider_aws.ssm_document import SsmDocument
from cdktn_provider_aws.subnet import Subnet
from cdktn_provider_aws.vpc import Vpc
from cdktn_provider_aws.vpc_endpoint import VpcEndpoint, VpcEndpointDnsOptions
from cdktn_provider_aws.vpc_security_group_egress_rule import VpcSecurityGroupEgressRule
from cdktn_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule
from cdktn_provider_aws.vpclattice_access_log_subscription import VpclatticeAccessLogSubscription
from cdktn_provider_aws.vpclattice_auth_policy import VpclatticeAuthPolicy
from cdktn_provider_aws.vpclattice_listener import (
    VpclatticeListener,
    VpclatticeListenerDefaultAction,
    VpclatticeListenerDefaultActionFixedResponse,
)
from cdktn_provider_aws.vpclattice_listener_rule import (
    VpclatticeListenerRule,
    VpclatticeListenerRuleAction,
    VpclatticeListenerRuleActionForward,
    VpclatticeListenerRuleActionForwardTargetGroups,
    VpclatticeListenerRuleMatch,
    VpclatticeListenerRuleMatchHttpMatch,
    VpclatticeListenerRuleMatchHttpMatchPathMatch,
    VpclatticeListenerRuleMatchHttpMatchPathMatchMatch,
)
from cdktn_provider_aws.vpclattice_service import VpclatticeService
from cdktn_provider_aws.vpclattice_service_network import VpclatticeServiceNetwork
from cdktn_provider_aws.vpclattice_service_network_service_association import (
    VpclatticeServiceNetworkServiceAssociation,
)
from cdktn_provider_aws.vpclattice_service_network_vpc_association import (
    VpclatticeServiceNetworkVpcAssociation,
    VpclatticeServiceNetworkVpcAssociationDnsOptions,
)
from cdktn_provider_aws.vpclattice_target_group import (
    VpclatticeTargetGroup,
    VpclatticeTargetGroupConfigA,
    VpclatticeTargetGroupConfigHealthCheck,
    VpclatticeTargetGroupConfigHealthCheckMatcher,
)

#: The AWS provider the prebuilt bindings were generated for (cdktn-provider-aws 25.8.x).
AWS_PROVIDER_SOURCE = "hashicorp/aws"

__all__ = [name for name in dir() if name[0].isupper()]
