"""The ``shunt`` command line: ``shunt <noun> <verb>``.

Each noun lives in its own module and registers a click group here; commands are thin wrappers over
functions that are unit-tested without the CLI.
"""

from __future__ import annotations

import importlib
import sys

import click

from telemetry_shunt import __version__
from telemetry_shunt.cli.common import extra_for

# (module, attribute) of each noun's click group; a module whose extra is not installed is skipped
# with a hint instead of breaking the other commands.
_COMMAND_GROUPS: list[tuple[str, str]] = [
    ("telemetry_shunt.cli.policy", "policy"),
    ("telemetry_shunt.cli.rollout", "rollout"),
    ("telemetry_shunt.cli.kill", "kill"),
    ("telemetry_shunt.cli.sandbox", "sandbox"),
]


class ShuntGroup(click.Group):
    """The root group: a usage error (unknown option, bad or missing value) is one line on stderr and
    exit code 1, like every other user mistake; click's own exit code 2 means "halted" in this CLI."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: ANN001
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            sys.exit(0)
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            message = " ".join(exc.format_message().split())
            click.echo(f"shunt: {message}{where}", err=True)
            sys.exit(1)
        except click.ClickException as exc:
            click.echo(f"shunt: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code if exc.exit_code != 2 else 1)
        except click.exceptions.Abort:
            click.echo("shunt: aborted", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=ShuntGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(__version__, prog_name="shunt")
def cli(debug: bool) -> None:
    """telemetry-shunt: isolated telemetry network, staged agent rollouts, kill switch."""


def _register() -> None:
    for module_name, attr in _COMMAND_GROUPS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing = exc.name or str(exc)

            @cli.command(name=attr, context_settings={"ignore_unknown_options": True})
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def _unavailable(args: tuple[str, ...], _missing: str = missing, _name: str = attr) -> None:
                raise click.ClickException(
                    f"'shunt {_name}' needs the {_missing!r} package: pip install 'telemetry-shunt[{extra_for(_missing)}]'"
                )

            continue
        cli.add_command(getattr(module, attr))


_register()


def main() -> None:
    cli(prog_name="shunt")
