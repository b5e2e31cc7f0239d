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
.PHONY: help install demo test lint crds chart bench agent clean

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

chart: ## copy manifests/crds/ into the Helm chart's crds/ (a test fails when they differ)
	cp manifests/crds/*.yaml charts/spotwise/crds/

bench: ## run the optimizer benchmark (prints JSON)
	$(PYTHON) bench/optimizer.py

# The shipped RL agents (not part of CI). `shop-ppo` trains on WorldCup98 2-day windows
# that are none of the held-out (06-10/11, 06-29/30, 07-07/08) or demo (06-24/25) days,
# plus two synthetic traces, in 4 processes, and is evaluated on the held-out windows;
# `knative-concurrency` trains the concurrency study's agent on the same windows and is
# evaluated on 1998-06-29. Each takes well under 30 minutes of wall time on 2 cores
# (the cards record wall and CPU seconds and the load average).
WORLDCUP := ../shared/data/worldcup98-requests-per-minute.csv
AGENT_STEPS ?= 8000
CONCURRENCY_STEPS ?= 200000
AGENT_TRAIN_WINDOWS := 06-01..1998-06-03 06-08..1998-06-10 06-12..1998-06-14 \
	06-15..1998-06-17 06-17..1998-06-19 06-19..1998-06-21 06-22..1998-06-24 \
	06-26..1998-06-28 07-01..1998-07-03 07-03..1998-07-05 07-12..1998-07-14
AGENT_TRACES := $(foreach w,$(AGENT_TRAIN_WINDOWS),--trace $(WORLDCUP)@1998-$(w)) \
	--trace synthetic:noisy-diurnal:2 --trace synthetic:flash-crowd:2
AGENT_EVAL_WINDOWS := 06-10..1998-06-12 06-29..1998-07-01 07-07..1998-07-09
agent: ## train policies/agents/shop-ppo and knative-concurrency (+ cards); not in CI
	nice -n 15 $(PYTHON) -m spotwise train --policy policies/shop-knative.yaml $(AGENT_TRACES) \
		--weight frontend=0.5 --weight checkout=0.2 --weight catalog=0.3 \
		--steps $(AGENT_STEPS) --seed 0 --envs 4 --processes --out policies/agents/shop-ppo.zip \
		$(foreach w,$(AGENT_EVAL_WINDOWS),--eval-trace $(WORLDCUP)@1998-$(w))
	nice -n 15 $(PYTHON) -m spotwise train --task concurrency \
		--policy policies/agents/knative-study.yaml $(AGENT_TRACES) \
		--steps $(CONCURRENCY_STEPS) --seed 0 --envs 4 \
		--out policies/agents/knative-concurrency.zip \
		--eval-trace $(WORLDCUP)@1998-06-29..1998-06-30 --eval-days 1

clean: ## remove build output, caches and reports
	rm -rf build dist operator/*.egg-info spotwise-report
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis .import_linter_cache
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
