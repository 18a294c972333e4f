"""The CLI boundary: missing extras and AWS errors become one line and exit 1."""

from __future__ import annotations

import click
from botocore.exceptions import ClientError, NoRegionError
from click.testing import CliRunner

from telemetry_shunt.cli.common import cli_boundary


def _command(exc: BaseException) -> click.Command:
    @click.command()
    @cli_boundary
    def cmd() -> None:
        raise exc

    @click.group()
    @click.option("--debug", is_flag=True)
    def root(debug: bool) -> None:
        pass

    root.add_command(cmd, "cmd")
    return root


def test_missing_extra_is_one_line_naming_the_extra():
    result = CliRunner().invoke(_command(ModuleNotFoundError("No module named 'boto3'", name="boto3")), ["cmd"])
    assert result.exit_code == 1
    assert result.output.strip() == "shunt: this command needs the 'boto3' package: pip install 'telemetry-shunt[rollout]'"


def test_aws_errors_say_what_to_do():
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "SendCommand")
    result = CliRunner().invoke(_command(denied), ["cmd"])
    assert result.exit_code == 1
    assert "AWS SendCommand failed with AccessDeniedException" in result.output and "operator role" in result.output
    result = CliRunner().invoke(_command(NoRegionError()), ["cmd"])
    assert result.exit_code == 1 and "pass --region or set AWS_REGION" in result.output


def test_debug_shows_the_traceback():
    result = CliRunner().invoke(_command(ModuleNotFoundError("x", name="boto3")), ["--debug", "cmd"])
    assert isinstance(result.exception, ModuleNotFoundError)
