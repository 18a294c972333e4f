# Two commands for a fresh clone: `make synth` and `make test`. Both install what they need.
# Python deps are locked in uv.lock, the CDK CLI in package-lock.json; uv itself is pinned here.
SHELL := /bin/bash
PYTHON ?= python3.11
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python

export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Bytecode compiled once at install: otherwise every `cdk synth` compiles the aws_cdk modules it imports
# (tens of MB of source; PYTHONDONTWRITEBYTECODE environments never cache them). bench/synth_bench.py.
export UV_COMPILE_BYTECODE := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 18,20
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export CDK_DISABLE_CLI_TELEMETRY := true

.PHONY: install synth test lint lock bench clean checkov

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The editable install compiles the client's C accelerator in place (hatch_build.py); here it must build
# (`make install REQUIRE_SPEEDUPS=0` builds without it, and the suite then says it is missing).
REQUIRE_SPEEDUPS ?= 1
$(VENV)/.synced: $(UV) pyproject.toml uv.lock hatch_build.py telemetry_shunt/client/_speedups.c
	TELEMETRY_SHUNT_REQUIRE_SPEEDUPS=$(REQUIRE_SPEEDUPS) $(UV) sync --frozen --all-extras --python $(PYTHON) --quiet
	@touch $@

# checkov in its own locked environment (tools/checkov/uv.lock), so its dependencies never constrain ours.
CHECKOV_ENV := $(TOOLS)/checkov
$(CHECKOV_ENV)/.synced: $(UV) tools/checkov/pyproject.toml tools/checkov/uv.lock
	cd tools/checkov && UV_PROJECT_ENVIRONMENT=$(abspath $(CHECKOV_ENV)) $(abspath $(UV)) sync --frozen --python $(PYTHON) --quiet
	@touch $@

checkov: $(CHECKOV_ENV)/.synced

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(VENV)/.synced node_modules/.installed $(CHECKOV_ENV)/.synced

## Synthesize the default app into cdk.out/ with the pinned CDK CLI, cfn-lint every template, summarize.
synth: install
	$(PY) tools/synth_report.py

## The whole test suite (unit, constructs, policy proofs, moto, CLI, client faults).
test: install
	$(PY) -m pytest -n 2 --dist loadgroup -q

lint: install
	$(VENV)/bin/ruff check telemetry_shunt tests bench tools app.py hatch_build.py

lock: $(UV)
	$(UV) lock --python $(PYTHON)

bench: install
	$(PY) bench/run_all.py

clean:
	rm -rf cdk.out .pytest_cache
