"""What every ``shunt`` command shares: options, output rendering and the error boundary.

Results go to stdout (``--output json|table``); progress and logs go to stderr. User mistakes and AWS
errors become one line on stderr and exit code 1; ``--debug`` shows the traceback instead.

Exit codes:

- 0: done (for ``shunt policy prove``: every invariant PROVEN);
- 1: a mistake the user can fix (bad input, missing file or extra, AWS error): one line on stderr;
- 2: a rollout stopped (halted or rolled back); also click's usage errors (unknown option, missing argument);
- 3: the rollout's state is held or changed by another operator (lease, conflict);
- 4 (:data:`EXIT_NOT_PROVEN`): ``shunt policy prove`` ran and an invariant is VIOLATED (a counterexample)
  or NOT PROVEN (the policy uses something the prover does not model);
- 130: interrupted (Ctrl-C); state is saved.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import click

from telemetry_shunt.errors import ShuntError

OUTPUT_FORMATS = ("table", "json")
EXIT_NOT_PROVEN = 4
# Which extra brings a module that a command imports lazily (pyproject.toml [project.optional-dependencies]).
_EXTRA_FOR_MODULE = {"boto3": "rollout", "botocore": "rollout", "moto": "sandbox", "aws_cdk": "cdk", "constructs": "cdk",
                     "cdk_nag": "cdk", "z3": "verify", "iamprover": "verify", "cdktn": "terraform",
                     "cdktn_provider_aws": "terraform"}


def extra_for(module: str) -> str:
    """The extra that installs ``module`` (a dotted name is looked up by its top-level package)."""
    return _EXTRA_FOR_MODULE.get(module.split(".")[0], "all")


def output_option(func: Callable) -> Callable:
    return click.option(
        "--output", "output", type=click.Choice(OUTPUT_FORMATS), default="table", show_default=True,
        help="Result format on stdout.",
    )(func)


def aws_options(func: Callable) -> Callable:
    """``--region``, ``--profile`` and ``--endpoint-url`` (for moto or LocalStack)."""
    func = click.option("--endpoint-url", type=ENDPOINT_URL, default=None,
                        help="Send AWS calls here (moto server, LocalStack): an http:// or https:// URL.")(func)
    func = click.option("--profile", default=None, help="AWS named profile.")(func)
    func = click.option("--region", type=REGION, default=None,
                        help="AWS Region (default: the profile's or AWS_REGION).")(func)
    return func


def progress(message: str) -> None:
    """Progress for humans: stderr, never mixed into results."""
    click.echo(message, err=True)


def render(result: Any, output: str, *, columns: Sequence[str] | None = None) -> None:
    """Print ``result`` on stdout as JSON or as a plain table.

    A mapping prints as ``key  value`` rows; a list of mappings as a table with ``columns``
    (default: the first row's keys).
    """
    if output == "json":
        click.echo(json.dumps(result, indent=2, sort_keys=False, default=str))
        return
    if isinstance(result, Mapping):
        rows = [(str(k), _cell(v)) for k, v in result.items()]
        width = max((len(k) for k, _ in rows), default=0)
        for key, value in rows:
            click.echo(f"{key.ljust(width)}  {value}")
        return
    if isinstance(result, Iterable) and not isinstance(result, (str, bytes)):
        items = list(result)
        if not items:
            click.echo("(none)")
            return
        cols = list(columns or items[0].keys())
        table = [[_cell(item.get(c)) for c in cols] for item in items]
        widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(cols)]
        click.echo("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
        for row in table:
            click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        return
    click.echo(str(result))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


def translate_aws_error(exc: BaseException) -> str | None:
    """A one-line, actionable message for botocore errors, or None if ``exc`` is not one."""
    try:
        from botocore.exceptions import (
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            NoRegionError,
            ProfileNotFound,
        )
    except ImportError:  # the base install has no botocore
        return None
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials found: set AWS_PROFILE or pass --profile, or use --endpoint-url for a local moto server"
    if isinstance(exc, NoRegionError):
        return "no AWS Region set: pass --region or set AWS_REGION"
    if isinstance(exc, ProfileNotFound):
        return f"{exc}: check --profile against ~/.aws/config"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach {exc.kwargs.get('endpoint_url')}: check --endpoint-url and --region"
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        op = exc.operation_name
        code = err.get("Code", "Unknown")
        hint = {
            "AccessDenied": "the caller lacks permission; use the operator role",
            "AccessDeniedException": "the caller lacks permission; use the operator role",
            "ExpiredToken": "credentials expired; refresh them",
            "UnrecognizedClientException": "credentials are not valid for this Region/endpoint",
            "ThrottlingException": "AWS is throttling; retry in a minute",
        }.get(code, "see the message above")
        return f"AWS {op} failed with {code}: {err.get('Message', '')} ({hint})"
    return None


def cli_boundary(func: Callable) -> Callable:
    """Turn user mistakes and AWS errors into one line on stderr and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = bool(ctx.find_root().params.get("debug"))
        try:
            return func(*args, **kwargs)
        except ShuntError as exc:
            if debug:
                raise
            click.echo(f"shunt: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except ModuleNotFoundError as exc:
            if debug or exc.name is None:
                raise
            extra = extra_for(exc.name)
            click.echo(f"shunt: this command needs the {exc.name!r} package: pip install 'telemetry-shunt[{extra}]'",
                       err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("shunt: interrupted; state is saved, run the same command again or 'resume' to continue", err=True)
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001 - the boundary translates what it knows
            message = translate_aws_error(exc)
            if message is None or debug:
                raise
            click.echo(f"shunt: {message}", err=True)
            ctx.exit(1)

    return wrapper


# --- values checked at the boundary ----------------------------------------------------------------
# Each type turns a bad value into one line naming the option and the value (exit 1) before any AWS call.


class CheckedValue(click.ParamType):
    """A click type whose check is one of the project's validators (a function raising ShuntError)."""

    def __init__(self, name: str, check: Callable[[str], Any]) -> None:
        self.name = name
        self._check = check

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self._check(value)
        except ShuntError as exc:
            self.fail(str(exc), param, ctx)


def _fleet(value: str) -> str:
    from telemetry_shunt.core.validation import fleet_name

    return fleet_name(value)


def _version(value: str) -> str:
    from telemetry_shunt.core.hostside import validate_version

    return validate_version(value)


def _rollout_id(value: str) -> str:
    from telemetry_shunt.agent_rollout.state import validate_rollout_id

    return validate_rollout_id(value)


def _region(value: str) -> str:
    """A Region name in the shape of a partition botocore knows (its endpoints data, not our guess):
    ``us-east-1``, ``cn-north-1``, ``us-gov-west-1`` ..."""
    import re

    try:
        from botocore.loaders import create_loader

        patterns = [p["regionRegex"] for p in create_loader().load_data("endpoints")["partitions"]]
    except ImportError:  # a client-only install: the commonest shape
        patterns = [r"^[a-z]{2}(-[a-z]+)+-\d+$"]
    if not any(re.fullmatch(p.lstrip("^").rstrip("$"), value, re.ASCII) for p in patterns):
        raise ShuntError(f"{value!r} is not an AWS Region name (such as us-east-1, eu-west-1, cn-north-1, "
                         "us-gov-west-1): check --region or AWS_REGION")
    return value


def _endpoint_url(value: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok \
            or any(c.isspace() for c in value) or parts.query or parts.fragment:
        raise ShuntError(f"endpoint URL {value!r} must be an http:// or https:// URL such as "
                         "http://127.0.0.1:5000 (a moto server or LocalStack)")
    return value


def _free_text_name(value: str, *, what: str, maximum: int, advice: str) -> str:
    """A name AWS takes as free text of 1..maximum characters (no pattern in the service model): control
    characters and leading/trailing spaces are never what was meant."""
    if not 1 <= len(value) <= maximum or value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ShuntError(f"{what} {value!r} must be 1-{maximum} characters without control characters or "
                         f"leading/trailing spaces ({advice})")
    return value


def _alarm_name(value: str) -> str:
    # CloudWatch: 1-255 characters
    return _free_text_name(value, what="alarm name", maximum=255, advice="the name of an existing CloudWatch alarm")


def _appconfig_name(value: str) -> str:
    # AppConfig application, environment and deployment strategy names: 1-64 characters (botocore's model, Name)
    return _free_text_name(value, what="AppConfig name", maximum=64,
                           advice="the name of the KillSwitch stack's application, environment or strategy")


def _appconfig_profile_name(value: str) -> str:
    # AppConfig configuration profile names: 1-128 characters (botocore's model, LongName)
    return _free_text_name(value, what="AppConfig profile name", maximum=128,
                           advice="the name of the KillSwitch stack's feature-flag profile")


def _table_name(value: str) -> str:
    import re

    if not re.fullmatch(r"[A-Za-z0-9_.-]{3,255}", value, re.ASCII):
        raise ShuntError(f"table name {value!r} must be 3-255 letters, digits, '_', '-' or '.'")
    return value


def _prefix(value: str) -> str:
    import re

    # the AgentRolloutSupport prefix rule: document and alarm names start with it
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,39}", value, re.ASCII):
        raise ShuntError(f"prefix {value!r} must be 1-40 letters, digits, '-' or '_', starting with a letter "
                         "(the AgentRolloutSupport prefix)")
    return value


def _package(value: str) -> str:
    import re

    # an SSM document name (3-128 of letters, digits, '_', '-', '.') or a package ARN
    if not re.fullmatch(r"(arn:[a-z-]+:ssm:[a-z0-9-]+:(\d{12})?:package/)?[A-Za-z0-9_.-]{3,128}", value, re.ASCII):
        raise ShuntError(f"package {value!r} must be an SSM Distributor package name (3-128 letters, digits, "
                         "'_', '-', '.') or its ARN")
    return value


def _az(value: str) -> str:
    from telemetry_shunt.core.validation import availability_zones

    availability_zones([value], minimum=1)
    return value


FLEET = CheckedValue("fleet", _fleet)
VERSION = CheckedValue("version", _version)
ROLLOUT_ID = CheckedValue("rollout id", _rollout_id)
REGION = CheckedValue("region", _region)
ENDPOINT_URL = CheckedValue("url", _endpoint_url)
ALARM_NAME = CheckedValue("alarm", _alarm_name)
APPCONFIG_NAME = CheckedValue("name", _appconfig_name)
APPCONFIG_PROFILE_NAME = CheckedValue("name", _appconfig_profile_name)
TABLE_NAME = CheckedValue("table", _table_name)
AZ = CheckedValue("az", _az)
PREFIX = CheckedValue("prefix", _prefix)
PACKAGE = CheckedValue("package", _package)


class FiniteFloat(click.ParamType):
    """A float in [minimum, maximum]: no inf or nan (click's FLOAT accepts both)."""

    name = "seconds"

    def __init__(self, minimum: float, maximum: float) -> None:
        self.minimum, self.maximum = minimum, maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        import math

        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or not self.minimum <= number <= self.maximum:
            self.fail(f"{value!r} must be a finite number from {self.minimum:g} to {self.maximum:g}", param, ctx)
        return number


def existing_dir(value: str, *, what: str, create: bool = False, advice: str = "check the path") -> str:
    """A directory that exists (or, with ``create``, whose parent is a directory)."""
    from pathlib import Path

    path = Path(value)
    if path.is_dir():
        return value
    if path.exists():
        raise ShuntError(f"{what} {value} is not a directory")
    if create and path.parent.is_dir():
        return value
    if create:
        raise ShuntError(f"{what} {value} cannot be created: its parent {path.parent} is not a directory")
    raise ShuntError(f"{what} {value} does not exist: {advice}")


def file_path(value: str, *, what: str, must_exist: bool) -> str:
    """A regular file (``must_exist``), or a path whose nearest existing ancestor is a directory."""
    from pathlib import Path

    path = Path(value)
    if path.exists():
        if not path.is_file():
            raise ShuntError(f"{what} {value} is not a regular file")
        return value
    if must_exist:
        raise ShuntError(f"{what} {value} does not exist: check the path")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ShuntError(f"{what} {value} cannot be created: {ancestor} is not a directory")
    return value


def check_region(value: str | None) -> str | None:
    """A Region from the environment (AWS_REGION), checked like --region."""
    return None if value is None else _region(value)
