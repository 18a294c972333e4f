"""The telemetry kill switch: AWS AppConfig feature flags, one global flag and one per Availability Zone.

Hosts (``core/hostside``), the in-app client and the rollout engine read the same profile and apply the
same rule (:func:`telemetry_shunt.core.killswitch.telemetry_enabled`). Flips go out with an all-at-once
deployment strategy: a kill must reach every poller on its next poll, not after a linear ramp.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from aws_cdk import Duration, Stack, Token
from aws_cdk import aws_appconfig as appconfig
from aws_cdk import aws_iam as iam
from constructs import Construct

from telemetry_shunt.core.contract import (
    APPCONFIG_APPLICATION,
    APPCONFIG_ENVIRONMENT,
    APPCONFIG_MIN_POLL_SECONDS,
    APPCONFIG_PROFILE,
    DEFAULT_POLL_SECONDS,
    DEFAULT_RESOURCE_PREFIX,
    kill_switch_strategy_name,
)
from telemetry_shunt.core.killswitch import FEATURE_FLAGS_TYPE, feature_flags_content, validate_availability_zones
from telemetry_shunt.errors import ValidationError


class KillSwitch(Construct):
    """AppConfig application, feature-flag profile, environment and all-at-once strategy for the kill switch.

    The first configuration (every flag on unless ``initial_flags`` says otherwise) is deployed from the
    template. Later flips come from ``shunt kill``; redeploying this stack only redeploys the flags when
    their content here changes (for example a new AZ), so check ``shunt kill status`` before such a change.

    :param availability_zones: AZ names that get a per-AZ flag (``telemetry-<az>``); one Region.
    :param poll_interval: how often hosts read the switch; at least 15 s (AppConfig's data-plane limit).
        Default 45 s, the AppConfig agent's own default.
    :param initial_flags: initial values by flag key (``{"telemetry-us-east-1a": False}``). Default: all on.
    :param prefix: prefix for the deployment strategy's name. Default ``TelemetryShunt``.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        availability_zones: Sequence[str],
        poll_interval: Duration | None = None,  # None: DEFAULT_POLL_SECONDS (no jsii call at import)
        initial_flags: Mapping[str, bool] | None = None,
        prefix: str = DEFAULT_RESOURCE_PREFIX,
    ) -> None:
        super().__init__(scope, id)
        poll_interval = Duration.seconds(DEFAULT_POLL_SECONDS) if poll_interval is None else poll_interval
        seconds = poll_interval.to_seconds(integral=False)
        if seconds < APPCONFIG_MIN_POLL_SECONDS or seconds != int(seconds):
            raise ValidationError(
                f"kill-switch poll interval must be whole seconds, at least {APPCONFIG_MIN_POLL_SECONDS} s "
                f"(AppConfig's data-plane limit), got {poll_interval.to_human_string()}"
            )
        self.availability_zones = validate_availability_zones(availability_zones)
        self.poll_interval = poll_interval
        content = feature_flags_content(self.availability_zones, initial_flags)
        self.flag_keys = tuple(content["flags"])

        self.application = appconfig.CfnApplication(
            self, "Resource", name=APPCONFIG_APPLICATION,
            description="telemetry-shunt kill switch: telemetry runs only while its flags allow",
        )
        self.environment = appconfig.CfnEnvironment(
            self, "Environment", application_id=self.application.attr_application_id, name=APPCONFIG_ENVIRONMENT,
            description="The one environment every host, client and rollout reads; per-AZ control is per-AZ flags.",
        )
        self.profile = appconfig.CfnConfigurationProfile(
            self, "Profile", application_id=self.application.attr_application_id, name=APPCONFIG_PROFILE,
            location_uri="hosted", type=FEATURE_FLAGS_TYPE,
            description=f"Flags: {', '.join(self.flag_keys)}",
        )
        # All at once, no bake: a kill (or its undo) must reach every poller at once, and a bake would keep
        # the environment busy, blocking the next flip (one deployment per environment at a time). No alarm
        # monitors either: an automatic rollback of a kill would turn telemetry back on.
        self.deployment_strategy = appconfig.CfnDeploymentStrategy(
            self, "AllAtOnce", name=kill_switch_strategy_name(prefix),
            deployment_duration_in_minutes=0, growth_factor=100, growth_type="LINEAR",
            final_bake_time_in_minutes=0, replicate_to="NONE",
            description="Kill-switch flips: every poller at once, no bake",
        )
        self.initial_version = appconfig.CfnHostedConfigurationVersion(
            self, "InitialFlags", application_id=self.application.attr_application_id,
            configuration_profile_id=self.profile.attr_configuration_profile_id,
            content=json.dumps(content, sort_keys=True), content_type="application/json",
            description="Flags as deployed by the stack",
        )
        self.initial_deployment = appconfig.CfnDeployment(
            self, "InitialDeployment", application_id=self.application.attr_application_id,
            environment_id=self.environment.attr_environment_id,
            configuration_profile_id=self.profile.attr_configuration_profile_id,
            configuration_version=self.initial_version.attr_version_number,
            deployment_strategy_id=self.deployment_strategy.attr_id,
            description="Initial kill-switch flags from the stack",
        )

    @property
    def application_id(self) -> str:
        return self.application.attr_application_id

    @property
    def environment_id(self) -> str:
        return self.environment.attr_environment_id

    @property
    def profile_id(self) -> str:
        return self.profile.attr_configuration_profile_id

    @property
    def deployment_strategy_id(self) -> str:
        return self.deployment_strategy.attr_id

    def _arn(self, resource: str, resource_name: str | None = None) -> str:
        return Stack.of(self).format_arn(service="appconfig", resource=resource, resource_name=resource_name)

    @property
    def application_arn(self) -> str:
        return self._arn("application", self.application_id)

    @property
    def configuration_arn(self) -> str:
        """What hosts and clients read: ``application/<app>/environment/<env>/configuration/<profile>``."""
        return self._arn(
            "application", f"{self.application_id}/environment/{self.environment_id}/configuration/{self.profile_id}"
        )

    @property
    def deployment_strategy_arn(self) -> str:
        return self._arn("deploymentstrategy", self.deployment_strategy_id)

    def grant_read(self, grantee: iam.IGrantable) -> iam.Grant:
        """Read the flags (AppConfig agent, appconfigdata): StartConfigurationSession + GetLatestConfiguration."""
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["appconfig:StartConfigurationSession", "appconfig:GetLatestConfiguration"],
            resource_arns=[self.configuration_arn],
        )

    def grant_flip(self, grantee: iam.IGrantable) -> iam.Grant:
        """Flip flags (``shunt kill``): write a hosted version of this profile and deploy it with this strategy.

        Scoped to this application (its environment, profile, versions and deployments) and this strategy;
        only ``ListApplications`` and ``ListDeploymentStrategies``, which find them by name, need ``*``.
        """
        grant = iam.Grant.add_to_principal(
            grantee=grantee,
            actions=[
                "appconfig:GetApplication", "appconfig:ListEnvironments", "appconfig:GetEnvironment",
                "appconfig:ListConfigurationProfiles", "appconfig:GetConfigurationProfile",
                "appconfig:ListHostedConfigurationVersions", "appconfig:GetHostedConfigurationVersion",
                "appconfig:CreateHostedConfigurationVersion", "appconfig:GetDeploymentStrategy",
                "appconfig:StartDeployment", "appconfig:GetDeployment", "appconfig:ListDeployments",
                "appconfig:StopDeployment",
            ],
            resource_arns=[self.application_arn, self._arn("application", f"{self.application_id}/*"),
                           self.deployment_strategy_arn],
        )
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["appconfig:ListApplications", "appconfig:ListDeploymentStrategies"],
            resource_arns=["*"],
        )
        return grant

    @staticmethod
    def from_configuration_arn(scope: Construct, id: str, arn: str) -> ImportedKillSwitch:
        """A kill switch deployed by another stack: its ``configuration_arn`` (checked here), for :meth:`grant_read`."""
        return ImportedKillSwitch(scope, id, configuration_arn=arn)


# arn:<partition>:appconfig:<region>:<account>:application/<app>/environment/<env>/configuration/<profile>
_CONFIGURATION_ARN = re.compile(
    r"arn:(aws|aws-cn|aws-us-gov):appconfig:[a-z]{2}(?:-[a-z]+)+-\d:\d{12}:"
    r"application/[a-z0-9]{4,7}/environment/[a-z0-9]{4,7}/configuration/[a-z0-9]{4,7}", re.ASCII)


class ImportedKillSwitch(Construct):
    """A kill switch from another stack or account, known by its configuration ARN: hosts read it."""

    def __init__(self, scope: Construct, id: str, *, configuration_arn: str) -> None:
        super().__init__(scope, id)
        if not Token.is_unresolved(configuration_arn) and not (
            isinstance(configuration_arn, str) and _CONFIGURATION_ARN.fullmatch(configuration_arn)
        ):
            raise ValidationError(
                f"kill-switch configuration ARN {configuration_arn!r} must look like 'arn:aws:appconfig:us-east-1:"
                "111111111111:application/abc1234/environment/def5678/configuration/ghi9012' (the kill switch's "
                "configuration_arn, not an application or profile id)"
            )
        self.configuration_arn = configuration_arn

    def grant_read(self, grantee: iam.IGrantable) -> iam.Grant:
        """Read the flags: StartConfigurationSession + GetLatestConfiguration on this configuration."""
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["appconfig:StartConfigurationSession", "appconfig:GetLatestConfiguration"],
            resource_arns=[self.configuration_arn],
        )
