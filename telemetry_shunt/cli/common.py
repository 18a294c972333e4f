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
    func = click.option("--endpoint-url", default=None, help="Send AWS calls here (moto server, LocalStack).")(func)
    func = click.option("--profile", default=None, help="AWS named profile.")(func)
    func = click.option("--region", default=None, help="AWS Region (default: the profile's or AWS_REGION).")(func)
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
