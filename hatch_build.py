"""Build the client's optional C accelerator, ``telemetry_shunt/client/_speedups.c``, into the wheel.

It holds the worker's per-record grouping loop and its bulk folds (see ``client/_aggregate.py``), compiled with
the C compiler and flags of the Python that builds the wheel. An editable install (``make install``) compiles it
in place, next to its source (git ignores it). Without a C compiler the build warns and the wheel stays
pure Python: the client then runs the same loops in Python, with the same results, slower.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = "telemetry_shunt/client/_speedups.c"
# Set to 1 to fail the build rather than fall back to pure Python (the project's own installs do).
REQUIRE = "TELEMETRY_SHUNT_REQUIRE_SPEEDUPS"


def compile_command(source: Path, target: Path) -> list[str]:
    """The compile-and-link command of the running Python (its LDSHARED: ``gcc -pthread -shared`` on Linux,
    ``clang -bundle -undefined dynamic_lookup`` on macOS), position-independent and optimised."""
    ldshared = sysconfig.get_config_var("LDSHARED") or f"{sysconfig.get_config_var('CC') or 'cc'} -shared"
    include = sysconfig.get_paths()["include"]
    return [*shlex.split(ldshared), *shlex.split(sysconfig.get_config_var("CCSHARED") or "-fPIC"), "-O2",
            "-Wall", "-Wextra", "-Werror", "-std=c99", f"-I{include}", str(source), "-lm", "-o", str(target)]


def required(environ: dict[str, str]) -> bool:
    """Whether ``REQUIRE`` asks for the accelerator: "1" yes, "0" or unset no; anything else is refused
    (a "true" or "yes" read as "no" would build a slow wheel while its builder thinks otherwise)."""
    value = environ.get(REQUIRE, "0")
    if value not in ("0", "1"):
        raise ValueError(f"{REQUIRE}={value!r}: set it to 1 (the C accelerator must build) or 0 (it may not)")
    return value == "1"


class SpeedupsBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel":
            return  # the sdist carries the C source; its wheel build compiles it
        must_build = required(dict(os.environ))  # before any work: a bad value is refused whatever happens next
        root = Path(self.root)
        name = "_speedups" + sysconfig.get_config_var("EXT_SUFFIX")
        if version == "editable":
            target = root / SOURCE.rsplit("/", 1)[0] / name
        else:
            target = Path(tempfile.mkdtemp(prefix="telemetry-shunt-build-")) / name
        command = compile_command(root / SOURCE, target)
        try:
            proc = subprocess.run(command, capture_output=True, text=True, cwd=root, check=False)
            failure = None if proc.returncode == 0 else f"{shlex.join(command)} failed:\n{proc.stdout}{proc.stderr}"
        except OSError as exc:  # no compiler at all
            failure = f"{shlex.join(command)} could not run: {exc}"
        if failure is not None:
            if must_build:
                raise RuntimeError(
                    f"the client's C accelerator ({SOURCE}) did not build, and {REQUIRE}=1 asks for it: install "
                    f"a C compiler and this Python's headers (Debian: apt install gcc python3-dev), or build "
                    f"without it ({REQUIRE}=0: the client then runs the same loop in Python). {failure}")
            message = (f"telemetry-shunt: the client's C accelerator did not build, so the wheel is pure Python "
                       f"(the client works, its worker uses more CPU per record): {failure}")
            if hasattr(self.app, "display_warning"):
                self.app.display_warning(message)
            else:  # pragma: no cover - an older hatchling
                print(message, file=sys.stderr)
            return
        if version != "editable":
            build_data["force_include"][str(target)] = f"{SOURCE.rsplit('/', 1)[0]}/{name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
