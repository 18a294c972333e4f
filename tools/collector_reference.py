"""The collectors' option reference: generate it from upstream sources, and check rendered configs against it.

``python -m tools.collector_reference generate`` reads the upstream sources at the exact versions the
images pin (:mod:`telemetry_shunt.core.images`) and writes ``tests/reference/collectors.json``: for each
component the fleet's configs use, the options it accepts with their types and enums, plus the
distribution's component list and VRL's function list. Bumping an image means regenerating it::

    python -m tools.collector_reference generate \\
        --vector-git /path/to/vector.git \\            # tag v0.51.1 (website/cue reference, VRL functions)
        --otel-core-git /path/to/opentelemetry-collector.git \\        # tag v0.139.0 (Go config structs)
        --otel-releases-git /path/to/opentelemetry-collector-releases.git \\  # tag v0.139.0 (contrib manifest)
        --contrib-git /path/to/opentelemetry-collector-contrib.git     # tag v0.139.0 (Go config structs)

When the contrib repository cannot be cloned (1.4 GB), ``--contrib-vendor GIT_DIR@COMMIT --contrib-vendor-repo
OWNER/NAME`` reads the contrib packages from another repository's ``vendor/`` tree at ``COMMIT`` (what ``go mod
vendor`` copied from the released module zips; ``vendor/modules.txt`` names each module's version), and
``--contrib-crosscheck GIT_DIR@COMMIT`` reads them again from a second vendoring commit: the reference records,
per component, the release it was read at and whether the other release has the same options. Packages the
vendor tree lacks come from ``--contrib-src DIR --contrib-provenance FILE`` (a directory laid out as the
repository; the provenance file is JSON ``{path: where it was read}``). Either way the reference says
``"verified_version": false``: only ``--contrib-git`` reads the tag itself. The checked-in reference was made
with ``--contrib-vendor ADOT.git@e96800c0c --contrib-crosscheck ADOT.git@3d05c62bd --contrib-vendor-repo
aws-observability/aws-otel-collector --contrib-src DIR --contrib-provenance FILE --contrib-note ...`` (DIR
holding awss3exporter's config.go; the note in the reference says where each piece comes from).

:func:`check_config` walks a rendered config against the reference: unknown options, wrong types,
values outside an enum, components missing from the distribution, VRL functions VRL does not have,
VRL programs VRL's compiler refuses (with the dev dependency ``vrl-python``), and the rules that the
schemas cannot express (one persistent queue per exporter and signal, one metric per published name,
per-series deltas before tags are collapsed). Run by the test suite; no network, no collector binary.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

REFERENCE_PATH = Path(__file__).resolve().parents[1] / "tests" / "reference" / "collectors.json"

VECTOR_TAG = "v0.51.1"
VRL_VERSION = "0.28.1"
OTEL_TAG = "v0.139.0"

# The components the fleet's configs use (kind -> names); the generator describes exactly these.
VECTOR_COMPONENTS = {
    "sources": ("http_server", "internal_metrics"),
    "transforms": ("remap", "filter", "route", "aggregate", "dedupe"),
    "sinks": ("aws_s3", "opentelemetry", "aws_cloudwatch_metrics"),
}
# component type -> (module, Go package directory holding its Config, kind). Module "core" is
# go.opentelemetry.io/collector, "contrib" github.com/open-telemetry/opentelemetry-collector-contrib.
OTEL_COMPONENTS = {
    "receivers": {"otlp": ("core", "receiver/otlpreceiver"), "prometheus": ("contrib", "receiver/prometheusreceiver")},
    "processors": {
        "batch": ("core", "processor/batchprocessor"),
        "memory_limiter": ("core", "processor/memorylimiterprocessor"),
        "metricstransform": ("contrib", "processor/metricstransformprocessor"),
        "attributes": ("contrib", "processor/attributesprocessor"),
    },
    "exporters": {
        "otlphttp": ("core", "exporter/otlphttpexporter"),
        "awss3": ("contrib", "exporter/awss3exporter"),
        "awsemf": ("contrib", "exporter/awsemfexporter"),
    },
    "extensions": {
        "health_check": ("contrib", "extension/healthcheckextension"),
        "file_storage": ("contrib", "extension/storage/filestorage"),
    },
}
MODULES = {"core": "go.opentelemetry.io/collector", "contrib": "github.com/open-telemetry/opentelemetry-collector-contrib"}
# Packages whose structs the components embed or reference, parsed alongside them.
OTEL_SUPPORT_PACKAGES = {
    "core": (
        "config/confighttp", "config/configtls", "config/configcompression", "config/configopaque",
        "config/configretry", "config/configgrpc", "config/confignet", "config/configauth",
        "config/configmiddleware", "config/configtelemetry", "exporter/exporterhelper",
        "exporter/exporterhelper/internal", "exporter/exporterhelper/internal/queuebatch",
        "exporter/exporterhelper/internal/request", "internal/memorylimiter", "service", "service/pipelines",
        "service/telemetry/otelconftelemetry", "service/telemetry/internal/migration",
    ),
    "contrib": (
        "internal/aws/awsutil", "pkg/resourcetotelemetry", "internal/coreinternal/attraction",
        "internal/filter/filterconfig", "internal/filter/filterset", "internal/filter/filterset/regexp",
        "internal/coreinternal/aggregateutil",
    ),
}
# Types decoded by custom code rather than by their fields, and types from outside these two modules:
# their YAML shape, stated once here (with where it comes from).
KNOWN_TYPES: dict[str, dict] = {
    "time.Duration": {"type": "duration"},
    "component.ID": {"type": "string"},  # component/identifiable.go: UnmarshalText "type[/name]"
    "component.Type": {"type": "string"},
    "pipeline.ID": {"type": "string"},
    "configopaque.String": {"type": "string"},
    "configopaque.MapList": {"type": "object", "additional": {"type": "string"}},  # maplist.go: a map or [{name,value}]
    "regexp.Regexp": {"type": "string"},
    "confmap.Conf": {"type": "any"},
    "promconfig.Config": {"type": "any"},  # Prometheus' own configuration (another project's schema)
    "otelconf.MetricReader": {"type": "any"},  # go.opentelemetry.io/contrib/otelconf (another module)
    "zap.Logger": {"type": "skip"},
}
# Older names of core types that contrib files read from a non-tag source may still use.
RENAMED_TYPES = {"confighttp.HTTPServerSettings": "confighttp.ServerConfig"}


# --- a small CUE reader (the subset Vector's generated reference uses) ------------------------------------

_CUE_TOKEN = re.compile(
    r'(?P<ws>[ \t\r]+)|(?P<nl>\n)|(?P<comment>//[^\n]*)'
    r'|(?P<raw3>#"""\n(?:.|\n)*?"""#)|(?P<str3>"""\n(?:.|\n)*?""")|(?P<raw>#"(?:[^"\n]|"(?!#))*"#)'
    r'|(?P<str>"(?:[^"\\\n]|\\.)*")|(?P<num>-?\d[\d_]*(?:\.\d+)?(?:[eE][-+]?\d+)?)'
    r'|(?P<ident>[A-Za-z_#$][A-Za-z0-9_$#]*)|(?P<punct>[{}\[\]:,*|])'
)


def _cue_tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = _CUE_TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"cue: cannot read {text[pos:pos + 40]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind in ("ws", "comment"):
            continue
        out.append((kind, m.group()))
    return out


def _cue_string(kind: str, tok: str) -> str:
    if kind == "str":
        return json.loads(tok)
    if kind == "raw":
        return tok[2:-2]
    body = tok[5:-4] if kind == "raw3" else tok[4:-3]
    lines = body.split("\n")
    indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    return "\n".join(line[indent:] for line in lines).strip("\n")


class _CueParser:
    def __init__(self, text: str) -> None:
        self.toks = [t for t in _cue_tokens(text)]
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i] if self.i < len(self.toks) else ("eof", "")

    def skip_nl(self) -> None:
        while self.peek()[0] == "nl" or self.peek() == ("punct", ","):
            self.i += 1

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        self.i += 1
        return tok

    def file(self) -> dict:
        self.skip_nl()
        if self.peek() == ("ident", "package"):
            self.i += 2
        return self.fields(end=None)

    def fields(self, end: str | None) -> dict:
        out: dict = {}
        while True:
            self.skip_nl()
            kind, tok = self.peek()
            if kind == "eof" or (end and (kind, tok) == ("punct", end)):
                if end:
                    self.i += 1
                return out
            path = [self.label()]
            while True:
                colon = self.take()
                if colon != ("punct", ":"):
                    raise ValueError(f"cue: expected ':' after {path}, got {colon}")
                kind, tok = self.peek()
                nxt = self.toks[self.i + 1] if self.i + 1 < len(self.toks) else ("eof", "")
                if kind in ("ident", "str") and nxt == ("punct", ":"):
                    path.append(self.label())
                    continue
                break
            value = self.value()
            node = out
            for key in path[:-1]:
                node = node.setdefault(key, {})
            _cue_merge(node, path[-1], value)

    def label(self) -> str:
        kind, tok = self.take()
        if kind == "ident":
            return tok
        if kind == "str":
            return json.loads(tok)
        raise ValueError(f"cue: bad label {tok!r}")

    def value(self) -> Any:
        kind, tok = self.take()
        if (kind, tok) == ("punct", "{"):
            return self.fields(end="}")
        if (kind, tok) == ("punct", "["):
            items = []
            while True:
                self.skip_nl()
                if self.peek() == ("punct", "]"):
                    self.i += 1
                    return items
                items.append(self.value())
        if kind in ("str", "raw", "str3", "raw3"):
            return _cue_string(kind, tok)
        if kind == "num":
            text = tok.replace("_", "")
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "ident":
            return {"true": True, "false": False, "null": None}.get(tok, tok)
        raise ValueError(f"cue: unexpected {tok!r}")


def _cue_merge(node: dict, key: str, value: Any) -> None:
    if key in node and isinstance(node[key], dict) and isinstance(value, dict):
        for k, v in value.items():
            _cue_merge(node[key], k, v)
    else:
        node[key] = value


def parse_cue(text: str) -> dict:
    return _CueParser(text).file()


def _cue_node(field: Mapping[str, Any]) -> dict:
    """A Vector reference field (``{type: {...}, required: ...}``) as a schema node."""
    types = field.get("type", {})
    alternatives = []
    for name, spec in types.items():
        spec = spec if isinstance(spec, dict) else {}
        if name == "object":
            options = spec.get("options", {})
            node: dict = {"type": "object", "options": {}}
            for key, sub in options.items():
                if key == "*":
                    node["additional"] = _cue_node(sub)
                else:
                    node["options"][key] = _cue_node(sub)
            alternatives.append(node)
        elif name == "array":
            alternatives.append({"type": "array", "items": _cue_node(spec.get("items", {}))})
        elif name == "string":
            node = {"type": "string"}
            if "enum" in spec:
                node["enum"] = sorted(spec["enum"])
            alternatives.append(node)
        elif name in ("uint", "int"):
            alternatives.append({"type": "int", **({"min": 0} if name == "uint" else {})})
        elif name == "float":
            alternatives.append({"type": "float"})
        elif name == "bool":
            alternatives.append({"type": "bool"})
        elif name in ("condition",):
            alternatives.append({"type": "vrl"})
        else:  # "*", ascii_char, timestamp: accepted as written
            alternatives.append({"type": "any" if name == "*" else "string"})
    if not alternatives:
        return {"type": "any"}
    return alternatives[0] if len(alternatives) == 1 else {"oneOf": alternatives}


def _merge_objects(*nodes: dict) -> dict:
    out: dict = {"type": "object", "options": {}}
    for n in nodes:
        out["options"].update(n.get("options", {}))
        if "additional" in n:
            out["additional"] = n["additional"]
    return out


def _git_show(repo: Path, tag: str, path: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "show", f"{tag}:{path}"], capture_output=True, text=True,
                          check=True).stdout


def _git_ls(repo: Path, tag: str, path: str) -> list[str]:
    out = subprocess.run(["git", "-C", str(repo), "ls-tree", "--name-only", f"{tag}:{path}"], capture_output=True,
                         text=True, check=True).stdout
    return [line for line in out.splitlines() if line]


def _git_commit(repo: Path, tag: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", f"{tag}^{{commit}}"], capture_output=True, text=True,
                          check=True).stdout.strip()


def vector_reference(repo: Path, tag: str = VECTOR_TAG) -> dict:
    base = "website/cue/reference"
    components: dict = {}
    available: dict = {}
    for kind, names in VECTOR_COMPONENTS.items():
        generated = f"{base}/components/{kind}/generated"
        available[kind] = sorted(n[:-4] for n in _git_ls(repo, tag, generated) if n.endswith(".cue"))
        common = parse_cue(_git_show(repo, tag, f"{base}/components/generated/{kind}.cue"))
        common_opts = common["generated"]["components"][kind]["configuration"]
        for name in names:
            data = parse_cue(_git_show(repo, tag, f"{generated}/{name}.cue"))
            opts = data["generated"]["components"][kind][name]["configuration"]
            node = _merge_objects(_cue_node({"type": {"object": {"options": common_opts}}}),
                                  _cue_node({"type": {"object": {"options": opts}}}))
            node["options"]["type"] = {"type": "string", "enum": [name]}
            if kind != "sources":
                node["options"]["inputs"] = {"type": "array", "items": {"type": "string"}}
            components.setdefault(kind, {})[name] = node
    config = parse_cue(_git_show(repo, tag, f"{base}/generated/configuration.cue"))
    global_opts = config["generated"]["configuration"]["configuration"]
    api = parse_cue(_git_show(repo, tag, f"{base}/generated/api.cue"))["generated"]["api"]["configuration"]["api"]
    top = _cue_node({"type": {"object": {"options": global_opts}}})
    top["options"]["api"] = _cue_node({"type": {"object": {"options": api}}})
    functions: dict = {}
    for fname in _git_ls(repo, tag, f"{base}/remap/functions"):
        if not fname.endswith(".cue"):
            continue
        # Function files hold examples with CUE expressions; read the few facts needed by pattern.
        text = _git_show(repo, tag, f"{base}/remap/functions/{fname}")
        m = re.search(r"^remap: functions: (\w+):", text, re.M)
        if not m:
            continue
        reasons = re.search(r"^\tinternal_failure_reasons: \[\s*\]", text, re.M)
        args_block = re.search(r"^\targuments: \[(.*?)^\t\]", text, re.M | re.S)
        functions[m.group(1)] = {
            "fallible": reasons is None,
            "arguments": re.findall(r'name:\s*"(\w+)"', args_block.group(1)) if args_block else [],
        }
    return {
        "image_version": tag.lstrip("v"),
        "source": {"repository": "vectordotdev/vector", "tag": tag, "commit": _git_commit(repo, tag),
                   "paths": [f"{base}/components", f"{base}/generated", f"{base}/remap/functions"]},
        "global": top,
        "available_components": available,
        "components": components,
        "vrl": {"version": VRL_VERSION, "functions": dict(sorted(functions.items()))},
    }


# --- a small Go reader: config structs, named types, constants --------------------------------------------

_GO_PACKAGE = re.compile(r"^package\s+(\w+)", re.M)
_GO_IMPORT_BLOCK = re.compile(r"^import\s*\((.*?)^\)", re.M | re.S)
_GO_IMPORT_LINE = re.compile(r'^import\s+(?:(\w+)\s+)?"([^"]+)"', re.M)
_GO_IMPORT_SPEC = re.compile(r'^\s*(?:(\w+|_|\.)\s+)?"([^"]+)"', re.M)
_GO_TYPE = re.compile(r"^type\s+(\w+)(?:\[[^\]]*\])?\s+(=\s*)?(.+?)\s*$", re.M)
_GO_CONST_BLOCK = re.compile(r"^(?:const|var)\s*\((.*?)^\)", re.M | re.S)
_GO_CONST_LINE = re.compile(r'^\s*(\w+)\s+(\w+)\s*=\s*"([^"]*)"', re.M)
_GO_UNTYPED_CONST = re.compile(r'^\s*(\w+)\s*=\s*"([^"]*)"', re.M)
_GO_TAG = re.compile(r'mapstructure:"([^"]*)"')


def _strip_go_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def _block(text: str, start: int) -> tuple[str, int]:
    """The text inside the braces that open at or after ``start``."""
    open_at = text.index("{", start)
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1:i], i + 1
    raise ValueError("unbalanced braces")


class GoPackage:
    def __init__(self, import_path: str) -> None:
        self.import_path = import_path
        self.name = import_path.rsplit("/", 1)[-1]
        self.structs: dict[str, list[dict]] = {}
        self.named: dict[str, str] = {}  # type Name <underlying> / alias
        self.imports: dict[str, dict[str, str]] = {}  # per struct: alias -> import path
        self.enums: dict[str, list[str]] = {}
        self.untyped: dict[str, str] = {}
        self.unmarshal_cases: dict[str, list[str]] = {}

    def add_file(self, text: str) -> None:
        m = _GO_PACKAGE.search(text)
        if m:
            self.name = m.group(1)
        imports: dict[str, str] = {}
        specs = [(a, p) for block in _GO_IMPORT_BLOCK.findall(text) for a, p in _GO_IMPORT_SPEC.findall(block)]
        specs += _GO_IMPORT_LINE.findall(text)
        for alias, path in specs:
            imports[alias or path.rsplit("/", 1)[-1]] = path
        for block in _GO_CONST_BLOCK.findall(text):
            for name, typ, value in _GO_CONST_LINE.findall(block):
                self.enums.setdefault(typ, []).append(value)
                self.untyped[name] = value
            for name, value in _GO_UNTYPED_CONST.findall(block):
                self.untyped.setdefault(name, value)
        for m in _GO_TYPE.finditer(text):
            name, alias, rest = m.group(1), m.group(2), m.group(3)
            if rest.startswith("struct"):
                if rest.startswith("struct{}"):
                    self.structs[name] = []
                    continue
                body, _ = _block(text, m.start())
                self.structs[name] = _struct_fields(body)
                self.imports[name] = imports
            elif not rest.startswith("interface"):
                self.named[name] = rest.split("//")[0].strip()
                self.imports[name] = imports
        # Enums of types decoded by UnmarshalText: the constants its switch accepts.
        for m in re.finditer(r"func \(\w+ \*(\w+)\) UnmarshalText\(", text):
            body, _ = _block(text, m.end())
            cases = [c.strip() for line in re.findall(r"case ([^:]+):", body) for c in line.split(",")]
            cases += re.findall(r"==\s*([\w.]+(?:\(\w+\))?)", body)
            self.unmarshal_cases[m.group(1)] = cases


def _struct_fields(body: str) -> list[dict]:
    fields = []
    lines = body.split("\n")
    comment: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line:
            comment = []
            continue
        if line.startswith("//"):
            comment.append(line[2:].strip())
            continue
        tag = _GO_TAG.search(line)
        code = re.sub(r"`[^`]*`", "", line).split("//")[0].strip()
        if code.endswith("struct {"):  # an inline struct field
            depth, inner = 1, []
            while depth and i < len(lines):
                depth += lines[i].count("{") - lines[i].count("}")
                inner.append(lines[i])
                i += 1
            tag = _GO_TAG.search(inner[-1]) if inner else None
            fields.append({"name": code.split()[0], "type": "struct", "inline": _struct_fields("\n".join(inner[:-1])),
                           "tag": tag.group(1) if tag else None, "doc": " ".join(comment)})
            comment = []
            continue
        parts = code.split(None, 1)
        if not parts:
            continue
        if len(parts) == 1 or parts[1].startswith("`"):
            name, typ = None, parts[0]  # embedded
        else:
            name, typ = parts[0].rstrip(","), parts[1]
        fields.append({"name": name, "type": typ.strip(), "tag": tag.group(1) if tag else None,
                       "doc": " ".join(comment)})
        comment = []
    return fields


def _case_values(pkg: GoPackage, cases: list[str]) -> list[str]:
    """String values an UnmarshalText accepts: its case labels and comparisons, resolved to constants."""
    values = set()
    for case in cases:
        lower = re.fullmatch(r"strings\.ToLower\((\w+)\)", case)
        name = lower.group(1) if lower else case
        if name.startswith('"'):
            value = name.strip('"')
        elif name in pkg.untyped:
            value = pkg.untyped[name]
        else:
            continue
        values.add(value.lower() if lower else value)
    return sorted(values)


class GoUniverse:
    """Packages by import path, and the schema of a named type."""

    def __init__(self) -> None:
        self.packages: dict[str, GoPackage] = {}
        self.unresolved: set[str] = set()

    def package(self, import_path: str) -> GoPackage:
        return self.packages.setdefault(import_path, GoPackage(import_path))

    def schema(self, pkg: GoPackage, type_name: str, *, context: str, depth: int = 0) -> dict:
        if depth > 12:
            return {"type": "any"}
        if type_name in pkg.unmarshal_cases and type_name in pkg.structs:
            # A struct decoded from text (e.g. the queue's SizerType): the values its UnmarshalText accepts.
            values = _case_values(pkg, pkg.unmarshal_cases[type_name])
            return {"type": "string", **({"enum": values} if values else {})}
        if type_name in pkg.structs:
            return self._struct(pkg, type_name, depth)
        if type_name in pkg.named:
            underlying = pkg.named[type_name]
            node = self.type_expr(pkg, underlying, context=type_name, depth=depth + 1)
            enum = pkg.enums.get(type_name)
            if type_name in pkg.unmarshal_cases:
                enum = _case_values(pkg, pkg.unmarshal_cases[type_name])
                node = {"type": "string"}
            if enum and node.get("type") == "string":
                node = {**node, "enum": sorted(set(enum))}
            return node
        self.unresolved.add(f"{pkg.import_path}.{type_name}")
        return {"type": "any"}

    def _struct(self, pkg: GoPackage, type_name: str, depth: int) -> dict:
        node: dict = {"type": "object", "options": {}}
        for f in pkg.structs[type_name]:
            self._field(pkg, type_name, f, node, depth)
        return node

    def _field(self, pkg: GoPackage, owner: str, f: dict, node: dict, depth: int) -> None:
        tag = f["tag"]
        if tag is not None and tag.split(",")[0] == "-":
            return
        key = (tag or "").split(",")[0]
        flags = (tag or "").split(",")[1:]
        if f["type"] == "struct":
            sub = {"type": "object", "options": {}}
            for inner in f["inline"]:
                self._field(pkg, owner, inner, sub, depth + 1)
        else:
            sub = self.type_expr(pkg, f["type"], context=f"{owner}.{f['name']}", owner=owner, depth=depth + 1)
        if sub.get("type") == "skip":
            return
        if "remain" in flags:
            node["additional"] = {"type": "any"}
            return
        if (f["name"] is None and not key) or "squash" in flags:  # untagged embedded structs are squashed
            node["options"].update(sub.get("options", {}))
            if sub.get("type") == "any":  # a squashed type from outside these sources: its keys are unknown
                node["additional"] = {"type": "any"}
            return
        if not key:
            if f["name"] is None or not f["name"][0].isupper():
                return  # unexported: not decoded
            key = f["name"].lower()
        enum = re.search(r'Valid values are:?\s*((?:[`"][\w-]+[`"][,\s]*(?:or\s*)?)+)', f["doc"])
        if enum and sub.get("type") == "string":
            sub = {**sub, "enum": sorted(set(re.findall(r'[`"]([\w-]+)[`"]', enum.group(1))))}
        node["options"][key] = sub

    def type_expr(self, pkg: GoPackage, expr: str, *, context: str, owner: str | None = None, depth: int = 0) -> dict:
        expr = expr.strip()
        if expr.startswith("*"):
            return self.type_expr(pkg, expr[1:], context=context, owner=owner, depth=depth)
        if expr.startswith("[]"):
            return {"type": "array", "items": self.type_expr(pkg, expr[2:], context=context, owner=owner, depth=depth)}
        if expr.startswith("map["):
            value = expr[expr.index("]") + 1:]
            return {"type": "object", "options": {},
                    "additional": self.type_expr(pkg, value, context=context, owner=owner, depth=depth)}
        m = re.fullmatch(r"configoptional\.Optional\[(.+)\]", expr)
        if m:
            return self.type_expr(pkg, m.group(1), context=context, owner=owner, depth=depth)
        if expr == "struct{}":
            return {"type": "skip"}
        basic = {"string": "string", "bool": "bool", "any": "any", "interface{}": "any"}
        if expr in basic:
            return {"type": basic[expr]}
        if re.fullmatch(r"u?int(8|16|32|64)?", expr):
            return {"type": "int", **({"min": 0} if expr.startswith("u") else {})}
        if re.fullmatch(r"float(32|64)", expr):
            return {"type": "float"}
        expr = RENAMED_TYPES.get(expr, expr)
        if expr in KNOWN_TYPES:
            return KNOWN_TYPES[expr]
        if "." in expr:
            alias, name = expr.split(".", 1)
            imports = pkg.imports.get(owner or "", {}) or {}
            path = imports.get(alias)
            if path not in self.packages:  # e.g. a fork's import path: the package of that name here
                path = next((p for p in self.packages if p.endswith("/" + alias)), None)
            if path and path in self.packages:
                return self.schema(self.packages[path], name, context=context, depth=depth)
            self.unresolved.add(expr)
            return {"type": "any"}
        return self.schema(pkg, expr, context=context, depth=depth)


def _read_package(universe: GoUniverse, module: str, directory: str, read, listdir) -> GoPackage:
    pkg = universe.package(f"{MODULES[module]}/{directory}")
    for name in listdir(directory):
        if name.endswith(".go") and not name.endswith("_test.go"):
            pkg.add_file(_strip_go_comments_keep_docs(read(f"{directory}/{name}")))
    return pkg


def _strip_go_comments_keep_docs(text: str) -> str:
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def otel_reference(core: Path, releases: Path, contrib_read, contrib_listdir, contrib_source: dict) -> dict:
    manifest = _git_show(releases, OTEL_TAG, "distributions/otelcol-contrib/manifest.yaml")
    distribution: dict[str, list[str]] = {}
    section = None
    for line in manifest.splitlines():
        if re.fullmatch(r"(\w+):", line):
            section = line[:-1]
        m = re.match(r"\s*- gomod: (\S+) (v\S+)", line)
        if m and section in ("receivers", "processors", "exporters", "extensions", "connectors", "providers"):
            distribution.setdefault(section, []).append(m.group(1).rsplit("/", 1)[-1] + " " + m.group(2))
    universe = GoUniverse()

    def core_read(path: str) -> str:
        return _git_show(core, OTEL_TAG, path)

    def core_ls(directory: str) -> list[str]:
        return _git_ls(core, OTEL_TAG, directory)

    readers = {"core": (core_read, core_ls), "contrib": (contrib_read, contrib_listdir)}
    for module, dirs in OTEL_SUPPORT_PACKAGES.items():
        for d in dirs:
            _read_package(universe, module, d, *readers[module])
    components: dict = {}
    packages: dict = {}
    for kind, comps in OTEL_COMPONENTS.items():
        for name, (module, directory) in comps.items():
            pkg = _read_package(universe, module, directory, *readers[module])
            components.setdefault(kind, {})[name] = universe.schema(pkg, "Config", context=name)
            packages.setdefault(kind, {})[name] = f"{MODULES[module]}/{directory}"
    service_pkg = universe.packages[f"{MODULES['core']}/service"]
    service = universe.schema(service_pkg, "Config", context="service")
    # service.telemetry is declared as component.Config; the contrib image's telemetry factory decodes it
    # into otelconftelemetry.Config.
    telemetry_pkg = universe.packages[f"{MODULES['core']}/service/telemetry/otelconftelemetry"]
    service["options"]["telemetry"] = universe.schema(telemetry_pkg, "Config", context="service.telemetry")
    return {
        "image_version": OTEL_TAG.lstrip("v"),
        "sources": {
            "core": {"repository": "open-telemetry/opentelemetry-collector", "tag": OTEL_TAG,
                     "commit": _git_commit(core, OTEL_TAG)},
            "releases": {"repository": "open-telemetry/opentelemetry-collector-releases", "tag": OTEL_TAG,
                         "commit": _git_commit(releases, OTEL_TAG),
                         "path": "distributions/otelcol-contrib/manifest.yaml"},
            "contrib": contrib_source,
        },
        "distribution": distribution,
        "component_packages": packages,
        "components": components,
        "service": service,
        "unresolved_types": sorted(universe.unresolved),
        # exporterhelper/internal/queue/persistent_queue.go: "name and signal must be a unique combination that
        # identifies the queue storage" -- one persistent queue per exporter per signal.
        "persistent_queue_per": ["exporter", "signal"],
    }


def _dir_reader(root: Path):
    def read(path: str) -> str:
        return (root / path).read_text()

    def listdir(directory: str) -> list[str]:
        d = root / directory
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    return read, listdir


def generate(args: argparse.Namespace) -> dict:
    if args.contrib_git:
        repo = Path(args.contrib_git)

        def read(path: str) -> str:
            return _git_show(repo, OTEL_TAG, path)

        def listdir(directory: str) -> list[str]:
            try:
                return _git_ls(repo, OTEL_TAG, directory)
            except subprocess.CalledProcessError:
                return []

        contrib_source = {"repository": "open-telemetry/opentelemetry-collector-contrib", "tag": OTEL_TAG,
                          "commit": _git_commit(repo, OTEL_TAG), "verified_version": True}
    elif args.contrib_vendor:
        vendor = VendorTree(args.contrib_vendor, args.contrib_vendor_repo)
        fallback = _dir_reader(Path(args.contrib_src)) if args.contrib_src else None
        fallback_files = json.loads(Path(args.contrib_provenance).read_text()) if args.contrib_provenance else {}
        read, listdir = vendor.reader(fallback)
        contrib_source = {
            "repository": "open-telemetry/opentelemetry-collector-contrib", "tag": OTEL_TAG, "verified_version": False,
            "vendored_from": {"repository": vendor.repository, "commit": vendor.commit},
            "packages": vendor.provenance(_contrib_directories(), fallback_files),
            "note": args.contrib_note,
        }
        if args.contrib_crosscheck:
            other = VendorTree(args.contrib_crosscheck, args.contrib_vendor_repo)
            contrib_source["crosscheck"] = {"repository": other.repository, "commit": other.commit,
                                            "components": {}}
            crosscheck = other
        else:
            crosscheck = None
    else:
        read, listdir = _dir_reader(Path(args.contrib_src))
        contrib_source = {
            "repository": "open-telemetry/opentelemetry-collector-contrib", "tag": OTEL_TAG, "verified_version": False,
            "files": json.loads(Path(args.contrib_provenance).read_text()),
            "note": args.contrib_note,
        }
    otel = otel_reference(Path(args.otel_core_git), Path(args.otel_releases_git), read, listdir, contrib_source)
    if args.contrib_vendor and crosscheck is not None:
        other_read, other_listdir = crosscheck.reader(None)
        other = otel_reference(Path(args.otel_core_git), Path(args.otel_releases_git), other_read, other_listdir, {})
        packages = contrib_source["packages"]
        for kind, comps in OTEL_COMPONENTS.items():
            for name, (module, directory) in comps.items():
                if module != "contrib" or packages[directory]["from"] != "vendor":
                    continue
                version = crosscheck.module_version(directory)
                contrib_source["crosscheck"]["components"][f"{kind}/{name}"] = {
                    "module_version": version,
                    "same_options": version is not None
                    and other["components"][kind][name] == otel["components"][kind][name],
                }
    return {"generated_by": "tools/collector_reference.py", "vector": vector_reference(Path(args.vector_git)), "otel": otel}


def _contrib_directories() -> list[str]:
    """The contrib package directories the reference reads: the components' and their support packages'."""
    dirs = [d for module, d in (c for comps in OTEL_COMPONENTS.values() for c in comps.values()) if module == "contrib"]
    return dirs + list(OTEL_SUPPORT_PACKAGES["contrib"])


_CONTRIB_MODULE = MODULES["contrib"]
_VENDOR_PREFIX = f"vendor/{_CONTRIB_MODULE}/"


class VendorTree:
    """Contrib packages as another repository vendored them at one commit (``GIT_DIR@COMMIT``)."""

    def __init__(self, spec: str, repository: str | None) -> None:
        git_dir, sep, rev = spec.rpartition("@")
        if not sep or not git_dir or not rev:
            raise SystemExit(f"--contrib-vendor/--contrib-crosscheck {spec!r}: give GIT_DIR@COMMIT")
        if not repository:
            raise SystemExit("--contrib-vendor-repo OWNER/NAME: the repository the vendor tree belongs to")
        self.git, self.repository = Path(git_dir), repository
        self.commit = _git_commit(self.git, rev)
        self.modules: dict[str, str] = {}
        for line in _git_show(self.git, self.commit, "vendor/modules.txt").splitlines():
            m = re.match(r"# (\S+) (v\S+)(?: => (\S+)(?: (v\S+))?)?$", line)
            if m and m.group(1).startswith(_CONTRIB_MODULE + "/"):
                if m.group(3):  # replaced by another module: not the upstream release
                    continue
                self.modules[m.group(1)[len(_CONTRIB_MODULE) + 1:]] = m.group(2)

    def module_of(self, directory: str) -> str | None:
        """The contrib module (its directory) that holds package ``directory``: the longest matching prefix."""
        found = [m for m in self.modules if directory == m or directory.startswith(m + "/")]
        return max(found, key=len) if found else None

    def module_version(self, directory: str) -> str | None:
        module = self.module_of(directory)
        return self.modules[module] if module else None

    def listdir(self, directory: str) -> list[str]:
        if self.module_of(directory) is None:
            return []
        try:
            return _git_ls(self.git, self.commit, _VENDOR_PREFIX + directory)
        except subprocess.CalledProcessError:
            return []

    def reader(self, fallback):
        def read(path: str) -> str:
            directory = path.rsplit("/", 1)[0]
            if self.listdir(directory):
                return _git_show(self.git, self.commit, _VENDOR_PREFIX + path)
            return fallback[0](path)

        def listdir(directory: str) -> list[str]:
            return self.listdir(directory) or (fallback[1](directory) if fallback else [])

        return read, listdir

    def provenance(self, directories: Iterable[str], fallback_files: Mapping[str, str]) -> dict:
        out = {}
        for directory in directories:
            if self.listdir(directory):
                module = self.module_of(directory)
                out[directory] = {"from": "vendor", "module": module, "module_version": self.modules[module]}
            else:
                files = {p: c for p, c in fallback_files.items() if p.rsplit("/", 1)[0] == directory}
                out[directory] = {"from": "contrib-src", "files": files} if files else {"from": "absent"}
        return out


def load_reference(path: Path = REFERENCE_PATH) -> dict:
    return json.loads(path.read_text())


# --- the check -------------------------------------------------------------------------------------------


def check_value(node: Mapping[str, Any], value: Any, where: str) -> list[str]:
    """Problems of ``value`` against schema ``node``, as sentences naming the option path."""
    if "oneOf" in node:
        results = [check_value(alt, value, where) for alt in node["oneOf"]]
        best = min(results, key=len)
        return best
    kind = node.get("type", "any")
    if kind == "any":
        return []
    if kind == "object":
        if not isinstance(value, Mapping):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        problems = []
        for key, sub in value.items():
            if key in node.get("options", {}):
                problems += check_value(node["options"][key], sub, f"{where}.{key}")
            elif "additional" in node:
                problems += check_value(node["additional"], sub, f"{where}.{key}")
            else:
                problems.append(f"{where}.{key}: unknown option (accepted: {', '.join(sorted(node.get('options', {})))})")
        return problems
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {type(value).__name__}"]
        return [p for i, item in enumerate(value) for p in check_value(node["items"], item, f"{where}[{i}]")]
    if isinstance(value, str) and re.fullmatch(r"\$\{(?:env:)?[A-Za-z_][A-Za-z0-9_]*\}", value):
        return []  # an environment reference, substituted at start
    if kind in ("string", "vrl"):
        if not isinstance(value, str):
            return [f"{where}: expected a string, got {value!r}"]
        if "enum" in node and value not in node["enum"]:
            return [f"{where}: {value!r} is not one of {node['enum']}"]
        return []
    if kind == "bool":
        return [] if isinstance(value, bool) else [f"{where}: expected true/false, got {value!r}"]
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{where}: expected a whole number, got {value!r}"]
        return [f"{where}: {value} is below {node['min']}"] if value < node.get("min", value) else []
    if kind == "float":
        return [] if isinstance(value, int | float) and not isinstance(value, bool) else [
            f"{where}: expected a number, got {value!r}"]
    if kind == "duration":
        ok = isinstance(value, str) and re.fullmatch(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+|0", value)
        return [] if ok else [f"{where}: expected a Go duration such as '5s', got {value!r}"]
    return []


_VRL_CALL = re.compile(r"\b([a-z_][a-z0-9_]*)!?\s*\(")
_VRL_KEYWORDS = {"if", "else", "for", "while", "abort", "return", "not"}


def _vrl_programs(component: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    for key in ("source", "condition"):
        if isinstance(component.get(key), str):
            yield key, component[key]
    for name, cond in (component.get("route") or {}).items():
        yield f"route.{name}", cond


def _strip_vrl_strings(program: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', program)


def check_vector(config: Mapping[str, Any], ref: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    top = {k: v for k, v in config.items() if k not in ("sources", "transforms", "sinks")}
    problems += check_value(ref["global"], top, "vector")
    functions = ref["vrl"]["functions"]
    sections = {k: config.get(k, {}) for k in ("sources", "transforms", "sinks")}
    for kind, comps in sections.items():
        for name, comp in comps.items():
            ctype = comp.get("type")
            where = f"vector.{kind}.{name}"
            if ctype not in ref["available_components"][kind]:
                problems.append(f"{where}: component type {ctype!r} is not in Vector {ref['image_version']}")
                continue
            if ctype not in ref["components"][kind]:
                problems.append(f"{where}: {ctype!r} is not described by the reference: add it and regenerate")
                continue
            problems += check_value(ref["components"][kind][ctype], comp, where)
            for key, program in _vrl_programs(comp):
                for fn in _VRL_CALL.findall(_strip_vrl_strings(program)):
                    if fn not in _VRL_KEYWORDS and fn not in functions:
                        problems.append(f"{where}.{key}: VRL {ref['vrl']['version']} has no function {fn!r}")
                problems += _compile_vrl(f"{where}.{key}", program)
    problems += _vector_rules(config, functions)
    return problems


def _compile_vrl(where: str, program: str) -> list[str]:
    """VRL's own compiler on ``program`` (type checking included: unhandled or unnecessary error handling,
    undefined variables), when the ``vrl-python`` bindings are installed (a dev dependency; built from VRL
    dbfeee5, 11 commits before 0.28.1, with the same compiler). Without them, nothing is reported."""
    return [f"{where}: VRL does not compile: {error}" for error in _vrl_compile_errors(program)]


@functools.lru_cache(maxsize=256)
def _vrl_compile_errors(program: str) -> tuple[str, ...]:
    # Cached by program text: the renderer emits the same few programs in every config.
    try:
        from vrl_python import VRLRuntime
    except ImportError:
        return ()
    try:
        VRLRuntime().compile(program)
    except ValueError as exc:
        errors = re.findall(r"error\[(E\d+)\]: ([^\n]+)", str(exc))
        return ("; ".join(f"{code} {text}" for code, text in errors) or str(exc),)
    return ()


def _vector_rules(config: Mapping[str, Any], functions: Mapping[str, Any]) -> list[str]:
    """What the schemas cannot say."""
    problems = []
    transforms = config.get("transforms", {})
    kinds = {n: "source" for n in config.get("sources", {})}
    kinds.update({n: t.get("type") for n, t in transforms.items()})
    # 1. A remap that coalesces errors (``??``) on another remap's output: with schema.enabled the upstream
    #    types are known, a coercion becomes infallible and ``??`` an "unnecessary error coalesce" error.
    for name, t in transforms.items():
        if t.get("type") == "remap" and "??" in t.get("source", ""):
            typed = [i for i in t.get("inputs", []) if kinds.get(i.split(".")[0]) == "remap"]
            if typed:
                problems.append(
                    f"vector.transforms.{name}: coalesces errors (??) on the typed output of remap {typed}; it "
                    "compiles only while schema.enabled is off"
                )
    # 2. Metrics whose tags a remap replaces must be per-series deltas by then (aggregate mode Diff
    #    upstream) and marked incremental, or the CloudWatch sink diffs different series' totals.
    for sname, sink in config.get("sinks", {}).items():
        if sink.get("type") != "aws_cloudwatch_metrics":
            continue
        for name in _upstream(config, sname):
            t = transforms.get(name, {})
            if t.get("type") == "remap" and re.search(r"^\s*\.tags\s*=", t.get("source", ""), re.M):
                chain = _upstream(config, name)
                has_diff = any(transforms.get(u, {}).get("type") == "aggregate"
                               and transforms[u].get("mode") == "Diff" for u in chain)
                incremental = '.kind = "incremental"' in t["source"]
                if not (has_diff and incremental):
                    problems.append(
                        f"vector.transforms.{name}: replaces the metrics' tags, merging series of different "
                        "components, without per-series deltas upstream (aggregate mode Diff) and .kind = "
                        f"\"incremental\"; sink {sname!r} would take deltas between different components' totals"
                    )
        if sink.get("healthcheck", {}).get("enabled", True):
            problems.append(f"vector.sinks.{sname}: the healthcheck publishes a datapoint of its own on every start")
    return problems


def _upstream(config: Mapping[str, Any], name: str) -> list[str]:
    comps = {**config.get("transforms", {}), **config.get("sinks", {})}
    seen, stack = [], list(comps.get(name, {}).get("inputs", []))
    while stack:
        n = stack.pop().split(".")[0]
        if n not in seen:
            seen.append(n)
            stack.extend(comps.get(n, {}).get("inputs", []))
    return seen


def check_otel(config: Mapping[str, Any], ref: Mapping[str, Any], usable_disk_bytes: int | None = None) -> list[str]:
    problems: list[str] = []
    dist = {kind: {entry.split()[0] for entry in entries} for kind, entries in ref["distribution"].items()}
    for kind in ("receivers", "processors", "exporters", "extensions"):
        for cid, comp in (config.get(kind) or {}).items():
            ctype = cid.split("/")[0]
            where = f"otel.{kind}.{cid}"
            package = ref["component_packages"].get(kind, {}).get(ctype)
            if package is None:
                problems.append(f"{where}: {ctype!r} is not described by the reference: add it and regenerate")
                continue
            if package.rsplit("/", 1)[-1] not in dist.get(kind, set()):
                problems.append(f"{where}: {package} is not in the otelcol-contrib {ref['image_version']} distribution")
            problems += check_value(ref["components"][kind][ctype], comp or {}, where)
    problems += check_value(ref["service"], config.get("service", {}), "otel.service")
    problems += _otel_rules(config, usable_disk_bytes)
    return problems


def _otel_rules(config: Mapping[str, Any], usable_disk_bytes: int | None) -> list[str]:
    problems = []
    # Persistent queues: one per exporter per signal (the reference's persistent_queue_per). Their byte
    # capacity, plus one more for compaction on start, must fit the disk.
    pipelines = (config.get("service") or {}).get("pipelines") or {}
    queues = []
    for eid, exporter in (config.get("exporters") or {}).items():
        q = (exporter or {}).get("sending_queue") or {}
        if not q.get("enabled", True) or not q.get("storage"):
            continue
        signals = {p.split("/")[0] for p, pipe in pipelines.items() if eid in pipe.get("exporters", [])}
        if q.get("sizer") != "bytes":
            problems.append(f"otel.exporters.{eid}.sending_queue: a persistent queue not sized in bytes has no disk bound")
            continue
        queues += [int(q.get("queue_size", 0))] * len(signals)
    if usable_disk_bytes is not None and queues and sum(queues) + max(queues) > usable_disk_bytes:
        problems.append(
            f"otel: {len(queues)} persistent queues (one per exporter per signal) hold up to {sum(queues)} bytes, plus "
            f"{max(queues)} for compaction, more than the {usable_disk_bytes} bytes of usable disk"
        )
    # Two metricstransform rules producing one name make two metrics of one name; awsemf keeps the first.
    for pid, proc in (config.get("processors") or {}).items():
        if pid.split("/")[0] != "metricstransform":
            continue
        names = [t.get("new_name") or t.get("include") for t in proc.get("transforms", [])
                 if t.get("action") in ("insert", "combine")]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"otel.processors.{pid}: {names.count(dup)} rules produce metric {dup!r}; "
                            "awsemf keeps the first of duplicate metrics")
    return problems


def check_config(
    collector: str,
    config: Mapping[str, Any],
    reference: Mapping[str, Any] | None = None,
    *,
    usable_disk_bytes: int | None = None,
) -> list[str]:
    """Problems of a rendered ``collector`` config against the reference (empty when it would start)."""
    reference = reference or load_reference()
    if collector == "vector":
        return check_vector(config, reference["vector"])
    return check_otel(config, reference["otel"], usable_disk_bytes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.collector_reference")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write tests/reference/collectors.json from upstream sources")
    gen.add_argument("--vector-git", required=True)
    gen.add_argument("--otel-core-git", required=True)
    gen.add_argument("--otel-releases-git", required=True)
    gen.add_argument("--contrib-git", help="a clone of opentelemetry-collector-contrib (read at the tag)")
    gen.add_argument("--contrib-vendor", help="GIT_DIR@COMMIT of a repository whose vendor/ holds contrib modules")
    gen.add_argument("--contrib-vendor-repo", help="OWNER/NAME of that repository (recorded in the reference)")
    gen.add_argument("--contrib-crosscheck", help="GIT_DIR@COMMIT: the same repository at another release")
    gen.add_argument("--contrib-src", help="a directory laid out as the contrib repository")
    gen.add_argument("--contrib-provenance", help="JSON {path: where it was read} for --contrib-src")
    gen.add_argument("--contrib-note", default="")
    gen.add_argument("--output", default=str(REFERENCE_PATH))
    args = parser.parse_args(argv)
    if not (args.contrib_git or args.contrib_vendor or args.contrib_src):
        parser.error("give --contrib-git, or --contrib-vendor (with --contrib-vendor-repo), or --contrib-src")
    reference = generate(args)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.output}; unresolved Go types (accepted as any): {reference['otel']['unresolved_types']}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
