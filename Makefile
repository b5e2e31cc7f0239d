# Spotwise — developer entry points. `make help` lists the targets.
#
# Everything runs through one interpreter, $(PYTHON): pip, pytest, mypy, ruff and the
# console scripts pip put next to it. Override it to use a virtualenv:
#   make PYTHON=.venv/bin/python test

PYTHON ?= $(shell command -v python >/dev/null 2>&1 && echo python || echo python3)
# torch is pinned: this version is a local CPU build; any other pulls CUDA wheels.
TORCH_VERSION ?= 2.13.0
EXTRAS ?= dev,operator,rl
# Paths that are linted (bench/ may not exist yet in a fresh clone).
LINT_PATHS := $(wildcard operator tests bench)
CRD_FILE := manifests/crds/spotwise.dev_scalingpolicies.yaml
# Where pip installs console scripts for $(PYTHON) (lint-imports has no `python -m`).
SCRIPTS = $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
PIP := $(PYTHON) -m pip --disable-pip-version-check

export PIP_ROOT_USER_ACTION := ignore

.DEFAULT_GOAL := help
.PHONY: help install demo test lint crds bench clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## pip install torch 2.13.0 (local CPU build) if missing, then -e '.[dev,operator,rl]'
	@if $(PYTHON) -c "import importlib.metadata as m, sys; \
		sys.exit(m.version('torch').split('+')[0] != '$(TORCH_VERSION)')" 2>/dev/null; then \
		echo "torch $(TORCH_VERSION) already installed"; \
	else \
		echo "installing torch==$(TORCH_VERSION)"; \
		$(PIP) install -q 'torch==$(TORCH_VERSION)'; \
	fi
	@echo "installing spotwise -e .[$(EXTRAS)]"
	@$(PIP) install -q -e '.[$(EXTRAS)]'

demo: ## run the main job on its embedded default (the simulated cluster)
	$(PYTHON) -m spotwise demo

test: install ## pytest (unit + integration: skipped with a reason without servers), then lint
	$(PYTHON) -m pytest
	@$(MAKE) --no-print-directory lint

# Every checker runs, so one CI log shows all problems; any failure fails the target.
lint: ## ruff check and format, mypy (strict) and import-linter layer contracts
	@status=0; \
	for cmd in "$(PYTHON) -m ruff check $(LINT_PATHS)" "$(PYTHON) -m ruff format --check $(LINT_PATHS)" \
		"$(PYTHON) -m mypy" "$(SCRIPTS)/lint-imports"; do \
		echo "$$cmd"; $$cmd || status=1; \
	done; \
	exit $$status

crds: ## regenerate the CRD from the pydantic API models
	$(PYTHON) -m spotwise crds > $(CRD_FILE).tmp && mv $(CRD_FILE).tmp $(CRD_FILE) \
		|| { rm -f $(CRD_FILE).tmp; exit 1; }

bench: ## run the optimizer benchmark (prints JSON)
	$(PYTHON) bench/optimizer.py

clean: ## remove build output, caches and reports
	rm -rf build dist operator/*.egg-info spotwise-report
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis .import_linter_cache
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
