"""Every "this command needs package X: pip install 'telemetry-shunt[E]'" names an extra that really brings X.

Checked against pyproject.toml's extras (self-references followed) and the installed distributions'
own record of which top-level modules they provide, not against a second copy of the mapping.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

import pytest

from telemetry_shunt.cli.common import _EXTRA_FOR_MODULE, extra_for

ROOT = Path(__file__).resolve().parents[2]
EXTRAS: dict[str, list[str]] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def distributions_of(extra: str) -> set[str]:
    """Distribution names the extra requires, following telemetry-shunt[...] self-references."""
    out: set[str] = set()
    for requirement in EXTRAS[extra]:
        if _name(requirement) == "telemetry-shunt":
            for inner in requirement.split("[", 1)[1].split("]", 1)[0].split(","):
                out |= distributions_of(inner.strip())
        else:
            out.add(_name(requirement))
    return out


def installed_closure(names: set[str]) -> set[str]:
    """``names`` and what they require at run time (no extras), from the installed distributions' metadata."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = requires(name) or []
        except PackageNotFoundError:
            continue
        todo += [_name(r) for r in reqs if "extra ==" not in r]
    return seen


@pytest.mark.parametrize("module", sorted(_EXTRA_FOR_MODULE))
def test_the_named_extra_brings_the_module(module):
    providers = {d.lower().replace("_", "-") for d in packages_distributions().get(module, [])}
    assert providers, f"no installed distribution provides {module!r}: is the mapping's module name right?"
    assert providers & installed_closure(distributions_of(extra_for(module))), (
        f"{module!r} comes from {sorted(providers)}, which [{extra_for(module)}] does not install")


def test_all_means_all():
    assert distributions_of("all") == set().union(*(distributions_of(e) for e in EXTRAS if e != "all"))


def test_an_unknown_module_falls_back_to_all():
    assert extra_for("somethingelse.sub") == "all" and extra_for("moto.server") == "sandbox"
