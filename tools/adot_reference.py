"""Generate the machine-readable reference of an AWS Distro for OpenTelemetry (ADOT) collector release.

The reference lists the components compiled into that release (``pkg/defaultcomponents/defaults.go``,
with each component's type name from its ``internal/metadata/generated_status.go``) and, for the
components telemetry-shunt renders, every configuration option with its type, read from the Go config
structs (``mapstructure`` tags) of the exact sources the release builds with: ADOT vendors its
dependencies, so ``vendor/`` at the release tag *is* the upstream collector and collector-contrib code at
the versions its ``go.mod`` pins.

Usage (needs a git clone of aws-observability/aws-otel-collector with its tags; optionally one of
open-telemetry/opentelemetry-collector to confirm the vendored core sources are upstream's, byte for byte)::

    python -m tools.adot_reference --repo /path/to/aws-otel-collector --tag v0.49.0 \\
        --upstream-collector /path/to/opentelemetry-collector --out tools/data/adot-collector-v0.49.0.json

Output: ``{"source": {...versions...}, "components": {kind: {type: import path}},
"options": {"<kind>/<type>": schema}, "service": schema}`` where a schema is
``{"type": "object", "properties": {...}}``, ``{"type": "map", "values": schema}``,
``{"type": "list", "items": schema}`` or a scalar ``{"type": "string"|"bool"|"int"|"float"|"duration"|
"component_id"|"any"}``. ``any`` marks a Go interface or a type this parser does not model (the check
accepts anything beneath it); ``unresolved`` lists them.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The components whose options are expanded (what core/agent_config.py renders); the rest are listed only.
EXPANDED = {
    ("receivers", "otlp"), ("processors", "memory_limiter"), ("processors", "batch"),
    ("exporters", "otlp_http"), ("extensions", "sigv4auth"), ("extensions", "file_storage"),
    ("extensions", "health_check"),
}
_LISTS = {"extensionsList": "extensions", "receiverList": "receivers", "processorList": "processors",
          "exporterList": "exporters"}
_INT = {"int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "uintptr"}
_KNOWN = {
    ("time", "Duration"): {"type": "duration"},
    ("go.opentelemetry.io/collector/component", "ID"): {"type": "component_id"},
    ("go.opentelemetry.io/collector/component", "Config"): {"type": "any"},
    ("go.opentelemetry.io/collector/pipeline", "ID"): {"type": "string"},
}


class Source:
    """Files of one git tree (``git show <tag>:<path>``), cached."""

    def __init__(self, repo: Path, tag: str) -> None:
        self.repo, self.tag = repo, tag
        out = self._git("ls-tree", "-r", "--name-only", tag)
        self.files = set(out.splitlines())
        self._cache: dict[str, str] = {}

    def _git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.repo), *args], check=True, capture_output=True,
                              text=True).stdout

    def read(self, path: str) -> str:
        if path not in self._cache:
            self._cache[path] = self._git("show", f"{self.tag}:{path}")
        return self._cache[path]

    def package_files(self, import_path: str) -> list[str]:
        d = f"vendor/{import_path}/"
        return sorted(f for f in self.files if f.startswith(d) and "/" not in f[len(d):]
                      and f.endswith(".go") and not f.endswith("_test.go"))


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    # line comments, but not inside back-quoted tags or double-quoted strings
    out = []
    for line in text.splitlines():
        in_str = None
        for i, ch in enumerate(line):
            if in_str:
                if ch == in_str and (in_str == "`" or line[i - 1] != "\\"):
                    in_str = None
            elif ch in "`\"":
                in_str = ch
            elif line.startswith("//", i):
                line = line[:i]
                break
        out.append(line)
    return "\n".join(out)


def parse_imports(text: str) -> dict[str, str]:
    imports: dict[str, str] = {}
    blocks = re.findall(r"^import\s*\((.*?)^\)", text, flags=re.S | re.M)
    singles = re.findall(r"^import\s+((?:\w+\s+)?\"[^\"]+\")", text, flags=re.M)
    for spec in [ln for b in blocks for ln in b.splitlines()] + singles:
        m = re.fullmatch(r"\s*(?:(\w+|_|\.)\s+)?\"([^\"]+)\"\s*", spec)
        if m:
            alias, path = m.group(1), m.group(2)
            imports[alias or path.rsplit("/", 1)[-1]] = path
    return imports


def _match_brace(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced braces")


@dataclass
class Package:
    path: str
    structs: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)  # name -> (body, imports)
    aliases: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)   # name -> (type expr, imports)
    text_types: set[str] = field(default_factory=set)                               # UnmarshalText receivers


def load_package(src: Source, import_path: str) -> Package:
    pkg = Package(import_path)
    for f in src.package_files(import_path):
        text = strip_comments(src.read(f))
        imports = parse_imports(text)
        for m in re.finditer(r"^type\s+(\w+)(\[[^\]]*\])?\s+struct\s*\{", text, flags=re.M):
            end = _match_brace(text, m.end() - 1)
            pkg.structs[m.group(1)] = (text[m.end():end], imports)
        for m in re.finditer(r"^type\s+(\w+)\s*(=)?\s*([\w.\[\]*]+)\s*$", text, flags=re.M):
            pkg.aliases[m.group(1)] = (m.group(3), imports)
        for m in re.finditer(r"^func\s*\(\w+\s+\*?(\w+)(?:\[\w+\])?\)\s+UnmarshalText\(", text, flags=re.M):
            pkg.text_types.add(m.group(1))
    return pkg


def split_fields(body: str) -> list[str]:
    """Struct body -> one string per field (nested anonymous structs kept whole)."""
    fields, buf, depth = [], "", 0
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch in "\n;" and depth == 0:
            if buf.strip():
                fields.append(buf.strip())
            buf = ""
        else:
            buf += ch
    if buf.strip():
        fields.append(buf.strip())
    return fields


class Resolver:
    def __init__(self, src: Source) -> None:
        self.src = src
        self.packages: dict[str, Package] = {}
        self.unresolved: set[str] = set()

    def package(self, path: str) -> Package:
        if path not in self.packages:
            self.packages[path] = load_package(self.src, path)
        return self.packages[path]

    def named(self, pkg_path: str, name: str, depth: int) -> dict[str, Any]:
        if (pkg_path, name) in _KNOWN:
            return dict(_KNOWN[(pkg_path, name)])
        if pkg_path == "go.opentelemetry.io/collector/config/configoptional" and name == "Optional":
            raise AssertionError("Optional is handled with its type argument")
        if depth > 25:
            return {"type": "any"}
        pkg = self.package(pkg_path)
        if name in pkg.text_types:  # encoding.TextUnmarshaler: configured as a string whatever its Go shape
            return {"type": "string"}
        if name in pkg.structs:
            body, imports = pkg.structs[name]
            return self.struct(body, imports, pkg_path, depth + 1)
        if name in pkg.aliases:
            expr, imports = pkg.aliases[name]
            return self.expr(expr, imports, pkg_path, depth + 1)
        self.unresolved.add(f"{pkg_path}.{name}")
        return {"type": "any"}

    def expr(self, expr: str, imports: dict[str, str], pkg_path: str, depth: int) -> dict[str, Any]:
        expr = expr.strip().lstrip("*")
        if expr.startswith("[]"):
            return {"type": "list", "items": self.expr(expr[2:], imports, pkg_path, depth)}
        m = re.fullmatch(r"map\[([^\]]+)\](.+)", expr)
        if m:
            return {"type": "map", "values": self.expr(m.group(2), imports, pkg_path, depth)}
        m = re.fullmatch(r"(\w+)\.Optional\[(.+)\]", expr)
        if m and imports.get(m.group(1)) == "go.opentelemetry.io/collector/config/configoptional":
            inner = self.expr(m.group(2), imports, pkg_path, depth)
            if inner.get("type") == "object":
                inner = {**inner, "properties": {**inner["properties"], "enabled": {"type": "bool"}}}
            return inner
        if expr == "string":
            return {"type": "string"}
        if expr == "bool":
            return {"type": "bool"}
        if expr in _INT:
            return {"type": "int"}
        if expr in ("float32", "float64"):
            return {"type": "float"}
        if expr in ("any", "interface{}") or expr.startswith("func") or expr.startswith("chan"):
            return {"type": "any"}
        if expr.startswith("struct"):
            start = expr.index("{")
            return self.struct(expr[start + 1:_match_brace(expr, start)], imports, pkg_path, depth)
        m = re.fullmatch(r"(\w+)\.(\w+)(\[.*\])?", expr)
        if m:
            target = imports.get(m.group(1))
            if target is None:
                self.unresolved.add(expr)
                return {"type": "any"}
            if (target, m.group(2)) in _KNOWN:
                return dict(_KNOWN[(target, m.group(2))])
            if not self.src.package_files(target):
                self.unresolved.add(f"{target}.{m.group(2)}")
                return {"type": "any"}
            return self.named(target, m.group(2), depth)
        m = re.fullmatch(r"(\w+)(\[.*\])?", expr)
        if m:
            return self.named(pkg_path, m.group(1), depth)
        self.unresolved.add(expr)
        return {"type": "any"}

    def struct(self, body: str, imports: dict[str, str], pkg_path: str, depth: int) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for f in split_fields(body):
            tag_m = re.search(r"`([^`]*)`\s*$", f)
            tag = tag_m.group(1) if tag_m else ""
            decl = f[:tag_m.start()].strip() if tag_m else f
            ms = re.search(r'mapstructure:"([^"]*)"', tag)
            key, opts = (ms.group(1).split(",")[0], ms.group(1).split(",")[1:]) if ms else (None, [])
            if key == "-":
                continue
            parts = decl.split(None, 1)
            if len(parts) == 1 or parts[0].startswith("*") or "." in parts[0] and len(parts) == 1:
                names, type_expr = [], decl  # embedded
            else:
                names = [n.strip() for n in parts[0].split(",")]
                type_expr = parts[1]
            if not names:
                sub = self.expr(type_expr, imports, pkg_path, depth)
                if "squash" in opts or key in (None, ""):
                    props.update(sub.get("properties", {}))
                else:
                    props[key] = sub
                continue
            for name in names:
                if name == "_" or not name[0].isupper():
                    continue
                sub = self.expr(type_expr, imports, pkg_path, depth)
                if "squash" in opts:
                    props.update(sub.get("properties", {}))
                else:
                    props[key or name.lower()] = sub
        return {"type": "object", "properties": props}


def components(src: Source) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """(kind -> type -> import path, kind -> deprecated alias -> type) of the distribution."""
    text = strip_comments(src.read("pkg/defaultcomponents/defaults.go"))
    imports = parse_imports(text)
    result: dict[str, dict[str, str]] = {k: {} for k in _LISTS.values()}
    deprecated: dict[str, dict[str, str]] = {k: {} for k in _LISTS.values()}
    for var, kind in _LISTS.items():
        block = re.search(rf"{var}\s*:=\s*\[\][\w.]+\{{(.*?)\n\s*\}}", text, flags=re.S)
        if block is None:
            raise SystemExit(f"{var} not found in defaults.go: the distribution's layout changed")
        aliases = re.findall(r"(\w+)\.NewFactory\(\)", block.group(1))
        aliases += re.findall(rf"{var}\s*=\s*append\({var},\s*(\w+)\.NewFactory\(\)\)", text)
        for alias in aliases:
            path = imports[alias]
            status = f"vendor/{path}/internal/metadata/generated_status.go"
            m = re.search(r'component\.MustNewType\("([^"]+)"\)', src.read(status))
            if m is None:
                raise SystemExit(f"no component type in {status}")
            result[kind][m.group(1)] = path
            old = re.search(r'DeprecatedType\s*=\s*component\.MustNewType\("([^"]+)"\)', src.read(status))
            if old:  # registered too (WithDeprecatedTypeAlias), with a deprecation warning in the log
                deprecated[kind][old.group(1)] = m.group(1)
    return result, deprecated


def go_mod_versions(src: Source) -> dict[str, str]:
    text = src.read("go.mod")
    wanted = {"go.opentelemetry.io/collector/otelcol": "collector",
              "go.opentelemetry.io/collector/component": "collector_stable",
              "github.com/open-telemetry/opentelemetry-collector-contrib/extension/sigv4authextension": "contrib"}
    out = {}
    for mod, name in wanted.items():
        m = re.search(rf"^\s*{re.escape(mod)}\s+(v\S+)", text, flags=re.M)
        if m:
            out[name] = m.group(1)
    return out


def check_vendor(src: Source, used: set[str], upstream: Path, upstream_tag: str) -> dict[str, Any]:
    """Compare the vendored collector-core files the reference was read from with the upstream repository
    (open-telemetry/opentelemetry-collector) at its tag: they must be byte-identical."""
    prefix = "go.opentelemetry.io/collector/"
    up = Source(upstream, upstream_tag)
    checked = 0
    for import_path in sorted(p for p in used if p.startswith(prefix)):
        for f in src.package_files(import_path):
            upstream_path = f[len("vendor/" + prefix):]
            if upstream_path not in up.files:
                raise SystemExit(f"{f}: not in opentelemetry-collector {upstream_tag}")
            if up.read(upstream_path) != src.read(f):
                raise SystemExit(f"{f}: differs from opentelemetry-collector {upstream_tag}")
            checked += 1
    return {"repository": "open-telemetry/opentelemetry-collector", "tag": upstream_tag, "identical_files": checked}


def build(repo: Path, tag: str, *, upstream_collector: Path | None = None) -> dict[str, Any]:
    src = Source(repo, tag)
    comps, deprecated = components(src)
    resolver = Resolver(src)
    options: dict[str, Any] = {}
    for kind, type_name in sorted(EXPANDED):
        path = comps[kind].get(type_name)
        if path is None:
            raise SystemExit(f"{kind}/{type_name} is not in ADOT {tag}: update EXPANDED or the renderer")
        options[f"{kind}/{type_name}"] = resolver.named(path, "Config", 0)
    service = resolver.named("go.opentelemetry.io/collector/service", "Config", 0)
    commit = src._git("rev-parse", f"{tag}^{{commit}}").strip()
    version = src.read("VERSION").strip()
    versions = go_mod_versions(src)
    vendor_check = (check_vendor(src, set(resolver.packages), upstream_collector, versions["collector"])
                    if upstream_collector is not None else None)
    return {
        "source": {"repository": "aws-observability/aws-otel-collector", "tag": tag, "commit": commit,
                   "version": version, **versions,
                   "generated_by": "tools/adot_reference.py",
                   "vendor_checked_against": vendor_check},
        "components": {k: dict(sorted(v.items())) for k, v in comps.items()},
        "deprecated_aliases": {k: dict(sorted(v.items())) for k, v in deprecated.items() if v},
        "options": options,
        "service": service,
        "unresolved": sorted(resolver.unresolved),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True, help="git clone of aws-observability/aws-otel-collector")
    parser.add_argument("--tag", required=True, help="release tag, e.g. v0.49.0")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--upstream-collector", type=Path, default=None,
                        help="git clone of open-telemetry/opentelemetry-collector: check the vendored core sources "
                             "read here are identical to it at the go.mod version")
    args = parser.parse_args(argv)
    ref = build(args.repo, args.tag, upstream_collector=args.upstream_collector)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(ref, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}: {sum(len(v) for v in ref['components'].values())} components, "
          f"{len(ref['options'])} expanded, {len(ref['unresolved'])} unresolved types", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
